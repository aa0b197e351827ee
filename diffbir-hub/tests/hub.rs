//! The weight downloads of the [`Hub`], against a small HTTP/1.1 server on 127.0.0.1
//! (`diffbir_hub::test_server`; no internet, tiny fake payloads).

use std::fs;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use diffbir_hub::test_server::{Route, Server, leftovers, payload, sha256_hex};
use diffbir_hub::{
    DownloadEvent, HashOrigin, Host, Hub, HubError, Location, ModelFile, Source, find_file,
};

// ---- helpers ---------------------------------------------------------------------------------

const HF_PATH: &str = "/acme/tiny/resolve/main/tiny.ckpt";
const CDN_PATH: &str = "/cdn/acme/tiny.ckpt";
const GH_PATH: &str = "/acme/tiny/releases/download/v1/tiny.pth";

/// A Hugging Face file without a pinned hash.
const TINY_HF: ModelFile = ModelFile {
    name: "tiny",
    aliases: &[],
    file_name: "tiny.ckpt",
    sources: &[Source {
        host: Host::HuggingFace,
        path: HF_PATH,
    }],
    size: 8192,
    sha256: None,
    description: "a test file",
};

/// A GitHub file without any hash.
const TINY_GH: ModelFile = ModelFile {
    name: "tiny-gh",
    aliases: &[],
    file_name: "tiny.pth",
    sources: &[Source {
        host: Host::GitHub,
        path: GH_PATH,
    }],
    size: 8192,
    sha256: None,
    description: "a test file",
};

fn pinned(file: ModelFile, hash: String) -> ModelFile {
    ModelFile {
        sha256: Some(Box::leak(hash.into_boxed_str())),
        ..file
    }
}

/// Serves `body` like Hugging Face: the resolve URL redirects to the CDN and publishes the
/// body's SHA-256.
fn serve_hf(server: &Server, body: &[u8], cdn: Route) {
    server.route(
        HF_PATH,
        Route {
            linked_etag: Some(sha256_hex(body)),
            redirect: Some(CDN_PATH.into()),
            ..Route::default()
        },
    );
    server.route(
        CDN_PATH,
        Route {
            body: body.to_vec(),
            ..cdn
        },
    );
}

fn hub(server: &Server, dir: &Path) -> Hub {
    Hub::new(dir)
        .with_endpoint(Host::HuggingFace, &server.url())
        .unwrap()
        .with_endpoint(Host::GitHub, &server.url())
        .unwrap()
        .with_timeouts(Duration::from_secs(5), Duration::from_secs(5))
        .with_max_attempts(3, Duration::from_millis(10))
}

/// Records the kinds of events seen.
#[derive(Default)]
struct Events(Vec<String>);

impl diffbir_hub::DownloadObserver for Events {
    fn on_event(&mut self, event: &DownloadEvent<'_>) -> ControlFlow<()> {
        let text = match event {
            DownloadEvent::Found { location, .. } => format!("found {location:?}"),
            DownloadEvent::Resuming { bytes, .. } => format!("resuming {bytes}"),
            DownloadEvent::Started { offset, total, .. } => format!("started {offset} {total:?}"),
            DownloadEvent::Progress { .. } => "progress".into(),
            DownloadEvent::Retrying { attempt, .. } => format!("retrying {attempt}"),
            DownloadEvent::SourceFailed { .. } => "source failed".into(),
            DownloadEvent::Finished {
                checked_against, ..
            } => format!("finished {checked_against:?}"),
            _ => "other".into(),
        };
        if self.0.last() != Some(&text) {
            self.0.push(text);
        }
        ControlFlow::Continue(())
    }
}

// ---- library ---------------------------------------------------------------------------------

