//! Running the cases: drawing, the reference and the device under test (panics caught), the
//! comparison, and the report.

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use burn::tensor::Device;
use diffbir_core::Precision;

use super::draw::Draw;
use super::{
    FAMILIES, Family, JITTER_FACTOR, Options, OutputDiff, Setting, Tolerance, compare, families,
};

/// Outcome of one case.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Every output within tolerance.
    Pass,
    /// An output differed, or a run failed: why.
    Fail(String),
    /// Not run: why.
    Skip(String),
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct CaseReport {
    /// Family name.
    pub family: &'static str,
    /// Index of the configuration within the family.
    pub index: usize,
    /// The configuration drawn, compactly.
    pub config: String,
    /// Outcome.
    pub status: Status,
    /// Per output comparison.
    pub diffs: Vec<OutputDiff>,
    /// Wall time of the reference runs on flex (plain and jittered).
    pub reference_time: Duration,
    /// Wall time of the run under test.
    pub test_time: Duration,
}

impl std::fmt::Display for CaseReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let word = match &self.status {
            Status::Pass => "PASS",
            Status::Fail(_) => "FAIL",
            Status::Skip(_) => "SKIP",
        };
        write!(f, "{word} {}#{} {}", self.family, self.index, self.config)?;
        match &self.status {
            Status::Skip(why) => write!(f, " | {why}"),
            Status::Fail(why) if self.diffs.is_empty() => write!(f, " | {why}"),
            _ => {
                let failing: Vec<String> = self
                    .diffs
                    .iter()
                    .filter(|d| !d.passed())
                    .map(ToString::to_string)
                    .collect();
                if failing.is_empty() {
                    let worst = self
                        .diffs
                        .iter()
                        .max_by(|a, b| a.ratio().total_cmp(&b.ratio()));
                    match worst {
                        Some(w) => write!(f, " | {} outputs, worst {w}", self.diffs.len()),
                        None => write!(f, " | no outputs"),
                    }
                } else {
                    write!(f, " | {}", failing.join("; "))
                }
            }
        }
    }
}

/// All the lines of a run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// One per (family, configuration).
    pub cases: Vec<CaseReport>,
}

impl Summary {
    fn count(&self, f: impl Fn(&Status) -> bool) -> usize {
        self.cases.iter().filter(|c| f(&c.status)).count()
    }

    /// Cases that passed.
    pub fn passed(&self) -> usize {
        self.count(|s| *s == Status::Pass)
    }

    /// Cases that failed.
    pub fn failed(&self) -> usize {
        self.count(|s| matches!(s, Status::Fail(_)))
    }

    /// Cases not run.
    pub fn skipped(&self) -> usize {
        self.count(|s| matches!(s, Status::Skip(_)))
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-text panic payload".into())
}

/// Runs `f`, turning a panic into an error.
fn guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|payload| Err(anyhow!("panicked: {}", panic_message(&*payload))))
}

/// One line of text (the first line of an error chain, shortened).
fn one_line(e: &anyhow::Error) -> String {
    let text = format!("{e:#}").replace('\n', " ");
    if text.chars().count() > 300 {
        format!("{}…", text.chars().take(300).collect::<String>())
    } else {
        text
    }
}

