//! Tiling geometry and Gaussian blending
//! (`XPixelGroup/DiffBIR@3f8b530:diffbir/utils/common.py:L123-L232`): the sliding windows,
//! weights and tiled evaluation that DiffBIR uses for stage 1 (`--cleaner_tiled`) and for the
//! diffusion model (`--cldm_tiled`, mixture of diffusers).

use burn::tensor::{DType, Tensor, TensorData};

use crate::error::{Error, Result};

/// One tile: rows `hi..hi_end`, columns `wi..wi_end` of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileBox {
    /// First row.
    pub hi: usize,
    /// One past the last row.
    pub hi_end: usize,
    /// First column.
    pub wi: usize,
    /// One past the last column.
    pub wi_end: usize,
}

impl TileBox {
    /// The box with every coordinate multiplied by `scale`.
    pub fn scaled(self, scale: TileScale) -> Self {
        let f = |n| scale.apply(n);
        Self {
            hi: f(self.hi),
            hi_end: f(self.hi_end),
            wi: f(self.wi),
            wi_end: f(self.wi_end),
        }
    }
}

/// How the output of the tiled function relates to its input in size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileScale {
    /// The output is `n` times larger (e.g. 4 for BSRNet).
    Up(usize),
    /// The output is `n` times smaller (integer division).
    Down(usize),
}

impl TileScale {
    fn apply(self, n: usize) -> usize {
        match self {
            Self::Up(s) => n * s,
            Self::Down(s) => n / s,
        }
    }
}

/// Top-left corners of `size × size` tiles over an `h × w` input, row-major: starts
/// `0, stride, 2·stride, … ≤ h − size`, plus `h − size` when the stride does not land there.
///
/// The input must be at least one tile large in both dimensions (callers run untiled
/// otherwise), and `size` and `stride` must be positive.
pub fn sliding_windows(h: usize, w: usize, size: usize, stride: usize) -> Result<Vec<TileBox>> {
    if size == 0 || stride == 0 {
        return Err(Error::invalid(
            "tile",
            format!("tile size ({size}) and stride ({stride}) must be positive"),
        ));
    }
    if h < size || w < size {
        return Err(Error::invalid(
            "tile",
            format!("a {h}x{w} input is smaller than one {size}x{size} tile: run it untiled"),
        ));
    }
    let starts = |n: usize| {
        let mut v: Vec<usize> = (0..=n - size).step_by(stride).collect();
        if !(n - size).is_multiple_of(stride) {
            v.push(n - size);
        }
        v
    };
    let (rows, cols) = (starts(h), starts(w));
    Ok(rows
        .iter()
        .flat_map(|&hi| {
            cols.iter().map(move |&wi| TileBox {
                hi,
                hi_end: hi + size,
                wi,
                wi_end: wi + size,
            })
        })
        .collect())
}

/// Gaussian blending weights of a `tile_width × tile_height` tile, row-major `[H, W]`
/// (from mixture-of-diffusers, variance 0.01). Note the reference centres x on `(W − 1)/2`
/// but y on `H/2`; this is kept for parity.
pub fn gaussian_weights(tile_width: usize, tile_height: usize) -> Vec<f64> {
    const VAR: f64 = 0.01;
    let norm = (2.0 * std::f64::consts::PI * VAR).sqrt();
    let (w, h) = (tile_width as f64, tile_height as f64);
    let midpoint_x = (w - 1.0) / 2.0;
    let midpoint_y = h / 2.0;
    let x_probs: Vec<f64> = (0..tile_width)
        .map(|x| (-((x as f64 - midpoint_x).powi(2)) / (w * w) / (2.0 * VAR)).exp() / norm)
        .collect();
    let y_probs: Vec<f64> = (0..tile_height)
        .map(|y| (-((y as f64 - midpoint_y).powi(2)) / (h * h) / (2.0 * VAR)).exp() / norm)
        .collect();
    y_probs
        .iter()
        .flat_map(|y| x_probs.iter().map(move |x| y * x))
        .collect()
}

/// Tiling parameters of [`tiled_apply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileSpec {
    /// Tile side in input units.
    pub size: usize,
    /// Distance between tile starts in input units.
    pub stride: usize,
    /// Output size relative to the input.
    pub scale: TileScale,
}

