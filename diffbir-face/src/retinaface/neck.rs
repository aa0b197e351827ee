//! RetinaFace's feature pyramid, context modules and heads:
//! `facexlib/detection/retinaface_net.py` (`FPN`, `SSH`, `ClassHead`, `BboxHead`,
//! `LandmarkHead`).

use burn::module::Module;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor};
use diffbir_core::kernels::Conv2d;

use crate::layers::{ConvBn, conv, leaky};

/// The original's rule for the FPN's and SSH's activations: `LeakyReLU(0.1)` up to 64
/// channels, a ReLU above.
pub(crate) fn slope_for(out_channels: usize) -> f64 {
    if out_channels <= 64 { 0.1 } else { 0.0 }
}

/// `F.interpolate(x, size, mode='nearest')`.
fn nearest(x: Tensor<4>, [h, w]: [usize; 2]) -> Tensor<4> {
    interpolate(
        x,
        InterpolateOptions::new(InterpolateMode::Nearest).with_output_size([h, w]),
    )
}

/// `FPN`: lateral 1 × 1 convolutions and top-down merging of the three backbone maps.
#[derive(Module, Debug)]
pub struct Fpn {
    /// Lateral of the stride-8 map.
    pub output1: ConvBn,
    /// Lateral of the stride-16 map.
    pub output2: ConvBn,
    /// Lateral of the stride-32 map.
    pub output3: ConvBn,
    /// 3 × 3 after merging into the stride-8 map.
    pub merge1: ConvBn,
    /// 3 × 3 after merging into the stride-16 map.
    pub merge2: ConvBn,
}

impl Fpn {
    pub(crate) fn new(cin: [usize; 3], cout: usize, device: &Device) -> Self {
        let slope = Some(slope_for(cout));
        let lateral = |c: usize| ConvBn::new([c, cout], 1, 1, slope, device);
        Self {
            output1: lateral(cin[0]),
            output2: lateral(cin[1]),
            output3: lateral(cin[2]),
            merge1: ConvBn::new([cout, cout], 3, 1, slope, device),
            merge2: ConvBn::new([cout, cout], 3, 1, slope, device),
        }
    }

    /// # Shapes
    /// - `x`: maps at strides 8, 16, 32; returns `[B, cout, ·, ·]` at the same sizes
    pub fn forward(&self, [c1, c2, c3]: [Tensor<4>; 3]) -> [Tensor<4>; 3] {
        let o1 = self.output1.forward(c1);
        let o2 = self.output2.forward(c2);
        let o3 = self.output3.forward(c3);
        let [_, _, h2, w2] = o2.dims();
        let o2 = self.merge2.forward(o2 + nearest(o3.clone(), [h2, w2]));
        let [_, _, h1, w1] = o1.dims();
        let o1 = self.merge1.forward(o1 + nearest(o2.clone(), [h1, w1]));
        [o1, o2, o3]
    }
}

/// `SSH`: the context module, three branches of 3 × 3 convolutions (receptive fields 3, 5
/// and 7) concatenated and rectified.
#[derive(Module, Debug)]
pub struct Ssh {
    /// `conv3X3`: half the channels.
    pub conv3x3: ConvBn,
    /// `conv5X5_1`: a quarter, shared by the 5 × 5 and 7 × 7 branches.
    pub conv5x5_1: ConvBn,
    /// `conv5X5_2`.
    pub conv5x5_2: ConvBn,
    /// `conv7X7_2`.
    pub conv7x7_2: ConvBn,
    /// `conv7x7_3`.
    pub conv7x7_3: ConvBn,
}

impl Ssh {
    pub(crate) fn new(cin: usize, cout: usize, device: &Device) -> Self {
        let slope = Some(slope_for(cout));
        let (half, quarter) = (cout / 2, cout / 4);
        Self {
            conv3x3: ConvBn::new([cin, half], 3, 1, None, device),
            conv5x5_1: ConvBn::new([cin, quarter], 3, 1, slope, device),
            conv5x5_2: ConvBn::new([quarter, quarter], 3, 1, None, device),
            conv7x7_2: ConvBn::new([quarter, quarter], 3, 1, slope, device),
            conv7x7_3: ConvBn::new([quarter, quarter], 3, 1, None, device),
        }
    }

    /// # Shapes
    /// - `x`: `[B, cin, H, W]`; returns `[B, cout, H, W]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let c3 = self.conv3x3.forward(x.clone());
        let c5_1 = self.conv5x5_1.forward(x);
        let c5 = self.conv5x5_2.forward(c5_1.clone());
        let c7 = self.conv7x7_3.forward(self.conv7x7_2.forward(c5_1));
        leaky(Tensor::cat(vec![c3, c5, c7], 1), 0.0)
    }
}

/// A head: a 1 × 1 convolution whose output is read as `values` numbers per anchor.
#[derive(Module, Debug)]
pub struct Head {
    /// `anchors · values` outputs per position.
    pub conv1x1: Conv2d,
    /// Numbers per anchor (2 scores, 4 box offsets or 10 landmark offsets).
    #[module(skip)]
    pub values: usize,
}

impl Head {
    pub(crate) fn new(cin: usize, anchors: usize, values: usize, device: &Device) -> Self {
        Self {
            conv1x1: conv([cin, anchors * values], 1, 1, 0, 1, true, device),
            values,
        }
    }

    /// `conv1x1(x).permute(0, 2, 3, 1).view(B, -1, values)`.
    ///
    /// # Shapes
    /// - `x`: `[B, C, H, W]`; returns `[B, H·W·anchors, values]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<3> {
        let y = self.conv1x1.forward(x);
        let [b, c, h, w] = y.dims();
        y.permute([0, 2, 3, 1])
            .reshape([b, h * w * (c / self.values), self.values])
    }
}
