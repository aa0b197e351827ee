//! The `diffbir` command, run as a user would.

#[path = "../../testing/fixtures.rs"]
mod fixtures;

use fixtures::fixtures;

use std::process::{Command, Output};

fn diffbir(args: &[&str]) -> (Output, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_diffbir"))
        .args(args)
        .output()
        .expect("the diffbir binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

#[test]
fn inspect_lists_every_container_format() {
    let dir = fixtures();
    for (file, expect) in [
        ("sd_tiny.sd21_format.ckpt", "(selected `state_dict`)"),
        ("sd_tiny.controlnet_format.pth", "pytorch"),
        ("swinir_tiny.weights.safetensors", "safetensors"),
    ] {
        let path = dir.join(file);
        let (out, stdout, stderr) = diffbir(&["weights", "inspect", path.to_str().unwrap()]);
        assert!(out.status.success(), "{file}: {stderr}");
        let last = stdout.lines().last().unwrap_or_default();
        assert!(
            last.contains("tensors,") && last.contains(expect),
            "{file}: {last}"
        );
        assert!(stdout.lines().count() > 10, "{file}: {stdout}");
    }
    let path = dir.join("sd_tiny.controlnet_format.pth");
    let (_, stdout, _) = diffbir(&["weights", "inspect", path.to_str().unwrap()]);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("input_blocks.0.0.weight") && l.contains("f32")),
        "{stdout}"
    );
}

#[test]
fn bad_checkpoints_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(fixtures().join("sd_tiny.controlnet_format.pth")).unwrap();
    let cases: [(&str, &[u8]); 4] = [
        ("empty.pth", b""),
        ("notes.ckpt", b"just some text, not a checkpoint"),
        ("truncated.pth", &full[..full.len() / 3]),
        (
            "image.safetensors",
            &[0x89, b'P', b'N', b'G', 0, 0, 0, 0, 0, 0],
        ),
    ];
    for (name, bytes) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let (out, _, stderr) = diffbir(&["weights", "inspect", p.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.starts_with("error: "), "{name}: {stderr}");
        assert!(stderr.contains(name), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
    let (out, _, stderr) = diffbir(&["weights", "inspect", "/no/such/file.pth"]);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
}

#[test]
fn verify_names_unknown_models_and_devices() {
    let ckpt = fixtures().join("swinir_tiny.weights.safetensors");
    let ckpt = ckpt.to_str().unwrap();
    let (out, _, stderr) = diffbir(&["weights", "verify", ckpt, "--model", "no-such-model"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("no-such-model"), "{stderr}");
    let (out, _, stderr) = diffbir(&["weights", "verify", ckpt, "--model", "x", "--device", "tpu"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("unknown device `tpu`"), "{stderr}");
    let (out, _, _) = diffbir(&["weights", "models"]);
    assert!(out.status.success());
}
