//! The IRControlNet's settings (`ControlNet.__init__` of
//! `XPixelGroup/DiffBIR@3f8b530:diffbir/model/controlnet.py:L52-L81`): the UNet encoder's
//! settings and the hint input, without the decoder's `out_channels`.

use burn::config::Config;
use burn::module::Param;
use burn::nn::{PaddingConfig2d, conv::Conv2dConfig};
use burn::tensor::Device;
use diffbir_core::kernels::Conv2d;
use diffbir_core::{Error, Result};
use diffbir_ldm::UnetConfig;
use diffbir_ldm::unet::PerLevel;

use crate::ControlNet;

/// Configuration of the IRControlNet; names and defaults are the original constructor's.
#[derive(Config, Debug)]
pub struct ControlNetConfig {
    /// Latent channels in.
    #[config(default = 4)]
    pub in_channels: usize,
    /// Channels of the condition latent concatenated to the input (4: the VAE latent of the
    /// stage-1 result).
    #[config(default = 4)]
    pub hint_channels: usize,
    /// Base width.
    #[config(default = 320)]
    pub model_channels: usize,
    /// Residual blocks per level.
    #[config(default = "PerLevel::All(2)")]
    pub num_res_blocks: PerLevel,
    /// Downsampling factors (1, 2, 4, …) whose levels get a transformer after each block.
    #[config(default = "vec![4, 2, 1]")]
    pub attention_resolutions: Vec<usize>,
    /// Width multiplier per level.
    #[config(default = "vec![1, 2, 4, 8]")]
    pub channel_mult: Vec<usize>,
    /// Convolutions in the downsampling layers (else average pooling).
    #[config(default = true)]
    pub conv_resample: bool,
    /// Attention heads (-1: derived from `num_head_channels`).
    #[config(default = -1)]
    pub num_heads: i64,
    /// Channels per head (-1: derived from `num_heads`).
    #[config(default = -1)]
    pub num_head_channels: i64,
    /// FiLM-style `scale, shift` time conditioning in residual blocks.
    #[config(default = false)]
    pub use_scale_shift_norm: bool,
    /// Residual blocks with built-in downsampling instead of separate layers.
    #[config(default = false)]
    pub resblock_updown: bool,
    /// Spatial transformers (cross-attention) at the attention levels; required.
    #[config(default = false)]
    pub use_spatial_transformer: bool,
    /// Transformer blocks per spatial transformer.
    #[config(default = 1)]
    pub transformer_depth: usize,
    /// Width of the cross-attention context.
    #[config(default = "None")]
    pub context_dim: Option<usize>,
    /// Original head-size rule (`dim_head = ch / num_heads`).
    #[config(default = true)]
    pub legacy: bool,
    /// Per level: the first attention of each transformer attends to the context too.
    #[config(default = "None")]
    pub disable_self_attentions: Option<Vec<bool>>,
    /// Per level: how many of the level's blocks get a transformer.
    #[config(default = "None")]
    pub num_attention_blocks: Option<Vec<usize>>,
    /// The middle transformer's first attention attends to the context.
    #[config(default = false)]
    pub disable_middle_self_attn: bool,
    /// Linear instead of 1×1-conv projections in and out of the transformers.
    #[config(default = false)]
    pub use_linear_in_transformer: bool,
}

impl ControlNetConfig {
    /// DiffBIR's IRControlNet (`cldm.yaml: controlnet_cfg`, 363.15 M parameters): the SD 2.1
    /// encoder with 4 hint channels.
    pub fn sd21() -> Self {
        Self::encoder_of(&UnetConfig::sd21(), 4)
    }

    /// A small configuration of the same shape, matching [`UnetConfig::tiny`], for tests.
    pub fn tiny() -> Self {
        Self::encoder_of(&UnetConfig::tiny(), 4)
    }

