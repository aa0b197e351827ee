//! Builders of the face cases (`testing/fixtures/face`, written by
//! `xtask/reference/gen_face_cases.py`): RetinaFace, ParseNet, the OpenCV operations of the
//! face helper, detection, alignment and paste-back.

use anyhow::{Result, bail};
use burn::tensor::Device;
use diffbir::face::cv::Mat;
use diffbir::face::detect::{self, DetectOptions};
use diffbir::face::{PARSENET_KEYS, ParseNetConfig, RETINAFACE_KEYS, RetinaFaceConfig};

use super::{Case, Outputs, weights};

/// A stored `[H, W, C]` (or `[H, W]`) tensor as an image.
fn mat<T: FromStored>(case: &Case, name: &str) -> Result<Mat<T>> {
    let t = case.stored(name)?;
    let (rows, cols, channels) = match t.shape[..] {
        [h, w] => (h, w, 1),
        [h, w, c] => (h, w, c),
        _ => bail!("`{name}` is not an image: shape {:?}", t.shape),
    };
    Ok(Mat::new(
        rows,
        cols,
        channels,
        t.values.iter().map(|&v| T::from_stored(v)).collect(),
    )?)
}

/// Element types of images read from a case.
trait FromStored {
    fn from_stored(v: f64) -> Self;
}

impl FromStored for u8 {
    fn from_stored(v: f64) -> Self {
        v as u8
    }
}

impl FromStored for f32 {
    fn from_stored(v: f64) -> Self {
        v as f32
    }
}

impl FromStored for f64 {
    fn from_stored(v: f64) -> Self {
        v
    }
}

/// Records an image as `[H, W, C]` (or `[H, W]` when `flat`).
fn record<T: Copy + Into<f64>>(out: &mut Outputs, name: &str, m: &Mat<T>, flat: bool) {
    let shape = if flat {
        vec![m.rows, m.cols]
    } else {
        vec![m.rows, m.cols, m.channels]
    };
    out.values(name, shape, m.data.iter().map(|&v| v.into()).collect());
}

/// `retinaface_forward`: raw outputs, priors, decoding and `detect_faces`.
pub fn retinaface(case: &Case, device: &Device) -> Result<Outputs> {
    let cfg = case.config(RetinaFaceConfig::mobilenet025())?;
    cfg.validate()?;
    let mut model = cfg.init(device);
    weights::load(case, &mut model, &RETINAFACE_KEYS)?;
    let image = mat::<u8>(case, "input.image")?;
    let raw = model.forward(detect::input_tensor(&image, device)?);
    let candidates = detect::decode(&raw, image.rows, image.cols)?;
    let options = DetectOptions {
        conf_threshold: case.field("/conf_threshold")?.as_f64().unwrap_or(0.8) as f32,
        nms_threshold: case.field("/nms_threshold")?.as_f64().unwrap_or(0.4) as f32,
    };
    let detections = candidates.select(&options);
    let priors = detect::priors(image.rows, image.cols);
    let mut out = Outputs::default();
    let flat = |rows: &mut dyn Iterator<Item = f32>| rows.map(f64::from).collect::<Vec<_>>();
    out.values(
        "output.priors",
        vec![priors.len(), 4],
        flat(&mut priors.iter().flatten().copied()),
    );
    out.values(
        "output.boxes",
        vec![candidates.boxes.len(), 4],
        flat(&mut candidates.boxes.iter().flatten().copied()),
    );
    out.values(
        "output.points",
        vec![candidates.landmarks.len(), 10],
        flat(&mut candidates.landmarks.iter().flatten().flatten().copied()),
    );
    out.values(
        "output.detections",
        vec![detections.len(), 15],
        flat(&mut detections.iter().flat_map(|d| d.to_row())),
    );
    out.tensor("output.loc", raw.loc);
    out.tensor("output.conf", raw.conf);
    out.tensor("output.landmarks", raw.landmarks);
    Ok(out)
}

/// `parsenet_forward`.
pub fn parsenet(case: &Case, device: &Device) -> Result<Outputs> {
    let cfg = case.config(ParseNetConfig::new())?;
    cfg.validate()?;
    let mut model = cfg.init(device);
    weights::load(case, &mut model, &PARSENET_KEYS)?;
    let parsing = model.forward(case.float::<4>("input.x", device)?);
    let mut out = Outputs::default();
    out.tensor("output.mask", parsing.mask);
    out.tensor("output.img", parsing.img);
    Ok(out)
}
