//! Builders of the face cases (`testing/fixtures/face`, written by
//! `xtask/reference/gen_face_cases.py`): RetinaFace, ParseNet, the OpenCV operations of the
//! face helper, detection, alignment and paste-back.

use anyhow::{Result, bail};
use burn::tensor::Device;
use diffbir::face::cv::{self, Mat};
use diffbir::face::detect::{self, DetectOptions, Detection};
use diffbir::face::{
    Face, FaceSelection, HelperOptions, PARSENET_KEYS, ParseNetConfig, RETINAFACE_KEYS,
    RetinaFaceConfig, helper, paste,
};

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

/// A stored 2 × 3 matrix.
fn affine(case: &Case, name: &str) -> Result<cv::Affine> {
    let t = case.stored(name)?;
    if t.shape != [2, 3] {
        bail!("`{name}` is not a 2 × 3 matrix: shape {:?}", t.shape);
    }
    let v = &t.values;
    Ok([[v[0], v[1], v[2]], [v[3], v[4], v[5]]])
}

/// `opencv_ops`: each OpenCV call of the face helper on small arrays.
pub fn opencv_ops(case: &Case, _device: &Device) -> Result<Outputs> {
    let u8img = mat::<u8>(case, "input.u8")?;
    let f32img = mat::<f32>(case, "input.f32")?;
    let f64img = mat::<f64>(case, "input.f64")?;
    let big = mat::<f64>(case, "input.f64_big")?;
    let m = affine(case, "input.affine")?;
    let mut out = Outputs::default();
    for name in case.output_names() {
        let op = name.trim_start_matches("output.");
        let size_of = || -> Result<(usize, usize)> {
            let s = &case.stored(&name)?.shape;
            Ok((s[1], s[0]))
        };
        if let Some(kind) = op.strip_prefix("resize_linear_") {
            let r = if kind == "fx" {
                cv::resize_linear(&u8img, (0, 0), Some(512.0 / 23.0))
            } else {
                cv::resize_linear(&u8img, size_of()?, None)
            };
            record(&mut out, &name, &r, false);
        } else if op.starts_with("resize_lanczos4_") {
            record(
                &mut out,
                &name,
                &cv::resize_lanczos4(&u8img, size_of()?, None),
                false,
            );
        } else if let Some(k) = op.strip_prefix("gaussian_f32_k") {
            record(
                &mut out,
                &name,
                &cv::gaussian_blur(&f32img, k.parse()?, 0.0),
                true,
            );
        } else if op == "gaussian_f64_k21_s3" {
            record(&mut out, &name, &cv::gaussian_blur(&f64img, 21, 3.0), true);
        } else if op == "gaussian_f64_k101_s11" {
            record(&mut out, &name, &cv::gaussian_blur(&big, 101, 11.0), true);
        } else if let Some(k) = op.strip_prefix("erode_f32_k") {
            record(&mut out, &name, &cv::erode(&f32img, k.parse()?), true);
        } else if op == "warp_u8" {
            let border = [135.0, 133.0, 132.0, 0.0];
            record(
                &mut out,
                &name,
                &cv::warp_affine(&u8img, &m, size_of()?, border),
                false,
            );
        } else if op == "warp_u8_black" {
            record(
                &mut out,
                &name,
                &cv::warp_affine(&u8img, &m, size_of()?, [0.0; 4]),
                false,
            );
        } else if op == "warp_f32" {
            record(
                &mut out,
                &name,
                &cv::warp_affine(&f32img, &m, size_of()?, [0.0; 4]),
                true,
            );
        } else if op == "warp_f64_area" {
            record(
                &mut out,
                &name,
                &cv::warp_affine(&f64img, &m, size_of()?, [0.0; 4]),
                true,
            );
        } else if op == "inverse_affine" {
            let inv = cv::invert_affine(&m);
            out.values(&name, vec![2, 3], inv.iter().flatten().copied().collect());
        } else {
            bail!("unknown op `{op}`");
        }
    }
    Ok(out)
}

/// The stored landmarks `[F, 5, 2]` as detections (box and score zero).
fn landmark_detections(case: &Case, name: &str) -> Result<Vec<Detection>> {
    let t = case.stored(name)?;
    if t.shape.len() != 3 || t.shape[1..] != [5, 2] {
        bail!("`{name}` is not [F, 5, 2]: shape {:?}", t.shape);
    }
    Ok(t.values
        .chunks_exact(10)
        .map(|v| Detection {
            bbox: [0.0; 4],
            score: 0.0,
            landmarks: std::array::from_fn(|i| [v[2 * i] as f32, v[2 * i + 1] as f32]),
        })
        .collect())
}

/// Records aligned faces: matrices, inverse matrices and crops.
fn record_faces(out: &mut Outputs, faces: &[(Face, Mat<u8>)], size: usize) {
    let n = faces.len();
    let matrices = |pick: &dyn Fn(&Face) -> cv::Affine| -> Vec<f64> {
        faces
            .iter()
            .flat_map(|(f, _)| pick(f).into_iter().flatten())
            .collect()
    };
    out.values("output.affine", vec![n, 2, 3], matrices(&|f| f.affine));
    out.values(
        "output.inverse_affine",
        vec![n, 2, 3],
        matrices(&|f| f.inverse_affine),
    );
    out.values(
        "output.cropped_faces",
        vec![n, size, size, 3],
        faces
            .iter()
            .flat_map(|(_, c)| c.data.iter().map(|&v| f64::from(v)))
            .collect(),
    );
}