    /// The IRControlNet that copies the encoder of `unet`, with `hint_channels` more input
    /// channels.
    pub fn encoder_of(unet: &UnetConfig, hint_channels: usize) -> Self {
        Self {
            in_channels: unet.in_channels,
            hint_channels,
            model_channels: unet.model_channels,
            num_res_blocks: unet.num_res_blocks.clone(),
            attention_resolutions: unet.attention_resolutions.clone(),
            channel_mult: unet.channel_mult.clone(),
            conv_resample: unet.conv_resample,
            num_heads: unet.num_heads,
            num_head_channels: unet.num_head_channels,
            use_scale_shift_norm: unet.use_scale_shift_norm,
            resblock_updown: unet.resblock_updown,
            use_spatial_transformer: unet.use_spatial_transformer,
            transformer_depth: unet.transformer_depth,
            context_dim: unet.context_dim,
            legacy: unet.legacy,
            disable_self_attentions: unet.disable_self_attentions.clone(),
            num_attention_blocks: unet.num_attention_blocks.clone(),
            disable_middle_self_attn: unet.disable_middle_self_attn,
            use_linear_in_transformer: unet.use_linear_in_transformer,
        }
    }

    /// The UNet whose encoder this network copies (its `out_channels` is never used).
    pub fn unet(&self) -> UnetConfig {
        UnetConfig::new()
            .with_in_channels(self.in_channels)
            .with_model_channels(self.model_channels)
            .with_num_res_blocks(self.num_res_blocks.clone())
            .with_attention_resolutions(self.attention_resolutions.clone())
            .with_channel_mult(self.channel_mult.clone())
            .with_conv_resample(self.conv_resample)
            .with_num_heads(self.num_heads)
            .with_num_head_channels(self.num_head_channels)
            .with_use_scale_shift_norm(self.use_scale_shift_norm)
            .with_resblock_updown(self.resblock_updown)
            .with_use_spatial_transformer(self.use_spatial_transformer)
            .with_transformer_depth(self.transformer_depth)
            .with_context_dim(self.context_dim)
            .with_legacy(self.legacy)
            .with_disable_self_attentions(self.disable_self_attentions.clone())
            .with_num_attention_blocks(self.num_attention_blocks.clone())
            .with_disable_middle_self_attn(self.disable_middle_self_attn)
            .with_use_linear_in_transformer(self.use_linear_in_transformer)
    }

    /// Checks the configuration (the encoder's rules, and the hint's width); building
    /// requires it to hold.
    pub fn validate(&self) -> Result<()> {
        if self.hint_channels == 0 || self.hint_channels > UnetConfig::MAX_WIDTH {
            return Err(Error::InvalidArgument {
                what: "ControlNet config".into(),
                reason: format!(
                    "hint_channels must lie in 1..={} (4 for DiffBIR), not {}",
                    UnetConfig::MAX_WIDTH,
                    self.hint_channels
                ),
            });
        }
        self.unet().validate_with_hint(self.hint_channels)
    }

    /// Builds an IRControlNet with fresh weights; the zero convs start at zero, as the
    /// original's `zero_module` does.
    pub fn init(&self, device: &Device) -> Result<ControlNet> {
        self.validate()?;
        let unet = self.unet();
        let (input_blocks, chans) = unet.input_blocks(self.hint_channels, device);
        let zero_conv = |c: usize| {
            let conv = Conv2dConfig::new([c, c], [1, 1])
                .with_padding(PaddingConfig2d::Explicit(0, 0, 0, 0))
                .init(device);
            zeroed(conv.into())
        };
        let mid = self.model_channels * self.channel_mult.last().copied().unwrap_or(1);
        Ok(ControlNet {
            time_embed: unet.time_embed(device),
            input_blocks,
            zero_convs: chans.iter().map(|&c| vec![zero_conv(c)]).collect(),
            middle_block: unet.middle_block(device),
            middle_block_out: vec![zero_conv(mid)],
            model_channels: self.model_channels,
        })
    }
}

fn zeroed(mut conv: Conv2d) -> Conv2d {
    conv.weight = Param::from_tensor(conv.weight.val().zeros_like());
    conv.bias = conv.bias.map(|b| Param::from_tensor(b.val().zeros_like()));
    conv
}
