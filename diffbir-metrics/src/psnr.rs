//! Peak signal-to-noise ratio, as BasicSR (`calculate_psnr`) and pyiqa (`psnr`) compute it.

use crate::FrOptions;
use crate::color::{Plane, basicsr_planes, pyiqa_planes};
use crate::error::{Error, Result};
use crate::image::{MetricImage, check_same_size};

/// The crop of both images for a full-reference metric that needs `needed` pixels a side.
pub(crate) fn crop_pair(
    metric: &'static str,
    needed: usize,
    restored: &MetricImage,
    reference: &MetricImage,
    options: &FrOptions,
) -> Result<(MetricImage, MetricImage)> {
    check_same_size(restored, reference)?;
    let too_small = || Error::TooSmall {
        metric,
        needed,
        crop_border: options.crop_border,
        width: restored.width(),
        height: restored.height(),
    };
    let a = restored
        .cropped(options.crop_border)
        .ok_or_else(too_small)?;
    let b = reference
        .cropped(options.crop_border)
        .ok_or_else(too_small)?;
    if a.width() < needed || a.height() < needed {
        return Err(too_small());
    }
    Ok((a, b))
}

/// The mean squared difference over every sample of the planes.
fn mse(a: &[Plane], b: &[Plane]) -> f64 {
    let (sum, count) = a
        .iter()
        .zip(b)
        .fold((0.0, 0usize), |(sum, count), (pa, pb)| {
            let s: f64 = pa
                .data
                .iter()
                .zip(&pb.data)
                .map(|(x, y)| (x - y) * (x - y))
                .sum();
            (sum + s, count + pa.data.len())
        });
    sum / count as f64
}

/// BasicSR's PSNR in dB (`basicsr/metrics/psnr_ssim.py`, `calculate_psnr`): 8-bit values in
/// `f64`, `10·log10(255² / mse)`, `+∞` for identical images, after `crop_border` pixels are
/// cut from each side and, with `y_channel`, on BasicSR's BT.601 luma (16–235, with its
/// `float32` round trips).
pub fn psnr(restored: &MetricImage, reference: &MetricImage, options: &FrOptions) -> Result<f64> {
    let (a, b) = crop_pair("psnr", 1, restored, reference, options)?;
    let mse = mse(
        &basicsr_planes(&a, options.y_channel),
        &basicsr_planes(&b, options.y_channel),
    );
    Ok(if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0 * 255.0 / mse).log10()
    })
}

/// pyiqa's PSNR in dB (`pyiqa/archs/psnr_arch.py`, metrics `psnr` and, with `y_channel`,
/// `psnry`): values in `[0, 1]`, `10·log10(1 / (mse + 10⁻⁸))`, so identical images score 80.
///
/// pyiqa sums in `float32`; this sums in `f64`, which differs from it by about 10⁻⁵ dB.
pub fn psnr_pyiqa(
    restored: &MetricImage,
    reference: &MetricImage,
    options: &FrOptions,
) -> Result<f64> {
    let (a, b) = crop_pair("psnr-pyiqa", 1, restored, reference, options)?;
    let mse = mse(
        &pyiqa_planes(&a, options.y_channel, false),
        &pyiqa_planes(&b, options.y_channel, false),
    );
    Ok(10.0 * (1.0 / (mse + 1e-8)).log10())
}
