//! The memory model of [`super`]: how many bytes each network holds (its parameters) and needs
//! while it runs (its activations), from its configuration alone.
//!
//! A network's working memory is `coefficient × volume × bytes + fixed`. The volume counts the
//! feature-map elements the architecture keeps alive at once, level by level: the skip
//! connections a UNet holds for its way up, the widest working tensors of one block (a
//! transformer's GEGLU, a dense block's concatenation), window-attention scores, the input and
//! output images. The coefficient (live copies per counted element, for the temporaries the
//! count leaves out) and the fixed part (the CPU kernels' packing buffers) were set from the
//! peaks a counting allocator measures over sizes, precisions and network shapes
//! (`diffbir/tests/plan_memory.rs`), so that the estimate stays above every measurement.
//!
//! Attention over whole feature maps (the UNet's transformers, the VAE's middle block) runs
//! in blocks of queries on the CPU, so its scores grow with the map, not its square; other
//! backends may hold every score at once, and [`Attention::Whole`] counts them.

use diffbir_controlnet::ControlNetConfig;
use diffbir_face::{Backbone, ParseNetConfig, RetinaFaceConfig};
use diffbir_ldm::clip::ClipTextConfig;
use diffbir_ldm::unet::PerLevel;
use diffbir_ldm::{UnetConfig, VaeConfig};
use diffbir_rm::{RrdbNetConfig, ScuNetConfig, Stage1Config, SwinIrConfig};

/// How a backend computes attention over whole feature maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attention {
    /// In blocks of queries: the scores of one block at a time (the CPU kernels).
    Blocked,
    /// Every score of a head at once (`[batch, heads, queries, keys]`).
    Whole,
}

/// A fitted network family: bytes = `per_element × volume × element bytes + fixed`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fit {
    per_element: f64,
    fixed: u64,
}

impl Fit {
    const fn new(per_element: f64) -> Self {
        Self {
            per_element,
            fixed: OVERHEAD,
        }
    }

    pub(crate) fn bytes(self, volume: f64, element: usize) -> u64 {
        (self.per_element * volume * element as f64).ceil() as u64 + self.fixed
    }
}

// Coefficients checked by `plan_memory.rs`: 1 where the counted volume already lies above
// every measured peak, more where it did not (the VAE decoder at the official shapes).
pub(crate) const SWINIR: Fit = Fit::new(1.0);
pub(crate) const RRDBNET: Fit = Fit::new(1.0);
pub(crate) const SCUNET: Fit = Fit::new(1.0);
pub(crate) const VAE_ENCODER: Fit = Fit::new(1.0);
pub(crate) const VAE_DECODER: Fit = Fit::new(1.3);
pub(crate) const CONTROL_LDM: Fit = Fit::new(1.0);
pub(crate) const CLIP: Fit = Fit::new(1.0);
pub(crate) const IMAGE: Fit = Fit::new(1.0);
pub(crate) const DETECTOR: Fit = Fit::new(1.0);
pub(crate) const PARSER: Fit = Fit::new(1.0);

/// Bytes per canvas pixel of pasting the faces back (`diffbir_face::paste`): the canvas and
/// the background (8-bit), the f64 and f32 accumulators, the warped face, its square masks
/// (f32) and its parsing mask (f64), and the result.
pub(crate) const PASTE_BYTES_PER_PIXEL: f64 = 80.0;

/// What every stage allocates whatever the sizes: the CPU kernels' packing buffers, the
/// thread pool's state, small tensors.
const OVERHEAD: u64 = 12 << 20;

/// `ceil(a / b)`.
fn div_up(a: usize, b: usize) -> usize {
    a.div_ceil(b.max(1))
}

/// Elements of a `channels × h × w` map.
fn map(channels: usize, h: usize, w: usize) -> f64 {
    channels as f64 * h as f64 * w as f64
}

/// The working volume of a stage-1 network on an `h × w` input (one image).
pub(crate) fn stage1_volume(config: &Stage1Config, h: usize, w: usize) -> f64 {
    match config {
        Stage1Config::SwinIr(c) => swinir_volume(c, h, w),
        Stage1Config::RrdbNet(c) => rrdbnet_volume(c, h, w),
        Stage1Config::ScuNet(c) => scunet_volume(c, h, w),
    }
}

/// The fitted family of a stage-1 network.
pub(crate) fn stage1_fit(config: &Stage1Config) -> Fit {
    match config {
        Stage1Config::SwinIr(_) => SWINIR,
        Stage1Config::RrdbNet(_) => RRDBNET,
        Stage1Config::ScuNet(_) => SCUNET,
    }
}

