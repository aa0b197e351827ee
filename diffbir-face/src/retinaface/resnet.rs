//! torchvision's ResNet with bottleneck blocks, up to `layer4` (what RetinaFace's
//! `IntermediateLayerGetter` keeps): `torchvision/models/resnet.py` (`ResNet`, `Bottleneck`,
//! `_make_layer`), version 1.5 (the stride on the 3 × 3 convolution).

use burn::module::Module;
use burn::nn::BatchNorm;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Tensor};
use diffbir_core::kernels::Conv2d;
use serde::{Deserialize, Serialize};

use crate::layers::{ConvBn, batch_norm, conv, leaky};

/// The block layout of a bottleneck ResNet (ResNet-50 by default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResNetLayout {
    /// Blocks in `layer1..layer4`.
    pub layers: [usize; 4],
    /// `width_per_group`: the 3 × 3 convolutions have `planes · width_per_group / 64`
    /// channels.
    pub width_per_group: usize,
    /// `Bottleneck.expansion`: a block outputs `planes · expansion` channels.
    pub expansion: usize,
}

impl Default for ResNetLayout {
    /// ResNet-50: 3-4-6-3 blocks, width 64 per group, expansion 4.
    fn default() -> Self {
        Self {
            layers: [3, 4, 6, 3],
            width_per_group: 64,
            expansion: 4,
        }
    }
}

impl ResNetLayout {
    /// `planes` of `layer1..layer4`.
    const PLANES: [usize; 4] = [64, 128, 256, 512];

    /// Channels out of `layer2`, `layer3` and `layer4` (what the FPN reads).
    pub fn out_channels(&self) -> [usize; 3] {
        [1, 2, 3].map(|i| Self::PLANES[i] * self.expansion)
    }

    /// The 3 × 3 width of a block of `planes`, as `Bottleneck.__init__` computes it.
    fn width(&self, planes: usize) -> usize {
        planes * self.width_per_group / 64
    }

    /// Parameter count (convolutions and batch norms), for validation.
    pub(crate) fn param_count(&self) -> diffbir_core::weights::ParamCount {
        use diffbir_core::weights::ParamCount;
        let conv = |cin: usize, cout: usize, k: usize| ParamCount::of(&[cout, cin, k, k]);
        let bn = |c: usize| ParamCount::of(&[4, c]);
        let mut total = conv(3, 64, 7) + bn(64);
        let mut inplanes = 64usize;
        for (i, &blocks) in self.layers.iter().enumerate() {
            let planes = Self::PLANES[i];
            let (width, out) = (self.width(planes), planes.saturating_mul(self.expansion));
            let block = |cin: usize| {
                conv(cin, width, 1)
                    + bn(width)
                    + conv(width, width, 3)
                    + bn(width)
                    + conv(width, out, 1)
                    + bn(out)
            };
            total += block(inplanes) + conv(inplanes, out, 1) + bn(out);
            total += block(out).times(blocks.saturating_sub(1));
            inplanes = out;
        }
        total
    }

    /// Builds `conv1` … `layer4` with random weights.
    pub(crate) fn init(&self, device: &Device) -> ResNet {
        let mut inplanes = 64;
        let mut layer = |i: usize| {
            let planes = Self::PLANES[i];
            let stride = if i == 0 { 1 } else { 2 };
            let (width, out) = (self.width(planes), planes * self.expansion);
            let blocks = (0..self.layers[i])
                .map(|b| {
                    let (cin, s) = if b == 0 { (inplanes, stride) } else { (out, 1) };
                    Bottleneck {
                        conv1: conv([cin, width], 1, 1, 0, 1, false, device),
                        bn1: batch_norm(width, device),
                        conv2: conv([width, width], 3, s, 1, 1, false, device),
                        bn2: batch_norm(width, device),
                        conv3: conv([width, out], 1, 1, 0, 1, false, device),
                        bn3: batch_norm(out, device),
                        downsample: (b == 0 && (s != 1 || cin != out))
                            .then(|| ConvBn::new([cin, out], 1, s, None, device)),
                    }
                })
                .collect();
            inplanes = out;
            blocks
        };
        ResNet {
            conv1: conv([3, 64], 7, 2, 3, 1, false, device),
            bn1: batch_norm(64, device),
            layer1: layer(0),
            layer2: layer(1),
            layer3: layer(2),
            layer4: layer(3),
        }
    }
}

/// torchvision's `Bottleneck`.
#[derive(Module, Debug)]
pub struct Bottleneck {
    /// 1 × 1, `cin → width`.
    pub conv1: Conv2d,
    /// Batch norm of `conv1`.
    pub bn1: BatchNorm,
    /// 3 × 3 with the block's stride.
    pub conv2: Conv2d,
    /// Batch norm of `conv2`.
    pub bn2: BatchNorm,
    /// 1 × 1, `width → planes · expansion`.
    pub conv3: Conv2d,
    /// Batch norm of `conv3`.
    pub bn3: BatchNorm,
    /// 1 × 1 strided projection of the input when its shape changes.
    pub downsample: Option<ConvBn>,
}

impl Bottleneck {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = leaky(self.bn1.forward(self.conv1.forward(x.clone())), 0.0);
        let out = leaky(self.bn2.forward(self.conv2.forward(out)), 0.0);
        let out = self.bn3.forward(self.conv3.forward(out));
        let identity = match &self.downsample {
            Some(d) => d.forward(x),
            None => x,
        };
        leaky(out + identity, 0.0)
    }
}

/// A bottleneck ResNet up to `layer4`.
#[derive(Module, Debug)]
pub struct ResNet {
    /// 7 × 7 stride-2 stem.
    pub conv1: Conv2d,
    /// Batch norm of the stem.
    pub bn1: BatchNorm,
    /// Stride 4 from the input.
    pub layer1: Vec<Bottleneck>,
    /// Stride 8.
    pub layer2: Vec<Bottleneck>,
    /// Stride 16.
    pub layer3: Vec<Bottleneck>,
    /// Stride 32.
    pub layer4: Vec<Bottleneck>,
}

impl ResNet {
    /// The outputs of `layer2`, `layer3` and `layer4`.
    ///
    /// # Shapes
    /// - `x`: `[B, 3, H, W]`; returns maps at strides 8, 16 and 32
    pub fn forward(&self, x: Tensor<4>) -> [Tensor<4>; 3] {
        let x = leaky(self.bn1.forward(self.conv1.forward(x)), 0.0);
        let x = max_pool2d(
            x,
            MaxPoolOptions::new([3, 3])
                .with_stride([2, 2])
                .with_padding([1, 1]),
        );
        let run = |x: Tensor<4>, layer: &[Bottleneck]| layer.iter().fold(x, |x, b| b.forward(x));
        let c2 = run(run(x, &self.layer1), &self.layer2);
        let c3 = run(c2.clone(), &self.layer3);
        let c4 = run(c3.clone(), &self.layer4);
        [c2, c3, c4]
    }
}
