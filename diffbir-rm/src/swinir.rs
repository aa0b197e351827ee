//! SwinIR, in the variant DiffBIR uses as its stage-1 restorer.
//!
//! Liang et al., "SwinIR: Image Restoration Using Swin Transformer" (ICCVW 2021); DiffBIR's
//! copy adds a `PixelUnshuffle` stem and a "nearest+conv" ×8 upsampler so that the Swin trunk
//! runs at 1/8 resolution (`XPixelGroup/DiffBIR@3f8b530:diffbir/model/swinir.py`). Every
//! variant of the constructor is supported: window size, depths, heads, MLP ratio, the four
//! upsamplers, `1conv`/`3conv` residual connections, absolute position embedding, patch norm,
//! unshuffled input and `img_range`.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig, LinearConfig};
use burn::tensor::activation::{gelu, leaky_relu};
use burn::tensor::module::attention;
use burn::tensor::ops::{AttentionModuleOptions, PadMode};
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use diffbir_core::kernels::{Conv2d, Linear};
use diffbir_core::weights::ParamCount;
use diffbir_core::{Error, KeyMap, Result};
use serde::{Deserialize, Serialize};

use crate::ops::{self, conv3x3};

/// Reconstruction head of [`SwinIr`] (the `upsampler` argument of the original).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Upsampler {
    /// `''`: same-size restoration with a global residual.
    #[default]
    #[serde(rename = "")]
    None,
    /// `'pixelshuffle'`: conv + PixelShuffle(2) per ×2 step (or one ×3 step).
    #[serde(rename = "pixelshuffle")]
    PixelShuffle,
    /// `'pixelshuffledirect'`: one conv + PixelShuffle(sf).
    #[serde(rename = "pixelshuffledirect")]
    PixelShuffleDirect,
    /// `'nearest+conv'`: nearest ×2 + conv, up to three times (DiffBIR's choice).
    #[serde(rename = "nearest+conv")]
    NearestConv,
}

/// The convolution closing each residual group and the trunk (`resi_connection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ResiConnection {
    /// `'1conv'`: one 3×3 conv.
    #[default]
    #[serde(rename = "1conv")]
    OneConv,
    /// `'3conv'`: 3×3 to C/4, LeakyReLU, 1×1, LeakyReLU, 3×3 back to C.
    #[serde(rename = "3conv")]
    ThreeConv,
}

/// Configuration of [`SwinIr`]; field names and defaults are the original constructor's.
#[derive(Config, Debug)]
pub struct SwinIrConfig {
    /// Training patch size in trunk pixels (decides whether shifted windows are used and the
    /// size of the absolute position embedding).
    #[config(default = 64)]
    pub img_size: usize,
    /// Patch size (SwinIR's patch embedding only flattens; this scales `img_size`).
    #[config(default = 1)]
    pub patch_size: usize,
    /// Input (and output) channels.
    #[config(default = 3)]
    pub in_chans: usize,
    /// Trunk width.
    #[config(default = 96)]
    pub embed_dim: usize,
    /// Swin blocks per residual group.
    #[config(default = "vec![6, 6, 6, 6]")]
    pub depths: Vec<usize>,
    /// Attention heads per residual group.
    #[config(default = "vec![6, 6, 6, 6]")]
    pub num_heads: Vec<usize>,
    /// Attention window side.
    #[config(default = 7)]
    pub window_size: usize,
    /// MLP hidden width as a multiple of `embed_dim`.
    #[config(default = 4.0)]
    pub mlp_ratio: f64,
    /// Bias in the qkv projection.
    #[config(default = true)]
    pub qkv_bias: bool,
    /// Attention scale; `None` means `head_dim^-0.5`.
    #[config(default = "None")]
    pub qk_scale: Option<f64>,
    /// Learned absolute position embedding.
    #[config(default = false)]
    pub ape: bool,
    /// LayerNorm after the patch embedding.
    #[config(default = true)]
    pub patch_norm: bool,
    /// Upscale factor (`upscale` in the original).
    #[config(default = 4)]
    pub sf: usize,
    /// Pixel range the network works in.
    #[config(default = 1.0)]
    pub img_range: f64,
    /// Reconstruction head.
    #[config(default = "Upsampler::None")]
    pub upsampler: Upsampler,
    /// Residual connection convs.
    #[config(default = "ResiConnection::OneConv")]
    pub resi_connection: ResiConnection,
    /// Pixel-unshuffle the input by `sf` before the first conv.
    #[config(default = false)]
    pub unshuffle: bool,
    /// Channel multiplier of the unshuffled input (must equal `sf`).
    #[config(default = "None")]
    pub unshuffle_scale: Option<usize>,
}

