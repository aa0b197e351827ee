//! From RetinaFace's outputs to faces: prior boxes, decoding, the score threshold and
//! non-maximum suppression, as `RetinaFace.detect_faces` computes them
//! (`facexlib/detection/retinaface.py`, `retinaface_utils.py`: `PriorBox`, `decode`,
//! `decode_landm`, `py_cpu_nms` → `torchvision.ops.nms`). All arithmetic is `f32`, in the
//! original's order.

use burn::tensor::{Device, Tensor, TensorData};
use diffbir_core::{Error, Result};

use crate::cv::Mat;
use crate::host_values;
use crate::retinaface::{ANCHORS, MEAN, RawDetections, RetinaFace};

/// Anchor sizes per level (`min_sizes`), in pixels.
pub const MIN_SIZES: [[f64; ANCHORS]; 3] = [[16.0, 32.0], [64.0, 128.0], [256.0, 512.0]];
/// Strides of the levels (`steps`).
pub const STEPS: [usize; 3] = [8, 16, 32];
/// `variance`: the scales of the centre and of the size offsets.
pub const VARIANCE: [f32; 2] = [0.1, 0.2];

/// One detected face in image pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// `[x1, y1, x2, y2]`.
    pub bbox: [f32; 4],
    /// Face probability.
    pub score: f32,
    /// Left eye, right eye, nose, left and right mouth corners, as `[x, y]`.
    pub landmarks: [[f32; 2]; 5],
}

impl Detection {
    /// The 15 numbers of a `detect_faces` row: box, score, landmarks.
    pub fn to_row(&self) -> [f32; 15] {
        let mut row = [0.0; 15];
        row[..4].copy_from_slice(&self.bbox);
        row[4] = self.score;
        for (i, [x, y]) in self.landmarks.iter().enumerate() {
            row[5 + 2 * i] = *x;
            row[6 + 2 * i] = *y;
        }
        row
    }
}

/// The thresholds of `detect_faces`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectOptions {
    /// Faces must score above this (`conf_threshold`, 0.8).
    pub conf_threshold: f32,
    /// Boxes overlapping a better one by more than this IoU are dropped (`nms_threshold`,
    /// 0.4).
    pub nms_threshold: f32,
}

impl Default for DetectOptions {
    fn default() -> Self {
        Self {
            conf_threshold: 0.8,
            nms_threshold: 0.4,
        }
    }
}

/// `PriorBox(cfg, image_size=(h, w)).forward()`: per level, per position (row-major), per
/// anchor size, `[cx, cy, s_x, s_y]` relative to the image. Computed in `f64` and stored as
/// `f32`, as the original builds a Python list and converts it.
pub fn priors(h: usize, w: usize) -> Vec<[f32; 4]> {
    let mut out = Vec::new();
    for (k, &step) in STEPS.iter().enumerate() {
        let (fh, fw) = (h.div_ceil(step), w.div_ceil(step));
        for i in 0..fh {
            for j in 0..fw {
                for &min_size in &MIN_SIZES[k] {
                    let cx = (j as f64 + 0.5) * step as f64 / w as f64;
                    let cy = (i as f64 + 0.5) * step as f64 / h as f64;
                    out.push([cx, cy, min_size / w as f64, min_size / h as f64].map(|v| v as f32));
                }
            }
        }
    }
    out
}

/// `decode(loc, priors, variance) * [w, h, w, h]`: boxes `[x1, y1, x2, y2]` in pixels.
pub fn decode_box(loc: [f32; 4], prior: [f32; 4], w: f32, h: f32) -> [f32; 4] {
    let cx = prior[0] + loc[0] * VARIANCE[0] * prior[2];
    let cy = prior[1] + loc[1] * VARIANCE[0] * prior[3];
    let bw = prior[2] * (loc[2] * VARIANCE[1]).exp();
    let bh = prior[3] * (loc[3] * VARIANCE[1]).exp();
    let (x1, y1) = (cx - bw / 2.0, cy - bh / 2.0);
    [x1 * w, y1 * h, (bw + x1) * w, (bh + y1) * h]
}

/// `decode_landm(pre, priors, variance) * [w, h] * 5`: landmarks in pixels.
pub fn decode_landmarks(pre: [f32; 10], prior: [f32; 4], w: f32, h: f32) -> [[f32; 2]; 5] {
    std::array::from_fn(|i| {
        [
            (prior[0] + pre[2 * i] * VARIANCE[0] * prior[2]) * w,
            (prior[1] + pre[2 * i + 1] * VARIANCE[0] * prior[3]) * h,
        ]
    })
}

