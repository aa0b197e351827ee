//! The error type of training.

use std::path::PathBuf;

use diffbir_core::Fault;

/// What can go wrong while preparing or running a training run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration file cannot be read or describes an impossible run.
    #[error("config {path}: {reason}")]
    Config {
        /// The config file (or `<memory>`).
        path: PathBuf,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A configuration value is out of range.
    #[error("config field `{field}`: {reason}")]
    Field {
        /// Dotted path of the field (`train.batch_size`).
        field: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause (part of the message, so not repeated as a source).
        error: std::io::Error,
    },
    /// A dataset is empty or none of its images could be read.
    #[error("dataset: {0}")]
    Data(String),
    /// A training-state checkpoint is unreadable or belongs to another run.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The data-loading thread stopped unexpectedly.
    #[error("the data loader stopped: {0}")]
    Loader(String),
    /// An error of the model crates (weights, images, devices).
    #[error(transparent)]
    Core(#[from] diffbir_core::Error),
}

impl Error {
    /// Whose fault it is: a configuration value or file is the caller's, a missing or
    /// unreadable file, dataset or checkpoint the environment's.
    pub fn fault(&self) -> Fault {
        match self {
            Self::Config { .. } | Self::Field { .. } => Fault::Caller,
            Self::Io { .. } | Self::Data(_) | Self::Checkpoint { .. } | Self::Loader(_) => {
                Fault::Environment
            }
            Self::Core(e) => e.fault(),
        }
    }

    /// An [`Error::Io`].
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            error: source,
        }
    }

    /// An [`Error::Field`].
    pub(crate) fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Field {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
