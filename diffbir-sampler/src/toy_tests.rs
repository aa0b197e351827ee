//! Convergence checks independent of the reference: every sampler on a linear-Gaussian toy
//! problem whose optimal `ε`/`v` predictor is known in closed form.
//!
//! Data `x₀ ~ N(μ, s²)` per element. At `ᾱ`, `x_t = √ᾱ·x₀ + √(1−ᾱ)·ε ~ N(√ᾱ·μ, ᾱs² + 1 − ᾱ)`,
//! and `E[ε|x_t]`, `E[x₀|x_t]` are linear in `x_t`. The probability-flow ODE then keeps the
//! standardised value `(x_t − √ᾱ·μ)/√(ᾱs² + 1 − ᾱ)` of each element, so a deterministic sampler
//! must map `x_T` to a known latent; stochastic samplers must produce samples with the
//! analytic mean and spread. Errors must shrink as the number of steps grows.

use burn::tensor::{Device, Tensor};
use diffbir_core::NoiseSource;

use crate::{
    ClassifierFree, Denoiser, GuidedCond, ModelTimesteps, NoiseSchedule, NoiseScheduleConfig,
    Parameterization, SamplerConfig, SamplerKind, SamplerOptions, Tiled,
};

const MU: f64 = 0.5;
const S: f64 = 0.3;
const SIDE: usize = 48;

/// The optimal predictor for `N(MU, S²)` data under the schedule `alphas_cumprod`.
struct Toy {
    alphas_cumprod: Vec<f64>,
    parameterization: Parameterization,
}

impl Toy {
    fn new(schedule: &NoiseSchedule, parameterization: Parameterization) -> Self {
        Self {
            alphas_cumprod: schedule.alphas_cumprod().to_vec(),
            parameterization,
        }
    }

    /// `ᾱ` at a model time, interpolating `log √ᾱ` between integer timesteps (what
    /// DPM-Solver's continuous time means for a 1000-entry schedule).
    fn alpha_bar(&self, t: f32) -> f64 {
        let t = f64::from(t).clamp(0.0, (self.alphas_cumprod.len() - 1) as f64);
        let lo = t.floor() as usize;
        let w = t - lo as f64;
        if w == 0.0 {
            return self.alphas_cumprod[lo];
        }
        let log_alpha = |i: usize| 0.5 * self.alphas_cumprod[i].ln();
        (2.0 * ((1.0 - w) * log_alpha(lo) + w * log_alpha(lo + 1))).exp()
    }
}

impl Denoiser for Toy {
    type Cond = ();

    fn parameterization(&self) -> Parameterization {
        self.parameterization
    }

    fn predict(&self, x_t: Tensor<4>, t: &ModelTimesteps, _cond: &()) -> Tensor<4> {
        let a = self.alpha_bar(t.value());
        let var = a * S * S + 1.0 - a;
        let centered = x_t.sub_scalar(a.sqrt() * MU);
        let eps_coef = (1.0 - a).sqrt() / var;
        match self.parameterization {
            Parameterization::Eps => centered.mul_scalar(eps_coef),
            Parameterization::V => {
                // √ᾱ·E[ε] − √(1−ᾱ)·E[x₀]
                let x0_coef = a.sqrt() * S * S / var;
                centered
                    .mul_scalar(a.sqrt() * eps_coef - (1.0 - a).sqrt() * x0_coef)
                    .sub_scalar((1.0 - a).sqrt() * MU)
            }
        }
    }
}

fn values(t: Tensor<4>) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .expect("f64 after convert")
}

fn start(seed: u64) -> Tensor<4> {
    NoiseSource::seeded(seed).randn([1, 1, SIDE, SIDE], &Device::flex())
}

/// Where the flow takes `x_T`, standardised at `ᾱ = a_start`, when it stops at `a_end`.
fn flow(x_t: &[f64], a_start: f64, a_end: f64) -> Vec<f64> {
    let sd = |a: f64| (a * S * S + 1.0 - a).sqrt();
    x_t.iter()
        .map(|x| {
            let z = (x - a_start.sqrt() * MU) / sd(a_start);
            a_end.sqrt() * MU + sd(a_end) * z
        })
        .collect()
}

