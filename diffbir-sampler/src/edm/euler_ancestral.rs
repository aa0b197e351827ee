//! `edm_euler_a`: ancestral sampling with Euler steps (k-diffusion `sample_euler_ancestral`).

use burn::tensor::Tensor;

use super::{Ancestral, Run, ancestral_step, to_d};
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
        x = x + d.mul_scalar(sigma_down - sigma);
        if next > 0.0 {
            let z = run.randn_like(&x).mul_scalar(a.s_noise);
            x = x + z.mul_scalar(sigma_up);
        }
        if run.report(i, sigma, &x, &denoised) {
            break;
        }
    }
    x
}
