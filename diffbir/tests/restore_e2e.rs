//! `diffbir restore` as a user first runs it, for every task: the official v2.1 files are
//! downloaded from a 127.0.0.1 server that imitates the Hugging Face hub and GitHub
//! (`diffbir::hub::test_server`) and serves the fixtures' tiny random-weight models under the
//! official names. They are verified against the published (or pinned) SHA-256, cached in an
//! empty DIFFBIR_HOME, loaded and run on small copies of real photos (RGB, RGBA and gray). Then
//! a second run, `--offline`, works from the cache without contacting the server.
//!
//! The full-size check with the official weights is `#[ignore]`d: run it with
//! `DIFFBIR_WEIGHTS_DIR=... cargo test -p diffbir --test restore_e2e -- --ignored`.

#[path = "../../testing/fixtures.rs"]
mod fixtures;
#[path = "common/tiny.rs"]
mod tiny;

#[path = "common/command.rs"]
mod command;

use std::path::{Path, PathBuf};
use std::process::Command;

use diffbir::hub::test_server::{Route, Server, sha256_hex};
use diffbir::hub::{Host, find_file, release_files};
use diffbir::pipeline::{Task, Version};
use image::{ColorType, DynamicImage};
use tiny::{official_files, photo, shared};

/// Serves `fixture` as the official file `file_name` at the registry's first source: a Hugging
/// Face `resolve` URL redirects to a CDN path and publishes the SHA-256 of the LFS file, as the
/// hub does; a GitHub URL answers directly. Returns the path the command must ask for.
fn serve_official(server: &Server, file_name: &str, fixture: &str) -> &'static str {
    let body = std::fs::read(shared().join("fixtures").join(fixture)).unwrap();
    let source = find_file(file_name).unwrap().sources[0];
    match source.host {
        Host::HuggingFace => {
            let cdn = format!("/cdn{}", source.path);
            let resolve = Route {
                linked_etag: Some(sha256_hex(&body)),
                redirect: Some(cdn.clone()),
                ..Route::default()
            };
            server.route(source.path, resolve);
            server.route(
                &cdn,
                Route {
                    body,
                    ..Route::default()
                },
            );
        }
        _ => server.route(
            source.path,
            Route {
                body,
                ..Route::default()
            },
        ),
    }
    source.path
}

