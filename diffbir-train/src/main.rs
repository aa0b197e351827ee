//! `diffbir-train`: trains DiffBIR's stage 1 (restorer) or stage 2 (IRControlNet) from a
//! TOML config.
//!
//! ```text
//! diffbir-train stage1 --config diffbir-train/configs/tiny-stage1.toml --out runs/s1 [--steps N] [--resume]
//! diffbir-train stage2 --config diffbir-train/configs/tiny-stage2.toml --out runs/s2 [--steps N] [--resume]
//! ```
//!
//! `--device cuda:0,cuda:1` (or `--device cuda:0 --device cuda:1`) trains data-parallel: the
//! config's global `batch_size` is split evenly over the devices.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use diffbir_train::config::{Stage1TrainConfig, Stage2TrainConfig, load_config};
use diffbir_train::stage1::train_stage1;
use diffbir_train::stage2::train_stage2;
use diffbir_train::{Event, RunOptions, Summary};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser, Debug)]
#[command(name = "diffbir-train", version, about = "Train DiffBIR's two stages")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a stage-1 restorer (SwinIR by default).
    Stage1(RunArgs),
    /// Train the IRControlNet on a frozen Stable Diffusion.
    Stage2(RunArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The TOML config (see diffbir-train/configs).
    #[arg(long)]
    config: PathBuf,
    /// Output folder (log.jsonl, checkpoints/, images/, final.safetensors).
    #[arg(long)]
    out: PathBuf,
    /// Total steps (overrides train.train_steps).
    #[arg(long)]
    steps: Option<u64>,
    /// Continue from the latest checkpoint in --out.
    #[arg(long)]
    resume: bool,
    /// Device (overrides train.device): cpu, wgpu, vulkan, cuda[:N]. Repeat it or give a
    /// comma-separated list (cuda:0,cuda:1) to split the global batch over several devices
    /// (data parallelism; the first is the main device).
    #[arg(long, value_delimiter = ',')]
    device: Vec<String>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

impl RunArgs {
    /// The `train.device` setting the command line asks for, if any.
    fn devices(&self) -> Option<String> {
        (!self.device.is_empty()).then(|| self.device.join(","))
    }

    fn options(&self) -> RunOptions {
        RunOptions {
            out: self.out.clone(),
            steps: self.steps,
            resume: self.resume,
        }
    }
}

struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        Self {
            bar: (!quiet).then(ProgressBar::hidden),
        }
    }

    fn on(&mut self, event: &Event) {
        let Some(bar) = &mut self.bar else { return };
        match event {
            Event::Started {
                start,
                end,
                resumed_from,
            } => {
                *bar = ProgressBar::new(*end);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{bar:40} {pos}/{len} steps  {per_sec}  eta {eta}  {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar.set_position(*start);
                if let Some(path) = resumed_from {
                    bar.println(format!("resuming from {}", path.display()));
                }
            }
            Event::Step { step, loss } => {
                bar.set_position(*step);
                bar.set_message(format!("loss {loss:.4}"));
            }
            Event::Validated(v) => bar.println(format!(
                "step {}: val loss {:.4}, PSNR {:.3} dB, SSIM {:.4}",
                v.step, v.loss, v.psnr, v.ssim
            )),
            Event::Checkpoint { path, .. } => bar.println(format!("checkpoint {}", path.display())),
            _ => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn report(summary: &Summary) {
    let first = summary.losses.first().copied().unwrap_or(f64::NAN);
    let last = summary.losses.last().copied().unwrap_or(f64::NAN);
    println!(
        "steps {}..{}: loss {first:.4} -> {last:.4}, {:.3} steps/s; weights {}",
        summary.start,
        summary.end,
        summary.steps_per_sec,
        summary.weights.display()
    );
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Stage1(args) => {
            let mut config: Stage1TrainConfig = load_config(&args.config)?;
            if let Some(d) = args.devices() {
                config.train.device = d;
            }
            let mut progress = Progress::new(args.quiet);
            let summary = train_stage1(&config, &args.options(), &mut |e| progress.on(e))
                .context("stage-1 training failed");
            progress.finish();
            report(&summary?);
        }
        Command::Stage2(args) => {
            let mut config: Stage2TrainConfig = load_config(&args.config)?;
            if let Some(d) = args.devices() {
                config.train.device = d;
            }
            let mut progress = Progress::new(args.quiet);
            let summary = train_stage2(&config, &args.options(), &mut |e| progress.on(e))
                .context("stage-2 training failed");
            progress.finish();
            report(&summary?);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    diffbir_core::alloc::keep_freed_memory();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