fn run_case(family: &Family, index: usize, options: &Options) -> CaseReport {
    let mut report = CaseReport {
        family: family.name,
        index,
        config: "?".into(),
        status: Status::Pass,
        diffs: Vec::new(),
        reference_time: Duration::ZERO,
        test_time: Duration::ZERO,
    };
    let mut draw = Draw::for_case(options.seed, family.name, index);
    let case = match guarded(|| (family.draw)(&mut draw)) {
        Ok(case) => case,
        Err(e) => {
            report.status = Status::Fail(format!("drawing the case failed: {}", one_line(&e)));
            return report;
        }
    };
    report.config = format!("params={:.0}K {}", case.params as f64 / 1e3, case.config);
    let started = Instant::now();
    let reference = guarded(|| (case.run)(&Device::flex(), &Setting::REFERENCE));
    let reference = match reference {
        Ok(r) => r,
        Err(e) => {
            report.status = Status::Fail(format!("the reference (flex) failed: {}", one_line(&e)));
            return report;
        }
    };
    // The reference perturbed: how far rounding-sized changes move it.
    let jitter_seed = draw.seed();
    let jittered = if options.exact() {
        None
    } else {
        let setting = options.perturbed(jitter_seed);
        match guarded(|| (case.run)(&Device::flex(), &setting)) {
            Ok(j) => Some(j),
            Err(e) => {
                report.status = Status::Fail(format!(
                    "the perturbed reference (flex) failed: {}",
                    one_line(&e)
                ));
                return report;
            }
        }
    };
    report.reference_time = started.elapsed();
    let started = Instant::now();
    let setting = Setting {
        precision: options.precision,
        jitter: None,
    };
    let test = guarded(|| (case.run)(&options.device, &setting));
    report.test_time = started.elapsed();
    let test = match test {
        Ok(t) => t,
        Err(e) => {
            report.status = Status::Fail(format!("the device under test failed: {}", one_line(&e)));
            return report;
        }
    };
    let tol = if options.exact() {
        Tolerance::EXACT
    } else {
        match options.precision {
            Precision::F32 => family.f32_tol,
            Precision::F16 => family.f16_tol,
            // bf16 keeps 8 significant bits to f16's 11: eight times f16's tolerance.
            Precision::Bf16 => Tolerance {
                rtol: 8.0 * family.f16_tol.rtol,
                atol: 8.0 * family.f16_tol.atol,
            },
        }
    };
    let jittered = jittered.as_deref().map(|j| (j, JITTER_FACTOR));
    report.diffs = compare(&reference, &test, tol, jittered);
    if report.diffs.iter().any(|d| !d.passed()) {
        report.status = Status::Fail("outputs differ".into());
    }
    report
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Runs every selected family, writing one line per case to `out` as it goes (and timings to
/// stderr), then the per-family and overall totals.
pub fn run(options: &Options, out: &mut dyn Write) -> Result<Summary> {
    for name in &options.families {
        if !FAMILIES.iter().any(|f| f.name == name) {
            bail!(
                "unknown family `{name}`; use one of {}",
                families().join(", ")
            );
        }
    }
    let selected: Vec<&Family> = FAMILIES
        .iter()
        .filter(|f| options.families.is_empty() || options.families.iter().any(|n| n == f.name))
        .collect();
    let precision = options.precision.name();
    writeln!(
        out,
        "differential: {} ({precision}) against flex (f32), seed {}, {} configuration(s) per family{}",
        options.device_name,
        options.seed,
        options.configs,
        if options.exact() { ", bit-exact" } else { "" }
    )?;
    let unsupported = (options.precision != Precision::F32
        && !options.device.supports_dtype(options.precision.dtype()))
    .then(|| {
        format!(
            "device {} reports no {precision} support; rerun with --precision f32",
            options.device_name
        )
    });
    let mut summary = Summary::default();
    let mut timings = Vec::new();
    for family in selected {
        let mut times = (Duration::ZERO, Duration::ZERO);
        for index in 0..options.configs {
            let report = match &unsupported {
                Some(why) => CaseReport {
                    family: family.name,
                    index,
                    config: "-".into(),
                    status: Status::Skip(why.clone()),
                    diffs: Vec::new(),
                    reference_time: Duration::ZERO,
                    test_time: Duration::ZERO,
                },
                None => run_case(family, index, options),
            };
            writeln!(out, "{report}")?;
            out.flush()?;
            eprintln!(
                "  time {}#{index}: flex {}, {} {}",
                family.name,
                secs(report.reference_time),
                options.device_name,
                secs(report.test_time)
            );
            times.0 += report.reference_time;
            times.1 += report.test_time;
            summary.cases.push(report);
        }
        timings.push((family.name, times));
    }
    for (name, _) in &timings {
        let mine: Vec<&CaseReport> = summary.cases.iter().filter(|c| c.family == *name).collect();
        let passed = mine.iter().filter(|c| c.status == Status::Pass).count();
        let failed = mine
            .iter()
            .filter(|c| matches!(c.status, Status::Fail(_)))
            .count();
        writeln!(
            out,
            "family {name}: {passed} PASS, {failed} FAIL, {} SKIP",
            mine.len() - passed - failed
        )?;
    }
    writeln!(
        out,
        "totals: {} cases, {} PASS, {} FAIL, {} SKIP",
        summary.cases.len(),
        summary.passed(),
        summary.failed(),
        summary.skipped()
    )?;
    eprintln!(
        "time per family (flex reference + {}):",
        options.device_name
    );
    for (name, (reference, test)) in &timings {
        eprintln!(
            "  {name:<11} {:>8}  (flex {}, {} {})",
            secs(*reference + *test),
            secs(*reference),
            options.device_name,
            secs(*test)
        );
    }
    Ok(summary)
}