impl SwinIrConfig {
    /// DiffBIR's stage-1 SwinIR (`configs/inference/swinir.yaml`, used by `general_swinir_v1`,
    /// `face_swinir_v1` and `realesrgan_s4_swinir_100k`): 8 groups of 6 blocks, width 180,
    /// window 8, unshuffle ×8 and a "nearest+conv" ×8 head (15.8 M parameters).
    pub fn diffbir() -> Self {
        Self::new()
            .with_img_size(64)
            .with_embed_dim(180)
            .with_depths(vec![6; 8])
            .with_num_heads(vec![6; 8])
            .with_window_size(8)
            .with_mlp_ratio(2.0)
            .with_sf(8)
            .with_upsampler(Upsampler::NearestConv)
            .with_unshuffle(true)
            .with_unshuffle_scale(Some(8))
    }

    /// A small configuration of the same shape, for tests.
    pub fn tiny() -> Self {
        Self::diffbir()
            .with_img_size(16)
            .with_embed_dim(24)
            .with_depths(vec![2, 2])
            .with_num_heads(vec![2, 3])
    }

    /// Checks the configuration; [`init`](Self::init) requires it to hold.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| {
            Err(Error::InvalidArgument {
                what: "SwinIR config".into(),
                reason,
            })
        };
        if self.depths.is_empty() || self.depths.len() != self.num_heads.len() {
            return bad(format!(
                "depths {:?} and num_heads {:?} must be non-empty and of equal length",
                self.depths, self.num_heads
            ));
        }
        if let Some(h) = self
            .num_heads
            .iter()
            .find(|h| **h == 0 || !self.embed_dim.is_multiple_of(**h))
        {
            return bad(format!(
                "embed_dim {} is not divisible by {h} heads",
                self.embed_dim
            ));
        }
        if self.window_size == 0 || self.patch_size == 0 || self.img_size < self.patch_size {
            return bad("window_size, patch_size and img_size must be positive".into());
        }
        if self.unshuffle && self.unshuffle_scale != Some(self.sf) {
            return bad(format!(
                "unshuffle needs unshuffle_scale equal to sf ({}), got {:?}",
                self.sf, self.unshuffle_scale
            ));
        }
        let valid_sf = match self.upsampler {
            Upsampler::PixelShuffle => self.sf.is_power_of_two() || self.sf == 3,
            Upsampler::NearestConv => matches!(self.sf, 1 | 2 | 4 | 8),
            Upsampler::PixelShuffleDirect | Upsampler::None => self.sf >= 1,
        };
        if !valid_sf {
            return bad(format!(
                "upsampler {:?} does not support sf = {}",
                self.upsampler, self.sf
            ));
        }
        if self.resi_connection == ResiConnection::ThreeConv && self.embed_dim < 4 {
            return bad("3conv needs embed_dim >= 4".into());
        }
        // Attention runs over window² tokens with a window⁴ relative-position index.
        if self.window_size > Self::MAX_WINDOW {
            return bad(format!(
                "window_size {} is more than {}",
                self.window_size,
                Self::MAX_WINDOW
            ));
        }
        if !(self.mlp_ratio.is_finite() && self.mlp_hidden() > 0) {
            return bad(format!("mlp_ratio {} gives no MLP width", self.mlp_ratio));
        }
        self.param_count().check("SwinIR config")
    }

    /// The largest attention window side.
    pub const MAX_WINDOW: usize = 64;

    /// Width of the MLP hidden layer (`int(embed_dim * mlp_ratio)`).
    fn mlp_hidden(&self) -> usize {
        (self.embed_dim as f64 * self.mlp_ratio) as usize
    }

    /// The parameters [`init`](Self::init) creates, saturating.
    fn param_count(&self) -> ParamCount {
        const NUM_FEAT: usize = 64;
        let dim = self.embed_dim;
        let conv3 = |cin: usize, cout: usize| ParamCount::layer(&[cout, cin, 3, 3], true);
        let norm = |c: usize| ParamCount::of(&[2, c]);
        let resolution = self.img_size / self.patch_size.max(1);
        let window = if resolution <= self.window_size {
            resolution
        } else {
            self.window_size
        };
        let table = window.saturating_mul(2).saturating_sub(1);
        let hidden = self.mlp_hidden();
        let blocks: ParamCount = self
            .depths
            .iter()
            .zip(&self.num_heads)
            .map(|(&depth, &heads)| {
                let block = norm(dim).times(2)
                    + ParamCount::of(&[table, table, heads])
                    + ParamCount::layer(&[dim.saturating_mul(3), dim], self.qkv_bias)
                    + ParamCount::layer(&[dim, dim], true)
                    + ParamCount::layer(&[hidden, dim], true)
                    + ParamCount::layer(&[dim, hidden], true);
                block.times(depth)
            })
            .sum();
        let resi = match self.resi_connection {
            ResiConnection::OneConv => conv3(dim, dim),
            ResiConnection::ThreeConv => {
                conv3(dim, dim / 4)
                    + ParamCount::layer(&[dim / 4, dim / 4, 1, 1], true)
                    + conv3(dim / 4, dim)
            }
        };
        let num_in = if self.unshuffle {
            self.in_chans
                .saturating_mul(self.sf)
                .saturating_mul(self.sf)
        } else {
            self.in_chans
        };
        let ape = if self.ape {
            ParamCount::of(&[resolution, resolution, dim])
        } else {
            ParamCount::default()
        };
        let feat = conv3(NUM_FEAT, NUM_FEAT);
        let head = match self.upsampler {
            Upsampler::PixelShuffle if self.sf == 3 => {
                conv3(dim, NUM_FEAT)
                    + conv3(NUM_FEAT, 9 * NUM_FEAT)
                    + conv3(NUM_FEAT, self.in_chans)
            }
            Upsampler::PixelShuffle => {
                conv3(dim, NUM_FEAT)
                    + conv3(NUM_FEAT, 4 * NUM_FEAT).times(self.sf.trailing_zeros() as usize)
                    + conv3(NUM_FEAT, self.in_chans)
            }
            Upsampler::PixelShuffleDirect => conv3(
                dim,
                self.sf
                    .saturating_mul(self.sf)
                    .saturating_mul(self.in_chans),
            ),
            // conv_before_upsample, conv_up1 (conv_up2 from ×4, conv_up3 at ×8), conv_hr,
            // conv_last.
            Upsampler::NearestConv => {
                let ups = match self.sf {
                    8 => 3,
                    4 => 2,
                    _ => 1,
                };
                conv3(dim, NUM_FEAT) + feat.times(ups + 1) + conv3(NUM_FEAT, self.in_chans)
            }
            Upsampler::None => conv3(dim, self.in_chans),
        };
        conv3(num_in, dim)
            + norm(dim).times(2)
            + ape
            + blocks
            + resi.times(self.depths.len().saturating_add(1))
            + head
    }

    /// Builds the network with random weights.
    ///
    /// # Panics
    ///
    /// If [`validate`](Self::validate) fails.
    pub fn init(&self, device: &Device) -> SwinIr {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let dim = self.embed_dim;
        let num_feat = 64;
        let resolution = self.img_size / self.patch_size;
        let (window, shift) = if resolution <= self.window_size {
            (resolution, 0)
        } else {
            (self.window_size, self.window_size / 2)
        };
        let num_in = if self.unshuffle {
            self.in_chans * self.sf * self.sf
        } else {
            self.in_chans
        };
        let conv_first = if self.unshuffle {
            ConvFirst::Unshuffle(vec![None, Some(conv3x3(num_in, dim, device))])
        } else {
            ConvFirst::Plain(conv3x3(num_in, dim, device))
        };
        let layers = self
            .depths
            .iter()
            .zip(&self.num_heads)
            .map(|(&depth, &heads)| Rstb {
                residual_group: BasicLayer {
                    blocks: (0..depth)
                        .map(|i| {
                            self.block(heads, window, if i % 2 == 0 { 0 } else { shift }, device)
                        })
                        .collect(),
                },
                conv: self.resi_conv(device),
            })
            .collect();
        let nearest = self.upsampler == Upsampler::NearestConv;
        let (conv_up2, conv_up3) = match (nearest, self.sf) {
            (true, 4) => (Some(conv3x3(num_feat, num_feat, device)), None),
            (true, 8) => (
                Some(conv3x3(num_feat, num_feat, device)),
                Some(conv3x3(num_feat, num_feat, device)),
            ),
            _ => (None, None),
        };
        let upsample = match self.upsampler {
            Upsampler::PixelShuffle if self.sf == 3 => {
                Some(vec![Some(conv3x3(num_feat, 9 * num_feat, device)), None])
            }
            Upsampler::PixelShuffle => Some(
                (0..self.sf.trailing_zeros())
                    .flat_map(|_| [Some(conv3x3(num_feat, 4 * num_feat, device)), None])
                    .collect(),
            ),
            Upsampler::PixelShuffleDirect => Some(vec![
                Some(conv3x3(dim, self.sf * self.sf * self.in_chans, device)),
                None,
            ]),
            _ => None,
        };
        let conv_last = match self.upsampler {
            Upsampler::PixelShuffle | Upsampler::NearestConv => {
                Some(conv3x3(num_feat, self.in_chans, device))
            }
            Upsampler::PixelShuffleDirect => None,
            Upsampler::None => Some(conv3x3(dim, self.in_chans, device)),
        };
        let with_head = matches!(
            self.upsampler,
            Upsampler::PixelShuffle | Upsampler::NearestConv
        );
        SwinIr {
            conv_first,
            patch_embed: PatchEmbed {
                norm: self
                    .patch_norm
                    .then(|| LayerNormConfig::new(dim).init(device)),
            },
            absolute_pos_embed: self.ape.then(|| {
                Param::from_tensor(Tensor::random(
                    [1, resolution * resolution, dim],
                    Distribution::Normal(0.0, 0.02),
                    device,
                ))
            }),
            layers,
            norm: LayerNormConfig::new(dim).init(device),
            conv_after_body: self.resi_conv(device),
            conv_before_upsample: with_head.then(|| vec![conv3x3(dim, num_feat, device)]),
            upsample,
            conv_up1: nearest.then(|| conv3x3(num_feat, num_feat, device)),
            conv_up2,
            conv_up3,
            conv_hr: nearest.then(|| conv3x3(num_feat, num_feat, device)),
            conv_last,
            in_chans: self.in_chans,
            sf: self.sf,
            img_range: self.img_range,
            window_size: self.window_size,
            upsampler: self.upsampler as usize,
        }
    }

    fn block(&self, heads: usize, window: usize, shift: usize, device: &Device) -> SwinBlock {
        let dim = self.embed_dim;
        let hidden = self.mlp_hidden();
        let head_dim = dim / heads;
        SwinBlock {
            norm1: LayerNormConfig::new(dim).init(device),
            attn: WindowAttention {
                relative_position_bias_table: Param::from_tensor(Tensor::random(
                    [(2 * window - 1) * (2 * window - 1), heads],
                    Distribution::Normal(0.0, 0.02),
                    device,
                )),
                qkv: LinearConfig::new(dim, 3 * dim)
                    .with_bias(self.qkv_bias)
                    .init(device)
                    .into(),
                proj: LinearConfig::new(dim, dim).init(device).into(),
                num_heads: heads,
                scale: self.qk_scale.unwrap_or((head_dim as f64).powf(-0.5)),
            },
            norm2: LayerNormConfig::new(dim).init(device),
            mlp: Mlp {
                fc1: LinearConfig::new(dim, hidden).init(device).into(),
                fc2: LinearConfig::new(hidden, dim).init(device).into(),
            },
            window_size: window,
            shift_size: shift,
        }
    }

    fn resi_conv(&self, device: &Device) -> ResiConv {
        let dim = self.embed_dim;
        match self.resi_connection {
            ResiConnection::OneConv => ResiConv::One(conv3x3(dim, dim, device)),
            ResiConnection::ThreeConv => ResiConv::Three(vec![
                Some(conv3x3(dim, dim / 4, device)),
                None,
                Some(ops::conv(dim / 4, dim / 4, 1, 1, 0, true, device)),
                None,
                Some(conv3x3(dim / 4, dim, device)),
            ]),
        }
    }
}