fn max_err(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

fn run(
    name: &str,
    steps: usize,
    options: &SamplerOptions,
    schedule: &NoiseSchedule,
    model: &Toy,
    seed: u64,
) -> (Vec<f64>, Vec<f64>, crate::Sampler) {
    let config = name
        .parse::<SamplerKind>()
        .map(|kind| SamplerConfig::new(kind, steps, options))
        .unwrap();
    let sampler = config.init(schedule).unwrap();
    let x_t = start(seed);
    let x_t_values = values(x_t.clone());
    let mut noise = NoiseSource::seeded(seed + 1);
    let out = sampler.sample(model, x_t, &(), &mut noise, &mut ());
    (x_t_values, values(out), sampler)
}

/// The error of a deterministic sampler against the flow's endpoint.
fn ode_error(name: &str, steps: usize, schedule: &NoiseSchedule, model: &Toy) -> f64 {
    let options = SamplerOptions::new().with_eta(0.0).with_order(3);
    let (x_t, out, sampler) = run(name, steps, &options, schedule, model, 7);
    let ac = schedule.alphas_cumprod();
    let expected = match &sampler {
        crate::Sampler::Ddim(d) => flow(&x_t, ac[*d.timesteps().last().unwrap()], ac[0]),
        crate::Sampler::DpmSolver(_) => flow(&x_t, ac[ac.len() - 1], ac[0]),
        crate::Sampler::Edm(e) => {
            // EDM starts from x_T·√(1 + σ₀²) at σ₀ (variance-exploding form): standardise
            // there and end at σ = 0.
            let s0 = f64::from(e.schedule().sigmas()[0]);
            x_t.iter()
                .map(|x| {
                    let x_ve = x * (1.0 + s0 * s0).sqrt();
                    MU + S * (x_ve - MU) / (S * S + s0 * s0).sqrt()
                })
                .collect()
        }
        crate::Sampler::Spaced(_) => unreachable!("spaced is stochastic"),
    };
    max_err(&out, &expected)
}

#[test]
fn deterministic_samplers_follow_the_probability_flow() {
    let linear = NoiseScheduleConfig::sd_v2().init();
    let zsnr = NoiseScheduleConfig::sd_v21().init();
    let cases: Vec<(&str, &NoiseSchedule, Parameterization)> = vec![
        ("ddim", &linear, Parameterization::Eps),
        ("ddim", &zsnr, Parameterization::V),
        ("dpm++_m2", &linear, Parameterization::Eps),
        ("dpm++_m2", &linear, Parameterization::V),
        ("edm_euler", &zsnr, Parameterization::V),
        ("edm_heun", &zsnr, Parameterization::V),
        ("edm_dpm_2", &zsnr, Parameterization::V),
        ("edm_lms", &zsnr, Parameterization::V),
        ("edm_dpm++_2m", &zsnr, Parameterization::V),
        // With η = 0 the ancestral and SDE solvers are ODE solvers.
        ("edm_euler_a", &zsnr, Parameterization::V),
        ("edm_dpm_2_a", &zsnr, Parameterization::V),
        ("edm_dpm++_2s_a", &zsnr, Parameterization::V),
        ("edm_dpm++_sde", &zsnr, Parameterization::V),
        ("edm_dpm++_2m_sde", &zsnr, Parameterization::V),
        ("edm_dpm++_3m_sde", &zsnr, Parameterization::V),
    ];
    let mut report = Vec::new();
    for (name, schedule, param) in cases {
        let model = Toy::new(schedule, param);
        // Most of these solvers end with an Euler step to σ = 0, so they converge at first
        // order here: 4× the steps must at least roughly halve the error.
        let [coarse, medium, fine] = [10, 40, 160].map(|n| ode_error(name, n, schedule, &model));
        report.push(format!(
            "{name} {param:?}: {coarse:.2e} {medium:.2e} {fine:.2e}"
        ));
        assert!(
            medium < coarse && (fine < 0.6 * medium || fine < 2e-3) && fine < 0.1,
            "{name} ({param:?}) does not converge (errors at 10, 40, 160 steps):\n{}",
            report.join("\n")
        );
    }
}

/// Mean and standard deviation of the samples.
fn moments(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

#[test]
fn stochastic_samplers_reach_the_data_distribution() {
    let linear = NoiseScheduleConfig::sd_v2().init();
    let zsnr = NoiseScheduleConfig::sd_v21().init();
    let churn = SamplerOptions::new().with_s_churn(10.0).with_s_tmax(1e9);
    let eta = SamplerOptions::new();
    let cases: Vec<(&str, &NoiseSchedule, Parameterization, &SamplerOptions)> = vec![
        ("spaced", &linear, Parameterization::Eps, &eta),
        ("spaced", &zsnr, Parameterization::V, &eta),
        ("edm_euler", &zsnr, Parameterization::V, &churn),
        ("edm_heun", &zsnr, Parameterization::V, &churn),
        ("edm_dpm_2", &zsnr, Parameterization::V, &churn),
        ("edm_euler_a", &zsnr, Parameterization::V, &eta),
        ("edm_dpm_2_a", &zsnr, Parameterization::V, &eta),
        ("edm_dpm++_2s_a", &zsnr, Parameterization::V, &eta),
        ("edm_dpm++_sde", &zsnr, Parameterization::V, &eta),
        ("edm_dpm++_2m_sde", &zsnr, Parameterization::V, &eta),
        ("edm_dpm++_3m_sde", &zsnr, Parameterization::V, &eta),
    ];
    let mut report = Vec::new();
    for (name, schedule, param, options) in cases {
        let model = Toy::new(schedule, param);
        let error = |steps| {
            let (_, out, sampler) = run(name, steps, options, schedule, &model, 11);
            // The spaced sampler ends on E[x₀ | x at ᾱ[0]], slightly narrower than the data.
            let target_sd = match sampler {
                crate::Sampler::Spaced(_) => {
                    let a = schedule.alphas_cumprod()[0];
                    (a * S.powi(4) / (a * S * S + 1.0 - a)).sqrt()
                }
                _ => S,
            };
            let (mean, sd) = moments(&out);
            (mean - MU).abs().max((sd - target_sd).abs())
        };
        let [coarse, medium, fine] = [3, 30, 300].map(error);
        report.push(format!(
            "{name} {param:?}: {coarse:.2e} {medium:.2e} {fine:.2e}"
        ));
        assert!(
            medium < coarse && fine < medium && fine < 2e-2,
            "{name} ({param:?}) does not converge (errors at 3, 30, 300 steps):\n{}",
            report.join("\n")
        );
    }
}

#[test]
fn a_tile_covering_the_latent_equals_the_untiled_run() {
    let schedule = NoiseScheduleConfig::sd_v21().init();
    let toy = || Toy::new(&schedule, Parameterization::V);
    let cond = GuidedCond {
        cond: (),
        uncond: Some(()),
    };
    for name in ["spaced", "ddim", "dpm++_m2", "edm_dpm++_3m_sde", "edm_heun"] {
        let sampler = name
            .parse::<SamplerKind>()
            .map(|kind| SamplerConfig::new(kind, 4, &SamplerOptions::new()))
            .unwrap()
            .init(&schedule)
            .unwrap();
        let whole = ClassifierFree::new(toy(), 2.0);
        let tiled = ClassifierFree::new(Tiled::new(toy(), SIDE, 8).unwrap(), 2.0);
        let a = sampler.sample(
            &whole,
            start(3),
            &cond,
            &mut NoiseSource::seeded(4),
            &mut (),
        );
        let b = sampler.sample(
            &tiled,
            start(3),
            &cond,
            &mut NoiseSource::seeded(4),
            &mut (),
        );
        let err = max_err(&values(a), &values(b));
        assert!(err < 1e-4, "{name}: tiled differs by {err}");
    }
}

#[test]
fn the_observer_sees_every_step_and_can_stop() {
    let schedule = NoiseScheduleConfig::sd_v21().init();
    let model = Toy::new(&schedule, Parameterization::V);
    for name in SamplerKind::ALL {
        let sampler = SamplerConfig::new(name, 6, &SamplerOptions::new())
            .init(&schedule)
            .unwrap();
        let mut seen = Vec::new();
        let mut observer = |step: &crate::StepInfo<'_>| {
            seen.push((step.index, step.total));
            if step.index == 2 {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        };
        let _ = sampler.sample(
            &model,
            start(1),
            &(),
            &mut NoiseSource::seeded(2),
            &mut observer,
        );
        let total = sampler.steps();
        assert_eq!(seen, vec![(0, total), (1, total), (2, total)], "{name}");
    }
}

/// The latent as its own image: restoration guidance in "latent" space with an identity
/// autoencoder, so the guidance gradient is known in closed form.
struct Identity;

impl crate::GuidanceSpace for Identity {
    fn encode(
        &self,
        image: Tensor<4>,
        _noise: &mut NoiseSource,
    ) -> diffbir_core::Result<Tensor<4>> {
        Ok(image)
    }

    fn decode(&self, latent: Tensor<4>) -> diffbir_core::Result<Tensor<4>> {
        Ok(latent)
    }
}

/// The first step of the spaced sampler, guided or not: the latent after it and its `x̂₀`.
fn first_spaced_step(
    guidance: Option<&crate::RestorationGuidanceConfig>,
    target: &Tensor<4>,
    steps: usize,
) -> (Vec<f64>, Vec<f64>) {
    let schedule = NoiseScheduleConfig::sd_v2().init();
    let model = Toy::new(&schedule, Parameterization::Eps);
    let sampler = SamplerConfig::new(SamplerKind::Spaced, steps, &SamplerOptions::new())
        .init(&schedule)
        .unwrap();
    let mut seen = None;
    let mut first = |s: &crate::StepInfo<'_>| {
        seen = Some(values(s.x0_pred.clone()));
        std::ops::ControlFlow::Break(())
    };
    let mut noise = NoiseSource::seeded(9);
    let x = match guidance {
        None => sampler.sample(&model, start(3), &(), &mut noise, &mut first),
        Some(config) => {
            let guidance = config.init().unwrap();
            let g = crate::SpacedGuidance {
                guidance: &guidance,
                space: &Identity,
                target,
            };
            sampler
                .sample_guided(&model, start(3), &(), g, &mut noise, &mut first)
                .unwrap()
        }
    };
    (values(x), seen.unwrap())
}

#[test]
fn guidance_moves_the_posterior_mean_as_each_release_does() {
    use crate::{GuidanceDomain, GuidanceLoss, RestorationGuidanceConfig};
    let target = Tensor::<4>::full([1, 1, SIDE, SIDE], 0.25, &Device::flex());
    let (x_free, x0_free) = first_spaced_step(None, &target, 5);
    let n = (SIDE * SIDE) as f64;
    // −∂L/∂x̂₀ of L = mean((x̂₀ − target)²).
    let pull: Vec<f64> = x0_free.iter().map(|x0| -2.0 * (x0 - 0.25) / n).collect();

    let scale = 0.01;
    let v2 = RestorationGuidanceConfig::new(GuidanceLoss::Mse, GuidanceDomain::Latent, scale);
    let v1 = RestorationGuidanceConfig::v1(GuidanceLoss::Mse, GuidanceDomain::Latent, scale);
    // v2: the mean moves by the gradient times 3000·scale; v1: by half the gradient times
    // scale, once per repetition (five, pulling from an x̂₀ that moves a little each time).
    let (x_v2, _) = first_spaced_step(Some(&v2), &target, 5);
    let moved: Vec<f64> = x_v2.iter().zip(&x_free).map(|(g, f)| g - f).collect();
    let expected: Vec<f64> = pull.iter().map(|p| p * 3000.0 * scale).collect();
    assert!(
        max_err(&moved, &expected) < 1e-5,
        "v2 moved the mean wrongly"
    );

    let v1_once = RestorationGuidanceConfig {
        repeat: 1,
        ..v1.clone()
    };
    let (x_v1, _) = first_spaced_step(Some(&v1_once), &target, 5);
    let moved: Vec<f64> = x_v1.iter().zip(&x_free).map(|(g, f)| g - f).collect();
    let expected: Vec<f64> = pull.iter().map(|p| 0.5 * p * scale).collect();
    assert!(
        max_err(&moved, &expected) < 1e-6,
        "v1 moved the mean wrongly"
    );

    let off = RestorationGuidanceConfig::new(GuidanceLoss::Mse, GuidanceDomain::Latent, 0.0);
    assert_eq!(first_spaced_step(Some(&off), &target, 5).0, x_free);
}

#[test]
fn guidance_pulls_the_sample_towards_the_target() {
    use crate::{GuidanceDomain, GuidanceLoss, RestorationGuidanceConfig};
    let schedule = NoiseScheduleConfig::sd_v2().init();
    let target = Tensor::<4>::full([1, 1, SIDE, SIDE], -1.0, &Device::flex());
    let distance = |config: Option<&RestorationGuidanceConfig>, p: Parameterization| {
        let model = Toy::new(&schedule, p);
        let sampler = SamplerConfig::new(SamplerKind::Spaced, 10, &SamplerOptions::new())
            .init(&schedule)
            .unwrap();
        let mut noise = NoiseSource::seeded(5);
        let x = match config {
            None => sampler.sample(&model, start(1), &(), &mut noise, &mut ()),
            Some(config) => {
                let guidance = config.init().unwrap();
                let g = crate::SpacedGuidance {
                    guidance: &guidance,
                    space: &Identity,
                    target: &target,
                };
                sampler
                    .sample_guided(&model, start(1), &(), g, &mut noise, &mut ())
                    .unwrap()
            }
        };
        (x - target.clone()).abs().mean().into_scalar::<f32>()
    };
    for p in [Parameterization::Eps, Parameterization::V] {
        let free = distance(None, p);
        for config in [
            RestorationGuidanceConfig::new(GuidanceLoss::Mse, GuidanceDomain::Latent, 0.1),
            RestorationGuidanceConfig::v1(GuidanceLoss::Mse, GuidanceDomain::Latent, 200.0),
        ] {
            let guided = distance(Some(&config), p);
            assert!(
                guided < 0.5 * free,
                "{:?} {p:?}: {guided} not closer than {free}",
                config.variant
            );
        }
    }
}

#[test]
fn only_the_spaced_sampler_takes_restoration_guidance() {
    use crate::{GuidanceDomain, GuidanceLoss, RestorationGuidanceConfig};
    let schedule = NoiseScheduleConfig::sd_v2().init();
    let model = Toy::new(&schedule, Parameterization::Eps);
    let guidance = RestorationGuidanceConfig::new(GuidanceLoss::Mse, GuidanceDomain::Latent, 1.0)
        .init()
        .unwrap();
    let target = start(2);
    let g = crate::SpacedGuidance {
        guidance: &guidance,
        space: &Identity,
        target: &target,
    };
    let ddim = SamplerConfig::new(SamplerKind::Ddim, 4, &SamplerOptions::new())
        .init(&schedule)
        .unwrap();
    let err = ddim
        .sample_guided(
            &model,
            start(1),
            &(),
            g,
            &mut NoiseSource::seeded(0),
            &mut (),
        )
        .unwrap_err();
    assert!(err.to_string().contains("spaced"), "{err}");
}
