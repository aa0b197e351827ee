//! Colour fixes that transfer the colours of the stage-1 output onto the generated image
//! (`XPixelGroup/DiffBIR@3f8b530:diffbir/pipeline.py:L306-L311`, with
//! `diffbir/utils/common.py:L29-L77`; v1's AdaIN: `7bd5675:utils/image/align_color.py:L44-L71`).
//!
//! - [`wavelet_reconstruction`] (StableSR, used by DiffBIR v2 and v2.1): the high frequencies
//!   of the result plus the low frequencies of the reference, from a 5-level à-trous
//!   decomposition.
//! - [`adaptive_instance_normalization`] (DiffBIR v1's `adain` option): per-channel mean and
//!   standard deviation of the reference.

use burn::tensor::module::conv2d;
use burn::tensor::ops::{ConvOptions, PadMode};
use burn::tensor::{Tensor, TensorData};

crate::named_enum! {
    /// Which colour fix to apply to the generated image (`--color_fix`).
    #[derive(Default)]
    pub enum ColorFix ("colour fix") {
        /// Wavelet reconstruction (the default of DiffBIR v2/v2.1).
        #[default]
        Wavelet = "wavelet",
        /// Adaptive instance normalisation (DiffBIR v1's option).
        AdaIn = "adain",
        /// Keep the generated colours.
        None = "none",
    }
}

impl ColorFix {
    /// Applies the fix: the colours of `reference` onto `content`.
    ///
    /// # Shapes
    /// - `content`, `reference`: `[B, C, H, W]`, same shape
    /// - returns `[B, C, H, W]`
    pub fn apply(self, content: Tensor<4>, reference: Tensor<4>) -> Tensor<4> {
        match self {
            Self::Wavelet => wavelet_reconstruction(content, reference),
            Self::AdaIn => adaptive_instance_normalization(content, reference),
            Self::None => content,
        }
    }
}

/// Number of levels of the wavelet decomposition (radii 1, 2, 4, 8, 16).
pub const WAVELET_LEVELS: usize = 5;

/// One à-trous blur: the depthwise 3×3 kernel `[1,2,1]ᵀ[1,2,1]/16` with dilation `radius`,
/// over the input replicate-padded by `radius`.
///
/// # Shapes
/// - `x`: `[B, C, H, W]`; returns `[B, C, H, W]`
pub fn wavelet_blur(x: Tensor<4>, radius: usize) -> Tensor<4> {
    let [_, channels, _, _] = x.dims();
    let device = x.device();
    const TAPS: [f32; 3] = [1.0, 2.0, 1.0];
    let tap_products: Vec<f32> = TAPS
        .iter()
        .flat_map(|a| TAPS.iter().map(move |b| a * b / 16.0))
        .collect();
    let kernel = tap_products.repeat(channels);
    let weight = Tensor::<4>::from_data(TensorData::new(kernel, [channels, 1, 3, 3]), &device);
    let padded = x.pad((radius, radius, radius, radius), PadMode::Edge);
    conv2d(
        padded,
        weight,
        None,
        ConvOptions::new([1, 1], [0, 0], [radius, radius], channels),
    )
}

/// Splits an image into high and low frequencies over [`WAVELET_LEVELS`] levels: `low` is the
/// last blur, `high` the sum of the differences between successive levels.
///
/// # Shapes
/// - `x`: `[B, C, H, W]`; returns `(high, low)`, both `[B, C, H, W]`
pub fn wavelet_decomposition(x: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
    let mut high = x.zeros_like();
    let mut current = x;
    for level in 0..WAVELET_LEVELS {
        let low = wavelet_blur(current.clone(), 1 << level);
        high = high + (current - low.clone());
        current = low;
    }
    (high, current)
}

/// The wavelet colour fix: high frequencies of `content` plus low frequencies of `reference`.
///
/// # Shapes
/// - `content`, `reference`: `[B, C, H, W]`; returns `[B, C, H, W]`
pub fn wavelet_reconstruction(content: Tensor<4>, reference: Tensor<4>) -> Tensor<4> {
    let (content_high, _) = wavelet_decomposition(content);
    let (_, reference_low) = wavelet_decomposition(reference);
    content_high + reference_low
}

/// Per image and channel mean and standard deviation, `σ = √(var_unbiased + eps)`.
///
/// # Shapes
/// - `x`: `[B, C, H, W]`; returns `(mean, std)`, both `[B, C, 1, 1]`
pub fn channel_mean_std(x: Tensor<4>, eps: f64) -> (Tensor<4>, Tensor<4>) {
    let [b, c, h, w] = x.dims();
    let (var, mean) = x.reshape([b, c, h * w]).var_mean(2);
    (
        mean.reshape([b, c, 1, 1]),
        var.add_scalar(eps).sqrt().reshape([b, c, 1, 1]),
    )
}

/// AdaIN colour fix: normalise each channel of `content` and give it the mean and standard
/// deviation of `reference` (unbiased variance + 1e-5).
///
/// # Shapes
/// - `content`, `reference`: `[B, C, H, W]`; returns `[B, C, H, W]`
pub fn adaptive_instance_normalization(content: Tensor<4>, reference: Tensor<4>) -> Tensor<4> {
    const EPS: f64 = 1e-5;
    let (reference_mean, reference_std) = channel_mean_std(reference, EPS);
    let (content_mean, content_std) = channel_mean_std(content.clone(), EPS);
    (content - content_mean) / content_std * reference_std + reference_mean
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    #[test]
    fn blur_keeps_constant_images() {
        let device = Device::flex();
        let x = Tensor::<4>::ones([1, 3, 9, 7], &device).mul_scalar(0.3);
        for r in [1, 2, 4, 8, 16] {
            let y: Vec<f32> = wavelet_blur(x.clone(), r).into_data().try_to_vec().unwrap();
            assert!(y.iter().all(|v| (v - 0.3).abs() < 1e-6), "radius {r}");
        }
    }

    #[test]
    fn decomposition_sums_back_to_the_input() {
        let device = Device::flex();
        let x = Tensor::<4>::random([1, 3, 20, 24], Distribution::Default, &device);
        let (high, low) = wavelet_decomposition(x.clone());
        let err: f32 = (high + low - x).abs().max().into_scalar();
        assert!(err < 1e-5, "{err}");
    }

    #[test]
    fn adain_transfers_statistics() {
        let device = Device::flex();
        let content = Tensor::<4>::random([2, 3, 8, 8], Distribution::Default, &device);
        let reference = Tensor::<4>::random([2, 3, 8, 8], Distribution::Normal(0.5, 2.0), &device);
        let out = adaptive_instance_normalization(content, reference.clone());
        let (m1, s1) = channel_mean_std(out, 0.0);
        let (m2, s2) = channel_mean_std(reference, 0.0);
        let dm: f32 = (m1 - m2).abs().max().into_scalar();
        let ds: f32 = (s1 - s2).abs().max().into_scalar();
        assert!(dm < 1e-4 && ds < 1e-3, "{dm} {ds}");
    }

    #[test]
    fn colour_fix_names_parse() {
        assert_eq!("wavelet".parse::<ColorFix>().unwrap(), ColorFix::Wavelet);
        assert_eq!("adain".parse::<ColorFix>().unwrap(), ColorFix::AdaIn);
        assert_eq!("none".parse::<ColorFix>().unwrap(), ColorFix::None);
        let err = "sharpen".parse::<ColorFix>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid colour fix: unknown colour fix `sharpen`: use wavelet, adain or none"
        );
    }
}
