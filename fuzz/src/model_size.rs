//! The size oracle of network configurations: a configuration that passed validation must
//! describe networks `init` can build in bounded memory. Each network gets a lower bound of
//! its parameter count (a few of the tensors `init` certainly creates, computed without
//! overflow); a bound above [`MAX_PARAMS`] means the validation let a network through that
//! would allocate more than 16 GiB of f32 weights. Small configurations are built for real.

use burn::module::Module;
use diffbir::controlnet::ControlNetConfig;
use diffbir::pipeline::ModelConfigs;
use diffbir::rm::Stage1Config;
use diffbir::rm::swinir::Upsampler;
use diffbir::sampler::NoiseScheduleConfig;
use diffbir_ldm::unet::PerLevel;
use diffbir_ldm::{ClipTextConfig, UnetConfig, VaeConfig};

/// The most parameters one network may have (16 GiB as f32).
pub const MAX_PARAMS: u128 = 1 << 32;

/// The most training timesteps a schedule may have (its tables are a few f64 per step).
pub const MAX_TIMESTEPS: usize = 1 << 20;

/// Configurations whose networks together have at most this many parameters (lower bound)
/// are built by [`build_if_small`].
const SMALL: u128 = 2_000_000;

fn n(x: usize) -> u128 {
    x as u128
}

fn sum(values: impl IntoIterator<Item = u128>) -> u128 {
    values.into_iter().fold(0, u128::saturating_add)
}

fn prod(values: impl IntoIterator<Item = u128>) -> u128 {
    values.into_iter().fold(1, u128::saturating_mul)
}

fn report(what: &str, bound: u128, config: &impl std::fmt::Debug) {
    assert!(
        bound <= MAX_PARAMS,
        "validation accepted a {what} with at least {bound} parameters (more than {MAX_PARAMS}): {config:?}"
    );
}

/// A lower bound of the parameters of a stage-1 network.
pub fn stage1_params(config: &Stage1Config) -> u128 {
    match config {
        Stage1Config::SwinIr(c) => {
            let dim = n(c.embed_dim);
            let hidden = n((c.embed_dim as f64 * c.mlp_ratio) as usize);
            let resolution = n(c.img_size / c.patch_size.max(1));
            let window = resolution.min(n(c.window_size));
            let table = prod([2 * window.max(1) - 1, 2 * window.max(1) - 1]);
            let blocks = sum(c.depths.iter().zip(&c.num_heads).map(|(&d, &h)| {
                prod([
                    n(d),
                    sum([
                        prod([4, dim, dim]),
                        prod([2, dim, hidden]),
                        prod([table, n(h)]),
                    ]),
                ])
            }));
            let num_in = if c.unshuffle {
                prod([n(c.in_chans), n(c.sf), n(c.sf)])
            } else {
                n(c.in_chans)
            };
            let ape = if c.ape {
                prod([resolution, resolution, dim])
            } else {
                0
            };
            let head = match c.upsampler {
                Upsampler::PixelShuffleDirect => prod([9, dim, n(c.sf), n(c.sf), n(c.in_chans)]),
                _ => 0,
            };
            sum([blocks, prod([9, num_in, dim]), ape, head])
        }
        Stage1Config::RrdbNet(c) => {
            let (nf, gc) = (n(c.nf), n(c.gc));
            // A dense block's five convolutions take nf, nf + gc, …, nf + 4 gc channels and
            // give gc, gc, gc, gc, nf: 8 nf gc + 6 gc² + nf² weights per tap.
            let dense = sum([prod([8, nf, gc]), prod([6, gc, gc]), prod([nf, nf])]);
            sum([
                prod([n(c.nb), 3, 9, dense]),
                prod([9, n(c.in_nc), nf]),
                prod([9, nf, n(c.out_nc)]),
                prod([27, nf, nf]),
            ])
        }
        Stage1Config::ScuNet(c) => {
            let d = n(c.dim);
            let window = prod([
                2 * n(c.window_size).max(1) - 1,
                2 * n(c.window_size).max(1) - 1,
            ]);
            let halves = [d / 2, d, 2 * d, 4 * d, 2 * d, d, d / 2];
            let blocks = sum(c.config.iter().zip(halves).map(|(&k, h)| {
                let heads = h / n(c.head_dim.max(1));
                prod([n(k), sum([prod([30, h, h]), prod([heads, window])])])
            }));
            sum([blocks, prod([18, n(c.in_nc), d]), prod([8, d, 2 * d])])
        }
    }
}

