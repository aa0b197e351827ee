//! Progress and cancellation of a restoration.

use std::ops::ControlFlow;

use burn::tensor::Tensor;
use diffbir_sampler::StepInfo;

/// What a restoration reports to its [`Observer`], in order: stage 1 once, then for each
/// batch of samples its sampler steps and its decoded samples.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// Stage 1 finished: the condition image, `[1, 3, H, W]` in `[0, 1]`.
    Stage1 {
        /// The cleaned image stage 2 is conditioned on.
        condition: &'a Tensor<4>,
    },
    /// A sampler step of the batch whose first sample is `first_sample`.
    Step {
        /// Index of the batch's first sample among the image's samples.
        first_sample: usize,
        /// The step: its index, the total, the timestep and the latents.
        step: &'a StepInfo<'a>,
    },
    /// `unaligned_face`: the faces found on the canvas; their restorations follow, then the
    /// background's.
    Faces {
        /// Faces kept after the helper's filters.
        found: usize,
    },
    /// `unaligned_face`: the restoration of one part starts.
    Part(Part),
    /// Samples decoded and colour-fixed.
    Samples {
        /// Samples of this image finished so far.
        done: usize,
        /// Samples of this image in all.
        total: usize,
    },
}

/// A part of an `unaligned_face` restoration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The aligned face with this index.
    Face(usize),
    /// The background (the whole photo).
    Background,
}

/// Receives the [`Event`]s of a restoration. Returning `ControlFlow::Break(())` cancels it:
/// the restoration stops at once (within the current sampler step) and returns
/// [`crate::Error::Cancelled`].
///
/// Closures `FnMut(&Event<'_>) -> ControlFlow<()>` are observers, and `()` observes nothing.
pub trait Observer {
    /// Called for every event.
    fn on_event(&mut self, event: &Event<'_>) -> ControlFlow<()>;
}

impl Observer for () {
    fn on_event(&mut self, _: &Event<'_>) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

impl<F: FnMut(&Event<'_>) -> ControlFlow<()>> Observer for F {
    fn on_event(&mut self, event: &Event<'_>) -> ControlFlow<()> {
        self(event)
    }
}

/// `Ok` to go on, [`crate::Error::Cancelled`] when an observer broke.
pub(crate) fn proceed(flow: ControlFlow<()>) -> crate::Result<()> {
    match flow {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(crate::Error::Cancelled),
    }
}
