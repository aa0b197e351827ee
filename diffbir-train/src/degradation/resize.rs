//! PyTorch's `F.interpolate` without antialiasing (`align_corners=False`) in the `area`,
//! `bilinear` and `bicubic` modes, as Real-ESRGAN's degradation resizes with it.
//!
//! Each axis gets a dense `[out, in]` weight matrix, computed on the CPU with the float32
//! arithmetic of PyTorch's CPU kernels, and the two matrices are applied as matrix products
//! on the tensor's device (the width first, then the height).

use burn::tensor::Tensor;
use diffbir_core::Result;
use diffbir_core::resize::resample_separable;

use super::invalid;

/// The `mode` of `F.interpolate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterpolateMode {
    /// `"area"`: `adaptive_avg_pool2d` to the output size.
    Area,
    /// `"bilinear"`: linear interpolation per axis, negative source coordinates clamped to 0.
    Bilinear,
    /// `"bicubic"`: Keys cubic convolution with `A = −0.75`, four taps per axis clamped into
    /// the image.
    Bicubic,
}

/// The cubic convolution coefficient of PyTorch's (non-antialiased) bicubic mode.
const CUBIC_A: f32 = -0.75;

/// `cubic_convolution1`: the Keys cubic for `|x| ≤ 1`.
fn cubic_inner(x: f32) -> f32 {
    ((CUBIC_A + 2.0) * x - (CUBIC_A + 3.0)) * x * x + 1.0
}

/// `cubic_convolution2`: the Keys cubic for `1 < |x| < 2`.
fn cubic_outer(x: f32) -> f32 {
    ((CUBIC_A * x - 5.0 * CUBIC_A) * x + 8.0 * CUBIC_A) * x - 4.0 * CUBIC_A
}

/// PyTorch's `guard_index_and_lambda`: the integer part of a source coordinate, kept inside
/// the input, and the fraction, kept in `[0, 1]`.
fn guard_index_and_lambda(real: f32, in_size: usize) -> (i64, f32) {
    let index = (real.floor() as i64).min(in_size as i64 - 1);
    let lambda = (real - index as f32).clamp(0.0, 1.0);
    (index, lambda)
}

/// The weights of one axis as a dense row-major `[out_size, in_size]` matrix.
///
/// `scale` is the user's scale factor (`scale_factor=`): bilinear and bicubic then map output
/// to input coordinates with `1/scale`, like PyTorch; without it they use `in/out`. The area
/// mode only depends on the sizes.
fn axis_weights(
    in_size: usize,
    out_size: usize,
    mode: InterpolateMode,
    scale: Option<f64>,
) -> Vec<f32> {
    let mut weights = vec![0f32; out_size * in_size];
    // `area_pixel_compute_scale` in float32: `1/scale` (computed in double) or `in/out`.
    let s = match scale {
        Some(scale) if scale > 0.0 => (1.0 / scale) as f32,
        _ => in_size as f32 / out_size as f32,
    };
    // `area_pixel_compute_source_index` (align_corners=False), float32.
    let source = |dst: usize| s * (dst as f32 + 0.5) - 0.5;
    let last = in_size as i64 - 1;
    for (i, row) in weights.chunks_exact_mut(in_size).enumerate() {
        match mode {
            InterpolateMode::Area => {
                let start = i * in_size / out_size;
                let end = ((i + 1) * in_size).div_ceil(out_size);
                let w = 1.0 / (end - start) as f32;
                row[start..end].fill(w);
            }
            InterpolateMode::Bilinear => {
                let real = source(i).max(0.0);
                let (i0, l1) = guard_index_and_lambda(real, in_size);
                let i1 = (i0 + 1).min(last);
                row[i0 as usize] += 1.0 - l1;
                row[i1 as usize] += l1;
            }
            InterpolateMode::Bicubic => {
                let (index, t) = guard_index_and_lambda(source(i), in_size);
                let coeffs = [
                    cubic_outer(t + 1.0),
                    cubic_inner(t),
                    cubic_inner(1.0 - t),
                    cubic_outer(2.0 - t),
                ];
                for (k, c) in coeffs.into_iter().enumerate() {
                    let j = (index - 1 + k as i64).clamp(0, last);
                    row[j as usize] += c;
                }
            }
        }
    }
    weights
}

/// Whether a square row-major matrix is exactly the identity.
fn is_identity(weights: &[f32], n: usize) -> bool {
    weights
        .iter()
        .enumerate()
        .all(|(k, &w)| w == if k / n == k % n { 1.0 } else { 0.0 })
}

fn check_size(what: &str, value: usize) -> Result<()> {
    if value == 0 {
        Err(invalid(what, "must be at least 1"))
    } else {
        Ok(())
    }
}