/// The size of an image after a stage-1 network (`(h, w)` in, `(h, w)` out).
pub(crate) fn stage1_output(config: &Stage1Config, h: usize, w: usize) -> (usize, usize) {
    let scale = match config {
        Stage1Config::SwinIr(c) => c.sf / if c.unshuffle { c.sf } else { 1 },
        Stage1Config::RrdbNet(c) => c.sf,
        Stage1Config::ScuNet(_) => 1,
    };
    (h * scale, w * scale)
}

/// SwinIR: the transformer body (at `1/sf` of the input when it unshuffles), its window
/// scores, and the upsampling convolutions back to the output size.
fn swinir_volume(c: &SwinIrConfig, h: usize, w: usize) -> f64 {
    const NUM_FEAT: usize = 64;
    let down = if c.unshuffle { c.sf } else { 1 };
    let ws = c.window_size.max(1);
    let (bh, bw) = (
        div_up(div_up(h, down), ws) * ws,
        div_up(div_up(w, down), ws) * ws,
    );
    let heads = c.num_heads.iter().copied().max().unwrap_or(1);
    let hidden = (c.embed_dim as f64 * c.mlp_ratio) as usize;
    let body = map(3 * c.embed_dim + hidden + heads * ws * ws, bh, bw);
    let steps = c.sf.max(1).ilog2();
    let ups: f64 = (1..=steps)
        .map(|i| map(2 * NUM_FEAT, bh << i, bw << i))
        .sum();
    let scale = c.sf / down;
    body + ups + map(3 * down * down, bh, bw) + map(6, h * scale, w * scale)
}

/// RRDBNet: a dense block's concatenation at the input size, the upsampling convolutions.
fn rrdbnet_volume(c: &RrdbNetConfig, h: usize, w: usize) -> f64 {
    let steps = c.sf.max(1).ilog2();
    let ups: f64 = (1..=steps).map(|i| map(2 * c.nf, h << i, w << i)).sum();
    map(2 * (c.nf + 4 * c.gc) + 3, h, w) + ups + map(6, h * c.sf, w * c.sf)
}

/// SCUNet: four levels of conv-transformer blocks (channels doubling, sides halving), each
/// holding its skip, its working maps and the window scores of its transformer half.
fn scunet_volume(c: &ScuNetConfig, h: usize, w: usize) -> f64 {
    let ws = c.window_size.max(1);
    let (h, w) = (div_up(h, 64) * 64, div_up(w, 64) * 64);
    let levels: f64 = (0..4)
        .map(|l| {
            let ch = c.dim << l;
            let heads = (ch / 2).div_ceil(c.head_dim.max(1));
            map(4 * ch + heads * ws * ws, h >> l, w >> l)
        })
        .sum();
    levels + map(6, h, w)
}

/// The VAE encoder on an `h × w` image, or the decoder to one: every level's widest map
/// twice (input and output of a residual block), the image.
pub(crate) fn vae_volume(c: &VaeConfig, h: usize, w: usize, attention: Attention) -> f64 {
    let d = &c.ddconfig;
    let levels = d.ch_mult.len();
    let maps: f64 = (0..levels)
        .map(|l| {
            let ch = d.ch * d.ch_mult[l] * if l > 0 { 2 } else { 1 };
            map(
                2 * ch.max(d.ch * d.ch_mult[l.saturating_sub(1)]),
                h >> l,
                w >> l,
            )
        })
        .sum();
    let bottom = (h >> (levels - 1), w >> (levels - 1));
    let scores = match attention {
        Attention::Blocked => 0.0,
        Attention::Whole => {
            let tokens = bottom.0 as f64 * bottom.1 as f64;
            tokens * tokens
        }
    };
    maps + scores + map(6, h, w)
}

/// The widths and repeats of a UNet-shaped network's levels.
struct Levels<'a> {
    model_channels: usize,
    channel_mult: &'a [usize],
    res_blocks: Vec<usize>,
    attention: Vec<bool>,
    head_channels: i64,
    heads: i64,
}

impl Levels<'_> {
    /// The skips a UNet holds for its way up (the IRControlNet's residuals are the same
    /// maps): the input convolution, every block, every downsampling.
    fn skips(&self, h: usize, w: usize) -> f64 {
        let mut volume = map(self.model_channels, h, w);
        for (l, mult) in self.channel_mult.iter().enumerate() {
            let ch = self.model_channels * mult;
            volume += map(ch, h >> l, w >> l) * (self.res_blocks[l] + 1) as f64;
        }
        volume
    }

    /// The largest working set of one block: a transformer's projections and GEGLU (8
    /// channels per channel) and its attention scores, or a residual block's maps.
    fn working(&self, h: usize, w: usize, attention: Attention) -> f64 {
        (0..self.channel_mult.len())
            .map(|l| {
                let ch = self.model_channels * self.channel_mult[l];
                let (lh, lw) = (h >> l, w >> l);
                if !self.attention[l] {
                    return map(6 * ch, lh, lw);
                }
                let heads = if self.head_channels > 0 {
                    ch / self.head_channels as usize
                } else {
                    self.heads.max(1) as usize
                };
                let tokens = lh as f64 * lw as f64;
                let scores = match attention {
                    Attention::Blocked => 0.0,
                    Attention::Whole => heads as f64 * tokens * tokens,
                };
                map(14 * ch, lh, lw) + scores
            })
            .fold(0.0, f64::max)
    }
}

