//! `ddim`: denoising diffusion implicit models (`diffbir/sampler/ddim_sampler.py:L13-L203`).
//!
//! Song, Meng & Ermon, "Denoising Diffusion Implicit Models" (ICLR 2021). Port of
//! `XPixelGroup/DiffBIR@3f8b530:diffbir/sampler/ddim_sampler.py` (CompVis' "uniform"
//! discretisation). DiffBIR always builds it with `eta = 0`.

use std::ops::ControlFlow;

use burn::config::Config;
use burn::tensor::Tensor;
use diffbir_core::{Error, NoiseSource, Result};

use crate::denoiser::{Denoiser, ModelTimesteps, Parameterization};
use crate::observer::{SampleObserver, StepInfo};
use crate::schedule::NoiseSchedule;

/// Configuration of the [`Ddim`] sampler.
#[derive(Config, Debug)]
pub struct DdimConfig {
    /// Requested number of steps. The "uniform" timesteps `range(0, 1000, 1000 // steps) + 1`
    /// give more steps than requested when `steps` does not divide 1000 (15 gives 16).
    pub steps: usize,
    /// Stochasticity (`0` is deterministic DDIM). DiffBIR's pipeline always uses 0; its
    /// `--eta` flag only reaches the EDM samplers.
    #[config(default = 0.0)]
    pub eta: f64,
}

impl DdimConfig {
    /// Computes the DDIM tables for `schedule`.
    ///
    /// Fails when `steps` is 0 or larger than the schedule, or when the uniform spacing
    /// reaches past the last training timestep: with 1000 timesteps, 3 or 9 steps give the
    /// timesteps `[1, 334, 667, 1000]` / `[…, 1000]`, where the reference raises an
    /// `IndexError`.
    pub fn init(&self, schedule: &NoiseSchedule) -> Result<Ddim> {
        let n = schedule.num_timesteps();
        let invalid = |reason: String| Error::InvalidArgument {
            what: "sampler steps".into(),
            reason,
        };
        if self.steps == 0 || self.steps > n {
            return Err(invalid(format!(
                "DDIM needs between 1 and {n} steps, got {}",
                self.steps
            )));
        }
        let stride = n / self.steps;
        let timesteps: Vec<usize> = (0..n).step_by(stride).map(|t| t + 1).collect();
        if let Some(&last) = timesteps.last()
            && last >= n
        {
            return Err(invalid(format!(
                "the uniform DDIM timesteps for {} steps (stride {stride}, plus one) reach \
                 timestep {last}, outside the {n}-step schedule; the reference fails here \
                 with an IndexError. Use a step count whose stride 1000 // steps does not \
                 divide 999",
                self.steps
            )));
        }
        let ac = schedule.alphas_cumprod();
        let alphas: Vec<f64> = timesteps.iter().map(|&t| ac[t]).collect();
        let alphas_prev: Vec<f64> = std::iter::once(ac[0])
            .chain(timesteps[..timesteps.len() - 1].iter().map(|&t| ac[t]))
            .collect();
        let sigmas: Vec<f64> = alphas
            .iter()
            .zip(&alphas_prev)
            .map(|(&a, &ap)| self.eta * ((1.0 - ap) / (1.0 - a) * (1.0 - a / ap)).sqrt())
            .collect();
        let f32s = |v: &[f64], f: fn(f64) -> f64| v.iter().map(|&x| f(x) as f32).collect();
        let tables = DdimTables {
            ddim_sigmas: f32s(&sigmas, |x| x),
            ddim_alphas: f32s(&alphas, |x| x),
            ddim_sqrt_alphas: f32s(&alphas, f64::sqrt),
            ddim_alphas_prev: f32s(&alphas_prev, |x| x),
            ddim_sqrt_one_minus_alphas: f32s(&alphas, |a| (1.0 - a).sqrt()),
        };
        Ok(Ddim { timesteps, tables })
    }
}

