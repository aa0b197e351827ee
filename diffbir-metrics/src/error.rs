//! The errors of the metrics.

use std::path::PathBuf;

/// What went wrong while scoring a pair of images.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The two images of a pair differ in size or channels.
    #[error(
        "the images differ in size: restored {restored}, reference {reference}; \
         full-reference metrics compare images of one size (resize or crop one of them first)"
    )]
    SizeMismatch {
        /// The restored image's `W×H×C`.
        restored: String,
        /// The reference's `W×H×C`.
        reference: String,
    },
    /// The crop leaves too little of the image for the metric.
    #[error(
        "{metric} needs at least {needed}×{needed} pixels after cropping {crop_border} from each \
         side of a {width}×{height} image; use a smaller --crop-border"
    )]
    TooSmall {
        /// The metric.
        metric: &'static str,
        /// Smallest side the metric accepts.
        needed: usize,
        /// The crop.
        crop_border: usize,
        /// Image width before the crop.
        width: usize,
        /// Image height before the crop.
        height: usize,
    },
    /// Pixel data that does not describe an image.
    #[error("invalid image data: {0}")]
    InvalidImage(String),
    /// A network configuration that cannot be built.
    #[error("invalid {model} configuration: {reason}")]
    InvalidConfig {
        /// The network.
        model: &'static str,
        /// Why.
        reason: String,
    },
    /// Reading an image or a weight file, or running a network, failed.
    #[error(transparent)]
    Core(#[from] diffbir_core::Error),
    /// A folder of images could not be listed.
    #[error("{path}: cannot list the folder: {source}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl Error {
    /// Whose fault it is: the caller's (a bad pair, a crop, a configuration) or the
    /// environment's (files, folders, the device).
    pub fn fault(&self) -> diffbir_core::Fault {
        match self {
            Self::Core(e) => e.fault(),
            Self::Folder { .. } => diffbir_core::Fault::Environment,
            _ => diffbir_core::Fault::Caller,
        }
    }
}

/// The metrics' result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
