//! AutoencoderKL, the Stable Diffusion 2.1 VAE.
//!
//! Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion Models" (CVPR 2022).
//! Port of `XPixelGroup/DiffBIR@3f8b530:diffbir/model/vae.py` and `distributions.py`. The
//! encoder maps an image in `[-1, 1]` to the moments of a diagonal Gaussian; the decoder maps a
//! latent back. DiffBIR's latent scale (0.18215) is applied only by [`Latent`].

use burn::config::Config;
use burn::module::Module;
use burn::nn::{GroupNorm, GroupNormConfig};
use burn::tensor::ops::{AttentionModuleOptions, PadMode};
use burn::tensor::{Device, Tensor};
use diffbir_core::kernels::Conv2d;
use diffbir_core::kernels::attention;
use diffbir_core::kernels::silu;
use diffbir_core::weights::ParamCount;
use diffbir_core::{Error, KeyMap, NoiseSource, Result};

use diffbir_core::resize::upsample_nearest2x;

use crate::nn::conv;

/// The encoder/decoder shape (`ddconfig` of the original).
#[derive(Config, Debug)]
pub struct DdConfig {
    /// The encoder outputs mean and log-variance (required by `AutoencoderKL`).
    #[config(default = true)]
    pub double_z: bool,
    /// Latent channels.
    #[config(default = 4)]
    pub z_channels: usize,
    /// Training resolution (decides where `attn_resolutions` apply).
    #[config(default = 256)]
    pub resolution: usize,
    /// Image channels in.
    #[config(default = 3)]
    pub in_channels: usize,
    /// Image channels out.
    #[config(default = 3)]
    pub out_ch: usize,
    /// Base width.
    #[config(default = 128)]
    pub ch: usize,
    /// Width multiplier per level.
    #[config(default = "vec![1, 2, 4, 4]")]
    pub ch_mult: Vec<usize>,
    /// Residual blocks per level (the decoder has one more).
    #[config(default = 2)]
    pub num_res_blocks: usize,
    /// Resolutions (relative to `resolution`) with attention after each residual block.
    #[config(default = "vec![]")]
    pub attn_resolutions: Vec<usize>,
    /// Dropout (inference ignores it).
    #[config(default = 0.0)]
    pub dropout: f64,
}

/// Configuration of [`AutoencoderKl`] (`vae_cfg` of DiffBIR's `cldm.yaml`).
#[derive(Config, Debug)]
pub struct VaeConfig {
    /// Channels of the latent after `quant_conv`.
    #[config(default = 4)]
    pub embed_dim: usize,
    /// Encoder/decoder shape.
    #[config(default = "DdConfig::new()")]
    pub ddconfig: DdConfig,
}

impl VaeConfig {
    /// The SD 2.1 VAE (83.65 M parameters).
    pub fn sd21() -> Self {
        Self::new()
    }

    /// A small configuration for tests.
    pub fn tiny() -> Self {
        Self::new().with_ddconfig(
            DdConfig::new()
                .with_ch(32)
                .with_ch_mult(vec![1, 1, 1, 1])
                .with_num_res_blocks(1),
        )
    }

    /// Checks the configuration; [`init`](Self::init) requires it to hold.
    pub fn validate(&self) -> Result<()> {
        let d = &self.ddconfig;
        let bad = |reason: String| {
            Err(Error::InvalidArgument {
                what: "VAE config".into(),
                reason,
            })
        };
        if !d.double_z {
            return bad("AutoencoderKL needs double_z = true".into());
        }
        if d.ch_mult.is_empty() || d.ch == 0 || d.num_res_blocks == 0 {
            return bad("ch, ch_mult and num_res_blocks must be non-empty/positive".into());
        }
        // Each level halves the image; 16 levels are more than any image has.
        if d.ch_mult.len() > Self::MAX_LEVELS {
            return bad(format!(
                "ch_mult has {} levels, more than {}",
                d.ch_mult.len(),
                Self::MAX_LEVELS
            ));
        }
        if [d.z_channels, d.in_channels, d.out_ch, self.embed_dim].contains(&0) {
            return bad("z_channels, in_channels, out_ch and embed_dim must be positive".into());
        }
        for &mult in &d.ch_mult {
            let c = mult
                .checked_mul(d.ch)
                .filter(|c| (1..=Self::MAX_WIDTH).contains(c))
                .ok_or_else(|| Error::InvalidArgument {
                    what: "VAE config".into(),
                    reason: format!(
                        "level width {} × {mult} must lie in 1..={} channels",
                        d.ch,
                        Self::MAX_WIDTH
                    ),
                })?;
            if c % 32 != 0 {
                return bad(format!(
                    "every level width must be a multiple of 32 (GroupNorm(32)); got {c}"
                ));
            }
        }
        self.param_count().check("VAE config")
    }

