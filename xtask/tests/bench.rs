//! `cargo xtask bench --tiny`: every inference component runs at the tiny sizes in f32 and in
//! bf16 (models cast as the pipeline casts them, inputs as it passes them).

use std::process::Command;

fn bench(precision: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "bench",
            "--tiny",
            "--in-process",
            "--runs",
            "1",
            "--warmup",
            "0",
        ])
        .args(["--precision", precision, "--json"])
        .args(["--skip", "vae-decode-tiled"])
        .output()
        .expect("xtask runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{precision}: {stdout}{stderr}");
    assert!(!stderr.contains("failed"), "{precision}: {stderr}");
    for name in ["swinir", "vae-decode", "controlldm-step", "text-encoder"] {
        assert!(
            stdout.contains(&format!("\"name\":\"{name}\"")),
            "{precision}: no {name} record:\n{stdout}"
        );
    }
}

#[test]
fn every_inference_component_runs_tiny_in_f32_and_bf16() {
    bench("f32");
    bench("bf16");
}
