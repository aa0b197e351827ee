//! The `diffbir` command.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use diffbir::core::device::DeviceSpec;
use diffbir::core::{Checkpoint, CheckpointFormat};
use diffbir::hub::{self, DownloadEvent, DownloadObserver, Hub, Location, ModelFile};
use diffbir::pipeline::{Task, Version};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

mod cli;
mod serve;

use cli::values::named;

#[derive(Parser, Debug)]
#[command(name = "diffbir", version, about = "DiffBIR blind image restoration")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Accept a PyTorch checkpoint whose pickle names this global (`module.name`), for files
    /// you trust; by default only tensor rebuilders, storages and plain containers are
    /// accepted, as PyTorch's weights_only loader does (repeatable; also
    /// DIFFBIR_ALLOW_PICKLE_GLOBALS, comma-separated). Nothing in a pickle is ever run.
    #[arg(
        long,
        global = true,
        value_name = "MODULE.NAME",
        env = "DIFFBIR_ALLOW_PICKLE_GLOBALS",
        value_delimiter = ','
    )]
    allow_pickle_global: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Inspect and verify checkpoint files.
    #[command(subcommand)]
    Weights(WeightsCommand),
    /// Download the official weight files into the cache, verifying their SHA-256.
    ///
    /// Files already in a --weights-dir folder or in the cache are not downloaded again.
    /// The cache is $DIFFBIR_HOME, else the user's cache folder (~/.cache/diffbir on Linux).
    /// DIFFBIR_HUB_ENDPOINT (or HF_ENDPOINT) replaces https://huggingface.co for mirrors,
    /// DIFFBIR_GITHUB_ENDPOINT replaces https://github.com, DIFFBIR_PYTORCH_ENDPOINT
    /// https://download.pytorch.org.
    Download(DownloadArgs),
    /// Restore images: stage 1, then the diffusion stage, as DiffBIR's inference.py does.
    ///
    /// The weights of the chosen task and version are looked up in --weights-dir folders and
    /// the cache, and downloaded when missing (see `diffbir download`).
    Restore(Box<cli::restore::RestoreArgs>),
    /// Serve restorations over HTTP: a JSON API and a web page, with the models loaded once.
    ///
    /// Listens on 127.0.0.1:8080 by default; see docs/serve.md for the API. The restore
    /// options set the jobs' defaults; each job may override them.
    Serve(Box<serve::ServeArgs>),
    /// Score restored images against references: PSNR, SSIM (BasicSR's and pyiqa's) and
    /// LPIPS, per pair and on average.
    ///
    /// Pairs are matched by file name; unmatched files, pairs of different sizes and unreadable
    /// images are all reported before anything is scored. See docs/metrics.md.
    Metrics(Box<cli::metrics::MetricsArgs>),
}

/// Where weight files are looked for, and whether they may be downloaded.
#[derive(Args, Debug)]
pub(crate) struct HubArgs {
    /// A folder of weight files you already have, looked up by file name before the cache
    /// and used without download (repeatable; DIFFBIR_WEIGHTS_DIR is searched first).
    #[arg(long = "weights-dir", value_name = "DIR")]
    weights_dirs: Vec<PathBuf>,
    /// Never download: a file missing from --weights-dir and the cache is an error
    /// (also DIFFBIR_OFFLINE=1).
    #[arg(long)]
    offline: bool,
}

impl HubArgs {
    pub(crate) fn hub(&self) -> Result<Hub> {
        let mut hub = Hub::from_env()?;
        for dir in &self.weights_dirs {
            hub = hub.with_weights_dir(dir);
        }
        if self.offline {
            hub = hub.offline(true);
        }
        Ok(hub)
    }
}

#[derive(Args, Debug)]
struct DownloadArgs {
    /// Files to download, by name (see --list), upstream key (`v2.1`, `sd_v2.1`) or file name.
    names: Vec<String>,
    /// Also download every file a DiffBIR version needs for --task.
    #[arg(long = "version", id = "pipeline_version", value_name = "VERSION", value_parser = named::<Version>())]
    pipeline_version: Option<Version>,
    /// The task for --version.
    #[arg(long, default_value = "sr", requires = "pipeline_version", value_parser = named::<Task>())]
    task: Task,
    /// List the known files and where they are, then exit.
    #[arg(long, conflicts_with_all = ["names", "pipeline_version", "verify"])]
    list: bool,
    /// Hash the local files again and compare them with their pinned or recorded SHA-256.
    #[arg(long)]
    verify: bool,
    #[command(flatten)]
    hub: HubArgs,
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
        /// Device to build the model on (cpu, wgpu, vulkan, cuda or cuda:N).
        #[arg(long, default_value = "cpu", value_parser = DeviceSpec::from_str)]
        device: DeviceSpec,
    },
    /// List the architectures `verify` knows.
    Models,
}