    /// At most this many levels (`ch_mult` entries).
    pub const MAX_LEVELS: usize = 16;
    /// At most this many channels in a level.
    pub const MAX_WIDTH: usize = 1 << 20;

    /// The parameters [`init`](Self::init) creates, saturating (levels loop:
    /// [`validate`](Self::validate) bounds their number before calling it).
    fn param_count(&self) -> ParamCount {
        let d = &self.ddconfig;
        let norm = |c: usize| ParamCount::of(&[2, c]);
        let conv = |cin: usize, cout: usize, k: usize| ParamCount::layer(&[cout, cin, k, k], true);
        let resnet = |cin: usize, cout: usize| {
            let skip = if cin == cout {
                ParamCount::default()
            } else {
                conv(cin, cout, 1)
            };
            norm(cin) + conv(cin, cout, 3) + norm(cout) + conv(cout, cout, 3) + skip
        };
        let attn = |c: usize| norm(c) + conv(c, c, 1).times(4);
        let mid = |c: usize| resnet(c, c).times(2) + attn(c);
        let levels = d.ch_mult.len();
        let width = |level: usize| d.ch_mult[level].saturating_mul(d.ch);
        let blocks = d.num_res_blocks;
        let z_out = if d.double_z {
            d.z_channels.saturating_mul(2)
        } else {
            d.z_channels
        };
        // Encoder.
        let mut count = conv(d.in_channels, d.ch, 3);
        let (mut block_in, mut res) = (d.ch, d.resolution);
        for level in 0..levels {
            let out = width(level);
            count += resnet(block_in, out) + resnet(out, out).times(blocks - 1);
            if d.attn_resolutions.contains(&res) {
                count += attn(out).times(blocks);
            }
            block_in = out;
            if level != levels - 1 {
                count += conv(block_in, block_in, 3);
                res /= 2;
            }
        }
        count += mid(block_in) + norm(block_in) + conv(block_in, z_out, 3);
        // Decoder.
        let mut block_in = width(levels - 1);
        let mut res = d.resolution >> (levels - 1);
        count += conv(d.z_channels, block_in, 3) + mid(block_in);
        for level in (0..levels).rev() {
            let out = width(level);
            count += resnet(block_in, out) + resnet(out, out).times(blocks);
            if d.attn_resolutions.contains(&res) {
                count += attn(out).times(blocks.saturating_add(1));
            }
            block_in = out;
            if level != 0 {
                count += conv(block_in, block_in, 3);
                res = res.saturating_mul(2);
            }
        }
        count
            + norm(block_in)
            + conv(block_in, d.out_ch, 3)
            + conv(z_out, self.embed_dim.saturating_mul(2), 1)
            + conv(self.embed_dim, d.z_channels, 1)
    }

    /// Builds the autoencoder with random weights.
    ///
    /// # Panics
    ///
    /// If [`validate`](Self::validate) fails.
    pub fn init(&self, device: &Device) -> AutoencoderKl {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let d = &self.ddconfig;
        AutoencoderKl {
            encoder: encoder(d, device),
            decoder: decoder(d, device),
            quant_conv: conv(2 * d.z_channels, 2 * self.embed_dim, 1, 1, 0, device),
            post_quant_conv: conv(self.embed_dim, d.z_channels, 1, 1, 0, device),
        }
    }
}

