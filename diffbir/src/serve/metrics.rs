//! `GET /metrics` in the Prometheus text format (version 0.0.4): job counters, the queue,
//! step and job time histograms and the process's memory. Written by hand: a dozen series
//! do not earn a metrics crate (the `prometheus` crate brings protobuf, the exporters their
//! own HTTP listener).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use super::jobs::lock;

/// Upper bounds (seconds) of the histograms' buckets.
const STEP_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
const JOB_BUCKETS: [f64; 10] = [0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: f64) {
        for (bound, count) in self.bounds.iter().zip(&mut self.counts) {
            if value <= *bound {
                *count += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", self.sum, self.count);
    }
}

#[derive(Debug)]
struct Values {
    submitted: u64,
    finished: BTreeMap<&'static str, u64>,
    rejected: BTreeMap<&'static str, u64>,
    steps: Histogram,
    jobs: Histogram,
    waits: Histogram,
}

/// The server's counters.
#[derive(Debug)]
pub struct Metrics {
    values: Mutex<Values>,
    load_seconds: f64,
}

/// Gauges read when the metrics are asked for.
#[derive(Debug, Clone, Copy)]
pub struct Gauges {
    pub queued: usize,
    pub capacity: usize,
    pub running: usize,
    pub slots: usize,
}

impl Metrics {
    /// Counters from zero; the models took `load_seconds` to load.
    pub fn new(load_seconds: f64) -> Self {
        Self {
            values: Mutex::new(Values {
                submitted: 0,
                finished: BTreeMap::new(),
                rejected: BTreeMap::new(),
                steps: Histogram::new(&STEP_BUCKETS),
                jobs: Histogram::new(&JOB_BUCKETS),
                waits: Histogram::new(&JOB_BUCKETS),
            }),
            load_seconds,
        }
    }

    pub fn submitted(&self) {
        lock(&self.values).submitted += 1;
    }

    /// A request refused before it became a job, by error code.
    pub fn rejected(&self, code: &'static str) {
        *lock(&self.values).rejected.entry(code).or_default() += 1;
    }

    /// A job finished in `state` after `seconds` of running (`None`: it never ran).
    pub fn finished(&self, state: &'static str, seconds: Option<f64>) {
        let mut values = lock(&self.values);
        *values.finished.entry(state).or_default() += 1;
        if let Some(seconds) = seconds {
            values.jobs.observe(seconds);
        }
    }

    pub fn waited(&self, seconds: f64) {
        lock(&self.values).waits.observe(seconds);
    }

    pub fn step(&self, seconds: f64) {
        lock(&self.values).steps.observe(seconds);
    }

    /// The mean running time of the finished jobs, if any finished.
    pub fn mean_job_seconds(&self) -> Option<f64> {
        let values = lock(&self.values);
        (values.jobs.count > 0).then(|| values.jobs.sum / values.jobs.count as f64)
    }

    /// The exposition.
    pub fn render(&self, gauges: Gauges) -> String {
        let values = lock(&self.values);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let labelled = |label: &str, map: &BTreeMap<&'static str, u64>| -> Vec<(String, f64)> {
            map.iter()
                .map(|(k, v)| (format!("{{{label}=\"{k}\"}}"), *v as f64))
                .collect()
        };
        let plain = |v: f64| vec![(String::new(), v)];
        metric(
            "diffbir_jobs_submitted_total",
            "counter",
            "Jobs accepted into the queue.",
            &plain(values.submitted as f64),
        );
        metric(
            "diffbir_jobs_finished_total",
            "counter",
            "Jobs that reached a final state, by state.",
            &labelled("state", &values.finished),
        );
        metric(
            "diffbir_jobs_rejected_total",
            "counter",
            "Submissions refused, by error code.",
            &labelled("reason", &values.rejected),
        );
        metric(
            "diffbir_queue_length",
            "gauge",
            "Jobs waiting.",
            &plain(gauges.queued as f64),
        );
        metric(
            "diffbir_queue_capacity",
            "gauge",
            "Jobs the queue holds at most.",
            &plain(gauges.capacity as f64),
        );
        metric(
            "diffbir_jobs_running",
            "gauge",
            "Jobs running.",
            &plain(gauges.running as f64),
        );
        metric(
            "diffbir_worker_slots",
            "gauge",
            "Jobs that can run at once.",
            &plain(gauges.slots as f64),
        );
        metric(
            "diffbir_model_load_seconds",
            "gauge",
            "Time the models took to load.",
            &plain(self.load_seconds),
        );
        let memory = memory();
        for (name, help, value) in [
            (
                "process_resident_memory_bytes",
                "Resident memory of the server.",
                memory.0,
            ),
            (
                "diffbir_peak_resident_memory_bytes",
                "Peak resident memory of the server.",
                memory.1,
            ),
        ] {
            if let Some(bytes) = value {
                metric(name, "gauge", help, &plain(bytes as f64));
            }
        }
        values.steps.write(
            &mut out,
            "diffbir_step_seconds",
            "Time of one sampler step.",
        );
        values
            .jobs
            .write(&mut out, "diffbir_job_seconds", "Running time of a job.");
        values.waits.write(
            &mut out,
            "diffbir_queue_wait_seconds",
            "Time a job waited in the queue.",
        );
        out
    }
}

/// Resident and peak resident memory in bytes (`VmRSS` and `VmHWM` of
/// `/proc/self/status`; unknown elsewhere than Linux).
fn memory() -> (Option<u64>, Option<u64>) {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return (None, None);
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kib| kib * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_follows_the_text_format() {
        let metrics = Metrics::new(1.5);
        metrics.submitted();
        metrics.rejected("queue_full");
        metrics.finished("done", Some(3.0));
        metrics.finished("failed", Some(0.2));
        metrics.finished("cancelled", None);
        for s in [0.02, 0.3, 40.0] {
            metrics.step(s);
        }
        let text = metrics.render(Gauges {
            queued: 2,
            capacity: 8,
            running: 1,
            slots: 1,
        });
        let mut typed = std::collections::HashSet::new();
        let mut last_bucket: Option<(String, f64)> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                assert!(typed.insert(name.to_owned()), "{name} typed twice");
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
            let name = series.split('{').next().unwrap();
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{line}"
            );
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|f| typed.contains(*f))
                .unwrap_or(name);
            assert!(typed.contains(family), "{line}: no TYPE line before it");
            // Buckets are cumulative.
            if let Some(base) = name.strip_suffix("_bucket") {
                if let Some((previous, count)) = &last_bucket
                    && previous == base
                {
                    assert!(value >= *count, "{line}");
                }
                last_bucket = Some((base.to_owned(), value));
            }
        }
        assert!(text.contains("diffbir_jobs_finished_total{state=\"done\"} 1"));
        assert!(text.contains("diffbir_queue_length 2"));
        assert!(text.contains("diffbir_step_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("diffbir_step_seconds_bucket{le=\"0.5\"} 2"));
        assert_eq!(metrics.mean_job_seconds(), Some(1.6));
    }
}
