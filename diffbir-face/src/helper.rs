//! DiffBIR's face helper (`XPixelGroup/DiffBIR@3f8b530:diffbir/utils/face.py`,
//! `FaceRestoreHelper`, facexlib's with DiffBIR's edits): the canvas, the detection with its
//! filters, the alignment to the FFHQ template and the inverse affine of each face. The
//! paste-back is [`crate::paste`].

use burn::tensor::Device;
use diffbir_core::{Error, Result};

use crate::cv::{self, Affine, Mat};
use crate::detect::{DetectOptions, Detection};
use crate::retinaface::RetinaFace;

/// The five FFHQ landmarks of a 512 × 512 aligned face (facexlib's template): eyes, nose,
/// mouth corners.
pub const FFHQ_TEMPLATE_512: [[f64; 2]; 5] = [
    [192.98138, 239.94708],
    [318.90277, 240.1936],
    [256.63416, 314.01935],
    [201.26117, 371.41043],
    [313.08905, 371.15118],
];

/// The grey the helper fills a crop with where it leaves the photo (`borderValue`).
pub const CROP_BORDER: [f64; 4] = [135.0, 133.0, 132.0, 0.0];

/// The template scaled to `face_size` (`face_template · face_size / 512`).
pub fn template(face_size: usize) -> [[f64; 2]; 5] {
    let s = face_size as f64 / 512.0;
    FFHQ_TEMPLATE_512.map(|p| p.map(|v| v * s))
}

/// Which of the detected faces to keep (`get_face_landmarks_5`' `only_keep_largest` and
/// `only_center_face`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FaceSelection {
    /// Every face (DiffBIR's choice).
    #[default]
    All,
    /// The face whose box centre is nearest the canvas' centre.
    Center,
    /// The face with the largest box (clipped to the canvas).
    Largest,
}

/// The helper's settings (DiffBIR's values by default).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HelperOptions {
    /// Side of the aligned crops (`face_size`, 512).
    pub face_size: usize,
    /// The detection image's short side is raised to this (`resize`, 640); `None` detects
    /// on the canvas as it is.
    pub detect_short_side: Option<usize>,
    /// Faces whose "eye distance" is below this are dropped (`eye_dist_threshold`, 5). The
    /// measure is facexlib's: `hypot(l0.y − l1.y, l1.x − l2.x)` of the landmarks.
    pub eye_dist_threshold: Option<f32>,
    /// Which faces to keep.
    pub selection: FaceSelection,
    /// The detector's thresholds.
    pub detect: DetectOptions,
}

impl Default for HelperOptions {
    fn default() -> Self {
        Self {
            face_size: 512,
            detect_short_side: Some(640),
            eye_dist_threshold: Some(5.0),
            selection: FaceSelection::All,
            detect: DetectOptions::default(),
        }
    }
}

/// One face of a photo: its detection and its alignment.
#[derive(Debug, Clone, PartialEq)]
pub struct Face {
    /// Box, score and landmarks in canvas pixels.
    pub detection: Detection,
    /// The similarity transform from the canvas to the aligned crop.
    pub affine: Affine,
    /// Its inverse (crop to canvas), as `invertAffineTransform` computes it.
    pub inverse_affine: Affine,
}

/// `read_image`: an 8-bit image as the helper's canvas. Gray becomes three channels, a fourth
/// (alpha) channel is dropped, and a canvas whose short side is below 512 is enlarged to 512
/// (`cv2.resize(fx = fy = 512/short side)`, bilinear).
///
/// # Errors
///
/// If the image is empty or has 2 or more than 4 channels.
pub fn canvas(image: &Mat<u8>) -> Result<Mat<u8>> {
    if image.rows == 0 || image.cols == 0 {
        return Err(Error::InvalidArgument {
            what: "face canvas".into(),
            reason: "the image is empty".into(),
        });
    }
    let rgb = match image.channels {
        3 => image.clone(),
        1 => Mat::new(
            image.rows,
            image.cols,
            3,
            image.data.iter().flat_map(|&v| [v, v, v]).collect(),
        )?,
        4 => Mat::new(
            image.rows,
            image.cols,
            3,
            image
                .data
                .chunks_exact(4)
                .flat_map(|p| [p[0], p[1], p[2]])
                .collect(),
        )?,
        other => {
            return Err(Error::InvalidArgument {
                what: "face canvas".into(),
                reason: format!("{other} channels (expected gray, RGB or RGBA)"),
            });
        }
    };
    let short = rgb.rows.min(rgb.cols);
    Ok(if short < 512 {
        cv::resize_linear(&rgb, (0, 0), Some(512.0 / short as f64))
    } else {
        rgb
    })
}

