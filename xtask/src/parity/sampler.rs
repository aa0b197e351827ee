//! Builders of the diffusion cases: training schedules, sampler tables, and full sampler runs
//! on the analytic stand-in model.
//!
//! Everything is configured from each case's JSON (`diffusion_config`, `sampler`, `steps`,
//! `sampler_options`, `cfg_scale`, `rescale_cfg`, `start_point_type`, `tiled`), and the
//! recorded noise is replayed in order.

use anyhow::{Context, Result, bail, ensure};
use burn::tensor::{Device, Tensor, TensorData};
use diffbir::controlnet::{ControlCond, ControlDenoiser};
use diffbir::sampler::ddim::DdimConfig;
use diffbir::sampler::dpm_solver::DiscreteVp;
use diffbir::sampler::edm::EdmSchedule;
use diffbir::sampler::spaced::{SpacedConfig, space_timesteps};
use diffbir::sampler::{
    CfgRescale, ClassifierFree, Denoiser, GuidedCond, ModelTimesteps, NoiseSchedule,
    NoiseScheduleConfig, Parameterization, SampleObserver, Sampler, SamplerConfig, SamplerKind,
    SamplerOptions, StartPoint, StepInfo, Tiled,
};
use diffbir_core::NoiseSource;
use serde_json::Value;

use super::{Case, Outputs, ldm, standin};

/// The training schedule of a case's `diffusion_config` (the reference's defaults for absent
/// keys: `zero_snr` false, `parameterization` eps, `beta_schedule` linear).
pub(super) fn schedule_config(config: &Value) -> Result<NoiseScheduleConfig> {
    let num = |k: &str| {
        config
            .get(k)
            .and_then(Value::as_f64)
            .with_context(|| format!("diffusion_config has no number `{k}`"))
    };
    if let Some(kind) = config.get("beta_schedule").and_then(Value::as_str) {
        ensure!(
            kind == "linear",
            "beta schedule `{kind}` is not implemented"
        );
    }
    let parameterization = match config.get("parameterization").and_then(Value::as_str) {
        Some(name) => name.parse::<Parameterization>()?,
        None => Parameterization::Eps,
    };
    Ok(NoiseScheduleConfig::new()
        .with_timesteps(num("timesteps")? as usize)
        .with_linear_start(num("linear_start")?)
        .with_linear_end(num("linear_end")?)
        .with_zero_snr(
            config
                .get("zero_snr")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        )
        .with_parameterization(parameterization))
}

fn usize_list(case: &Case, pointer: &str) -> Result<Vec<usize>> {
    case.field(pointer)?
        .as_array()
        .with_context(|| format!("`{pointer}` is not a list"))?
        .iter()
        .map(|v| {
            v.as_u64()
                .map(|v| v as usize)
                .with_context(|| format!("`{pointer}` holds a non-integer"))
        })
        .collect()
}

fn f32s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// Applies `f(item, index)` to each batch item with its own table index, as the reference's
/// `extract_into_tensor` does with per-item timesteps.
fn per_item(
    x: Tensor<4>,
    y: Tensor<4>,
    index: &[usize],
    f: impl Fn(Tensor<4>, usize, Tensor<4>) -> Tensor<4>,
) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let items = (0..b)
        .map(|i| {
            let r = [i..i + 1, 0..c, 0..h, 0..w];
            f(x.clone().slice(r.clone()), index[i], y.clone().slice(r))
        })
        .collect();
    Tensor::cat(items, 0)
}

