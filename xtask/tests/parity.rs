//! The parity runner over the reference fixtures, and over altered copies of them.

#[path = "../../testing/fixtures.rs"]
mod fixtures;

use fixtures::fixtures;
use std::path::Path;

use burn::tensor::Device;
use xtask::parity::{self, Status};

fn status_of(reports: &[parity::CaseReport], name: &str) -> Status {
    reports
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no report for {name}"))
        .status
        .clone()
}

/// The sampler sweep generated from the original code (`xtask/reference/`).
fn sampler_sweep() -> std::path::PathBuf {
    fixtures::repo_fixtures("samplers")
}

#[test]
fn every_case_runs_and_passes() {
    assert_all_pass(&fixtures(), 90);
}

#[test]
fn every_generated_sampler_case_runs_and_passes() {
    assert_all_pass(&sampler_sweep(), 1300);
}

#[test]
fn every_generated_face_case_runs_and_passes() {
    assert_all_pass(&fixtures::repo_fixtures("face"), 9);
}

#[test]
fn every_generated_metric_case_runs_and_passes() {
    assert_all_pass(&fixtures::repo_fixtures("metrics"), 12);
}

fn assert_all_pass(dir: &Path, at_least: usize) {
    let reports = parity::run_dir(dir, &[], &Device::flex()).unwrap();
    let cases = parity::discover(dir).unwrap();
    assert_eq!(reports.len(), cases.len());
    assert!(
        reports.len() >= at_least,
        "only {} cases in {}",
        reports.len(),
        dir.display()
    );
    // Strict: a case that fails or that this build cannot run (UNSUPPORTED) is an error.
    let not_passed: Vec<String> = reports
        .iter()
        .filter(|r| r.status != Status::Pass)
        .map(ToString::to_string)
        .collect();
    assert!(
        not_passed.is_empty(),
        "cases that did not pass:\n{}",
        not_passed.join("\n")
    );
}

/// Copies a case (JSON and io file) into `dir` under a new name, letting `edit` change the
/// JSON and the io tensors.
fn copy_case(
    from: &str,
    to: &str,
    dir: &Path,
    edit_json: impl FnOnce(&mut serde_json::Value),
    edit_tensor: impl Fn(&str, &mut Vec<f32>),
) {
    let src = fixtures();
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join(format!("{from}.json"))).unwrap())
            .unwrap();
    json["case"] = to.into();
    json["io_file"] = format!("{to}.io.safetensors").into();
    edit_json(&mut json);
    std::fs::write(dir.join(format!("{to}.json")), json.to_string()).unwrap();

    let bytes = std::fs::read(src.join(format!("{from}.io.safetensors"))).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in st.tensors() {
        let mut data = view.data().to_vec();
        if view.dtype() == safetensors::Dtype::F32 {
            let mut v: Vec<f32> = data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            edit_tensor(&name, &mut v);
            data = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        }
        owned.push((name.to_string(), view.dtype(), view.shape().to_vec(), data));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = owned
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join(format!("{to}.io.safetensors"))).unwrap();
}

#[test]
fn a_renamed_copy_passes_and_a_perturbed_one_fails() {
    let dir = tempfile::tempdir().unwrap();
    copy_case("colorfix", "renamed_fix", dir.path(), |_| {}, |_, _| {});
    copy_case(
        "colorfix",
        "perturbed_fix",
        dir.path(),
        |_| {},
        |name, v| {
            if name == "output.adain" {
                v[17] += 1e-3;
            }
        },
    );
    copy_case(
        "colorfix",
        "no_such_builder",
        dir.path(),
        |j| j["builder"] = "frobnicate".into(),
        |_, _| {},
    );
    let reports = parity::run_dir(dir.path(), &[], &Device::flex()).unwrap();
    assert_eq!(status_of(&reports, "renamed_fix"), Status::Pass);
    let Status::Fail(why) = status_of(&reports, "perturbed_fix") else {
        panic!("the perturbed case passed");
    };
    assert!(
        why.contains("output.adain") && why.contains("index 17"),
        "{why}"
    );
    assert_eq!(status_of(&reports, "no_such_builder"), Status::Unsupported);
    let totals = parity::totals(&reports);
    assert_eq!(
        (totals.passed, totals.failed, totals.unsupported),
        (1, 1, 1)
    );
    assert_eq!(
        totals.to_string(),
        "parity: 1 passed, 1 failed, 1 unsupported"
    );
}