/// `conv_first`: a conv, or `Sequential(PixelUnshuffle, Conv2d)` (keys `conv_first.1.*`).
#[derive(Module, Debug)]
pub enum ConvFirst {
    /// A plain 3×3 conv.
    Plain(Conv2d),
    /// Index 0 is the (parameter-free) unshuffle, index 1 the conv.
    Unshuffle(Vec<Option<Conv2d>>),
}

/// A residual-connection conv: one conv, or the `3conv` sequence (indices 0, 2, 4).
#[derive(Module, Debug)]
pub enum ResiConv {
    /// `1conv`.
    One(Conv2d),
    /// `3conv`; the `None` entries are the LeakyReLUs.
    Three(Vec<Option<Conv2d>>),
}

impl ResiConv {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::One(conv) => conv.forward(x),
            Self::Three(seq) => seq.iter().flatten().enumerate().fold(x, |x, (i, conv)| {
                let y = conv.forward(x);
                if i < 2 { leaky_relu(y, 0.2) } else { y }
            }),
        }
    }
}

/// The patch embedding: flatten to tokens, then an optional LayerNorm.
#[derive(Module, Debug)]
pub struct PatchEmbed {
    /// `patch_embed.norm`.
    pub norm: Option<LayerNorm>,
}

/// Window multi-head self-attention with a relative position bias.
#[derive(Module, Debug)]
pub struct WindowAttention {
    /// `[(2·ws − 1)², heads]`.
    pub relative_position_bias_table: Param<Tensor<2>>,
    /// `dim → 3·dim`, output `[q | k | v]`, head-major inside each.
    pub qkv: Linear,
    /// Output projection.
    pub proj: Linear,
    num_heads: usize,
    scale: f64,
}

