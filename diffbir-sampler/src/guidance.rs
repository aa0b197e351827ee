//! Classifier-free guidance as a [`Denoiser`] wrapper
//! (`diffbir/sampler/spaced_sampler.py:L144-L159`; the two conditions:
//! `diffbir/pipeline.py:L117-L128`).
//!
//! Ho & Salimans, "Classifier-Free Diffusion Guidance" (2022). DiffBIR combines the two
//! branches as `uncond + s·(cond − uncond)`; both branches share the condition latent, only the
//! text differs. The optional cosine rescaling of `s` over time is DiffBIR's
//! (`XPixelGroup/DiffBIR@3f8b530:diffbir/sampler/sampler.py::get_cfg_scale`, and its variant in
//! `dpm_solver_pytorch.py::model_wrapper`).

use std::f64::consts::PI;

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::denoiser::{Denoiser, ModelTimesteps, Parameterization};

/// How the guidance scale varies with the model timestep (`--rescale_cfg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CfgRescale {
    /// A constant scale.
    #[default]
    Off,
    /// `s(t) = 1 + s·(1 − cos(π·((1000 − t)/1000)⁵))/2`, only when `s > 1`: about 1 at the start
    /// of sampling and `1 + s` at `t = 0` (`Sampler.get_cfg_scale`, used by the spaced, DDIM
    /// and EDM samplers; computed in `f64`).
    Cosine,
    /// The same formula as DPM-Solver's model wrapper computes it: in `f32` on the model time,
    /// and also when `s < 1` (the reference's TODO "only rescale when default cfg_scale > 1").
    CosineAlways,
}

impl CfgRescale {
    /// The scale to use at model timestep `t` for a configured scale `scale`.
    pub fn scale_at(self, scale: f64, t: f32) -> f64 {
        match self {
            Self::Off => scale,
            Self::Cosine if scale > 1.0 => {
                let progress = ((1000.0 - f64::from(t)) / 1000.0).powf(5.0);
                1.0 + scale * ((1.0 - (PI * progress).cos()) / 2.0)
            }
            Self::Cosine => scale,
            Self::CosineAlways => {
                // float32 tensor arithmetic on the model time, then Python floats.
                let progress = ((1000.0f32 - t) / 1000.0).powf(5.0);
                let angle = (PI as f32) * progress;
                1.0 + scale * ((1.0 - f64::from(angle).cos()) / 2.0)
            }
        }
    }
}

/// The conditions of both guidance branches.
#[derive(Debug, Clone)]
pub struct GuidedCond<C> {
    /// The conditional branch (positive prompt).
    pub cond: C,
    /// The unconditional branch (negative prompt); `None` evaluates only `cond`.
    pub uncond: Option<C>,
}

/// Classifier-free guidance around a denoiser: `uncond + s(t)·(cond − uncond)` on the
/// prediction (or on whatever affine map of it a sampler asks for through
/// [`Denoiser::predict_then`]).
///
/// Both branches go to the model in one [`Denoiser::predict_pair`] call, which a network can
/// run as one doubled batch. Only the conditional branch is evaluated when there is no unconditional condition, when the
/// configured scale is 1, or when the scale at this step is exactly 1 (as the spaced and DDIM
/// samplers do; the reference's EDM samplers then evaluate both branches and combine them with
/// scale 1, which differs from the conditional branch by at most a rounding).
#[derive(Debug, Clone)]
pub struct ClassifierFree<D> {
    /// The guided model.
    pub inner: D,
    /// The guidance scale `s` (`--cfg_scale`).
    pub scale: f64,
    /// How `s` varies with time.
    pub rescale: CfgRescale,
}

impl<D> ClassifierFree<D> {
    /// Guidance with a constant scale.
    pub fn new(inner: D, scale: f64) -> Self {
        Self {
            inner,
            scale,
            rescale: CfgRescale::Off,
        }
    }

    /// With the scale varying over time.
    pub fn with_rescale(mut self, rescale: CfgRescale) -> Self {
        self.rescale = rescale;
        self
    }
}

impl<D: Denoiser> Denoiser for ClassifierFree<D> {
    type Cond = GuidedCond<D::Cond>;

    fn parameterization(&self) -> Parameterization {
        self.inner.parameterization()
    }

    fn predict(&self, x_t: Tensor<4>, t: &ModelTimesteps, cond: &Self::Cond) -> Tensor<4> {
        self.predict_then(x_t, t, cond, &|out| out)
    }

    fn predict_then(
        &self,
        x_t: Tensor<4>,
        t: &ModelTimesteps,
        cond: &Self::Cond,
        then: &dyn Fn(Tensor<4>) -> Tensor<4>,
    ) -> Tensor<4> {
        let scale = self.rescale.scale_at(self.scale, t.value());
        match &cond.uncond {
            Some(uncond) if self.scale != 1.0 && scale != 1.0 => {
                let (c, u) = self.inner.predict_pair(x_t, t, &cond.cond, uncond);
                let (c, u) = (then(c), then(u));
                u.clone() + (c - u).mul_scalar(scale)
            }
            _ => then(self.inner.predict(x_t, t, &cond.cond)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    /// Predicts `x + offset` where the condition is the offset.
    struct Shift;
    impl Denoiser for Shift {
        type Cond = f32;
        fn parameterization(&self) -> Parameterization {
            Parameterization::Eps
        }
        fn predict(&self, x_t: Tensor<4>, _t: &ModelTimesteps, cond: &f32) -> Tensor<4> {
            x_t.add_scalar(*cond)
        }
    }

    #[test]
    fn rescaled_scale_follows_the_reference() {
        // Sampler.get_cfg_scale(6.0, t) for t = 999, 500, 0.
        let r = CfgRescale::Cosine;
        assert_eq!(r.scale_at(6.0, 999.0), 1.0);
        assert!((r.scale_at(6.0, 500.0) - 1.014_445_82).abs() < 1e-7);
        assert_eq!(r.scale_at(6.0, 0.0), 7.0);
        assert_eq!(r.scale_at(0.5, 0.0), 0.5);
        assert!((CfgRescale::CosineAlways.scale_at(0.5, 0.0) - 1.5).abs() < 1e-12);
        assert_eq!(CfgRescale::Off.scale_at(6.0, 0.0), 6.0);
    }

    #[test]
    fn guidance_extrapolates_from_uncond_to_cond() {
        let device = Device::flex();
        let model = ClassifierFree::new(Shift, 3.0);
        let x = Tensor::<4>::zeros([1, 1, 1, 1], &device);
        let t = ModelTimesteps::new(10.0, 1);
        let both = GuidedCond {
            cond: 1.0,
            uncond: Some(0.5),
        };
        let out: Vec<f32> = model
            .predict(x.clone(), &t, &both)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(out, vec![0.5 + 3.0 * 0.5]);
        let only = GuidedCond {
            cond: 1.0,
            uncond: None,
        };
        let out: Vec<f32> = model
            .predict(x, &t, &only)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(out, vec![1.0]);
    }
}