impl<'a> Levels<'a> {
    fn new(
        model_channels: usize,
        channel_mult: &'a [usize],
        res_blocks: &PerLevel,
        attention_resolutions: &[usize],
        head_channels: i64,
        heads: i64,
    ) -> Self {
        let n = channel_mult.len();
        Self {
            model_channels,
            channel_mult,
            res_blocks: (0..n).map(|l| res_blocks.get(l)).collect(),
            attention: (0..n)
                .map(|l| attention_resolutions.contains(&(1 << l)))
                .collect(),
            head_channels,
            heads,
        }
    }
}

/// One call of the IRControlNet and the UNet on an `h × w` latent (one sample): both
/// networks' skips, the larger working set, the sampler's few latents.
pub(crate) fn control_ldm_volume(
    unet: &UnetConfig,
    controlnet: &ControlNetConfig,
    h: usize,
    w: usize,
    attention: Attention,
) -> f64 {
    let u = Levels::new(
        unet.model_channels,
        &unet.channel_mult,
        &unet.num_res_blocks,
        &unet.attention_resolutions,
        unet.num_head_channels,
        unet.num_heads,
    );
    let c = Levels::new(
        controlnet.model_channels,
        &controlnet.channel_mult,
        &controlnet.num_res_blocks,
        &controlnet.attention_resolutions,
        controlnet.num_head_channels,
        controlnet.num_heads,
    );
    u.skips(h, w)
        + c.skips(h, w)
        + u.working(h, w, attention).max(c.working(h, w, attention))
        + map(8 * unet.in_channels, h, w)
}

/// The text encoder on one prompt.
pub(crate) fn clip_volume(c: &ClipTextConfig) -> f64 {
    let hidden = (c.width as f64 * c.mlp_ratio) as usize;
    let tokens = c.context_length;
    map(4 * c.width + hidden, tokens, 1) + (c.heads * tokens * tokens) as f64
}

/// Images at the working size: the condition and its copies, the colour fix's planes.
pub(crate) fn image_volume(h: usize, w: usize) -> f64 {
    map(3, h, w)
}

/// The face detector (RetinaFace) on an `h × w` image, its input included: the widest of its
/// backbone's layers (a bottleneck holds its input, two maps of its 3 × 3 width and three of
/// its output width; MobileNet's widest layers are its first, at stride 2), or the FPN and
/// SSH maps at strides 8, 16 and 32.
pub(crate) fn detector_volume(c: &RetinaFaceConfig, h: usize, w: usize) -> f64 {
    let at = |channels: usize, stride: usize| map(channels, div_up(h, stride), div_up(w, stride));
    let body = match c.network_name {
        Backbone::ResNet50 => {
            let layout = c.backbone.clone().unwrap_or_default();
            let mut inplanes = 64;
            let mut widest = 3.0 * at(64, 2);
            for (i, planes) in [64, 128, 256, 512].into_iter().enumerate() {
                let stride = 4 << i;
                let width = planes * layout.width_per_group / 64;
                let out = planes * layout.expansion;
                let input = at(inplanes, if i == 0 { 4 } else { stride / 2 });
                widest = widest.max(input + 2.0 * at(width, stride) + 3.0 * at(out, stride));
                inplanes = out;
            }
            widest
        }
        Backbone::MobileNet025 => 3.0 * at(8, 2) + 4.0 * at(16, 2),
    };
    let neck = 4.0 * (at(c.out_channel, 8) + at(c.out_channel, 16) + at(c.out_channel, 32));
    map(3, h, w) + body.max(neck)
}

/// ParseNet on one face: its full-size layers (the stem, the last decoder block) with their
/// padding, norm and activation copies, and the two heads.
pub(crate) fn parser_volume(c: &ParseNetConfig) -> f64 {
    let side = c.in_size.max(c.out_size);
    let base = c
        .base_ch
        .clamp(c.ch_range[0], c.ch_range[1].max(c.ch_range[0]));
    map(8 * base + 6 + c.parsing_ch, side, side)
}
