//! The JSON-line records of `cargo xtask bench`, their statistics, the pipeline extrapolation
//! and the ours/PyTorch ratios.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// `framework` of our own records.
pub const OURS: &str = "diffbir-rs";
/// `framework` of the PyTorch records.
pub const TORCH: &str = "pytorch";

/// How a record's times were obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Timed by this run.
    #[default]
    Measured,
    /// Taken from the recorded PyTorch baseline (`xtask/torch/recorded.jsonl`).
    Recorded,
    /// Computed from other records (the `pipeline-N` components).
    Extrapolated,
}

impl Source {
    /// The lowercase name used in JSON and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Measured => "measured",
            Self::Recorded => "recorded",
            Self::Extrapolated => "extrapolated",
        }
    }
}

/// One component's timing: one JSON object per line with `--json`.
///
/// The PyTorch script (`xtask/torch/bench_torch.py`) writes the same objects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Component name (`cargo xtask bench --help` lists them).
    pub name: String,
    /// Device it ran on (`cpu`, `wgpu`, `cuda:0`, ...).
    pub device: String,
    /// Compute dtype (`f32`).
    pub dtype: String,
    /// Batch size of the network call.
    pub batch: usize,
    /// Fastest timed run, in seconds.
    pub min_s: f64,
    /// Median of the timed runs, in seconds.
    pub median_s: f64,
    /// Peak resident memory of the process while the component ran (model resident), in MiB;
    /// `null` when unknown (extrapolated records, some recorded ones).
    pub peak_rss_mib: Option<u64>,
    /// `diffbir-rs` or `pytorch`.
    #[serde(default = "default_framework")]
    pub framework: String,
    /// Compute threads (rayon pool size, or `torch.get_num_threads()`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// Number of timed runs (after the warm-up runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs: Option<usize>,
    /// How the times were obtained.
    #[serde(default)]
    pub source: Source,
    /// The tiny configurations of `--tiny` (plumbing checks; the times mean nothing).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tiny: bool,
}

fn default_framework() -> String {
    OURS.to_string()
}

impl Record {
    /// The record as one JSON line (no trailing newline).
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("records always serialise")
    }

    /// Parses one JSON line.
    pub fn from_json_line(line: &str) -> Result<Self> {
        let record: Self = serde_json::from_str(line.trim())
            .with_context(|| format!("not a benchmark record: {line}"))?;
        if !(record.min_s.is_finite() && record.median_s.is_finite()) || record.min_s < 0.0 {
            bail!("benchmark record with invalid times: {line}");
        }
        Ok(record)
    }

    /// The last line of `output` that parses as a record (child processes may print other
    /// lines before it).
    pub fn last_in(output: &str) -> Result<Self> {
        output
            .lines()
            .rev()
            .filter(|l| l.trim_start().starts_with('{'))
            .find_map(|l| Self::from_json_line(l).ok())
            .with_context(|| format!("no benchmark record in the output:\n{output}"))
    }

    /// `name bN`, as tables show a measurement.
    pub fn label(&self) -> String {
        format!("{} b{}", self.name, self.batch)
    }
}

/// Fastest and median of the timed runs, in seconds (`(0, 0)` for none). The median of an even
/// number of runs is the mean of the two middle ones.
pub fn min_median(times: &[Duration]) -> (f64, f64) {
    let mut s: Vec<f64> = times.iter().map(Duration::as_secs_f64).collect();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => (0.0, 0.0),
        n if n % 2 == 1 => (s[0], s[n / 2]),
        n => (s[0], 0.5 * (s[n / 2 - 1] + s[n / 2])),
    }
}

