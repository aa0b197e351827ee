//! ParseNet, the face-parsing network of facexlib (from PSFRGAN, Chen et al., CVPR 2021):
//! `facexlib/parsing/parsenet.py` (`ParseNet`, `ResidualBlock`, `ConvLayer`). DiffBIR's face
//! helper uses its 19-class map to keep hair, neck and background out of the pasted face.

use burn::config::Config;
use burn::module::Module;
use burn::nn::BatchNorm;
use burn::tensor::ops::PadMode;
use burn::tensor::{Device, Tensor};
use diffbir_core::kernels::Conv2d;
use diffbir_core::resize::upsample_nearest2x;
use diffbir_core::weights::ParamCount;
use diffbir_core::{Error, KeyMap, Result};

use crate::layers::{batch_norm, conv, leaky};

/// Configuration of [`ParseNet`]; names and defaults are the original constructor's.
#[derive(Config, Debug)]
pub struct ParseNetConfig {
    /// Input size (a power-of-two multiple of `min_feat_size`).
    #[config(default = 128)]
    pub in_size: usize,
    /// Output size.
    #[config(default = 128)]
    pub out_size: usize,
    /// Size of the bottleneck's feature maps.
    #[config(default = 32)]
    pub min_feat_size: usize,
    /// Channels of the first layer.
    #[config(default = 64)]
    pub base_ch: usize,
    /// Parsing classes.
    #[config(default = 19)]
    pub parsing_ch: usize,
    /// Residual blocks at the bottleneck.
    #[config(default = 10)]
    pub res_depth: usize,
    /// Activation: `LeakyReLU` (slope 0.2) or `ReLU`, case-insensitive as in the original.
    #[config(default = "String::from(\"LeakyReLU\")")]
    pub relu_type: String,
    /// Normalisation: `bn` (the only kind the released model uses).
    #[config(default = "String::from(\"bn\")")]
    pub norm_type: String,
    /// Channel counts are clipped to `[min, max]`.
    #[config(default = "[32, 256]")]
    pub ch_range: [usize; 2],
}

/// How a [`ConvLayer`] resamples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Same size.
    None,
    /// Nearest ×2 before the convolution.
    Up,
    /// Stride 2.
    Down,
}

impl ParseNetConfig {
    /// facexlib's `init_parsing_model('parsenet')`: `ParseNet(in_size=512, out_size=512,
    /// parsing_ch=19)` (`parsing_parsenet.pth`).
    pub fn released() -> Self {
        Self::new().with_in_size(512).with_out_size(512)
    }

    /// A small ParseNet of the released input and output size (512, the size the paste-back
    /// parses faces at): bottleneck maps of 32 pixels, 4 to 8 channels, one residual block.
    pub fn tiny() -> Self {
        Self::released()
            .with_min_feat_size(32)
            .with_base_ch(4)
            .with_res_depth(1)
            .with_ch_range([4, 8])
    }

    fn slope(&self) -> Result<f64> {
        match self.relu_type.to_lowercase().as_str() {
            "leakyrelu" => Ok(0.2),
            "relu" => Ok(0.0),
            other => Err(Error::Unsupported(format!(
                "ParseNet relu_type `{other}` (this port has LeakyReLU and ReLU)"
            ))),
        }
    }

    fn clip(&self, c: usize) -> usize {
        c.min(self.ch_range[1]).max(self.ch_range[0])
    }

    /// `(down_steps, up_steps)` as the original computes them.
    fn steps(&self) -> (usize, usize) {
        let min_feat = self.min_feat_size.min(self.in_size);
        let log2 = |n: usize| if n == 0 { 0 } else { n.ilog2() as usize };
        (
            log2(self.in_size / min_feat.max(1)),
            log2(self.out_size / min_feat.max(1)),
        )
    }

    /// The channels `(cin, cout)` of the encoder's, body's and decoder's residual blocks.
    fn blocks(&self) -> [Vec<(usize, usize)>; 3] {
        let (down, up) = self.steps();
        let mut head = self.base_ch;
        let encoder = (0..down)
            .map(|_| {
                let b = (self.clip(head), self.clip(head.saturating_mul(2)));
                head = head.saturating_mul(2);
                b
            })
            .collect();
        let body = vec![(self.clip(head), self.clip(head)); self.res_depth];
        let decoder = (0..up)
            .map(|_| {
                let b = (self.clip(head), self.clip(head / 2));
                head /= 2;
                b
            })
            .collect();
        [encoder, body, decoder]
    }

