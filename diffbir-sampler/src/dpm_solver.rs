//! `dpm++_m2`: DPM-Solver++ multistep, second order
//! (`diffbir/sampler/dpms_sampler.py:L17-L101`).
//!
//! Lu et al., "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic Models"
//! (2022). Port of `XPixelGroup/DiffBIR@3f8b530:diffbir/sampler/dpms_sampler.py` and the parts
//! of `dpm_solver_pytorch.py` it uses: the discrete-time `NoiseScheduleVP` (with its clipping
//! of `λ < −5.1`), the continuous-time model wrapper, time-uniform steps, multistep order 2
//! with `lower_order_final` below 10 steps, no final denoising. The schedule is `float32`, as
//! in the reference, and so is the arithmetic on it.

use std::ops::ControlFlow;

use burn::config::Config;
use burn::tensor::Tensor;
use diffbir_core::{Error, NoiseSource, Result};

use crate::denoiser::{Denoiser, ModelTimesteps, Parameterization};
use crate::observer::{SampleObserver, StepInfo};
use crate::schedule::NoiseSchedule;

/// The `λ` below which the tail of the schedule is dropped (`numerical_clip_alpha`).
const CLIPPED_LAMBDA: f32 = -5.1;

/// Configuration of the [`DpmSolver`] sampler.
#[derive(Config, Debug)]
pub struct DpmSolverConfig {
    /// Number of steps (model evaluations); at least 2.
    pub steps: usize,
}

impl DpmSolverConfig {
    /// Builds the continuous-time schedule from `schedule`'s betas.
    ///
    /// Fails for fewer than 2 steps (the reference asserts `steps >= order`).
    pub fn init(&self, schedule: &NoiseSchedule) -> Result<DpmSolver> {
        if self.steps < 2 {
            return Err(Error::InvalidArgument {
                what: "sampler steps".into(),
                reason: format!(
                    "the second-order DPM-Solver++ needs at least 2 steps, got {}",
                    self.steps
                ),
            });
        }
        Ok(DpmSolver {
            steps: self.steps,
            vp: DiscreteVp::new(schedule.betas()),
        })
    }
}

/// DPM-Solver's `NoiseScheduleVP("discrete")`: `log α` interpolated piecewise-linearly over
/// `t_i = (i + 1)/N`, in `f32`.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscreteVp {
    log_alpha: Vec<f32>,
    t_array: Vec<f32>,
}

impl DiscreteVp {
    /// `log α_i = ½·Σ_{j≤i} log(1 − β_j)` of the `float32` betas (the cumulative sum
    /// accumulated in `f64`, as PyTorch's CPU `cumsum` does), with the trailing entries whose
    /// `λ < −5.1` dropped.
    pub fn new(betas: &[f64]) -> Self {
        let mut acc = 0.0f64;
        let mut log_alpha: Vec<f32> = betas
            .iter()
            .map(|&b| {
                acc += f64::from((1.0 - b as f32).ln());
                0.5 * (acc as f32)
            })
            .collect();
        // searchsorted(flip(λ), −5.1): how many trailing entries lie below the clip.
        let flipped: Vec<f32> = log_alpha.iter().rev().map(|&la| lambda(la)).collect();
        let drop = flipped.partition_point(|&l| l < CLIPPED_LAMBDA);
        log_alpha.truncate(log_alpha.len() - drop);
        let n = log_alpha.len();
        let t_array = torch_linspace_f32(0.0, 1.0, n + 1)[1..].to_vec();
        Self { log_alpha, t_array }
    }

    /// Number of discrete entries kept (`total_N`: 1000, or 986 for the zero-SNR schedule).
    pub fn total_n(&self) -> usize {
        self.log_alpha.len()
    }

    /// `log α_i`, `[total_N]`.
    pub fn log_alpha_array(&self) -> &[f32] {
        &self.log_alpha
    }

    /// `t_i = (i + 1)/N`, `[total_N]`.
    pub fn t_array(&self) -> &[f32] {
        &self.t_array
    }

    /// `log α(t)` (`marginal_log_mean_coeff`): piecewise-linear, extrapolated beyond the ends.
    pub fn log_mean_coeff(&self, t: f32) -> f32 {
        interpolate(t, &self.t_array, &self.log_alpha)
    }

    /// `α(t)`.
    pub fn alpha(&self, t: f32) -> f32 {
        self.log_mean_coeff(t).exp()
    }

