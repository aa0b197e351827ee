//! Resizing and padding as DiffBIR's pipeline does them
//! (`XPixelGroup/DiffBIR@3f8b530:diffbir/pipeline.py:L25-L42`, `L97-L144`, `L306-L320`,
//! `L338-L420`, and the `after_load_lq` upscaling of `diffbir/inference/bsr_loop.py:L54-L59`).
//!
//! - [`resize_bicubic_antialias`]: PyTorch's `F.interpolate(mode="bicubic", antialias=True)`
//!   (`align_corners=False`): a separable Keys cubic with `a = −0.5` whose support is widened
//!   by the scale when downscaling, trimmed at the borders and normalised per output pixel.
//!   The weights are computed on the CPU with PyTorch's float32 arithmetic and applied as two
//!   matrix products on the tensor's device.
//! - [`resize_short_edge_to`]: the stage-1 rule "short side to 512", with the reference's
//!   `int(w * (size / h))` for the long side.
//! - [`pad_to_multiples_of`]: zero padding at the bottom and right, undone by [`Padding::unpad`].
//! - [`postprocess`] and [`to_rgb8_images`]: the tail of `Pipeline.run` (colour fix, resize to
//!   the output size, truncating 8-bit quantisation).
//! - [`pil_resize_bicubic`] and [`pil_upscale`]: PIL's `Image.resize(size, BICUBIC)` on 8-bit RGB
//!   images, bit-exact (22-bit fixed-point coefficients, 8-bit intermediate between the
//!   horizontal and the vertical pass), used to upscale the low-quality input by `--upscale`.

use burn::tensor::ops::PadMode;
use burn::tensor::{Tensor, TensorData};
use image::{DynamicImage, RgbImage};

use crate::color::ColorFix;
use crate::error::{Error, Result};
use crate::image::quantize_u8;

/// Half-width of the Keys cubic kernel (its support is `[−2, 2]`).
const CUBIC_SUPPORT: f64 = 2.0;

/// PyTorch's antialiased bicubic kernel in float32: Keys cubic convolution with `a = −0.5`.
fn keys_cubic_f32(x: f32) -> f32 {
    const A: f32 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
    } else {
        0.0
    }
}

/// PIL's bicubic filter (double precision, `a = −0.5`), written as PIL writes it.
fn pil_bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// The antialiased bicubic weights of one axis as a dense row-major `[out_size, in_size]`
/// matrix, computed with PyTorch's float32 arithmetic (its CPU kernel for float tensors):
/// scale `in/out`, support `2·max(scale, 1)`, window `[int(c − s + ½), int(c + s + ½))`
/// clipped to the input, taps evaluated at `(j − c + ½)/max(scale, 1)`, normalised to sum 1.
fn antialias_weights(in_size: usize, out_size: usize) -> Vec<f32> {
    let scale = in_size as f32 / out_size as f32;
    let (support, invscale) = if scale >= 1.0 {
        (
            (CUBIC_SUPPORT * f64::from(scale)) as f32,
            (1.0 / f64::from(scale)) as f32,
        )
    } else {
        (CUBIC_SUPPORT as f32, 1.0)
    };
    let max_taps = support.ceil() as usize * 2 + 1;
    let mut weights = vec![0f32; out_size * in_size];
    let mut taps = Vec::with_capacity(max_taps);
    for i in 0..out_size {
        let center = (f64::from(scale) * (i as f64 + 0.5)) as f32;
        let xmin = ((f64::from(center - support) + 0.5) as i64).max(0);
        let xend = ((f64::from(center + support) + 0.5) as i64).min(in_size as i64);
        let xsize = (xend - xmin).clamp(0, max_taps as i64);
        taps.clear();
        let mut total = 0f32;
        for j in 0..xsize {
            let offset = f64::from((j + xmin) as f32 - center) + 0.5;
            let w = keys_cubic_f32((offset * f64::from(invscale)) as f32);
            taps.push(w);
            total += w;
        }
        let row = &mut weights[i * in_size..(i + 1) * in_size];
        for (j, w) in taps.iter().enumerate() {
            row[xmin as usize + j] = if total != 0.0 { w / total } else { *w };
        }
    }
    weights
}

fn check_size(what: &str, value: usize) -> Result<()> {
    if value == 0 {
        Err(Error::invalid(what, "must be at least 1"))
    } else {
        Ok(())
    }
}