fn norm(channels: usize, device: &Device) -> GroupNorm {
    GroupNormConfig::new(32, channels)
        .with_epsilon(1e-6)
        .init(device)
}

fn resnet(cin: usize, cout: usize, device: &Device) -> ResnetBlock {
    ResnetBlock {
        norm1: norm(cin, device),
        conv1: conv(cin, cout, 3, 1, 1, device),
        norm2: norm(cout, device),
        conv2: conv(cout, cout, 3, 1, 1, device),
        nin_shortcut: (cin != cout).then(|| conv(cin, cout, 1, 1, 0, device)),
    }
}

fn attn(c: usize, device: &Device) -> AttnBlock {
    AttnBlock {
        norm: norm(c, device),
        q: conv(c, c, 1, 1, 0, device),
        k: conv(c, c, 1, 1, 0, device),
        v: conv(c, c, 1, 1, 0, device),
        proj_out: conv(c, c, 1, 1, 0, device),
    }
}

fn mid(c: usize, device: &Device) -> Mid {
    Mid {
        block_1: resnet(c, c, device),
        attn_1: attn(c, device),
        block_2: resnet(c, c, device),
    }
}

fn encoder(d: &DdConfig, device: &Device) -> Encoder {
    let levels = d.ch_mult.len();
    let mut res = d.resolution;
    let mut block_in = d.ch;
    let mut down = Vec::with_capacity(levels);
    for (level, mult) in d.ch_mult.iter().enumerate() {
        let block_out = d.ch * mult;
        let mut block = Vec::new();
        let mut attns = Vec::new();
        for _ in 0..d.num_res_blocks {
            block.push(resnet(block_in, block_out, device));
            block_in = block_out;
            if d.attn_resolutions.contains(&res) {
                attns.push(attn(block_in, device));
            }
        }
        let downsample = (level != levels - 1).then(|| {
            res /= 2;
            Downsample {
                conv: conv(block_in, block_in, 3, 2, 0, device),
            }
        });
        down.push(DownLevel {
            block,
            attn: attns,
            downsample,
        });
    }
    let z_out = if d.double_z {
        2 * d.z_channels
    } else {
        d.z_channels
    };
    Encoder {
        conv_in: conv(d.in_channels, d.ch, 3, 1, 1, device),
        down,
        mid: mid(block_in, device),
        norm_out: norm(block_in, device),
        conv_out: conv(block_in, z_out, 3, 1, 1, device),
    }
}

fn decoder(d: &DdConfig, device: &Device) -> Decoder {
    let levels = d.ch_mult.len();
    let mut block_in = d.ch * d.ch_mult[levels - 1];
    let mut res = d.resolution >> (levels - 1);
    let conv_in = conv(d.z_channels, block_in, 3, 1, 1, device);
    let mid = mid(block_in, device);
    let mut up: Vec<UpLevel> = Vec::with_capacity(levels);
    for level in (0..levels).rev() {
        let block_out = d.ch * d.ch_mult[level];
        let mut block = Vec::new();
        let mut attns = Vec::new();
        for _ in 0..=d.num_res_blocks {
            block.push(resnet(block_in, block_out, device));
            block_in = block_out;
            if d.attn_resolutions.contains(&res) {
                attns.push(attn(block_in, device));
            }
        }
        let upsample = (level != 0).then(|| {
            res *= 2;
            Upsample {
                conv: conv(block_in, block_in, 3, 1, 1, device),
            }
        });
        up.insert(
            0,
            UpLevel {
                block,
                attn: attns,
                upsample,
            },
        );
    }
    Decoder {
        conv_in,
        mid,
        up,
        norm_out: norm(block_in, device),
        conv_out: conv(block_in, d.out_ch, 3, 1, 1, device),
    }
}

