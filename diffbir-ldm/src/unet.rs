//! The Stable Diffusion 2.1 UNet as DiffBIR uses it (`ControlledUnetModel`), and the blocks the
//! IRControlNet shares with it.
//!
//! Port of `XPixelGroup/DiffBIR@3f8b530:diffbir/model/unet.py`, `controlnet.py`,
//! `attention.py` and `util.py` (the CompVis LDM UNet). Blocks are stored the way the
//! checkpoint nests them: `input_blocks.i.j`, `middle_block.j`, `output_blocks.i.j`, each an
//! [`LdmLayer`]. `nn.Sequential` indices that Rust fields cannot mirror are renamed by
//! [`UNET_RULES`].

use burn::config::Config;
use burn::module::Module;
use burn::nn::{GroupNorm, GroupNormConfig, LayerNorm, LayerNormConfig, LinearConfig};
use burn::tensor::activation::gelu;
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::{AttentionModuleOptions, AvgPoolOptions};
use burn::tensor::{DType, Device, Int, Tensor};
use diffbir_core::kernels::attention;
use diffbir_core::kernels::silu;
use diffbir_core::kernels::{Conv2d, Linear};
use diffbir_core::{Precision, Result, cast_module};
use serde::{Deserialize, Serialize};

use diffbir_core::resize::upsample_nearest2x;

use crate::nn::conv;

mod keys;
mod validate;

pub use keys::{SD_UNET_KEYS, UNET_KEYS, UNET_RULES};

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
    fn get(&self, level: usize) -> usize {
        match self {
            Self::All(n) => *n,
            Self::Each(v) => v[level],
        }
    }
}

