//! RetinaFace's MobileNet-0.25 backbone: `facexlib/detection/retinaface_net.py`
//! (`MobileNetV1`, `conv_bn`, `conv_dw`), up to `stage3` (the classifier is not kept).

use burn::module::Module;
use burn::nn::BatchNorm;
use burn::tensor::{Device, Tensor};
use diffbir_core::kernels::Conv2d;

use crate::layers::{ConvBn, batch_norm, conv, leaky};

/// Every activation of the backbone is `LeakyReLU(0.1)`.
const SLOPE: f64 = 0.1;

/// `conv_dw`: a depthwise 3 × 3 and a pointwise 1 × 1 convolution, each with batch norm and
/// `LeakyReLU(0.1)` (`.2` and `.5` are the activations).
#[derive(Module, Debug)]
pub struct ConvDw {
    /// Depthwise 3 × 3 with the block's stride.
    pub l0: Conv2d,
    /// Its batch norm.
    pub l1: BatchNorm,
    /// Pointwise 1 × 1.
    pub l3: Conv2d,
    /// Its batch norm.
    pub l4: BatchNorm,
}

impl ConvDw {
    fn new(cin: usize, cout: usize, stride: usize, device: &Device) -> Self {
        Self {
            l0: conv([cin, cin], 3, stride, 1, cin, false, device),
            l1: batch_norm(cin, device),
            l3: conv([cin, cout], 1, 1, 0, 1, false, device),
            l4: batch_norm(cout, device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = leaky(self.l1.forward(self.l0.forward(x)), SLOPE);
        leaky(self.l4.forward(self.l3.forward(x)), SLOPE)
    }
}

/// One layer of a stage: the stem's `conv_bn` or a `conv_dw`.
#[derive(Module, Debug)]
pub enum MobileLayer {
    /// `conv_bn(3, 8, 2, leaky=0.1)`.
    Full(ConvBn),
    /// `conv_dw`.
    Depthwise(ConvDw),
}

impl MobileLayer {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::Full(l) => l.forward(x),
            Self::Depthwise(l) => l.forward(x),
        }
    }
}

/// `MobileNetV1` at width 0.25 (8 to 256 channels).
#[derive(Module, Debug)]
pub struct MobileNetV1 {
    /// Stride 8 (channels 8 → 64).
    pub stage1: Vec<MobileLayer>,
    /// Stride 16 (128 channels).
    pub stage2: Vec<MobileLayer>,
    /// Stride 32 (256 channels).
    pub stage3: Vec<MobileLayer>,
}

impl MobileNetV1 {
    /// Channels out of the three stages.
    pub const OUT_CHANNELS: [usize; 3] = [64, 128, 256];

    /// Parameters of the backbone (fixed by the architecture).
    pub(crate) fn param_count() -> diffbir_core::weights::ParamCount {
        use diffbir_core::weights::ParamCount;
        let dw = |cin: usize, cout: usize| {
            ParamCount::of(&[cin, 1, 3, 3])
                + ParamCount::of(&[4, cin])
                + ParamCount::of(&[cout, cin, 1, 1])
                + ParamCount::of(&[4, cout])
        };
        Self::LAYOUT
            .iter()
            .flat_map(|stage| stage.iter())
            .map(|&(cin, cout, _)| dw(cin, cout))
            .fold(
                ParamCount::of(&[8, 3, 3, 3]) + ParamCount::of(&[4, 8]),
                |a, b| a + b,
            )
    }

    /// The `conv_dw` layers of each stage: `(cin, cout, stride)`.
    const LAYOUT: [&[(usize, usize, usize)]; 3] = [
        &[
            (8, 16, 1),
            (16, 32, 2),
            (32, 32, 1),
            (32, 64, 2),
            (64, 64, 1),
        ],
        &[
            (64, 128, 2),
            (128, 128, 1),
            (128, 128, 1),
            (128, 128, 1),
            (128, 128, 1),
            (128, 128, 1),
        ],
        &[(128, 256, 2), (256, 256, 1)],
    ];

    /// Builds the backbone with random weights.
    pub(crate) fn init(device: &Device) -> Self {
        let stage = |i: usize| -> Vec<MobileLayer> {
            Self::LAYOUT[i]
                .iter()
                .map(|&(cin, cout, s)| MobileLayer::Depthwise(ConvDw::new(cin, cout, s, device)))
                .collect()
        };
        let mut stage1 = vec![MobileLayer::Full(ConvBn::new(
            [3, 8],
            3,
            2,
            Some(SLOPE),
            device,
        ))];
        stage1.extend(stage(0));
        Self {
            stage1,
            stage2: stage(1),
            stage3: stage(2),
        }
    }

    /// The outputs of the three stages.
    ///
    /// # Shapes
    /// - `x`: `[B, 3, H, W]`; returns maps at strides 8, 16 and 32
    pub fn forward(&self, x: Tensor<4>) -> [Tensor<4>; 3] {
        let run = |x: Tensor<4>, stage: &[MobileLayer]| stage.iter().fold(x, |x, l| l.forward(x));
        let c1 = run(x, &self.stage1);
        let c2 = run(c1.clone(), &self.stage2);
        let c3 = run(c2.clone(), &self.stage3);
        [c1, c2, c3]
    }
}
