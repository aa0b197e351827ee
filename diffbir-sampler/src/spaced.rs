//! `spaced`: the IDDPM ancestral sampler on a respaced schedule
//! (`diffbir/sampler/spaced_sampler.py:L14-L245`).
//!
//! Nichol & Dhariwal, "Improved Denoising Diffusion Probabilistic Models" (2021). Port of
//! `XPixelGroup/DiffBIR@3f8b530:diffbir/sampler/spaced_sampler.py` (`space_timesteps` from
//! openai/guided-diffusion's `respace.py`). The tables are computed in `f64` and used in `f32`,
//! as the reference registers them.

use std::convert::Infallible;
use std::ops::ControlFlow;

use burn::config::Config;
use burn::tensor::Tensor;
use diffbir_core::{Error, NoiseSource, Result};

use crate::denoiser::{Denoiser, ModelTimesteps, Parameterization};
use crate::observer::{SampleObserver, StepInfo};
use crate::schedule::{NoiseSchedule, cumprod};

/// Configuration of the [`Spaced`] sampler.
#[derive(Config, Debug)]
pub struct SpacedConfig {
    /// Number of steps (`space_timesteps(1000, str(steps))`).
    pub steps: usize,
}

impl SpacedConfig {
    /// Respaces `schedule` to the configured number of steps.
    ///
    /// Fails for fewer than 2 steps (the reference cannot build the table
    /// `posterior_log_variance_clipped` for one step) or more steps than the schedule has.
    pub fn init(&self, schedule: &NoiseSchedule) -> Result<Spaced> {
        if self.steps < 2 {
            return Err(invalid(format!(
                "the spaced sampler needs at least 2 steps, got {}",
                self.steps
            )));
        }
        let timesteps = space_timesteps(schedule.num_timesteps(), &self.steps.to_string())?;
        Ok(Spaced::from_timesteps(schedule, timesteps))
    }
}

fn invalid(reason: String) -> Error {
    Error::InvalidArgument {
        what: "sampler steps".into(),
        reason,
    }
}

/// The training timesteps the respaced schedule keeps, sorted (IDDPM's `space_timesteps`).
///
/// `section_counts` is a comma-separated list of step counts, one per equal section of the
/// schedule (`"10,15,20"`), or `"ddimN"` for DDIM's fixed stride. Fractional strides are
/// rounded half to even, as Python's `round`.
pub fn space_timesteps(num_timesteps: usize, section_counts: &str) -> Result<Vec<usize>> {
    let err = |reason: String| Error::InvalidArgument {
        what: "timestep spacing".into(),
        reason,
    };
    if let Some(desired) = section_counts.strip_prefix("ddim") {
        let desired: usize = desired
            .trim()
            .parse()
            .map_err(|_| err(format!("`{section_counts}` is not `ddim` and a count")))?;
        for stride in 1..num_timesteps {
            if num_timesteps.div_ceil(stride) == desired {
                return Ok((0..num_timesteps).step_by(stride).collect());
            }
        }
        return Err(err(format!(
            "cannot create exactly {desired} steps with an integer stride"
        )));
    }
    let counts = section_counts
        .split(',')
        .map(|c| c.trim().parse::<usize>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| err(format!("`{section_counts}` is not a list of step counts")))?;
    let size_per = num_timesteps / counts.len();
    let extra = num_timesteps % counts.len();
    let mut start = 0;
    let mut steps = Vec::new();
    for (i, &count) in counts.iter().enumerate() {
        let size = size_per + usize::from(i < extra);
        if size < count {
            return Err(err(format!(
                "cannot divide a section of {size} steps into {count}"
            )));
        }
        let frac_stride = if count <= 1 {
            1.0
        } else {
            (size - 1) as f64 / (count - 1) as f64
        };
        let mut cur = 0.0f64;
        for _ in 0..count {
            steps.push(start + cur.round_ties_even() as usize);
            cur += frac_stride;
        }
        start += size;
    }
    steps.sort_unstable();
    steps.dedup();
    Ok(steps)
}