/// `face_helper_detect`: canvas, detection, filters and alignment.
pub fn helper_detect(case: &Case, device: &Device) -> Result<Outputs> {
    let cfg = case.config(RetinaFaceConfig::resnet50())?;
    cfg.validate()?;
    let mut model = cfg.init(device);
    weights::load(case, &mut model, &RETINAFACE_KEYS)?;
    let selection = if case.json.pointer("/helper/only_center_face") == Some(&true.into()) {
        FaceSelection::Center
    } else if case.json.pointer("/helper/only_keep_largest") == Some(&true.into()) {
        FaceSelection::Largest
    } else {
        FaceSelection::All
    };
    let options = HelperOptions {
        face_size: case.usize_field("/helper/face_size")?,
        detect_short_side: Some(case.usize_field("/helper/resize")?),
        eye_dist_threshold: Some(
            case.field("/helper/eye_dist_threshold")?
                .as_f64()
                .unwrap_or(5.0) as f32,
        ),
        selection,
        ..HelperOptions::default()
    };
    let canvas = helper::canvas(&mat::<u8>(case, "input.image")?)?;
    let mut out = Outputs::default();
    record(&mut out, "output.input_img", &canvas, false);
    // detect_faces on the detection image, before the helper's filters.
    let scale = (640.0 / canvas.rows.min(canvas.cols) as f64).max(1.0);
    let size = (
        (canvas.cols as f64 * scale) as usize,
        (canvas.rows as f64 * scale) as usize,
    );
    let raw = model.detect(
        &cv::resize_linear(&canvas, size, None),
        &options.detect,
        device,
    )?;
    out.values(
        "output.raw_detections",
        vec![raw.len(), 15],
        raw.iter().flat_map(|d| d.to_row()).map(f64::from).collect(),
    );
    let found = helper::find_faces(&model, &canvas, &options, device)?;
    let n = found.len();
    out.values(
        "output.landmarks",
        vec![n, 5, 2],
        found
            .iter()
            .flat_map(|d| d.landmarks.into_iter().flatten())
            .map(f64::from)
            .collect(),
    );
    out.values(
        "output.det_faces",
        vec![n, 5],
        found
            .iter()
            .flat_map(|d| d.to_row()[..5].to_vec())
            .map(f64::from)
            .collect(),
    );
    let aligned: Vec<(Face, Mat<u8>)> = found
        .iter()
        .filter_map(|d| helper::align(&canvas, d, options.face_size))
        .collect();
    record_faces(&mut out, &aligned, options.face_size);
    Ok(out)
}

/// `face_align`: alignment of given landmarks.
pub fn align(case: &Case, _device: &Device) -> Result<Outputs> {
    let face_size = case.usize_field("/helper/face_size")?;
    let canvas = helper::canvas(&mat::<u8>(case, "input.image")?)?;
    let mut out = Outputs::default();
    record(&mut out, "output.input_img", &canvas, false);
    out.values(
        "output.template",
        vec![5, 2],
        helper::template(face_size).into_iter().flatten().collect(),
    );
    let aligned = landmark_detections(case, "input.landmarks")?
        .iter()
        .map(|d| helper::align(&canvas, d, face_size))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| anyhow::anyhow!("a face could not be aligned"))?;
    record_faces(&mut out, &aligned, face_size);
    Ok(out)
}

/// `face_paste_back`: restored faces pasted onto a restored background.
pub fn paste_back(case: &Case, device: &Device) -> Result<Outputs> {
    let parser = if case.field("/helper/use_parse")?.as_bool() == Some(true) {
        let cfg = case.config(ParseNetConfig::new())?;
        cfg.validate()?;
        let mut parser = cfg.init(device);
        weights::load(case, &mut parser, &PARSENET_KEYS)?;
        Some(parser)
    } else {
        None
    };
    let size = case.stored("input.canvas_size")?.values.clone();
    let (h, w) = (size[0] as usize, size[1] as usize);
    let matrices = case.stored("input.affine")?;
    let faces: Vec<Face> = matrices
        .values
        .chunks_exact(6)
        .map(|v| {
            let affine = [[v[0], v[1], v[2]], [v[3], v[4], v[5]]];
            Face {
                detection: Detection {
                    bbox: [0.0; 4],
                    score: 0.0,
                    landmarks: [[0.0; 2]; 5],
                },
                affine,
                inverse_affine: cv::invert_affine(&affine),
            }
        })
        .collect();
    let stack = case.stored("input.restored_faces")?;
    let [_, fh, fw, fc] = stack.shape[..] else {
        bail!("`input.restored_faces` is not [F, H, W, C]");
    };
    let restored = stack
        .values
        .chunks_exact(fh * fw * fc)
        .map(|v| Mat::new(fh, fw, fc, v.iter().map(|&x| x as u8).collect()))
        .collect::<Result<Vec<_>, _>>()?;
    let background = mat::<u8>(case, "input.background")?;
    let image = paste::paste_faces(
        &background,
        (h, w),
        &faces,
        &restored,
        parser.as_ref(),
        device,
    )?;
    let mut out = Outputs::default();
    record(&mut out, "output.image", &image, false);
    Ok(out)
}
