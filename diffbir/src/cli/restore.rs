//! `diffbir restore`: the command-line face of [`diffbir::pipeline`], with DiffBIR's option
//! names in kebab case.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::Args;
use diffbir::core::device::{DeviceSpec, available_memory};
use diffbir::core::image::{ReadOptions, open_image, save_image};
use diffbir::pipeline::{Pipeline, PipelineConfig, Residency, Task};
use diffbir::plan::{Fixed, Planner};
use diffbir::{Event, Observer, Part};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::args::{ModelArgs, RestoreOptions};
use crate::cli::values::named;

/// Options of `diffbir restore` (DiffBIR's `inference.py` names in kebab case, plus ours).
#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// Images or folders of images (PNG, JPEG, WebP, TIFF, BMP).
    #[arg(long, required = true, num_args = 1..)]
    input: Vec<PathBuf>,
    /// Folder for the results (`<stem>.png`, or `<stem>_<i>.png` with several samples).
    #[arg(long)]
    output: PathBuf,
    /// Restore only the K-th of N shares of the inputs (1-based: 1/4 … 4/4): image i of the
    /// sorted input list belongs to share i mod N + 1, so N machines (a Slurm or Kubernetes
    /// job array) split a folder with no coordination. Give each its own --output.
    #[arg(long, value_name = "K/N", value_parser = Shard::from_str)]
    shard: Option<Shard>,
    /// cpu, wgpu, vulkan, cuda or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = DeviceSpec::from_str)]
    device: DeviceSpec,
    /// Replace existing output files.
    #[arg(long)]
    overwrite: bool,
    /// The reference's prompt captioner: only `none` (give the caption with --pos-prompt).
    #[arg(long, default_value = "none", hide = true)]
    captioner: String,
    /// The reference's LLaVA quantisation, which only matters with the LLaVA captioner.
    #[arg(long = "llava-bit", alias = "llava_bit", hide = true, value_parser = ["16", "8", "4"])]
    _llava_bit: Option<String>,
    /// The reference's training config of a custom model, which is not read here.
    #[arg(long, alias = "train_cfg", hide = true)]
    train_cfg: Option<PathBuf>,
    /// Memory budget of one restoration (8GiB, 12 GB, 500MiB): stages that would not fit
    /// untiled are tiled, and an image no tiling fits is refused before anything is loaded.
    /// Default: the device's memory (the RAM available now on cpu, the adapter's memory on
    /// vulkan and cuda); on wgpu, whose runtime reports none, images are planned only with
    /// this option. The --*-tiled options given are kept as they are.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_memory: Option<u64>,
    /// Print the plan of each input (the tiling and the estimated peak of every stage) and
    /// exit without loading anything.
    #[arg(long)]
    plan: bool,
    /// Keep every network in memory (resident), or load each one when its stage runs and
    /// drop it after (per-stage: a lower peak, the checkpoints read again for every image).
    /// Default: resident, unless the memory plan of some input needs less tiling per stage.
    #[arg(long, value_parser = named::<Residency>())]
    residency: Option<Residency>,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    options: RestoreOptions,
}

/// A size in bytes with a unit (`8GiB`, `12 GB`, `500MiB`).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let size: bytesize::ByteSize = s
        .parse()
        .map_err(|e| format!("`{s}` is not a size such as 8GiB or 500MiB: {e}"))?;
    match size.as_u64() {
        0 => Err(format!("`{s}`: the budget must be more than 0 bytes")),
        n => Ok(n),
    }
}

impl RestoreArgs {
    /// The validated pipeline settings.
    fn config(&self) -> Result<PipelineConfig> {
        if self.captioner != "none" {
            bail!(
                "--captioner {}: no captioner is built in; pass the caption with --pos-prompt",
                self.captioner
            );
        }
        if let Some(path) = &self.train_cfg {
            bail!(
                "--train-cfg {}: the reference's training YAML is not read; describe a custom \
                 model's networks with --model-config (JSON) and give its weights with \
                 --controlnet-ckpt",
                path.display()
            );
        }
        self.options.config(&self.model.base_config()?)
    }
}