/// The parts of the extrapolated 512² v2.1 pipeline, as `(component, batch, times)`:
///
/// `pipeline-N = swinir + text-encoder(b2) + vae-encode + N × controlldm-step(b2) + vae-decode`
///
/// (stage 1 on the 512² image, both prompts through the text encoder in one batch, one encode
/// of the condition, N sampler steps with batched classifier-free guidance, one decode).
pub fn pipeline_parts(steps: usize) -> [(&'static str, usize, f64); 5] {
    [
        ("swinir", 1, 1.0),
        ("text-encoder", 2, 1.0),
        ("vae-encode", 1, 1.0),
        ("controlldm-step", 2, steps as f64),
        ("vae-decode", 1, 1.0),
    ]
}

/// The number of steps of a `pipeline-N` component name.
pub fn pipeline_steps(name: &str) -> Option<usize> {
    name.strip_prefix("pipeline-")?.parse().ok()
}

/// `pipeline-N` extrapolated from `records` (min from the parts' mins, median from their
/// medians), or the names of the missing parts. The result's peak RSS is unknown; its
/// framework, device, dtype and threads are those of the parts.
pub fn extrapolate_pipeline(
    steps: usize,
    records: &[Record],
) -> std::result::Result<Record, Vec<String>> {
    let mut missing = Vec::new();
    let (mut min_s, mut median_s) = (0.0, 0.0);
    let mut first: Option<&Record> = None;
    for (name, batch, times) in pipeline_parts(steps) {
        match records.iter().find(|r| r.name == name && r.batch == batch) {
            Some(r) => {
                min_s += times * r.min_s;
                median_s += times * r.median_s;
                first.get_or_insert(r);
            }
            None => missing.push(format!("{name} b{batch}")),
        }
    }
    match first {
        Some(part) if missing.is_empty() => Ok(Record {
            name: format!("pipeline-{steps}"),
            device: part.device.clone(),
            dtype: part.dtype.clone(),
            batch: 1,
            min_s,
            median_s,
            peak_rss_mib: None,
            framework: part.framework.clone(),
            threads: part.threads,
            runs: None,
            source: Source::Extrapolated,
            tiny: records.iter().any(|r| r.tiny),
        }),
        _ => Err(missing),
    }
}

/// Ours divided by PyTorch's, for one component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    /// Component name.
    pub name: String,
    /// Batch size.
    pub batch: usize,
    /// Our min / PyTorch's min (> 1: we are slower).
    pub ratio_min: f64,
    /// Our median / PyTorch's median.
    pub ratio_median: f64,
    /// Where the PyTorch figure came from.
    pub torch_source: Source,
}

impl Ratio {
    /// The ratio of `ours` to `torch` (same component and batch).
    pub fn new(ours: &Record, torch: &Record) -> Self {
        let div = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        Self {
            name: ours.name.clone(),
            batch: ours.batch,
            ratio_min: div(ours.min_s, torch.min_s),
            ratio_median: div(ours.median_s, torch.median_s),
            torch_source: torch.source,
        }
    }

    /// The ratio as one JSON line; NaN (a zero PyTorch time) is written as `null`.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("ratios always serialise")
    }
}

fn fmt_rss(rss: Option<u64>) -> String {
    rss.map_or_else(|| "-".into(), |m| m.to_string())
}

fn note(r: &Record) -> &'static str {
    match r.source {
        Source::Measured => "",
        Source::Recorded => " (recorded)",
        Source::Extrapolated => " (extrapolated)",
    }
}

/// Header of the table printed without `--json` (and without `--compare-torch`).
pub fn table_header() -> String {
    format!(
        "{:<22} {:>5} {:<8} {:<5} {:>10} {:>10} {:>9}",
        "component", "batch", "device", "dtype", "min s", "median s", "peak MiB"
    )
}

/// One row of that table.
pub fn table_row(r: &Record) -> String {
    format!(
        "{:<22} {:>5} {:<8} {:<5} {:>10.3} {:>10.3} {:>9}{}",
        r.name,
        r.batch,
        r.device,
        r.dtype,
        r.min_s,
        r.median_s,
        fmt_rss(r.peak_rss_mib),
        note(r)
    )
}

/// Header of the side-by-side table of `--compare-torch`.
pub fn compare_header() -> String {
    format!(
        "{:<22} {:>5} {:>10} {:>10} {:>7} {:>10} {:>10} {:>7} {:>9} {:>9}  {}",
        "component",
        "batch",
        "ours min",
        "torch min",
        "ratio",
        "ours med",
        "torch med",
        "ratio",
        "ours MiB",
        "torch MiB",
        "torch figures"
    )
}

