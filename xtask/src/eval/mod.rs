//! `cargo xtask eval`: restores a folder of high-quality images degraded at fixed seeds by the
//! training crate's pipelines, scores stage 1 and the whole restoration against the originals,
//! and writes per-image scores and a table of means. A run resumes where it stopped.
//!
//! Layout of `--out`: `eval.json` (the settings; a run with other settings is refused),
//! `hq/<name>.png` (the references: the images center-cropped to `--size`),
//! `lq/<degradation>/<name>.png`, `restored/<degradation>/{stage1,diffbir}/<name>.png`,
//! `per_image.csv` (rewritten after each image) and `table.md`.

mod degrade;
mod table;

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor};
use clap::Args;
use diffbir::Event;
use diffbir::core::device::DeviceSpec;
use diffbir::core::image::quantize_u8;
use diffbir::core::resize::pil_resize_bicubic;
use diffbir::core::{Checkpoint, NoiseSource};
use diffbir::image::{DynamicImage, RgbImage};
use diffbir::ldm::clip::ClipTokenizer;
use diffbir::metrics::clip_iqa::ClipIqa;
use diffbir::metrics::pairs::IMAGE_EXTENSIONS;
use diffbir::metrics::{FrOptions, Lpips, Metric, MetricImage, Scorer};
use diffbir::pipeline::{ModelConfigs, Pipeline, PipelineConfig, Task, Version, WeightFiles};
use diffbir::sampler::{SamplerConfig, SamplerOptions};

use crate::fake_checkpoint::tiny::Stage1Kind;
use serde_json::json;

pub use degrade::{Degradation, Degraders};
pub use table::Row;

/// What `cargo xtask eval` takes.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Folder of high-quality images (the references).
    #[arg(long)]
    pub dataset: PathBuf,
    /// Output folder; a run with the same settings resumes from what it holds.
    #[arg(long)]
    pub out: PathBuf,
    /// Folder of the weight files under their official names (the `diffbir download` cache,
    /// or the folder `fake-checkpoint --tiny` writes), LPIPS' included.
    #[arg(long)]
    pub weights_dir: PathBuf,
    /// JSON describing the networks, as `diffbir restore --model-config` reads it.
    #[arg(long)]
    pub model_config: Option<PathBuf>,
    /// Degradations, comma-separated: codeformer, realesrgan.
    #[arg(long, value_delimiter = ',', default_value = "codeformer,realesrgan")]
    pub degradation: Vec<String>,
    /// The restoration task.
    #[arg(long, default_value = "sr")]
    pub task: String,
    /// The DiffBIR release.
    #[arg(long, default_value = "v2.1")]
    pub version: String,
    /// Side of the square center crop of each image.
    #[arg(long, default_value_t = 512)]
    pub size: usize,
    /// Seed of the degradations and of the restorations' noise.
    #[arg(long, default_value_t = 231)]
    pub seed: u64,
    /// Use the first N images (by name).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Metrics, comma-separated (see `diffbir metrics`).
    #[arg(long, value_delimiter = ',', default_value = "psnr,ssim,lpips,clipiqa")]
    pub metric: Vec<String>,
    /// Sampler steps (default: the release's).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Device (cpu, wgpu, vulkan, cuda or cuda:N).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Stop after restoring this many (image, degradation) pairs, as an interrupted run
    /// would (for tests of resuming).
    #[arg(long, hide = true)]
    pub stop_after: Option<usize>,
}

/// The settings a resumed run must share with the run that started the folder.
fn settings(args: &EvalArgs, images: &[String], metrics: &[Metric]) -> Result<serde_json::Value> {
    let model_config = match &args.model_config {
        Some(p) => {
            Some(std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
        }
        None => None,
    };
    Ok(json!({
        "dataset": std::path::absolute(&args.dataset)?,
        "images": images,
        "degradations": args.degradation,
        "task": args.task,
        "version": args.version,
        "size": args.size,
        "seed": args.seed,
        "metrics": metrics.iter().map(|m| m.name()).collect::<Vec<_>>(),
        "steps": args.steps,
        "model_config": model_config,
    }))
}

/// The image files of the dataset, by name.
fn list_images(dir: &Path, limit: Option<usize>) -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    // The outputs are named by stem: `a.png` and `a.jpg` would overwrite each other.
    let mut by_stem = std::collections::HashMap::new();
    for name in &names {
        if let Some(other) = by_stem.insert(stem(name), name) {
            bail!(
                "{} holds both {other} and {name}: outputs are named by the file stem, so \
                 rename one",
                dir.display()
            );
        }
    }
    if let Some(limit) = limit {
        names.truncate(limit);
    }
    if names.is_empty() {
        bail!("no images in {}", dir.display());
    }
    Ok(names)
}