/// Residual block without time embedding.
#[derive(Module, Debug)]
pub struct ResnetBlock {
    /// GroupNorm(32, eps 1e-6).
    pub norm1: GroupNorm,
    /// 3×3.
    pub conv1: Conv2d,
    /// GroupNorm(32, eps 1e-6).
    pub norm2: GroupNorm,
    /// 3×3.
    pub conv2: Conv2d,
    /// 1×1 projection when the width changes.
    pub nin_shortcut: Option<Conv2d>,
}

impl ResnetBlock {
    /// # Shapes
    /// - `x`: `[B, Cin, H, W]`; returns `[B, Cout, H, W]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = self.conv1.forward(silu(self.norm1.forward(x.clone())));
        let h = self.conv2.forward(silu(self.norm2.forward(h)));
        let skip = match &self.nin_shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        skip + h
    }
}

/// Single-head self-attention over all pixels (scale `C^-1/2`), with a residual.
#[derive(Module, Debug)]
pub struct AttnBlock {
    /// GroupNorm(32, eps 1e-6).
    pub norm: GroupNorm,
    /// Query 1×1 conv.
    pub q: Conv2d,
    /// Key 1×1 conv.
    pub k: Conv2d,
    /// Value 1×1 conv.
    pub v: Conv2d,
    /// Output 1×1 conv.
    pub proj_out: Conv2d,
}

impl AttnBlock {
    /// # Shapes
    /// - `x`: `[B, C, H, W]`; returns `[B, C, H, W]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let normed = self.norm.forward(x.clone());
        x + self.attend(normed)
    }

    /// The attention after the norm, without the residual.
    ///
    /// # Shapes
    /// - `hn`: `[B, C, H, W]` (normalised); returns `[B, C, H, W]`
    pub fn attend(&self, hn: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = hn.dims();
        // The 1×1 convs are applied to the pixels as tokens, `[B, H·W, C]`: a matmul writes q, k
        // and v with the channels innermost. burn 0.22's `attention` on wgpu returns wrong values
        // for inputs whose last dimension is strided, as `conv(x).reshape(..).swap_dims(2, 3)`
        // would be (docs/gpu.md, "Known backend faults").
        let pixels = hn.reshape([b, c, h * w]).swap_dims(1, 2);
        let tokens = |conv: &Conv2d| pointwise(conv, pixels.clone()).reshape([b, 1, h * w, c]);
        let (q, k, v) = (tokens(&self.q), tokens(&self.k), tokens(&self.v));
        let out = attention(q, k, v, None, None, AttentionModuleOptions::default());
        let out = pointwise(&self.proj_out, out.reshape([b, h * w, c]));
        out.swap_dims(1, 2).reshape([b, c, h, w])
    }
}

/// A 1×1 convolution applied to tokens: `x · Wᵀ + b`.
///
/// # Shapes
/// - `x`: `[B, N, C_in]`; returns `[B, N, C_out]`
fn pointwise(conv: &Conv2d, x: Tensor<3>) -> Tensor<3> {
    let [c_out, c_in, _, _] = conv.weight.dims();
    let weight = conv.weight.val().reshape([1, c_out, c_in]).swap_dims(1, 2);
    let y = x.matmul(weight);
    match &conv.bias {
        Some(bias) => y + bias.val().reshape([1, 1, c_out]),
        None => y,
    }
}

/// Zero-pad right/bottom by one, then a stride-2 3×3 conv without padding.
#[derive(Module, Debug)]
pub struct Downsample {
    /// The conv.
    pub conv: Conv2d,
}

/// Nearest ×2, then a 3×3 conv.
#[derive(Module, Debug)]
pub struct Upsample {
    /// The conv.
    pub conv: Conv2d,
}

/// One encoder level.
#[derive(Module, Debug)]
pub struct DownLevel {
    /// Residual blocks.
    pub block: Vec<ResnetBlock>,
    /// Attention after each block (levels in `attn_resolutions` only).
    pub attn: Vec<AttnBlock>,
    /// Downsampling (all levels but the last).
    pub downsample: Option<Downsample>,
}

