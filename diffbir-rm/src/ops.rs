//! Tensor helpers shared by the stage-1 networks: pixel (un)shuffle,
//! and the window partition, relative-position index and shift masks of Swin attention.

use burn::tensor::{Device, Int, Tensor, TensorData};
use diffbir_core::kernels::Conv2d;

/// `torch.nn.PixelUnshuffle(r)`: `out[b, c·r² + i·r + j, y, x] = in[b, c, r·y + i, r·x + j]`.
///
/// # Shapes
/// - `x`: `[B, C, H, W]` with `H`, `W` multiples of `r`; returns `[B, C·r², H/r, W/r]`
pub fn pixel_unshuffle(x: Tensor<4>, r: usize) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h / r, r, w / r, r])
        .permute([0, 1, 3, 5, 2, 4])
        .reshape([b, c * r * r, h / r, w / r])
}

/// `torch.nn.PixelShuffle(r)`, the inverse of [`pixel_unshuffle`].
///
/// # Shapes
/// - `x`: `[B, C·r², H, W]`; returns `[B, C, H·r, W·r]`
pub fn pixel_shuffle(x: Tensor<4>, r: usize) -> Tensor<4> {
    let [b, crr, h, w] = x.dims();
    let c = crr / (r * r);
    x.reshape([b, c, r, r, h, w])
        .permute([0, 1, 4, 2, 5, 3])
        .reshape([b, c, h * r, w * r])
}

/// Splits `[B, H, W, C]` into non-overlapping `ws × ws` windows, windows in row-major order
/// per image and tokens in row-major order per window.
///
/// # Shapes
/// - `x`: `[B, H, W, C]`, `H` and `W` multiples of `ws`; returns `[B·(H/ws)·(W/ws), ws², C]`
pub fn window_partition(x: Tensor<4>, ws: usize) -> Tensor<3> {
    let [b, h, w, c] = x.dims();
    x.reshape([b, h / ws, ws, w / ws, ws, c])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([b * (h / ws) * (w / ws), ws * ws, c])
}

/// The inverse of [`window_partition`].
///
/// # Shapes
/// - `windows`: `[B·(H/ws)·(W/ws), ws², C]`; returns `[B, H, W, C]`
pub fn window_reverse(windows: Tensor<3>, ws: usize, h: usize, w: usize) -> Tensor<4> {
    let [bn, _, c] = windows.dims();
    let b = bn / ((h / ws) * (w / ws));
    windows
        .reshape([b, h / ws, w / ws, ws, ws, c])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([b, h, w, c])
}

/// For query token `p = (i1, j1)` and key token `q = (i2, j2)` of a `ws × ws` window (tokens
/// row-major), the index `(i1 − i2 + ws − 1)·(2ws − 1) + (j1 − j2 + ws − 1)` into a
/// `(2ws − 1)²` relative-position table; `[ws², ws²]` flattened.
pub fn relative_position_index(ws: usize, device: &Device) -> Tensor<1, Int> {
    let n = ws * ws;
    let span = 2 * ws - 1;
    let mut index = Vec::with_capacity(n * n);
    for p in 0..n {
        for q in 0..n {
            let (i1, j1) = (p / ws, p % ws);
            let (i2, j2) = (q / ws, q % ws);
            index.push(((i1 + ws - 1 - i2) * span + (j1 + ws - 1 - j2)) as i64);
        }
    }
    Tensor::from_data(TensorData::new(index, [n * n]), device)
}

/// Region labels of a `h × w` map for shifted windows: rows split at `h − ws` and
/// `h − shift`, columns likewise; the 3×3 regions numbered row-major. Returned per window
/// (the layout of [`window_partition`]): `[nW][ws²]`.
fn shift_region_labels(h: usize, w: usize, ws: usize, shift: usize) -> Vec<Vec<u8>> {
    let region = |v: usize, n: usize| -> u8 {
        if v < n - ws {
            0
        } else if v < n - shift {
            1
        } else {
            2
        }
    };
    let mut windows = Vec::with_capacity((h / ws) * (w / ws));
    for wy in 0..h / ws {
        for wx in 0..w / ws {
            let mut labels = Vec::with_capacity(ws * ws);
            for i in 0..ws {
                for j in 0..ws {
                    labels.push(region(wy * ws + i, h) * 3 + region(wx * ws + j, w));
                }
            }
            windows.push(labels);
        }
    }
    windows
}

