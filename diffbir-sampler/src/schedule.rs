//! The training noise schedule of the latent diffusion model
//! (`diffbir/model/gaussian_diffusion.py:L9-L122`).
//!
//! Port of `XPixelGroup/DiffBIR@3f8b530:diffbir/model/gaussian_diffusion.py` (`Diffusion`,
//! `make_beta_schedule("linear")`, `enforce_zero_terminal_snr`). The tables are computed in
//! `f64` as the reference does with NumPy; the buffers the reference registers as `float32`
//! tensors (`sqrt_alphas_cumprod`, `sqrt_one_minus_alphas_cumprod`) are kept in `f32`.

use burn::config::Config;
use burn::tensor::Tensor;
use diffbir_core::{Error, Result};

use crate::denoiser::{Parameterization, per_item};

/// Configuration of a [`NoiseSchedule`]: the SD "scaled linear" betas
/// (`configs/inference/diffusion*.yaml`).
#[derive(Config, Debug)]
pub struct NoiseScheduleConfig {
    /// Number of training timesteps.
    #[config(default = 1000)]
    pub timesteps: usize,
    /// First beta (the betas are linear in `√β`).
    #[config(default = 0.00085)]
    pub linear_start: f64,
    /// Last beta.
    #[config(default = 0.012)]
    pub linear_end: f64,
    /// Rescale to zero terminal SNR (Lin et al., "Common Diffusion Noise Schedules and Sample
    /// Steps are Flawed", 2023), as the v2.1 model was trained.
    #[config(default = false)]
    pub zero_snr: bool,
    /// What the model trained on this schedule predicts.
    #[config(default = "Parameterization::Eps")]
    pub parameterization: Parameterization,
}

impl NoiseScheduleConfig {
    /// The most training timesteps a schedule may have: its tables (and every sampler's)
    /// hold a few numbers per timestep, and configurations come from users' files.
    pub const MAX_TIMESTEPS: usize = 100_000;

    /// SD 2.1-base as used by DiffBIR v1 and v2 (`configs/inference/diffusion.yaml`): eps.
    pub fn sd_v2() -> Self {
        Self::new()
    }

    /// DiffBIR v2.1 (`configs/inference/diffusion_v2.1.yaml`): zero terminal SNR, v.
    pub fn sd_v21() -> Self {
        Self::new()
            .with_zero_snr(true)
            .with_parameterization(Parameterization::V)
    }

    /// Checks the configuration (it may come from a user's file); [`init`](Self::init)
    /// requires it to hold: 2 to [`MAX_TIMESTEPS`](Self::MAX_TIMESTEPS) timesteps, beta bounds in `(0, 1)`.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| {
            Err(Error::InvalidArgument {
                what: "noise schedule config".into(),
                reason,
            })
        };
        if !(2..=Self::MAX_TIMESTEPS).contains(&self.timesteps) {
            return bad(format!(
                "timesteps must lie in 2..={} (SD uses 1000), got {}",
                Self::MAX_TIMESTEPS,
                self.timesteps
            ));
        }
        for (name, beta) in [
            ("linear_start", self.linear_start),
            ("linear_end", self.linear_end),
        ] {
            if !(beta > 0.0 && beta < 1.0) {
                return bad(format!("{name} must lie in (0, 1), got {beta}"));
            }
        }
        Ok(())
    }

    /// Computes the schedule.
    ///
    /// # Panics
    ///
    /// If [`validate`](Self::validate) fails.
    pub fn init(&self) -> NoiseSchedule {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let mut betas: Vec<f64> = numpy_linspace(
            self.linear_start.powf(0.5),
            self.linear_end.powf(0.5),
            self.timesteps,
            true,
        )
        .into_iter()
        .map(|b| b * b)
        .collect();
        if self.zero_snr {
            betas = enforce_zero_terminal_snr(&betas);
        }
        let alphas_cumprod = cumprod(betas.iter().map(|b| 1.0 - b));
        NoiseSchedule {
            betas,
            alphas_cumprod,
            parameterization: self.parameterization,
        }
    }
}

