//! Noise schedules, samplers, classifier-free guidance and tiled sampling of DiffBIR.
//!
//! - [`NoiseSchedule`]: the SD "scaled linear" training schedule, optionally rescaled to zero
//!   terminal SNR, with `q_sample` and the `v` target;
//! - [`Denoiser`]: what samplers need from a model (an `ε` or `v` prediction); the
//!   conditioning is an associated type, so samplers never see its layout;
//! - [`ClassifierFree`] and [`Tiled`]: guidance and mixture-of-diffusers tiling, as
//!   [`Denoiser`] wrappers;
//! - the samplers, one module per algorithm, chosen by the serialisable [`SamplerConfig`]:
//!   [`spaced`], [`ddim`], [`dpm_solver`] (`dpm++_m2`) and the eleven [`edm`] solvers;
//! - [`RestorationGuidance`]: v2's restoration guidance (`cond_fn`) on `x̂₀` of the
//!   [`spaced`] sampler, in latent or RGB space (the latter needs the `autodiff` feature);
//! - [`StartPoint`] and [`noise_augment`]: the start latent and the condition augmentation;
//! - [`SampleObserver`]: per-step progress, `x̂₀` previews and early stopping.
//!
//! All randomness comes from a [`NoiseSource`](diffbir_core::NoiseSource), drawn in the
//! order of the reference implementation (`XPixelGroup/DiffBIR@3f8b530:diffbir/sampler/`),
//! so recorded reference draws can be replayed.
//!
//! ```no_run
//! use burn::tensor::Tensor;
//! use diffbir_core::NoiseSource;
//! use diffbir_sampler::{
//!     ClassifierFree, Denoiser, GuidedCond, ModelTimesteps, NoiseScheduleConfig,
//!     Parameterization, SamplerConfig, SamplerKind, SamplerOptions, StartPoint,
//! };
//!
//! /// Any model: here one that predicts no noise.
//! struct Model;
//! impl Denoiser for Model {
//!     type Cond = ();
//!     fn parameterization(&self) -> Parameterization {
//!         Parameterization::V
//!     }
//!     fn predict(&self, x_t: Tensor<4>, _t: &ModelTimesteps, _cond: &()) -> Tensor<4> {
//!         x_t.zeros_like()
//!     }
//! }
//!
//! let device = burn::tensor::Device::default();
//! let schedule = NoiseScheduleConfig::sd_v21().init();
//! let config = SamplerConfig::new(SamplerKind::EdmDpmPp3mSde, 10, &SamplerOptions::new());
//! let sampler = config.init(&schedule)?;
//! let model = ClassifierFree::new(Model, 6.0).with_rescale(config.cfg_rescale(false));
//! let cond = GuidedCond { cond: (), uncond: Some(()) };
//! let mut noise = NoiseSource::seeded(231);
//! let c_img = Tensor::<4>::zeros([1, 4, 64, 64], &device);
//! let x_t = StartPoint::Noise.latent(&schedule, &c_img, &mut noise);
//! let z = sampler.sample(&model, x_t, &cond, &mut noise, &mut ());
//! # Ok::<(), diffbir_core::Error>(())
//! ```
#![deny(missing_docs)]

pub mod cond_fn;
pub mod ddim;
mod denoiser;
pub mod dpm_solver;
pub mod edm;
mod guidance;
mod observer;
mod sampler;
mod schedule;
pub mod spaced;
mod start;
mod tiled;

pub use cond_fn::{
    GuidanceDomain, GuidanceLoss, GuidanceSpace, GuidanceStep, GuidanceVariant,
    RestorationGuidance, RestorationGuidanceConfig, SpacedGuidance,
};
pub use ddim::DdimConfig;
pub use denoiser::{Denoiser, ModelTimesteps, Parameterization};
pub use dpm_solver::DpmSolverConfig;
pub use edm::{EdmAncestralConfig, EdmChurnConfig, EdmConfig, EdmLmsConfig};
pub use guidance::{CfgRescale, ClassifierFree, GuidedCond};
pub use observer::{SampleObserver, StepInfo};
pub use sampler::{Sampler, SamplerConfig, SamplerKind, SamplerOptions};
pub use schedule::{NoiseSchedule, NoiseScheduleConfig};
pub use spaced::SpacedConfig;
pub use start::{StartPoint, noise_augment};
pub use tiled::{TileCond, Tiled};

#[cfg(test)]
mod toy_tests;
