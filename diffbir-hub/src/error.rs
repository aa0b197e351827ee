//! What can go wrong finding or downloading a weight file.

use std::fmt;
use std::io;
use std::path::PathBuf;

use diffbir_core::Fault;

/// Where an expected SHA-256 came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashOrigin {
    /// Pinned in diffbir's registry.
    Pinned,
    /// Recorded in the `.sha256` sidecar at an earlier download.
    Recorded,
    /// Published by the server (Hugging Face's LFS hash).
    Published,
}

impl fmt::Display for HashOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pinned => "pinned in diffbir",
            Self::Recorded => {
                "recorded at an earlier download in the cache's .sha256 file; delete that file to accept a changed upstream file"
            }
            Self::Published => "published by the server",
        })
    }
}

/// What can go wrong finding or downloading a weight file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// No file of that name is known.
    #[error("unknown weight file `{name}`; known files: {known}")]
    UnknownFile {
        /// The name as given.
        name: String,
        /// The known names, comma separated.
        known: String,
    },

    /// A setting (an endpoint, a task, a version) is malformed.
    #[error("invalid {what} `{value}`: {reason}")]
    InvalidSetting {
        /// What the setting is (e.g. `DIFFBIR_HUB_ENDPOINT`).
        what: String,
        /// The value as given.
        value: String,
        /// What would be accepted.
        reason: String,
    },

    /// Neither `DIFFBIR_HOME` nor a user cache folder is available.
    #[error("no cache folder for weights: set DIFFBIR_HOME")]
    NoCacheDir,

    /// The file is not available locally and downloads are off.
    #[error(
        "{file_name} (`{name}`) is not in {searched}, and downloads are off (offline mode); \
         run `diffbir download {name}` where there is internet access and copy the file into \
         {cache_dir}, point --weights-dir at a folder that holds it, or download {url} yourself"
    )]
    Offline {
        /// The registry name.
        name: String,
        /// The file name looked for.
        file_name: String,
        /// The folders searched, as a readable list.
        searched: String,
        /// The cache folder.
        cache_dir: PathBuf,
        /// Where the file can be downloaded from.
        url: String,
    },

    /// A file operation in the cache or a weights folder failed.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error (part of the message, so not repeated as a source).
        error: io::Error,
    },

    /// The server could not be reached, or the transfer broke off.
    #[error("{url}: {reason}")]
    Network {
        /// The URL.
        url: String,
        /// What happened.
        reason: String,
    },

    /// The server answered with an error status.
    #[error("{url}: the server answered HTTP {status}")]
    HttpStatus {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },

    /// The server's answer does not make sense (a wrong byte range, too many bytes).
    #[error("{url}: {reason}")]
    Protocol {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },

    /// A downloaded file does not have the expected hash; it was deleted.
    #[error(
        "{file_name}: SHA-256 mismatch: expected {expected} ({origin}), got {actual} from {url}; \
         the download was deleted and nothing was put into the cache"
    )]
    HashMismatch {
        /// The file name.
        file_name: String,
        /// Where it was downloaded from.
        url: String,
        /// The expected hash.
        expected: String,
        /// The hash of what was downloaded.
        actual: String,
        /// Where the expected hash came from.
        origin: HashOrigin,
    },

    /// The server publishes a hash for the file that is not the expected one; nothing was
    /// downloaded.
    #[error(
        "{file_name}: {url} publishes SHA-256 {published}, but {expected} is expected ({origin}); \
         nothing was downloaded"
    )]
    PublishedHashMismatch {
        /// The file name.
        file_name: String,
        /// The URL asked.
        url: String,
        /// The hash the server publishes.
        published: String,
        /// The expected hash.
        expected: String,
        /// Where the expected hash came from.
        origin: HashOrigin,
    },

    /// Another process is downloading the same file into the same cache.
    #[error(
        "{file_name}: another process is downloading this file right now (it holds {lock}); \
         wait for it to finish"
    )]
    Busy {
        /// The file name.
        file_name: String,
        /// The lock file.
        lock: PathBuf,
    },

    /// The observer stopped the download; what arrived is kept to resume from.
    #[error("{file_name}: download cancelled; {bytes} bytes kept in {part} to resume from")]
    Cancelled {
        /// The file name.
        file_name: String,
        /// The part file.
        part: PathBuf,
        /// How many bytes it holds.
        bytes: u64,
    },

    /// Every source of a file failed.
    #[error("{file_name}: every source failed: {}", join_errors(.errors))]
    AllSourcesFailed {
        /// The file name.
        file_name: String,
        /// One error per source, in the order they were tried.
        errors: Vec<HubError>,
    },
}

fn join_errors(errors: &[HubError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl HubError {
    /// Who has to act to fix this error.
    pub fn fault(&self) -> Fault {
        match self {
            Self::UnknownFile { .. } | Self::InvalidSetting { .. } => Fault::Caller,
            _ => Fault::Environment,
        }
    }
}