/// The betas and `ᾱ` of the training schedule, with the forward process and `v` target.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseSchedule {
    betas: Vec<f64>,
    alphas_cumprod: Vec<f64>,
    parameterization: Parameterization,
}

impl NoiseSchedule {
    /// `β_i`, `f64` (what the reference hands to its samplers).
    pub fn betas(&self) -> &[f64] {
        &self.betas
    }

    /// `ᾱ_i = Π_{j≤i}(1 − β_j)`, `f64`.
    pub fn alphas_cumprod(&self) -> &[f64] {
        &self.alphas_cumprod
    }

    /// Number of training timesteps.
    pub fn num_timesteps(&self) -> usize {
        self.betas.len()
    }

    /// What a model trained on this schedule predicts.
    pub fn parameterization(&self) -> Parameterization {
        self.parameterization
    }

    /// The `float32` buffer `sqrt_alphas_cumprod`.
    pub fn sqrt_alphas_cumprod(&self) -> Vec<f32> {
        self.alphas_cumprod
            .iter()
            .map(|a| a.sqrt() as f32)
            .collect()
    }

    /// The `float32` buffer `sqrt_one_minus_alphas_cumprod`.
    pub fn sqrt_one_minus_alphas_cumprod(&self) -> Vec<f32> {
        self.alphas_cumprod
            .iter()
            .map(|a| (1.0 - a).sqrt() as f32)
            .collect()
    }

    fn gather(&self, table: &[f32], t: &[usize], batch: usize) -> Vec<f32> {
        assert_eq!(
            t.len(),
            batch,
            "one timestep per batch item: got {} for a batch of {batch}",
            t.len()
        );
        t.iter()
            .map(|&t| {
                assert!(
                    t < table.len(),
                    "timestep {t} is outside the {}-step schedule",
                    table.len()
                );
                table[t]
            })
            .collect()
    }

    /// Noises `x0` to timestep `t` (one per batch item): `√ᾱ_t·x0 + √(1−ᾱ_t)·noise`.
    ///
    /// # Shapes
    /// - `x0`, `noise`: `[B, C, H, W]`; `t`: `B` training timesteps
    /// - returns `[B, C, H, W]`
    pub fn q_sample(&self, x0: Tensor<4>, t: &[usize], noise: Tensor<4>) -> Tensor<4> {
        let [b, _, _, _] = x0.dims();
        let device = x0.device();
        let a = per_item(&self.gather(&self.sqrt_alphas_cumprod(), t, b), &device);
        let s = per_item(
            &self.gather(&self.sqrt_one_minus_alphas_cumprod(), t, b),
            &device,
        );
        a * x0 + s * noise
    }

    /// The v-prediction target `√ᾱ_t·noise − √(1−ᾱ_t)·x0`.
    ///
    /// # Shapes
    /// - `x0`, `noise`: `[B, C, H, W]`; `t`: `B` training timesteps
    /// - returns `[B, C, H, W]`
    pub fn get_v(&self, x0: Tensor<4>, noise: Tensor<4>, t: &[usize]) -> Tensor<4> {
        let [b, _, _, _] = x0.dims();
        let device = x0.device();
        let a = per_item(&self.gather(&self.sqrt_alphas_cumprod(), t, b), &device);
        let s = per_item(
            &self.gather(&self.sqrt_one_minus_alphas_cumprod(), t, b),
            &device,
        );
        a * noise - s * x0
    }
}

/// `numpy.linspace(start, stop, num, endpoint)` in `f64`, rounding as NumPy does
/// (`i·step + start`, the last value set to `stop` when `endpoint`).
pub(crate) fn numpy_linspace(start: f64, stop: f64, num: usize, endpoint: bool) -> Vec<f64> {
    let div = if endpoint { num.saturating_sub(1) } else { num };
    let step = (stop - start) / div as f64;
    let mut y: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    if endpoint && num > 1 {
        y[num - 1] = stop;
    }
    y
}

/// Running product (`numpy.cumprod`).
pub(crate) fn cumprod(values: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut acc = 1.0;
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            acc = if i == 0 { v } else { acc * v };
            acc
        })
        .collect()
}