#[test]
fn the_tiling_case_follows_its_own_json() {
    // Other window arguments than the recorded ones give other coordinates: a FAIL, not a
    // silent pass, shows the geometry is taken from the case.
    let dir = tempfile::tempdir().unwrap();
    copy_case(
        "tiled_windows",
        "tiles_other_stride",
        dir.path(),
        |j| j["windows"][0]["tile_stride"] = 5.into(),
        |_, _| {},
    );
    copy_case(
        "tiled_windows",
        "tiles_other_tiling",
        dir.path(),
        |j| j["tiled_model"]["tile_size"] = 30.into(),
        |_, _| {},
    );
    let reports = parity::run_dir(dir.path(), &[], &Device::flex()).unwrap();
    let Status::Fail(why) = status_of(&reports, "tiles_other_stride") else {
        panic!("a changed stride still matched");
    };
    assert!(why.contains("output.windows0.coords"), "{why}");
    // The stand-in is pointwise, so any valid tiling reproduces it; a tile larger than the
    // 24-row input must be refused rather than silently run.
    let Status::Fail(why) = status_of(&reports, "tiles_other_tiling") else {
        panic!("an impossible tiling passed");
    };
    assert!(why.contains("smaller than one 30x30 tile"), "{why}");
}

#[test]
fn broken_cases_fail_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("not_json.json"), "{ this is not json").unwrap();
    std::fs::write(
        dir.path().join("no_io.json"),
        r#"{"builder": "colorfix", "case": "no_io", "io_file": "missing.io.safetensors"}"#,
    )
    .unwrap();
    copy_case("colorfix", "output_removed", dir.path(), |_| {}, |_, _| {});
    // Drop one expected output from the io file: the builder then produces an unrecorded one.
    let io = dir.path().join("output_removed.io.safetensors");
    let bytes = std::fs::read(&io).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, safetensors::tensor::TensorView<'_>)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != "output.adain")
        .collect();
    let out = safetensors::serialize(kept, None).unwrap();
    std::fs::write(&io, out).unwrap();

    let reports = parity::run_dir(dir.path(), &[], &Device::flex()).unwrap();
    for r in &reports {
        assert!(matches!(r.status, Status::Fail(_)), "{r}");
    }
    let text: Vec<String> = reports.iter().map(ToString::to_string).collect();
    assert!(
        text.iter().any(|t| t.contains("missing.io.safetensors")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains("output.adain produced but not recorded")),
        "{text:?}"
    );
    assert!(parity::run_dir(&dir.path().join("nope"), &[], &Device::flex()).is_err());
}

#[test]
fn an_output_can_carry_its_own_tolerance() {
    let dir = tempfile::tempdir().unwrap();
    let perturb = |name: &str, v: &mut Vec<f32>| {
        if name == "output.adain" {
            v[17] += 1e-3;
        }
    };
    copy_case(
        "colorfix",
        "own_tolerance",
        dir.path(),
        |j| j["tolerance"]["outputs"] = serde_json::json!({"output.adain": {"atol": 1e-2}}),
        perturb,
    );
    copy_case(
        "colorfix",
        "other_output_loosened",
        dir.path(),
        |j| j["tolerance"]["outputs"] = serde_json::json!({"output.style_mean": {"atol": 1e-2}}),
        perturb,
    );
    let reports = parity::run_dir(dir.path(), &[], &Device::flex()).unwrap();
    assert_eq!(status_of(&reports, "own_tolerance"), Status::Pass);
    assert!(matches!(
        status_of(&reports, "other_output_loosened"),
        Status::Fail(_)
    ));
}
