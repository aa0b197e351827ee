//! `edm_dpm++_2m_sde`: DPM-Solver++(2M) SDE, midpoint variant (k-diffusion
//! `sample_dpmpp_2m_sde`). The last step returns the denoised estimate.
//!
//! The reference's Brownian-tree noise is one standard normal draw per step here (see
//! `edm_dpm++_sde`); no draw when `η = 0`.

use burn::tensor::Tensor;

use super::{Ancestral, Run};
use crate::denoiser::Denoiser;
use crate::observer::SampleObserver;

pub(super) fn sample<D: Denoiser, O: SampleObserver>(
    run: &mut Run<'_, D, O>,
    mut x: Tensor<4>,
    a: Ancestral,
) -> Tensor<4> {
    let mut old_denoised: Option<Tensor<4>> = None;
    let mut h_last: Option<f32> = None;
    for i in 0..run.steps() {
        let (sigma, next) = (run.sigmas()[i], run.sigmas()[i + 1]);
        let denoised = run.denoise(&x, sigma);
        if next == 0.0 {
            x = denoised.clone();
        } else {
            let (t, s) = (-sigma.ln(), -next.ln());
            let h = s - t;
            let eta_h = a.eta as f32 * h;
            let decay = -(-h - eta_h).exp_m1();
            x = x.mul_scalar(next / sigma * (-eta_h).exp()) + denoised.clone().mul_scalar(decay);
            if let (Some(old), Some(h_last)) = (&old_denoised, h_last) {
                let r = h_last / h;
                let coeff = 0.5 * decay * (1.0 / r);
                x = x + (denoised.clone() - old.clone()).mul_scalar(coeff);
            }
            if a.eta != 0.0 {
                let z = run.randn_like(&x).mul_scalar(next);
                let z = z.mul_scalar((-(-2.0 * eta_h).exp_m1()).sqrt());
                x = x + z.mul_scalar(a.s_noise);
            }
            h_last = Some(h);
        }
        let stop = run.report(i, sigma, &x, &denoised);
        old_denoised = Some(denoised);
        if stop {
            break;
        }
    }
    x
}