    /// `σ(t) = √(1 − α(t)²)`.
    pub fn std(&self, t: f32) -> f32 {
        (1.0 - (2.0 * self.log_mean_coeff(t)).exp()).sqrt()
    }

    /// `λ(t) = log α(t) − log σ(t)`.
    pub fn lambda(&self, t: f32) -> f32 {
        lambda(self.log_mean_coeff(t))
    }

    /// The model time of a continuous time: `1000·(t − 1/N)`.
    pub fn model_time(&self, t: f32) -> f32 {
        (t - (1.0 / self.total_n() as f64) as f32) * 1000.0
    }

    /// The time-uniform grid `linspace(1, 1/N, steps + 1)` (`float32`).
    pub fn time_steps(&self, steps: usize) -> Vec<f32> {
        torch_linspace_f32(1.0, (1.0 / self.total_n() as f64) as f32, steps + 1)
    }
}

fn lambda(log_alpha: f32) -> f32 {
    let log_sigma = 0.5 * (1.0 - (2.0 * log_alpha).exp()).ln();
    log_alpha - log_sigma
}

/// `torch.linspace(start, end, steps)` in `float32` as PyTorch's CPU kernel computes it: the
/// first half counted from `start`, the second half from `end`, each value one fused
/// multiply-add (the kernel is compiled with floating-point contraction; this reproduces the
/// reference's time grids bit for bit).
pub(crate) fn torch_linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    let halfway = steps / 2;
    (0..steps)
        .map(|i| {
            if i < halfway {
                step.mul_add(i as f32, start)
            } else {
                (-step).mul_add((steps - i - 1) as f32, end)
            }
        })
        .collect()
}

/// DPM-Solver's `interpolate_fn` for one point: the segment of the keypoint `x` falls in
/// (the first or last segment outside the range), evaluated in `f32` as the reference does.
fn interpolate(x: f32, xp: &[f32], yp: &[f32]) -> f32 {
    let k = xp.len();
    // Position of x among the keypoints when sorted (x placed before equal keypoints).
    let pos = xp.partition_point(|&p| p < x);
    let j = pos.saturating_sub(1).min(k - 2);
    let (x0, x1, y0, y1) = (xp[j], xp[j + 1], yp[j], yp[j + 1]);
    y0 + (x - x0) * (y1 - y0) / (x1 - x0)
}

/// DPM-Solver++ (multistep, order 2), ready for one step count.
#[derive(Debug, Clone)]
pub struct DpmSolver {
    steps: usize,
    vp: DiscreteVp,
}

impl DpmSolver {
    /// The continuous-time schedule.
    pub fn schedule(&self) -> &DiscreteVp {
        &self.vp
    }

    /// Number of steps.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The data prediction `x̂₀ = (x − σ_t·ε)/α_t` at continuous time `t`; `v` outputs are
    /// turned into `ε = α_t·v + σ_t·x` per guidance branch, as the reference's wrapper does.
    fn data_prediction<D: Denoiser>(
        &self,
        model: &D,
        x: &Tensor<4>,
        t: f32,
        cond: &D::Cond,
    ) -> Tensor<4> {
        let [batch, _, _, _] = x.dims();
        let (alpha, sigma) = (self.vp.alpha(t), self.vp.std(t));
        let t_model = ModelTimesteps::new(self.vp.model_time(t), batch);
        let eps = match model.parameterization() {
            Parameterization::Eps => model.predict(x.clone(), &t_model, cond),
            Parameterization::V => model.predict_then(x.clone(), &t_model, cond, &|v| {
                v.mul_scalar(alpha) + x.clone().mul_scalar(sigma)
            }),
        };
        (x.clone() - eps.mul_scalar(sigma)).div_scalar(alpha)
    }

    /// DPM-Solver-1 (DDIM) from `s` to `t` with the data prediction `x0_s`.
    fn first_update(&self, x: Tensor<4>, s: f32, t: f32, x0_s: &Tensor<4>) -> Tensor<4> {
        let vp = &self.vp;
        let h = vp.lambda(t) - vp.lambda(s);
        let alpha_t = vp.log_mean_coeff(t).exp();
        let phi_1 = (-h).exp_m1();
        x.mul_scalar(vp.std(t) / vp.std(s)) - x0_s.clone().mul_scalar(alpha_t * phi_1)
    }