/// Runs the command with its hub at `endpoint` and its cache in `home`, ignoring the
/// caller's hub settings.
fn diffbir(args: &[&str], home: &Path, endpoint: &str) -> (i32, String, String) {
    let (out, stdout, stderr) = command::run_diffbir(args, Some(home), endpoint);
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// Downloads the official files of `task` and restores `input` (a square photo saved as
/// `file`) with them; checks the request log, the cache and the result, `scale` times the
/// input's size in its colour type. Returns the run's folder (the cache is `home/`, the input
/// `in/`, the tiny model config `tiny.json`) and the server.
fn download_and_restore(
    task: Task,
    input: DynamicImage,
    file: &str,
    scale: u32,
    color: ColorType,
) -> (tempfile::TempDir, Server) {
    let name = serde_json::to_value(task).unwrap();
    let name = name.as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    input.save(inputs.join(file)).unwrap();
    let config = tiny::tiny_models_file(dir.path());
    let output = dir.path().join("out");

    let server = Server::start().unwrap();
    let served: Vec<&str> = official_files(task)
        .iter()
        .map(|(name, fixture)| serve_official(&server, name, fixture))
        .collect();
    let args = [
        "restore",
        "--task",
        name,
        "--version",
        "v2.1",
        "--input",
        inputs.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--model-config",
        config.to_str().unwrap(),
        "--steps",
        "2",
    ];
    let (code, stdout, stderr) = diffbir(&args, &home, &server.url());
    assert_eq!(code, 0, "{name}: {stderr}");
    assert!(!stderr.contains("error"), "{name}: {stderr}");

    // Each official file was asked for once, at its official path; nothing else was.
    let requests = server.requests();
    for path in &served {
        let gets = requests
            .iter()
            .filter(|r| r.method == "GET" && r.path == *path)
            .count();
        assert_eq!(gets, 1, "{name}: GET {path}: {requests:?}");
        assert!(
            stderr.contains(path),
            "{name}: no progress for {path}: {stderr}"
        );
    }
    assert!(
        requests
            .iter()
            .all(|r| served.contains(&r.path.as_str()) || r.path.starts_with("/cdn/")),
        "{name}: {requests:?}"
    );

    // The cache holds the files, byte for byte, with the SHA-256 they were verified against.
    for (name, fixture) in official_files(task) {
        let bytes = std::fs::read(shared().join("fixtures").join(fixture)).unwrap();
        assert!(std::fs::read(home.join(name)).unwrap() == bytes, "{name}");
        let record = std::fs::read_to_string(home.join(format!("{name}.sha256"))).unwrap();
        assert_eq!(record, format!("{}  {name}\n", sha256_hex(&bytes)));
    }
    let leftovers: Vec<String> = std::fs::read_dir(&home)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock") && !n.ends_with(".sha256"))
        .collect();
    assert_eq!(leftovers.len(), 4, "{name}: {leftovers:?}");

    let stem = Path::new(file).file_stem().unwrap().to_str().unwrap();
    let result = output.join(format!("{stem}.png"));
    assert_eq!(stdout.trim(), result.display().to_string(), "{name}");
    let restored = image::open(&result).unwrap();
    let side = input.width() * scale;
    assert_eq!(
        (restored.width(), restored.height(), restored.color()),
        (side, side, color),
        "{name}"
    );
    (dir, server)
}

#[test]
fn sr_downloads_verifies_caches_restores_an_rgba_photo_then_runs_offline() {
    let mut rgba = photo("real47/1.jpg", 32).to_rgba8();
    for (x, y, p) in rgba.enumerate_pixels_mut() {
        p[3] = (x * 8 + y) as u8;
    }
    let (dir, server) = download_and_restore(
        Task::Sr,
        DynamicImage::ImageRgba8(rgba),
        "photo.png",
        4,
        ColorType::Rgba8,
    );

    // Again, offline: the cache alone, and not a single request.
    let n = server.requests().len();
    let output = dir.path().join("offline");
    let input = dir.path().join("in/photo.png");
    let config = dir.path().join("tiny.json");
    let (code, stdout, stderr) = diffbir(
        &[
            "restore",
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            "--model-config",
            config.to_str().unwrap(),
            "--steps",
            "2",
            "--offline",
        ],
        &dir.path().join("home"),
        &server.url(),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("downloading"), "{stderr}");
    assert_eq!(server.requests().len(), n, "{:?}", server.requests());
    let restored = image::open(output.join("photo.png")).unwrap();
    assert_eq!(
        (restored.width(), restored.height()),
        (128, 128),
        "{stdout}"
    );
    assert_eq!(restored.color(), ColorType::Rgba8);

    // Offline with an empty cache: a clear error naming the file, and no download.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (code, _, stderr) = diffbir(
        &[
            "restore",
            "--input",
            input.to_str().unwrap(),
            "--output",
            dir.path().join("none").to_str().unwrap(),
            "--offline",
        ],
        &empty,
        &server.url(),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("realesrgan_s4_swinir_100k.pth"), "{stderr}");
    assert!(stderr.contains("offline"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(server.requests().len(), n);
}

#[test]
fn face_downloads_verifies_caches_and_restores_a_gray_photo() {
    let face = photo("demo/bfr/aligned/0229.png", 64).to_luma8();
    download_and_restore(
        Task::Face,
        DynamicImage::ImageLuma8(face),
        "face.png",
        1,
        ColorType::L8,
    );
}

#[test]
fn denoise_downloads_verifies_caches_and_restores_an_rgb_jpeg() {
    let photo = photo("demo/bid/Bears.png", 32).to_rgb8();
    download_and_restore(
        Task::Denoise,
        DynamicImage::ImageRgb8(photo),
        "bears.jpg",
        4,
        ColorType::Rgb8,
    );
}

/// The full-size v2.1 pipeline on a real photo, with the official weights from
/// `DIFFBIR_WEIGHTS_DIR` (minutes on a CPU).
#[test]
#[ignore = "needs the official v2.1 weights in DIFFBIR_WEIGHTS_DIR"]
fn restores_a_real_photo_with_the_official_weights() {
    let files = release_files(Task::Sr, Version::V21);
    let Some(weights) = std::env::var_os("DIFFBIR_WEIGHTS_DIR").map(PathBuf::from) else {
        panic!(
            "set DIFFBIR_WEIGHTS_DIR to a folder holding the official v2.1 sr files: {}, {}, \
             {} and {} (`diffbir download --version v2.1 --task sr` fetches them)",
            files.stage1.file_name,
            files.sd.file_name,
            files.controlnet.file_name,
            files.bpe_vocab.file_name
        );
    };
    assert!(
        weights.is_dir(),
        "DIFFBIR_WEIGHTS_DIR={} is not a folder",
        weights.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let input = shared().join("images/real47/1.jpg");
    let (w, h) = image::image_dimensions(&input).unwrap();
    let output = dir.path().join("out");
    let out = Command::new(env!("CARGO_BIN_EXE_diffbir"))
        .args([
            "restore",
            "--task",
            "sr",
            "--version",
            "v2.1",
            "--weights-dir",
        ])
        .arg(&weights)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .args(["--steps", "2", "--offline"])
        // Only the weights folder: an empty cache.
        .env("DIFFBIR_HOME", dir.path().join("home"))
        .output()
        .expect("the diffbir binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for file in [files.stage1, files.sd, files.controlnet] {
        let used = format!("using {}", weights.join(file.file_name).display());
        assert!(stderr.contains(&used), "`{used}` missing from: {stderr}");
    }
    let restored = image::open(output.join("1.png")).unwrap();
    assert_eq!((restored.width(), restored.height()), (w * 4, h * 4));
    assert_eq!(restored.color(), ColorType::Rgb8);
}