/// SwinIR's additive shift mask: `0` where query and key lie in the same region, `fill`
/// (−100 in SwinIR) elsewhere.
///
/// # Shapes
/// - returns `[nW, ws², ws²]` with `nW = (h/ws)·(w/ws)`
pub fn shift_attention_mask(
    h: usize,
    w: usize,
    ws: usize,
    shift: usize,
    fill: f32,
    device: &Device,
) -> Tensor<3> {
    let labels = shift_region_labels(h, w, ws, shift);
    let n = ws * ws;
    let mut mask = Vec::with_capacity(labels.len() * n * n);
    for window in &labels {
        for p in window {
            mask.extend(window.iter().map(|q| if p == q { 0.0 } else { fill }));
        }
    }
    Tensor::from_data(TensorData::new(mask, [labels.len(), n, n]), device)
}

/// A `torch.nn.Conv2d(cin, cout, k, stride, padding, bias)` equivalent.
pub(crate) fn conv(
    cin: usize,
    cout: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    bias: bool,
    device: &Device,
) -> Conv2d {
    burn::nn::conv::Conv2dConfig::new([cin, cout], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(burn::nn::PaddingConfig2d::Explicit(
            padding, padding, padding, padding,
        ))
        .with_bias(bias)
        .init(device)
        .into()
}

/// A 3×3, stride 1, padding 1 convolution with bias (the most common stage-1 conv).
pub(crate) fn conv3x3(cin: usize, cout: usize, device: &Device) -> Conv2d {
    conv(cin, cout, 3, 1, 1, true, device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn unshuffle_then_shuffle_is_identity_and_orders_channels_like_torch() {
        let device = Device::flex();
        let x = Tensor::<4>::random([2, 3, 8, 12], Distribution::Default, &device);
        let y = pixel_unshuffle(x.clone(), 4);
        assert_eq!(y.dims(), [2, 48, 2, 3]);
        let back = pixel_shuffle(y.clone(), 4);
        let err: f32 = (back - x.clone()).abs().max().into_scalar();
        assert_eq!(err, 0.0);
        // out[0, c*16 + i*4 + j, yy, xx] == in[0, c, 4yy + i, 4xx + j]
        let (c, i, j, yy, xx) = (2, 1, 3, 1, 2);
        let a: f32 = y
            .slice([
                0..1,
                c * 16 + i * 4 + j..c * 16 + i * 4 + j + 1,
                yy..yy + 1,
                xx..xx + 1,
            ])
            .into_scalar();
        let b: f32 = x
            .slice([
                0..1,
                c..c + 1,
                4 * yy + i..4 * yy + i + 1,
                4 * xx + j..4 * xx + j + 1,
            ])
            .into_scalar();
        assert_eq!(a, b);
    }

    #[test]
    fn windows_round_trip() {
        let device = Device::flex();
        let x = Tensor::<4>::random([2, 16, 24, 5], Distribution::Default, &device);
        let w = window_partition(x.clone(), 8);
        assert_eq!(w.dims(), [2 * 2 * 3, 64, 5]);
        let err: f32 = (window_reverse(w, 8, 16, 24) - x).abs().max().into_scalar();
        assert_eq!(err, 0.0);
    }

    #[test]
    fn relative_index_is_centred() {
        let idx: Vec<i64> = relative_position_index(2, &Device::flex())
            .into_data()
            .convert::<i64>()
            .try_to_vec()
            .unwrap();
        // Same token: (0+1)*3 + (0+1) = 4, the table centre.
        assert_eq!(idx[0], 4);
        assert_eq!(idx.len(), 16);
        assert_eq!(*idx.iter().max().unwrap(), 8);
    }

    #[test]
    fn shift_mask_separates_regions_only_in_border_windows() {
        let m = shift_attention_mask(16, 16, 8, 4, -100.0, &Device::flex());
        let v: Vec<f32> = m.into_data().try_to_vec().unwrap();
        let n = 64 * 64;
        assert!(
            v[..n].iter().all(|x| *x == 0.0),
            "top-left window has one region"
        );
        assert!(
            v[3 * n..].iter().any(|x| *x == -100.0),
            "bottom-right window is split"
        );
    }
}
