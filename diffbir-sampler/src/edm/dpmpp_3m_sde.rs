//! `edm_dpm++_3m_sde`: DPM-Solver++(3M) SDE (k-diffusion `sample_dpmpp_3m_sde`), DiffBIR
//! v2.1's default sampler. The last step returns the denoised estimate.
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
    // The two previous denoised estimates and step sizes, newest first.
    let mut denoised_1: Option<Tensor<4>> = None;
    let mut denoised_2: Option<Tensor<4>> = None;
    let (mut h_1, mut h_2): (Option<f32>, Option<f32>) = (None, None);
    for i in 0..run.steps() {
        let (sigma, next) = (run.sigmas()[i], run.sigmas()[i + 1]);
        let denoised = run.denoise(&x, sigma);
        // The reference shifts a stale `h` after the last step; it is never used again.
        let mut h = h_1;
        if next == 0.0 {
            x = denoised.clone();
        } else {
            let (t, s) = (-sigma.ln(), -next.ln());
            let step = s - t;
            h = Some(step);
            let h_eta = step * (a.eta + 1.0) as f32;
            x = x.mul_scalar((-h_eta).exp()) + denoised.clone().mul_scalar(-(-h_eta).exp_m1());
            match (&denoised_1, &denoised_2, h_1, h_2) {
                (Some(d_1), Some(d_2), Some(h_1), Some(h_2)) => {
                    let (r0, r1) = (h_1 / step, h_2 / step);
                    let d1_0 = (denoised.clone() - d_1.clone()).div_scalar(r0);
                    let d1_1 = (d_1.clone() - d_2.clone()).div_scalar(r1);
                    let diff = d1_0.clone() - d1_1;
                    let d1 = d1_0 + diff.clone().mul_scalar(r0).div_scalar(r0 + r1);
                    let d2 = diff.div_scalar(r0 + r1);
                    let phi_2 = (-h_eta).exp_m1() / h_eta + 1.0;
                    let phi_3 = phi_2 / h_eta - 0.5;
                    x = x + d1.mul_scalar(phi_2) - d2.mul_scalar(phi_3);
                }
                (Some(d_1), _, Some(h_1), _) => {
                    let r = h_1 / step;
                    let d = (denoised.clone() - d_1.clone()).div_scalar(r);
                    let phi_2 = (-h_eta).exp_m1() / h_eta + 1.0;
                    x = x + d.mul_scalar(phi_2);
                }
                _ => {}
            }
            if a.eta != 0.0 {
                let z = run.randn_like(&x).mul_scalar(next);
                let z = z.mul_scalar((-(-2.0 * step * a.eta as f32).exp_m1()).sqrt());
                x = x + z.mul_scalar(a.s_noise);
            }
        }
        let stop = run.report(i, sigma, &x, &denoised);
        denoised_2 = denoised_1.replace(denoised);
        (h_1, h_2) = (h, h_1);
        if stop {
            break;
        }
    }
    x
}