/// One decoder level (indexed by resolution: `up.0` is the highest).
#[derive(Module, Debug)]
pub struct UpLevel {
    /// Residual blocks.
    pub block: Vec<ResnetBlock>,
    /// Attention after each block (levels in `attn_resolutions` only).
    pub attn: Vec<AttnBlock>,
    /// Upsampling (all levels but level 0).
    pub upsample: Option<Upsample>,
}

/// Middle of the encoder/decoder: residual, attention, residual.
#[derive(Module, Debug)]
pub struct Mid {
    /// First residual block.
    pub block_1: ResnetBlock,
    /// Attention.
    pub attn_1: AttnBlock,
    /// Second residual block.
    pub block_2: ResnetBlock,
}

impl Mid {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.block_2
            .forward(self.attn_1.forward(self.block_1.forward(x)))
    }
}

/// The VAE encoder.
#[derive(Module, Debug)]
pub struct Encoder {
    /// Input conv.
    pub conv_in: Conv2d,
    /// Levels from the highest resolution down.
    pub down: Vec<DownLevel>,
    /// Middle blocks.
    pub mid: Mid,
    /// Output norm.
    pub norm_out: GroupNorm,
    /// Output conv (to the Gaussian moments).
    pub conv_out: Conv2d,
}

impl Encoder {
    /// # Shapes
    /// - `x`: `[B, 3, H, W]` in `[-1, 1]`; returns `[B, 2·z, H/2^(L-1), W/2^(L-1)]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut h = self.conv_in.forward(x);
        for level in &self.down {
            for (i, block) in level.block.iter().enumerate() {
                h = block.forward(h);
                if let Some(a) = level.attn.get(i) {
                    h = a.forward(h);
                }
            }
            if let Some(down) = &level.downsample {
                h = down
                    .conv
                    .forward(h.pad((0, 1, 0, 1), PadMode::Constant(0.0)));
            }
        }
        let h = self.mid.forward(h);
        self.conv_out.forward(silu(self.norm_out.forward(h)))
    }
}

/// The VAE decoder.
#[derive(Module, Debug)]
pub struct Decoder {
    /// Input conv.
    pub conv_in: Conv2d,
    /// Middle blocks.
    pub mid: Mid,
    /// Levels by resolution (`up.0` highest), run from the last to the first.
    pub up: Vec<UpLevel>,
    /// Output norm.
    pub norm_out: GroupNorm,
    /// Output conv.
    pub conv_out: Conv2d,
}

impl Decoder {
    /// # Shapes
    /// - `z`: `[B, z, h, w]`; returns `[B, 3, h·2^(L-1), w·2^(L-1)]`, nominally in `[-1, 1]`
    pub fn forward(&self, z: Tensor<4>) -> Tensor<4> {
        let mut h = self.mid.forward(self.conv_in.forward(z));
        for level in self.up.iter().rev() {
            for (i, block) in level.block.iter().enumerate() {
                h = block.forward(h);
                if let Some(a) = level.attn.get(i) {
                    h = a.forward(h);
                }
            }
            if let Some(up) = &level.upsample {
                h = up.conv.forward(upsample_nearest2x(h));
            }
        }
        self.conv_out.forward(silu(self.norm_out.forward(h)))
    }
}

/// The posterior of the encoder: a diagonal Gaussian per latent pixel.
#[derive(Debug, Clone)]
pub struct DiagonalGaussian {
    /// Mean (= the mode).
    pub mean: Tensor<4>,
    /// Log-variance clamped to `[-30, 20]`.
    pub logvar: Tensor<4>,
    /// `exp(logvar / 2)`.
    pub std: Tensor<4>,
}