#[test]
fn a_full_download_is_verified_and_cached() {
    let server = Server::start().unwrap();
    let body = payload(6000, 1);
    serve_hf(&server, &body, Route::default());
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(&server, dir.path());
    let mut events = Events::default();

    let path = hub.fetch_file(&TINY_HF, &mut events).unwrap();
    assert_eq!(path, dir.path().join("tiny.ckpt"));
    assert_eq!(fs::read(&path).unwrap(), body);
    assert_eq!(
        fs::read_to_string(dir.path().join("tiny.ckpt.sha256")).unwrap(),
        format!("{}  tiny.ckpt\n", sha256_hex(&body))
    );
    assert_eq!(leftovers(dir.path()), ["tiny.ckpt", "tiny.ckpt.sha256"]);
    assert_eq!(
        events.0,
        [
            "started 0 Some(6000)",
            "progress",
            "finished Some(Published)"
        ]
    );
    // HEAD for the published hash (no redirect followed), then the GET through the redirect.
    let log: Vec<(String, String)> = server
        .requests()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect();
    assert_eq!(
        log,
        [
            ("HEAD".to_owned(), HF_PATH.to_owned()),
            ("GET".to_owned(), HF_PATH.to_owned()),
            ("GET".to_owned(), CDN_PATH.to_owned()),
        ]
    );
    let check = hub.verify(&TINY_HF).unwrap().unwrap();
    assert!(check.is_ok());
    assert_eq!(check.location, Location::Cache);
    assert_eq!(
        check.expected,
        Some((sha256_hex(&body), HashOrigin::Recorded))
    );
}

#[test]
fn a_second_fetch_uses_the_cache_without_the_server() {
    let server = Server::start().unwrap();
    let body = payload(3000, 2);
    serve_hf(&server, &body, Route::default());
    let dir = tempfile::tempdir().unwrap();
    let online = hub(&server, dir.path());
    let first = online.fetch_file(&TINY_HF, &mut ()).unwrap();
    let n = server.requests().len();

    let mut events = Events::default();
    assert_eq!(online.fetch_file(&TINY_HF, &mut events).unwrap(), first);
    assert_eq!(events.0, ["found Cache"]);
    assert_eq!(
        server.requests().len(),
        n,
        "the cache hit contacted the server"
    );
    drop(server);
    // Offline, with no server at all, the cached file is still found.
    let offline = Hub::new(dir.path()).offline(true);
    assert_eq!(offline.fetch_file(&TINY_HF, &mut ()).unwrap(), first);
    assert_eq!(offline.locate(&TINY_HF), Some((first, Location::Cache)));
}

