//! Per-step reporting: progress, `x̂₀` previews and early stopping.
//!
//! The reference reports progress through `tqdm` (and k-diffusion's dict callbacks); here a
//! sampler pushes a [`StepInfo`] into a [`SampleObserver`] after every step.

use std::ops::ControlFlow;

use burn::tensor::Tensor;

/// What a sampler reports after one step.
#[derive(Debug, Clone, Copy)]
pub struct StepInfo<'a> {
    /// Index of the step just taken, from 0.
    pub index: usize,
    /// Number of steps of the run.
    pub total: usize,
    /// Model timestep of the step's (first) network evaluation.
    pub t: f32,
    /// The noise level `σ` of the step (EDM family), `None` for the others.
    pub sigma: Option<f32>,
    /// The latent after the step.
    pub x: &'a Tensor<4>,
    /// The step's prediction of the clean latent (`x̂₀`; the guided denoised estimate for the
    /// EDM family).
    pub x0_pred: &'a Tensor<4>,
}

/// Receives a [`StepInfo`] after every sampler step.
pub trait SampleObserver {
    /// Called after every step. Return `ControlFlow::Break(())` to stop early: the sampler
    /// then returns the latent of this step.
    fn on_step(&mut self, _step: &StepInfo<'_>) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

/// Observes nothing.
impl SampleObserver for () {}

impl<F: FnMut(&StepInfo<'_>) -> ControlFlow<()>> SampleObserver for F {
    fn on_step(&mut self, step: &StepInfo<'_>) -> ControlFlow<()> {
        self(step)
    }
}
