//! The [`Hub`]: a cache folder, the weights folders searched before it, the endpoints and
//! the retry settings; finding, fetching and verifying files.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::download::{hash_reader, to_hex};
use crate::parse::{parse_flag, parse_sidecar};
use crate::{
    DownloadEvent, DownloadObserver, HashOrigin, Host, HubError, Location, ModelFile, Source,
    find_file,
};

/// Finds, downloads, verifies and caches weight files (see the [crate docs](crate)).
#[derive(Debug, Clone)]
pub struct Hub {
    cache_dir: PathBuf,
    weights_dirs: Vec<PathBuf>,
    offline: bool,
    huggingface: String,
    github: String,
    pytorch: String,
    // The transfer settings, read by `download.rs`.
    pub(crate) connect_timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) max_attempts: u32,
    pub(crate) retry_delay: Duration,
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
            pytorch: Host::PyTorch.default_endpoint().to_owned(),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            max_attempts: 5,
            retry_delay: Duration::from_secs(2),
        }
    }

    /// A hub configured from the environment (see the [crate docs](crate#environment)).
    pub fn from_env() -> Result<Self, HubError> {
        Self::from_lookup(|name| std::env::var_os(name), dirs::cache_dir())
    }

    pub(crate) fn from_lookup(
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
            (Host::PyTorch, None),
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
            Host::PyTorch => self.pytorch = trimmed.to_owned(),
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
            Host::PyTorch => &self.pytorch,
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

    pub(crate) fn side_path(&self, file: &ModelFile, extension: &str) -> PathBuf {
        self.cache_dir
            .join(format!("{}.{extension}", file.file_name))
    }

    /// The hash in the `.sha256` sidecar, if there is a well-formed one.
    pub(crate) fn recorded_hash(&self, file: &ModelFile) -> Result<Option<String>, HubError> {
        let path = self.side_path(file, "sha256");
        match fs::read_to_string(&path) {
            Ok(text) => Ok(parse_sidecar(&text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(HubError::io(path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
