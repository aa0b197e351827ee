//! `edm_euler`: Euler steps with optional churn (Karras et al., Algorithm 2 with Euler steps;
//! k-diffusion `sample_euler`).

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
        x = x + d.mul_scalar(next - sigma_hat);
        if run.report(i, sigma_hat, &x, &denoised) {
            break;
        }
    }
    x
}