/// One share of the inputs (`--shard K/N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 1-based share.
    k: usize,
    /// Shares.
    n: usize,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parsed = s
            .split_once('/')
            .and_then(|(k, n)| Some((k.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((k, n)) if n > 0 && (1..=n).contains(&k) => Ok(Self { k, n }),
            Some((_, 0)) => Err(format!("`{s}`: N must be at least 1")),
            Some((_, n)) => Err(format!("`{s}`: K must lie in 1..={n}")),
            None => Err(format!("`{s}` is not K/N (e.g. 1/4)")),
        }
    }
}

impl Shard {
    /// The files of this share: every N-th, starting at the K-th.
    fn select(self, files: Vec<PathBuf>) -> Vec<PathBuf> {
        files
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % self.n == self.k - 1)
            .map(|(_, f)| f)
            .collect()
    }
}

/// The image files named by `inputs` (folders are listed, sorted by name).
fn image_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    const EXTENSIONS: [&str; 7] = ["png", "jpg", "jpeg", "webp", "tif", "tiff", "bmp"];
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .with_context(|| format!("listing {}", input.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
                })
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(input.clone());
        }
    }
    Ok(files)
}

/// A decoded input and where its results go.
pub(crate) struct Job {
    pub(crate) source: PathBuf,
    pub(crate) image: image::DynamicImage,
    pub(crate) outputs: Vec<PathBuf>,
    /// The memory planner's settings for this image.
    pub(crate) config: Option<PipelineConfig>,
}

/// Draws one bar per image over the sampler steps.
struct Steps {
    bar: ProgressBar,
    /// The input's name, the bar's message.
    name: String,
}

