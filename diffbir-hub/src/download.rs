//! The HTTP side of a [`Hub`]: asking Hugging Face for a file's published hash, streaming a
//! file into its part file (resumed with a `Range` request), retries, and the hash check
//! before the file is put into the cache.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::parse::{is_loopback, parse_content_range, parse_sha256};
use crate::{DownloadEvent, DownloadObserver, HashOrigin, Host, Hub, HubError, ModelFile, Source};

impl Hub {
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
    pub(crate) fn download_from(
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

// What only the download side asks of an error (`error.rs` builds without this feature).
impl HubError {
    /// Whether trying the same source again may help.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Self::Network { .. } | Self::Protocol { .. } => true,
            Self::HttpStatus { status, .. } => matches!(status, 408 | 429 | 500..=599),
            _ => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            error: source,
        }
    }
}

/// How many bytes go through one read and one progress event.
const CHUNK: usize = 256 * 1024;

/// What a Hugging Face `HEAD` said about a file.
#[derive(Debug, Clone, Default)]
pub(crate) struct Published {
    pub(crate) sha256: Option<String>,
    pub(crate) size: Option<u64>,
}

impl Published {
    /// What the headers (by lowercase name) of a `HEAD` answer with `status` publish: the
    /// LFS SHA-256 in `X-Linked-Etag` (else `ETag`; a git SHA-1 etag is no hash), the size
    /// in `X-Linked-Size` (else, on a 200, `Content-Length`).
    pub(crate) fn from_headers(status: u16, header: impl Fn(&str) -> Option<String>) -> Self {
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

pub(crate) fn hash_reader(reader: &mut impl Read, hasher: &mut Sha256) -> io::Result<u64> {
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

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex() {
        assert_eq!(to_hex(&[0x00, 0xff, 0x1a]), "00ff1a");
        assert_eq!(
            to_hex(&Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