/// Resizes images with PyTorch's `F.interpolate(x, size=(out_h, out_w), mode="bicubic",
/// antialias=True)` (`align_corners=False`): down- and upscaling with the Keys cubic kernel
/// (`a = −0.5`), the support widened by the scale when downscaling, no clamping of the result.
///
/// Like PyTorch, the width is resampled first, then the height; an axis whose size does not
/// change is left alone, and the input is returned as is when neither changes.
///
/// # Shapes
/// - `x`: `[B, C, H, W]`
/// - returns `[B, C, out_h, out_w]`
///
/// # Errors
/// [`Error::InvalidArgument`] when a size (input or output) is zero.
pub fn resize_bicubic_antialias(x: Tensor<4>, out_h: usize, out_w: usize) -> Result<Tensor<4>> {
    let [_, _, h, w] = x.dims();
    check_size("resize input height", h)?;
    check_size("resize input width", w)?;
    check_size("resize output height", out_h)?;
    check_size("resize output width", out_w)?;
    Ok(resample_separable(
        x,
        (out_h != h).then(|| (out_h, antialias_weights(h, out_h))),
        (out_w != w).then(|| (out_w, antialias_weights(w, out_w))),
    ))
}

/// Resamples the two spatial axes with dense per-axis weights, `W_h · x · W_wᵀ` (the width
/// first, as PyTorch's separable kernels do); an axis given `None` is left alone. Each
/// `(out, weights)` holds a row-major `[out, in]` matrix, cast to `x`'s dtype and applied as
/// a matrix product on `x`'s device.
///
/// # Shapes
/// - `x`: `[B, C, H, W]`
/// - `height`: `(out_h, [out_h · H])`, `width`: `(out_w, [out_w · W])`
/// - returns `[B, C, out_h, out_w]`
///
/// # Panics
/// If a weight matrix does not have `out × in` values.
pub fn resample_separable(
    x: Tensor<4>,
    height: Option<(usize, Vec<f32>)>,
    width: Option<(usize, Vec<f32>)>,
) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let device = x.device();
    let dtype = x.dtype();
    let mut y = x;
    if let Some((out_w, weights)) = width {
        // [out_w, w] weights, transposed into [w, out_w] for `y · Wᵀ`.
        let matrix = Tensor::<2>::from_data(TensorData::new(weights, [out_w, w]), &device)
            .cast(dtype)
            .transpose()
            .unsqueeze::<4>();
        y = y.matmul(matrix);
    }
    if let Some((out_h, weights)) = height {
        let matrix = Tensor::<2>::from_data(TensorData::new(weights, [out_h, h]), &device)
            .cast(dtype)
            .unsqueeze::<4>();
        y = matrix.matmul(y);
    }
    y
}

/// The size [`resize_short_edge_to`] resizes an `h × w` image to, as `(height, width)`: a
/// square becomes `size × size`; otherwise the short side becomes `size` and the long side
/// `int(long * (size / short))` (computed in double precision and truncated, as the
/// reference does).
///
/// # Errors
/// [`Error::InvalidArgument`] when a size is zero.
pub fn short_edge_size(h: usize, w: usize, size: usize) -> Result<(usize, usize)> {
    check_size("image height", h)?;
    check_size("image width", w)?;
    check_size("short-edge size", size)?;
    let long = |long: usize, short: usize| (long as f64 * (size as f64 / short as f64)) as usize;
    Ok(match h.cmp(&w) {
        std::cmp::Ordering::Equal => (size, size),
        std::cmp::Ordering::Less => (size, long(w, h)),
        std::cmp::Ordering::Greater => (long(h, w), size),
    })
}

/// The reference's `resize_short_edge_to`: resizes so that the short side is `size` (see
/// [`short_edge_size`]) with [`resize_bicubic_antialias`]. Used by every stage-1 pipeline when
/// the short side is below 512; it also enlarges.
///
/// # Shapes
/// - `x`: `[B, C, H, W]`
/// - returns `[B, C, H', W']` with `min(H', W') = size`
///
/// # Errors
/// [`Error::InvalidArgument`] when a size is zero.
pub fn resize_short_edge_to(x: Tensor<4>, size: usize) -> Result<Tensor<4>> {
    let [_, _, h, w] = x.dims();
    let (out_h, out_w) = short_edge_size(h, w, size)?;
    resize_bicubic_antialias(x, out_h, out_w)
}