    /// Channels into the two output convolutions.
    fn head_channels(&self) -> usize {
        let (down, up) = self.steps();
        let head = (0..down).fold(self.base_ch, |h, _| h.saturating_mul(2));
        self.clip((0..up).fold(head, |h, _| h / 2))
    }

    /// Checks the configuration; [`init`](Self::init) requires it to hold.
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: String| Error::InvalidArgument {
            what: "ParseNet config".into(),
            reason,
        };
        self.slope()?;
        if self.norm_type.to_lowercase() != "bn" {
            return Err(Error::Unsupported(format!(
                "ParseNet norm_type `{}` (the released model uses `bn`)",
                self.norm_type
            )));
        }
        if [
            self.in_size,
            self.out_size,
            self.min_feat_size,
            self.base_ch,
            self.parsing_ch,
        ]
        .contains(&0)
            || self.ch_range[0] == 0
            || self.ch_range[0] > self.ch_range[1]
        {
            return Err(invalid(
                "sizes and channel counts must be positive, ch_range ordered".into(),
            ));
        }
        self.param_count().check("ParseNet config")
    }

    fn param_count(&self) -> ParamCount {
        let conv3 =
            |cin: usize, cout: usize, bias: bool| ParamCount::layer(&[cout, cin, 3, 3], bias);
        let bn = |c: usize| ParamCount::of(&[4, c]);
        let [encoder, body, decoder] = self.blocks();
        let block = |&(cin, cout): &(usize, usize), shortcut: bool| {
            let s = if shortcut {
                conv3(cin, cout, true)
            } else {
                ParamCount::default()
            };
            s + conv3(cin, cout, false) + bn(cout) + conv3(cout, cout, false) + bn(cout)
        };
        let head = self.head_channels();
        let mut total = conv3(3, self.base_ch, true)
            + conv3(head, 3, true)
            + conv3(head, self.parsing_ch, true);
        for b in encoder.iter().chain(&decoder) {
            total += block(b, true);
        }
        for b in &body {
            total += block(b, b.0 != b.1);
        }
        total
    }

    /// Builds the network with random weights.
    ///
    /// # Panics
    ///
    /// If [`validate`](Self::validate) fails.
    pub fn init(&self, device: &Device) -> ParseNet {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let slope = self.slope().expect("validated");
        let block = |(cin, cout): (usize, usize), scale: Scale| {
            let (s1, s2) = match scale {
                Scale::Down => (Scale::None, Scale::Down),
                Scale::Up => (Scale::Up, Scale::None),
                Scale::None => (Scale::None, Scale::None),
            };
            ResidualBlock {
                shortcut_func: (scale != Scale::None || cin != cout)
                    .then(|| ConvLayer::new([cin, cout], scale, false, None, device)),
                conv1: ConvLayer::new([cin, cout], s1, true, Some(slope), device),
                conv2: ConvLayer::new([cout, cout], s2, true, None, device),
            }
        };
        let [encoder, body, decoder] = self.blocks();
        let mut enc = vec![EncoderLayer::Conv(ConvLayer::new(
            [3, self.base_ch],
            Scale::None,
            false,
            None,
            device,
        ))];
        enc.extend(
            encoder
                .into_iter()
                .map(|b| EncoderLayer::Res(block(b, Scale::Down))),
        );
        let head = self.head_channels();
        ParseNet {
            encoder: enc,
            body: body.into_iter().map(|b| block(b, Scale::None)).collect(),
            decoder: decoder.into_iter().map(|b| block(b, Scale::Up)).collect(),
            out_img_conv: ConvLayer::new([head, 3], Scale::None, false, None, device),
            out_mask_conv: ConvLayer::new(
                [head, self.parsing_ch],
                Scale::None,
                false,
                None,
                device,
            ),
        }
    }
}

/// The batch norm of a [`ConvLayer`] (`NormLayer` with `norm_type='bn'`).
#[derive(Module, Debug)]
pub struct Norm {
    /// `nn.BatchNorm2d`.
    pub norm: BatchNorm,
}

/// `ConvLayer`: optional nearest ×2, reflection padding, a 3 × 3 convolution (stride 2 when
/// downsampling), optional batch norm and activation.
#[derive(Module, Debug)]
pub struct ConvLayer {
    /// The convolution (with a bias unless batch-normed).
    pub conv2d: Conv2d,
    /// Batch norm, if any.
    pub norm: Option<Norm>,
    /// Resampling.
    #[module(skip)]
    pub scale: Scale,
    /// Activation slope, if any.
    #[module(skip)]
    pub slope: Option<f64>,
}