/// A lower bound of the parameters of an LDM UNet (or, with `hint_channels`, of the
/// IRControlNet copying its encoder).
pub fn unet_params(c: &UnetConfig, hint_channels: usize) -> u128 {
    let mc = n(c.model_channels);
    let widths: Vec<u128> = c.channel_mult.iter().map(|m| prod([mc, n(*m)])).collect();
    let last = widths.last().copied().unwrap_or(mc);
    let blocks = |level: usize| match &c.num_res_blocks {
        PerLevel::All(k) => n(*k),
        PerLevel::Each(v) => v.get(level).map_or(0, |k| n(*k)),
    };
    let ctx = n(c.context_dim.unwrap_or(0));
    let depth = n(c.transformer_depth);
    sum([
        // The first conv, the time embedding and the middle block's two residual blocks and
        // transformer.
        prod([
            9,
            sum([n(c.in_channels), n(hint_channels)]),
            mc,
        ]),
        prod([20, mc, mc]),
        prod([36, last, last]),
        prod([depth, sum([prod([12, last, last]), prod([2, ctx, last])])]),
        // The input blocks' residual blocks.
        sum(widths
            .iter()
            .enumerate()
            .map(|(l, w)| prod([blocks(l), 9, *w, *w]))),
    ])
}

/// A lower bound of the parameters of the VAE.
pub fn vae_params(c: &VaeConfig) -> u128 {
    let d = &c.ddconfig;
    let widths: Vec<u128> = d.ch_mult.iter().map(|m| prod([n(d.ch), n(*m)])).collect();
    let last = widths.last().copied().unwrap_or(0);
    sum([
        sum(widths
            .iter()
            .map(|w| prod([2 * n(d.num_res_blocks) + 1, 9, *w, *w]))),
        prod([4, 18, last, last]),
        prod([9, n(d.in_channels), n(d.ch)]),
        prod([9, n(d.z_channels), last]),
        prod([n(c.embed_dim), n(d.z_channels)]),
    ])
}

/// A lower bound of the parameters of the CLIP text encoder.
pub fn clip_params(c: &ClipTextConfig) -> u128 {
    let w = n(c.width);
    sum([
        prod([n(c.vocab_size), w]),
        prod([n(c.context_length), w]),
        prod([w, n(c.embed_dim)]),
        prod([
            n(c.layers),
            sum([prod([4, w, w]), prod([2, w, n(c.mlp_width())])]),
        ]),
    ])
}

pub fn check_stage1(c: &Stage1Config) {
    report("stage-1 network", stage1_params(c), c);
}

pub fn check_unet(c: &UnetConfig) {
    report("UNet", unet_params(c, 0), c);
}

pub fn check_controlnet(c: &ControlNetConfig) {
    report("IRControlNet", unet_params(&c.unet(), c.hint_channels), c);
}

pub fn check_vae(c: &VaeConfig) {
    report("VAE", vae_params(c), c);
}

pub fn check_clip(c: &ClipTextConfig) {
    report("CLIP text encoder", clip_params(c), c);
}

pub fn check_schedule(c: &NoiseScheduleConfig) {
    assert!(
        c.timesteps <= MAX_TIMESTEPS,
        "validation accepted a schedule of {} timesteps: {c:?}",
        c.timesteps
    );
}

/// Builds every network of `m` when they are small; building a validated configuration must
/// not panic, and the lower bounds above must hold.
pub fn build_if_small(m: &ModelConfigs) {
    let bounds = [
        stage1_params(&m.stage1),
        unet_params(&m.unet, 0),
        unet_params(&m.controlnet.unet(), m.controlnet.hint_channels),
        vae_params(&m.vae),
        clip_params(&m.clip),
    ];
    if sum(bounds) > SMALL {
        return;
    }
    let device = diffbir::core::device::parse_device("cpu").expect("the flex backend");
    let built = [
        m.stage1.init(&device).expect("validated").num_params(),
        m.unet.init(&device).num_params(),
        m.controlnet.init(&device).map_or(0, |c| c.num_params()),
        m.vae.init(&device).num_params(),
        m.clip.init(&device).num_params(),
    ];
    for (name, (bound, actual)) in ["stage 1", "UNet", "ControlNet", "VAE", "CLIP"]
        .iter()
        .zip(bounds.iter().zip(built))
    {
        assert!(
            *bound <= actual as u128 || (*name == "ControlNet" && actual == 0),
            "{name}: the oracle's lower bound {bound} exceeds the {actual} parameters built"
        );
    }
}
