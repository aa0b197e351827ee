//! The `diffbir` command, run as a user would.

#[path = "../../testing/fixtures.rs"]
mod fixtures;

#[path = "common/command.rs"]
mod command;

use fixtures::fixtures;

use std::process::Output;

/// Runs the command; nothing can be downloaded by accident.
fn diffbir(args: &[&str]) -> (Output, String, String) {
    command::run_diffbir(args, None, command::NOWHERE)
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

/// The fixtures' ControlNet file with `os.system('true')` stored beside its tensors (under
/// the key `extra` of the pickled dictionary), as a hostile file would hold it.
fn checkpoint_calling_os_system(path: &std::path::Path) {
    use std::io::{Read, Write};
    let src = std::fs::File::open(fixtures().join("sd_tiny.controlnet_format.pth")).unwrap();
    let mut src = zip::ZipArchive::new(src).unwrap();
    let mut out = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..src.len() {
        let mut entry = src.by_index(i).unwrap();
        let name = entry.name().unwrap().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        if name.ends_with("data.pkl") {
            assert_eq!(bytes.pop(), Some(b'.'));
            bytes.extend_from_slice(
                b"X\x05\x00\x00\x00extracos\nsystem\nX\x04\x00\x00\x00true\x85Rs.",
            );
        }
        out.start_file(name, opts).unwrap();
        out.write_all(&bytes).unwrap();
    }
    out.finish().unwrap();
}

#[test]
fn pickles_that_reference_code_are_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hostile.pth");
    checkpoint_calling_os_system(&path);
    let file = path.to_str().unwrap();
    let (out, stdout, stderr) = diffbir(&["weights", "inspect", file]);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("`os.system`") && stderr.contains("hostile.pth"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // Allowed explicitly (flag or environment), the tensors are listed; nothing runs.
    let (out, stdout, stderr) = diffbir(&[
        "weights",
        "inspect",
        file,
        "--allow-pickle-global",
        "os.system",
    ]);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("input_blocks.0.0.weight"), "{stdout}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_diffbir"))
        .args(["weights", "inspect", file])
        .env("DIFFBIR_ALLOW_PICKLE_GLOBALS", "builtins.eval,os.system")
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn the_reference_command_line_spellings_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.png");
    let out = dir.path().join("out");
    // A v2.1 command line as the reference's README writes it, every option in snake case.
    let reference = [
        "--task",
        "sr",
        "--upscale",
        "4",
        "--version",
        "v2.1",
        "--sampler",
        "edm_dpm++_3m_sde",
        "--steps",
        "10",
        "--start_point_type",
        "noise",
        "--cleaner_tiled",
        "--cleaner_tile_size",
        "256",
        "--cleaner_tile_stride",
        "128",
        "--vae_encoder_tiled",
        "--vae_encoder_tile_size",
        "256",
        "--vae_decoder_tiled",
        "--vae_decoder_tile_size",
        "256",
        "--cldm_tiled",
        "--cldm_tile_size",
        "512",
        "--cldm_tile_stride",
        "256",
        "--captioner",
        "none",
        "--pos_prompt",
        "",
        "--neg_prompt",
        "low quality",
        "--cfg_scale",
        "4.0",
        "--rescale_cfg",
        "--noise_aug",
        "0",
        "--s_churn",
        "0",
        "--s_tmin",
        "0",
        "--s_tmax",
        "300",
        "--s_noise",
        "1",
        "--eta",
        "1",
        "--order",
        "1",
        "--strength",
        "1",
        "--batch_size",
        "1",
        "--n_samples",
        "1",
        "--g_loss",
        "w_mse",
        "--g_scale",
        "0.0",
        "--seed",
        "231",
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--llava_bit",
        "4",
    ];
    let mut args = vec!["restore", "--input", missing.to_str().unwrap()];
    args.extend(["--output", out.to_str().unwrap()]);
    args.extend(reference);
    let (status, _, stderr) = diffbir(&args);
    // Parsed: the run goes as far as the missing input.
    assert_eq!(status.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("missing.png"), "{stderr}");
    // A snake-case option reaches the same setting as its kebab-case name.
    let photo = fixtures().join("../images/demo/bsr/49.jpg");
    let (status, _, stderr) = diffbir(&[
        "restore",
        "--input",
        photo.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--offline",
        "--cleaner_tiled",
        "--cleaner_tile_size",
        "100",
    ]);
    assert_eq!(status.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("multiple of 64"), "{stderr}");
    // Captioners are not built in: said plainly.
    let (status, _, stderr) = diffbir(&[
        "restore",
        "--input",
        photo.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--captioner",
        "llava",
    ]);
    assert_eq!(status.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--pos-prompt"), "{stderr}");
    // The snake-case spellings are aliases, not listed in the help.
    let (_, help, _) = diffbir(&["restore", "--help"]);
    assert!(
        help.contains("--cleaner-tiled") && !help.contains("cleaner_tiled"),
        "{help}"
    );
}

#[test]
fn restore_and_download_agree_on_the_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let photo = fixtures().join("../images/demo/bsr/49.jpg");
    let out = dir.path().join("out");
    let home = dir.path().join("home");
    let (restore, _, restore_err) = diffbir(&[
        "restore",
        "--input",
        photo.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--task",
        "unaligned_face",
        "--offline",
    ]);
    let download = std::process::Command::new(env!("CARGO_BIN_EXE_diffbir"))
        .args([
            "download",
            "--version",
            "v2.1",
            "--task",
            "unaligned_face",
            "--offline",
        ])
        .env("DIFFBIR_HOME", &home)
        .output()
        .unwrap();
    let download_err = String::from_utf8_lossy(&download.stderr);
    // Both take the task; offline with an empty cache they stop at the first missing file.
    for (status, stderr) in [
        (restore.status, restore_err.as_str()),
        (download.status, &download_err),
    ] {
        assert_ne!(status.code(), Some(0), "{stderr}");
        assert!(
            stderr.contains("offline") && !stderr.contains("unknown task"),
            "{stderr}"
        );
    }
    // Every task restore accepts, download knows.
    for task in ["sr", "face", "denoise", "unaligned_face"] {
        let listed = std::process::Command::new(env!("CARGO_BIN_EXE_diffbir"))
            .args(["download", "--version", "v2.1", "--task", task, "--offline"])
            .env("DIFFBIR_HOME", &home)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&listed.stderr);
        // Offline with an empty cache: the first missing file is named, not the task refused.
        assert!(
            !stderr.contains("unknown task") && !stderr.contains("not available"),
            "{task}: {stderr}"
        );
    }
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