/// `F.interpolate(x, scale_factor=2, mode="nearest")`: every pixel repeated 2×2 (the
/// upsampling of the UNet, the VAE decoder, SwinIR and RRDBNet).
///
/// # Shapes
/// - `x`: `[B, C, H, W]`; returns `[B, C, 2H, 2W]`
pub fn upsample_nearest2x(x: Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    burn::tensor::module::interpolate(
        x,
        burn::tensor::ops::InterpolateOptions::new(burn::tensor::ops::InterpolateMode::Nearest)
            .with_output_size([2 * h, 2 * w]),
    )
}

/// Zero padding added at the bottom and the right of an image by [`pad_to_multiples_of`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Padding {
    /// Rows added below the image.
    pub bottom: usize,
    /// Columns added to the right of the image.
    pub right: usize,
}

impl Padding {
    /// Whether nothing was added.
    pub fn is_none(self) -> bool {
        self.bottom == 0 && self.right == 0
    }

    /// Removes the padding: drops the last `bottom` rows and `right` columns.
    ///
    /// # Shapes
    /// - `x`: `[B, C, H, W]` (the padded size)
    /// - returns `[B, C, H − bottom, W − right]`
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `x` is not larger than the padding.
    pub fn unpad(self, x: Tensor<4>) -> Result<Tensor<4>> {
        if self.is_none() {
            return Ok(x);
        }
        let [b, c, h, w] = x.dims();
        if h <= self.bottom || w <= self.right {
            return Err(Error::invalid(
                "padded tensor",
                format!(
                    "a {h}x{w} tensor cannot lose {} rows and {} columns of padding",
                    self.bottom, self.right
                ),
            ));
        }
        Ok(x.slice([0..b, 0..c, 0..h - self.bottom, 0..w - self.right]))
    }
}

/// The reference's `pad_to_multiples_of`: zero-pads the bottom and right so that height and
/// width are multiples of `multiple` (`p = ceil(x/m)·m − x`). Returns the tensor unchanged
/// when it is already aligned, and the [`Padding`] that undoes it.
///
/// # Shapes
/// - `x`: `[B, C, H, W]`
/// - returns `[B, C, H + bottom, W + right]`
///
/// # Errors
/// [`Error::InvalidArgument`] when `multiple` is zero.
pub fn pad_to_multiples_of(x: Tensor<4>, multiple: usize) -> Result<(Tensor<4>, Padding)> {
    check_size("padding multiple", multiple)?;
    let [_, _, h, w] = x.dims();
    let padding = Padding {
        bottom: h.next_multiple_of(multiple) - h,
        right: w.next_multiple_of(multiple) - w,
    };
    if padding.is_none() {
        return Ok((x, padding));
    }
    let padded = x.pad(
        (0, padding.right, 0, padding.bottom),
        PadMode::Constant(0.0),
    );
    Ok((padded, padding))
}

/// The tail of the reference's `Pipeline.run`: the decoded sample in `[−1, 1]` is mapped to
/// `(sample + 1) / 2`, colour-fixed against the stage-1 condition (`color_fix`; always
/// wavelet in v2/v2.1) at the processing resolution, then resized to the output size with
/// [`resize_bicubic_antialias`]. Nothing is clamped: quantise with [`to_rgb8_images`] (or
/// [`crate::image::tensor_to_image`]).
///
/// # Shapes
/// - `sample`: `[B, 3, H, W]`, the VAE output in `[−1, 1]`
/// - `cond_img`: `[B, 3, H, W]`, the stage-1 output in `[0, 1]`
/// - returns `[B, 3, out_h, out_w]`
///
/// # Errors
/// [`Error::InvalidArgument`] when the shapes differ or a size is zero.
pub fn postprocess(
    sample: Tensor<4>,
    cond_img: Tensor<4>,
    color_fix: ColorFix,
    out_h: usize,
    out_w: usize,
) -> Result<Tensor<4>> {
    if sample.dims() != cond_img.dims() {
        return Err(Error::invalid(
            "post-processing inputs",
            format!(
                "the sample is {:?} but the condition is {:?}; they must match",
                sample.dims(),
                cond_img.dims()
            ),
        ));
    }
    let sample = sample.add_scalar(1.0).div_scalar(2.0);
    let fixed = color_fix.apply(sample, cond_img);
    resize_bicubic_antialias(fixed, out_h, out_w)
}

