//! `cargo xtask bench`: timings of every network at its official size (random weights), side
//! by side with PyTorch on request; `docs/benchmarks.md` tells how to read them. The criterion
//! benches in `benches/` give the careful numbers of single components.
//!
//! Each (component, batch) runs in a child process of xtask (the same binary re-run with
//! `--in-process`), so that its peak RSS is its own: the model is built, the warm-up runs run,
//! the peak-RSS mark is reset, then the timed runs run. Results are read back to the host
//! before each run's clock stops. The `pipeline-N` components are extrapolated from the others
//! ([`record::pipeline_parts`]).

pub mod components;
pub mod record;
pub mod torch;

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, Result, bail};
use clap::builder::{PossibleValue, PossibleValuesParser};
use diffbir_core::Precision;
use diffbir_core::device::DeviceSpec;

use components::{COMPONENTS, Timing};
use record::{OURS, Ratio, Record, Source};

fn component_values() -> PossibleValuesParser {
    PossibleValuesParser::new(
        COMPONENTS
            .iter()
            .map(|c| PossibleValue::new(c.name).help(c.about)),
    )
}

/// Options of `cargo xtask bench`.
#[derive(clap::Args, Debug, Clone)]
#[command(after_long_help = "\
Components are timed at batch 1 except text-encoder (2 prompts) and unet, controlnet and \
controlldm-step (batch 1 and 2; 2 = batched classifier-free guidance).
pipeline-N = swinir + text-encoder b2 + vae-encode + N x controlldm-step b2 + vae-decode.
See docs/benchmarks.md.")]
pub struct BenchArgs {
    /// Device to run on: cpu, wgpu, vulkan, cuda, cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Component to time (repeatable; default: all of them). A pipeline-N component also times
    /// its parts.
    #[arg(long = "component", value_name = "NAME", value_parser = component_values())]
    pub components: Vec<String>,
    /// Component not to time (repeatable), e.g. `--skip vae-decode-tiled`; pipelines whose
    /// parts are skipped are not extrapolated.
    #[arg(long, value_name = "NAME", value_parser = component_values())]
    pub skip: Vec<String>,
    /// Only this batch size, for the components timed at several.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Timed runs per component; min and median are reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Untimed runs before the timed ones.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// One JSON object per line instead of a table: a record per component (and framework),
    /// and with --compare-torch a ratio object per component.
    #[arg(long)]
    pub json: bool,
    /// Also time PyTorch on the same shapes (creates a Python environment with a pinned CPU
    /// PyTorch and diffusers on first use) and print ours/PyTorch ratios.
    #[arg(long)]
    pub compare_torch: bool,
    /// With --compare-torch: compare with the recorded PyTorch figures of the original code
    /// only (no Python environment).
    #[arg(long, requires = "compare_torch")]
    pub torch_recorded: bool,
    /// Compute threads of both sides (RAYON_NUM_THREADS; torch.set_num_threads). Default:
    /// RAYON_NUM_THREADS when set, else every core.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Python that creates the environment of --compare-torch.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// That environment (default: `bench-venv` in the target directory).
    #[arg(long)]
    pub venv: Option<PathBuf>,
    /// Tiny configurations and inputs, to check the plumbing quickly (times mean nothing).
    #[arg(long)]
    pub tiny: bool,
    /// Float precision of the inference components on both sides: f32, or bf16 (ours: the
    /// models cast to bf16; PyTorch: bf16 autocast). The training components run in f32 only
    /// and are left out of a bf16 run unless named.
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16"])]
    pub precision: String,
    /// Time in this process (no child per component; peak RSS then accumulates).
    #[arg(long)]
    pub in_process: bool,
}

