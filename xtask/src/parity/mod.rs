//! `cargo xtask parity`: runs reference cases produced by the original PyTorch code.
//!
//! Every `*.json` case in a folder (format: the fixtures' README) is built **from its own JSON
//! config**, fed its recorded inputs (and recorded noise), and each of its `output.*` tensors
//! is compared with the case's tolerance. A case whose builder this build does not implement
//! yet is reported as UNSUPPORTED.

mod clip;
mod core_cases;
mod degradation;
mod face;
pub mod fixture;
mod guidance;
mod ldm;
mod metrics;
mod pipeline;
mod resize;
mod sampler;
mod stage1;
mod standin;
mod weights;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::tensor::{Device, Tensor};

pub use fixture::{Case, Tolerance};

/// What a builder computed: output name → (shape, values).
#[derive(Debug, Default)]
pub struct Outputs {
    values: BTreeMap<String, (Vec<usize>, Vec<f64>)>,
}

impl Outputs {
    /// Records a float tensor.
    pub fn tensor<const D: usize>(&mut self, name: impl Into<String>, t: Tensor<D>) {
        let shape = t.dims().to_vec();
        let values = t
            .into_data()
            .convert::<f64>()
            .try_into_vec::<f64>()
            .expect("f64 after convert");
        self.values.insert(name.into(), (shape, values));
    }

    /// Records plain values with a shape.
    pub fn values(&mut self, name: impl Into<String>, shape: Vec<usize>, values: Vec<f64>) {
        self.values.insert(name.into(), (shape, values));
    }
}

/// A builder: computes a case's outputs on a device.
type Builder = fn(&Case, &Device) -> Result<Outputs>;

/// The builder for a case's `builder` field, if this build implements it.
fn builder(name: &str) -> Option<Builder> {
    Some(match name {
        "colorfix" => core_cases::colorfix,
        "tiled_windows" => core_cases::tiled_windows,
        "swinir_forward" => stage1::swinir,
        "vae_forward" => ldm::vae,
        "vae_tiled" => ldm::vae_tiled,
        "unet_forward" => ldm::unet,
        "controlnet_forward" => ldm::controlnet,
        "cldm_forward" => ldm::cldm,
        "pipeline_apply_cldm" => pipeline::apply_cldm,
        "sd_checkpoint_load" => ldm::sd_checkpoint_load,
        "cldm_controlnet_from_unet" => ldm::controlnet_from_unet,
        "rrdbnet_forward" => stage1::rrdbnet,
        "scunet_forward" => stage1::scunet,
        "diffusion_schedule" => sampler::diffusion_schedule,
        "sampler_schedules" => sampler::sampler_schedules,
        "sampler_run" => sampler::sampler_run,
        "clip_forward" => clip::clip_forward,
        "tokenizer" => clip::tokenizer_case,
        "resize_ops" => resize::resize_ops,
        "pipeline_postprocess" => resize::pipeline_postprocess,
        "degradation_kernels" => degradation::degradation_kernels,
        "usm_filter2d" => degradation::usm_filter2d,
        "diffjpeg" => degradation::diffjpeg,
        "codeformer_ops" => degradation::codeformer_ops,
        "gaussian_noise_pt" => degradation::gaussian_noise_pt,
        "guidance_cond_fn" => guidance::cond_fn,
        "guidance_apply" => guidance::apply,
        "retinaface_forward" => face::retinaface,
        "parsenet_forward" => face::parsenet,
        "opencv_ops" => face::opencv_ops,
        "face_helper_detect" => face::helper_detect,
        "face_align" => face::align,
        "face_paste_back" => face::paste_back,
        "metric_scores" => metrics::scores,
        "lpips_forward" => metrics::lpips,
        "clipiqa_forward" => metrics::clipiqa,
        _ => return None,
    })
}

/// Outcome of one case.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Every output within tolerance.
    Pass,
    /// Something differed or failed; the reason.
    Fail(String),
    /// The case's builder is not implemented in this build.
    Unsupported,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct CaseReport {
    /// Case name.
    pub name: String,
    /// Outcome.
    pub status: Status,
    /// Largest absolute difference over all outputs (NaN when nothing was compared).
    pub max_abs: f64,
    /// The case's tolerance.
    pub tolerance: Tolerance,
}

impl std::fmt::Display for CaseReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (word, why) = match &self.status {
            Status::Pass => ("PASS", String::new()),
            Status::Fail(why) => ("FAIL", format!("  ({why})")),
            Status::Unsupported => ("UNSUPPORTED", String::new()),
        };
        let max_abs = if self.max_abs.is_nan() {
            "-".to_string()
        } else {
            format!("{:.3e}", self.max_abs)
        };
        write!(
            f,
            "{} {word} max_abs={max_abs} tol={}{why}",
            self.name, self.tolerance
        )
    }
}

/// Totals of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed.
    pub failed: usize,
    /// Cases whose builder is not implemented.
    pub unsupported: usize,
}

impl std::fmt::Display for Totals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "parity: {} passed, {} failed, {} unsupported",
            self.passed, self.failed, self.unsupported
        )
    }
}

