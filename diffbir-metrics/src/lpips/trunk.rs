//! The feature trunks of LPIPS: torchvision's `alexnet().features` and `vgg16().features`
//! (`torchvision/models/alexnet.py`, `vgg.py`), up to the last tap LPIPS reads
//! (`lpips/pretrained_networks.py`, `alexnet` and `vgg16`).
//!
//! Each trunk is its `nn.Sequential` as a table of layers; the convolutions sit at their
//! `features.N` indices, so torchvision's files load without renaming.

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2dConfig;
use burn::tensor::activation::relu;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Tensor};
use diffbir_core::kernels::Conv2d;
use diffbir_core::weights::ParamCount;

use super::LpipsNet;

/// One layer of a trunk's `nn.Sequential`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    /// `Conv2d(·, width[tap], kernel, stride, padding)` then `ReLU`.
    Conv {
        tap: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    },
    /// `MaxPool2d(kernel, stride)` (floor mode).
    Pool { kernel: usize, stride: usize },
    /// LPIPS reads the activation here (`relu1` … `relu5`).
    Tap,
}

use Layer::{Pool, Tap};

const fn conv(tap: usize, kernel: usize, stride: usize, padding: usize) -> Layer {
    Layer::Conv {
        tap,
        kernel,
        stride,
        padding,
    }
}

/// AlexNet: conv1 11×11/4 (64), pool, conv2 5×5 (192), pool, conv3–5 3×3 (384, 256, 256);
/// each conv is `features.N` with its ReLU at `N + 1`.
const ALEX: &[Layer] = &[
    conv(0, 11, 4, 2),
    Tap,
    Pool {
        kernel: 3,
        stride: 2,
    },
    conv(1, 5, 1, 2),
    Tap,
    Pool {
        kernel: 3,
        stride: 2,
    },
    conv(2, 3, 1, 1),
    Tap,
    conv(3, 3, 1, 1),
    Tap,
    conv(4, 3, 1, 1),
    Tap,
];

const VGG_POOL: Layer = Pool {
    kernel: 2,
    stride: 2,
};

/// VGG16: blocks of 2, 2, 3, 3, 3 3×3 convs (64, 128, 256, 512, 512), a pool between blocks;
/// LPIPS taps the last ReLU of each block.
const VGG: &[Layer] = &[
    conv(0, 3, 1, 1),
    conv(0, 3, 1, 1),
    Tap,
    VGG_POOL,
    conv(1, 3, 1, 1),
    conv(1, 3, 1, 1),
    Tap,
    VGG_POOL,
    conv(2, 3, 1, 1),
    conv(2, 3, 1, 1),
    conv(2, 3, 1, 1),
    Tap,
    VGG_POOL,
    conv(3, 3, 1, 1),
    conv(3, 3, 1, 1),
    conv(3, 3, 1, 1),
    Tap,
    VGG_POOL,
    conv(4, 3, 1, 1),
    conv(4, 3, 1, 1),
    conv(4, 3, 1, 1),
    Tap,
];

fn layers(net: LpipsNet) -> &'static [Layer] {
    match net {
        LpipsNet::Alex => ALEX,
        LpipsNet::Vgg => VGG,
    }
}

/// The `(index in features, in, out, kernel)` of every convolution of a trunk with these tap
/// widths. A conv and its ReLU take two indices, a pool one; taps take none.
fn convs(net: LpipsNet, widths: &[usize; 5]) -> Vec<(usize, usize, usize, Layer)> {
    let mut index = 0;
    let mut channels = 3;
    let mut out = Vec::new();
    for &layer in layers(net) {
        match layer {
            Layer::Conv { tap, .. } => {
                out.push((index, channels, widths[tap], layer));
                channels = widths[tap];
                index += 2;
            }
            Pool { .. } => index += 1,
            Tap => {}
        }
    }
    out
}

/// The parameters of a trunk with these tap widths.
pub(super) fn param_count(net: LpipsNet, widths: &[usize; 5]) -> ParamCount {
    convs(net, widths)
        .into_iter()
        .map(|(_, cin, cout, layer)| match layer {
            Layer::Conv { kernel, .. } => ParamCount::layer(&[cout, cin, kernel, kernel], true),
            _ => ParamCount::default(),
        })
        .fold(ParamCount::default(), |a, b| a + b)
}

/// A trunk: `features` holds the convolutions at their torchvision indices (`None` where the
/// `nn.Sequential` has a ReLU or a pool).
#[derive(Module, Debug)]
pub struct Trunk {
    /// `features.N`.
    pub features: Vec<Option<Conv2d>>,
    /// Which network.
    #[module(skip)]
    pub net: LpipsNet,
}

impl Trunk {
    /// A trunk with random weights and these tap widths (validated by the caller).
    pub(super) fn new(net: LpipsNet, widths: &[usize; 5], device: &Device) -> Self {
        let convs = convs(net, widths);
        let len = convs.last().map_or(0, |c| c.0 + 1);
        let mut features: Vec<Option<Conv2d>> = (0..len).map(|_| None).collect();
        for (index, cin, cout, layer) in convs {
            if let Layer::Conv {
                kernel,
                stride,
                padding,
                ..
            } = layer
            {
                features[index] = Some(
                    Conv2dConfig::new([cin, cout], [kernel, kernel])
                        .with_stride([stride, stride])
                        .with_padding(PaddingConfig2d::Explicit(
                            padding, padding, padding, padding,
                        ))
                        .init(device)
                        .into(),
                );
            }
        }
        Self { features, net }
    }

    /// Runs the trunk on `x` and calls `tap(k, activation)` at each of the five taps, in
    /// order; nothing of a slice is kept once the next one starts.
    ///
    /// # Shapes
    /// - `x`: `[B, 3, H, W]`
    pub fn walk(&self, x: Tensor<4>, mut tap: impl FnMut(usize, Tensor<4>)) {
        let mut x = x;
        let mut index = 0;
        let mut taps = 0;
        for &layer in layers(self.net) {
            match layer {
                Layer::Conv { .. } => {
                    let conv = self.features[index]
                        .as_ref()
                        .expect("the trunk is built from this table");
                    x = relu(conv.forward(x));
                    index += 2;
                }
                Pool { kernel, stride } => {
                    x = max_pool2d(
                        x,
                        MaxPoolOptions::new([kernel, kernel]).with_stride([stride, stride]),
                    );
                    index += 1;
                }
                Tap => {
                    tap(taps, x.clone());
                    taps += 1;
                }
            }
        }
    }

    /// The smallest side an input may have: every pool needs at least its kernel.
    pub fn min_side(net: LpipsNet) -> usize {
        // Walk the table backwards from one pixel at the last pool's output.
        let mut side = 1;
        for &layer in layers(net).iter().rev() {
            side = match layer {
                Pool { kernel, stride } => (side - 1) * stride + kernel,
                Layer::Conv {
                    kernel,
                    stride,
                    padding,
                    ..
                } => ((side - 1) * stride + kernel)
                    .saturating_sub(2 * padding)
                    .max(1),
                Tap => side,
            };
        }
        side
    }
}