/// `diffusion_schedule`: betas and `ᾱ`, the float32 buffers, `q_sample`, `get_v`, the
/// spaced/DDIM conversions and the guidance scale.
pub fn diffusion_schedule(case: &Case, device: &Device) -> Result<Outputs> {
    let schedule = schedule_config(case.field("/config")?)?.init();
    let n = schedule.num_timesteps();
    let mut out = Outputs::default();
    out.values("output.betas_f64", vec![n], schedule.betas().to_vec());
    out.values(
        "output.alphas_cumprod_f64",
        vec![n],
        schedule.alphas_cumprod().to_vec(),
    );
    out.values(
        "output.sqrt_alphas_cumprod",
        vec![n],
        f32s(&schedule.sqrt_alphas_cumprod()),
    );
    out.values(
        "output.sqrt_one_minus_alphas_cumprod",
        vec![n],
        f32s(&schedule.sqrt_one_minus_alphas_cumprod()),
    );

    let x0 = case.float::<4>("input.x0", device)?;
    let noise = case.float::<4>("input.noise", device)?;
    let index = |name: &str| -> Result<Vec<usize>> {
        Ok(case
            .stored(name)?
            .values
            .iter()
            .map(|&v| v as usize)
            .collect())
    };
    let t = index("input.t")?;
    let x_t = schedule.q_sample(x0.clone(), &t, noise.clone());
    let v = schedule.get_v(x0, noise.clone(), &t);
    out.tensor("output.q_sample", x_t.clone());
    out.tensor("output.get_v", v.clone());

    let spaced = SpacedConfig::new(n).init(&schedule)?;
    out.tensor(
        "output.x0_from_v_spaced1000",
        per_item(x_t.clone(), v.clone(), &t, |x, k, v| {
            spaced.predict_x0_from_v(x, k, v)
        }),
    );
    out.tensor(
        "output.x0_from_eps_spaced1000",
        per_item(x_t.clone(), noise, &t, |x, k, e| {
            spaced.predict_x0_from_eps(x, k, e)
        }),
    );
    let ddim = DdimConfig::new(case.usize_field("/ddim_steps_for_v_to_eps")?).init(&schedule)?;
    out.tensor(
        "output.eps_from_v_ddim",
        per_item(x_t, v, &index("input.ddim_index")?, |x, k, v| {
            ddim.eps_from_v(x, k, v)
        }),
    );

    let scale = case
        .field("/cfg_scale")?
        .as_f64()
        .context("`cfg_scale` is not a number")?;
    let ts: Vec<f64> = case
        .field("/cfg_rescale_timesteps")?
        .as_array()
        .context("`cfg_rescale_timesteps` is not a list")?
        .iter()
        .map(|v| v.as_f64().context("a timestep is not a number"))
        .collect::<Result<_>>()?;
    for (name, rule) in [
        ("output.cfg_scale_rescaled", CfgRescale::Cosine),
        ("output.cfg_scale_plain", CfgRescale::Off),
    ] {
        let values = ts.iter().map(|&t| rule.scale_at(scale, t as f32)).collect();
        out.values(name, vec![ts.len()], values);
    }
    Ok(out)
}

