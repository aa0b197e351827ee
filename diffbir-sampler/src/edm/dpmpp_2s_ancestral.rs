//! `edm_dpm++_2s_a`: ancestral sampling with DPM-Solver++(2S) second-order single steps
//! (k-diffusion `sample_dpmpp_2s_ancestral`).

use burn::tensor::Tensor;

use super::{Ancestral, Run, ancestral_step, sigma_fn, t_fn, to_d};
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
        x = if sigma_down == 0.0 {
            let d = to_d(&x, sigma, &denoised);
            x + d.mul_scalar(sigma_down - sigma)
        } else {
            let (t, t_next) = (t_fn(sigma), t_fn(sigma_down));
            let r = 0.5f32;
            let h = t_next - t;
            let s = t + r * h;
            let x_2 = x.clone().mul_scalar(sigma_fn(s) / sigma_fn(t))
                - denoised.clone().mul_scalar((-h * r).exp_m1());
            let denoised_2 = run.denoise(&x_2, sigma_fn(s));
            x.mul_scalar(sigma_fn(t_next) / sigma_fn(t)) - denoised_2.mul_scalar((-h).exp_m1())
        };
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
