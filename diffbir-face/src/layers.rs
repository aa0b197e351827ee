//! The convolution + batch-norm blocks facexlib's networks are built from, laid out as the
//! original `nn.Sequential`s so that checkpoint keys map by one rule (`.N.` → `.lN.`, see
//! [`crate::retinaface::RETINAFACE_KEYS`]).

use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::activation::leaky_relu;
use burn::tensor::{Device, Tensor};
use diffbir_core::kernels::Conv2d;

/// `torch.nn.Conv2d(cin, cout, k, stride, padding, groups=groups, bias=bias)`.
pub(crate) fn conv(
    [cin, cout]: [usize; 2],
    kernel: usize,
    stride: usize,
    padding: usize,
    groups: usize,
    bias: bool,
    device: &Device,
) -> Conv2d {
    burn::nn::conv::Conv2dConfig::new([cin, cout], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(
            padding, padding, padding, padding,
        ))
        .with_groups(groups)
        .with_bias(bias)
        .init(device)
        .into()
}

/// `torch.nn.BatchNorm2d(channels)` (eps 1e-5), used with its running statistics.
pub(crate) fn batch_norm(channels: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(channels).init(device)
}

/// `LeakyReLU(slope)`, where a slope of 0 is a ReLU (as the original writes it).
pub(crate) fn leaky(x: Tensor<4>, slope: f64) -> Tensor<4> {
    if slope == 0.0 {
        burn::tensor::activation::relu(x)
    } else {
        leaky_relu(x, slope)
    }
}

/// `Sequential(Conv2d(bias=False), BatchNorm2d[, LeakyReLU])`: facexlib's `conv_bn`,
/// `conv_bn_no_relu` and `conv_bn1X1`, and torchvision's `downsample`.
#[derive(Module, Debug)]
pub struct ConvBn {
    /// The convolution (`.0`).
    pub l0: Conv2d,
    /// The batch norm (`.1`).
    pub l1: BatchNorm,
    /// The activation's negative slope; `None` for none.
    #[module(skip)]
    pub slope: Option<f64>,
}

impl ConvBn {
    /// A `kernel × kernel` convolution with `padding = kernel / 2`, then batch norm and the
    /// activation `slope` (if any).
    pub(crate) fn new(
        channels: [usize; 2],
        kernel: usize,
        stride: usize,
        slope: Option<f64>,
        device: &Device,
    ) -> Self {
        Self {
            l0: conv(channels, kernel, stride, kernel / 2, 1, false, device),
            l1: batch_norm(channels[1], device),
            slope,
        }
    }

    /// # Shapes
    /// - `x`: `[B, cin, H, W]`; returns `[B, cout, H', W']`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.l1.forward(self.l0.forward(x));
        match self.slope {
            Some(slope) => leaky(y, slope),
            None => y,
        }
    }
}
