//! Where sampling starts, and noise augmentation of the condition latent (spec §3.7, §4).
//!
//! Port of the start-point and noise-augmentation steps of
//! `XPixelGroup/DiffBIR@3f8b530:diffbir/pipeline.py::Pipeline.apply_cldm`. The pipeline draws
//! the start noise first, then the augmentation noise, then the sampler's noise.

use burn::tensor::Tensor;
use diffbir_core::NoiseSource;
use serde::{Deserialize, Serialize};

use crate::schedule::NoiseSchedule;

/// The latent sampling starts from (`--start_point_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum StartPoint {
    /// Pure noise `x_T ~ N(0, I)`.
    #[serde(rename = "noise")]
    #[default]
    Noise,
    /// The condition latent noised to the last training timestep,
    /// `q_sample(c_img, T − 1, ε)`. With a zero-terminal-SNR schedule this is pure noise too.
    #[serde(rename = "cond")]
    Cond,
}

impl StartPoint {
    /// The start latent, shaped like the condition latent `cond_latent` (before noise
    /// augmentation). Draws one normal tensor of that shape.
    ///
    /// # Shapes
    /// - `cond_latent`: `[B, 4, h, w]`; returns `[B, 4, h, w]`
    pub fn latent(
        self,
        schedule: &NoiseSchedule,
        cond_latent: &Tensor<4>,
        noise: &mut NoiseSource,
    ) -> Tensor<4> {
        let eps = noise.randn_like(cond_latent);
        match self {
            Self::Noise => eps,
            Self::Cond => {
                let [b, _, _, _] = cond_latent.dims();
                let t = vec![schedule.num_timesteps() - 1; b];
                schedule.q_sample(cond_latent.clone(), &t, eps)
            }
        }
    }
}

/// Noise augmentation of the condition latent (`--noise_aug t`): `q_sample(c_img, t, ε)` with
/// the same `t` for the whole batch. The reference uses the noised latent for both guidance
/// branches. Draws one normal tensor.
///
/// # Shapes
/// - `cond_latent`: `[B, 4, h, w]`; returns `[B, 4, h, w]`
pub fn noise_augment(
    schedule: &NoiseSchedule,
    cond_latent: Tensor<4>,
    t: usize,
    noise: &mut NoiseSource,
) -> Tensor<4> {
    let [b, _, _, _] = cond_latent.dims();
    let eps = noise.randn_like(&cond_latent);
    schedule.q_sample(cond_latent, &vec![t; b], eps)
}