/// Lin et al.'s rescaling: shift `√ᾱ` so its last value is 0, scale it back so its first
/// value is unchanged, and recover the betas (the reference does this in `float64` torch).
fn enforce_zero_terminal_snr(betas: &[f64]) -> Vec<f64> {
    let alphas_bar = cumprod(betas.iter().map(|b| 1.0 - b));
    let mut sqrt: Vec<f64> = alphas_bar.iter().map(|a| a.sqrt()).collect();
    let (first, last) = (sqrt[0], sqrt[sqrt.len() - 1]);
    let scale = first / (first - last);
    for s in &mut sqrt {
        *s -= last;
        *s *= scale;
    }
    let alphas_bar: Vec<f64> = sqrt.iter().map(|s| s * s).collect();
    let mut out = Vec::with_capacity(betas.len());
    out.push(1.0 - alphas_bar[0]);
    for w in alphas_bar.windows(2) {
        out.push(1.0 - w[1] / w[0]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn close(a: f64, b: f64, rtol: f64) -> bool {
        (a - b).abs() <= rtol * b.abs()
    }

    #[test]
    fn sd_linear_matches_the_reference_values() {
        // The reference's values: `Diffusion` with `configs/inference/diffusion.yaml`
        // (`XPixelGroup/DiffBIR@3f8b530:diffbir/model/gaussian_diffusion.py:L103-L119`).
        let s = NoiseScheduleConfig::sd_v2().init();
        assert_eq!(s.num_timesteps(), 1000);
        assert!(close(s.betas()[0], 0.00085, 1e-12));
        assert!(close(s.betas()[999], 0.012, 1e-12));
        assert!(close(s.alphas_cumprod()[0], 0.99915, 1e-12));
        assert!(close(s.alphas_cumprod()[999], 0.0046601, 1e-4));
        let sigma = |a: f64| ((1.0 - a) / a).sqrt();
        assert!(close(sigma(s.alphas_cumprod()[0]), 0.029167, 1e-4));
        assert!(close(sigma(s.alphas_cumprod()[999]), 14.614641, 1e-6));
    }

    #[test]
    fn zero_snr_ends_at_zero() {
        let s = NoiseScheduleConfig::sd_v21().init();
        assert_eq!(s.parameterization(), Parameterization::V);
        assert!(close(s.alphas_cumprod()[0], 0.99915, 1e-12));
        assert!(close(s.alphas_cumprod()[998], 1.968e-7, 1e-3));
        assert_eq!(s.alphas_cumprod()[999], 0.0);
        assert_eq!(s.betas()[999], 1.0);
    }

    #[test]
    fn linspace_matches_numpy() {
        assert_eq!(
            numpy_linspace(0.0, 1.0, 5, true),
            vec![0.0, 0.25, 0.5, 0.75, 1.0]
        );
        let t: Vec<i64> = numpy_linspace(999.0, 0.0, 10, false)
            .into_iter()
            .map(|v| v as i64)
            .collect();
        assert_eq!(t, vec![999, 899, 799, 699, 599, 499, 399, 299, 199, 99]);
    }

    #[test]
    fn q_sample_and_v_are_consistent() {
        let device = Device::flex();
        let s = NoiseScheduleConfig::sd_v2().init();
        let x0 = Tensor::<4>::ones([2, 1, 1, 2], &device);
        let noise = Tensor::<4>::ones([2, 1, 1, 2], &device).mul_scalar(-0.5);
        let t = [0, 500];
        let x_t = s.q_sample(x0.clone(), &t, noise.clone());
        let v = s.get_v(x0, noise, &t);
        let (a, b) = (
            s.sqrt_alphas_cumprod()[500],
            s.sqrt_one_minus_alphas_cumprod()[500],
        );
        let x: Vec<f32> = x_t.into_data().try_to_vec::<f32>().unwrap();
        let v: Vec<f32> = v.into_data().try_to_vec::<f32>().unwrap();
        assert!((x[2] - (a - 0.5 * b)).abs() < 1e-6);
        assert!((v[3] - (-0.5 * a - b)).abs() < 1e-6);
    }
}
