//! `paste_faces_to_input_image` of DiffBIR's face helper (upscale factor 1, no face
//! upsampler): each restored face warped back onto the restored background, through a
//! square mask eroded and blurred by the face's size, and — with `use_parse` — the ParseNet
//! mask of the face (hair, neck, clothes and background excluded), in NumPy's types: `f64`
//! with the parsing mask, `f32` without.

use burn::tensor::{Device, Tensor, TensorData};
use diffbir_core::{Error, Result};

use crate::cv::{self, Mat};
use crate::helper::Face;
use crate::host_values;
use crate::parsenet::ParseNet;

/// Parsing classes kept (255) or cut (0) by the mask: `MASK_COLORMAP` (background, neck,
/// clothes, hair and hat are cut).
const MASK_COLORMAP: [u8; 19] = [
    0, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 0, 255, 0, 0, 0,
];

/// NumPy's pairwise summation of an `f32` array (`np.sum`), whose rounding decides the blur
/// width.
fn numpy_sum(a: &[f32]) -> f32 {
    const BLOCK: usize = 128;
    if a.len() < 8 {
        a.iter().fold(0.0, |s, &v| s + v)
    } else if a.len() <= BLOCK {
        let mut r: [f32; 8] = std::array::from_fn(|j| a[j]);
        let full = a.len() - a.len() % 8;
        for chunk in a[8..full].chunks_exact(8) {
            for (r, v) in r.iter_mut().zip(chunk) {
                *r += v;
            }
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &v in &a[full..] {
            res += v;
        }
        res
    } else {
        let mut half = a.len() / 2;
        half -= half % 8;
        numpy_sum(&a[..half]) + numpy_sum(&a[half..])
    }
}

/// The soft square mask of a face on the canvas: the warped square eroded by 2, then by twice
/// `√area / 20`, then blurred over that width (`w_edge`).
fn square_mask(face_size: usize, face: &Face, (h, w): (usize, usize)) -> (Mat<f32>, Mat<f32>) {
    let ones = Mat::new(face_size, face_size, 1, vec![1f32; face_size * face_size])
        .expect("a square of ones");
    let inv_mask = cv::warp_affine(&ones, &face.inverse_affine, (w, h), [0.0; 4]);
    let eroded = cv::erode(&inv_mask, 2);
    let area = numpy_sum(&eroded.data);
    let w_edge = (area.sqrt() as i64 / 20) as usize;
    let center = cv::erode(&eroded, w_edge * 2);
    let soft = cv::gaussian_blur(&center, w_edge * 2 + 1, 0.0);
    (eroded, soft)
}

/// The ParseNet mask of a restored face on the canvas: argmax classes mapped through
/// [`MASK_COLORMAP`], blurred twice (101 × 101, σ 11), a 10-pixel border cleared, scaled to
/// `[0, 1]` and warped back (`f64`).
fn parse_mask(
    parser: &ParseNet,
    restored: &Mat<u8>,
    face: &Face,
    (h, w): (usize, usize),
    device: &Device,
) -> Result<Mat<f64>> {
    // The mask is made at 512 and `cv2.resize`d to the face size: the identity at 512, the
    // only size the helper pastes.
    if restored.rows != 512 {
        return Err(Error::Unsupported(format!(
            "the parsing mask of a {}-pixel face (the helper parses 512-pixel faces)",
            restored.rows
        )));
    }
    let input = cv::resize_linear(restored, (512, 512), None);
    let n = 512 * 512;
    // img2tensor(bgr2rgb=True) on the (already RGB) face swaps the channels, as the original.
    let mut chw = vec![0f32; 3 * n];
    for (p, px) in input.data.chunks_exact(3).enumerate() {
        for c in 0..3 {
            chw[c * n + p] = (f32::from(px[2 - c]) / 255.0 - 0.5) / 0.5;
        }
    }
    let x = Tensor::<4>::from_data(TensorData::new(chw, [1, 3, 512, 512]), device);
    let classes = parser.forward(x).mask.argmax(1);
    let classes: Vec<i64> = host_values(classes.into_data(), "ParseNet output")?;
    let values = classes
        .iter()
        .map(|&c| f64::from(MASK_COLORMAP.get(c as usize).copied().unwrap_or(0)))
        .collect();
    let mut mask = Mat::new(512, 512, 1, values)?;
    mask = cv::gaussian_blur(&cv::gaussian_blur(&mask, 101, 11.0), 101, 11.0);
    // A 10-pixel border cleared, then scaled to [0, 1].
    for (i, v) in mask.data.iter_mut().enumerate() {
        let (y, x) = (i / 512, i % 512);
        *v = if (10..502).contains(&y) && (10..502).contains(&x) {
            *v / 255.0
        } else {
            0.0
        };
    }
    Ok(cv::warp_affine(
        &mask,
        &face.inverse_affine,
        (w, h),
        [0.0; 4],
    ))
}

/// `paste_faces_to_input_image(upsample_img=background)`: the restored faces pasted onto the
/// background, which is first resized (Lanczos-4) to the canvas size `(h, w)`. With a
/// parser (`use_parse`), each face's mask is the smaller of the square mask and its parsing
/// mask.
///
/// # Errors
///
/// If a face is not a square three-channel image, the background not three-channel, or the
/// faces and their transforms differ in number.
pub fn paste_faces(
    background: &Mat<u8>,
    (h, w): (usize, usize),
    faces: &[Face],
    restored: &[Mat<u8>],
    parser: Option<&ParseNet>,
    device: &Device,
) -> Result<Mat<u8>> {
    background.expect_channels(3, "restored background")?;
    if faces.len() != restored.len() {
        return Err(Error::InvalidArgument {
            what: "paste-back".into(),
            reason: format!(
                "{} faces for {} restored crops",
                faces.len(),
                restored.len()
            ),
        });
    }
    let canvas = cv::resize_lanczos4(background, (w, h), None);
    let mut acc: Vec<f64> = canvas.data.iter().map(|&v| f64::from(v)).collect();
    let mut acc32: Vec<f32> = canvas.data.iter().map(|&v| f32::from(v)).collect();
    for (face, crop) in faces.iter().zip(restored) {
        crop.expect_channels(3, "restored face")?;
        if crop.rows != crop.cols {
            return Err(Error::InvalidArgument {
                what: "restored face".into(),
                reason: format!("{} × {} is not square", crop.cols, crop.rows),
            });
        }
        let inv_restored = cv::warp_affine(crop, &face.inverse_affine, (w, h), [0.0; 4]);
        let (eroded, soft) = square_mask(crop.rows, face, (h, w));
        match parser {
            Some(parser) => {
                let parse = parse_mask(parser, crop, face, (h, w), device)?;
                for p in 0..h * w {
                    let s = f64::from(soft.data[p]);
                    let m = if parse.data[p] < s { parse.data[p] } else { s };
                    for c in 0..3 {
                        let i = p * 3 + c;
                        let pasted = eroded.data[p] * f32::from(inv_restored.data[i]);
                        acc[i] = m * f64::from(pasted) + (1.0 - m) * acc[i];
                    }
                }
            }
            None => {
                for p in 0..h * w {
                    let m = soft.data[p];
                    for c in 0..3 {
                        let i = p * 3 + c;
                        let pasted = eroded.data[p] * f32::from(inv_restored.data[i]);
                        acc32[i] = m * pasted + (1.0 - m) * acc32[i];
                    }
                }
            }
        }
    }
    // `astype(np.uint8)`: truncation (the values stay within [0, 255]).
    let data = match parser {
        Some(_) => acc.iter().map(|&v| v as u8).collect(),
        None => acc32.iter().map(|&v| v as u8).collect(),
    };
    Mat::new(h, w, 3, data)
}