/// `get_face_landmarks_5`: the faces RetinaFace finds on the canvas (enlarged to the
/// detection size), back in canvas pixels, filtered and selected as the options say.
///
/// # Errors
///
/// If the canvas is not a three-channel image.
pub fn find_faces(
    detector: &RetinaFace,
    canvas: &Mat<u8>,
    options: &HelperOptions,
    device: &Device,
) -> Result<Vec<Detection>> {
    let (h, w) = (canvas.rows, canvas.cols);
    let scale = options
        .detect_short_side
        .map_or(1.0, |r| (r as f64 / h.min(w) as f64).max(1.0));
    let image = cv::resize_linear(
        canvas,
        ((w as f64 * scale) as usize, (h as f64 * scale) as usize),
        None,
    );
    let s = scale as f32;
    let found = detector.detect(&image, &options.detect, device)?;
    let faces: Vec<Detection> = found
        .into_iter()
        .map(|d| Detection {
            bbox: d.bbox.map(|v| v / s),
            // The original divides the whole row by the scale, the score included.
            score: d.score / s,
            landmarks: d.landmarks.map(|p| p.map(|v| v / s)),
        })
        .filter(|d| {
            options.eye_dist_threshold.is_none_or(|t| {
                // facexlib's measure (bbox[6] − bbox[8], bbox[7] − bbox[9]).
                let l = &d.landmarks;
                let (a, b) = (l[0][1] - l[1][1], l[1][0] - l[2][0]);
                (a * a + b * b).sqrt() >= t
            })
        })
        .collect();
    Ok(select(faces, options.selection, h, w))
}

/// `get_largest_face` / `get_center_face`.
fn select(faces: Vec<Detection>, selection: FaceSelection, h: usize, w: usize) -> Vec<Detection> {
    if faces.is_empty() {
        return faces;
    }
    let best = |key: &dyn Fn(&Detection) -> f64, largest: bool| {
        let mut best = 0;
        for (i, d) in faces.iter().enumerate() {
            let (k, b) = (key(d), key(&faces[best]));
            if (largest && k > b) || (!largest && k < b) {
                best = i;
            }
        }
        vec![faces[best]]
    };
    match selection {
        FaceSelection::All => faces,
        FaceSelection::Largest => best(
            &|d| {
                let [x1, y1, x2, y2] = d.bbox;
                let clip = |v: f32, n: usize| v.clamp(0.0, n as f32);
                f64::from((clip(x2, w) - clip(x1, w)) * (clip(y2, h) - clip(y1, h)))
            },
            true,
        ),
        FaceSelection::Center => best(
            &|d| {
                let [x1, y1, x2, y2] = d.bbox;
                let dx = f64::from((x1 + x2) / 2.0) - w as f64 / 2.0;
                let dy = f64::from((y1 + y2) / 2.0) - h as f64 / 2.0;
                (dx * dx + dy * dy).sqrt()
            },
            false,
        ),
    }
}