impl WindowAttention {
    /// # Shapes
    /// - `x`: `[B·nW, ws², C]`; `mask`: `[nW, ws², ws²]` (additive); returns `[B·nW, ws², C]`
    fn forward(&self, x: Tensor<3>, ws: usize, mask: Option<&Tensor<3>>) -> Tensor<3> {
        let [bn, n, c] = x.dims();
        let heads = self.num_heads;
        let qkv = self
            .qkv
            .forward(x)
            .reshape([bn, n, 3, heads, c / heads])
            .permute([2, 0, 3, 1, 4]);
        let part = |i: usize| {
            qkv.clone()
                .narrow(0, i, 1)
                .reshape([bn, heads, n, c / heads])
        };
        let (q, k, v) = (part(0), part(1), part(2));
        let device = q.device();
        let bias = self
            .relative_position_bias_table
            .val()
            .select(0, ops::relative_position_index(ws, &device))
            .reshape([n, n, heads])
            .permute([2, 0, 1]);
        let bias = match mask {
            Some(mask) => {
                let [nw, _, _] = mask.dims();
                // The mask is built in f32; the bias is in the network's precision.
                let mask = mask.clone().cast(bias.dtype());
                let per_window = bias.unsqueeze_dim::<4>(0) + mask.unsqueeze_dim::<4>(1);
                per_window
                    .unsqueeze_dim::<5>(0)
                    .expand([bn / nw, nw, heads, n, n])
                    .reshape([bn, heads, n, n])
            }
            None => bias.unsqueeze_dim::<4>(0).expand([bn, heads, n, n]),
        };
        let options = AttentionModuleOptions {
            scale: Some(self.scale),
            softcap: None,
            is_causal: false,
        };
        let out = attention(q, k, v, None, Some(bias), options);
        self.proj.forward(out.swap_dims(1, 2).reshape([bn, n, c]))
    }
}