/// The file name without its extension, which names every output of that image.
fn stem(name: &str) -> String {
    Path::new(name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A `[1, 3, H, W]` tensor in `[0, 1]` as an 8-bit image, quantised as restore saves it.
fn to_image(t: &Tensor<4>) -> Result<RgbImage> {
    let [_, _, h, w] = t.dims();
    let values: Vec<f32> = t
        .to_data()
        .convert::<f32>()
        .try_into_vec()
        .map_err(|e| anyhow::anyhow!("reading an image back: {e:?}"))?;
    let plane = h * w;
    let data = (0..3 * plane)
        .map(|i| quantize_u8(values[(i % 3) * plane + i / 3]))
        .collect();
    RgbImage::from_raw(w as u32, h as u32, data).context("an image of its own size")
}

/// Saves a PNG through the facade's atomic writer, making the folder.
fn save(path: &Path, image: RgbImage) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    diffbir::save_image(path, &DynamicImage::ImageRgb8(image))?;
    Ok(())
}

/// The pipeline: the release's settings for the task, the model config's shapes, upscale 1
/// (the degraded images are at the references' size, as both training pipelines make them).
fn pipeline(args: &EvalArgs, task: Task, version: Version, device: &Device) -> Result<Pipeline> {
    let mut config = PipelineConfig::new(task, version);
    if let Some(path) = &args.model_config {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        config.models = serde_json::from_str::<ModelConfigs>(&text)
            .with_context(|| format!("{} does not describe the networks", path.display()))?;
    }
    config.upscale = 1.0;
    if let Some(steps) = args.steps {
        let kind = config.stage2.sampler.kind();
        config.stage2.sampler = SamplerConfig::new(kind, steps, &SamplerOptions::new());
    }
    let files = WeightFiles::in_dir(&args.weights_dir, &config);
    Ok(Pipeline::load(config, &files, device)?)
}

/// The scorer, with the LPIPS and CLIP-IQA networks from the weights folder.
fn scorer(args: &EvalArgs, metrics: &[Metric], device: &Device) -> Result<Scorer> {
    let mut scorer = Scorer::new(metrics, FrOptions::default(), device);
    for net in scorer.missing_networks() {
        let [trunk, heads] = diffbir::scoring::lpips_files(net)
            .map(|f| Checkpoint::open(args.weights_dir.join(f.file_name)));
        let model = Lpips::from_checkpoints(net, &trunk?, &heads?, device)?;
        scorer = scorer.with_lpips(net, model);
    }
    if scorer.needs_clip_iqa() {
        let [clip, bpe] =
            diffbir::scoring::clip_iqa_files().map(|f| args.weights_dir.join(f.file_name));
        let tokenizer = ClipTokenizer::from_file(&bpe)?;
        let model = ClipIqa::load(&Checkpoint::open(&clip)?, &tokenizer, device)?;
        scorer = scorer.with_clip_iqa(model);
    }
    Ok(scorer)
}

/// Runs `cargo xtask eval`.
pub fn main(args: EvalArgs) -> Result<ExitCode> {
    let task: Task = args.task.parse()?;
    let version: Version = args.version.parse()?;
    let degradations: Vec<Degradation> = args
        .degradation
        .iter()
        .map(|d| d.parse())
        .collect::<Result<_, _>>()?;
    let metrics: Vec<Metric> = args
        .metric
        .iter()
        .map(|m| m.parse())
        .collect::<Result<_, _>>()?;
    let device = args.device.parse::<DeviceSpec>()?.device()?;
    let images = list_images(&args.dataset, args.limit)?;

    let pipeline = pipeline(&args, task, version, &device)?;
    let scorer = scorer(&args, &metrics, &device)?;
    let degraders = Degraders::new(&args.dataset, args.size, args.seed, &device)?;
    // Everything is set up: the folder is new, or was started with the same settings.
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let settings = settings(&args, &images, &metrics)?;
    let settings_path = args.out.join("eval.json");
    if settings_path.exists() {
        let before: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&settings_path)?)
                .with_context(|| format!("{} is not JSON", settings_path.display()))?;
        if before != settings {
            bail!(
                "{} was started with other settings ({}); use another --out, or the same \
                 options to resume",
                args.out.display(),
                settings_path.display()
            );
        }
    } else {
        std::fs::write(
            &settings_path,
            serde_json::to_string_pretty(&settings)? + "\n",
        )?;
    }
    let csv_path = args.out.join("per_image.csv");
    let mut rows = table::read_csv(&csv_path, &metrics)?.unwrap_or_default();

    let stage1_name = Stage1Kind::of(&pipeline.config().models.stage1).name();
    let methods = [
        ("stage1", format!("Stage 1 ({stage1_name})")),
        ("diffbir", format!("DiffBIR {version}")),
    ];

    let mut restored = 0;
    for name in &images {
        let stem = stem(name);
        for &degradation in &degradations {
            let done = |rows: &[Row]| {
                methods.iter().all(|(m, _)| {
                    rows.iter().any(|r| {
                        &r.image == name && r.degradation == degradation.name() && r.method == *m
                    })
                })
            };
            if done(&rows) {
                continue;
            }
            if args.stop_after.is_some_and(|n| restored >= n) {
                eprintln!("stopped after {restored} restorations (--stop-after)");
                return Ok(ExitCode::SUCCESS);
            }
            let source = diffbir::image::open(args.dataset.join(name))
                .with_context(|| format!("reading {name}"))?;
            let (hq, lq) = degraders.degrade(degradation, name, source.to_rgb8())?;
            let deg = degradation.name();
            save(&args.out.join("hq").join(format!("{stem}.png")), hq.clone())?;
            save(
                &args.out.join("lq").join(deg).join(format!("{stem}.png")),
                lq.clone(),
            )?;
            let mut stage1: Option<RgbImage> = None;
            let mut failed = None;
            let mut observe = |event: &Event<'_>| {
                if let Event::Stage1 { condition } = event {
                    match to_image(condition) {
                        Ok(image) => stage1 = Some(image),
                        Err(e) => failed = Some(e),
                    }
                }
                ControlFlow::Continue(())
            };
            let mut noise = NoiseSource::seeded(args.seed);
            let samples = pipeline
                .restore(&DynamicImage::ImageRgb8(lq), &mut noise, &mut observe)
                .with_context(|| format!("restoring {name} ({deg})"))?;
            if let Some(e) = failed {
                return Err(e);
            }
            let mut stage1 = stage1.context("the pipeline reported no stage-1 result")?;
            // Images under the pipeline's working size (512 on the short side) are cleaned at
            // that size; the stage-1 result is scored at the reference's, as the restoration.
            if stage1.dimensions() != hq.dimensions() {
                stage1 = pil_resize_bicubic(&stage1, hq.width(), hq.height())?;
            }
            let diffbir = to_image(samples.first().context("no sample")?)?;
            let reference = MetricImage::from_dynamic(&DynamicImage::ImageRgb8(hq));
            for ((method, _), image) in methods.iter().zip([stage1, diffbir]) {
                let scores = scorer.score(
                    &MetricImage::from_dynamic(&DynamicImage::ImageRgb8(image.clone())),
                    Some(&reference),
                )?;
                save(
                    &args
                        .out
                        .join("restored")
                        .join(deg)
                        .join(method)
                        .join(format!("{stem}.png")),
                    image,
                )?;
                rows.retain(|r| !(&r.image == name && r.degradation == deg && r.method == *method));
                rows.push(Row {
                    image: name.clone(),
                    degradation: deg.into(),
                    method: (*method).into(),
                    scores: scores.into_iter().map(|(_, v)| v).collect(),
                });
            }
            write_atomically(&csv_path, &table::csv(&metrics, &rows)?)?;
            restored += 1;
            eprintln!("{name} ({deg}) done");
        }
    }

    let title = vec![
        format!(
            "# DiffBIR {version}, {task}: {} images of {}",
            images.len(),
            args.dataset.display()
        ),
        String::new(),
        format!(
            "Center crops of {size}×{size}, degraded by the training pipelines at seed {seed}, \
             restored at upscale 1{steps}. The degradations draw from this project's random \
             streams, not PyTorch's, so the numbers are comparable with each other, not with \
             the paper's.",
            size = args.size,
            seed = args.seed,
            steps = args
                .steps
                .map(|s| format!(" with {s} sampler steps"))
                .unwrap_or_default(),
        ),
    ];
    let names: Vec<String> = degradations.iter().map(|d| d.name().to_string()).collect();
    let markdown = table::markdown(&title, &metrics, &names, &methods, &rows);
    write_atomically(&args.out.join("table.md"), markdown.as_bytes())?;
    print!("{markdown}");
    Ok(ExitCode::SUCCESS)
}

/// Writes a file through a temporary file renamed into place.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("part");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
