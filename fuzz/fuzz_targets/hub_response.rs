//! What the weight downloader (`diffbir download`, `diffbir restore` fetching weights) reads
//! from servers and its surroundings: `Content-Range`, the `ETag` / `X-Linked-Etag` hash and
//! `X-Linked-Size` / `Content-Length` of a Hugging Face `HEAD`, the `.sha256` sidecars in the
//! cache, endpoint URLs and the environment settings. No network.
//!
//! The input is split at newlines: the first line is the status code, the others `name: value`
//! headers; each value also goes through every parser on its own.
#![no_main]

use diffbir_hub::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let status = lines
        .next()
        .and_then(|l| l.trim().parse::<u16>().ok())
        .unwrap_or(200);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();

    let (sha256, _size) = parse::published(status, &headers);
    if let Some(hash) = &sha256 {
        assert!(
            hash.len() == 64
                && hash
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }
    for (_, value) in &headers {
        if let Some((start, total)) = parse::content_range(value) {
            if let (Some(start), Some(total)) = (start, total) {
                assert!(
                    start < total,
                    "{value:?}: start {start} past the total {total}"
                );
            }
        }
        if let Some(hash) = parse::sidecar(value) {
            assert_eq!(hash.len(), 64);
        }
        let _ = parse::loopback(value);
    }
    // The environment: every header is a variable.
    let vars: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_ascii_uppercase(), v.clone()))
        .collect();
    if let Ok(hub) = parse::from_env(&vars, Some("/nonexistent-cache".into())) {
        for host in [diffbir_hub::Host::HuggingFace, diffbir_hub::Host::GitHub] {
            let endpoint = hub.endpoint(host);
            assert!(endpoint.starts_with("http://") || endpoint.starts_with("https://"));
            for file in diffbir_hub::files() {
                for source in file.sources {
                    let _ = parse::loopback(&hub.url(source));
                }
            }
        }
    }
});