/// The transformer MLP (`fc1`, GELU, `fc2`).
#[derive(Module, Debug)]
pub struct Mlp {
    /// `dim → hidden`.
    pub fc1: Linear,
    /// `hidden → dim`.
    pub fc2: Linear,
}

/// A Swin transformer block (shifted when `shift_size > 0`).
#[derive(Module, Debug)]
pub struct SwinBlock {
    /// Pre-attention norm.
    pub norm1: LayerNorm,
    /// Window attention.
    pub attn: WindowAttention,
    /// Pre-MLP norm.
    pub norm2: LayerNorm,
    /// MLP.
    pub mlp: Mlp,
    window_size: usize,
    shift_size: usize,
}

impl SwinBlock {
    fn forward(&self, x: Tensor<3>, h: usize, w: usize, mask: Option<&Tensor<3>>) -> Tensor<3> {
        let [b, l, c] = x.dims();
        let (ws, shift) = (self.window_size, self.shift_size);
        let mut y = self.norm1.forward(x.clone()).reshape([b, h, w, c]);
        if shift > 0 {
            y = y.roll(&[-(shift as i64), -(shift as i64)], &[1, 2]);
        }
        let windows = ops::window_partition(y, ws);
        let attended = self
            .attn
            .forward(windows, ws, if shift > 0 { mask } else { None });
        let mut y = ops::window_reverse(attended, ws, h, w);
        if shift > 0 {
            y = y.roll(&[shift as i64, shift as i64], &[1, 2]);
        }
        let x = x + y.reshape([b, l, c]);
        let hidden = gelu(self.mlp.fc1.forward(self.norm2.forward(x.clone())));
        x + self.mlp.fc2.forward(hidden)
    }
}

/// The blocks of one residual group.
#[derive(Module, Debug)]
pub struct BasicLayer {
    /// Alternating regular and shifted blocks.
    pub blocks: Vec<SwinBlock>,
}

/// Residual Swin transformer block: blocks, a conv, and a skip connection.
#[derive(Module, Debug)]
pub struct Rstb {
    /// The transformer blocks.
    pub residual_group: BasicLayer,
    /// The closing conv.
    pub conv: ResiConv,
}

