//! The error type shared by every diffbir crate.
//!
//! Variants are sorted by whose fault the failure is ([`Fault`]): the caller passed something
//! wrong, the environment (a file, a device) let us down, or this build lacks a capability.
//! Each carries what a user needs to fix it: the offending path, tensor key or shape.

use std::path::PathBuf;

/// Who has to act to fix an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The caller passed an invalid value (a flag, a size, a name).
    Caller,
    /// A file, a checkpoint or a device is missing, unreadable or does not match.
    Environment,
    /// This build of diffbir-rs lacks the capability (a backend feature, a model).
    Build,
}

/// Everything that can go wrong in the diffbir foundations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- the caller --------------------------------------------------------------------
    /// A value given by the caller is out of range or malformed.
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// What was invalid (a flag or parameter name).
        what: String,
        /// Why, and what would be accepted.
        reason: String,
    },

    /// A device name that is not one of the known forms.
    #[error(
        "unknown device `{name}`: use cpu, flex, wgpu, wgpu:N, vulkan, vulkan:N, cuda or cuda:N"
    )]
    UnknownDevice {
        /// The name as given.
        name: String,
    },

    /// The output format cannot store what is asked of it.
    #[error("{path}: {reason}")]
    UnsupportedOutput {
        /// The output path.
        path: PathBuf,
        /// What cannot be stored and what to do instead.
        reason: String,
    },

    // ---- the environment ---------------------------------------------------------------
    /// Reading or writing a file failed.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error (part of the message, so not repeated as a source).
        error: std::io::Error,
    },

    /// A file is not a decodable image (empty, truncated, corrupt or of an unknown format).
    #[error("{path}: cannot decode the image: {reason}")]
    ImageDecode {
        /// The file.
        path: PathBuf,
        /// The decoder's explanation.
        reason: String,
    },

    /// An image whose size is outside the accepted range (too small to process, or larger
    /// than the decoding limits, e.g. a decompression bomb).
    #[error("{path}: image is {width}x{height}; {reason}")]
    ImageSize {
        /// The file.
        path: PathBuf,
        /// Width in pixels (0 when the decoder refused before knowing it).
        width: u32,
        /// Height in pixels (0 when the decoder refused before knowing it).
        height: u32,
        /// The limit that was crossed and how to change it.
        reason: String,
    },

    /// Encoding an image failed.
    #[error("{path}: cannot encode the image: {reason}")]
    ImageEncode {
        /// The output file.
        path: PathBuf,
        /// The encoder's explanation.
        reason: String,
    },

    /// A PyTorch checkpoint's pickle names a global that a file holding only weights never
    /// needs (a function such as `os.system`, or a class of some training framework).
    #[error(
        "{path}: refused: its pickle references `{global}` ({opcode}), which is not a tensor \
         rebuilder, storage or plain container; PyTorch's weights_only loader refuses it too. \
         Nothing in the file was run. If you trust the file, allow the name explicitly \
         (`--allow-pickle-global {global}`, or `checkpoint::allow_pickle_globals` in code)"
    )]
    PickleGlobal {
        /// The file.
        path: PathBuf,
        /// The global, `module.name`.
        global: String,
        /// The opcode that named it (`GLOBAL`, `STACK_GLOBAL` or `INST`).
        opcode: &'static str,
    },

    /// A file is not a readable checkpoint.
    #[error("{path}: not a readable checkpoint: {reason}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A tensor of a checkpoint could not be read or converted.
    #[error("{path}: tensor `{key}`: {reason}")]
    Tensor {
        /// The checkpoint.
        path: PathBuf,
        /// The tensor key as stored in the file.
        key: String,
        /// What went wrong.
        reason: String,
    },

    /// Two checkpoint keys were renamed onto the same parameter by a key map.
    #[error("{path}: key map `{map}` renames both `{first}` and `{second}` to `{target}`")]
    KeyCollision {
        /// The checkpoint.
        path: PathBuf,
        /// The key map's name.
        map: String,
        /// First source key.
        first: String,
        /// Second source key.
        second: String,
        /// The parameter path both map to.
        target: String,
    },

    /// Strict loading found missing, unused or mis-shaped tensors.
    #[error("{path}: does not match `{model}`: {summary}")]
    WeightsMismatch {
        /// The checkpoint.
        path: PathBuf,
        /// The model (key map) it was loaded into.
        model: String,
        /// A readable list of the offending keys.
        summary: String,
        /// The full report.
        report: Box<crate::weights::LoadReport>,
    },

    /// The device exists in this build but none is available on this machine.
    #[error("device `{name}`: {reason}")]
    DeviceUnavailable {
        /// The device name as given.
        name: String,
        /// What was found instead.
        reason: String,
    },

    // ---- this build --------------------------------------------------------------------
    /// The device's backend was not compiled into this build.
    #[error(
        "device `{name}` needs the `{feature}` feature, which this build does not have: rebuild with `--features {feature}`"
    )]
    BackendNotCompiled {
        /// The device name as given.
        name: String,
        /// The cargo feature that enables it.
        feature: &'static str,
    },

    /// A capability this build does not have.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl Error {
    /// Who has to act to fix this error.
    pub fn fault(&self) -> Fault {
        match self {
            Self::InvalidArgument { .. }
            | Self::UnknownDevice { .. }
            | Self::UnsupportedOutput { .. } => Fault::Caller,
            Self::Io { .. }
            | Self::ImageDecode { .. }
            | Self::ImageSize { .. }
            | Self::ImageEncode { .. }
            | Self::Checkpoint { .. }
            | Self::PickleGlobal { .. }
            | Self::Tensor { .. }
            | Self::KeyCollision { .. }
            | Self::WeightsMismatch { .. }
            | Self::DeviceUnavailable { .. } => Fault::Environment,
            Self::BackendNotCompiled { .. } | Self::Unsupported(_) => Fault::Build,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            error: source,
        }
    }

    /// An [`Error::InvalidArgument`]: `what` names the setting, `reason` says what is wrong
    /// and how to fix it.
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