/// Configuration of the LDM UNet; names and defaults are the original constructor's
/// (`UNetModel.__init__`). The IRControlNet adds `hint_channels`.
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
    /// Hint channels concatenated to the input (the IRControlNet only).
    #[config(default = "None")]
    pub hint_channels: Option<usize>,
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
    fn heads(&self, ch: usize) -> (usize, usize) {
        if self.num_head_channels == -1 {
            let heads = self.num_heads.max(1) as usize;
            (heads, ch / heads)
        } else {
            let hc = self.num_head_channels.max(1) as usize;
            (ch / hc, hc)
        }
    }

    fn time_embed_dim(&self) -> usize {
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
            resample: resample as usize,
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

    /// The encoder half: `input_blocks` (the first conv takes `in_channels + hint_channels`)
    /// and the channel count after each block (the skip connections).
    pub fn input_blocks(&self, device: &Device) -> (Vec<Vec<LdmLayer>>, Vec<usize>) {
        let mc = self.model_channels;
        let cin = self.in_channels + self.hint_channels.unwrap_or(0);
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

    fn attends(&self, level: usize, block: usize) -> bool {
        self.num_attention_blocks
            .as_ref()
            .is_none_or(|n| block < n[level])
    }

    fn self_attn_disabled(&self, level: usize) -> bool {
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
        let (input_blocks, mut skip_chans) = self.input_blocks(device);
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

fn group_norm32(channels: usize, device: &Device) -> GroupNorm {
    GroupNormConfig::new(32, channels)
        .with_epsilon(1e-5)
        .init(device)
}

/// `GroupNorm32`: the statistics are computed in f32 whatever the activations' precision.
fn gn32(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    let dtype = x.dtype();
    let param_dtype = norm.gamma.as_ref().map_or(DType::F32, |g| g.val().dtype());
    if dtype == param_dtype {
        norm.forward(x)
    } else {
        norm.forward(x.cast(param_dtype)).cast(dtype)
    }
}

/// The sinusoidal timestep embedding (cos first, then sin), `t` possibly fractional.
///
/// # Shapes
/// - `t`: `[B]`; returns `[B, dim]`
pub fn timestep_embedding(t: Tensor<1>, dim: usize) -> Tensor<2> {
    let half = dim / 2;
    let device = t.device();
    let freqs = Tensor::<1, Int>::arange(0..half as i64, &device)
        .float()
        .div_scalar(half as f64)
        .mul_scalar(-(10000f64.ln()))
        .exp();
    let [b] = t.dims();
    let args = t.reshape([b, 1]) * freqs.reshape([1, half]);
    let emb = Tensor::cat(vec![args.clone().cos(), args.sin()], 1);
    if dim % 2 == 1 {
        Tensor::cat(vec![emb, Tensor::zeros([b, 1], &device)], 1)
    } else {
        emb
    }
}

/// Applies `time_embed` to the sinusoidal embedding of `t`.
pub fn embed_time(time_embed: &[Option<Linear>], t: Tensor<1>, model_channels: usize) -> Tensor<2> {
    let mut layers = time_embed.iter().flatten();
    let (l0, l2) = (
        layers.next().expect("time_embed.0"),
        layers.next().expect("time_embed.2"),
    );
    l2.forward(silu(l0.forward(timestep_embedding(t, model_channels))))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resample {
    None = 0,
    Up = 1,
    Down = 2,
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
    scale_shift: bool,
    resample: usize,
}

/// `F.avg_pool2d(x, kernel_size=2, stride=2)`.
fn pool2() -> AvgPoolOptions<2> {
    let mut options = AvgPoolOptions::new([2, 2]);
    options.stride = [2, 2];
    options
}

fn resample(x: Tensor<4>, kind: usize) -> Tensor<4> {
    match kind {
        1 => upsample_nearest2x(x),
        2 => avg_pool2d(x, pool2()),
        _ => x,
    }
}

impl ResBlock {
    /// # Shapes
    /// - `x`: `[B, Cin, H, W]`; `emb`: `[B, 4·model_channels]`; returns `[B, Cout, H', W']`
    pub fn forward(&self, x: Tensor<4>, emb: &Tensor<2>) -> Tensor<4> {
        let h = silu(gn32(&self.in_norm, x.clone()));
        let h = self.in_conv.forward(resample(h, self.resample));
        let x = resample(x, self.resample);
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

/// Multi-head attention with bias-free q/k/v projections (`to_out.0` has a bias).
#[derive(Module, Debug)]
pub struct CrossAttention {
    /// Query projection.
    pub to_q: Linear,
    /// Key projection (from the context in cross-attention).
    pub to_k: Linear,
    /// Value projection.
    pub to_v: Linear,
    /// `to_out.0` (`to_out.1` is a dropout).
    pub to_out: Vec<Linear>,
    heads: usize,
}

impl CrossAttention {
    /// # Shapes
    /// - `x`: `[B, N, C]`; `context`: `[B, M, D]`; returns `[B, N, C]`
    pub fn forward(&self, x: Tensor<3>, context: Tensor<3>) -> Tensor<3> {
        let [b, n, _] = x.dims();
        let heads = self.heads;
        let split = |t: Tensor<3>| {
            let [b, l, inner] = t.dims();
            t.reshape([b, l, heads, inner / heads]).swap_dims(1, 2)
        };
        let q = split(self.to_q.forward(x));
        let k = split(self.to_k.forward(context.clone()));
        let v = split(self.to_v.forward(context));
        let out = attention(q, k, v, None, None, AttentionModuleOptions::default());
        let [_, _, _, d] = out.dims();
        self.to_out[0].forward(out.swap_dims(1, 2).reshape([b, n, heads * d]))
    }
}

/// GEGLU feed-forward: `[a | g] = geglu(x)`, `out(a · GELU(g))`.
#[derive(Module, Debug)]
pub struct FeedForward {
    /// `net.0.proj`: `C → 8C` (value half first, then the gate half).
    pub geglu: Linear,
    /// `net.2`: `4C → C`.
    pub out: Linear,
}

/// Self-attention, cross-attention and feed-forward, each pre-normed with a residual.
#[derive(Module, Debug)]
pub struct BasicTransformerBlock {
    /// Self-attention (or cross-attention when self-attention is disabled).
    pub attn1: CrossAttention,
    /// Feed-forward.
    pub ff: FeedForward,
    /// Cross-attention over the context.
    pub attn2: CrossAttention,
    /// Before `attn1`.
    pub norm1: LayerNorm,
    /// Before `attn2`.
    pub norm2: LayerNorm,
    /// Before `ff`.
    pub norm3: LayerNorm,
    self_attn: bool,
}

impl BasicTransformerBlock {
    fn forward(&self, x: Tensor<3>, context: &Tensor<3>) -> Tensor<3> {
        let h = self.norm1.forward(x.clone());
        let kv = if self.self_attn {
            h.clone()
        } else {
            context.clone()
        };
        let x = self.attn1.forward(h, kv) + x;
        let x = self
            .attn2
            .forward(self.norm2.forward(x.clone()), context.clone())
            + x;
        let h = self.ff.geglu.forward(self.norm3.forward(x.clone()));
        let [b, n, c8] = h.dims();
        let value = h.clone().slice([0..b, 0..n, 0..c8 / 2]);
        let gate = h.slice([0..b, 0..n, c8 / 2..c8]);
        self.ff.out.forward(value * gelu(gate)) + x
    }
}

/// A projection into or out of a spatial transformer.
#[derive(Module, Debug)]
pub enum Projection {
    /// `use_linear_in_transformer`.
    Linear(Linear),
    /// 1×1 conv.
    Conv(Conv2d),
}

/// Transformer over the pixels of a feature map, with cross-attention to the context.
#[derive(Module, Debug)]
pub struct SpatialTransformer {
    /// GroupNorm(32, eps 1e-6) (a plain GroupNorm, not the f32 one).
    pub norm: GroupNorm,
    /// Projection in.
    pub proj_in: Projection,
    /// Transformer blocks.
    pub transformer_blocks: Vec<BasicTransformerBlock>,
    /// Projection out.
    pub proj_out: Projection,
}

impl SpatialTransformer {
    /// # Shapes
    /// - `x`: `[B, C, H, W]`; `context`: `[B, M, D]`; returns `[B, C, H, W]`
    pub fn forward(&self, x: Tensor<4>, context: &Tensor<3>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let hn = self.norm.forward(x.clone());
        let to_tokens = |t: Tensor<4>| {
            let [_, ch, _, _] = t.dims();
            t.reshape([b, ch, h * w]).swap_dims(1, 2)
        };
        let mut tokens = match &self.proj_in {
            Projection::Linear(l) => l.forward(to_tokens(hn)),
            Projection::Conv(cv) => to_tokens(cv.forward(hn)),
        };
        for block in &self.transformer_blocks {
            tokens = block.forward(tokens, context);
        }
        let out = match &self.proj_out {
            Projection::Linear(l) => {
                let t = l.forward(tokens);
                t.swap_dims(1, 2).reshape([b, c, h, w])
            }
            Projection::Conv(cv) => {
                let [_, _, inner] = tokens.dims();
                cv.forward(tokens.swap_dims(1, 2).reshape([b, inner, h, w]))
            }
        };
        out + x
    }
}

/// Stride-2 downsampling (`op`: a 3×3 conv with padding 1, or 2×2 average pooling).
#[derive(Module, Debug)]
pub struct Downsample {
    /// The conv (with `conv_resample`).
    pub op: Option<Conv2d>,
}

/// Nearest ×2 upsampling, then an optional 3×3 conv.
#[derive(Module, Debug)]
pub struct Upsample {
    /// The conv (with `conv_resample`).
    pub conv: Option<Conv2d>,
}

/// One entry of a `TimestepEmbedSequential`.
#[derive(Module, Debug)]
pub enum LdmLayer {
    /// The input conv (`input_blocks.0.0`).
    Conv(Conv2d),
    /// A residual block.
    Res(ResBlock),
    /// A spatial transformer.
    Transformer(SpatialTransformer),
    /// Downsampling.
    Down(Downsample),
    /// Upsampling.
    Up(Upsample),
}

/// Casts blocks to `precision` the way DiffBIR's `ControlLDM.cast_dtype` does: everything
/// but the `GroupNorm32` layers of the residual blocks, which stay in f32.
pub fn cast_blocks(blocks: Vec<Vec<LdmLayer>>, precision: Precision) -> Vec<Vec<LdmLayer>> {
    blocks
        .into_iter()
        .map(|block| cast_block(block, precision))
        .collect()
}

/// [`cast_blocks`] for one block.
pub fn cast_block(block: Vec<LdmLayer>, precision: Precision) -> Vec<LdmLayer> {
    block
        .into_iter()
        .map(|layer| match cast_module(layer, precision) {
            LdmLayer::Res(mut res) => {
                res.in_norm = cast_module(res.in_norm, Precision::F32);
                res.out_norm = cast_module(res.out_norm, Precision::F32);
                LdmLayer::Res(res)
            }
            other => other,
        })
        .collect()
}

/// The dtype the blocks compute in (that of the first block's weights).
pub fn blocks_dtype(blocks: &[Vec<LdmLayer>]) -> DType {
    match blocks.first().and_then(|b| b.first()) {
        Some(LdmLayer::Conv(conv)) => conv.weight.val().dtype(),
        _ => DType::F32,
    }
}

/// Runs one `TimestepEmbedSequential`.
///
/// # Shapes
/// - `x`: `[B, C, H, W]`; `emb`: `[B, E]`; `context`: `[B, M, D]`
pub fn run_block(
    layers: &[LdmLayer],
    x: Tensor<4>,
    emb: &Tensor<2>,
    context: &Tensor<3>,
) -> Tensor<4> {
    layers.iter().fold(x, |x, layer| match layer {
        LdmLayer::Conv(c) => c.forward(x),
        LdmLayer::Res(r) => r.forward(x, emb),
        LdmLayer::Transformer(t) => t.forward(x, context),
        LdmLayer::Down(d) => match &d.op {
            Some(c) => c.forward(x),
            None => avg_pool2d(x, pool2()),
        },
        LdmLayer::Up(u) => {
            let x = upsample_nearest2x(x);
            match &u.conv {
                Some(c) => c.forward(x),
                None => x,
            }
        }
    })
}

/// The SD UNet with ControlNet residuals (`ControlledUnetModel`). Field names mirror the
/// checkpoint keys (see [`UNET_RULES`] for the renamed `Sequential` indices).
#[derive(Module, Debug)]
pub struct Unet {
    /// `time_embed.0`, SiLU, `time_embed.2`.
    pub time_embed: Vec<Option<Linear>>,
    /// Encoder blocks.
    pub input_blocks: Vec<Vec<LdmLayer>>,
    /// Middle block.
    pub middle_block: Vec<LdmLayer>,
    /// Decoder blocks.
    pub output_blocks: Vec<Vec<LdmLayer>>,
    /// `out.0`: GroupNorm32.
    pub out_norm: GroupNorm,
    /// `out.2`: 3×3 conv to the prediction.
    pub out_conv: Conv2d,
    model_channels: usize,
}

/// How ControlNet residuals are added.
#[derive(Debug, Clone, Copy)]
pub enum Control<'a> {
    /// No control (plain SD).
    None,
    /// One residual per input block plus one for the middle block (13 for SD 2.1), in
    /// ControlNet output order; the last is added after the middle block, the others to the
    /// skip connections in reverse order.
    Residuals(&'a [Tensor<4>]),
    /// Only the middle-block residual (`only_mid_control`).
    OnlyMid(&'a [Tensor<4>]),
}

impl Unet {
    /// Predicts eps or v for the noisy latent `x` at model timesteps `t`.
    ///
    /// # Shapes
    /// - `x`: `[B, in_channels, h, w]`, `h` and `w` multiples of `2^(levels-1)`
    /// - `t`: `[B]` (may be fractional); `context`: `[B, M, context_dim]`
    /// - `control`: residuals shaped like the input-block outputs and the middle output
    /// - returns `[B, out_channels, h, w]`
    pub fn forward(
        &self,
        x: Tensor<4>,
        t: Tensor<1>,
        context: &Tensor<3>,
        control: Control<'_>,
    ) -> Tensor<4> {
        let dtype = blocks_dtype(&self.input_blocks);
        let out_dtype = x.dtype();
        let emb = embed_time(&self.time_embed, t, self.model_channels).cast(dtype);
        let context = &context.clone().cast(dtype);
        let mut hs = Vec::with_capacity(self.input_blocks.len());
        let mut h = x.cast(dtype);
        for block in &self.input_blocks {
            h = run_block(block, h, &emb, context);
            hs.push(h.clone());
        }
        h = run_block(&self.middle_block, h, &emb, context);
        let residuals = match control {
            Control::None => None,
            Control::Residuals(r) | Control::OnlyMid(r) => Some(r),
        };
        let mut controls: Vec<Tensor<4>> = residuals.map(<[Tensor<4>]>::to_vec).unwrap_or_default();
        if let Some(mid) = residuals.and_then(|_| controls.pop()) {
            h = h + mid;
        }
        let add_skip_controls = matches!(control, Control::Residuals(_));
        for block in &self.output_blocks {
            let skip = hs.pop().expect("one skip per output block");
            let skip = match controls.pop().filter(|_| add_skip_controls) {
                Some(c) => skip + c,
                None => skip,
            };
            h = run_block(block, Tensor::cat(vec![h, skip], 1), &emb, context);
        }
        self.out_conv
            .forward(silu(gn32(&self.out_norm, h.cast(out_dtype))))
    }

    /// Casts the blocks to `precision` as the reference does (residual-block GroupNorms,
    /// the time embedding and the output head stay in f32).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.input_blocks = cast_blocks(self.input_blocks, precision);
        self.middle_block = cast_block(self.middle_block, precision);
        self.output_blocks = cast_blocks(self.output_blocks, precision);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn key_rules_hold() {
        SD_UNET_KEYS.check_examples().unwrap();
        UNET_KEYS.check_examples().unwrap();
    }

    #[test]
    fn official_size_has_the_reference_parameter_count() {
        assert_eq!(
            UnetConfig::sd21().init(&Device::flex()).num_params(),
            865_910_724
        );
    }

    #[test]
    fn tiny_unet_predicts_the_input_shape_with_and_without_control() {
        let device = Device::flex();
        let unet = UnetConfig::tiny().init(&device);
        let x = Tensor::<4>::random([2, 4, 8, 16], Distribution::Default, &device);
        let t = Tensor::<1>::from_floats([10.0, 500.0], &device);
        let ctx = Tensor::<3>::random([2, 77, 8], Distribution::Default, &device);
        let y = unet.forward(x.clone(), t.clone(), &ctx, Control::None);
        assert_eq!(y.dims(), [2, 4, 8, 16]);
        let zeros: Vec<Tensor<4>> = [
            [2, 32, 8, 16],
            [2, 32, 8, 16],
            [2, 32, 4, 8],
            [2, 32, 4, 8],
            [2, 32, 4, 8],
        ]
        .into_iter()
        .map(|s| Tensor::zeros(s, &device))
        .collect();
        let z = unet.forward(x, t, &ctx, Control::Residuals(&zeros));
        let diff: f32 = (y - z).abs().max().into_scalar();
        assert_eq!(diff, 0.0, "zero residuals change nothing");
    }

    #[test]
    fn variant_knobs_build_and_run() {
        let device = Device::flex();
        let cfg = UnetConfig::tiny()
            .with_use_scale_shift_norm(true)
            .with_resblock_updown(true)
            .with_use_linear_in_transformer(false)
            .with_transformer_depth(2)
            .with_num_heads(2)
            .with_num_head_channels(-1)
            .with_disable_self_attentions(Some(vec![true, false]))
            .with_num_res_blocks(PerLevel::Each(vec![2, 1]))
            .with_num_attention_blocks(Some(vec![1, 1]));
        let unet = cfg.init(&device);
        let x = Tensor::<4>::random([1, 4, 8, 8], Distribution::Default, &device);
        let ctx = Tensor::<3>::random([1, 5, 8], Distribution::Default, &device);
        let y = unet.forward(x, Tensor::from_floats([3.5], &device), &ctx, Control::None);
        assert_eq!(y.dims(), [1, 4, 8, 8]);
        assert!(
            UnetConfig::tiny()
                .with_use_spatial_transformer(false)
                .validate()
                .is_err()
        );
    }

    #[test]
    fn half_precision_stays_close_to_f32() {
        let device = Device::flex();
        let unet = UnetConfig::tiny().init(&device);
        let x = Tensor::<4>::random([1, 4, 8, 8], Distribution::Default, &device);
        let t = Tensor::<1>::from_floats([250.0], &device);
        let ctx = Tensor::<3>::random([1, 77, 8], Distribution::Default, &device);
        let full = unet.forward(x.clone(), t.clone(), &ctx, Control::None);
        let half = unet.with_precision(Precision::F16);
        let LdmLayer::Res(res) = &half.input_blocks[1][0] else {
            panic!("a residual block")
        };
        assert_eq!(
            res.in_norm.gamma.as_ref().unwrap().val().dtype(),
            DType::F32
        );
        assert_eq!(res.in_conv.weight.val().dtype(), DType::F16);
        let y = half.forward(x, t, &ctx, Control::None);
        assert_eq!(y.dtype(), DType::F32);
        let err: f32 = (y - full.clone()).abs().max().into_scalar();
        let scale: f32 = full.abs().max().into_scalar();
        assert!(err < 2e-2 * scale.max(1.0), "{err} vs {scale}");
    }

    #[test]
    fn timestep_embedding_puts_cos_first() {
        let e: Vec<f32> = timestep_embedding(Tensor::<1>::from_floats([0.0], &Device::flex()), 6)
            .into_data()
            .try_to_vec()
            .unwrap();
        assert_eq!(e, vec![1.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
    }
}