/// SwinIR. Field names mirror the original state-dict keys.
#[derive(Module, Debug)]
pub struct SwinIr {
    /// First conv (after the optional unshuffle).
    pub conv_first: ConvFirst,
    /// Token flattening and its norm.
    pub patch_embed: PatchEmbed,
    /// Absolute position embedding `[1, L, C]` (with `ape`).
    pub absolute_pos_embed: Option<Param<Tensor<3>>>,
    /// Residual groups.
    pub layers: Vec<Rstb>,
    /// Final trunk norm.
    pub norm: LayerNorm,
    /// Trunk residual conv.
    pub conv_after_body: ResiConv,
    /// `Sequential(Conv2d(C, 64), LeakyReLU(0.01))`.
    pub conv_before_upsample: Option<Vec<Conv2d>>,
    /// PixelShuffle heads (convs at even indices).
    pub upsample: Option<Vec<Option<Conv2d>>>,
    /// Nearest+conv ×2 steps.
    pub conv_up1: Option<Conv2d>,
    /// Second ×2 step (sf 4 and 8).
    pub conv_up2: Option<Conv2d>,
    /// Third ×2 step (sf 8).
    pub conv_up3: Option<Conv2d>,
    /// High-resolution conv before the last.
    pub conv_hr: Option<Conv2d>,
    /// Output conv.
    pub conv_last: Option<Conv2d>,
    in_chans: usize,
    sf: usize,
    img_range: f64,
    window_size: usize,
    upsampler: usize,
}

const RGB_MEAN: [f32; 3] = [0.4488, 0.4371, 0.4040];

impl SwinIr {
    /// The upscale factor of the output relative to the input: `sf` for the upsampling
    /// heads, divided by `sf` again when the input is unshuffled (DiffBIR's variant keeps the
    /// size), 1 without a head.
    pub fn scale(&self) -> usize {
        let up = if self.upsampler() == Upsampler::None {
            1
        } else {
            self.sf
        };
        match self.conv_first {
            ConvFirst::Unshuffle(_) => up / self.sf,
            ConvFirst::Plain(_) => up,
        }
    }

    /// Inputs must be a multiple of this size (the window, times the unshuffle factor) for
    /// the trunk's windows to tile them.
    pub fn input_multiple(&self) -> usize {
        match self.conv_first {
            ConvFirst::Unshuffle(_) => self.window_size * self.sf,
            ConvFirst::Plain(_) => self.window_size,
        }
    }

    fn upsampler(&self) -> Upsampler {
        [
            Upsampler::None,
            Upsampler::PixelShuffle,
            Upsampler::PixelShuffleDirect,
            Upsampler::NearestConv,
        ][self.upsampler]
    }

