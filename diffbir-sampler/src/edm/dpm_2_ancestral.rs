//! `edm_dpm_2_a`: ancestral sampling with `edm_dpm_2`'s second-order steps
//! (k-diffusion `sample_dpm_2_ancestral`). Noise is added only after second-order steps, not
//! after the final Euler step.

use burn::tensor::Tensor;

use super::{Ancestral, Run, ancestral_step, lerp_half, to_d};
use crate::denoiser::Denoiser;
use crate::observer::SampleObserver;

pub(super) fn sample<D: Denoiser, O: SampleObserver>(
    run: &mut Run<'_, D, O>,
    mut x: Tensor<4>,
    a: Ancestral,
) -> Tensor<4> {
    for i in 0..run.steps() {
        let (sigma, next) = (run.sigmas()[i], run.sigmas()[i + 1]);
        let denoised = run.denoise(&x, sigma);
        let (sigma_down, sigma_up) = ancestral_step(sigma, next, a.eta);
        let d = to_d(&x, sigma, &denoised);
        x = if sigma_down == 0.0 {
            x + d.mul_scalar(sigma_down - sigma)
        } else {
            let sigma_mid = lerp_half(sigma.ln(), sigma_down.ln()).exp();
            let (dt_1, dt_2) = (sigma_mid - sigma, sigma_down - sigma);
            let x_2 = x.clone() + d.mul_scalar(dt_1);
            let denoised_2 = run.denoise(&x_2, sigma_mid);
            let d_2 = to_d(&x_2, sigma_mid, &denoised_2);
            let x = x + d_2.mul_scalar(dt_2);
            let z = run.randn_like(&x).mul_scalar(a.s_noise);
            x + z.mul_scalar(sigma_up)
        };
        if run.report(i, sigma, &x, &denoised) {
            break;
        }
    }
    x
}