/// `sampler_schedules`: the tables each sampler builds for the case's step counts.
pub fn sampler_schedules(case: &Case, _device: &Device) -> Result<Outputs> {
    let schedule = schedule_config(case.field("/diffusion_config")?)?.init();
    let n = schedule.num_timesteps();
    let mut out = Outputs::default();

    // The respacing of every recorded section string (a JSON result, not a tensor).
    if let Some(results) = case.json.get("result").and_then(Value::as_object) {
        for (key, expected) in results {
            let Some(section) = key
                .strip_prefix("space_timesteps[")
                .and_then(|k| k.strip_suffix(']'))
            else {
                continue;
            };
            let expected: Vec<u64> = serde_json::from_value(expected.clone())
                .with_context(|| format!("result `{key}` is not a list of integers"))?;
            let got: Vec<u64> = space_timesteps(n, section)?
                .into_iter()
                .map(|t| t as u64)
                .collect();
            ensure!(got == expected, "{key}: got {got:?}, expected {expected:?}");
        }
    }

    for steps in usize_list(case, "/steps")? {
        let spaced = SpacedConfig::new(steps).init(&schedule)?;
        let p = format!("output.spaced{steps}");
        let tb = spaced.tables();
        out.values(
            format!("{p}.timesteps"),
            vec![steps],
            spaced.timesteps().iter().map(|&t| t as f64).collect(),
        );
        for (name, table) in [
            ("sqrt_alphas_cumprod", &tb.sqrt_alphas_cumprod),
            (
                "sqrt_one_minus_alphas_cumprod",
                &tb.sqrt_one_minus_alphas_cumprod,
            ),
            ("sqrt_recip_alphas_cumprod", &tb.sqrt_recip_alphas_cumprod),
            (
                "sqrt_recipm1_alphas_cumprod",
                &tb.sqrt_recipm1_alphas_cumprod,
            ),
            ("posterior_variance", &tb.posterior_variance),
            (
                "posterior_log_variance_clipped",
                &tb.posterior_log_variance_clipped,
            ),
            ("posterior_mean_coef1", &tb.posterior_mean_coef1),
            ("posterior_mean_coef2", &tb.posterior_mean_coef2),
        ] {
            out.values(format!("{p}.{name}"), vec![table.len()], f32s(table));
        }

        let edm = EdmSchedule::new(&schedule, steps)?;
        out.values(
            format!("output.edm{steps}.sigmas"),
            vec![steps + 1],
            f32s(edm.sigmas()),
        );
        out.values(
            format!("output.edm{steps}.timesteps"),
            vec![steps + 1],
            edm.timesteps().iter().map(|&t| t as f64).collect(),
        );
    }

    for steps in usize_list(case, "/ddim_steps")? {
        let ddim = DdimConfig::new(steps).init(&schedule)?;
        let p = format!("output.ddim{steps}");
        let tb = ddim.tables();
        let len = ddim.steps();
        out.values(
            format!("{p}.ddim_timesteps"),
            vec![len],
            ddim.timesteps().iter().map(|&t| t as f64).collect(),
        );
        for (name, table) in [
            ("ddim_sigmas", &tb.ddim_sigmas),
            ("ddim_alphas", &tb.ddim_alphas),
            ("ddim_sqrt_alphas", &tb.ddim_sqrt_alphas),
            ("ddim_alphas_prev", &tb.ddim_alphas_prev),
            ("ddim_sqrt_one_minus_alphas", &tb.ddim_sqrt_one_minus_alphas),
        ] {
            out.values(format!("{p}.{name}"), vec![len], f32s(table));
        }
    }

    let vp = DiscreteVp::new(schedule.betas());
    let total = vp.total_n();
    if let Some(expected) = case.json.pointer("/result/dpm_total_N") {
        ensure!(
            expected.as_u64() == Some(total as u64),
            "DPM-Solver keeps {total} entries, the case records {expected}"
        );
    }
    out.values(
        "output.dpm.log_alpha_array",
        vec![1, total],
        f32s(vp.log_alpha_array()),
    );
    out.values("output.dpm.t_array", vec![1, total], f32s(vp.t_array()));
    for steps in usize_list(case, "/steps")? {
        let times = vp.time_steps(steps);
        let p = format!("output.dpm{steps}");
        let table = |f: &dyn Fn(f32) -> f32| times.iter().map(|&t| f64::from(f(t))).collect();
        out.values(format!("{p}.t_continuous"), vec![steps + 1], table(&|t| t));
        out.values(
            format!("{p}.t_model_input"),
            vec![steps + 1],
            table(&|t| vp.model_time(t)),
        );
        out.values(
            format!("{p}.marginal_alpha"),
            vec![steps + 1],
            table(&|t| vp.alpha(t)),
        );
        out.values(
            format!("{p}.marginal_std"),
            vec![steps + 1],
            table(&|t| vp.std(t)),
        );
        out.values(
            format!("{p}.marginal_lambda"),
            vec![steps + 1],
            table(&|t| vp.lambda(t)),
        );
    }
    Ok(out)
}

/// Reads one guidance branch's condition (`input.<branch>.c_txt` / `.c_img`).
fn read_cond(case: &Case, branch: &str, device: &Device) -> Result<ControlCond> {
    Ok(ControlCond {
        c_txt: case.float::<3>(&format!("input.{branch}.c_txt"), device)?,
        c_img: case.float::<4>(&format!("input.{branch}.c_img"), device)?,
    })
}

/// The analytic stand-in of the sampler cases ([`standin::TILED_FORMULA`]), taking the model
/// time as a float (DPM-Solver's times are fractional).
struct StandIn {
    parameterization: Parameterization,
}

impl Denoiser for StandIn {
    type Cond = ControlCond;

    fn parameterization(&self) -> Parameterization {
        self.parameterization
    }