/// The DDIM tables, `f32` as the reference registers them; index `k` is the DDIM step.
#[derive(Debug, Clone, PartialEq)]
pub struct DdimTables {
    /// `σ_k = η·√((1 − a_prev)/(1 − a)·(1 − a/a_prev))`.
    pub ddim_sigmas: Vec<f32>,
    /// `a_k = ᾱ[τ_k]`.
    pub ddim_alphas: Vec<f32>,
    /// `√a_k`.
    pub ddim_sqrt_alphas: Vec<f32>,
    /// `a_prev,k = ᾱ[τ_{k−1}]`, `ᾱ[0]` for `k = 0`.
    pub ddim_alphas_prev: Vec<f32>,
    /// `√(1 − a_k)`.
    pub ddim_sqrt_one_minus_alphas: Vec<f32>,
}

/// The DDIM sampler, ready for one step count.
#[derive(Debug, Clone)]
pub struct Ddim {
    timesteps: Vec<usize>,
    tables: DdimTables,
}

impl Ddim {
    /// The model timesteps of the steps, ascending (`[1, 101, …, 901]` for 10 steps).
    pub fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    /// The DDIM tables.
    pub fn tables(&self) -> &DdimTables {
        &self.tables
    }

    /// Number of steps (may exceed the requested count, see [`DdimConfig::steps`]).
    pub fn steps(&self) -> usize {
        self.timesteps.len()
    }

    /// `ε` from a `v` prediction at DDIM step `k`: `√a_k·v + √(1 − a_k)·x_t`.
    ///
    /// # Shapes
    /// - `x_t`, `v`: `[B, C, H, W]`; returns `[B, C, H, W]`
    pub fn eps_from_v(&self, x_t: Tensor<4>, k: usize, v: Tensor<4>) -> Tensor<4> {
        v.mul_scalar(self.tables.ddim_sqrt_alphas[k])
            + x_t.mul_scalar(self.tables.ddim_sqrt_one_minus_alphas[k])
    }

    /// Runs the sampler from `x_t` down to the noise level of `ᾱ[0]` (the CompVis DDIM
    /// endpoint: the result is not denoised further).
    ///
    /// A normal draw is made every step, also when `η = 0`, as the reference does.
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
        let [batch, _, _, _] = x_t.dims();
        let total = self.steps();
        let tb = &self.tables;
        let mut x = x_t;
        for i in 0..total {
            let k = total - 1 - i;
            let t = ModelTimesteps::new(self.timesteps[k] as f32, batch);
            let out = model.predict(x.clone(), &t, cond);
            let eps = match model.parameterization() {
                Parameterization::Eps => out,
                Parameterization::V => self.eps_from_v(x.clone(), k, out),
            };
            let (a_t, a_prev, sigma) =
                (tb.ddim_alphas[k], tb.ddim_alphas_prev[k], tb.ddim_sigmas[k]);
            let x0 = (x - eps.clone().mul_scalar(tb.ddim_sqrt_one_minus_alphas[k]))
                .div_scalar(a_t.sqrt());
            let dir_xt = eps.mul_scalar(((1.0 - a_prev) - sigma * sigma).sqrt());
            let z = noise.randn_like(&x0).mul_scalar(sigma);
            x = x0.clone().mul_scalar(a_prev.sqrt()) + dir_xt + z;
            let step = StepInfo {
                index: i,
                total,
                t: t.value(),
                sigma: None,
                x: &x,
                x0_pred: &x0,
            };
            if observer.on_step(&step) == ControlFlow::Break(()) {
                break;
            }
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::NoiseScheduleConfig;

    #[test]
    fn uniform_timesteps_and_their_quirks() {
        let s = NoiseScheduleConfig::sd_v2().init();
        let ten = DdimConfig::new(10).init(&s).unwrap();
        assert_eq!(
            ten.timesteps(),
            &[1, 101, 201, 301, 401, 501, 601, 701, 801, 901]
        );
        assert_eq!(DdimConfig::new(15).init(&s).unwrap().steps(), 16);
        for bad in [0, 3, 9, 1001] {
            assert!(DdimConfig::new(bad).init(&s).is_err(), "{bad} steps");
        }
        assert!(ten.tables().ddim_sigmas.iter().all(|&s| s == 0.0));
    }
}
