//! The degradation operations of DiffBIR's training data synthesis
//! (`XPixelGroup/DiffBIR@3f8b530:diffbir/dataset/codeformer.py:L98-L123` and
//! `diffbir/dataset/batch_transform.py:L143-L271`).
//!
//! - [`kernels`]: the blur kernels of `dataset/degradation.py` (isotropic / anisotropic
//!   Gaussian, generalized Gaussian, plateau, circular low-pass "sinc"), computed in f64 like
//!   numpy, OpenCV's `getGaussianKernel`, and `random_mixed_kernels`;
//! - [`filter`]: the batched `filter2D` (reflect padding, one kernel per sample or one for all)
//!   and USM sharpening, on tensors;
//! - [`jpeg`]: DiffJPEG, with torch's rounding (training) or the differentiable rounding;
//! - [`noise`]: `add_gaussian_noise_pt` (per-sample sigma, gray noise; normal draws from a
//!   [`NoiseSource`](diffbir_core::NoiseSource) so recorded draws can be replayed) and
//!   `add_poisson_noise_pt`, with their `random_*` forms;
//! - [`resize`]: PyTorch's `F.interpolate` (`area`, `bilinear`, `bicubic`; no antialiasing,
//!   `align_corners=False`) to a size or by a scale factor;
//! - [`cv`]: the CodeFormer dataset's OpenCV operations on HWC float images
//!   (`cv2.filter2D` with `BORDER_REFLECT_101`, `cv2.resize` with `INTER_LINEAR`).
//!
//! Every operation takes its parameters explicitly, so a caller can draw them with its own
//! generator or take them from a recorded case; the `random_*` functions draw them, in the
//! reference's order, from a generator the caller passes.

pub mod cv;
pub mod filter;
pub mod jpeg;
pub mod kernels;
pub mod noise;
pub mod resize;

use burn::tensor::Tensor;
use diffbir_core::Error;

/// An [`Error::InvalidArgument`].
pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::InvalidArgument {
        what: what.into(),
        reason: reason.into(),
    }
}

/// Reads a tensor back to the host as float32 values (`what` names it in the error).
pub(crate) fn read_back<const D: usize>(
    x: Tensor<D>,
    what: &str,
) -> diffbir_core::Result<Vec<f32>> {
    let device = x.device();
    x.try_into_vec_as::<f32>()
        .map_err(|e| Error::DeviceUnavailable {
            name: format!("{device:?}"),
            reason: format!("reading the {what} back failed: {e}"),
        })
}