/// The respaced tables, `f32` as the reference registers them; index `k` is the respaced step.
#[derive(Debug, Clone, PartialEq)]
pub struct SpacedTables {
    /// `√ᾱ'_k`.
    pub sqrt_alphas_cumprod: Vec<f32>,
    /// `√(1 − ᾱ'_k)`.
    pub sqrt_one_minus_alphas_cumprod: Vec<f32>,
    /// `√(1/ᾱ'_k)`.
    pub sqrt_recip_alphas_cumprod: Vec<f32>,
    /// `√(1/ᾱ'_k − 1)`.
    pub sqrt_recipm1_alphas_cumprod: Vec<f32>,
    /// Posterior variance ("fixed small").
    pub posterior_variance: Vec<f32>,
    /// Log of the posterior variance, its first entry replaced by the second.
    pub posterior_log_variance_clipped: Vec<f32>,
    /// Posterior mean coefficient of `x̂₀`.
    pub posterior_mean_coef1: Vec<f32>,
    /// Posterior mean coefficient of `x_t`.
    pub posterior_mean_coef2: Vec<f32>,
}

/// The spaced (IDDPM) ancestral sampler, ready for one step count.
#[derive(Debug, Clone)]
pub struct Spaced {
    timesteps: Vec<usize>,
    tables: SpacedTables,
}

impl Spaced {
    /// The sampler on the given (sorted, distinct) training timesteps.
    fn from_timesteps(schedule: &NoiseSchedule, timesteps: Vec<usize>) -> Self {
        let ac = schedule.alphas_cumprod();
        let mut last = 1.0f64;
        let betas: Vec<f64> = timesteps
            .iter()
            .map(|&t| {
                let beta = 1.0 - ac[t] / last;
                last = ac[t];
                beta
            })
            .collect();
        let alphas: Vec<f64> = betas.iter().map(|b| 1.0 - b).collect();
        let acp = cumprod(alphas.iter().copied());
        let acp_prev: Vec<f64> = std::iter::once(1.0)
            .chain(acp[..acp.len() - 1].iter().copied())
            .collect();
        let f32s = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
        let n = betas.len();
        let map = |f: &dyn Fn(usize) -> f64| (0..n).map(f).collect::<Vec<f64>>();
        let posterior_variance = map(&|k| betas[k] * (1.0 - acp_prev[k]) / (1.0 - acp[k]));
        let log_variance = map(&|k| posterior_variance[k.max(1)].ln());
        let tables = SpacedTables {
            sqrt_alphas_cumprod: f32s(map(&|k| acp[k].sqrt())),
            sqrt_one_minus_alphas_cumprod: f32s(map(&|k| (1.0 - acp[k]).sqrt())),
            sqrt_recip_alphas_cumprod: f32s(map(&|k| (1.0 / acp[k]).sqrt())),
            sqrt_recipm1_alphas_cumprod: f32s(map(&|k| (1.0 / acp[k] - 1.0).sqrt())),
            posterior_log_variance_clipped: f32s(log_variance),
            posterior_mean_coef1: f32s(map(&|k| betas[k] * acp_prev[k].sqrt() / (1.0 - acp[k]))),
            posterior_mean_coef2: f32s(map(&|k| {
                (1.0 - acp_prev[k]) * alphas[k].sqrt() / (1.0 - acp[k])
            })),
            posterior_variance: f32s(posterior_variance),
        };
        Self { timesteps, tables }
    }

    /// The training timesteps of the respaced steps, ascending (`τ_0 < … < τ_{S−1}`).
    pub fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    /// The respaced tables.
    pub fn tables(&self) -> &SpacedTables {
        &self.tables
    }

    /// Number of steps.
    pub fn steps(&self) -> usize {
        self.timesteps.len()
    }

    /// `x̂₀` from an `ε` prediction at respaced step `k`: `√(1/ᾱ')·x_t − √(1/ᾱ' − 1)·ε`.
    ///
    /// # Shapes
    /// - `x_t`, `eps`: `[B, C, H, W]`; returns `[B, C, H, W]`
    pub fn predict_x0_from_eps(&self, x_t: Tensor<4>, k: usize, eps: Tensor<4>) -> Tensor<4> {
        let t = &self.tables;
        x_t.mul_scalar(t.sqrt_recip_alphas_cumprod[k])
            - eps.mul_scalar(t.sqrt_recipm1_alphas_cumprod[k])
    }

    /// `x̂₀` from a `v` prediction at respaced step `k`: `√ᾱ'·x_t − √(1 − ᾱ')·v`.
    ///
    /// # Shapes
    /// - `x_t`, `v`: `[B, C, H, W]`; returns `[B, C, H, W]`
    pub fn predict_x0_from_v(&self, x_t: Tensor<4>, k: usize, v: Tensor<4>) -> Tensor<4> {
        let t = &self.tables;
        x_t.mul_scalar(t.sqrt_alphas_cumprod[k]) - v.mul_scalar(t.sqrt_one_minus_alphas_cumprod[k])
    }