/// Applies the per-axis weights with [`resample_separable`], skipping an axis whose matrix is
/// the identity (the input is returned as is when both are).
fn apply(
    x: Tensor<4>,
    out_h: usize,
    out_w: usize,
    mode: InterpolateMode,
    scale: Option<f64>,
) -> Result<Tensor<4>> {
    let [_, _, h, w] = x.dims();
    check_size("interpolate input height", h)?;
    check_size("interpolate input width", w)?;
    check_size("interpolate output height", out_h)?;
    check_size("interpolate output width", out_w)?;
    let axis = |n: usize, out: usize| {
        let weights = axis_weights(n, out, mode, scale);
        (!(out == n && is_identity(&weights, n))).then_some((out, weights))
    };
    Ok(resample_separable(x, axis(h, out_h), axis(w, out_w)))
}

/// `F.interpolate(x, size=(out_h, out_w), mode=…)` with `align_corners=False` and no
/// antialiasing: the source coordinate of each axis is scaled by `in / out`.
///
/// # Shapes
///
/// - `x`: `[B, C, H, W]`
/// - output: `[B, C, out_h, out_w]`
///
/// # Errors
///
/// [`diffbir_core::Error::InvalidArgument`] when a size (input or output) is zero.
pub fn interpolate_size(
    x: Tensor<4>,
    out_h: usize,
    out_w: usize,
    mode: InterpolateMode,
) -> Result<Tensor<4>> {
    apply(x, out_h, out_w, mode, None)
}

/// The output size of [`interpolate_scale`] for an input side: `floor(size · scale)`, in
/// double precision like PyTorch.
fn scaled_size(what: &str, size: usize, scale: f64) -> Result<usize> {
    let out = (size as f64 * scale).floor();
    if out < 1.0 || out > u32::MAX as f64 {
        return Err(invalid(
            what,
            format!("{size} scaled by {scale} gives {out}, not a usable size"),
        ));
    }
    Ok(out as usize)
}

