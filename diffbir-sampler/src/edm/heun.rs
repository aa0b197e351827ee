//! `edm_heun`: Heun's second-order steps with optional churn (Karras et al., Algorithm 2;
//! k-diffusion `sample_heun`). The last step, to `σ = 0`, is an Euler step.

use burn::tensor::Tensor;

use super::{Churn, Run, to_d};
use crate::denoiser::Denoiser;
use crate::observer::SampleObserver;

pub(super) fn sample<D: Denoiser, O: SampleObserver>(
    run: &mut Run<'_, D, O>,
    mut x: Tensor<4>,
    churn: Churn,
) -> Tensor<4> {
    let n = run.steps();
    for i in 0..n {
        let (sigma, next) = (run.sigmas()[i], run.sigmas()[i + 1]);
        let (churned, sigma_hat) = churn.apply(x, sigma, n, run.noise);
        x = churned;
        let denoised = run.denoise(&x, sigma_hat);
        let d = to_d(&x, sigma_hat, &denoised);
        let dt = next - sigma_hat;
        x = if next == 0.0 {
            x + d.mul_scalar(dt)
        } else {
            let x_2 = x.clone() + d.clone().mul_scalar(dt);
            let denoised_2 = run.denoise(&x_2, next);
            let d_2 = to_d(&x_2, next, &denoised_2);
            let d_prime = (d + d_2).div_scalar(2.0);
            x + d_prime.mul_scalar(dt)
        };
        if run.report(i, sigma_hat, &x, &denoised) {
            break;
        }
    }
    x
}
