//! Drop-ins for burn's `Conv2d` and `Linear` modules whose forward passes run on
//! [`super::conv2d`] and [`super::linear`].

use burn::module::{Content, DisplaySettings, Module, ModuleDisplay, Param};
use burn::nn::PaddingConfig2d;
use burn::tensor::Tensor;
use burn::tensor::ops::ConvOptions;

/// burn's `nn::conv::Conv2d` with the same fields (so checkpoints load by the same paths),
/// computing on this crate's CPU kernels where they apply. Build it from burn's module:
/// `Conv2d::from(Conv2dConfig::new(..).init(&device))`.
#[derive(Module, Debug)]
#[module(custom_display)]
pub struct Conv2d {
    /// `[channels_out, channels_in / groups, kernel_h, kernel_w]`.
    pub weight: Param<Tensor<4>>,
    /// `[channels_out]`.
    pub bias: Option<Param<Tensor<1>>>,
    /// Stride.
    pub stride: [usize; 2],
    /// Kernel size.
    pub kernel_size: [usize; 2],
    /// Spacing between kernel taps.
    pub dilation: [usize; 2],
    /// Channel groups.
    pub groups: usize,
    /// Padding.
    #[module(skip)]
    pub padding: PaddingConfig2d,
}

impl From<burn::nn::conv::Conv2d> for Conv2d {
    fn from(conv: burn::nn::conv::Conv2d) -> Self {
        Self {
            weight: conv.weight,
            bias: conv.bias,
            stride: conv.stride,
            kernel_size: conv.kernel_size,
            dilation: conv.dilation,
            groups: conv.groups,
            padding: conv.padding,
        }
    }
}

impl ModuleDisplay for Conv2d {
    fn custom_settings(&self) -> Option<DisplaySettings> {
        DisplaySettings::new()
            .with_new_line_after_attribute(false)
            .optional()
    }

    fn custom_content(&self, content: Content) -> Option<Content> {
        let [cout, cin, _, _] = self.weight.dims();
        content
            .add("ch_in", &(cin * self.groups))
            .add("ch_out", &cout)
            .add_debug_attribute("stride", &self.stride)
            .add_debug_attribute("kernel_size", &self.kernel_size)
            .add_debug_attribute("dilation", &self.dilation)
            .add("groups", &self.groups)
            .add_debug_attribute("padding", &self.padding)
            .optional()
    }
}

impl Conv2d {
    /// `[(top, bottom), (left, right)]` for an input of `size`, as burn's module computes it.
    fn padding_pairs(&self, size: [usize; 2]) -> [(usize, usize); 2] {
        match self.padding {
            PaddingConfig2d::Valid => [(0, 0); 2],
            PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
            PaddingConfig2d::Same => [0, 1].map(|d| {
                // The output keeps ceil(size / stride) positions; the padding they need is split
                // with the extra one after.
                let out = size[d].div_ceil(self.stride[d]);
                let total = if out > 0 {
                    ((out - 1) * self.stride[d] + self.kernel_size[d]).saturating_sub(size[d])
                } else {
                    0
                };
                (total / 2, total - total / 2)
            }),
        }
    }

    /// Applies the convolution.
    ///
    /// # Shapes
    ///
    /// - input: `[batch, channels_in, height, width]`
    /// - output: `[batch, channels_out, height_out, width_out]`
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let [_, _, height, width] = input.dims();
        let options = ConvOptions::new_with_padding(
            self.stride,
            self.padding_pairs([height, width]),
            self.dilation,
            self.groups,
        );
        super::conv2d(
            input,
            self.weight.val(),
            self.bias.as_ref().map(|bias| bias.val()),
            options,
        )
    }
}

/// burn's `nn::Linear` with the same fields (so checkpoints load by the same paths), computing
/// on this crate's CPU kernels where they apply. Build it from burn's module:
/// `Linear::from(LinearConfig::new(..).init(&device))`.
#[derive(Module, Debug)]
#[module(custom_display)]
pub struct Linear {
    /// `[d_input, d_output]`.
    pub weight: Param<Tensor<2>>,
    /// `[d_output]`.
    pub bias: Option<Param<Tensor<1>>>,
}

impl From<burn::nn::Linear> for Linear {
    fn from(linear: burn::nn::Linear) -> Self {
        Self {
            weight: linear.weight,
            bias: linear.bias,
        }
    }
}

impl ModuleDisplay for Linear {
    fn custom_settings(&self) -> Option<DisplaySettings> {
        DisplaySettings::new()
            .with_new_line_after_attribute(false)
            .optional()
    }

    fn custom_content(&self, content: Content) -> Option<Content> {
        let [d_input, d_output] = self.weight.dims();
        content
            .add("d_input", &d_input)
            .add("d_output", &d_output)
            .add("bias", &self.bias.is_some())
            .optional()
    }
}

impl Linear {
    /// Applies the layer.
    ///
    /// # Shapes
    ///
    /// - input: `[..., d_input]`
    /// - output: `[..., d_output]`
    pub fn forward<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        super::linear(
            input,
            self.weight.val(),
            self.bias.as_ref().map(|bias| bias.val()),
        )
    }
}
