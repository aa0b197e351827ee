//! The official DiffBIR weight files: where they come from, and how they are downloaded,
//! verified and cached.
//!
//! [`files`] lists every file DiffBIR's own code downloads
//! (`XPixelGroup/DiffBIR@7a332cc:diffbir/inference/pretrained_models.py`), the ones its README
//! publishes beside them, and the CLIP BPE merges file the text encoder's tokenizer needs.
//! [`release_files`] says which of them a task ([`Task`]) of a DiffBIR release ([`Version`])
//! needs. A [`Hub`] finds a file locally or downloads it:
//!
//! 1. a folder given with [`Hub::with_weights_dir`] (`--weights-dir`) that holds a file of
//!    that name: used as it is, no download;
//! 2. the cache folder ([`Hub::cache_dir`]: `$DIFFBIR_HOME`, else the user's cache folder
//!    plus `diffbir`, e.g. `~/.cache/diffbir` on Linux);
//! 3. otherwise, unless the hub is offline, a download into the cache.
//!
//! ```no_run
//! # #[cfg(feature = "download")] {
//! use diffbir_hub::{Hub, Task, Version, release_files};
//!
//! let hub = Hub::from_env()?;
//! let path = hub.fetch("controlnet-v2.1", &mut ())?;
//! for file in release_files(Task::Sr, Version::V21).all() {
//!     let path = hub.fetch_file(file, &mut ())?;
//! }
//! # }
//! # Ok::<(), diffbir_hub::HubError>(())
//! ```
//!
//! # Downloads
//!
//! A download goes to `<file>.part` in the cache folder and is hashed (SHA-256) while it
//! streams. An interrupted download keeps its part file, and the next try (in the same call,
//! up to [`Hub::with_max_attempts`] tries, or in a later call) resumes it with an HTTP `Range`
//! request; a server that ignores the range starts it over. Only a complete file whose hash
//! matches is renamed into place, so a file in the cache is always complete and verified; a
//! file whose hash does not match is deleted and the error names both hashes. A lock on
//! `<file>.lock` keeps two processes from writing the same part file.
//!
//! # Hashes
//!
//! The expected SHA-256 of a file comes from, in this order:
//!
//! - [`HashOrigin::Pinned`]: the registry (`ModelFile::sha256`), for files whose hash is
//!   published or well known (the SD 2.1 base checkpoint, the CLIP merges file);
//! - [`HashOrigin::Recorded`]: the sidecar `<file>.sha256` (in `sha256sum` format) that every
//!   completed download writes beside the file. A later download of the same file must match
//!   it; delete the sidecar to accept a changed upstream file;
//! - [`HashOrigin::Published`]: for Hugging Face files, the SHA-256 that the hub reports for
//!   Git LFS files in the `X-Linked-Etag` (or `ETag`) header of a `HEAD` on `resolve/main/…`.
//!   A published hash that contradicts a pinned or recorded one stops the download before
//!   any byte is fetched;
//! - none: the first download of a file without any published hash (the GitHub release
//!   assets of KAIR) is trusted, and its hash recorded in the sidecar (trust on first use).
//!
//! A part file is resumed without asking the server whether the file changed in between;
//! the hash check at the end catches that whenever a hash is known (pinned, recorded or
//! published), and the next try then starts over.
//!
//! A file found in the cache or in a weights folder is not hashed again on every use (the
//! big checkpoints take seconds to hash); [`Hub::verify`] (`diffbir download --verify`) does
//! that on demand.
//!
//! # Environment
//!
//! [`Hub::from_env`] reads:
//!
//! | variable | meaning |
//! |---|---|
//! | `DIFFBIR_HOME` | the cache folder |
//! | `DIFFBIR_HUB_ENDPOINT` (else `HF_ENDPOINT`) | replaces `https://huggingface.co` in every URL, for mirrors such as `https://hf-mirror.com` |
//! | `DIFFBIR_GITHUB_ENDPOINT` | replaces `https://github.com` (release assets and raw files) |
//! | `DIFFBIR_PYTORCH_ENDPOINT` | replaces `https://download.pytorch.org` (torchvision's networks, for LPIPS) |
//! | `DIFFBIR_OFFLINE` (else `HF_HUB_OFFLINE`) | `1`, `true`, `yes` or `on`: never download |
//! | `DIFFBIR_WEIGHTS_DIR` | folders (separated like `PATH`) searched before the cache |
//!
//! Proxies come from `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY`; endpoints on
//! the loopback interface are always reached directly.
//!
//! # Features
//!
//! - `download` (default): the [`Hub`], its [`DownloadObserver`] events and the `parse`
//!   module the fuzz targets use, with blocking HTTP over rustls (ureq), SHA-256 (sha2) and
//!   the user's cache folder (dirs). Without it, the registry ([`files`], [`find_file`],
//!   [`release_files`]) and [`HubError`] remain, with no network stack compiled in.
//! - `test-server`: the `test_server` module, a small HTTP/1.1 server on 127.0.0.1 that imitates
//!   Hugging Face and GitHub, for tests of code that downloads through a [`Hub`].
#![deny(missing_docs)]
// The crate docs describe the download side too; without it, their links to it dangle.
#![cfg_attr(not(feature = "download"), allow(rustdoc::broken_intra_doc_links))]

mod error;
mod registry;

#[cfg(feature = "download")]
mod download;
#[cfg(feature = "download")]
mod hub;
#[cfg(feature = "download")]
mod observe;
#[cfg(feature = "download")]
#[doc(hidden)]
pub mod parse;
#[cfg(feature = "test-server")]
pub mod test_server;

pub use diffbir_core::release::{Task, Version};
pub use error::{HashOrigin, HubError};
pub use registry::{
    FaceFiles, HashPolicy, Host, ModelFile, ReleaseFiles, Source, files, find_file, release_files,
};

#[cfg(feature = "download")]
pub use hub::{Hub, Verification};
#[cfg(feature = "download")]
pub use observe::{DownloadEvent, DownloadObserver, Location};
