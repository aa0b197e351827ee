//! The EDM / k-diffusion sampler family (`edm_*`, `diffbir/sampler/edm_sampler.py:L26-L188`).
//!
//! Karras et al., "Elucidating the Design Space of Diffusion-Based Generative Models" (2022);
//! the solvers are Katherine Crowson's k-diffusion (`sampling.py`), as vendored in
//! `XPixelGroup/DiffBIR@3f8b530:diffbir/sampler/k_diffusion.py` and driven by
//! `diffbir/sampler/edm_sampler.py`. One file per solver; this module holds what they share:
//! DiffBIR's sigma table (not Karras'), the denoiser `D(x, σ)` built on the network, the
//! churn and ancestral-step helpers.
//!
//! The noise levels are `float32` scalars in the reference (0-dimensional tensors), and all
//! scalar arithmetic on them is done in `f32` here too, in the same order.

mod dpm_2;
mod dpm_2_ancestral;
mod dpmpp_2m;
mod dpmpp_2m_sde;
mod dpmpp_2s_ancestral;
mod dpmpp_3m_sde;
mod dpmpp_sde;
mod euler;
mod euler_ancestral;
mod heun;
mod lms;

use std::ops::ControlFlow;

use burn::config::Config;
use burn::tensor::Tensor;
use diffbir_core::{Error, NoiseSource, Result};

use crate::denoiser::{Denoiser, ModelTimesteps, Parameterization};
use crate::observer::{SampleObserver, StepInfo};
use crate::schedule::{NoiseSchedule, numpy_linspace};

/// `ᾱ` forced at the first EDM timestep (`alphas_cumprod[0] = 1e-8`), which makes the first
/// `σ` about 10⁴ for every schedule.
const FIRST_ALPHA_CUMPROD: f64 = 1e-8;

/// Settings of the churn-capable solvers (`edm_euler`, `edm_heun`, `edm_dpm_2`).
///
/// Defaults are DiffBIR's command-line defaults (k-diffusion's `s_tmax` default is ∞).
#[derive(Config, Debug)]
pub struct EdmChurnConfig {
    /// Number of steps.
    pub steps: usize,
    /// Total churn `S_churn`: each step raises `σ` by `γ = min(S_churn/N, √2 − 1)`.
    #[config(default = 0.0)]
    pub s_churn: f64,
    /// Churn only for `σ ≥ s_tmin`.
    #[config(default = 0.0)]
    pub s_tmin: f64,
    /// Churn only for `σ ≤ s_tmax`.
    #[config(default = 300.0)]
    pub s_tmax: f64,
    /// Scale of the churn noise.
    #[config(default = 1.0)]
    pub s_noise: f64,
}

/// Settings of the noise-injecting solvers (`edm_euler_a`, `edm_dpm_2_a`, `edm_dpm++_2s_a`,
/// `edm_dpm++_sde`, `edm_dpm++_2m_sde`, `edm_dpm++_3m_sde`).
#[derive(Config, Debug)]
pub struct EdmAncestralConfig {
    /// Number of steps.
    pub steps: usize,
    /// Amount of fresh noise per step (0: deterministic).
    #[config(default = 1.0)]
    pub eta: f64,
    /// Scale of the fresh noise.
    #[config(default = 1.0)]
    pub s_noise: f64,
}

/// Settings of `edm_lms`.
#[derive(Config, Debug)]
pub struct EdmLmsConfig {
    /// Number of steps.
    pub steps: usize,
    /// Number of past derivatives combined (DiffBIR's default 1 makes it Euler).
    #[config(default = 1)]
    pub order: usize,
}

/// Settings of `edm_dpm++_2m`, which only takes a step count.
#[derive(Config, Debug)]
pub struct EdmConfig {
    /// Number of steps.
    pub steps: usize,
}

/// Which k-diffusion solver, with its parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EdmSolver {
    /// `sample_euler`.
    Euler(Churn),
    /// `sample_euler_ancestral`.
    EulerAncestral(Ancestral),
    /// `sample_heun`.
    Heun(Churn),
    /// `sample_dpm_2`.
    Dpm2(Churn),
    /// `sample_dpm_2_ancestral`.
    Dpm2Ancestral(Ancestral),
    /// `sample_lms` with this order.
    Lms(usize),
    /// `sample_dpmpp_2s_ancestral`.
    DpmPp2sAncestral(Ancestral),
    /// `sample_dpmpp_sde` (`r = 1/2`).
    DpmPpSde(Ancestral),
    /// `sample_dpmpp_2m`.
    DpmPp2m,
    /// `sample_dpmpp_2m_sde` (midpoint).
    DpmPp2mSde(Ancestral),
    /// `sample_dpmpp_3m_sde`.
    DpmPp3mSde(Ancestral),
}