#[test]
fn an_interrupted_download_resumes_within_the_same_fetch() {
    let server = Server::start().unwrap();
    let body = payload(8000, 3);
    serve_hf(
        &server,
        &body,
        Route {
            cut: Some((3000, 1)),
            ..Route::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let mut events = Events::default();
    let path = hub(&server, dir.path())
        .fetch_file(&TINY_HF, &mut events)
        .unwrap();
    assert_eq!(fs::read(path).unwrap(), body);
    let ranges: Vec<Option<String>> = server.gets(CDN_PATH).into_iter().map(|r| r.range).collect();
    assert_eq!(ranges, [None, Some("bytes=3000-".to_owned())]);
    assert!(
        events.0.contains(&"retrying 1".to_owned()),
        "{:?}",
        events.0
    );
    assert!(
        events.0.contains(&"resuming 3000".to_owned()),
        "{:?}",
        events.0
    );
    assert_eq!(leftovers(dir.path()), ["tiny.ckpt", "tiny.ckpt.sha256"]);
}

#[test]
fn an_interrupted_download_resumes_from_its_part_file_later() {
    let server = Server::start().unwrap();
    let body = payload(8000, 4);
    serve_hf(
        &server,
        &body,
        Route {
            cut: Some((5000, 1)),
            ..Route::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let once = hub(&server, dir.path()).with_max_attempts(1, Duration::ZERO);
    let err = once.fetch_file(&TINY_HF, &mut ()).unwrap_err();
    assert!(matches!(err, HubError::Network { .. }), "{err}");
    assert!(err.to_string().contains(HF_PATH), "{err}");
    assert_eq!(leftovers(dir.path()), ["tiny.ckpt.part"]);
    assert_eq!(
        fs::read(dir.path().join("tiny.ckpt.part")).unwrap(),
        body[..5000]
    );

    let mut events = Events::default();
    let path = once.fetch_file(&TINY_HF, &mut events).unwrap();
    assert_eq!(fs::read(path).unwrap(), body);
    let last = server.gets(CDN_PATH).pop().unwrap();
    assert_eq!(last.range.as_deref(), Some("bytes=5000-"));
    assert_eq!(events.0[..2], ["resuming 5000", "started 5000 Some(8000)"]);
}

#[test]
fn a_part_file_is_resumed_or_restarted_when_the_server_ignores_ranges() {
    let body = payload(7000, 5);
    for ignore_range in [false, true] {
        let server = Server::start().unwrap();
        serve_hf(
            &server,
            &body,
            Route {
                ignore_range,
                ..Route::default()
            },
        );
        let dir = tempfile::tempdir().unwrap();
        // As a killed process leaves it.
        fs::write(dir.path().join("tiny.ckpt.part"), &body[..4096]).unwrap();
        let path = hub(&server, dir.path())
            .fetch_file(&TINY_HF, &mut ())
            .unwrap();
        assert_eq!(fs::read(path).unwrap(), body, "ignore_range={ignore_range}");
        let gets = server.gets(CDN_PATH);
        assert_eq!(gets.len(), 1);
        assert_eq!(gets[0].range.as_deref(), Some("bytes=4096-"));
    }
}

#[test]
fn a_complete_part_file_is_finished_without_a_transfer() {
    let server = Server::start().unwrap();
    let body = payload(2048, 6);
    serve_hf(&server, &body, Route::default());
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("tiny.ckpt.part"), &body).unwrap();
    let path = hub(&server, dir.path())
        .fetch_file(&TINY_HF, &mut ())
        .unwrap();
    assert_eq!(fs::read(path).unwrap(), body);
    assert_eq!(
        server.gets(CDN_PATH)[0].range.as_deref(),
        Some("bytes=2048-")
    );
}

#[test]
fn a_corrupted_download_is_rejected_and_leaves_nothing() {
    let server = Server::start().unwrap();
    let body = payload(5000, 7);
    let mut bad = body.clone();
    bad[2500] ^= 0x55;
    server.route(
        GH_PATH,
        Route {
            body: body.clone(),
            corrupt: true,
            ..Route::default()
        },
    );
    let file = pinned(TINY_GH, sha256_hex(&body));
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(&server, dir.path());
    let err = hub.fetch_file(&file, &mut ()).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            HubError::HashMismatch {
                origin: HashOrigin::Pinned,
                ..
            }
        ),
        "{text}"
    );
    assert!(text.contains(&sha256_hex(&body)), "expected hash: {text}");
    assert!(text.contains(&sha256_hex(&bad)), "actual hash: {text}");
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
    // Not retried: a full download that does not match is an error at once.
    assert_eq!(server.gets(GH_PATH).len(), 1);

    // A good part file continued with corrupted bytes is rejected as well.
    fs::write(dir.path().join("tiny.pth.part"), &body[..1000]).unwrap();
    let err = hub.fetch_file(&file, &mut ()).unwrap_err();
    assert!(matches!(err, HubError::HashMismatch { .. }), "{err}");
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
    assert!(hub.locate(&file).is_none());
}

#[test]
fn a_published_hash_that_contradicts_the_pinned_one_stops_before_downloading() {
    let server = Server::start().unwrap();
    let body = payload(4000, 8);
    serve_hf(&server, &body, Route::default());
    let pinned_hash = sha256_hex(b"something else");
    let file = pinned(TINY_HF, pinned_hash.clone());
    let dir = tempfile::tempdir().unwrap();
    let err = hub(&server, dir.path())
        .fetch_file(&file, &mut ())
        .unwrap_err();
    assert!(
        matches!(err, HubError::PublishedHashMismatch { .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&pinned_hash), "{err}");
    assert!(err.to_string().contains(&sha256_hex(&body)), "{err}");
    assert!(server.gets(CDN_PATH).is_empty());
    assert!(server.gets(HF_PATH).is_empty());
}

#[test]
fn a_first_download_records_its_hash_and_later_downloads_must_match_it() {
    let server = Server::start().unwrap();
    let body = payload(4000, 9);
    server.route(
        GH_PATH,
        Route {
            body: body.clone(),
            ..Route::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(&server, dir.path());
    let mut events = Events::default();
    let path = hub.fetch_file(&TINY_GH, &mut events).unwrap();
    assert_eq!(events.0.last().unwrap(), "finished None");
    assert_eq!(
        fs::read_to_string(dir.path().join("tiny.pth.sha256")).unwrap(),
        format!("{}  tiny.pth\n", sha256_hex(&body))
    );

    // The file disappears and upstream changes: the new bytes are refused.
    fs::remove_file(&path).unwrap();
    server.route(
        GH_PATH,
        Route {
            body: payload(4000, 10),
            ..Route::default()
        },
    );
    let err = hub.fetch_file(&TINY_GH, &mut ()).unwrap_err();
    assert!(
        matches!(
            err,
            HubError::HashMismatch {
                origin: HashOrigin::Recorded,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("delete"), "{err}");
    assert!(hub.locate(&TINY_GH).is_none());

    // Back to the original: accepted, and `verify` notices later tampering.
    server.route(
        GH_PATH,
        Route {
            body: body.clone(),
            ..Route::default()
        },
    );
    let path = hub.fetch_file(&TINY_GH, &mut events).unwrap();
    assert_eq!(events.0.last().unwrap(), "finished Some(Recorded)");
    fs::write(&path, b"tampered").unwrap();
    let check = hub.verify(&TINY_GH).unwrap().unwrap();
    assert!(!check.is_ok());
    assert_eq!(check.sha256, sha256_hex(b"tampered"));
}

#[test]
fn offline_a_missing_file_is_a_clear_error() {
    let server = Server::start().unwrap();
    serve_hf(&server, &payload(100, 11), Route::default());
    let dir = tempfile::tempdir().unwrap();
    let weights = tempfile::tempdir().unwrap();
    let hub = hub(&server, dir.path())
        .with_weights_dir(weights.path())
        .offline(true);
    let err = hub.fetch_file(&TINY_HF, &mut ()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, HubError::Offline { .. }), "{text}");
    assert_eq!(err.fault(), diffbir_core::Fault::Environment);
    for needle in [
        "tiny.ckpt",
        "`tiny`",
        "offline",
        "diffbir download tiny",
        &format!("{}{HF_PATH}", server.url()),
        &dir.path().display().to_string(),
        &weights.path().display().to_string(),
    ] {
        assert!(text.contains(needle), "`{needle}` missing from: {text}");
    }
    assert!(server.requests().is_empty());
    assert!(leftovers(dir.path()).is_empty());

    // The registry's own files say where they come from.
    let err = Hub::new(dir.path())
        .offline(true)
        .fetch("v2.1", &mut ())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("https://huggingface.co/lxq007/DiffBIR-v2/resolve/main/DiffBIR_v2.1.pt"),
        "{err}"
    );
}

#[test]
fn files_in_a_weights_dir_are_used_without_download() {
    let server = Server::start().unwrap();
    serve_hf(&server, &payload(100, 12), Route::default());
    let dir = tempfile::tempdir().unwrap();
    let (empty, weights) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mine = weights.path().join("tiny.ckpt");
    fs::write(&mine, b"my own copy").unwrap();
    for offline in [false, true] {
        let hub = hub(&server, dir.path())
            .with_weights_dir(empty.path())
            .with_weights_dir(weights.path())
            .offline(offline);
        let mut events = Events::default();
        assert_eq!(hub.fetch_file(&TINY_HF, &mut events).unwrap(), mine);
        assert_eq!(events.0, ["found WeightsDir"]);
        let check = hub.verify(&TINY_HF).unwrap().unwrap();
        assert_eq!(check.location, Location::WeightsDir);
        assert!(check.is_ok() && check.expected.is_none());
    }
    assert!(server.requests().is_empty());
    assert!(leftovers(dir.path()).is_empty());
    // A weights folder also serves registry files by their file name.
    fs::write(weights.path().join("DiffBIR_v2.1.pt"), b"x").unwrap();
    let hub = Hub::new(dir.path())
        .with_weights_dir(weights.path())
        .offline(true);
    assert_eq!(
        hub.path_if_cached("controlnet-v2.1").unwrap(),
        Some(weights.path().join("DiffBIR_v2.1.pt"))
    );
    assert_eq!(hub.path_if_cached("sd21").unwrap(), None);
    assert!(hub.path_if_cached("no-such-file").is_err());
}

#[test]
fn http_errors_name_the_url_and_only_passing_ones_are_retried() {
    let server = Server::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(&server, dir.path());
    // Nothing served: 404 on the HEAD, not retried.
    let err = hub.fetch_file(&TINY_HF, &mut ()).unwrap_err();
    assert!(
        matches!(err, HubError::HttpStatus { status: 404, .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&format!("{}{HF_PATH}", server.url()))
    );
    assert_eq!(server.requests().len(), 1);

    server.route(
        GH_PATH,
        Route {
            status: Some(503),
            ..Route::default()
        },
    );
    let mut events = Events::default();
    let err = hub.fetch_file(&TINY_GH, &mut events).unwrap_err();
    assert!(
        matches!(err, HubError::HttpStatus { status: 503, .. }),
        "{err}"
    );
    assert_eq!(server.gets(GH_PATH).len(), 3);
    assert_eq!(events.0, ["retrying 1", "retrying 2"]);
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
}

#[test]
fn the_next_source_is_tried_when_one_fails() {
    let server = Server::start().unwrap();
    let body = payload(3000, 13);
    serve_hf(&server, &body, Route::default());
    let file = ModelFile {
        sources: &[
            Source {
                host: Host::HuggingFace,
                path: "/gone/tiny/resolve/main/tiny.ckpt",
            },
            Source {
                host: Host::HuggingFace,
                path: HF_PATH,
            },
        ],
        ..TINY_HF
    };
    let dir = tempfile::tempdir().unwrap();
    let mut events = Events::default();
    let path = hub(&server, dir.path())
        .fetch_file(&file, &mut events)
        .unwrap();
    assert_eq!(fs::read(path).unwrap(), body);
    assert_eq!(events.0[0], "source failed");

    // When all fail, every error is reported.
    let file = ModelFile {
        sources: &[
            Source {
                host: Host::HuggingFace,
                path: "/gone/a/resolve/main/tiny.ckpt",
            },
            Source {
                host: Host::GitHub,
                path: "/gone/b/tiny.ckpt",
            },
        ],
        file_name: "other.ckpt",
        ..TINY_HF
    };
    let err = hub(&server, dir.path())
        .fetch_file(&file, &mut ())
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, HubError::AllSourcesFailed { .. }), "{text}");
    assert!(
        text.contains("/gone/a/") && text.contains("/gone/b/"),
        "{text}"
    );
}

#[test]
fn a_cancelled_download_keeps_its_part_file_to_resume() {
    let server = Server::start().unwrap();
    let body = payload(600_000, 14);
    serve_hf(&server, &body, Route::default());
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(&server, dir.path());
    let mut cancel = |e: &DownloadEvent<'_>| match e {
        DownloadEvent::Progress { .. } => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    };
    let err = hub.fetch_file(&TINY_HF, &mut cancel).unwrap_err();
    let HubError::Cancelled { bytes, part, .. } = &err else {
        panic!("{err}")
    };
    assert!(*bytes > 0 && *bytes < 600_000, "{bytes}");
    assert_eq!(fs::metadata(part).unwrap().len(), *bytes);
    let path = hub.fetch_file(&TINY_HF, &mut ()).unwrap();
    assert_eq!(fs::read(path).unwrap(), body);
    assert_eq!(
        server.gets(CDN_PATH).pop().unwrap().range,
        Some(format!("bytes={bytes}-"))
    );
}

#[test]
fn a_download_under_way_elsewhere_is_not_joined() {
    let server = Server::start().unwrap();
    serve_hf(&server, &payload(100, 15), Route::default());
    let dir = tempfile::tempdir().unwrap();
    let lock = fs::File::create(dir.path().join("tiny.ckpt.lock")).unwrap();
    lock.try_lock().unwrap();
    let err = hub(&server, dir.path())
        .fetch_file(&TINY_HF, &mut ())
        .unwrap_err();
    assert!(matches!(err, HubError::Busy { .. }), "{err}");
    assert!(server.requests().is_empty());
    drop(lock);
    assert!(
        hub(&server, dir.path())
            .fetch_file(&TINY_HF, &mut ())
            .is_ok()
    );
}

#[test]
fn the_pinned_clip_merges_hash_matches_the_shipped_file() {
    let fixtures = std::env::var_os("DIFFBIR_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"));
    let bytes = fs::read(fixtures.join("bpe_simple_vocab_16e6.txt.gz"))
        .expect("the shared fixtures hold the CLIP merges file (set DIFFBIR_FIXTURES)");
    let file = find_file("clip-bpe").unwrap();
    assert_eq!(Some(sha256_hex(&bytes).as_str()), file.sha256);
    assert_eq!(bytes.len() as u64, file.size);
}
