//! `cargo xtask`: developer tasks of diffbir-rs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use diffbir_core::device::DeviceSpec;
use xtask::{fake_checkpoint, parity};

#[derive(Parser, Debug)]
#[command(name = "cargo xtask", about = "Developer tasks of diffbir-rs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run reference cases produced by the original PyTorch code and compare the outputs.
    Parity {
        /// Folder of cases (`NAME.json` + `NAME.io.safetensors` + weight files); repeatable.
        #[arg(long, required = true)]
        fixtures: Vec<PathBuf>,
        /// Only run cases whose name contains this text (repeatable: any of them).
        #[arg(long)]
        case: Vec<String>,
        /// Device to run on: cpu, wgpu, vulkan, cuda, cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Also fail when a case is not supported by this build.
        #[arg(long)]
        strict: bool,
    },
    /// Time every network at its official size (random weights), optionally side by side with
    /// PyTorch; `benches/` has the criterion benches, docs/benchmarks.md the details.
    Bench(xtask::bench::BenchArgs),
    /// Run every network family on a device (default wgpu) and on the CPU backend over
    /// randomly drawn small configurations, with identical weights and inputs, and compare.
    Differential(xtask::differential::DifferentialArgs),
    /// Restore a folder of high-quality images degraded at fixed seeds by the training
    /// pipelines (CodeFormer's, Real-ESRGAN's) and tabulate the metrics of stage 1 and of
    /// DiffBIR against the originals; resumes where it stopped (see docs/metrics.md).
    Eval(xtask::eval::EvalArgs),
    /// Write a random-weight checkpoint with every tensor of a key manifest, in the on-disk
    /// layout of an official file; or, with --tiny, a folder of tiny random models under
    /// every official file name.
    ///
    /// With --tiny, --out is a folder; it receives every checkpoint some task of some DiffBIR
    /// release loads (both face detectors included), a synthetic BPE merges file and the
    /// model configs that describe the tiny networks: model-config.json (SwinIR stage 1, v2.1
    /// noise schedule), model-config.v2-sr.json (RRDBNet) and model-config.v2-denoise.json
    /// (SCUNet). Then, for example:
    /// `diffbir restore --weights-dir DIR --model-config DIR/model-config.json --offline …`.
    FakeCheckpoint {
        /// Key manifest (`manifests/*.json` of the fixtures); repeat it to put several
        /// models in one file (e.g. unet, vae and clip for an SD checkpoint).
        #[arg(long, required_unless_present = "tiny")]
        manifest: Vec<PathBuf>,
        /// On-disk layout of the official file.
        #[arg(long, value_enum, required_unless_present = "tiny")]
        layout: Option<fake_checkpoint::Layout>,
        /// Write the tiny set of every official file into the folder --out instead.
        #[arg(long, conflicts_with_all = ["manifest", "layout"])]
        tiny: bool,
        /// Output file (with --tiny: output folder).
        #[arg(long)]
        out: PathBuf,
        /// Seed of the random values.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

fn main() -> Result<ExitCode> {
    diffbir_core::alloc::keep_freed_memory();
    match Cli::parse().command {
        Command::Parity {
            fixtures,
            case,
            device,
            strict,
        } => {
            let device = device.parse::<DeviceSpec>()?.device()?;
            let mut reports = Vec::new();
            for dir in &fixtures {
                let found = parity::run_dir(dir, &case, &device)?;
                if found.is_empty() {
                    eprintln!("no case found in {}", dir.display());
                    return Ok(ExitCode::FAILURE);
                }
                reports.extend(found);
            }
            for r in &reports {
                println!("{r}");
            }
            let totals = parity::totals(&reports);
            println!("{totals}");
            let ok = totals.failed == 0 && (!strict || totals.unsupported == 0);
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Bench(args) => xtask::bench::main(args),
        Command::Differential(args) => xtask::differential::main(args),
        Command::Eval(args) => xtask::eval::main(args),
        Command::FakeCheckpoint {
            manifest,
            layout,
            tiny,
            out,
            seed,
        } => {
            if tiny {
                for file in fake_checkpoint::tiny::write(&out, seed)? {
                    println!("{file}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            let layout = layout.context("--layout is required without --tiny")?;
            let n = fake_checkpoint::write(&manifest, layout, &out, seed)?;
            println!("wrote {n} tensors to {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