impl DiagonalGaussian {
    /// Splits `moments` (mean channels first) as the original does.
    ///
    /// # Shapes
    /// - `moments`: `[B, 2·C, h, w]`
    pub fn from_moments(moments: Tensor<4>) -> Self {
        let [b, c2, h, w] = moments.dims();
        let c = c2 / 2;
        let mean = moments.clone().slice([0..b, 0..c, 0..h, 0..w]);
        let logvar = moments.slice([0..b, c..c2, 0..h, 0..w]).clamp(-30.0, 20.0);
        let std = logvar.clone().mul_scalar(0.5).exp();
        Self { mean, logvar, std }
    }

    /// The mode (the mean).
    pub fn mode(&self) -> Tensor<4> {
        self.mean.clone()
    }

    /// `mean + std · ε`, with `ε` drawn from `noise`.
    pub fn sample(&self, noise: &mut NoiseSource) -> Tensor<4> {
        let eps = noise.randn_like(&self.mean);
        self.mean.clone() + self.std.clone() * eps
    }
}

/// DiffBIR's latent scale factor (SD's `scale_factor`).
pub const LATENT_SCALE: f64 = 0.18215;

/// A scaled latent: what the diffusion model sees. Only [`AutoencoderKl::encode_latent`]
/// makes one and only [`AutoencoderKl::decode_latent`] undoes the scale.
#[derive(Debug, Clone)]
pub struct Latent(pub Tensor<4>);

/// The SD autoencoder. Field names mirror the checkpoint keys.
#[derive(Module, Debug)]
pub struct AutoencoderKl {
    /// Image → moments.
    pub encoder: Encoder,
    /// Latent → image.
    pub decoder: Decoder,
    /// 1×1 conv on the moments.
    pub quant_conv: Conv2d,
    /// 1×1 conv before the decoder.
    pub post_quant_conv: Conv2d,
}

impl AutoencoderKl {
    /// The posterior of an image.
    ///
    /// # Shapes
    /// - `x`: `[B, 3, H, W]` in `[-1, 1]`, `H` and `W` multiples of the downsampling factor
    pub fn encode(&self, x: Tensor<4>) -> DiagonalGaussian {
        DiagonalGaussian::from_moments(self.quant_conv.forward(self.encoder.forward(x)))
    }

    /// Decodes an (unscaled) latent.
    ///
    /// # Shapes
    /// - `z`: `[B, embed_dim, h, w]`; returns `[B, 3, H, W]`, nominally in `[-1, 1]`
    pub fn decode(&self, z: Tensor<4>) -> Tensor<4> {
        self.decoder.forward(self.post_quant_conv.forward(z))
    }

    /// `encode(x).mode() · 0.18215` (or a sample, when `noise` is given), as DiffBIR encodes
    /// the condition; in tiles when `tiles` says so (see [`VaeTiles`]).
    ///
    /// Fails only for blended tiles of a bad size.
    pub fn encode_latent(
        &self,
        x: Tensor<4>,
        tiles: Option<VaeTiles>,
        noise: Option<&mut NoiseSource>,
    ) -> Result<Latent> {
        let posterior = match tiles {
            Some(VaeTiles::Synced(tile)) => self.encode_tiled(x, tile, None),
            Some(VaeTiles::Blended { tile, stride }) => self.encode_blended(x, tile, stride)?,
            None => self.encode(x),
        };
        let z = match noise {
            Some(noise) => posterior.sample(noise),
            None => posterior.mode(),
        };
        Ok(Latent(z.mul_scalar(LATENT_SCALE)))
    }

    /// `decode(z / 0.18215)`; in tiles when `tiles` says so (see [`VaeTiles`]).
    ///
    /// Fails only for blended tiles of a bad size.
    pub fn decode_latent(&self, latent: &Latent, tiles: Option<VaeTiles>) -> Result<Tensor<4>> {
        let z = latent.0.clone().div_scalar(LATENT_SCALE);
        Ok(match tiles {
            Some(VaeTiles::Synced(tile)) => self.decode_tiled(z, tile, None),
            Some(VaeTiles::Blended { tile, stride }) => self.decode_blended(z, tile, stride)?,
            None => self.decode(z),
        })
    }
}