    /// The original `forward`: reflect-pads bottom/right to a multiple of the window size,
    /// runs the network, and crops to `[:H·sf, :W·sf]` (which keeps the padding when the
    /// output is not larger, as the original does).
    ///
    /// With an unshuffled stem the trunk works at `H/sf × W/sf`, which must be a multiple of
    /// the window: feed multiples of `sf · window_size` (64 for DiffBIR), as the pipeline does.
    ///
    /// # Shapes
    /// - `x`: `[B, in_chans, H, W]`, values in `[0, 1]`
    /// - returns `[B, in_chans, H', W']`, unclamped
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let ws = self.window_size;
        let (ph, pw) = ((ws - h % ws) % ws, (ws - w % ws) % ws);
        let x = if ph > 0 || pw > 0 {
            x.pad((0, pw, 0, ph), PadMode::Reflect)
        } else {
            x
        };
        // In the input's precision (f16 when the network was cast).
        let options = (&x.device(), x.dtype());
        let mean = if self.in_chans == 3 {
            Tensor::<4>::from_data(TensorData::new(RGB_MEAN.to_vec(), [1, 3, 1, 1]), options)
        } else {
            Tensor::zeros([1, 1, 1, 1], options)
        };
        let range = self.img_range;
        let input = (x - mean.clone()).mul_scalar(range);
        let first = match &self.conv_first {
            ConvFirst::Plain(conv) => conv.forward(input.clone()),
            ConvFirst::Unshuffle(seq) => {
                let conv = seq.iter().flatten().next().expect("conv_first.1 exists");
                conv.forward(ops::pixel_unshuffle(input.clone(), self.sf))
            }
        };
        let res = self
            .conv_after_body
            .forward(self.forward_features(first.clone()))
            + first;
        let lrelu = |t| leaky_relu(t, 0.2);
        let out = match self.upsampler() {
            Upsampler::PixelShuffle => {
                let mut y = leaky_relu(self.head(&self.conv_before_upsample).forward(res), 0.01);
                let steps = self.upsample.as_ref().expect("pixelshuffle head");
                for conv in steps.iter().flatten() {
                    let r = if self.sf == 3 { 3 } else { 2 };
                    y = ops::pixel_shuffle(conv.forward(y), r);
                }
                self.conv_last.as_ref().expect("conv_last").forward(y)
            }
            Upsampler::PixelShuffleDirect => {
                let steps = self.upsample.as_ref().expect("pixelshuffledirect head");
                let conv = steps.iter().flatten().next().expect("upsample.0");
                ops::pixel_shuffle(conv.forward(res), self.sf)
            }
            Upsampler::NearestConv => {
                let mut y = leaky_relu(self.head(&self.conv_before_upsample).forward(res), 0.01);
                for conv in [&self.conv_up1, &self.conv_up2, &self.conv_up3]
                    .into_iter()
                    .flatten()
                {
                    y = lrelu(conv.forward(diffbir_core::resize::upsample_nearest2x(y)));
                }
                let hr = lrelu(self.conv_hr.as_ref().expect("conv_hr").forward(y));
                self.conv_last.as_ref().expect("conv_last").forward(hr)
            }
            Upsampler::None => input + self.conv_last.as_ref().expect("conv_last").forward(res),
        };
        let out = out.div_scalar(range) + mean;
        let [b, c, oh, ow] = out.dims();
        out.slice([0..b, 0..c, 0..oh.min(h * self.sf), 0..ow.min(w * self.sf)])
    }

    fn head<'a>(&self, seq: &'a Option<Vec<Conv2d>>) -> &'a Conv2d {
        seq.as_ref()
            .and_then(|s| s.first())
            .expect("conv_before_upsample.0")
    }

    fn forward_features(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let mut tokens = x.reshape([b, c, h * w]).swap_dims(1, 2);
        if let Some(norm) = &self.patch_embed.norm {
            tokens = norm.forward(tokens);
        }
        if let Some(ape) = &self.absolute_pos_embed {
            tokens = tokens + ape.val();
        }
        // Every shifted block of the model shares the window and shift: one mask for all.
        let mask = self
            .layers
            .iter()
            .flat_map(|l| &l.residual_group.blocks)
            .find(|b| b.shift_size > 0)
            .map(|b| {
                ops::shift_attention_mask(
                    h,
                    w,
                    b.window_size,
                    b.shift_size,
                    -100.0,
                    &tokens.device(),
                )
            });
        for layer in &self.layers {
            let mut y = tokens.clone();
            for block in &layer.residual_group.blocks {
                y = block.forward(y, h, w, mask.as_ref());
            }
            let y = y.swap_dims(1, 2).reshape([b, c, h, w]);
            let y = layer.conv.forward(y).reshape([b, c, h * w]).swap_dims(1, 2);
            tokens = y + tokens;
        }
        self.norm
            .forward(tokens)
            .swap_dims(1, 2)
            .reshape([b, c, h, w])
    }
}

/// Buffers the original registers in the state dict and this port recomputes: the relative
/// position index of every attention and the shift masks of shifted blocks.
const SWINIR_DROPPABLE: &[&str] = &[r"\.attn\.relative_position_index$", r"\.attn_mask$"];

/// `general_swinir_v1.ckpt`: a Lightning checkpoint (`state_dict` wrapper, unwrapped by the
/// reader) of the SwinIR LightningModule itself, so keys have no prefix.
pub const SWINIR_GENERAL_KEYS: KeyMap = KeyMap {
    name: "swinir-general",
    prefix: "",
    rules: &[],
    droppable: SWINIR_DROPPABLE,
};

/// `face_swinir_v1.ckpt`: the same layout as the general model.
pub const SWINIR_FACE_KEYS: KeyMap = KeyMap {
    name: "swinir-face",
    prefix: "",
    rules: &[],
    droppable: SWINIR_DROPPABLE,
};