/// Churn parameters (Karras et al.'s `S_churn`, `S_tmin`, `S_tmax`, `S_noise`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Churn {
    /// `S_churn`.
    pub s_churn: f64,
    /// `S_tmin`.
    pub s_tmin: f64,
    /// `S_tmax`.
    pub s_tmax: f64,
    /// `S_noise`.
    pub s_noise: f64,
}

impl From<&EdmChurnConfig> for Churn {
    fn from(c: &EdmChurnConfig) -> Self {
        Self {
            s_churn: c.s_churn,
            s_tmin: c.s_tmin,
            s_tmax: c.s_tmax,
            s_noise: c.s_noise,
        }
    }
}

/// Ancestral noise parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ancestral {
    /// `η`.
    pub eta: f64,
    /// `S_noise`.
    pub s_noise: f64,
}

impl From<&EdmAncestralConfig> for Ancestral {
    fn from(c: &EdmAncestralConfig) -> Self {
        Self {
            eta: c.eta,
            s_noise: c.s_noise,
        }
    }
}

/// DiffBIR's EDM noise levels: `σ_i = √((1 − ā_i)/ā_i)` at the training timesteps
/// `τ_i = trunc(linspace(999, 0, S, endpoint=False))`, with `ā_0` forced to `1e-8`, then
/// `σ_S = 0` (`EDMSampler.make_schedule`; not the Karras schedule).
///
/// The forced start `σ_0 ≈ 10⁴` suits the zero-terminal-SNR v model of DiffBIR v2.1 (its
/// last timestep has `σ = ∞`). For eps models (v1, v2) it lies far beyond the last training
/// timestep (`σ ≈ 14.6`): the first denoised estimate is then about `σ_0·√(ᾱ₉₉₉/(1 − ᾱ₉₉₉))`
/// ≈ 680 times too large, and the reference's EDM samples are unusable (its own fixtures
/// reach `|z| ≈ 2.5·10⁴`). This port reproduces that behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct EdmSchedule {
    sigmas: Vec<f32>,
    timesteps: Vec<i64>,
}

impl EdmSchedule {
    /// The table for `steps` steps.
    pub fn new(schedule: &NoiseSchedule, steps: usize) -> Result<Self> {
        if steps == 0 || steps > schedule.num_timesteps() {
            return Err(Error::InvalidArgument {
                what: "sampler steps".into(),
                reason: format!(
                    "the EDM samplers need between 1 and {} steps, got {steps}",
                    schedule.num_timesteps()
                ),
            });
        }
        let last = (schedule.num_timesteps() - 1) as f64;
        let mut timesteps: Vec<i64> = numpy_linspace(last, 0.0, steps, false)
            .into_iter()
            .map(|t| t as i64)
            .collect();
        let ac = schedule.alphas_cumprod();
        let mut sigmas: Vec<f32> = timesteps
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                let a = if i == 0 {
                    FIRST_ALPHA_CUMPROD
                } else {
                    ac[t as usize]
                };
                ((1.0 - a) / a).sqrt() as f32
            })
            .collect();
        sigmas.push(0.0);
        timesteps.push(0);
        Ok(Self { sigmas, timesteps })
    }

    /// `σ_0 … σ_S` (`σ_S = 0`), `float32`.
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    /// The training timestep of each `σ_i` (`τ_S = 0`).
    pub fn timesteps(&self) -> &[i64] {
        &self.timesteps
    }

    /// The model timestep for a noise level: that of the **nearest schedule entry** (the
    /// first one on ties), so intermediate levels of two-stage solvers are quantised to the
    /// table, not to the 1000 training steps.
    pub fn timestep_for(&self, sigma: f32) -> i64 {
        let mut best = 0;
        for (j, &s) in self.sigmas.iter().enumerate() {
            if (sigma - s).abs() < (sigma - self.sigmas[best]).abs() {
                best = j;
            }
        }
        self.timesteps[best]
    }
}

/// An EDM sampler: a solver on DiffBIR's sigma table.
#[derive(Debug, Clone)]
pub struct Edm {
    schedule: EdmSchedule,
    solver: EdmSolver,
}

impl Edm {
    /// The solver on the sigma table of `steps` steps.
    pub fn new(schedule: &NoiseSchedule, steps: usize, solver: EdmSolver) -> Result<Self> {
        if let EdmSolver::Lms(0) = solver {
            return Err(Error::InvalidArgument {
                what: "lms order".into(),
                reason: "the LMS order must be at least 1".into(),
            });
        }
        // Their one step would go straight to σ = 0, where the reference's loop reads a step
        // size it never set (k-diffusion's `h`) and fails.
        if steps < 2 && matches!(solver, EdmSolver::DpmPp2mSde(_) | EdmSolver::DpmPp3mSde(_)) {
            return Err(Error::InvalidArgument {
                what: "sampler steps".into(),
                reason: "edm_dpm++_2m_sde and edm_dpm++_3m_sde need at least 2 steps".into(),
            });
        }
        Ok(Self {
            schedule: EdmSchedule::new(schedule, steps)?,
            solver,
        })
    }

