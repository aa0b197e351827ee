//! `edm_dpm++_2m`: DPM-Solver++(2M), deterministic multistep (k-diffusion `sample_dpmpp_2m`).

use burn::tensor::Tensor;

use super::{Run, sigma_fn, t_fn};
use crate::denoiser::Denoiser;
use crate::observer::SampleObserver;

pub(super) fn sample<D: Denoiser, O: SampleObserver>(
    run: &mut Run<'_, D, O>,
    mut x: Tensor<4>,
) -> Tensor<4> {
    let mut old_denoised: Option<Tensor<4>> = None;
    for i in 0..run.steps() {
        let (sigma, next) = (run.sigmas()[i], run.sigmas()[i + 1]);
        let denoised = run.denoise(&x, sigma);
        let (t, t_next) = (t_fn(sigma), t_fn(next));
        let h = t_next - t;
        let ratio = sigma_fn(t_next) / sigma_fn(t);
        x = match &old_denoised {
            Some(old) if next != 0.0 => {
                let h_last = t - t_fn(run.sigmas()[i - 1]);
                let r = h_last / h;
                let inv = 1.0 / (2.0 * r);
                let denoised_d =
                    denoised.clone().mul_scalar(1.0 + inv) - old.clone().mul_scalar(inv);
                x.mul_scalar(ratio) - denoised_d.mul_scalar((-h).exp_m1())
            }
            _ => x.mul_scalar(ratio) - denoised.clone().mul_scalar((-h).exp_m1()),
        };
        let stop = run.report(i, sigma, &x, &denoised);
        old_denoised = Some(denoised);
        if stop {
            break;
        }
    }
    x
}
