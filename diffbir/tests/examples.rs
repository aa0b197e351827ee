//! The programs of `examples/`, run as a user runs them: built by `cargo test`, given a small
//! real photo, with the hub offline and pointed at a weights folder that holds the fixtures'
//! tiny random-weight models under the official v2.1 names, and the tiny network shapes as
//! their optional argument.

#[path = "../../testing/fixtures.rs"]
mod fixtures;
#[path = "common/tiny.rs"]
mod tiny;

use std::path::{Path, PathBuf};
use std::process::Command;

use diffbir::pipeline::Task;

/// The example binary `name`, which `cargo test` builds beside the test binaries.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("examples");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "the example {name} is not built at {}: run `cargo test -p diffbir` (which builds the \
         examples) or `cargo build -p diffbir --examples`",
        path.display()
    );
    path
}

/// Runs example `name` with `args` against the tiny models; returns its stdout.
fn run(name: &str, dir: &Path, args: &[&Path]) -> String {
    let weights = tiny::weights_dir(Task::Sr, dir);
    let out = Command::new(example(name))
        .args(args)
        .env("DIFFBIR_HOME", dir.join("home"))
        .env("DIFFBIR_WEIGHTS_DIR", &weights)
        .env("DIFFBIR_OFFLINE", "1")
        .output()
        .expect("the example runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name}: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A 32×32 RGBA photo in `dir` (alpha kept by the restoration).
fn input(dir: &Path) -> PathBuf {
    let path = dir.join("photo.png");
    tiny::photo("real47/1.jpg", 32)
        .to_rgba8()
        .save(&path)
        .unwrap();
    path
}

#[test]
fn restore_photo_writes_the_restored_image() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (input(dir.path()), dir.path().join("restored.png"));
    let models = tiny::tiny_models_file(dir.path());
    let stdout = run("restore_photo", dir.path(), &[&input, &output, &models]);
    assert!(stdout.contains("restored.png"), "{stdout}");
    let restored = image::open(&output).unwrap();
    assert_eq!((restored.width(), restored.height()), (128, 128));
    assert!(restored.color().has_alpha());
}

#[test]
fn custom_sampler_reports_every_step_and_cancels() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (input(dir.path()), dir.path().join("restored.png"));
    let models = tiny::tiny_models_file(dir.path());
    let stdout = run("custom_sampler", dir.path(), &[&input, &output, &models]);
    assert!(stdout.contains("step 20/20"), "{stdout}");
    assert!(output.is_file());

    let cancelled = dir.path().join("cancelled.png");
    let stdout = run(
        "custom_sampler",
        dir.path(),
        &[&input, &cancelled, &models, Path::new("3")],
    );
    assert!(
        stdout.contains("step 3/20") && stdout.contains("cancelled"),
        "{stdout}"
    );
    assert!(!stdout.contains("step 4/20"), "{stdout}");
    assert!(
        !cancelled.exists(),
        "a cancelled restoration wrote an output"
    );
}

#[test]
fn stage1_only_cleans_the_photo() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (input(dir.path()), dir.path().join("cleaned.png"));
    let stage1 = dir.path().join("stage1.json");
    std::fs::write(
        &stage1,
        serde_json::to_string(&tiny::tiny_models().stage1).unwrap(),
    )
    .unwrap();
    run("stage1_only", dir.path(), &[&input, &output, &stage1]);
    let cleaned = image::open(&output).unwrap();
    assert_eq!((cleaned.width(), cleaned.height()), (32, 32));
}