/// `align_warp_face` for one face: the similarity from its landmarks to the template
/// (`estimateAffinePartial2D`, LMEDS) and the `face_size` crop (grey border). `None` when
/// OpenCV would find no transform (degenerate landmarks).
pub fn align(canvas: &Mat<u8>, detection: &Detection, face_size: usize) -> Option<(Face, Mat<u8>)> {
    let from = detection.landmarks.map(|p| p.map(f64::from));
    let (affine, _) = cv::estimate_affine_partial_lmeds(&from, &template(face_size))?;
    let crop = cv::warp_affine(canvas, &affine, (face_size, face_size), CROP_BORDER);
    Some((
        Face {
            detection: *detection,
            affine,
            inverse_affine: cv::invert_affine(&affine),
        },
        crop,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The similarity `scale · R(angle) · p + t` as a matrix.
    fn similarity(scale: f64, degrees: f64, t: [f64; 2]) -> Affine {
        let (s, c) = degrees.to_radians().sin_cos();
        [[scale * c, -scale * s, t[0]], [scale * s, scale * c, t[1]]]
    }

    fn apply(m: &Affine, [x, y]: [f64; 2]) -> [f64; 2] {
        [
            m[0][0] * x + m[0][1] * y + m[0][2],
            m[1][0] * x + m[1][1] * y + m[1][2],
        ]
    }

    fn detection(landmarks: [[f64; 2]; 5]) -> Detection {
        Detection {
            bbox: [0.0; 4],
            score: 1.0,
            landmarks: landmarks.map(|p| p.map(|v| v as f32)),
        }
    }

    /// A smooth three-channel test image.
    fn smooth(rows: usize, cols: usize) -> Mat<u8> {
        let data = (0..rows * cols * 3)
            .map(|i| {
                let (p, c) = (i / 3, i % 3);
                let (y, x) = ((p / cols) as f64, (p % cols) as f64);
                (127.0 + 100.0 * ((x / 23.0 + c as f64).sin() * (y / 31.0).cos())) as u8
            })
            .collect();
        Mat::new(rows, cols, 3, data).unwrap()
    }

    #[test]
    fn a_face_drawn_at_a_known_similarity_aligns_back_to_the_template_within_a_pixel() {
        // Bright 3 × 3 dots at the template's landmarks of a 512 face, drawn into a photo
        // rotated by 23°, scaled by 0.7 and moved.
        let mut face = Mat::zeros(512, 512, 1);
        for [x, y] in template(512) {
            let (x, y) = (x.round() as usize, y.round() as usize);
            for yy in y - 1..=y + 1 {
                for xx in x - 1..=x + 1 {
                    face.data[yy * 512 + xx] = 255u8;
                }
            }
        }
        let to_photo = similarity(0.7, 23.0, [180.0, 40.0]);
        let photo = cv::warp_affine(&face, &to_photo, (700, 600), [0.0; 4]);
        let landmarks = template(512).map(|p| apply(&to_photo, p));
        let photo3 = Mat::new(
            photo.rows,
            photo.cols,
            3,
            photo.data.iter().flat_map(|&v| [v, v, v]).collect(),
        )
        .unwrap();
        let (aligned, crop) = align(&photo3, &detection(landmarks), 512).unwrap();
        // The matrix is the inverse similarity …
        let back = cv::invert_affine(&to_photo);
        for (row, want) in aligned.affine.iter().zip(&back) {
            for (a, b) in row.iter().zip(want) {
                assert!(
                    (a - b).abs() < 1e-3 * b.abs().max(1.0),
                    "{row:?} vs {want:?}"
                );
            }
        }
        // … and each dot lands on its template point within a pixel.
        for [tx, ty] in template(512) {
            let (mut sum, mut sx, mut sy) = (0.0, 0.0, 0.0);
            for y in ty as usize - 6..ty as usize + 7 {
                for x in tx as usize - 6..tx as usize + 7 {
                    let v = f64::from(crop.pixel(y, x)[0]);
                    sum += v;
                    sx += v * x as f64;
                    sy += v * y as f64;
                }
            }
            let (cx, cy) = (sx / sum, sy / sum);
            let (ex, ey) = (tx.round(), ty.round());
            assert!(
                (cx - ex).abs() < 1.0 && (cy - ey).abs() < 1.0,
                "dot at ({cx:.2}, {cy:.2}), template ({ex}, {ey})"
            );
        }
    }

    #[test]
    fn align_then_warp_back_reproduces_the_photo_around_the_face() {
        let photo = smooth(600, 640);
        let to_photo = similarity(0.5, -15.0, [200.0, 150.0]);
        let landmarks = template(512).map(|p| apply(&to_photo, p));
        let (face, crop) = align(&photo, &detection(landmarks), 512).unwrap();
        let back = cv::warp_affine(&crop, &face.inverse_affine, (640, 600), [0.0; 4]);
        // Inside the face (the template's span), two bilinear warps stay within a few levels.
        let mut worst = 0i32;
        for p in template(512) {
            let [x, y] = apply(&to_photo, p);
            let (x, y) = (x.round() as usize, y.round() as usize);
            for c in 0..3 {
                let d = i32::from(back.pixel(y, x)[c]) - i32::from(photo.pixel(y, x)[c]);
                worst = worst.max(d.abs());
            }
        }
        assert!(worst <= 3, "round trip differs by {worst}");
    }

    #[test]
    fn the_canvas_is_rgb_with_a_512_short_side_at_least() {
        let gray = Mat::new(100, 80, 1, vec![7u8; 8000]).unwrap();
        let c = canvas(&gray).unwrap();
        assert_eq!((c.rows, c.cols, c.channels), (640, 512, 3));
        assert!(c.data.iter().all(|&v| v == 7));
        let rgba = Mat::new(600, 700, 4, vec![9u8; 600 * 700 * 4]).unwrap();
        let c = canvas(&rgba).unwrap();
        assert_eq!((c.rows, c.cols, c.channels), (600, 700, 3));
        assert!(canvas(&Mat::new(0, 5, 3, vec![]).unwrap()).is_err());
        assert!(canvas(&Mat::new(2, 2, 2, vec![0; 8]).unwrap()).is_err());
    }

    #[test]
    fn selection_keeps_the_central_or_the_largest_face() {
        let face = |bbox: [f32; 4]| Detection {
            bbox,
            score: 0.9,
            landmarks: [[0.0; 2]; 5],
        };
        let faces = vec![
            face([0.0, 0.0, 100.0, 100.0]),
            face([450.0, 450.0, 550.0, 550.0]),
            face([-400.0, 600.0, 300.0, 1200.0]),
        ];
        let center = select(faces.clone(), FaceSelection::Center, 1000, 1000);
        assert_eq!(center, vec![faces[1]]);
        // The third box is the largest once clipped to the canvas (300 × 400).
        let largest = select(faces.clone(), FaceSelection::Largest, 1000, 1000);
        assert_eq!(largest, vec![faces[2]]);
        assert_eq!(select(faces.clone(), FaceSelection::All, 1000, 1000), faces);
        assert!(select(vec![], FaceSelection::Center, 10, 10).is_empty());
    }
}
