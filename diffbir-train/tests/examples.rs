//! The programs of `examples/`, run as a user runs them (`cargo test` builds them).

use std::path::Path;
use std::process::Command;

#[test]
fn train_tiny_stage1_trains_and_loads_its_weights() {
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("examples")
        .join(format!("train_tiny_stage1{}", std::env::consts::EXE_SUFFIX));
    assert!(
        example.is_file(),
        "the example is not built at {}: run `cargo test -p diffbir-train`, which builds it",
        example.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(&example)
        .arg(dir.path())
        .arg("2")
        .output()
        .expect("the example runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("step 2: loss"), "{stdout}");
    assert!(dir.path().join("final.safetensors").is_file(), "{stdout}");
    assert!(stdout.contains("loaded:"), "{stdout}");
}
