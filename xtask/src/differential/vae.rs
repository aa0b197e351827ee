//! The VAE families: `AutoencoderKl` encoding and decoding, untiled and tiled.

use anyhow::Result;
use burn::module::Module;
use burn::tensor::{DType, Device};
use diffbir::core::NoiseSource;
use diffbir::ldm::vae::{DdConfig, DiagonalGaussian, Latent, VaeConfig, VaeTiles};

use super::draw::{self, Draw};
use super::{Case, MAX_PARAMS, dims, draw_until, moved, output};

/// A VAE of `levels` levels of width 32 or 64, with optional attention levels.
fn vae_config(d: &mut Draw, levels: usize) -> VaeConfig {
    let resolution = 32;
    let attn = (0..levels)
        .filter(|_| d.chance(0.25))
        .map(|level| resolution >> level)
        .collect();
    VaeConfig::new()
        .with_embed_dim(d.range(1, 4))
        .with_ddconfig(
            DdConfig::new()
                .with_z_channels(d.range(1, 4))
                .with_resolution(resolution)
                .with_in_channels(d.pick(&[1, 3]))
                .with_out_ch(d.pick(&[1, 3]))
                .with_ch(32)
                .with_ch_mult((0..levels).map(|_| d.pick(&[1, 1, 2])).collect())
                .with_num_res_blocks(d.range(1, 2))
                .with_attn_resolutions(attn),
        )
}

fn describe_vae(cfg: &VaeConfig) -> String {
    let dd = &cfg.ddconfig;
    format!(
        "ch={} mult={:?} res_blocks={} z={} embed={} attn@{:?}/{} in={} out={}",
        dd.ch,
        dd.ch_mult,
        dd.num_res_blocks,
        dd.z_channels,
        cfg.embed_dim,
        dd.attn_resolutions,
        dd.resolution,
        dd.in_channels,
        dd.out_ch
    )
}

/// A valid VAE under the parameter budget.
fn draw_vae(d: &mut Draw, levels: impl Fn(&mut Draw) -> usize) -> Result<VaeConfig> {
    draw_until(d, |d| {
        let n = levels(d);
        let cfg = vae_config(d, n);
        cfg.validate().ok()?;
        (cfg.init(&Device::flex()).num_params() <= MAX_PARAMS).then_some(cfg)
    })
}

/// The VAE: encoder moments and the posterior (mean, clamped log-variance, std, a sample with
/// host noise), decoding a random latent and the posterior's mode; 2 to 4 levels, odd image
/// and latent sizes (the encoder's padded stride-2 convs take any size).
pub fn vae(d: &mut Draw) -> Result<Case> {
    let cfg = draw_vae(d, |d| d.range(2, 4))?;
    let levels = cfg.ddconfig.ch_mult.len();
    let b = d.range(1, 2);
    let x_shape = [b, cfg.ddconfig.in_channels, d.range(9, 40), d.range(9, 40)];
    let latent_max = 48 >> (levels - 1);
    let z_shape = [
        b,
        cfg.embed_dim,
        d.range(2, latent_max.min(7)),
        d.range(2, latent_max.min(7)),
    ];
    let config = format!(
        "{} x={} z={}",
        describe_vae(&cfg),
        dims(&x_shape),
        dims(&z_shape)
    );
    let model = d.weights(cfg.init(&Device::flex()));
    let x = d.uniform_data(&x_shape, -1.0, 1.0);
    let z = d.normal_data(&z_shape);
    let noise_seed = d.seed();
    let params = model.num_params();
    Ok(Case::new(config, move |device, setting| {
        let vae = moved(&model, device, setting);
        let dtype = setting.dtype();
        let moments = vae
            .quant_conv
            .forward(vae.encoder.forward(draw::float(&x, device, dtype)));
        // The posterior in f32 (host noise is f32), as the pipeline reads latents.
        let posterior = DiagonalGaussian::from_moments(moments.clone().cast(DType::F32));
        let sample = posterior.sample(&mut NoiseSource::seeded(noise_seed));
        let decoded = vae.decode(draw::float(&z, device, dtype));
        let decoded_mode = vae.decode(posterior.mode().cast(dtype));
        Ok(vec![
            output("moments", moments)?,
            output("logvar", posterior.logvar.clone())?,
            output("std", posterior.std.clone())?,
            output("sample", sample)?,
            output("decoded", decoded)?,
            output("decoded_mode", decoded_mode)?,
        ])
    })
    .params(params))
}

/// The tiled VAE (`vae_tiled`), 4 levels as the tile geometry requires: encoding and
/// decoding with `VaeTiles::Synced` (GroupNorm statistics merged across tiles; inputs long
/// enough on one side to split beyond the 32-pixel / 11-latent margins) or
/// `VaeTiles::Blended` (independent Gaussian-blended tiles).
pub fn vae_tiled(d: &mut Draw) -> Result<Case> {
    let cfg = draw_vae(d, |_| 4)?;
    let b = d.range(1, 2);
    let e = cfg.embed_dim;
    let in_ch = cfg.ddconfig.in_channels;
    let swap = |d: &mut Draw, [h, w]: [usize; 2]| if d.coin() { [w, h] } else { [h, w] };
    let (encode, decode, x_hw, z_hw) = if d.coin() {
        let tile = d.pick(&[8, 16]);
        // Long enough on one side to split; the short side may be within the margins.
        let long = 64 + tile + 8 * d.range(1, 2);
        let x_hw = [8 * d.range(1, 6), long];
        let x_hw = swap(d, x_hw);
        let latent_tile = d.pick(&[2, 4]);
        let long = 22 + latent_tile + d.range(1, 3);
        let z_hw = [d.range(1, 13), long];
        let z_hw = swap(d, z_hw);
        (
            VaeTiles::Synced(tile),
            VaeTiles::Synced(latent_tile),
            x_hw,
            z_hw,
        )
    } else {
        let tile = d.pick(&[16, 24, 32]);
        let stride = d.pick(&[8, 16]).min(tile);
        let side = |d: &mut Draw| 8 * d.range(tile / 8, 6);
        let x_hw = [side(d), side(d)];
        let latent_tile = d.range(2, 4);
        let latent_stride = d.range(1, 2);
        let side = |d: &mut Draw| d.range(latent_tile, 6);
        let z_hw = [side(d), side(d)];
        (
            VaeTiles::Blended { tile, stride },
            VaeTiles::Blended {
                tile: latent_tile,
                stride: latent_stride,
            },
            x_hw,
            z_hw,
        )
    };
    let x_shape = [b, in_ch, x_hw[0], x_hw[1]];
    let z_shape = [b, e, z_hw[0], z_hw[1]];
    let config = format!(
        "{} encode={encode:?} x={} decode={decode:?} z={}",
        describe_vae(&cfg),
        dims(&x_shape),
        dims(&z_shape)
    );
    let model = d.weights(cfg.init(&Device::flex()));
    let x = d.uniform_data(&x_shape, -1.0, 1.0);
    let z = d.normal_data(&z_shape);
    let params = model.num_params();
    Ok(Case::new(config, move |device, setting| {
        let vae = moved(&model, device, setting);
        let dtype = setting.dtype();
        let latent = vae.encode_latent(draw::float(&x, device, dtype), Some(encode), None)?;
        let decoded = vae.decode_latent(&Latent(draw::float(&z, device, dtype)), Some(decode))?;
        Ok(vec![
            output("latent", latent.0)?,
            output("decoded", decoded)?,
        ])
    })
    .params(params))
}
