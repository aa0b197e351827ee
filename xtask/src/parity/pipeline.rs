//! Builder of the end-to-end stage-2 cases (`Pipeline.apply_cldm` with the tiny models).

use anyhow::{Context, Result};
use burn::tensor::Device;
use diffbir::core::NoiseSource;
use diffbir::ldm::clip::CLIP_EMBEDDER_KEYS;
use diffbir::ldm::vae::{VAE_KEYS, VaeConfig};
use diffbir::sampler::{SamplerConfig, StartPoint};
use diffbir::stage2::{Stage2, Stage2Options, VaeTiling};
use serde_json::Value;

use super::{Case, Outputs, clip, ldm, sampler, weights};

/// `pipeline_apply_cldm`: stage 2 from the case's condition image, with its arguments,
/// prompts, schedule and recorded noise.
pub fn apply_cldm(case: &Case, device: &Device) -> Result<Outputs> {
    let args = case.field("/apply_cldm_args")?;
    let num = |k: &str| {
        args.get(k)
            .and_then(Value::as_f64)
            .with_context(|| format!("apply_cldm_args has no number `{k}`"))
    };
    let flag = |k: &str| args.get(k).and_then(Value::as_bool).unwrap_or(false);
    let text = |k: &str| {
        case.field(k)
            .map(|v| v.as_str().unwrap_or_default().to_string())
    };

    let mut vae = case
        .config_at("/cldm/config/vae_cfg", VaeConfig::new())?
        .init(device);
    weights::load_part(case, "vae", &mut vae, &VAE_KEYS)?;
    let mut text_encoder = clip::config_at(case, "/cldm/config/clip_cfg")?.init(device);
    weights::load_part(case, "clip", &mut text_encoder, &CLIP_EMBEDDER_KEYS)?;
    let stage2 = Stage2 {
        cldm: ldm::control_ldm_at(case, "/cldm/config", device)?,
        vae,
        clip: text_encoder,
        tokenizer: clip::tokenizer(case)?,
        schedule: sampler::schedule_config(case.field("/diffusion_config")?)?.init(),
    };
    let steps = num("steps")? as usize;
    let sampler_name = args
        .get("sampler_type")
        .and_then(Value::as_str)
        .context("`sampler_type`")?;
    let start = args
        .get("start_point_type")
        .cloned()
        .context("`start_point_type`")?;
    let options = Stage2Options {
        sampler: SamplerConfig::new(
            sampler_name.parse()?,
            steps,
            &sampler::sampler_options(args)?,
        ),
        strength: num("strength")?,
        cfg_scale: num("cfg_scale")?,
        rescale_cfg: flag("rescale_cfg"),
        start_point: serde_json::from_value::<StartPoint>(start)?,
        noise_aug: num("noise_aug")? as usize,
        pos_prompt: text("/pos_prompt")?,
        neg_prompt: text("/neg_prompt")?,
        vae_encoder_tile: flag("vae_encoder_tiled")
            .then(|| num("vae_encoder_tile_size"))
            .transpose()?
            .map(|v| v as usize),
        vae_decoder_tile: flag("vae_decoder_tiled")
            .then(|| num("vae_decoder_tile_size"))
            .transpose()?
            .map(|v| v as usize),
        vae_tiling: VaeTiling::Synced,
        cldm_tile: if flag("cldm_tiled") {
            Some((
                num("cldm_tile_size")? as usize,
                num("cldm_tile_stride")? as usize,
            ))
        } else {
            None
        },
        // The reference's v2.1 pipeline never applies restoration guidance: it only loads the
        // target (`XPixelGroup/DiffBIR@3f8b530:diffbir/pipeline.py:L169-L170`), and no sampler
        // calls it.
        guidance: None,
    };
    let mut noise = NoiseSource::replay(case.noise_draws());
    let x = stage2.apply(
        case.float::<4>("input.cond_img", device)?,
        &options,
        &mut noise,
        &mut (),
    )?;
    anyhow::ensure!(
        noise.remaining() == 0,
        "{} recorded draws were not used",
        noise.remaining()
    );
    let mut out = Outputs::default();
    out.tensor("output.x", x);
    Ok(out)
}
