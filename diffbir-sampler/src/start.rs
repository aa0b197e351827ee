//! Where sampling starts, and noise augmentation of the condition latent
//! (`diffbir/pipeline.py:L145-L167`).
//!
//! Port of the start-point and noise-augmentation steps of
//! `XPixelGroup/DiffBIR@3f8b530:diffbir/pipeline.py::Pipeline.apply_cldm`. The pipeline draws
//! the start noise first, then the augmentation noise, then the sampler's noise.

use burn::tensor::Tensor;
use diffbir_core::NoiseSource;

use crate::schedule::NoiseSchedule;

diffbir_core::named_enum! {
    /// The latent sampling starts from (`--start_point_type`).
    #[derive(Default)]
    pub enum StartPoint ("start point") {
        /// Pure noise `x_T ~ N(0, I)`.
        #[default]
        Noise = "noise",
        /// The condition latent noised to the last training timestep,
        /// `q_sample(c_img, T − 1, ε)`. With a zero-terminal-SNR schedule this is pure noise
        /// too.
        Cond = "cond",
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::NoiseScheduleConfig;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn start_points_draw_once_and_noise_the_condition() {
        let device = Device::flex();
        let c_img = Tensor::<4>::ones([1, 1, 1, 2], &device);
        let draw = || TensorData::new(vec![0.5f32, -1.0], [1, 1, 1, 2]);
        let values = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().unwrap();

        let mut noise = NoiseSource::replay([draw()]);
        let zsnr = NoiseScheduleConfig::sd_v21().init();
        let pure = StartPoint::Noise.latent(&zsnr, &c_img, &mut noise);
        assert_eq!((values(pure), noise.remaining()), (vec![0.5, -1.0], 0));

        // Zero terminal SNR: the `cond` start point is pure noise as well.
        let mut noise = NoiseSource::replay([draw()]);
        let cond = StartPoint::Cond.latent(&zsnr, &c_img, &mut noise);
        assert_eq!(values(cond), vec![0.5, -1.0]);

        // SD linear: √ᾱ_999·c + √(1 − ᾱ_999)·ε.
        let linear = NoiseScheduleConfig::sd_v2().init();
        let mut noise = NoiseSource::replay([draw()]);
        let cond = values(StartPoint::Cond.latent(&linear, &c_img, &mut noise));
        let (a, s) = (
            linear.sqrt_alphas_cumprod()[999],
            linear.sqrt_one_minus_alphas_cumprod()[999],
        );
        assert_eq!(cond, vec![a + s * 0.5, a - s]);

        let mut noise = NoiseSource::replay([draw()]);
        let aug = values(noise_augment(&linear, c_img, 200, &mut noise));
        let (a, s) = (
            linear.sqrt_alphas_cumprod()[200],
            linear.sqrt_one_minus_alphas_cumprod()[200],
        );
        assert_eq!(aug, vec![a + s * 0.5, a - s]);
    }
}