/// Quantises `[B, 3, H, W]` images like the reference (`(x·255).clamp(0, 255)` truncated
/// toward zero, see [`quantize_u8`]) into one RGB image per batch entry.
///
/// # Shapes
/// - `x`: `[B, 3, H, W]`, values nominally in `[0, 1]`
///
/// # Errors
/// [`Error::InvalidArgument`] when `x` does not have 3 channels or is too large for an image.
pub fn to_rgb8_images(x: Tensor<4>) -> Result<Vec<RgbImage>> {
    let [b, c, h, w] = x.dims();
    if c != 3 {
        return Err(Error::invalid(
            "image tensor",
            format!("expected 3 channels, got {c}"),
        ));
    }
    let (width, height) = match (u32::try_from(w), u32::try_from(h)) {
        (Ok(width), Ok(height)) => (width, height),
        _ => {
            return Err(Error::invalid(
                "image tensor",
                format!("{h}x{w} is too large for an image"),
            ));
        }
    };
    let device = x.device();
    let values: Vec<f32> =
        x.into_data()
            .try_into_vec_as::<f32>()
            .map_err(|e| Error::DeviceUnavailable {
                name: format!("{device:?}"),
                reason: format!("reading the image tensor back failed: {e}"),
            })?;
    let plane = h * w;
    let images = (0..b)
        .map(|n| {
            let base = n * 3 * plane;
            let mut raw = Vec::with_capacity(3 * plane);
            for p in 0..plane {
                for ch in 0..3 {
                    raw.push(quantize_u8(values[base + ch * plane + p]));
                }
            }
            RgbImage::from_raw(width, height, raw).expect("3·w·h bytes for a w×h RGB image")
        })
        .collect();
    Ok(images)
}

/// The size the reference upscales a `width × height` input to: `(int(width·scale),
/// int(height·scale))` (double precision, truncated), as `(width, height)`.
///
/// # Errors
/// [`Error::InvalidArgument`] when `scale` is not a positive finite number or the result has
/// a zero side or does not fit in `u32`.
pub fn upscaled_size(width: u32, height: u32, scale: f64) -> Result<(u32, u32)> {
    if !(scale.is_finite() && scale > 0.0) {
        return Err(Error::invalid(
            "upscale",
            format!("{scale} is not a positive number"),
        ));
    }
    let side = |v: u32| {
        let s = (f64::from(v) * scale).trunc();
        if s < 1.0 || s > f64::from(u32::MAX) {
            Err(Error::invalid(
                "upscale",
                format!("{width}x{height} scaled by {scale} gives an empty or oversized image"),
            ))
        } else {
            Ok(s as u32)
        }
    };
    Ok((side(width)?, side(height)?))
}

/// Fixed-point precision of PIL's 8-bit resampling coefficients.
const PIL_PRECISION_BITS: u32 = 32 - 8 - 2;

/// One output sample of a PIL resampling pass: the first input index and its integer taps.
struct PilTaps {
    start: usize,
    taps: Vec<i32>,
}

/// PIL's `precompute_coeffs` + `normalize_coeffs_8bpc` for the bicubic filter over the whole
/// axis (box `[0, in_size]`), in double precision, rounded half away from zero to 22-bit
/// fixed point.
fn pil_coefficients(in_size: usize, out_size: usize) -> Vec<PilTaps> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = CUBIC_SUPPORT * filterscale;
    let one = f64::from(1u32 << PIL_PRECISION_BITS);
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
            let raw: Vec<f64> = (xmin..xmax.max(xmin))
                .map(|x| pil_bicubic((x as f64 - center + 0.5) * ss))
                .collect();
            let total: f64 = raw.iter().sum();
            let taps = raw
                .iter()
                .map(|&k| {
                    let k = if total != 0.0 { k / total } else { k };
                    if k < 0.0 {
                        (-0.5 + k * one) as i32
                    } else {
                        (0.5 + k * one) as i32
                    }
                })
                .collect();
            PilTaps {
                start: xmin as usize,
                taps,
            }
        })
        .collect()
}

/// PIL's `clip8`: the accumulator shifted down by the precision and clamped to `[0, 255]`.
fn pil_clip8(acc: i64) -> u8 {
    (acc >> PIL_PRECISION_BITS).clamp(0, 255) as u8
}

