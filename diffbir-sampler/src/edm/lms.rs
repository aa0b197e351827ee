//! `edm_lms`: linear multistep over the last `order` derivatives (k-diffusion `sample_lms`).
//!
//! The reference integrates each Lagrange basis polynomial with `scipy.integrate.quad`
//! (relative tolerance 1e-4, exact for polynomials up to rounding); here the polynomial is
//! integrated in closed form in `f64`.

use std::collections::VecDeque;

use burn::tensor::Tensor;

use super::{Run, to_d};
use crate::denoiser::Denoiser;
use crate::observer::SampleObserver;

pub(super) fn sample<D: Denoiser, O: SampleObserver>(
    run: &mut Run<'_, D, O>,
    mut x: Tensor<4>,
    order: usize,
) -> Tensor<4> {
    let sigmas: Vec<f64> = run.sigmas().iter().map(|&s| f64::from(s)).collect();
    // The last `order` derivatives, newest last.
    let mut ds: VecDeque<Tensor<4>> = VecDeque::with_capacity(order + 1);
    for i in 0..run.steps() {
        let sigma = run.sigmas()[i];
        let denoised = run.denoise(&x, sigma);
        ds.push_back(to_d(&x, sigma, &denoised));
        if ds.len() > order {
            ds.pop_front();
        }
        let cur_order = (i + 1).min(order);
        let mut update: Option<Tensor<4>> = None;
        for (j, d) in ds.iter().rev().enumerate().take(cur_order) {
            let term = d
                .clone()
                .mul_scalar(multistep_coeff(cur_order, &sigmas, i, j));
            update = Some(match update {
                Some(acc) => acc + term,
                None => term,
            });
        }
        if let Some(update) = update {
            x = x + update;
        }
        if run.report(i, sigma, &x, &denoised) {
            break;
        }
    }
    x
}

/// `∫_{t_i}^{t_{i+1}} Π_{k<order, k≠j} (τ − t_{i−k})/(t_{i−j} − t_{i−k}) dτ`
/// (`linear_multistep_coeff`).
fn multistep_coeff(order: usize, t: &[f64], i: usize, j: usize) -> f64 {
    // Coefficients of the basis polynomial, lowest degree first.
    let mut poly = vec![1.0f64];
    for k in (0..order).filter(|&k| k != j) {
        let denom = t[i - j] - t[i - k];
        let root = t[i - k];
        let mut next = vec![0.0; poly.len() + 1];
        for (p, &c) in poly.iter().enumerate() {
            next[p + 1] += c / denom;
            next[p] -= c * root / denom;
        }
        poly = next;
    }
    let antiderivative = |x: f64| {
        poly.iter()
            .enumerate()
            .map(|(p, &c)| c * x.powi(p as i32 + 1) / (p + 1) as f64)
            .sum::<f64>()
    };
    antiderivative(t[i + 1]) - antiderivative(t[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coefficients_integrate_the_lagrange_basis() {
        let t = [4.0, 3.0, 2.0, 0.5];
        // Order 1: the step length.
        assert!((multistep_coeff(1, &t, 2, 0) - -1.5).abs() < 1e-12);
        // Order 2 at i = 2 (nodes 2 and 3): the two weights sum to the step length, and
        // match the closed form (Adams-Bashforth 2 on a non-uniform grid).
        let c0 = multistep_coeff(2, &t, 2, 0);
        let c1 = multistep_coeff(2, &t, 2, 1);
        assert!((c0 + c1 - -1.5).abs() < 1e-12);
        // ∫_2^0.5 (τ − 3)/(2 − 3) dτ = −[(τ−3)²/2]_2^0.5 = −(6.25 − 1)/2.
        assert!((c0 - -(6.25 - 1.0) / 2.0).abs() < 1e-12);
    }
}