/// One row of the side-by-side table; `torch` is `None` when PyTorch has no figure.
pub fn compare_row(ours: &Record, torch: Option<&Record>) -> String {
    let Some(t) = torch else {
        return format!(
            "{:<22} {:>5} {:>10.3} {:>10} {:>7} {:>10.3} {:>10} {:>7} {:>9} {:>9}  none",
            ours.name,
            ours.batch,
            ours.min_s,
            "-",
            "-",
            ours.median_s,
            "-",
            "-",
            fmt_rss(ours.peak_rss_mib),
            "-"
        );
    };
    let ratio = Ratio::new(ours, t);
    let threads = match t.threads {
        Some(n) => format!(", {n} threads"),
        None => String::new(),
    };
    format!(
        "{:<22} {:>5} {:>10.3} {:>10.3} {:>7.2} {:>10.3} {:>10.3} {:>7.2} {:>9} {:>9}  {}{}",
        ours.name,
        ours.batch,
        ours.min_s,
        t.min_s,
        ratio.ratio_min,
        ours.median_s,
        t.median_s,
        ratio.ratio_median,
        fmt_rss(ours.peak_rss_mib),
        fmt_rss(t.peak_rss_mib),
        t.source.as_str(),
        threads
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, batch: usize, min_s: f64, median_s: f64) -> Record {
        Record {
            name: name.into(),
            device: "cpu".into(),
            dtype: "f32".into(),
            batch,
            min_s,
            median_s,
            peak_rss_mib: Some(1000),
            framework: OURS.into(),
            threads: Some(2),
            runs: Some(3),
            source: Source::Measured,
            tiny: false,
        }
    }

    #[test]
    fn json_line_has_the_documented_keys_and_round_trips() {
        let r = record("unet", 2, 1.5, 1.75);
        let line = r.to_json_line();
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        for key in [
            "name",
            "device",
            "dtype",
            "batch",
            "min_s",
            "median_s",
            "peak_rss_mib",
        ] {
            assert!(v.get(key).is_some(), "missing {key} in {line}");
        }
        assert_eq!(v["source"], "measured");
        assert!(v.get("tiny").is_none());
        assert_eq!(Record::from_json_line(&line).unwrap(), r);
    }

    #[test]
    fn minimal_lines_parse_with_defaults() {
        let line = r#"{"name":"swinir","device":"cpu","dtype":"f32","batch":1,"min_s":2.2,"median_s":2.48,"peak_rss_mib":null}"#;
        let r = Record::from_json_line(line).unwrap();
        assert_eq!(r.framework, OURS);
        assert_eq!(r.source, Source::Measured);
        assert_eq!(r.peak_rss_mib, None);
        assert!(Record::from_json_line(r#"{"name":"x"}"#).is_err());
        let out = format!("loading...\n{line}\n");
        assert_eq!(Record::last_in(&out).unwrap().name, "swinir");
        assert!(Record::last_in("nothing here").is_err());
    }

    #[test]
    fn min_and_median() {
        let d = |s: f64| Duration::from_secs_f64(s);
        assert_eq!(min_median(&[d(3.0), d(1.0), d(2.0)]), (1.0, 2.0));
        assert_eq!(min_median(&[d(4.0), d(1.0), d(2.0), d(3.0)]), (1.0, 2.5));
        assert_eq!(min_median(&[d(0.5)]), (0.5, 0.5));
        assert_eq!(min_median(&[]), (0.0, 0.0));
    }

    #[test]
    fn ratios_divide_ours_by_torch() {
        let ours = record("vae-decode", 1, 20.0, 22.0);
        let mut torch = record("vae-decode", 1, 10.0, 11.0);
        torch.framework = TORCH.into();
        torch.source = Source::Recorded;
        let r = Ratio::new(&ours, &torch);
        assert_eq!((r.ratio_min, r.ratio_median), (2.0, 2.0));
        assert_eq!(r.torch_source, Source::Recorded);
        let v: serde_json::Value = serde_json::from_str(&r.to_json_line()).unwrap();
        assert_eq!(v["torch_source"], "recorded");
        torch.min_s = 0.0;
        assert!(Ratio::new(&ours, &torch).ratio_min.is_nan());
        let row = compare_row(&ours, Some(&torch));
        assert!(row.contains("recorded"), "{row}");
        assert!(compare_row(&ours, None).ends_with("none"));
    }

    #[test]
    fn pipeline_is_the_documented_sum_of_parts() {
        let parts = [
            record("swinir", 1, 2.0, 2.5),
            record("text-encoder", 2, 0.5, 0.5),
            record("vae-encode", 1, 8.0, 9.0),
            record("controlldm-step", 2, 12.0, 13.0),
            record("controlldm-step", 1, 100.0, 100.0),
            record("vae-decode", 1, 17.0, 18.0),
        ];
        let p = extrapolate_pipeline(10, &parts).unwrap();
        assert_eq!(p.name, "pipeline-10");
        assert!((p.min_s - (2.0 + 0.5 + 8.0 + 120.0 + 17.0)).abs() < 1e-9);
        assert!((p.median_s - (2.5 + 0.5 + 9.0 + 130.0 + 18.0)).abs() < 1e-9);
        assert_eq!(p.source, Source::Extrapolated);
        assert_eq!(p.peak_rss_mib, None);
        assert_eq!(pipeline_steps("pipeline-50"), Some(50));
        assert_eq!(pipeline_steps("unet"), None);
        let missing = extrapolate_pipeline(10, &parts[..3]).unwrap_err();
        assert_eq!(missing, vec!["controlldm-step b2", "vae-decode b1"]);
    }
}