/// How [`AutoencoderKl::encode_latent`] and [`AutoencoderKl::decode_latent`] split the work,
/// in the network's input units (pixels when encoding, latent pixels when decoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaeTiles {
    /// The reference's Tiled VAE with tiles of this side, GroupNorm statistics merged across
    /// tiles ([`AutoencoderKl::encode_tiled`], [`AutoencoderKl::decode_tiled`]).
    Synced(usize),
    /// v2's independent tiles blended with Gaussian weights, in bounded memory
    /// ([`AutoencoderKl::encode_blended`], [`AutoencoderKl::decode_blended`]).
    Blended {
        /// Tile side.
        tile: usize,
        /// Distance between tile starts.
        stride: usize,
    },
}

/// The VAE inside an SD 2.x checkpoint (`first_stage_model.*`). Its keys mirror the module.
pub const SD_VAE_KEYS: KeyMap = KeyMap {
    name: "sd21-vae",
    prefix: "first_stage_model.",
    rules: &[],
    droppable: &[],
};

/// A bare VAE state dict (DiffBIR's `ControlLDM.vae`).
pub const VAE_KEYS: KeyMap = KeyMap {
    name: "vae",
    prefix: "",
    rules: &[],
    droppable: &[],
};

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn official_size_has_the_reference_parameter_count() {
        assert_eq!(
            VaeConfig::sd21().init(&Device::flex()).num_params(),
            83_653_863
        );
    }

    #[test]
    fn validate_counts_the_parameters_init_creates() {
        assert_eq!(VaeConfig::sd21().param_count().0, 83_653_863);
        let device = Device::flex();
        let attn = VaeConfig::tiny().with_ddconfig(
            DdConfig::new()
                .with_ch(32)
                .with_ch_mult(vec![1, 2])
                .with_num_res_blocks(2)
                .with_resolution(64)
                .with_attn_resolutions(vec![64, 32]),
        );
        for config in [VaeConfig::tiny(), attn] {
            let built = config.init(&device).num_params() as u128;
            assert_eq!(config.param_count().0, built, "{config:?}");
        }
        for config in [
            VaeConfig::tiny().with_ddconfig(DdConfig::new().with_ch_mult(vec![1, 1 << 40])),
            VaeConfig::tiny().with_ddconfig(DdConfig::new().with_ch_mult(vec![1; 100])),
            VaeConfig::tiny().with_ddconfig(DdConfig::new().with_ch_mult(vec![1, 0])),
            VaeConfig::tiny().with_ddconfig(DdConfig::new().with_num_res_blocks(usize::MAX)),
            VaeConfig::tiny().with_embed_dim(usize::MAX),
        ] {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }

    #[test]
    fn tiny_vae_round_trips_shapes() {
        let device = Device::flex();
        let vae = VaeConfig::tiny().init(&device);
        let x = Tensor::<4>::random([1, 3, 32, 48], Distribution::Uniform(-1.0, 1.0), &device);
        let latent = vae.encode_latent(x, None, None).unwrap();
        assert_eq!(latent.0.dims(), [1, 4, 4, 6]);
        assert_eq!(
            vae.decode_latent(&latent, None).unwrap().dims(),
            [1, 3, 32, 48]
        );
    }

    #[test]
    fn attention_levels_are_built_where_configured() {
        let device = Device::flex();
        let cfg = VaeConfig::tiny().with_ddconfig(
            DdConfig::new()
                .with_ch(32)
                .with_ch_mult(vec![1, 1])
                .with_num_res_blocks(1)
                .with_resolution(16)
                .with_attn_resolutions(vec![8]),
        );
        let vae = cfg.init(&device);
        assert_eq!(vae.encoder.down[1].attn.len(), 1);
        assert_eq!(vae.decoder.up[1].attn.len(), 2);
        let x = Tensor::<4>::random([1, 3, 16, 16], Distribution::Default, &device);
        assert_eq!(vae.decode(vae.encode(x).mode()).dims(), [1, 3, 16, 16]);
    }
}