    fn predict(&self, x_t: Tensor<4>, t: &ModelTimesteps, cond: &ControlCond) -> Tensor<4> {
        let [b, _, _, _] = x_t.dims();
        let device = x_t.device();
        let tt = t.value() / 1000.0;
        // PyTorch's float32 tanh and mean are (nearly) correctly rounded; computing them in f64
        // and rounding once follows the reference more closely than f32 arithmetic, which
        // matters where the EDM samplers multiply the model output by σ ≈ 10⁴.
        let x: Vec<f32> = x_t
            .to_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32");
        let tanh: Vec<f32> = x.iter().map(|&v| f64::from(v).tanh() as f32).collect();
        let tanh = Tensor::<4>::from_data(TensorData::new(tanh, x_t.dims()), &device);
        let c: Vec<f32> = cond
            .c_txt
            .to_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32");
        let per = c.len() / b;
        let ctx: Vec<f32> = c
            .chunks(per)
            .map(|item| item.iter().map(|&v| f64::from(v)).sum::<f64>() as f32 / per as f32)
            .collect();
        let ctx = Tensor::<4>::from_data(TensorData::new(ctx, [b, 1, 1, 1]), &device);
        tanh.mul_scalar(0.8).mul_scalar(1.0 - 0.5 * tt)
            + cond.c_img.clone().mul_scalar(0.3)
            + ctx.mul_scalar(0.2)
            + tt * 0.1
    }
}

/// Keeps every step's latent and `x̂₀`.
#[derive(Default)]
struct Recorder {
    x: Vec<Tensor<4>>,
    x0: Vec<Tensor<4>>,
}

impl SampleObserver for Recorder {
    fn on_step(&mut self, step: &StepInfo<'_>) -> std::ops::ControlFlow<()> {
        self.x.push(step.x.clone());
        self.x0.push(step.x0_pred.clone());
        std::ops::ControlFlow::Continue(())
    }
}

pub(super) fn sampler_options(options: &Value) -> Result<SamplerOptions> {
    let num = |k: &str| {
        options
            .get(k)
            .and_then(Value::as_f64)
            .with_context(|| format!("sampler_options has no number `{k}`"))
    };
    Ok(SamplerOptions::new()
        .with_s_churn(num("s_churn")?)
        .with_s_tmin(num("s_tmin")?)
        .with_s_tmax(num("s_tmax")?)
        .with_s_noise(num("s_noise")?)
        .with_eta(num("eta")?)
        .with_order(num("order")? as usize))
}

/// `sampler_run`: a full sampler run with classifier-free guidance, optionally tiled, on the
/// analytic stand-in or the tiny `ControlLDM`, from the recorded start latent (or the `cond`
/// start point), replaying the recorded noise. Also checks every recorded per-step state.
///
/// A case whose original raised must be refused by the port: the error is returned (the
/// runner counts it as reproduced); a port that accepts such a configuration returns no
/// outputs, which the runner reports as a failure.
pub fn sampler_run(case: &Case, device: &Device) -> Result<Outputs> {
    let schedule = schedule_config(case.field("/diffusion_config")?)?.init();
    let name = case
        .field("/sampler")?
        .as_str()
        .context("`sampler` is not a string")?;
    let steps = case.usize_field("/steps")?;
    let options = sampler_options(case.field("/sampler_options")?)?;
    let expect_error = case
        .json
        .get("expect_error")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let built = name
        .parse::<SamplerKind>()
        .map(|kind| SamplerConfig::new(kind, steps, &options))
        .and_then(|config| Ok((config.init(&schedule)?, config)));
    let (sampler, config) = match (built, expect_error) {
        (Ok(built), false) => built,
        (Err(e), _) => {
            return Err(anyhow::Error::new(e).context(format!("the port refuses `{name}`")));
        }
        (Ok(_), true) => return Ok(Outputs::default()),
    };
    let rescale = case
        .field("/rescale_cfg")?
        .as_bool()
        .context("`rescale_cfg` is not a boolean")?;
    let run = Run {
        case,
        device,
        schedule: &schedule,
        sampler: &sampler,
        rescale: config.cfg_rescale(rescale),
    };
    let parameterization = schedule.parameterization();
    match case.field("/model")?.as_str().unwrap_or_default() {
        "standin" => {
            let formula = case.field("/standin_formula")?.as_str().unwrap_or_default();
            ensure!(
                formula == standin::TILED_FORMULA,
                "unknown stand-in formula `{formula}`"
            );
            run.with(StandIn { parameterization })
        }
        "tiny_cldm" => {
            let strength = case
                .json
                .get("strength")
                .and_then(Value::as_f64)
                .unwrap_or(1.0);
            let cldm = ldm::control_ldm_at(case, "/config", device)?;
            run.with(ControlDenoiser {
                cldm: &cldm,
                strength,
                parameterization,
            })
        }
        other => bail!("the sampler model `{other}` is not known to this build"),
    }
}

