//! Faces in whole photos, as DiffBIR's `unaligned_face` task finds and replaces them: RetinaFace
//! detection (facexlib's two backbones), alignment to the FFHQ template, ParseNet face
//! parsing and the paste-back of restored faces, reproducing facexlib and DiffBIR's face
//! helper (`XPixelGroup/DiffBIR@3f8b530:diffbir/utils/face.py`) number for number.
#![deny(missing_docs)]

pub mod cv;
pub mod detect;
pub mod helper;
mod layers;
pub mod parsenet;
pub mod paste;
pub mod retinaface;

pub use detect::{DetectOptions, Detection};
pub use helper::{Face, FaceSelection, HelperOptions};
pub use layers::ConvBn;
pub use parsenet::{PARSENET_KEYS, ParseNet, ParseNetConfig};
pub use retinaface::{Backbone, RETINAFACE_KEYS, RetinaFace, RetinaFaceConfig};

/// A tensor's values on the host as `T` (`what` names it in the error).
pub(crate) fn host_values<T: burn::tensor::Element>(
    data: burn::tensor::TensorData,
    what: &str,
) -> diffbir_core::Result<Vec<T>> {
    data.convert::<T>()
        .try_into_vec::<T>()
        .map_err(|e| diffbir_core::Error::DeviceUnavailable {
            name: what.into(),
            reason: format!("reading {what} back failed: {e:?}"),
        })
}
