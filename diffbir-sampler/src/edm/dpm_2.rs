//! `edm_dpm_2`: second-order steps through the log-midpoint of the noise levels, with
//! optional churn (k-diffusion `sample_dpm_2`, "inspired by DPM-Solver-2"). The last step, to
//! `σ = 0`, is an Euler step.

use burn::tensor::Tensor;

use super::{Churn, Run, lerp_half, to_d};
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
        x = if next == 0.0 {
            x + d.mul_scalar(next - sigma_hat)
        } else {
            let sigma_mid = lerp_half(sigma_hat.ln(), next.ln()).exp();
            let (dt_1, dt_2) = (sigma_mid - sigma_hat, next - sigma_hat);
            let x_2 = x.clone() + d.mul_scalar(dt_1);
            let denoised_2 = run.denoise(&x_2, sigma_mid);
            let d_2 = to_d(&x_2, sigma_mid, &denoised_2);
            x + d_2.mul_scalar(dt_2)
        };
        if run.report(i, sigma_hat, &x, &denoised) {
            break;
        }
    }
    x
}