impl Observer for Steps {
    fn on_event(&mut self, event: &Event<'_>) -> ControlFlow<()> {
        match event {
            Event::Step { step, .. } => {
                self.bar.set_length(step.total as u64);
                self.bar.set_position(step.index as u64 + 1);
            }
            // unaligned_face restores each face, then the background.
            Event::Part(part) => {
                let part = match part {
                    Part::Face(k) => format!("face {k}"),
                    Part::Background => "background".into(),
                };
                self.bar.set_message(format!("{} ({part})", self.name));
                self.bar.set_position(0);
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// Runs `diffbir restore`.
pub fn restore(args: &RestoreArgs) -> Result<ExitCode> {
    let mut config = args.config()?;
    config.residency = args.residency.unwrap_or_default();
    let device = args.device.device()?;
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;

    // Decode every input before any model is fetched or loaded.
    let limits = ReadOptions::default();
    let mut failed = 0usize;
    let mut jobs = Vec::new();
    let mut sources = image_files(&args.input)?;
    if let Some(shard) = args.shard {
        let all = sources.len();
        sources = shard.select(sources);
        if sources.is_empty() && all > 0 {
            eprintln!(
                "note: share {}/{} of the {all} inputs is empty; nothing to do",
                shard.k, shard.n
            );
            return Ok(ExitCode::SUCCESS);
        }
    }
    let planner = planner(args, &device);
    if args.plan && planner.is_none() {
        bail!(
            "--plan needs a budget on {}: give --max-memory (this device's runtime reports no \
             memory size)",
            args.device
        );
    }
    for source in sources {
        let planned = prepare(&source, args, &config, &limits).and_then(|mut job| {
            if let Some(planner) = &planner {
                let (width, height) = (job.image.width(), job.image.height());
                let plan = planner
                    .plan(&config, width, height)
                    .with_context(|| source.display().to_string())?;
                if args.plan {
                    println!("{}:\n{plan}\n", source.display());
                }
                job.config = Some(plan.into_config());
            }
            Ok(job)
        });
        match planned {
            Ok(job) => jobs.push(job),
            Err(e) => {
                failed += 1;
                eprintln!("error: {e:#}");
            }
        }
    }
    if jobs.is_empty() && failed == 0 {
        bail!(
            "no image found in the inputs (PNG, JPEG, WebP, TIFF or BMP files, or folders of them)"
        );
    }
    if args.plan {
        return Ok(exit_code(failed));
    }
    if jobs.is_empty() {
        bail!("no input image can be restored ({failed} failed)");
    }

    // Inputs planned per stage load the networks per stage for every input (whose plans hold
    // less memory so).
    if jobs.iter().any(|job| {
        job.config
            .as_ref()
            .is_some_and(|c| c.residency == Residency::PerStage)
    }) {
        config.residency = Residency::PerStage;
    }
    let files = args.model.weight_files(&config)?;
    let pipeline = Pipeline::load(config, &files, &device)?.with_seed(args.options.seed);
    for job in &jobs {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} steps {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let name = job.source.display().to_string();
        bar.set_message(name.clone());
        let mut steps = Steps { bar, name };
        let planned = match &job.config {
            Some(config) => pipeline.with_config(config.clone())?,
            None => pipeline.clone(),
        };
        let pipeline = &planned;
        let result = if pipeline.config().task == Task::UnalignedFace {
            crate::cli::faces::restore(pipeline, job, &args.output, &mut steps)
        } else {
            pipeline
                .restore_image_observed(&job.image, &mut steps)
                .map_err(anyhow::Error::from)
                .and_then(|samples| {
                    for (image, out) in samples.iter().zip(&job.outputs) {
                        save_image(out, image)?;
                    }
                    Ok(())
                })
        }
        .and_then(|()| {
            let stage2 = &pipeline.config().stage2;
            record_prompts(
                &args.output,
                &job.source,
                &stage2.pos_prompt,
                &stage2.neg_prompt,
            )
        });
        steps.bar.finish_and_clear();
        match result {
            Ok(()) => {
                for out in &job.outputs {
                    println!("{}", out.display());
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {}: {e:#}", job.source.display());
            }
        }
    }
    Ok(exit_code(failed))
}

fn exit_code(failed: usize) -> ExitCode {
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The memory planner of a run: with --max-memory, or with the device's memory.
fn planner(args: &RestoreArgs, device: &Device) -> Option<Planner> {
    let budget = args.max_memory.or_else(|| available_memory(device))?;
    let fixed = Fixed {
        residency: args.residency.is_some(),
        ..args.options.fixed_tiling()
    };
    Some(Planner::new(budget, device).with_fixed(fixed))
}

/// Appends the prompts an image was restored with to `{output}/prompt.csv`, as the reference
/// does: columns `file_name` (the input's stem), `pos_prompt`, `neg_prompt`; the header is
/// written when the file is created.
fn record_prompts(output: &Path, source: &Path, pos: &str, neg: &str) -> Result<()> {
    let stem = source
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    record_prompt_row(output, &stem, pos, neg)
}

/// Appends one `prompt.csv` row (see [`record_prompts`]).
pub(crate) fn record_prompt_row(output: &Path, stem: &str, pos: &str, neg: &str) -> Result<()> {
    let path = output.join("prompt.csv");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let new = file.metadata().map(|m| m.len() == 0).unwrap_or(false);
    let mut writer = csv::Writer::from_writer(file);
    if new {
        writer.write_record(["file_name", "pos_prompt", "neg_prompt"])?;
    }
    writer.write_record([stem, pos, neg])?;
    writer
        .flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Decodes one input, checks its output size and output paths.
fn prepare(
    source: &Path,
    args: &RestoreArgs,
    config: &PipelineConfig,
    limits: &ReadOptions,
) -> Result<Job> {
    let image = open_image(source, limits)?;
    config
        .output_size(image.width(), image.height())
        .with_context(|| source.display().to_string())?;
    let stem = source
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    // unaligned_face always numbers its results (`unaligned_bfr_loop.py:L195`).
    let outputs: Vec<PathBuf> = if config.n_samples == 1 && config.task != Task::UnalignedFace {
        vec![args.output.join(format!("{stem}.png"))]
    } else {
        (0..config.n_samples)
            .map(|i| args.output.join(format!("{stem}_{i}.png")))
            .collect()
    };
    if let Some(existing) = outputs
        .iter()
        .find(|p| p.exists())
        .filter(|_| !args.overwrite)
    {
        bail!(
            "{} exists: pass --overwrite to replace it",
            existing.display()
        );
    }
    Ok(Job {
        source: source.to_path_buf(),
        image,
        outputs,
        config: None,
    })
}
