//! The UNet's settings (`UNetModel.__init__`,
//! `XPixelGroup/DiffBIR@3f8b530:diffbir/model/unet.py:L361-L686`) and how they build its
//! blocks.

use burn::config::Config;
use burn::nn::{GroupNormConfig, LayerNormConfig, LinearConfig};
use burn::tensor::Device;
use diffbir_core::kernels::Linear;
use serde::{Deserialize, Serialize};

use super::Unet;
use super::layer::{Downsample, LdmLayer, Upsample};
use super::resblock::{ResBlock, Resample, group_norm32};
use super::transformer::{
    BasicTransformerBlock, CrossAttention, FeedForward, Projection, SpatialTransformer,
};
use crate::nn::conv;

/// A count given once for all levels or per level (`num_res_blocks` accepts both).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PerLevel {
    /// The same value for every level.
    All(usize),
    /// One value per level of `channel_mult`.
    Each(Vec<usize>),
}

impl PerLevel {
    /// The value of `level`.
    pub fn get(&self, level: usize) -> usize {
        match self {
            Self::All(n) => *n,
            Self::Each(v) => v[level],
        }
    }
}

/// Configuration of the LDM UNet; names and defaults are the original constructor's
/// (`UNetModel.__init__`).
#[derive(Config, Debug)]
pub struct UnetConfig {
    /// Latent channels in.
    #[config(default = 4)]
    pub in_channels: usize,
    /// Base width.
    #[config(default = 320)]
    pub model_channels: usize,
    /// Latent channels out (the UNet only).
    #[config(default = 4)]
    pub out_channels: usize,
    /// Residual blocks per level.
    #[config(default = "PerLevel::All(2)")]
    pub num_res_blocks: PerLevel,
    /// Downsampling factors (1, 2, 4, …) whose levels get a transformer after each block.
    #[config(default = "vec![4, 2, 1]")]
    pub attention_resolutions: Vec<usize>,
    /// Width multiplier per level.
    #[config(default = "vec![1, 2, 4, 8]")]
    pub channel_mult: Vec<usize>,
    /// Convolutions in the down/upsampling layers (else average pooling / plain nearest).
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
    /// Residual blocks with built-in resampling instead of separate layers.
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
    /// Class conditioning (not supported: DiffBIR's models have none).
    #[config(default = "None")]
    pub num_classes: Option<usize>,
}

impl UnetConfig {
    /// The SD 2.1 UNet as configured by DiffBIR's `cldm.yaml` (865.9 M parameters).
    pub fn sd21() -> Self {
        Self::new()
            .with_model_channels(320)
            .with_attention_resolutions(vec![4, 2, 1])
            .with_channel_mult(vec![1, 2, 4, 4])
            .with_num_head_channels(64)
            .with_use_spatial_transformer(true)
            .with_use_linear_in_transformer(true)
            .with_context_dim(Some(1024))
            .with_legacy(false)
    }

    /// A small configuration of the same shape, for tests.
    pub fn tiny() -> Self {
        Self::sd21()
            .with_model_channels(32)
            .with_attention_resolutions(vec![1])
            .with_channel_mult(vec![1, 1])
            .with_num_res_blocks(PerLevel::All(1))
            .with_num_head_channels(16)
            .with_context_dim(Some(8))
    }

    /// `(heads, head_dim)` of a transformer at width `ch`, by the original's rule.
    pub(super) fn heads(&self, ch: usize) -> (usize, usize) {
        if self.num_head_channels == -1 {
            let heads = self.num_heads.max(1) as usize;
            (heads, ch / heads)
        } else {
            let hc = self.num_head_channels.max(1) as usize;
            (ch / hc, hc)
        }
    }

    pub(super) fn time_embed_dim(&self) -> usize {
        4 * self.model_channels
    }

