//! The planes PSNR and SSIM are computed on, with the arithmetic of each original: which
//! luma, in which precision, rounded where.

use crate::image::MetricImage;

/// A plane of `f64` samples, `width` per row.
#[derive(Debug, Clone)]
pub(crate) struct Plane {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f64>,
}

/// `v / 255` as `numpy` and `torch` compute it on a `float32` array.
fn unit(v: u8) -> f32 {
    f32::from(v) / 255.0
}

/// BasicSR's planes (`basicsr/metrics/metric_util.py`, `to_y_channel`;
/// `basicsr/utils/color_util.py`, `bgr2ycbcr`), in BasicSR's channel order, as it reads
/// images with `cv2.imread`: B, G, R.
///
/// With `y_channel` a colour image becomes its BT.601 luma in the 16–235 range: the samples
/// as `float32` `v/255`, the weighted sum `24.966·B + 128.553·G + 65.481·R + 16` in `f64`
/// (numpy promotes the coefficient list), `/255` rounded to `float32`, then `·255` in
/// `float32`. A gray image takes the same `float32` round trip without the weights.
pub(crate) fn basicsr_planes(image: &MetricImage, y_channel: bool) -> Vec<Plane> {
    let (width, height, c) = (image.width(), image.height(), image.channels());
    let plane = |f: &dyn Fn(&[u8]) -> f64| Plane {
        width,
        height,
        data: image.data().chunks_exact(c).map(f).collect(),
    };
    match (y_channel, c) {
        (true, 3) => vec![plane(&|px| {
            let [r, g, b] = [px[0], px[1], px[2]].map(|v| f64::from(unit(v)));
            let y = b * 24.966 + g * 128.553 + r * 65.481 + 16.0;
            f64::from((y / 255.0) as f32 * 255.0)
        })],
        (true, _) => vec![plane(&|px| f64::from(unit(px[0]) * 255.0))],
        (false, 3) => [2, 1, 0]
            .into_iter()
            .map(|ch| plane(&|px| f64::from(px[ch])))
            .collect(),
        (false, _) => vec![plane(&|px| f64::from(px[0]))],
    }
}

/// pyiqa's inputs (`pyiqa/utils/color_util.py`, `to_y_channel`): the image as torchvision's
/// `ToTensor` gives it (`float32` `v/255`, gray repeated to RGB), in R, G, B order, or with
/// `y_channel` the luma of YIQ, `0.299·R + 0.587·G + 0.114·B` in `float32`.
///
/// With `round_255` the planes are scaled to 0–255 in `float32` and rounded (half to even),
/// as pyiqa's SSIM does (`preprocess_rgb` with `data_range = 255`).
pub(crate) fn pyiqa_planes(image: &MetricImage, y_channel: bool, round_255: bool) -> Vec<Plane> {
    let (width, height, c) = (image.width(), image.height(), image.channels());
    let finish = |v: f32| {
        if round_255 {
            f64::from((v * 255.0).round_ties_even())
        } else {
            f64::from(v)
        }
    };
    let plane = |f: &dyn Fn(&[u8]) -> f32| Plane {
        width,
        height,
        data: image
            .data()
            .chunks_exact(c)
            .map(|px| finish(f(px)))
            .collect(),
    };
    let sample = |px: &[u8], ch: usize| unit(px[ch.min(c - 1)]);
    if y_channel {
        vec![plane(&|px| {
            let (r, g, b) = (sample(px, 0), sample(px, 1), sample(px, 2));
            // Separate products and sums, left to right, as torch's float32 matmul of K = 3
            // gives them (no fused multiply-adds).
            (r * 0.299 + g * 0.587) + b * 0.114
        })]
    } else {
        (0..3).map(|ch| plane(&|px| sample(px, ch))).collect()
    }
}
