//! The parsers of what servers, sidecar files and the environment hand the hub, for the fuzz
//! targets (`fuzz/fuzz_targets/hub_response.rs`); not part of the API.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::download::Published;
use crate::{Hub, HubError};

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
pub fn from_env(vars: &[(String, String)], user_cache: Option<PathBuf>) -> Result<Hub, HubError> {
    Hub::from_lookup(
        |name| {
            vars.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| OsString::from(v))
        },
        user_cache,
    )
}

/// A SHA-256 in hex (any case) → lowercase; anything else (a git blob SHA-1 etag) → `None`.
pub(crate) fn parse_sha256(s: &str) -> Option<String> {
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

/// The hash of a `.sha256` sidecar (`sha256sum` format: the hash, spaces, the file name).
pub(crate) fn parse_sidecar(text: &str) -> Option<String> {
    text.split_whitespace().next().and_then(parse_sha256)
}

pub(crate) fn parse_flag(name: &str, value: &OsString) -> Result<bool, HubError> {
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
pub(crate) struct ContentRange {
    pub(crate) start: Option<u64>,
    pub(crate) total: Option<u64>,
}

pub(crate) fn parse_content_range(value: &str) -> Option<ContentRange> {
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
pub(crate) fn is_loopback(url: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn etags() {
        let h = "924691AC288E54409236115652AD4AA250F48203DE50A9E4722A6ECD48D6804A";
        assert_eq!(parse_sha256(h).unwrap(), h.to_ascii_lowercase());
        assert_eq!(
            parse_sha256("a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"),
            None
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
}
