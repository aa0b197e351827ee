//! Builders of the restoration-guidance cases: the two losses (`guidance_cond_fn`;
//! `XPixelGroup/DiffBIR@3f8b530:diffbir/utils/cond_fn.py:L48-L111`) and v2's
//! `SpacedSampler.apply_cond_fn` (`9fb2107:utils/sampler.py:L163-L210`) with the tiny VAE
//! (`guidance_apply`).

use anyhow::{Context, Result, ensure};
use burn::tensor::Device;
use diffbir::core::NoiseSource;
use diffbir::ldm::vae::{LATENT_SCALE, VAE_KEYS, VaeConfig};
use diffbir::sampler::cond_fn::sobel_weight_map;
use diffbir::sampler::{
    GuidanceDomain, GuidanceLoss, GuidanceVariant, RestorationGuidanceConfig, SpacedConfig,
};
use diffbir::stage2::VaeGuidance;
use serde_json::Value;

use super::{Case, Outputs, sampler, weights};

fn number(case: &Case, pointer: &str) -> Result<f64> {
    case.field(pointer)?
        .as_f64()
        .with_context(|| format!("`{pointer}` is not a number"))
}

fn integer(case: &Case, pointer: &str) -> Result<i64> {
    case.field(pointer)?
        .as_i64()
        .with_context(|| format!("`{pointer}` is not an integer"))
}

fn text<'a>(case: &'a Case, pointer: &str) -> Result<&'a str> {
    case.field(pointer)?
        .as_str()
        .with_context(|| format!("`{pointer}` is not a string"))
}

/// The first value of a stored integer tensor (`input.t`, `input.index`).
fn stored_index(case: &Case, name: &str) -> Result<usize> {
    let value = *case
        .stored(name)?
        .values
        .first()
        .with_context(|| format!("`{name}` is empty"))?;
    ensure!(value >= 0.0, "`{name}` is negative");
    Ok(value as usize)
}

/// `guidance_cond_fn`: gradient and loss of both losses, and the `w_mse` weight map.
pub fn cond_fn(case: &Case, device: &Device) -> Result<Outputs> {
    let target = case.float::<4>("input.target", device)?;
    let pred = case.float::<4>("input.pred", device)?;
    let mut out = Outputs::default();
    for (name, loss) in [
        ("mse", GuidanceLoss::Mse),
        ("w_mse", GuidanceLoss::WeightedMse),
    ] {
        let guidance = RestorationGuidanceConfig {
            loss,
            space: GuidanceDomain::Rgb,
            scale: number(case, "/scale")?,
            t_start: integer(case, "/t_start")?,
            t_stop: integer(case, "/t_stop")?,
            repeat: 1,
            variant: GuidanceVariant::V2,
        }
        .init()?;
        let (grad, value) = guidance.loss_gradient(target.clone(), pred.clone())?;
        out.tensor(format!("output.{name}.grad"), grad);
        out.values(format!("output.{name}.loss"), vec![], vec![value]);
    }
    let weight = sobel_weight_map(target.add_scalar(1.0).div_scalar(2.0))?;
    out.tensor("output.w_mse.weight_map", weight);
    Ok(out)
}

/// `guidance_apply`: `repeat` guidance updates of `x̂₀` at one step of the spaced sampler,
/// with the case's tiny VAE, loss, space and time window.
pub fn apply(case: &Case, device: &Device) -> Result<Outputs> {
    let guidance = RestorationGuidanceConfig {
        loss: text(case, "/loss")?.parse()?,
        space: text(case, "/space")?.parse()?,
        scale: number(case, "/scale")?,
        t_start: integer(case, "/t_start")?,
        t_stop: integer(case, "/t_stop")?,
        repeat: case.usize_field("/repeat")?,
        variant: GuidanceVariant::V2,
    }
    .init()?;

    let mut vae = case
        .config_at("/cldm/config/vae_cfg", VaeConfig::new())?
        .init(device);
    weights::load_part(case, "vae", &mut vae, &VAE_KEYS)?;
    let scale = number(case, "/cldm/config/latent_scale_factor")?;
    ensure!(
        scale == LATENT_SCALE,
        "latent scale factor {scale}: DiffBIR's is {LATENT_SCALE}"
    );
    let space = VaeGuidance(&vae);
    let schedule = sampler::schedule_config(case.field("/diffusion_config")?)?.init();
    let spaced = SpacedConfig::new(case.usize_field("/steps")?).init(&schedule)?;

    let t = stored_index(case, "input.t")?;
    let index = stored_index(case, "input.index")?;
    ensure!(
        spaced.timesteps().get(index) == Some(&t),
        "model timestep {t} is not step {index} of the spaced schedule {:?}",
        spaced.timesteps()
    );
    let mut noise = NoiseSource::replay(case.noise_draws());
    let step = spaced.apply_guidance(
        &guidance,
        &space,
        case.float::<4>("input.target", device)?,
        case.float::<4>("input.pred_x0", device)?,
        index,
        &mut noise,
    )?;
    ensure!(
        noise.remaining() == 0,
        "{} recorded draws were not used",
        noise.remaining()
    );
    // The per-repetition losses and `g_apply` are recorded outside `output.*`: check them here.
    let tol = case.tolerance();
    for (k, loss) in step.losses.iter().enumerate() {
        let name = format!("inter.repeat{k}.loss");
        if let Ok(expected) = case.stored(&name) {
            let expected = expected.values[0];
            ensure!(
                (loss - expected).abs() <= tol.atol + tol.rtol * expected.abs(),
                "{name}: {loss}, expected {expected}"
            );
        }
    }
    if let Some(applied) = case
        .json
        .pointer("/result/g_apply")
        .and_then(Value::as_bool)
    {
        ensure!(
            step.applied == applied,
            "g_apply {}, expected {applied}",
            step.applied
        );
    }
    let mut out = Outputs::default();
    out.tensor("output.pred_x0", step.pred_x0);
    Ok(out)
}
