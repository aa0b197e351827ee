//! The `diffbir` command.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use diffbir::core::device::DeviceSpec;
use diffbir::core::{Checkpoint, CheckpointFormat};

#[derive(Parser, Debug)]
#[command(name = "diffbir", version, about = "DiffBIR blind image restoration")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Inspect and verify checkpoint files.
    #[command(subcommand)]
    Weights(WeightsCommand),
}

#[derive(Subcommand, Debug)]
enum WeightsCommand {
    /// List the tensors of a checkpoint (.safetensors, .pth, .pt, .ckpt): key, shape, dtype.
    Inspect {
        /// The checkpoint file.
        file: PathBuf,
    },
    /// Load a checkpoint into a model architecture at its official size and report how many
    /// tensors mapped; exits with 0 only when nothing is missing or unused.
    Verify {
        /// The checkpoint file.
        file: PathBuf,
        /// The architecture (see `diffbir weights models`).
        #[arg(long)]
        model: String,
        /// Device to build the model on.
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// List the architectures `verify` knows.
    Models,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Weights(WeightsCommand::Inspect { file }) => inspect(&file),
        Command::Weights(WeightsCommand::Verify {
            file,
            model,
            device,
        }) => {
            let device = device.parse::<DeviceSpec>()?.device()?;
            let report = diffbir::zoo::verify(&file, &model, &device)
                .with_context(|| format!("verifying {} as `{model}`", file.display()))?;
            for key in &report.missing {
                println!("missing: {key}");
            }
            for key in &report.unused {
                println!("unused: {key}");
            }
            for line in &report.mismatched {
                println!("mismatched: {line}");
            }
            println!("{report}");
            Ok(if report.is_complete() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Weights(WeightsCommand::Models) => {
            let models = diffbir::zoo::models();
            if models.is_empty() {
                println!("this build has no model architecture to verify against yet");
            }
            for m in models {
                println!("{:<20} {}", m.name, m.description);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn inspect(file: &std::path::Path) -> Result<ExitCode> {
    let ckpt = Checkpoint::open(file)?;
    let infos = ckpt.infos();
    let width = infos.iter().map(|i| i.key.len()).max().unwrap_or(0);
    for info in &infos {
        println!(
            "{:<width$}  {:<20}  {}",
            info.key,
            format!("{:?}", info.shape),
            format!("{:?}", info.dtype).to_lowercase()
        );
    }
    let format = match ckpt.format() {
        CheckpointFormat::Safetensors => "safetensors",
        CheckpointFormat::Pytorch => "pytorch",
    };
    let unwrapped = if ckpt.unwrapped().is_empty() {
        String::new()
    } else {
        format!(" ({})", ckpt.unwrapped().join(", "))
    };
    println!(
        "{} tensors, {} parameters, {format}{unwrapped}",
        ckpt.len(),
        ckpt.num_float_elements()
    );
    Ok(ExitCode::SUCCESS)
}