impl ConvLayer {
    fn new(
        channels: [usize; 2],
        scale: Scale,
        normed: bool,
        slope: Option<f64>,
        device: &Device,
    ) -> Self {
        let stride = if scale == Scale::Down { 2 } else { 1 };
        Self {
            conv2d: conv(channels, 3, stride, 0, 1, !normed, device),
            norm: normed.then(|| Norm {
                norm: batch_norm(channels[1], device),
            }),
            scale,
            slope,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = match self.scale {
            Scale::Up => upsample_nearest2x(x),
            _ => x,
        };
        let mut y = self.conv2d.forward(x.pad((1, 1, 1, 1), PadMode::Reflect));
        if let Some(norm) = &self.norm {
            y = norm.norm.forward(y);
        }
        match self.slope {
            Some(slope) => leaky(y, slope),
            None => y,
        }
    }
}

/// `ResidualBlock`: two conv layers and a shortcut (a conv layer when the shape changes).
#[derive(Module, Debug)]
pub struct ResidualBlock {
    /// The shortcut's convolution, or `None` for the identity.
    pub shortcut_func: Option<ConvLayer>,
    /// First conv layer (upsamples in the decoder).
    pub conv1: ConvLayer,
    /// Second conv layer (downsamples in the encoder).
    pub conv2: ConvLayer,
}

impl ResidualBlock {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.shortcut_func {
            Some(s) => s.forward(x.clone()),
            None => x.clone(),
        };
        identity + self.conv2.forward(self.conv1.forward(x))
    }
}

/// A layer of the encoder: the first conv layer, then residual blocks.
#[derive(Module, Debug)]
pub enum EncoderLayer {
    /// `ConvLayer(3, base_ch)`.
    Conv(ConvLayer),
    /// A downsampling residual block.
    Res(ResidualBlock),
}

/// ParseNet: an encoder down to `min_feat_size`, residual blocks, a decoder and two heads.
#[derive(Module, Debug)]
pub struct ParseNet {
    /// Stem and downsampling blocks.
    pub encoder: Vec<EncoderLayer>,
    /// Bottleneck blocks (added to their input).
    pub body: Vec<ResidualBlock>,
    /// Upsampling blocks.
    pub decoder: Vec<ResidualBlock>,
    /// The reconstructed image.
    pub out_img_conv: ConvLayer,
    /// The parsing logits.
    pub out_mask_conv: ConvLayer,
}

/// The outputs of [`ParseNet::forward`].
#[derive(Debug, Clone)]
pub struct Parsing {
    /// `[B, parsing_ch, H, W]` class logits.
    pub mask: Tensor<4>,
    /// `[B, 3, H, W]` reconstructed image.
    pub img: Tensor<4>,
}

impl ParseNet {
    /// # Shapes
    /// - `x`: `[B, 3, H, W]` normalised to `[-1, 1]`, `H` and `W` multiples of
    ///   `in_size / min_feat_size`; returns [`Parsing`] at the same size
    pub fn forward(&self, x: Tensor<4>) -> Parsing {
        let feat = self.encoder.iter().fold(x, |x, layer| match layer {
            EncoderLayer::Conv(l) => l.forward(x),
            EncoderLayer::Res(b) => b.forward(x),
        });
        let x = feat.clone() + self.body.iter().fold(feat, |x, b| b.forward(x));
        let x = self.decoder.iter().fold(x, |x, b| b.forward(x));
        Parsing {
            img: self.out_img_conv.forward(x.clone()),
            mask: self.out_mask_conv.forward(x),
        }
    }
}

/// The checkpoint keys of ParseNet (`parsing_parsenet.pth`): they are the module's paths.
pub const PARSENET_KEYS: KeyMap = KeyMap {
    name: "parsenet",
    prefix: "",
    rules: &[],
    droppable: &[r"num_batches_tracked$"],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tiny_parser_is_valid_and_parses_at_512() {
        let tiny = ParseNetConfig::tiny();
        tiny.validate().unwrap();
        assert_eq!((tiny.in_size, tiny.out_size), (512, 512));
        assert!(tiny.param_count() < ParseNetConfig::released().param_count());
    }
}
