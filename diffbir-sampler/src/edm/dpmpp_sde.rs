//! `edm_dpm++_sde`: stochastic DPM-Solver++ with a midpoint stage (`r = 1/2`; k-diffusion
//! `sample_dpmpp_sde`).
//!
//! The reference draws its noise from a Brownian tree (`BrownianTreeNoiseSampler`), one unit
//! normal per `noise(σ, σ_next)` call over disjoint intervals; here each call is one standard
//! normal draw from the [`NoiseSource`](diffbir_core::NoiseSource), in the same order. Two
//! draws per step except the last, also when `η = 0` (they are then multiplied by 0).

use burn::tensor::Tensor;

use super::{Ancestral, Run, ancestral_step, sigma_fn, t_fn, to_d};
use crate::denoiser::Denoiser;
use crate::observer::SampleObserver;

pub(super) fn sample<D: Denoiser, O: SampleObserver>(
    run: &mut Run<'_, D, O>,
    mut x: Tensor<4>,
    a: Ancestral,
) -> Tensor<4> {
    let r = 0.5f32;
    let fac = 1.0 / (2.0 * f64::from(r));
    for i in 0..run.steps() {
        let (sigma, next) = (run.sigmas()[i], run.sigmas()[i + 1]);
        let denoised = run.denoise(&x, sigma);
        x = if next == 0.0 {
            let d = to_d(&x, sigma, &denoised);
            x + d.mul_scalar(next - sigma)
        } else {
            let (t, t_next) = (t_fn(sigma), t_fn(next));
            let h = t_next - t;
            let s = t + h * r;
            // Stage 1: to the midpoint.
            let (sd, su) = ancestral_step(sigma_fn(t), sigma_fn(s), a.eta);
            let s_ = t_fn(sd);
            let x_2 = x.clone().mul_scalar(sigma_fn(s_) / sigma_fn(t))
                - denoised.clone().mul_scalar((t - s_).exp_m1());
            let z = run.randn_like(&x_2).mul_scalar(a.s_noise);
            let x_2 = x_2 + z.mul_scalar(su);
            let denoised_2 = run.denoise(&x_2, sigma_fn(s));
            // Stage 2: the full step with the midpoint's denoised estimate.
            let (sd, su) = ancestral_step(sigma_fn(t), sigma_fn(t_next), a.eta);
            let t_next_ = t_fn(sd);
            let denoised_d = denoised.clone().mul_scalar(1.0 - fac) + denoised_2.mul_scalar(fac);
            let x = x.mul_scalar(sigma_fn(t_next_) / sigma_fn(t))
                - denoised_d.mul_scalar((t - t_next_).exp_m1());
            let z = run.randn_like(&x).mul_scalar(a.s_noise);
            x + z.mul_scalar(su)
        };
        if run.report(i, sigma, &x, &denoised) {
            break;
        }
    }
    x
}