    /// The sigma table.
    pub fn schedule(&self) -> &EdmSchedule {
        &self.schedule
    }

    /// The solver.
    pub fn solver(&self) -> EdmSolver {
        self.solver
    }

    /// Number of steps.
    pub fn steps(&self) -> usize {
        self.schedule.sigmas.len() - 1
    }

    /// Runs the solver from the unit-variance `x_t`, scaled by `√(1 + σ_0²)` first, down to
    /// `σ = 0`.
    ///
    /// # Shapes
    /// - `x_t`: `[B, C, H, W]`; returns `[B, C, H, W]`
    pub fn sample<D: Denoiser>(
        &self,
        model: &D,
        x_t: Tensor<4>,
        cond: &D::Cond,
        noise: &mut NoiseSource,
        observer: &mut impl SampleObserver,
    ) -> Tensor<4> {
        let s0 = self.schedule.sigmas[0];
        let x = x_t.mul_scalar((1.0 + s0 * s0).sqrt());
        let mut run = Run {
            den: Den {
                model,
                cond,
                schedule: &self.schedule,
            },
            noise,
            observer,
        };
        match self.solver {
            EdmSolver::Euler(c) => euler::sample(&mut run, x, c),
            EdmSolver::EulerAncestral(a) => euler_ancestral::sample(&mut run, x, a),
            EdmSolver::Heun(c) => heun::sample(&mut run, x, c),
            EdmSolver::Dpm2(c) => dpm_2::sample(&mut run, x, c),
            EdmSolver::Dpm2Ancestral(a) => dpm_2_ancestral::sample(&mut run, x, a),
            EdmSolver::Lms(order) => lms::sample(&mut run, x, order),
            EdmSolver::DpmPp2sAncestral(a) => dpmpp_2s_ancestral::sample(&mut run, x, a),
            EdmSolver::DpmPpSde(a) => dpmpp_sde::sample(&mut run, x, a),
            EdmSolver::DpmPp2m => dpmpp_2m::sample(&mut run, x),
            EdmSolver::DpmPp2mSde(a) => dpmpp_2m_sde::sample(&mut run, x, a),
            EdmSolver::DpmPp3mSde(a) => dpmpp_3m_sde::sample(&mut run, x, a),
        }
    }
}

/// The denoiser `D(x, σ) = c_skip·x + c_out·F(c_in·x, t(σ))` on the network
/// (`EDMSampler.convert_to_denoiser`).
struct Den<'a, D: Denoiser> {
    model: &'a D,
    cond: &'a D::Cond,
    schedule: &'a EdmSchedule,
}

impl<D: Denoiser> Den<'_, D> {
    fn denoise(&self, x: &Tensor<4>, sigma: f32) -> Tensor<4> {
        let [batch, _, _, _] = x.dims();
        let norm = (sigma * sigma + 1.0).sqrt();
        let (c_skip, c_out, c_in) = match self.model.parameterization() {
            Parameterization::Eps => (1.0, -sigma, 1.0 / norm),
            Parameterization::V => (1.0 / (sigma * sigma + 1.0), -sigma / norm, 1.0 / norm),
        };
        let t = ModelTimesteps::new(self.schedule.timestep_for(sigma) as f32, batch);
        self.model
            .predict_then(x.clone().mul_scalar(c_in), &t, self.cond, &|out| {
                out.mul_scalar(c_out) + x.clone().mul_scalar(c_skip)
            })
    }
}

/// What a solver loop works with: the denoiser, the noise, the observer.
struct Run<'a, D: Denoiser, O: SampleObserver> {
    den: Den<'a, D>,
    noise: &'a mut NoiseSource,
    observer: &'a mut O,
}

impl<D: Denoiser, O: SampleObserver> Run<'_, D, O> {
    fn sigmas(&self) -> &[f32] {
        &self.den.schedule.sigmas
    }

    fn steps(&self) -> usize {
        self.sigmas().len() - 1
    }

    fn denoise(&self, x: &Tensor<4>, sigma: f32) -> Tensor<4> {
        self.den.denoise(x, sigma)
    }

    fn randn_like(&mut self, x: &Tensor<4>) -> Tensor<4> {
        self.noise.randn_like(x)
    }

    /// Reports step `i` (its first evaluation at `sigma_hat`); `true` to stop.
    fn report(&mut self, i: usize, sigma_hat: f32, x: &Tensor<4>, denoised: &Tensor<4>) -> bool {
        let info = StepInfo {
            index: i,
            total: self.steps(),
            t: self.den.schedule.timestep_for(sigma_hat) as f32,
            sigma: Some(self.sigmas()[i]),
            x,
            x0_pred: denoised,
        };
        self.observer.on_step(&info) == ControlFlow::Break(())
    }
}

