//! `diffbir download`, against a small HTTP/1.1 server on 127.0.0.1 that imitates the
//! Hugging Face hub and GitHub (`diffbir::hub::test_server`; no internet, tiny fake payloads).
//! The hub's own download tests are in diffbir-hub.

#[path = "common/command.rs"]
mod command;

use std::fs;
use std::path::Path;
use std::process::Output;

use diffbir::hub::test_server::{Route, Server, leftovers, payload, sha256_hex};

fn diffbir(args: &[&str], home: &Path, server: &Server) -> (Output, String, String) {
    command::run_diffbir(args, Some(home), &server.url())
}

#[test]
fn cli_downloads_verifies_and_reuses_official_files() {
    let server = Server::start().unwrap();
    let body = payload(5000, 16);
    let resolve = "/lxq007/DiffBIR-v2/resolve/main/DiffBIR_v2.1.pt";
    server.route(
        resolve,
        Route {
            body: body.clone(),
            linked_etag: Some(sha256_hex(&body)),
            cut: Some((2000, 1)),
            ..Route::default()
        },
    );
    let home = tempfile::tempdir().unwrap();
    let (out, stdout, stderr) = diffbir(&["download", "v2.1"], home.path(), &server);
    assert!(out.status.success(), "{stderr}");
    let cached = home.path().join("DiffBIR_v2.1.pt");
    assert!(
        stdout.starts_with("controlnet-v2.1") && stdout.contains(&cached.display().to_string()),
        "{stdout}"
    );
    assert!(stderr.contains("trying again"), "{stderr}");
    assert_eq!(fs::read(&cached).unwrap(), body);

    let n = server.requests().len();
    let (out, stdout, stderr) = diffbir(
        &["download", "--offline", "--verify", "controlnet-v2.1"],
        home.path(),
        &server,
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains(&cached.display().to_string()), "{stdout}");
    assert!(stderr.contains("SHA-256 ok"), "{stderr}");
    assert_eq!(server.requests().len(), n);

    let (out, stdout, _) = diffbir(&["download", "--list"], home.path(), &server);
    assert!(out.status.success());
    let line = stdout
        .lines()
        .find(|l| l.starts_with("controlnet-v2.1 "))
        .unwrap();
    assert!(line.contains(&cached.display().to_string()), "{line}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("sd21 ") && l.ends_with(" -"))
    );
}

#[test]
fn cli_rejects_a_download_that_does_not_match_its_pinned_hash() {
    let server = Server::start().unwrap();
    let fake = payload(3000, 17);
    server.route(
        "/openai/CLIP/raw/main/clip/bpe_simple_vocab_16e6.txt.gz",
        Route {
            body: fake.clone(),
            ..Route::default()
        },
    );
    let home = tempfile::tempdir().unwrap();
    let (out, _, stderr) = diffbir(&["download", "clip-bpe"], home.path(), &server);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr
            .lines()
            .last()
            .unwrap_or_default()
            .starts_with("error: "),
        "{stderr}"
    );
    assert!(
        stderr.contains("924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"),
        "{stderr}"
    );
    assert!(stderr.contains(&sha256_hex(&fake)), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        leftovers(home.path()).is_empty(),
        "{:?}",
        leftovers(home.path())
    );
}

#[test]
fn cli_offline_and_weights_dir() {
    let server = Server::start().unwrap();
    let home = tempfile::tempdir().unwrap();
    let (out, _, stderr) = diffbir(&["download", "--offline", "bsrnet"], home.path(), &server);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for needle in ["BSRNet.pth", "offline", "--weights-dir"] {
        assert!(stderr.contains(needle), "`{needle}` missing from: {stderr}");
    }

    let weights = tempfile::tempdir().unwrap();
    let mine = weights.path().join("BSRNet.pth");
    fs::write(&mine, b"weights I already have").unwrap();
    let dir = weights.path().to_str().unwrap();
    let (out, stdout, stderr) = diffbir(
        &["download", "--weights-dir", dir, "bsrnet"],
        home.path(),
        &server,
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains(&mine.display().to_string()), "{stdout}");
    assert!(server.requests().is_empty());
    assert!(leftovers(home.path()).is_empty());

    let (out, _, stderr) = diffbir(&["download", "no-such-file"], home.path(), &server);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("unknown weight file `no-such-file`"),
        "{stderr}"
    );
    let (out, _, stderr) = diffbir(
        &[
            "download",
            "--offline",
            "--version",
            "v1",
            "--task",
            "unaligned_face",
        ],
        home.path(),
        &server,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("v1 has no unaligned_face"), "{stderr}");
}