/// The (component, batch) pairs to time, in the catalogue's order: the selected components
/// (all by default) and the parts of selected pipelines, restricted to `batch` when given,
/// less the `skip`ped components.
pub fn plan(
    selected: &[String],
    skip: &[String],
    batch: Option<usize>,
) -> Result<Vec<(&'static str, usize)>> {
    let all = selected.is_empty();
    let mut wanted: Vec<(&'static str, usize)> = Vec::new();
    for c in COMPONENTS {
        if !(all || selected.iter().any(|s| s == c.name)) {
            continue;
        }
        if c.extrapolated {
            let steps = record::pipeline_steps(c.name).context("pipeline-N name")?;
            for (part, b, _) in record::pipeline_parts(steps) {
                let part = components::find(part).context("pipeline part")?.name;
                wanted.push((part, b));
            }
        } else {
            wanted.extend(
                c.batches
                    .iter()
                    .filter(|&&b| batch.is_none_or(|only| only == b))
                    .map(|&b| (c.name, b)),
            );
        }
    }
    for s in selected {
        if components::find(s).is_none() {
            bail!("unknown component `{s}`");
        }
    }
    let order = |name: &str| COMPONENTS.iter().position(|c| c.name == name);
    wanted.sort_by_key(|&(name, b)| (order(name), b));
    wanted.dedup();
    wanted.retain(|(name, _)| !skip.iter().any(|s| s == name));
    if wanted.is_empty() {
        bail!("nothing to time (check --component and --batch)");
    }
    Ok(wanted)
}

/// The pipelines to extrapolate: the selected ones (all when none is selected).
fn pipelines(selected: &[String]) -> Vec<usize> {
    COMPONENTS
        .iter()
        .filter(|c| c.extrapolated && (selected.is_empty() || selected.iter().any(|s| s == c.name)))
        .filter_map(|c| record::pipeline_steps(c.name))
        .collect()
}

/// The device's name in records: `cpu` for the CPU backend, else its spec.
fn device_name(spec: &DeviceSpec) -> String {
    match spec {
        DeviceSpec::Flex => "cpu".into(),
        other => other.to_string(),
    }
}

/// Compute threads: `--threads`, else `RAYON_NUM_THREADS`, else every core.
fn thread_count(threads: Option<usize>) -> usize {
    threads
        .or_else(|| {
            std::env::var("RAYON_NUM_THREADS")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|&n| n > 0)
        })
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// How the components are timed.
fn timing(args: &BenchArgs) -> Result<Timing> {
    Ok(Timing {
        warmup: args.warmup,
        runs: args.runs,
        tiny: args.tiny,
        precision: args.precision.parse()?,
    })
}

/// Times one component here.
fn measure_here(
    args: &BenchArgs,
    timing: Timing,
    spec: &DeviceSpec,
    name: &str,
    batch: usize,
    threads: usize,
) -> Result<Record> {
    let device = spec.device()?;
    let m = components::measure(name, batch, &device, timing)?;
    let (min_s, median_s) = record::min_median(&m.times);
    Ok(Record {
        name: name.into(),
        device: device_name(spec),
        dtype: args.precision.clone(),
        batch,
        min_s,
        median_s,
        peak_rss_mib: m.peak_rss_mib,
        framework: OURS.into(),
        threads: matches!(spec, DeviceSpec::Flex).then_some(threads),
        runs: Some(m.times.len()),
        source: Source::Measured,
        tiny: args.tiny,
    })
}

/// Set in the environment of the child processes (which then print no progress).
const CHILD_ENV: &str = "DIFFBIR_BENCH_CHILD";

/// Times one component in a child process (this binary with `--in-process`).
fn measure_child(args: &BenchArgs, name: &str, batch: usize, threads: usize) -> Result<Record> {
    let exe = std::env::current_exe().context("cannot find the xtask binary")?;
    let mut cmd = Command::new(exe);
    cmd.args(["bench", "--in-process", "--json"])
        .args(["--device", &args.device])
        .args(["--component", name])
        .args(["--batch", &batch.to_string()])
        .args(["--runs", &args.runs.to_string()])
        .args(["--warmup", &args.warmup.to_string()])
        .args(["--threads", &threads.to_string()])
        .args(["--precision", &args.precision])
        .env("RAYON_NUM_THREADS", threads.to_string())
        .env(CHILD_ENV, "1")
        .stderr(Stdio::inherit());
    if args.tiny {
        cmd.arg("--tiny");
    }
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("`{name}` b{batch} failed ({}): {stdout}", out.status);
    }
    Record::last_in(&stdout)
}

/// Where PyTorch figures come from.
enum TorchSide {
    None,
    Recorded(Vec<Record>),
    Measured(torch::TorchBench, Vec<Record>),
}

impl TorchSide {
    fn new(args: &BenchArgs) -> Result<Self> {
        if !args.compare_torch {
            return Ok(Self::None);
        }
        // The recorded figures are of the official sizes in f32: none for other runs.
        let recorded = if args.tiny || args.precision != "f32" {
            Vec::new()
        } else {
            torch::recorded()?
        };
        if args.torch_recorded {
            return Ok(Self::Recorded(recorded));
        }
        let venv = args.venv.clone().unwrap_or_else(torch::default_venv);
        let python = torch::ensure_venv(&venv, &args.python)?;
        let bench = torch::TorchBench::new(python)?;
        eprintln!(
            "PyTorch side: {} (times {})",
            bench.versions,
            bench.supported.join(", ")
        );
        Ok(Self::Measured(bench, recorded))
    }