/// The Karras ODE derivative `(x − D)/σ`.
fn to_d(x: &Tensor<4>, sigma: f32, denoised: &Tensor<4>) -> Tensor<4> {
    (x.clone() - denoised.clone()).div_scalar(sigma)
}

/// `(σ_down, σ_up)` of an ancestral step from `sigma_from` to `sigma_to`
/// (`get_ancestral_step`); `η = 0` gives `(σ_to, 0)`.
fn ancestral_step(sigma_from: f32, sigma_to: f32, eta: f64) -> (f32, f32) {
    if eta == 0.0 {
        return (sigma_to, 0.0);
    }
    let (from2, to2) = (sigma_from * sigma_from, sigma_to * sigma_to);
    let candidate = eta as f32 * (to2 * (from2 - to2) / from2).sqrt();
    let sigma_up = if candidate < sigma_to {
        candidate
    } else {
        sigma_to
    };
    let sigma_down = (to2 - sigma_up * sigma_up).sqrt();
    (sigma_down, sigma_up)
}

/// `t = −log σ`.
fn t_fn(sigma: f32) -> f32 {
    -sigma.ln()
}

/// `σ = e^{−t}`.
fn sigma_fn(t: f32) -> f32 {
    (-t).exp()
}

/// `torch.lerp(a, b, 0.5)` as PyTorch computes it for a weight of 0.5: `b − (b − a)·0.5`.
fn lerp_half(a: f32, b: f32) -> f32 {
    b - (b - a) * (1.0 - 0.5)
}

impl Churn {
    /// One churn step at `σ_i` of `n` steps: draws the churn noise (always, as the reference
    /// does), raises `σ` to `σ̂ = σ(1 + γ)` and adds the matching noise when `γ > 0`.
    /// Returns the new `x` and `σ̂`.
    fn apply(
        &self,
        x: Tensor<4>,
        sigma: f32,
        n: usize,
        noise: &mut NoiseSource,
    ) -> (Tensor<4>, f32) {
        let in_range = self.s_tmin as f32 <= sigma && sigma <= self.s_tmax as f32;
        let gamma = if in_range {
            (self.s_churn / n as f64).min(2f64.powf(0.5) - 1.0)
        } else {
            0.0
        };
        let eps = noise.randn_like(&x).mul_scalar(self.s_noise);
        let sigma_hat = sigma * (gamma + 1.0) as f32;
        let x = if gamma > 0.0 {
            x + eps.mul_scalar((sigma_hat * sigma_hat - sigma * sigma).sqrt())
        } else {
            x
        };
        (x, sigma_hat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::NoiseScheduleConfig;

    #[test]
    fn sigma_tables_match_the_reference() {
        // The reference's values (S = 10) of `EDMSampler.make_schedule`
        // (`XPixelGroup/DiffBIR@3f8b530:diffbir/sampler/edm_sampler.py:L83-L96`).
        let tau = [999, 899, 799, 699, 599, 499, 399, 299, 199, 99, 0];
        let linear = EdmSchedule::new(&NoiseScheduleConfig::sd_v2().init(), 10).unwrap();
        assert_eq!(linear.timesteps(), &tau);
        let expected = [
            10000.0, 8.3028, 5.0878, 3.3211, 2.2765, 1.6129, 1.1606, 0.8299, 0.5693, 0.3417, 0.0,
        ];
        for (s, e) in linear.sigmas().iter().zip(expected) {
            assert!((s - e).abs() <= 1e-4 * e + 1e-6, "{s} vs {e}");
        }
        let zsnr = EdmSchedule::new(&NoiseScheduleConfig::sd_v21().init(), 10).unwrap();
        assert!((zsnr.sigmas()[1] - 18.1300).abs() < 1e-3);
        assert_eq!(zsnr.timestep_for(10000.0), 999);
        assert_eq!(zsnr.timestep_for(15.0), 899);
        assert_eq!(zsnr.timestep_for(12.0), 799);
        assert_eq!(zsnr.timestep_for(0.0), 0);
        assert!(EdmSchedule::new(&NoiseScheduleConfig::sd_v2().init(), 0).is_err());
    }

    #[test]
    fn ancestral_steps() {
        assert_eq!(ancestral_step(2.0, 1.0, 0.0), (1.0, 0.0));
        let (down, up) = ancestral_step(2.0, 1.0, 1.0);
        assert!((up - 0.75f32.sqrt()).abs() < 1e-6);
        assert!((down * down + up * up - 1.0).abs() < 1e-6);
        assert_eq!(ancestral_step(2.0, 0.0, 1.0), (0.0, 0.0));
    }
}