/// What a sampler run needs besides the model.
struct Run<'a> {
    case: &'a Case,
    device: &'a Device,
    schedule: &'a NoiseSchedule,
    sampler: &'a Sampler,
    rescale: CfgRescale,
}

impl Run<'_> {
    fn with<M: Denoiser<Cond = ControlCond>>(self, model: M) -> Result<Outputs> {
        let (case, device) = (self.case, self.device);
        let cond = GuidedCond {
            cond: read_cond(case, "cond", device)?,
            uncond: Some(read_cond(case, "uncond", device)?),
        };
        let mut noise = NoiseSource::replay(case.noise_draws());
        let start = case
            .field("/start_point_type")?
            .as_str()
            .context("`start_point_type` is not a string")?;
        let x_t = match start {
            "noise" => case.float::<4>("input.x_T", device)?,
            "cond" => StartPoint::Cond.latent(self.schedule, &cond.cond.c_img, &mut noise),
            other => bail!("unknown start point `{other}`"),
        };
        let scale = case
            .field("/cfg_scale")?
            .as_f64()
            .context("`cfg_scale` is not a number")?;
        let mut recorder = Recorder::default();
        let z = match case.field("/tiled")? {
            Value::Null => {
                let model = ClassifierFree::new(model, scale).with_rescale(self.rescale);
                self.sampler
                    .sample(&model, x_t, &cond, &mut noise, &mut recorder)
            }
            tiled => {
                let get = |k: &str| {
                    tiled
                        .get(k)
                        .and_then(Value::as_u64)
                        .map(|v| v as usize)
                        .with_context(|| format!("`tiled` has no `{k}`"))
                };
                let inner = Tiled::new(model, get("size")?, get("stride")?)?;
                let model = ClassifierFree::new(inner, scale).with_rescale(self.rescale);
                self.sampler
                    .sample(&model, x_t, &cond, &mut noise, &mut recorder)
            }
        };
        ensure!(
            noise.remaining() == 0,
            "the port drew fewer random tensors than the original ({} recorded draws left)",
            noise.remaining()
        );
        let edm = matches!(self.sampler, Sampler::Edm(_));
        check_steps(case, edm, &recorder)?;
        let mut out = Outputs::default();
        out.tensor("output.z", z);
        Ok(out)
    }
}

/// Compares the recorded per-step states: the latent after each step (spaced, DDIM,
/// DPM-Solver) or the denoised estimate of each step (EDM, whose recorded `x` is the latent
/// at the start of a step), with the case tolerance, `atol` scaled by the tensor's largest
/// magnitude.
fn check_steps(case: &Case, edm: bool, recorder: &Recorder) -> Result<()> {
    let (suffix, states) = if edm {
        ("denoised", &recorder.x0)
    } else {
        ("x", &recorder.x)
    };
    let tol = case.tolerance();
    for (i, state) in states.iter().enumerate() {
        let name = format!("step.{i:03}.{suffix}");
        let Ok(expected) = case.stored(&name) else {
            continue;
        };
        let got: Vec<f64> = state
            .clone()
            .into_data()
            .convert::<f64>()
            .try_to_vec::<f64>()
            .expect("f64 after convert");
        ensure!(
            got.len() == expected.values.len(),
            "{name}: {} values, expected {}",
            got.len(),
            expected.values.len()
        );
        let scale =
            expected.values.iter().fold(
                1.0f64,
                |m, v| if v.is_finite() { m.max(v.abs()) } else { m },
            );
        for (j, (a, e)) in got.iter().zip(&expected.values).enumerate() {
            let ok = (a - e).abs() <= tol.atol * scale + tol.rtol * e.abs();
            ensure!(ok, "{name}: {a} at flat index {j}, expected {e}");
        }
    }
    let recorded = (0..)
        .take_while(|i| case.stored(&format!("step.{i:03}.{suffix}")).is_ok())
        .count();
    ensure!(
        recorded == 0 || recorded == states.len(),
        "the port took {} steps, the original {recorded}",
        states.len()
    );
    Ok(())
}
