//! Gaussian noise of the second-order degradation (`add_gaussian_noise_pt`).

use burn::tensor::Tensor;
use diffbir_core::{NoiseSource, Result};

use super::invalid;

/// `generate_gaussian_noise_pt`: `randn·σ/255` per sample, mixed with one gray noise map
/// (shared by the batch, scaled by each sample's σ) where `gray_noise > 0`.
///
/// Draws, in the original's order: when any `gray_noise` is positive, one `[H, W]` map first;
/// then the colour noise `[B, C, H, W]`.
///
/// # Shapes
///
/// - `img`: `[B, C, H, W]` (only its shape and device are used)
/// - `sigma`, `gray_noise`: `[B]` (σ on the 0–255 scale; `gray_noise` 0 or 1, or a blend)
/// - output: `[B, C, H, W]`
pub fn generate_gaussian_noise_pt(
    img: &Tensor<4>,
    sigma: Tensor<1>,
    gray_noise: Tensor<1>,
    noise: &mut NoiseSource,
) -> Result<Tensor<4>> {
    let [b, c, h, w] = img.dims();
    let [ns] = sigma.dims();
    let [ng] = gray_noise.dims();
    if ns != b || ng != b {
        return Err(invalid(
            "sigma/gray_noise",
            format!("{ns} sigmas and {ng} gray_noise values for a batch of {b}"),
        ));
    }
    let device = img.device();
    let sigma = sigma.reshape([b, 1, 1, 1]);
    let gray = gray_noise.reshape([b, 1, 1, 1]);
    let any_gray = gray.clone().sum().into_scalar::<f32>() > 0.0;
    let gray_map = any_gray.then(|| {
        let map = noise.randn([h, w], &device).reshape([1, 1, h, w]);
        (map * sigma.clone()).div_scalar(255.0) // [B, 1, H, W]
    });
    let colour = (noise.randn([b, c, h, w], &device) * sigma).div_scalar(255.0);
    Ok(match gray_map {
        Some(map) => colour * (gray.clone().neg().add_scalar(1.0)) + map * gray,
        None => colour,
    })
}

/// `add_gaussian_noise_pt`: `img + noise`, then `clip` to `[0, 1]` and/or `rounds` to the
/// 8-bit grid (both: `clamp(round(255·x), 0, 255) / 255`).
///
/// # Shapes
///
/// - `img`: `[B, C, H, W]` in `[0, 1]`
/// - `sigma`, `gray_noise`: `[B]`
/// - output: `[B, C, H, W]`
pub fn add_gaussian_noise_pt(
    img: Tensor<4>,
    sigma: Tensor<1>,
    gray_noise: Tensor<1>,
    clip: bool,
    rounds: bool,
    noise: &mut NoiseSource,
) -> Result<Tensor<4>> {
    let n = generate_gaussian_noise_pt(&img, sigma, gray_noise, noise)?;
    let out = img + n;
    Ok(match (clip, rounds) {
        (true, true) => out
            .mul_scalar(255.0)
            .round()
            .clamp(0.0, 255.0)
            .div_scalar(255.0),
        (true, false) => out.clamp(0.0, 1.0),
        (false, true) => out.mul_scalar(255.0).round().div_scalar(255.0),
        (false, false) => out,
    })
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, TensorData};

    use super::*;

    #[test]
    fn zero_sigma_adds_nothing_and_gray_noise_is_shared_by_channels() {
        let device = Device::flex();
        let img = Tensor::<4>::full([2, 3, 4, 5], 0.5, &device);
        let mut noise = NoiseSource::seeded(7);
        let zero = Tensor::<1>::zeros([2], &device);
        let out = add_gaussian_noise_pt(img.clone(), zero.clone(), zero, true, false, &mut noise)
            .unwrap();
        let diff: f32 = (out - img.clone()).abs().max().into_scalar();
        assert_eq!(diff, 0.0);

        let sigma = Tensor::<1>::from_data(TensorData::new(vec![10.0f32, 10.0], [2]), &device);
        let gray = Tensor::<1>::ones([2], &device);
        let n = generate_gaussian_noise_pt(&img, sigma, gray, &mut noise).unwrap();
        let r = n.clone().slice([0..2, 0..1]);
        let g = n.slice([0..2, 1..2]);
        let diff: f32 = (r - g).abs().max().into_scalar();
        assert_eq!(diff, 0.0);
    }

    #[test]
    fn mismatched_sigma_is_refused() {
        let device = Device::flex();
        let img = Tensor::<4>::zeros([2, 3, 4, 5], &device);
        let s = Tensor::<1>::zeros([3], &device);
        let g = Tensor::<1>::zeros([2], &device);
        let mut noise = NoiseSource::seeded(0);
        assert!(generate_gaussian_noise_pt(&img, s, g, &mut noise).is_err());
    }
}
