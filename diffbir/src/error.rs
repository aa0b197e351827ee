//! The one error type of the facade.

use diffbir_core::Fault;

/// Everything that can go wrong through this crate: the foundations' and the networks'
/// errors, the hub's, training's, and a restoration cancelled by its observer.
///
/// Each kind converts with `?`, and [`Error::fault`] says whose fault it is. The hub's and
/// training's errors are boxed, so that a `Result` of this error stays small in callers'
/// functions too.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An invalid setting, an unreadable image or checkpoint, a device that cannot run.
    #[error(transparent)]
    Core(#[from] diffbir_core::Error),
    /// A weight file that cannot be found or downloaded.
    #[cfg(feature = "download")]
    #[error(transparent)]
    Hub(Box<crate::hub::HubError>),
    /// A pair of images the metrics cannot score, or their networks' files.
    #[error(transparent)]
    Metrics(Box<diffbir_metrics::Error>),
    /// A training run that cannot be prepared or run.
    #[cfg(feature = "train")]
    #[error(transparent)]
    Train(Box<diffbir_train::Error>),
    /// No tiling fits the memory budget ([`crate::plan::Planner::plan`]); nothing was loaded.
    #[error(
        "no plan fits in {}: {stage} needs {} at least ({} of it the networks' weights); give \
         a larger budget (--max-memory {}), a smaller image or upscale, or a lower precision",
        crate::plan::bytes(*budget), crate::plan::bytes(*needed), crate::plan::bytes(*weights),
        crate::plan::rounded_up(*needed)
    )]
    OutOfMemory {
        /// The budget in bytes.
        budget: u64,
        /// The smallest budget that fits, in bytes.
        needed: u64,
        /// The bytes of the weights, part of every stage's need.
        weights: u64,
        /// The stage that needs it.
        stage: String,
    },
    /// The observer asked to stop ([`crate::Observer`]); nothing was returned for the image.
    #[error("the restoration was cancelled by its observer")]
    Cancelled,
}

impl Error {
    /// Whose fault it is: the caller's (fix the input), the environment's (files, network,
    /// device) or this build's (a missing feature).
    pub fn fault(&self) -> Fault {
        match self {
            Self::Core(e) => e.fault(),
            #[cfg(feature = "download")]
            Self::Hub(e) => e.fault(),
            Self::Metrics(e) => e.fault(),
            #[cfg(feature = "train")]
            Self::Train(e) => e.fault(),
            Self::Cancelled | Self::OutOfMemory { .. } => Fault::Caller,
        }
    }
}

#[cfg(feature = "download")]
impl From<crate::hub::HubError> for Error {
    fn from(e: crate::hub::HubError) -> Self {
        Self::Hub(Box::new(e))
    }
}

impl From<diffbir_metrics::Error> for Error {
    fn from(e: diffbir_metrics::Error) -> Self {
        match e {
            diffbir_metrics::Error::Core(e) => Self::Core(e),
            e => Self::Metrics(Box::new(e)),
        }
    }
}

#[cfg(feature = "train")]
impl From<diffbir_train::Error> for Error {
    fn from(e: diffbir_train::Error) -> Self {
        Self::Train(Box::new(e))
    }
}

/// `Result` with the facade's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