/// Evaluates `f` tile by tile and blends the overlapping outputs with Gaussian weights, like
/// the reference's `make_tiled_fn`: `out = Σ f(tile)·w / Σ w`.
///
/// `f` receives the input tile and its box in input coordinates (so it can crop other inputs
/// the same way). The output has `f`'s channel count.
///
/// # Shapes
/// - `x`: `[B, C, H, W]` with `H, W ≥ spec.size`
/// - `f` maps `[B, C, size, size]` to `[B, C', s(size), s(size)]`
/// - returns `[B, C', s(H), s(W)]`, `s` being `spec.scale`
pub fn tiled_apply(
    x: Tensor<4>,
    spec: TileSpec,
    mut f: impl FnMut(Tensor<4>, TileBox) -> Tensor<4>,
) -> Result<Tensor<4>> {
    let [b, _, h, w] = x.dims();
    let device = x.device();
    let tiles = sliding_windows(h, w, spec.size, spec.stride)?;
    let (out_h, out_w) = (spec.scale.apply(h), spec.scale.apply(w));
    let weight_size = spec.scale.apply(spec.size);
    let weights_f32: Vec<f32> = gaussian_weights(weight_size, weight_size)
        .into_iter()
        .map(|v| v as f32)
        .collect();
    let weights = Tensor::<4>::from_data(
        TensorData::new(weights_f32.clone(), [1, 1, weight_size, weight_size]),
        &device,
    );
    // The normaliser depends only on the geometry: accumulate it on the CPU, in tile order.
    let mut count = vec![0f32; out_h * out_w];
    // The blend accumulates in f32 whatever the tiles' dtype, and returns theirs.
    let mut out: Option<Tensor<4>> = None;
    let mut dtype = DType::F32;
    for tile in &tiles {
        let x_tile = x.clone().slice([
            0..b,
            0..x.dims()[1],
            tile.hi..tile.hi_end,
            tile.wi..tile.wi_end,
        ]);
        let y = f(x_tile, *tile);
        let [yb, yc, yh, yw] = y.dims();
        assert_eq!(
            [yb, yh, yw],
            [b, weight_size, weight_size],
            "tiled_apply: the tile function returned {:?}, expected [{b}, C, {weight_size}, {weight_size}]",
            y.dims()
        );
        dtype = y.dtype();
        let y = y.cast(DType::F32);
        let o = tile.scaled(spec.scale);
        // Taken out of `out` so that the assignment below owns the only reference and
        // updates the accumulator in place instead of copying it for every tile.
        let acc = out
            .take()
            .unwrap_or_else(|| Tensor::zeros([b, yc, out_h, out_w], &device));
        let ranges = [0..b, 0..yc, o.hi..o.hi_end, o.wi..o.wi_end];
        let updated = acc.clone().slice(ranges.clone()) + y * weights.clone();
        out = Some(acc.slice_assign(ranges, updated));
        for r in 0..weight_size {
            let row = &mut count[(o.hi + r) * out_w + o.wi..(o.hi + r) * out_w + o.wi_end];
            for (c, wv) in row
                .iter_mut()
                .zip(&weights_f32[r * weight_size..(r + 1) * weight_size])
            {
                *c += wv;
            }
        }
    }
    let out = out.expect("sliding_windows returns at least one tile");
    let count = Tensor::<4>::from_data(TensorData::new(count, [1, 1, out_h, out_w]), &device);
    Ok((out / count).cast(dtype))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    #[test]
    fn windows_cover_the_input_and_end_on_the_border() {
        let t = sliding_windows(24, 40, 16, 8).unwrap();
        assert_eq!(t.len(), 2 * 4);
        assert_eq!(
            t[0],
            TileBox {
                hi: 0,
                hi_end: 16,
                wi: 0,
                wi_end: 16
            }
        );
        assert_eq!(t.last().unwrap().wi_end, 40);
        let t = sliding_windows(40, 24, 16, 12).unwrap();
        let rows: Vec<usize> = t.iter().map(|b| b.hi).collect();
        assert_eq!(rows, [0, 0, 12, 12, 24, 24]);
        assert!(sliding_windows(10, 40, 16, 8).is_err());
        assert!(sliding_windows(40, 40, 16, 0).is_err());
    }

    #[test]
    fn gaussian_weights_follow_the_reference_quirk() {
        let w = gaussian_weights(4, 4);
        // Symmetric in x around 1.5, but peaked at row 2 (H/2) in y.
        assert!((w[0] - w[3]).abs() < 1e-15);
        assert!(w[2 * 4 + 1] > w[4 + 1]);
    }

    #[test]
    fn tiling_the_identity_gives_the_input_back() {
        let device = Device::flex();
        let x = Tensor::<4>::random([2, 3, 20, 28], Distribution::Default, &device);
        let spec = TileSpec {
            size: 8,
            stride: 5,
            scale: TileScale::Up(1),
        };
        let y = tiled_apply(x.clone(), spec, |t, _| t).unwrap();
        let err: f32 = (y - x.clone()).abs().max().into_scalar();
        assert!(err < 1e-6, "{err}");
        // Half-precision tiles blend in f32 and come back in their dtype.
        for dtype in [DType::F16, DType::BF16] {
            let half = x.clone().cast(dtype);
            let y = tiled_apply(half.clone(), spec, |t, _| t).unwrap();
            assert_eq!(y.dtype(), dtype);
            let err: f32 = (y.cast(DType::F32) - half.cast(DType::F32))
                .abs()
                .max()
                .into_scalar();
            assert!(err < 1e-2, "{dtype:?}: {err}");
        }
    }

    #[test]
    fn upscaling_tiles_place_outputs_at_scaled_boxes() {
        let device = Device::flex();
        let x = Tensor::<4>::random([1, 1, 12, 12], Distribution::Default, &device);
        let spec = TileSpec {
            size: 8,
            stride: 4,
            scale: TileScale::Up(2),
        };
        let up = |t: Tensor<4>| {
            let [b, c, h, w] = t.dims();
            t.reshape([b, c, h, 1, w, 1])
                .repeat_dim(3, 2)
                .repeat_dim(5, 2)
                .reshape([b, c, 2 * h, 2 * w])
        };
        let y = tiled_apply(x.clone(), spec, |t, _| up(t)).unwrap();
        let err: f32 = (y - up(x)).abs().max().into_scalar();
        assert!(err < 1e-6, "{err}");
    }
}