    fn res(&self, cin: usize, cout: usize, resample: Resample, device: &Device) -> ResBlock {
        let emb = self.time_embed_dim();
        ResBlock {
            in_norm: group_norm32(cin, device),
            in_conv: conv(cin, cout, 3, 1, 1, device),
            emb_linear: LinearConfig::new(
                emb,
                if self.use_scale_shift_norm {
                    2 * cout
                } else {
                    cout
                },
            )
            .init(device)
            .into(),
            out_norm: group_norm32(cout, device),
            out_conv: conv(cout, cout, 3, 1, 1, device),
            skip_connection: (cin != cout).then(|| conv(cin, cout, 1, 1, 0, device)),
            scale_shift: self.use_scale_shift_norm,
            resample,
        }
    }

    fn transformer(
        &self,
        ch: usize,
        disable_self_attn: bool,
        device: &Device,
    ) -> SpatialTransformer {
        let (heads, head_dim) = self.heads(ch);
        let inner = heads * head_dim;
        let ctx = self.context_dim.unwrap_or(inner);
        let linear = self.use_linear_in_transformer;
        let proj = |cin: usize, cout: usize| {
            if linear {
                Projection::Linear(LinearConfig::new(cin, cout).init(device).into())
            } else {
                Projection::Conv(conv(cin, cout, 1, 1, 0, device))
            }
        };
        let attn = |kv_dim: usize| CrossAttention {
            to_q: LinearConfig::new(inner, inner)
                .with_bias(false)
                .init(device)
                .into(),
            to_k: LinearConfig::new(kv_dim, inner)
                .with_bias(false)
                .init(device)
                .into(),
            to_v: LinearConfig::new(kv_dim, inner)
                .with_bias(false)
                .init(device)
                .into(),
            to_out: vec![LinearConfig::new(inner, inner).init(device).into()],
            heads,
        };
        SpatialTransformer {
            norm: GroupNormConfig::new(32, ch).with_epsilon(1e-6).init(device),
            proj_in: proj(ch, inner),
            transformer_blocks: (0..self.transformer_depth)
                .map(|_| BasicTransformerBlock {
                    attn1: attn(if disable_self_attn { ctx } else { inner }),
                    ff: FeedForward {
                        geglu: LinearConfig::new(inner, 8 * inner).init(device).into(),
                        out: LinearConfig::new(4 * inner, inner).init(device).into(),
                    },
                    attn2: attn(ctx),
                    norm1: LayerNormConfig::new(inner).init(device),
                    norm2: LayerNormConfig::new(inner).init(device),
                    norm3: LayerNormConfig::new(inner).init(device),
                    self_attn: !disable_self_attn,
                })
                .collect(),
            // The original swaps the linear projection's arguments (`Linear(in, inner)`); it
            // only matters when the two differ.
            proj_out: if linear {
                proj(ch, inner)
            } else {
                proj(inner, ch)
            },
        }
    }

    fn down(&self, ch: usize, device: &Device) -> LdmLayer {
        if self.resblock_updown {
            LdmLayer::Res(self.res(ch, ch, Resample::Down, device))
        } else {
            LdmLayer::Down(Downsample {
                op: self.conv_resample.then(|| conv(ch, ch, 3, 2, 1, device)),
            })
        }
    }

    fn up(&self, ch: usize, device: &Device) -> LdmLayer {
        if self.resblock_updown {
            LdmLayer::Res(self.res(ch, ch, Resample::Up, device))
        } else {
            LdmLayer::Up(Upsample {
                conv: self.conv_resample.then(|| conv(ch, ch, 3, 1, 1, device)),
            })
        }
    }

    /// The time embedding MLP (`time_embed.0`, SiLU, `time_embed.2`).
    pub fn time_embed(&self, device: &Device) -> Vec<Option<Linear>> {
        let (c, e) = (self.model_channels, self.time_embed_dim());
        vec![
            Some(LinearConfig::new(c, e).init(device).into()),
            None,
            Some(LinearConfig::new(e, e).init(device).into()),
        ]
    }

