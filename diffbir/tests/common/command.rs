//! Running the `diffbir` binary from tests, isolated from the caller's hub settings.
//! Include with `#[path = "common/command.rs"] mod command;`. Each test uses part of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs `diffbir args` with `home` as its cache (when given) and both hosts at `endpoint`;
/// the caller's endpoint, offline and weights-folder settings are removed.
/// Returns the output with its stdout and stderr as text.
pub fn run_diffbir(args: &[&str], home: Option<&Path>, endpoint: &str) -> (Output, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_diffbir"));
    command
        .args(args)
        .env("DIFFBIR_HUB_ENDPOINT", endpoint)
        .env("DIFFBIR_GITHUB_ENDPOINT", endpoint)
        .env_remove("HF_ENDPOINT")
        .env_remove("DIFFBIR_OFFLINE")
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("DIFFBIR_WEIGHTS_DIR");
    if let Some(home) = home {
        command.env("DIFFBIR_HOME", home);
    }
    let out = command.output().expect("the diffbir binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// An endpoint nothing listens on: nothing can be downloaded by accident.
pub const NOWHERE: &str = "http://127.0.0.1:9";
