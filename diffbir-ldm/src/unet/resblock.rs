//! The residual block with time conditioning (`ResBlock`,
//! `XPixelGroup/DiffBIR@3f8b530:diffbir/model/unet.py:L111-L223`), and the `GroupNorm32` it
//! normalises with (`diffbir/model/util.py:L176-L193`).

use burn::module::Module;
use burn::nn::{GroupNorm, GroupNormConfig};
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::AvgPoolOptions;
use burn::tensor::{DType, Device, Tensor};
use diffbir_core::kernels::{Conv2d, Linear, silu};
use diffbir_core::resize::upsample_nearest2x;

/// `GroupNorm(32, channels)` with the original's epsilon (1e-5).
pub(crate) fn group_norm32(channels: usize, device: &Device) -> GroupNorm {
    GroupNormConfig::new(32, channels)
        .with_epsilon(1e-5)
        .init(device)
}

/// `GroupNorm32`: the statistics are computed in f32 whatever the activations' precision.
pub(crate) fn gn32(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    let dtype = x.dtype();
    let param_dtype = norm.gamma.as_ref().map_or(DType::F32, |g| g.val().dtype());
    if dtype == param_dtype {
        norm.forward(x)
    } else {
        norm.forward(x.cast(param_dtype)).cast(dtype)
    }
}

/// What a residual block does to the resolution before its first conv (`up` / `down` of
/// `ResBlock.__init__`, set with `resblock_updown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    /// Keeps the resolution.
    None,
    /// Nearest ×2 upsampling.
    Up,
    /// 2×2 average pooling.
    Down,
}

impl Resample {
    fn apply(self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::None => x,
            Self::Up => upsample_nearest2x(x),
            Self::Down => avg_pool2d(x, pool2()),
        }
    }
}

/// Residual block with time conditioning (`in_layers`, `emb_layers`, `out_layers`).
#[derive(Module, Debug)]
pub struct ResBlock {
    /// `in_layers.0`: GroupNorm32.
    pub in_norm: GroupNorm,
    /// `in_layers.2`: 3×3 conv.
    pub in_conv: Conv2d,
    /// `emb_layers.1`: time embedding projection.
    pub emb_linear: Linear,
    /// `out_layers.0`: GroupNorm32.
    pub out_norm: GroupNorm,
    /// `out_layers.3`: 3×3 conv.
    pub out_conv: Conv2d,
    /// 1×1 projection when the width changes.
    pub skip_connection: Option<Conv2d>,
    pub(super) scale_shift: bool,
    #[module(skip)]
    pub(super) resample: Resample,
}

/// `F.avg_pool2d(x, kernel_size=2, stride=2)`.
pub(crate) fn pool2() -> AvgPoolOptions<2> {
    let mut options = AvgPoolOptions::new([2, 2]);
    options.stride = [2, 2];
    options
}

impl ResBlock {
    /// # Shapes
    /// - `x`: `[B, Cin, H, W]`; `emb`: `[B, 4·model_channels]`; returns `[B, Cout, H', W']`
    pub fn forward(&self, x: Tensor<4>, emb: &Tensor<2>) -> Tensor<4> {
        let h = silu(gn32(&self.in_norm, x.clone()));
        let h = self.in_conv.forward(self.resample.apply(h));
        let x = self.resample.apply(x);
        let [b, c, _, _] = h.dims();
        let e = self.emb_linear.forward(silu(emb.clone())).cast(h.dtype());
        let h = if self.scale_shift {
            let scale = e.clone().slice([0..b, 0..c]).reshape([b, c, 1, 1]);
            let shift = e.slice([0..b, c..2 * c]).reshape([b, c, 1, 1]);
            gn32(&self.out_norm, h) * scale.add_scalar(1.0) + shift
        } else {
            gn32(&self.out_norm, h + e.reshape([b, c, 1, 1]))
        };
        let h = self.out_conv.forward(silu(h));
        let skip = match &self.skip_connection {
            Some(conv) => conv.forward(x),
            None => x,
        };
        skip + h
    }
}