    /// The posterior mean `coef1·x̂₀ + coef2·x_t` at respaced step `k`.
    ///
    /// # Shapes
    /// - `x0`, `x_t`: `[B, C, H, W]`; returns `[B, C, H, W]`
    pub fn posterior_mean(&self, x0: Tensor<4>, x_t: Tensor<4>, k: usize) -> Tensor<4> {
        let t = &self.tables;
        x0.mul_scalar(t.posterior_mean_coef1[k]) + x_t.mul_scalar(t.posterior_mean_coef2[k])
    }

    /// Runs the sampler from `x_t` (pure noise, or the `cond` start point) to a clean latent.
    ///
    /// Step `i` evaluates the model at the training timestep `τ_{S−1−i}` and samples the
    /// posterior with the respaced coefficients; a normal draw is made every step, the last
    /// one masked out, as the reference does.
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
        let unguided = self.run(model, x_t, cond, noise, observer, |x, x0, k, _| {
            Ok::<_, Infallible>((x0.clone(), self.posterior_mean(x0, x, k)))
        });
        match unguided {
            Ok(x) => x,
            Err(never) => match never {},
        }
    }

    /// The sampling loop; `mean_of(x_t, x̂₀, k, noise)` returns the step's (possibly guided)
    /// `x̂₀` and posterior mean.
    pub(crate) fn run<D: Denoiser, E>(
        &self,
        model: &D,
        x_t: Tensor<4>,
        cond: &D::Cond,
        noise: &mut NoiseSource,
        observer: &mut impl SampleObserver,
        mut mean_of: impl FnMut(
            Tensor<4>,
            Tensor<4>,
            usize,
            &mut NoiseSource,
        ) -> std::result::Result<(Tensor<4>, Tensor<4>), E>,
    ) -> std::result::Result<Tensor<4>, E> {
        let [batch, _, _, _] = x_t.dims();
        let total = self.steps();
        let mut x = x_t;
        for i in 0..total {
            let k = total - 1 - i;
            let t = ModelTimesteps::new(self.timesteps[k] as f32, batch);
            let out = model.predict(x.clone(), &t, cond);
            let x0 = match model.parameterization() {
                Parameterization::Eps => self.predict_x0_from_eps(x.clone(), k, out),
                Parameterization::V => self.predict_x0_from_v(x.clone(), k, out),
            };
            let (x0, mean) = mean_of(x, x0, k, noise)?;
            let z = noise.randn_like(&mean);
            x = if k > 0 {
                mean + z.mul_scalar(self.tables.posterior_variance[k].sqrt())
            } else {
                mean
            };
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
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::NoiseScheduleConfig;

    #[test]
    fn spacing_matches_the_reference_tables() {
        // The reference's values (`space_timesteps`,
        // `XPixelGroup/DiffBIR@3f8b530:diffbir/sampler/spaced_sampler.py:L14-L64`) and its own
        // examples.
        assert_eq!(
            space_timesteps(1000, "10").unwrap(),
            vec![0, 111, 222, 333, 444, 555, 666, 777, 888, 999]
        );
        let fifty = space_timesteps(1000, "50").unwrap();
        assert_eq!(&fifty[..8], &[0, 20, 41, 61, 82, 102, 122, 143]);
        assert_eq!(fifty.len(), 50);
        assert_eq!(
            space_timesteps(1000, "7").unwrap(),
            vec![0, 166, 333, 500, 666, 832, 999]
        );
        assert_eq!(
            space_timesteps(1000, "3,2").unwrap(),
            vec![0, 250, 499, 500, 999]
        );
        assert_eq!(space_timesteps(1000, "ddim25").unwrap().len(), 25);
        assert_eq!(space_timesteps(1000, "ddim25").unwrap()[1], 40);
        assert!(space_timesteps(10, "11").is_err());
        assert!(space_timesteps(1000, "ddim999").is_err());
    }

    #[test]
    fn one_step_is_refused() {
        let s = NoiseScheduleConfig::sd_v2().init();
        assert!(SpacedConfig::new(1).init(&s).is_err());
        assert_eq!(SpacedConfig::new(4).init(&s).unwrap().steps(), 4);
    }
}