/// PIL's `Image.resize((width, height), Image.BICUBIC)` of an 8-bit RGB image, bit-exact:
/// a horizontal pass then a vertical pass (each skipped when its size does not change),
/// each rounding to 8 bits with PIL's fixed-point arithmetic.
///
/// # Errors
/// [`Error::InvalidArgument`] when a size (input or output) is zero.
pub fn pil_resize_bicubic(image: &RgbImage, width: u32, height: u32) -> Result<RgbImage> {
    let (in_w, in_h) = image.dimensions();
    let pixels = pil_resize_bicubic_interleaved(
        image.as_raw(),
        in_w as usize,
        in_h as usize,
        3,
        width as usize,
        height as usize,
    )?;
    Ok(RgbImage::from_raw(width, height, pixels).expect("3·w·h bytes for a w×h RGB image"))
}

/// [`pil_resize_bicubic`] on raw 8-bit pixels: `pixels` holds `height` rows of `width`
/// pixels of `channels` interleaved bytes (HWC order, as `np.array(image)`); returns the
/// `out_height × out_width` result in the same layout. PIL applies the same arithmetic to
/// every 8-bit band, so any channel count works.
///
/// # Errors
/// [`Error::InvalidArgument`] when a size is zero or `pixels` does not hold
/// `width · height · channels` bytes.
pub fn pil_resize_bicubic_interleaved(
    pixels: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    out_width: usize,
    out_height: usize,
) -> Result<Vec<u8>> {
    check_size("image width", width)?;
    check_size("image height", height)?;
    check_size("channel count", channels)?;
    check_size("resize width", out_width)?;
    check_size("resize height", out_height)?;
    let expected = width
        .checked_mul(height)
        .and_then(|n| n.checked_mul(channels));
    if expected != Some(pixels.len()) {
        return Err(Error::invalid(
            "pixel buffer",
            format!(
                "{} bytes for a {width}x{height} image with {channels} channels",
                pixels.len()
            ),
        ));
    }
    let half = 1i64 << (PIL_PRECISION_BITS - 1);
    let mut current = pixels.to_vec();
    // Horizontal pass: every row, `width` → `out_width` columns.
    if out_width != width {
        let coeffs = pil_coefficients(width, out_width);
        let mut out = vec![0u8; height * out_width * channels];
        for (row_in, row_out) in current
            .chunks_exact(width * channels)
            .zip(out.chunks_exact_mut(out_width * channels))
        {
            for (c, px) in coeffs.iter().zip(row_out.chunks_exact_mut(channels)) {
                for (ch, value) in px.iter_mut().enumerate() {
                    let acc = c.taps.iter().enumerate().fold(half, |acc, (j, &k)| {
                        acc + i64::from(row_in[(c.start + j) * channels + ch]) * i64::from(k)
                    });
                    *value = pil_clip8(acc);
                }
            }
        }
        current = out;
    }
    // Vertical pass: every column, `height` → `out_height` rows.
    if out_height != height {
        let stride = out_width * channels;
        let coeffs = pil_coefficients(height, out_height);
        let mut out = vec![0u8; out_height * stride];
        for (c, row_out) in coeffs.iter().zip(out.chunks_exact_mut(stride)) {
            for (i, value) in row_out.iter_mut().enumerate() {
                let acc = c.taps.iter().enumerate().fold(half, |acc, (j, &k)| {
                    acc + i64::from(current[(c.start + j) * stride + i]) * i64::from(k)
                });
                *value = pil_clip8(acc);
            }
        }
        current = out;
    }
    Ok(current)
}

