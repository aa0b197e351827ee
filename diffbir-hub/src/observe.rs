//! What a [`Hub`](crate::Hub) tells its caller while it finds and downloads a file.

use std::ops::ControlFlow;
use std::path::Path;

use crate::{HashOrigin, HubError, ModelFile};

/// Where a file was found without downloading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// A folder given with [`Hub::with_weights_dir`](crate::Hub::with_weights_dir).
    WeightsDir,
    /// The cache folder.
    Cache,
}

/// What a [`Hub`](crate::Hub) tells its [`DownloadObserver`].
#[derive(Debug)]
#[non_exhaustive]
pub enum DownloadEvent<'a> {
    /// The file is available without a download.
    Found {
        /// The file.
        file: &'a ModelFile,
        /// Its path.
        path: &'a Path,
        /// Where it was found.
        location: Location,
    },
    /// The bytes already in a part file are being hashed before the download resumes.
    Resuming {
        /// The file.
        file: &'a ModelFile,
        /// How many bytes the part file holds.
        bytes: u64,
    },
    /// A transfer starts.
    Started {
        /// The file.
        file: &'a ModelFile,
        /// The URL asked.
        url: &'a str,
        /// The bytes already there (resumed from the part file).
        offset: u64,
        /// The file's full size, when the server says.
        total: Option<u64>,
    },
    /// More bytes arrived.
    Progress {
        /// The file.
        file: &'a ModelFile,
        /// Bytes in the part file so far.
        downloaded: u64,
        /// The file's full size, when the server says.
        total: Option<u64>,
    },
    /// A try failed in a way that another try may fix; the hub waits, then resumes.
    Retrying {
        /// The file.
        file: &'a ModelFile,
        /// The try that failed (1-based).
        attempt: u32,
        /// How many tries are allowed.
        max_attempts: u32,
        /// Why it failed.
        error: &'a HubError,
    },
    /// A source failed for good; the next source is tried.
    SourceFailed {
        /// The file.
        file: &'a ModelFile,
        /// Why it failed.
        error: &'a HubError,
    },
    /// The file was downloaded, verified and put into the cache.
    Finished {
        /// The file.
        file: &'a ModelFile,
        /// Its path in the cache.
        path: &'a Path,
        /// Its SHA-256.
        sha256: &'a str,
        /// Where the hash it was checked against came from; `None` for a first download
        /// whose hash was only recorded.
        checked_against: Option<HashOrigin>,
    },
}

/// Receives progress from a [`Hub`](crate::Hub); library code never prints. Return
/// `ControlFlow::Break(())` to cancel a download (its part file is kept).
pub trait DownloadObserver {
    /// Called for every event.
    fn on_event(&mut self, _event: &DownloadEvent<'_>) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

/// Observes nothing.
impl DownloadObserver for () {}

impl<F: FnMut(&DownloadEvent<'_>) -> ControlFlow<()>> DownloadObserver for F {
    fn on_event(&mut self, event: &DownloadEvent<'_>) -> ControlFlow<()> {
        self(event)
    }
}