    /// Multistep DPM-Solver++(2) from `t_prev[1]` to `t`, with the data predictions at
    /// `t_prev = [older, newer]`.
    fn second_update(
        &self,
        x: Tensor<4>,
        x0_prev: [&Tensor<4>; 2],
        t_prev: [f32; 2],
        t: f32,
    ) -> Tensor<4> {
        let vp = &self.vp;
        let [x0_1, x0_0] = x0_prev;
        let (lambda_1, lambda_0, lambda_t) =
            (vp.lambda(t_prev[0]), vp.lambda(t_prev[1]), vp.lambda(t));
        let alpha_t = vp.log_mean_coeff(t).exp();
        let (sigma_0, sigma_t) = (vp.std(t_prev[1]), vp.std(t));
        let h_0 = lambda_0 - lambda_1;
        let h = lambda_t - lambda_0;
        let r0 = h_0 / h;
        let d1 = (x0_0.clone() - x0_1.clone()).mul_scalar(1.0 / r0);
        let phi_1 = (-h).exp_m1();
        x.mul_scalar(sigma_t / sigma_0)
            - x0_0.clone().mul_scalar(alpha_t * phi_1)
            - d1.mul_scalar(0.5 * (alpha_t * phi_1))
    }

    /// Runs the solver from `x_t` at `t = 1` to `t = 1/N` (the noise level of `ᾱ[0]`; there
    /// is no final denoising step). The model is evaluated once per step and not after the
    /// last one; no randomness is used.
    ///
    /// # Shapes
    /// - `x_t`: `[B, C, H, W]`; returns `[B, C, H, W]`
    pub fn sample<D: Denoiser>(
        &self,
        model: &D,
        x_t: Tensor<4>,
        cond: &D::Cond,
        _noise: &mut NoiseSource,
        observer: &mut impl SampleObserver,
    ) -> Tensor<4> {
        let total = self.steps;
        let times = self.vp.time_steps(total);
        let mut x = x_t;
        // History: the two latest (time, data prediction) pairs, oldest first.
        let mut t_prev = [times[0], times[0]];
        let first = self.data_prediction(model, &x, times[0], cond);
        let mut x0_prev = [first.clone(), first];
        for (step, &t) in times.iter().enumerate().skip(1) {
            let order = if step == 1 || (total < 10 && step == total) {
                1
            } else {
                2
            };
            let x0_used = x0_prev[1].clone();
            x = if order == 1 {
                self.first_update(x, t_prev[1], t, &x0_prev[1])
            } else {
                self.second_update(x, [&x0_prev[0], &x0_prev[1]], t_prev, t)
            };
            t_prev = [t_prev[1], t];
            if step < total {
                let next = self.data_prediction(model, &x, t, cond);
                x0_prev = [x0_prev[1].clone(), next];
            }
            let info = StepInfo {
                index: step - 1,
                total,
                t: self.vp.model_time(t_prev[0]),
                sigma: None,
                x: &x,
                x0_pred: &x0_used,
            };
            if observer.on_step(&info) == ControlFlow::Break(()) {
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
    fn the_zero_snr_tail_is_clipped() {
        let linear = DiscreteVp::new(NoiseScheduleConfig::sd_v2().init().betas());
        assert_eq!(linear.total_n(), 1000);
        assert!((linear.lambda(1.0) - -2.6820).abs() < 1e-3);
        let zsnr = DiscreteVp::new(NoiseScheduleConfig::sd_v21().init().betas());
        assert_eq!(zsnr.total_n(), 986);
        assert_eq!(zsnr.model_time(1.0 / 986.0), 0.0);
        assert!((zsnr.model_time(1.0) - 998.986).abs() < 1e-2);
    }

    #[test]
    fn linspace_ends_exactly() {
        let t = torch_linspace_f32(1.0, 0.001, 11);
        assert_eq!((t[0], t[10]), (1.0, 0.001));
        assert!((t[5] - 0.5005).abs() < 1e-6);
    }

    #[test]
    fn interpolation_extrapolates_linearly() {
        let xp = [1.0, 2.0, 4.0];
        let yp = [10.0, 20.0, 0.0];
        assert_eq!(interpolate(1.5, &xp, &yp), 15.0);
        assert_eq!(interpolate(0.0, &xp, &yp), 0.0);
        assert_eq!(interpolate(5.0, &xp, &yp), -10.0);
        assert_eq!(interpolate(2.0, &xp, &yp), 20.0);
    }
}