/// The reference's `after_load_lq` upscaling: the image converted to 8-bit RGB (PIL's
/// `.convert("RGB")`: alpha dropped, gray replicated), then resized by `scale` to
/// [`upscaled_size`] with [`pil_resize_bicubic`].
///
/// # Errors
/// [`Error::InvalidArgument`] for a non-positive `scale` or an empty result.
pub fn pil_upscale(image: &DynamicImage, scale: f64) -> Result<RgbImage> {
    let rgb = image.to_rgb8();
    let (width, height) = upscaled_size(rgb.width(), rgb.height(), scale)?;
    pil_resize_bicubic(&rgb, width, height)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, Tolerance};

    fn device() -> Device {
        Device::flex()
    }

    fn random(shape: [usize; 4]) -> Tensor<4> {
        Tensor::random(shape, Distribution::Uniform(0.0, 1.0), &device())
    }

    #[test]
    fn resize_shapes_and_identity() {
        let x = random([2, 3, 20, 31]);
        assert_eq!(
            resize_bicubic_antialias(x.clone(), 13, 17).unwrap().dims(),
            [2, 3, 13, 17]
        );
        assert_eq!(
            resize_bicubic_antialias(x.clone(), 41, 57).unwrap().dims(),
            [2, 3, 41, 57]
        );
        // Each batch entry and channel is resized on its own.
        let both = resize_bicubic_antialias(x.clone(), 11, 40).unwrap();
        let second = resize_bicubic_antialias(x.clone().slice([1..2, 0..3]), 11, 40).unwrap();
        both.slice([1..2, 0..3])
            .into_data()
            .assert_approx_eq::<f32>(&second.into_data(), Tolerance::absolute(1e-6));
        let same = resize_bicubic_antialias(x.clone(), 20, 31).unwrap();
        same.into_data().assert_eq(&x.into_data(), true);
    }

    #[test]
    fn resize_keeps_constants_and_rows_sum_to_one() {
        let x = Tensor::<4>::ones([1, 3, 9, 14], &device()).mul_scalar(0.25);
        let y = resize_bicubic_antialias(x, 5, 40).unwrap();
        y.clone().into_data().assert_approx_eq::<f32>(
            &Tensor::<4>::full([1, 3, 5, 40], 0.25, &device()).into_data(),
            Tolerance::absolute(1e-6),
        );
        for (i, o) in [(9, 5), (14, 40), (7, 7), (100, 3)] {
            let w = antialias_weights(i, o);
            for row in w.chunks(i) {
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn short_edge_sizes_follow_the_reference() {
        assert_eq!(short_edge_size(20, 31, 48).unwrap(), (48, 74));
        assert_eq!(short_edge_size(20, 31, 12).unwrap(), (12, 18));
        assert_eq!(short_edge_size(31, 20, 12).unwrap(), (18, 12));
        assert_eq!(short_edge_size(7, 7, 512).unwrap(), (512, 512));
        // int(w * (size / h)) in double precision: 3 * (512 / 384) = 4.0 exactly.
        assert_eq!(short_edge_size(384, 3 * 384, 512).unwrap(), (512, 1536));
        let y = resize_short_edge_to(random([1, 3, 20, 31]), 48).unwrap();
        assert_eq!(y.dims(), [1, 3, 48, 74]);
    }

    #[test]
    fn padding_round_trip() {
        let x = random([1, 3, 20, 31]);
        let (padded, padding) = pad_to_multiples_of(x.clone(), 8).unwrap();
        assert_eq!(
            padding,
            Padding {
                bottom: 4,
                right: 1
            }
        );
        assert_eq!(padded.dims(), [1, 3, 24, 32]);
        let border = padded.clone().slice([0..1, 0..3, 20..24, 0..32]);
        assert_eq!(border.abs().max().into_scalar::<f32>(), 0.0);
        let back = padding.unpad(padded).unwrap();
        back.into_data().assert_eq(&x.clone().into_data(), true);

        let (same, none) = pad_to_multiples_of(x.clone(), 1).unwrap();
        assert!(none.is_none());
        assert_eq!(same.dims(), x.dims());
        assert!(padding.unpad(random([1, 3, 4, 4])).is_err());
    }

    #[test]
    fn zero_sizes_are_errors() {
        let x = random([1, 3, 8, 8]);
        assert!(resize_bicubic_antialias(x.clone(), 0, 4).is_err());
        assert!(resize_bicubic_antialias(x.clone(), 4, 0).is_err());
        assert!(resize_short_edge_to(x.clone(), 0).is_err());
        assert!(pad_to_multiples_of(x, 0).is_err());
        assert!(upscaled_size(10, 10, 0.0).is_err());
        assert!(upscaled_size(10, 10, 0.05).is_err());
        assert!(upscaled_size(10, 10, f64::NAN).is_err());
        let img = RgbImage::new(4, 4);
        assert!(pil_resize_bicubic(&img, 0, 4).is_err());
    }

    #[test]
    fn pil_resize_identity_and_constants() {
        let img = RgbImage::from_fn(13, 9, |x, y| {
            image::Rgb([(x * 19) as u8, (y * 27) as u8, ((x + y) * 7) as u8])
        });
        assert_eq!(pil_resize_bicubic(&img, 13, 9).unwrap(), img);
        let flat = RgbImage::from_pixel(5, 7, image::Rgb([200, 3, 77]));
        let big = pil_resize_bicubic(&flat, 23, 11).unwrap();
        assert!(big.pixels().all(|p| p.0 == [200, 3, 77]));
        let small = pil_resize_bicubic(&flat, 2, 3).unwrap();
        assert!(small.pixels().all(|p| p.0 == [200, 3, 77]));
        assert_eq!(upscaled_size(13, 9, 4.0).unwrap(), (52, 36));
        assert_eq!(upscaled_size(13, 9, 1.5).unwrap(), (19, 13));
    }

    /// Pillow 13's `Image.resize(size, BICUBIC)` of small RGB images with
    /// pixel `(x, y, c) = (37x + 91y + 53c + 13xy) mod 256`: down, up, and mixed.
    #[test]
    fn pil_resize_matches_pillow() {
        let make = |w: u32, h: u32| {
            RgbImage::from_fn(w, h, |x, y| {
                image::Rgb([0, 1, 2].map(|c| ((x * 37 + y * 91 + c * 53 + x * y * 13) % 256) as u8))
            })
        };
        type Case = ((u32, u32), (u32, u32), &'static [u8]);
        let cases: [Case; 3] = [
            (
                (7, 5),
                (3, 2),
                &[
                    108, 134, 145, 140, 144, 147, 144, 135, 140, 124, 154, 122, 144, 122, 125, 137,
                    106, 154,
                ],
            ),
            (
                (4, 3),
                (7, 5),
                &[
                    0, 43, 96, 3, 56, 108, 26, 79, 132, 48, 99, 163, 68, 122, 194, 91, 158, 217,
                    104, 178, 229, 26, 77, 142, 38, 95, 160, 65, 129, 186, 95, 161, 156, 125, 173,
                    126, 152, 134, 152, 166, 109, 170, 87, 140, 193, 104, 157, 220, 137, 190, 251,
                    166, 235, 144, 195, 236, 37, 228, 102, 68, 245, 22, 95, 149, 215, 89, 176, 172,
                    114, 214, 103, 151, 160, 126, 132, 105, 159, 112, 143, 131, 150, 170, 114, 174,
                    184, 255, 14, 216, 175, 36, 255, 38, 78, 148, 45, 126, 38, 100, 173, 79, 155,
                    214, 111, 184, 236,
                ],
            ),
            (
                (6, 4),
                (4, 7),
                &[
                    4, 56, 109, 53, 108, 174, 118, 184, 249, 183, 235, 108, 35, 93, 156, 103, 152,
                    150, 138, 136, 193, 133, 196, 137, 97, 156, 225, 183, 218, 113, 169, 65, 100,
                    58, 127, 178, 176, 173, 137, 158, 147, 132, 146, 131, 119, 141, 105, 112, 208,
                    162, 49, 119, 78, 148, 124, 195, 154, 223, 110, 64, 96, 116, 118, 143, 149,
                    104, 162, 117, 123, 148, 151, 171, 25, 88, 165, 160, 197, 77, 187, 66, 103, 98,
                    175, 238,
                ],
            ),
        ];
        for ((w, h), (ow, oh), expected) in cases {
            let out = pil_resize_bicubic(&make(w, h), ow, oh).unwrap();
            assert_eq!(out.as_raw().as_slice(), expected, "{w}x{h} -> {ow}x{oh}");
        }
    }

    #[test]
    fn postprocess_and_quantisation() {
        let sample = random([1, 3, 16, 20]).mul_scalar(2.0).sub_scalar(1.0);
        let cond = random([1, 3, 16, 20]);
        let y = postprocess(sample.clone(), cond.clone(), ColorFix::Wavelet, 10, 12).unwrap();
        assert_eq!(y.dims(), [1, 3, 10, 12]);
        assert!(postprocess(sample, random([1, 3, 8, 8]), ColorFix::None, 4, 4).is_err());
        let images = to_rgb8_images(y).unwrap();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].dimensions(), (12, 10));
        let q = to_rgb8_images(Tensor::<4>::full([1, 3, 1, 1], 0.999, &device())).unwrap();
        assert_eq!(q[0].get_pixel(0, 0).0, [254, 254, 254]);
    }
}