    /// PyTorch's figure for a component: measured when the script times it (falling back to
    /// the recorded one if it fails), else recorded, else none.
    fn figure(&self, timing: Timing, name: &str, batch: usize, threads: usize) -> Option<Record> {
        match self {
            Self::None => None,
            Self::Recorded(recorded) => torch::recorded_for(recorded, name, batch).cloned(),
            Self::Measured(bench, recorded) => {
                if bench.supports(name) {
                    eprintln!("timing PyTorch {name} b{batch}");
                    match bench.measure(name, batch, timing, threads) {
                        Ok(r) => return Some(r),
                        Err(e) => eprintln!("{e:#}; using the recorded figure if there is one"),
                    }
                }
                torch::recorded_for(recorded, name, batch).cloned()
            }
        }
    }
}

/// Prints records and ratios as JSON lines or table rows.
struct Printer {
    json: bool,
    compare: bool,
}

impl Printer {
    fn header(&self) {
        if !self.json {
            if self.compare {
                println!("{}", record::compare_header());
            } else {
                println!("{}", record::table_header());
            }
        }
    }

    fn print(&self, ours: &Record, torch: Option<&Record>) {
        if self.json {
            println!("{}", ours.to_json_line());
            if let Some(t) = torch {
                println!("{}", t.to_json_line());
                println!("{}", Ratio::new(ours, t).to_json_line());
            }
        } else if self.compare {
            println!("{}", record::compare_row(ours, torch));
        } else {
            println!("{}", record::table_row(ours));
        }
    }
}

/// Runs `cargo xtask bench`.
pub fn main(args: BenchArgs) -> Result<ExitCode> {
    let spec = args.device.parse::<DeviceSpec>()?;
    let threads = thread_count(args.threads);
    let timing = timing(&args)?;
    let mut plan = plan(&args.components, &args.skip, args.batch)?;
    if timing.precision != Precision::F32 {
        // Training runs in f32: left out unless named (then `measure` says why it fails).
        plan.retain(|(name, _)| {
            !components::TRAINING.contains(name) || args.components.iter().any(|c| c == name)
        });
    }
    let torch_side = TorchSide::new(&args)?;
    let printer = Printer {
        json: args.json,
        compare: args.compare_torch,
    };
    printer.header();
    let (mut ours_all, mut torch_all) = (Vec::new(), Vec::new());
    let mut failed = 0;
    let child = std::env::var_os(CHILD_ENV).is_some();
    for &(name, batch) in &plan {
        if !child {
            eprintln!("timing {name} b{batch}");
        }
        let ours = if args.in_process {
            measure_here(&args, timing, &spec, name, batch, threads)
        } else {
            measure_child(&args, name, batch, threads)
        };
        let ours = match ours {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{e:#}");
                failed += 1;
                continue;
            }
        };
        let torch = torch_side.figure(timing, name, batch, threads);
        printer.print(&ours, torch.as_ref());
        ours_all.push(ours);
        torch_all.extend(torch);
    }
    for steps in pipelines(&args.components) {
        if args.skip.contains(&format!("pipeline-{steps}")) {
            continue;
        }
        match record::extrapolate_pipeline(steps, &ours_all) {
            Ok(ours) => {
                let torch = record::extrapolate_pipeline(steps, &torch_all).ok();
                printer.print(&ours, torch.as_ref());
            }
            Err(missing) => {
                // Only complain when the pipeline was asked for (not when a batch filter or a
                // failure removed its parts from a default run).
                if args
                    .components
                    .iter()
                    .any(|c| c == &format!("pipeline-{steps}"))
                {
                    eprintln!("pipeline-{steps}: missing {}", missing.join(", "));
                    failed += 1;
                }
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("{failed} component(s) failed");
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_pull_in_pipeline_parts_in_catalogue_order() {
        let p = plan(&["pipeline-10".into(), "swinir".into()], &[], None).unwrap();
        assert_eq!(
            p,
            vec![
                ("swinir", 1),
                ("text-encoder", 2),
                ("vae-encode", 1),
                ("vae-decode", 1),
                ("controlldm-step", 2),
            ]
        );
        let all = plan(&[], &[], None).unwrap();
        assert!(all.contains(&("unet", 1)) && all.contains(&("vae-decode-tiled", 1)));
        let skipped = plan(&[], &["vae-decode-tiled".into()], None).unwrap();
        assert_eq!(skipped.len() + 1, all.len());
        assert_eq!(
            plan(&["unet".into()], &[], Some(2)).unwrap(),
            vec![("unet", 2)]
        );
        assert!(plan(&["unet".into()], &[], Some(3)).is_err());
        assert!(plan(&["nope".into()], &[], None).is_err());
        assert!(plan(&["unet".into()], &["unet".into()], None).is_err());
        assert_eq!(pipelines(&[]), vec![10, 50]);
        assert_eq!(pipelines(&["pipeline-50".into()]), vec![50]);
    }
}