/// `realesrgan_s4_swinir_100k.pth`: a flat state dict written by `train_stage1.py`.
pub const SWINIR_REALESRGAN_KEYS: KeyMap = KeyMap {
    name: "swinir-realesrgan",
    prefix: "",
    rules: &[],
    droppable: SWINIR_DROPPABLE,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_maps_are_consistent() {
        for map in [
            SWINIR_GENERAL_KEYS,
            SWINIR_FACE_KEYS,
            SWINIR_REALESRGAN_KEYS,
        ] {
            map.check_examples().unwrap();
        }
    }

    #[test]
    fn official_size_has_the_reference_parameter_count() {
        let model = SwinIrConfig::diffbir().init(&Device::flex());
        // 15,792,587 parameters minus nothing: buffers are recomputed, not stored.
        assert_eq!(model.num_params(), 15_792_587);
    }

    #[test]
    fn validate_counts_the_parameters_init_creates() {
        assert_eq!(SwinIrConfig::diffbir().param_count().0, 15_792_587);
        let device = Device::flex();
        for config in [
            SwinIrConfig::tiny(),
            SwinIrConfig::tiny()
                .with_ape(true)
                .with_resi_connection(ResiConnection::ThreeConv)
                .with_qkv_bias(false),
            SwinIrConfig::tiny()
                .with_unshuffle(false)
                .with_unshuffle_scale(None)
                .with_sf(2)
                .with_upsampler(Upsampler::PixelShuffle),
            SwinIrConfig::tiny()
                .with_unshuffle(false)
                .with_unshuffle_scale(None)
                .with_sf(3)
                .with_upsampler(Upsampler::PixelShuffle),
            SwinIrConfig::tiny()
                .with_unshuffle(false)
                .with_unshuffle_scale(None)
                .with_sf(3)
                .with_upsampler(Upsampler::PixelShuffleDirect),
            SwinIrConfig::tiny()
                .with_unshuffle(false)
                .with_unshuffle_scale(None)
                .with_upsampler(Upsampler::None)
                .with_img_size(4),
            SwinIrConfig::tiny()
                .with_sf(4)
                .with_unshuffle_scale(Some(4)),
            SwinIrConfig::tiny()
                .with_sf(2)
                .with_unshuffle_scale(Some(2)),
        ] {
            config.validate().unwrap();
            let built = config.init(&device).num_params() as u128;
            assert_eq!(config.param_count().0, built, "{config:?}");
        }
    }

    #[test]
    fn oversized_configs_are_refused() {
        // A hostile `--model-config` must fail validation, not allocate in `init`.
        for config in [
            SwinIrConfig::diffbir()
                .with_embed_dim(1 << 20)
                .with_num_heads(vec![1; 8]),
            SwinIrConfig::diffbir().with_depths(vec![usize::MAX; 8]),
            SwinIrConfig::diffbir().with_mlp_ratio(1e300),
            SwinIrConfig::diffbir()
                .with_window_size(4096)
                .with_img_size(1 << 20),
            SwinIrConfig::diffbir()
                .with_ape(true)
                .with_img_size(1 << 30),
        ] {
            let err = config.validate().unwrap_err();
            assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
        }
    }

    #[test]
    fn tiny_model_keeps_the_size_and_pads_like_the_original() {
        let device = Device::flex();
        let model = SwinIrConfig::tiny().init(&device);
        assert_eq!(model.scale(), 1);
        let x = Tensor::<4>::random([1, 3, 64, 64], Distribution::Default, &device);
        assert_eq!(model.forward(x).dims(), [1, 3, 64, 64]);
        let x = Tensor::<4>::random([1, 3, 60, 57], Distribution::Default, &device);
        assert_eq!(model.forward(x).dims(), [1, 3, 64, 64]);
    }

    #[test]
    fn every_upsampler_builds_and_runs() {
        let device = Device::flex();
        for (upsampler, sf, out) in [
            (Upsampler::None, 1, 16),
            (Upsampler::PixelShuffle, 2, 32),
            (Upsampler::PixelShuffle, 3, 48),
            (Upsampler::PixelShuffleDirect, 4, 64),
            (Upsampler::NearestConv, 4, 64),
        ] {
            let config = SwinIrConfig::new()
                .with_img_size(16)
                .with_embed_dim(8)
                .with_depths(vec![2])
                .with_num_heads(vec![2])
                .with_window_size(8)
                .with_sf(sf)
                .with_upsampler(upsampler)
                .with_resi_connection(ResiConnection::ThreeConv)
                .with_ape(true);
            let model = config.init(&device);
            assert_eq!(model.scale(), out / 16);
            let x = Tensor::<4>::random([1, 3, 16, 16], Distribution::Default, &device);
            assert_eq!(
                model.forward(x).dims(),
                [1, 3, out, out],
                "{upsampler:?} x{sf}"
            );
        }
    }

    #[test]
    fn invalid_configs_are_errors() {
        assert!(
            SwinIrConfig::diffbir()
                .with_unshuffle_scale(Some(4))
                .validate()
                .is_err()
        );
        assert!(
            SwinIrConfig::diffbir()
                .with_num_heads(vec![7; 8])
                .validate()
                .is_err()
        );
        assert!(
            SwinIrConfig::diffbir()
                .with_depths(vec![6; 3])
                .validate()
                .is_err()
        );
    }
}