/// `torchvision.ops.nms`: the indices kept, best first. `boxes` are in descending score
/// order already (as `detect_faces` passes them; the stable sort keeps that order).
pub fn nms(boxes: &[[f32; 4]], threshold: f32) -> Vec<usize> {
    let area = |b: &[f32; 4]| (b[2] - b[0]) * (b[3] - b[1]);
    let mut suppressed = vec![false; boxes.len()];
    let mut keep = Vec::new();
    for i in 0..boxes.len() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        let a = &boxes[i];
        for j in i + 1..boxes.len() {
            if suppressed[j] {
                continue;
            }
            let b = &boxes[j];
            let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
            let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
            let inter = iw * ih;
            if inter / (area(a) + area(b) - inter) > threshold {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// The decoded candidates of one image, before thresholding: boxes, scores and landmarks
/// for every prior.
#[derive(Debug, Clone, Default)]
pub struct Candidates {
    /// Boxes in pixels.
    pub boxes: Vec<[f32; 4]>,
    /// Face scores.
    pub scores: Vec<f32>,
    /// Landmarks in pixels.
    pub landmarks: Vec<[[f32; 2]; 5]>,
}

/// Decodes the first image of `raw` for an `h × w` input.
///
/// # Errors
///
/// If `raw` does not hold one row per prior of an `h × w` image.
pub fn decode(raw: &RawDetections, h: usize, w: usize) -> Result<Candidates> {
    let priors = priors(h, w);
    let values = |t: &Tensor<3>| -> Result<Vec<f32>> {
        let [_, p, v] = t.dims();
        if p != priors.len() {
            return Err(Error::InvalidArgument {
                what: "RetinaFace outputs".into(),
                reason: format!("{p} rows for {} priors of a {h}×{w} image", priors.len()),
            });
        }
        host_values(
            t.clone().slice([0..1, 0..p, 0..v]).into_data(),
            "RetinaFace outputs",
        )
    };
    let (loc, conf, landms) = (
        values(&raw.loc)?,
        values(&raw.conf)?,
        values(&raw.landmarks)?,
    );
    let (fw, fh) = (w as f32, h as f32);
    let mut out = Candidates::default();
    for (i, prior) in priors.iter().enumerate() {
        let l: [f32; 4] = std::array::from_fn(|k| loc[4 * i + k]);
        let m: [f32; 10] = std::array::from_fn(|k| landms[10 * i + k]);
        out.boxes.push(decode_box(l, *prior, fw, fh));
        out.scores.push(conf[2 * i + 1]);
        out.landmarks.push(decode_landmarks(m, *prior, fw, fh));
    }
    Ok(out)
}

impl Candidates {
    /// `detect_faces`' selection: scores above the threshold, sorted descending (ties in
    /// reverse index order, as NumPy's `argsort()[::-1]`), then NMS.
    pub fn select(&self, options: &DetectOptions) -> Vec<Detection> {
        let mut order: Vec<usize> = (0..self.scores.len())
            .filter(|&i| self.scores[i] > options.conf_threshold)
            .collect();
        order.sort_by(|&a, &b| self.scores[a].total_cmp(&self.scores[b]));
        order.reverse();
        let boxes: Vec<[f32; 4]> = order.iter().map(|&i| self.boxes[i]).collect();
        nms(&boxes, options.nms_threshold)
            .into_iter()
            .map(|k| {
                let i = order[k];
                Detection {
                    bbox: self.boxes[i],
                    score: self.scores[i],
                    landmarks: self.landmarks[i],
                }
            })
            .collect()
    }
}

/// An `H × W × 3` image as the network's input: `[1, 3, H, W]` minus [`MEAN`].
pub fn input_tensor(image: &Mat<u8>, device: &Device) -> Result<Tensor<4>> {
    image.expect_channels(3, "RetinaFace input")?;
    let (h, w) = (image.rows, image.cols);
    let mut chw = vec![0f32; 3 * h * w];
    for (p, px) in image.data.chunks_exact(3).enumerate() {
        for c in 0..3 {
            chw[c * h * w + p] = f32::from(px[c]) - MEAN[c];
        }
    }
    Ok(Tensor::from_data(
        TensorData::new(chw, [1, 3, h, w]),
        device,
    ))
}

impl RetinaFace {
    /// `detect_faces(image, conf_threshold, nms_threshold, use_origin_size=True)`: the faces
    /// of an `H × W × 3` image, best first. The image's channels are fed as they are (DiffBIR
    /// passes RGB to a network trained on BGR).
    ///
    /// # Errors
    ///
    /// If the image is not three-channel or is empty.
    pub fn detect(
        &self,
        image: &Mat<u8>,
        options: &DetectOptions,
        device: &Device,
    ) -> Result<Vec<Detection>> {
        if image.rows == 0 || image.cols == 0 {
            return Err(Error::InvalidArgument {
                what: "face detection".into(),
                reason: "the image is empty".into(),
            });
        }
        let raw = self.forward(input_tensor(image, device)?);
        Ok(decode(&raw, image.rows, image.cols)?.select(options))
    }
}