/// `F.interpolate(x, scale_factor=scale, mode=…)` with `align_corners=False`, no
/// antialiasing and `recompute_scale_factor=None`: each side becomes `floor(side · scale)`
/// (double precision), and bilinear and bicubic map output to input coordinates with
/// `1 / scale` (not `in / out`), as PyTorch passes the scale factor down to its kernels.
/// `area` is `adaptive_avg_pool2d` to the output size.
///
/// # Shapes
///
/// - `x`: `[B, C, H, W]`
/// - output: `[B, C, floor(H·scale), floor(W·scale)]`
///
/// # Errors
///
/// [`diffbir_core::Error::InvalidArgument`] when `scale` is not a positive finite number, or
/// a side (input or output) is zero.
pub fn interpolate_scale(x: Tensor<4>, scale: f64, mode: InterpolateMode) -> Result<Tensor<4>> {
    if !(scale.is_finite() && scale > 0.0) {
        return Err(invalid(
            "interpolate scale factor",
            format!("{scale} is not a positive finite number"),
        ));
    }
    let [_, _, h, w] = x.dims();
    check_size("interpolate input height", h)?;
    check_size("interpolate input width", w)?;
    let out_h = scaled_size("interpolate output height", h, scale)?;
    let out_w = scaled_size("interpolate output width", w, scale)?;
    apply(x, out_h, out_w, mode, Some(scale))
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution, TensorData, Tolerance};

    use super::*;

    const MODES: [InterpolateMode; 3] = [
        InterpolateMode::Area,
        InterpolateMode::Bilinear,
        InterpolateMode::Bicubic,
    ];

    fn values(x: Tensor<4>) -> Vec<f32> {
        x.try_into_vec_as::<f32>().unwrap()
    }

    #[test]
    fn area_downscale_by_an_integer_factor_averages_blocks() {
        let device = Device::flex();
        let (h, w, k) = (6, 9, 3);
        let data: Vec<f32> = (0..2 * h * w).map(|v| ((v * 37) % 101) as f32).collect();
        let x = Tensor::<4>::from_data(TensorData::new(data.clone(), [1, 2, h, w]), &device);
        let by_size =
            values(interpolate_size(x.clone(), h / k, w / k, InterpolateMode::Area).unwrap());
        let by_scale = values(interpolate_scale(x, 1.0 / k as f64, InterpolateMode::Area).unwrap());
        let (oh, ow) = (h / k, w / k);
        assert_eq!(by_size.len(), 2 * oh * ow);
        for c in 0..2 {
            for i in 0..oh {
                for j in 0..ow {
                    let mut sum = 0.0;
                    for di in 0..k {
                        for dj in 0..k {
                            sum += data[c * h * w + (i * k + di) * w + j * k + dj];
                        }
                    }
                    let expected = sum / (k * k) as f32;
                    let at = c * oh * ow + i * ow + j;
                    assert!((by_size[at] - expected).abs() < 1e-4, "{at}");
                    assert!((by_scale[at] - expected).abs() < 1e-4, "{at}");
                }
            }
        }
    }

    #[test]
    fn constant_images_stay_constant() {
        let device = Device::flex();
        let x = Tensor::<4>::full([2, 3, 11, 7], 0.3, &device);
        for mode in MODES {
            for (oh, ow) in [(5, 3), (23, 16), (11, 20)] {
                let y = interpolate_size(x.clone(), oh, ow, mode).unwrap();
                y.into_data().assert_approx_eq::<f32>(
                    &Tensor::<4>::full([2, 3, oh, ow], 0.3, &device).into_data(),
                    Tolerance::absolute(1e-6),
                );
            }
            for scale in [0.37, 1.3, 2.0] {
                let y = interpolate_scale(x.clone(), scale, mode).unwrap();
                let dims = y.dims();
                y.into_data().assert_approx_eq::<f32>(
                    &Tensor::<4>::full(dims, 0.3, &device).into_data(),
                    Tolerance::absolute(1e-6),
                );
            }
        }
    }

    #[test]
    fn bilinear_upscale_of_a_ramp_clamps_the_left_border() {
        let device = Device::flex();
        let x = Tensor::<4>::from_data(
            TensorData::new(vec![0.0f32, 1.0, 2.0, 3.0], [1, 1, 1, 4]),
            &device,
        );
        let y = values(interpolate_size(x, 1, 8, InterpolateMode::Bilinear).unwrap());
        // src = (dst + 0.5)/2 − 0.5: −0.25 (clamped to 0), 0.25, 0.75, …, 3.25 (past the end).
        let expected = [0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0];
        for (got, want) in y.iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{y:?}");
        }
    }

    #[test]
    fn scale_one_is_the_identity() {
        let device = Device::flex();
        let x = Tensor::<4>::random([1, 2, 9, 13], Distribution::Default, &device);
        for mode in MODES {
            let y = interpolate_scale(x.clone(), 1.0, mode).unwrap();
            y.into_data().assert_eq(&x.clone().into_data(), true);
            let w = axis_weights(13, 13, mode, Some(1.0));
            assert!(is_identity(&w, 13), "{mode:?}");
        }
        // Bicubic at integer source positions: w(1) = w(2) = 0 exactly.
        let w = axis_weights(13, 13, InterpolateMode::Bicubic, None);
        assert!(is_identity(&w, 13));
    }

    #[test]
    fn scaled_sizes_are_floored_and_rows_sum_to_one() {
        let device = Device::flex();
        let x = Tensor::<4>::random([1, 1, 17, 23], Distribution::Default, &device);
        for mode in MODES {
            // 17·0.37 = 6.29, 23·0.37 = 8.51; 17·1.3 = 22.1, 23·1.3 = 29.9.
            assert_eq!(
                interpolate_scale(x.clone(), 0.37, mode).unwrap().dims(),
                [1, 1, 6, 8]
            );
            assert_eq!(
                interpolate_scale(x.clone(), 1.3, mode).unwrap().dims(),
                [1, 1, 22, 29]
            );
            for (i, o, scale) in [
                (17, 6, Some(0.37)),
                (23, 29, Some(1.3)),
                (23, 3, Some(0.15)),
                (7, 7, None),
                (5, 40, None),
                (100, 3, None),
                (1, 4, None),
                (4, 1, None),
            ] {
                let w = axis_weights(i, o, mode, scale);
                for row in w.chunks(i) {
                    assert!(
                        (row.iter().sum::<f32>() - 1.0).abs() < 1e-5,
                        "{mode:?} {i}->{o}"
                    );
                }
            }
        }
    }

    #[test]
    fn zero_sizes_and_bad_scales_are_refused() {
        let device = Device::flex();
        let x = Tensor::<4>::zeros([1, 1, 4, 4], &device);
        let empty = Tensor::<4>::zeros([1, 1, 0, 4], &device);
        for mode in MODES {
            assert!(interpolate_size(x.clone(), 0, 4, mode).is_err());
            assert!(interpolate_size(x.clone(), 4, 0, mode).is_err());
            assert!(interpolate_size(empty.clone(), 2, 2, mode).is_err());
            assert!(interpolate_scale(empty.clone(), 2.0, mode).is_err());
            for scale in [0.0, -1.0, f64::NAN, f64::INFINITY, 0.2] {
                // 4·0.2 = 0.8 floors to an empty image.
                assert!(
                    interpolate_scale(x.clone(), scale, mode).is_err(),
                    "{scale}"
                );
            }
        }
    }
}