    /// The encoder half: `input_blocks` (the first conv takes `in_channels + hint_channels`:
    /// 0 for the UNet, the condition latent's for the IRControlNet) and the channel count
    /// after each block (the skip connections).
    pub fn input_blocks(
        &self,
        hint_channels: usize,
        device: &Device,
    ) -> (Vec<Vec<LdmLayer>>, Vec<usize>) {
        let mc = self.model_channels;
        let cin = self.in_channels + hint_channels;
        let mut blocks = vec![vec![LdmLayer::Conv(conv(cin, mc, 3, 1, 1, device))]];
        let mut chans = vec![mc];
        let (mut ch, mut ds) = (mc, 1);
        for (level, mult) in self.channel_mult.iter().enumerate() {
            for nr in 0..self.num_res_blocks.get(level) {
                let mut layers = vec![LdmLayer::Res(self.res(
                    ch,
                    mult * mc,
                    Resample::None,
                    device,
                ))];
                ch = mult * mc;
                if self.attention_resolutions.contains(&ds) && self.attends(level, nr) {
                    layers.push(LdmLayer::Transformer(self.transformer(
                        ch,
                        self.self_attn_disabled(level),
                        device,
                    )));
                }
                blocks.push(layers);
                chans.push(ch);
            }
            if level != self.channel_mult.len() - 1 {
                blocks.push(vec![self.down(ch, device)]);
                chans.push(ch);
                ds *= 2;
            }
        }
        (blocks, chans)
    }

    /// The middle block: residual, transformer, residual.
    pub fn middle_block(&self, device: &Device) -> Vec<LdmLayer> {
        let ch = self.model_channels * self.channel_mult.last().copied().unwrap_or(1);
        vec![
            LdmLayer::Res(self.res(ch, ch, Resample::None, device)),
            LdmLayer::Transformer(self.transformer(ch, self.disable_middle_self_attn, device)),
            LdmLayer::Res(self.res(ch, ch, Resample::None, device)),
        ]
    }

    pub(super) fn attends(&self, level: usize, block: usize) -> bool {
        self.num_attention_blocks
            .as_ref()
            .is_none_or(|n| block < n[level])
    }

    pub(super) fn self_attn_disabled(&self, level: usize) -> bool {
        self.disable_self_attentions
            .as_ref()
            .is_some_and(|v| v[level])
    }

    /// Builds the UNet with random weights.
    ///
    /// # Panics
    ///
    /// If [`validate`](Self::validate) fails.
    pub fn init(&self, device: &Device) -> Unet {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let mc = self.model_channels;
        let (input_blocks, mut skip_chans) = self.input_blocks(0, device);
        let mut ch = mc * self.channel_mult.last().copied().unwrap_or(1);
        let mut ds = 1 << (self.channel_mult.len() - 1);
        let mut output_blocks = Vec::new();
        for (level, mult) in self.channel_mult.iter().enumerate().rev() {
            let n = self.num_res_blocks.get(level);
            for i in 0..=n {
                let ich = skip_chans.pop().expect("one skip per input block");
                let mut layers = vec![LdmLayer::Res(self.res(
                    ch + ich,
                    mc * mult,
                    Resample::None,
                    device,
                ))];
                ch = mc * mult;
                if self.attention_resolutions.contains(&ds) && self.attends(level, i) {
                    layers.push(LdmLayer::Transformer(self.transformer(
                        ch,
                        self.self_attn_disabled(level),
                        device,
                    )));
                }
                if level > 0 && i == n {
                    layers.push(self.up(ch, device));
                    ds /= 2;
                }
                output_blocks.push(layers);
            }
        }
        Unet {
            time_embed: self.time_embed(device),
            input_blocks,
            middle_block: self.middle_block(device),
            output_blocks,
            out_norm: group_norm32(ch, device),
            out_conv: conv(mc, self.out_channels, 3, 1, 1, device),
            model_channels: mc,
        }
    }
}