fn main() -> ExitCode {
    diffbir::core::alloc::keep_freed_memory();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    diffbir::core::checkpoint::allow_pickle_globals(cli.allow_pickle_global);
    match cli.command {
        Command::Weights(WeightsCommand::Inspect { file }) => inspect(&file),
        Command::Weights(WeightsCommand::Verify {
            file,
            model,
            device,
        }) => {
            let device = device.device()?;
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
        Command::Download(args) => download(&args),
        Command::Restore(args) => cli::restore::restore(&args),
        Command::Serve(args) => serve::serve(&args),
        Command::Metrics(args) => cli::metrics::metrics(&args),
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

fn download(args: &DownloadArgs) -> Result<ExitCode> {
    let hub = args.hub.hub()?;
    if args.list {
        for file in hub::files() {
            let place = match hub.locate(file) {
                Some((path, _)) => path.display().to_string(),
                None => "-".into(),
            };
            println!(
                "{:<22} {:<32} {:>10}  {:<26} {place}",
                file.name,
                file.file_name,
                HumanBytes(file.size).to_string(),
                format!("sha256 {}", file.hash_policy()),
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut files: Vec<&'static ModelFile> = Vec::new();
    for name in &args.names {
        files.push(hub::find_file(name)?);
    }
    if let Some(version) = args.pipeline_version {
        // A task the release does not have (v1's unaligned_face) is refused as `restore`
        // refuses it.
        diffbir::PipelineConfig::new(args.task, version).validate()?;
        files.extend(hub::release_files(args.task, version).all());
    }
    if files.is_empty() {
        bail!(
            "name the files to download (see `diffbir download --list`), or the pipeline with \
             --version and --task"
        );
    }
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(f.name));

    let mut mismatched = false;
    for file in files {
        let path = hub.fetch_file(file, &mut Progress::default())?;
        println!("{:<22} {}", file.name, path.display());
        if args.verify
            && let Some(check) = hub.verify(file)?
        {
            match &check.expected {
                Some((expected, origin)) if !check.is_ok() => {
                    mismatched = true;
                    eprintln!(
                        "error: {}: SHA-256 is {}, expected {expected} ({origin})",
                        check.path.display(),
                        check.sha256
                    );
                }
                Some(_) => eprintln!("{}: SHA-256 ok ({})", file.file_name, check.sha256),
                None => eprintln!(
                    "{}: SHA-256 {} (nothing recorded to compare with)",
                    file.file_name, check.sha256
                ),
            }
        }
    }
    Ok(if mismatched {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Draws download progress on stderr (hidden when stderr is not a terminal).
#[derive(Default)]
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    fn say(&self, message: String) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{message}")),
            None => eprintln!("{message}"),
        }
    }
}

impl DownloadObserver for Progress {
    fn on_event(&mut self, event: &DownloadEvent<'_>) -> ControlFlow<()> {
        match event {
            DownloadEvent::Found {
                location: Location::WeightsDir,
                path,
                ..
            } => self.say(format!("using {}", path.display())),
            DownloadEvent::Resuming { file, bytes } => self.say(format!(
                "{}: resuming after {}",
                file.file_name,
                HumanBytes(*bytes)
            )),
            DownloadEvent::Started {
                file,
                url,
                offset,
                total,
            } => {
                self.say(format!("downloading {url}"));
                let bar = ProgressBar::new(total.unwrap_or(file.size));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar.set_message(file.file_name);
                bar.set_position(*offset);
                bar.reset_eta();
                self.bar = Some(bar);
            }
            DownloadEvent::Progress {
                downloaded, total, ..
            } => {
                if let Some(bar) = &self.bar {
                    if let Some(total) = total {
                        bar.set_length(*total);
                    }
                    bar.set_position(*downloaded);
                }
            }
            DownloadEvent::Retrying {
                attempt,
                max_attempts,
                error,
                ..
            } => self.say(format!(
                "warning: {error}; trying again ({}/{max_attempts})",
                attempt + 1
            )),
            DownloadEvent::SourceFailed { error, .. } => {
                self.say(format!("warning: {error}; trying the next source"));
            }
            DownloadEvent::Finished { .. } => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}