/// The case files of a folder, sorted by name (every `*.json` except `index.json`).
pub fn discover(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the fixtures folder {}", dir.display()))?;
    let mut cases = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let is_json = path.extension().is_some_and(|e| e == "json");
        let is_index = path.file_name().is_some_and(|n| n == "index.json");
        if path.is_file() && is_json && !is_index {
            cases.push(path);
        }
    }
    cases.sort();
    Ok(cases)
}

/// Runs one case file.
pub fn run_case(json_path: &Path, device: &Device) -> CaseReport {
    let fallback_name = json_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let unknown = Tolerance {
        atol: 0.0,
        rtol: 0.0,
        exact: false,
    };
    let case = match Case::open(json_path) {
        Ok(case) => case,
        Err(e) => {
            return CaseReport {
                name: fallback_name,
                status: Status::Fail(format!("{e:#}")),
                max_abs: f64::NAN,
                tolerance: unknown,
            };
        }
    };
    let tolerance = case.tolerance();
    let report = |status, max_abs| CaseReport {
        name: case.name.clone(),
        status,
        max_abs,
        tolerance,
    };
    let Some(build) = builder(case.builder()) else {
        return report(Status::Unsupported, f64::NAN);
    };
    let result = catch_unwind(AssertUnwindSafe(|| build(&case, device)));
    // A case whose original raised: the port must refuse with an error too.
    if let Some(expected) = case.json.get("expected_error").and_then(|e| e.as_str()) {
        return match result {
            Ok(Err(_)) => report(Status::Pass, f64::NAN),
            Ok(Ok(_)) => report(
                Status::Fail(format!(
                    "the original raised `{expected}`, the port returned outputs"
                )),
                f64::NAN,
            ),
            Err(_) => report(
                Status::Fail(format!(
                    "the original raised `{expected}`, the port panicked"
                )),
                f64::NAN,
            ),
        };
    }
    let outputs = match result {
        Ok(Ok(outputs)) => outputs,
        Ok(Err(e)) => return report(Status::Fail(format!("{e:#}")), f64::NAN),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            return report(Status::Fail(format!("panicked: {msg}")), f64::NAN);
        }
    };
    let (status, max_abs) = compare(&case, &outputs);
    report(status, max_abs)
}

/// Compares every expected output of the case with what the builder produced, each with its
/// tolerance.
fn compare(case: &Case, outputs: &Outputs) -> (Status, f64) {
    let mut max_abs = 0f64;
    let mut problems = Vec::new();
    let expected_names = case.output_names();
    for name in &expected_names {
        let Some((shape, actual)) = outputs.values.get(name) else {
            problems.push(format!("{name} not produced"));
            continue;
        };
        let expected = match case.stored(name) {
            Ok(t) => t,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        if *shape != expected.shape {
            problems.push(format!(
                "{name}: shape {shape:?}, expected {:?}",
                expected.shape
            ));
            continue;
        }
        let tol = case.output_tolerance(name);
        let mut worst: Option<(usize, f64)> = None;
        for (i, (a, e)) in actual.iter().zip(&expected.values).enumerate() {
            // Equal infinities, and NaN where the reference has NaN, are matches.
            let both_nan = a.is_nan() && e.is_nan();
            let diff = match (a - e).abs() {
                _ if both_nan || a == e => 0.0,
                d if d.is_nan() => f64::INFINITY,
                d => d,
            };
            max_abs = max_abs.max(diff);
            let ok = if both_nan || a == e {
                true
            } else if tol.exact || (expected.integer && !case.has_own_tolerance(name)) {
                a == e
            } else {
                diff <= tol.atol + tol.rtol * e.abs()
            };
            if !ok && worst.is_none_or(|(_, d)| diff > d) {
                worst = Some((i, diff));
            }
        }
        if let Some((i, diff)) = worst {
            problems.push(format!(
                "{name}: |diff| {diff:.3e} at flat index {i} (got {}, expected {})",
                actual[i], expected.values[i]
            ));
        }
    }
    for name in outputs.values.keys() {
        if !expected_names.contains(name) {
            problems.push(format!("{name} produced but not recorded in the case"));
        }
    }
    if expected_names.is_empty() {
        problems.push("the case records no output.* tensor".into());
    }
    if problems.is_empty() {
        (Status::Pass, max_abs)
    } else {
        (Status::Fail(problems.join("; ")), max_abs)
    }
}

/// Runs every case of a folder whose name contains one of `filters` (all cases when empty);
/// one report per case.
pub fn run_dir(dir: &Path, filters: &[String], device: &Device) -> Result<Vec<CaseReport>> {
    let cases = discover(dir)?;
    // Builders may panic on a broken port; keep the report readable.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let reports = cases
        .iter()
        .filter(|p| {
            let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned());
            let stem = stem.unwrap_or_default();
            filters.is_empty() || filters.iter().any(|f| stem.contains(f.as_str()))
        })
        .map(|p| run_case(p, device))
        .collect();
    std::panic::set_hook(hook);
    Ok(reports)
}

/// Counts the outcomes.
pub fn totals(reports: &[CaseReport]) -> Totals {
    let mut t = Totals::default();
    for r in reports {
        match r.status {
            Status::Pass => t.passed += 1,
            Status::Fail(_) => t.failed += 1,
            Status::Unsupported => t.unsupported += 1,
        }
    }
    t
}
