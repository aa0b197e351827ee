//! `diffbir restore`: the command-line face of [`diffbir::pipeline`], with DiffBIR's option
//! names in kebab case.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use clap::Args;
use diffbir::core::Precision;
use diffbir::core::color::ColorFix;
use diffbir::core::device::DeviceSpec;
use diffbir::core::image::{ReadOptions, open_image, save_image};
use diffbir::face::{Backbone, FaceSelection, RetinaFaceConfig};
use diffbir::faces::{FaceWeightFiles, face_files};
use diffbir::hub::{ModelFile, release_files};
use diffbir::pipeline::{ModelConfigs, Pipeline, PipelineConfig, Task, Version, WeightFiles};
use diffbir::sampler::{
    GuidanceDomain, GuidanceLoss, RestorationGuidanceConfig, SamplerConfig, SamplerKind,
    SamplerOptions, StartPoint,
};
use diffbir::stage2::VaeTiling;
use diffbir::{Event, Observer, Part};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli_values::named;
use crate::{HubArgs, Progress};

/// Options of `diffbir restore` (DiffBIR's `inference.py` names in kebab case, plus ours).
#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// Images or folders of images (PNG, JPEG, WebP, TIFF, BMP).
    #[arg(long, required = true, num_args = 1..)]
    input: Vec<PathBuf>,
    /// Folder for the results (`<stem>.png`, or `<stem>_<i>.png` with several samples).
    #[arg(long)]
    output: PathBuf,
    /// What to restore (face: aligned 512×512 faces; unaligned_face: photos with faces
    /// anywhere, restored face by face and pasted back).
    #[arg(long, default_value = "sr", value_parser = named::<Task>())]
    task: Task,
    /// Output scale relative to the input (default 4, or 1 for faces).
    #[arg(long)]
    upscale: Option<f64>,
    /// DiffBIR release.
    #[arg(long, default_value = "v2.1", value_parser = named::<Version>())]
    version: Version,
    /// Network shapes as JSON (`ModelConfigs`: stage1, unet, controlnet, vae, clip, schedule)
    /// for models of your own; the files are then given by the --*-ckpt options or found
    /// under the official names.
    #[arg(long, alias = "model_config")]
    model_config: Option<PathBuf>,
    /// Stage-1 checkpoint instead of the official one.
    #[arg(long, alias = "stage1_ckpt")]
    stage1_ckpt: Option<PathBuf>,
    /// Stable Diffusion checkpoint instead of the official one.
    #[arg(long, alias = "sd_ckpt")]
    sd_ckpt: Option<PathBuf>,
    /// IRControlNet checkpoint instead of the official one (`--ckpt` of the reference).
    #[arg(long, aliases = ["ckpt", "controlnet_ckpt"])]
    controlnet_ckpt: Option<PathBuf>,
    /// unaligned_face: the face detector's backbone (facexlib's `det_model`; default the
    /// reference's resnet50).
    #[arg(long, alias = "det_model", value_parser = named::<Backbone>())]
    face_detector: Option<Backbone>,
    /// unaligned_face: restore only the face nearest the centre of the photo.
    #[arg(long, alias = "only_center_face")]
    only_center_face: bool,
    /// unaligned_face: restore only the largest face.
    #[arg(long, conflicts_with = "only_center_face")]
    largest_face: bool,
    /// unaligned_face: paste faces through the blurred square alone, without the face
    /// parsing mask (the reference's `use_parse=False`).
    #[arg(long)]
    no_face_parse: bool,
    /// unaligned_face: stage-1 checkpoint of the faces instead of the official one.
    #[arg(long)]
    face_stage1_ckpt: Option<PathBuf>,
    /// unaligned_face: face detector checkpoint instead of the official one.
    #[arg(long)]
    detector_ckpt: Option<PathBuf>,
    /// unaligned_face: face parsing checkpoint instead of the official one.
    #[arg(long)]
    parser_ckpt: Option<PathBuf>,
    /// Sampler (default: the release's).
    #[arg(long, value_parser = named::<SamplerKind>())]
    sampler: Option<SamplerKind>,
    /// Sampling steps (default: the release's).
    #[arg(long)]
    steps: Option<usize>,
    /// Where sampling starts: pure noise or the noised condition latent.
    #[arg(long, alias = "start_point_type", default_value = "noise", value_parser = named::<StartPoint>())]
    start_point_type: StartPoint,
    /// Restore in tiles (stage 1).
    #[arg(long, alias = "cleaner_tiled")]
    cleaner_tiled: bool,
    #[arg(long, alias = "cleaner_tile_size", default_value_t = 512)]
    cleaner_tile_size: usize,
    #[arg(long, alias = "cleaner_tile_stride", default_value_t = 256)]
    cleaner_tile_stride: usize,
    /// Encode with the VAE in tiles.
    #[arg(long, alias = "vae_encoder_tiled")]
    vae_encoder_tiled: bool,
    #[arg(long, alias = "vae_encoder_tile_size", default_value_t = 256)]
    vae_encoder_tile_size: usize,
    /// Decode with the VAE in tiles.
    #[arg(long, alias = "vae_decoder_tiled")]
    vae_decoder_tiled: bool,
    #[arg(long, alias = "vae_decoder_tile_size", default_value_t = 256)]
    vae_decoder_tile_size: usize,
    /// How VAE tiles are processed: synced (the reference's; GroupNorm statistics shared by
    /// all tiles, which all stay in memory) or blended (v2's; independent tiles blended with
    /// Gaussian weights, memory bounded by one tile).
    #[arg(long, alias = "vae_tiling", default_value = "synced", value_parser = named::<VaeTiling>())]
    vae_tiling: VaeTiling,
    /// Diffuse in tiles (mixture of diffusers).
    #[arg(long, alias = "cldm_tiled")]
    cldm_tiled: bool,
    #[arg(long, alias = "cldm_tile_size", default_value_t = 512)]
    cldm_tile_size: usize,
    #[arg(long, alias = "cldm_tile_stride", default_value_t = 256)]
    cldm_tile_stride: usize,
    /// Positive prompt (default: the release's).
    #[arg(long, alias = "pos_prompt")]
    pos_prompt: Option<String>,
    /// Negative prompt (default: the release's).
    #[arg(long, alias = "neg_prompt")]
    neg_prompt: Option<String>,
    /// Classifier-free guidance scale (default: the release's).
    #[arg(long, alias = "cfg_scale")]
    cfg_scale: Option<f64>,
    /// Vary the guidance scale over time.
    #[arg(long, alias = "rescale_cfg")]
    rescale_cfg: bool,
    /// Noise-augmentation timestep of the condition latent.
    #[arg(long, alias = "noise_aug", default_value_t = 0)]
    noise_aug: usize,
    #[arg(long, alias = "s_churn", default_value_t = 0.0)]
    s_churn: f64,
    #[arg(long, alias = "s_tmin", default_value_t = 0.0)]
    s_tmin: f64,
    #[arg(long, alias = "s_tmax", default_value_t = 300.0)]
    s_tmax: f64,
    #[arg(long, alias = "s_noise", default_value_t = 1.0)]
    s_noise: f64,
    #[arg(long, default_value_t = 1.0)]
    eta: f64,
    #[arg(long, default_value_t = 1)]
    order: usize,
    /// Scale of the ControlNet residuals.
    #[arg(long, default_value_t = 1.0)]
    strength: f64,
    #[arg(long, alias = "batch_size", default_value_t = 1)]
    batch_size: usize,
    #[arg(long, alias = "n_samples", default_value_t = 1)]
    n_samples: usize,
    /// Restoration guidance: pull every step's clean-latent estimate towards the stage-1
    /// result (spaced sampler only, untiled).
    #[arg(long)]
    guidance: bool,
    /// Guidance loss (w_mse needs --g-space rgb).
    #[arg(long, alias = "g_loss", default_value = "mse", value_parser = named::<GuidanceLoss>())]
    g_loss: GuidanceLoss,
    /// Guidance scale (v1: as given; v2 and v2.1: times 3000, as the original).
    #[arg(long, alias = "g_scale", default_value_t = 0.0)]
    g_scale: f64,
    /// Guidance runs while g-stop < t + 1 < g-start (t the model timestep, 999 down to 0).
    #[arg(
        long,
        alias = "g_start",
        default_value_t = 1001,
        allow_negative_numbers = true
    )]
    g_start: i64,
    #[arg(long, alias = "g_stop", default_value_t = -1, allow_negative_numbers = true)]
    g_stop: i64,
    /// Where the guidance loss is computed (rgb: through the VAE decoder).
    #[arg(long, alias = "g_space", default_value = "latent", value_parser = named::<GuidanceDomain>())]
    g_space: GuidanceDomain,
    /// Guidance updates per step (default: 5 for v1, 1 otherwise).
    #[arg(long, alias = "g_repeat")]
    g_repeat: Option<usize>,
    /// Seed of every random draw; each image starts from it.
    #[arg(long, default_value_t = 231)]
    seed: u64,
    /// cpu, wgpu, vulkan, cuda or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = DeviceSpec::from_str)]
    device: DeviceSpec,
    /// Float precision (fp32, fp16 and bf16 are accepted too).
    #[arg(long, alias = "dtype", default_value = "f32", value_parser = named::<Precision>())]
    precision: Precision,
    /// Colour fix against the stage-1 result.
    #[arg(long, alias = "color_fix", default_value = "wavelet", value_parser = named::<ColorFix>())]
    color_fix: ColorFix,
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
    #[command(flatten)]
    hub: HubArgs,
}

impl RestoreArgs {
    /// The `--g-*` settings, with the update rule of `version` (v2.1 uses v2's).
    fn guidance_config(&self, version: Version) -> Result<RestorationGuidanceConfig> {
        let (loss, space) = (self.g_loss, self.g_space);
        let mut config = match version {
            Version::V1 => RestorationGuidanceConfig::v1(loss, space, self.g_scale),
            Version::V2 | Version::V21 => RestorationGuidanceConfig::new(loss, space, self.g_scale),
        };
        config.t_start = self.g_start;
        config.t_stop = self.g_stop;
        if let Some(repeat) = self.g_repeat {
            config.repeat = repeat;
        }
        Ok(config)
    }

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
        let mut config = PipelineConfig::new(self.task, self.version);
        if let Some(path) = &self.model_config {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            config.models = serde_json::from_str::<ModelConfigs>(&text)
                .with_context(|| format!("{} does not describe the networks", path.display()))?;
        }
        if let Some(upscale) = self.upscale {
            config.upscale = upscale;
        }
        if let Some(backbone) = self.face_detector {
            config.models.face.detector = RetinaFaceConfig::of(backbone);
        }
        config.faces.selection = if self.only_center_face {
            FaceSelection::Center
        } else if self.largest_face {
            FaceSelection::Largest
        } else {
            FaceSelection::All
        };
        config.faces.use_parse = !self.no_face_parse;
        let options = SamplerOptions::new()
            .with_s_churn(self.s_churn)
            .with_s_tmin(self.s_tmin)
            .with_s_tmax(self.s_tmax)
            .with_s_noise(self.s_noise)
            .with_eta(self.eta)
            .with_order(self.order);
        let kind = self.sampler.unwrap_or_else(|| config.stage2.sampler.kind());
        let steps = self.steps.unwrap_or_else(|| config.stage2.sampler.steps());
        let stage2 = &mut config.stage2;
        stage2.sampler = SamplerConfig::new(kind, steps, &options);
        stage2.start_point = self.start_point_type;
        stage2.strength = self.strength;
        stage2.rescale_cfg = self.rescale_cfg;
        stage2.noise_aug = self.noise_aug;
        if let Some(cfg) = self.cfg_scale {
            stage2.cfg_scale = cfg;
        }
        if let Some(p) = &self.pos_prompt {
            stage2.pos_prompt = p.clone();
        }
        if let Some(p) = &self.neg_prompt {
            stage2.neg_prompt = p.clone();
        }
        stage2.vae_encoder_tile = self.vae_encoder_tiled.then_some(self.vae_encoder_tile_size);
        stage2.vae_decoder_tile = self.vae_decoder_tiled.then_some(self.vae_decoder_tile_size);
        stage2.vae_tiling = self.vae_tiling;
        stage2.cldm_tile = self
            .cldm_tiled
            .then_some((self.cldm_tile_size, self.cldm_tile_stride));
        stage2.guidance = self
            .guidance
            .then(|| self.guidance_config(config.version))
            .transpose()?;
        config.cleaner_tile = self
            .cleaner_tiled
            .then_some((self.cleaner_tile_size, self.cleaner_tile_stride));
        config.color_fix = self.color_fix;
        config.precision = self.precision;
        config.n_samples = self.n_samples;
        config.batch_size = self.batch_size;
        config.validate()?;
        Ok(config)
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
    let config = args.config()?;
    let device = args.device.device()?;
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;

    // Decode every input before any model is fetched or loaded.
    let limits = ReadOptions::default();
    let mut failed = 0usize;
    let mut jobs = Vec::new();
    for source in image_files(&args.input)? {
        match prepare(&source, args, &config, &limits) {
            Ok(job) => jobs.push(job),
            Err(e) => {
                failed += 1;
                eprintln!("error: {e:#}");
            }
        }
    }
    if jobs.is_empty() {
        if failed == 0 {
            bail!(
                "no image found in the inputs (PNG, JPEG, WebP, TIFF or BMP files, or folders of them)"
            );
        }
        bail!("no input image can be restored ({failed} failed)");
    }

    let files = weight_files(args, &config)?;
    let pipeline = Pipeline::load(config, &files, &device)?.with_seed(args.seed);
    for job in &jobs {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} steps {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let name = job.source.display().to_string();
        bar.set_message(name.clone());
        let mut steps = Steps { bar, name };
        let result = if pipeline.config().task == Task::UnalignedFace {
            crate::cli_faces::restore(&pipeline, job, &args.output, &mut steps)
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
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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
    })
}

/// The checkpoint files: explicit options first, else the official files through the hub
/// (--weights-dir folders, the cache, or a download).
fn weight_files(args: &RestoreArgs, config: &PipelineConfig) -> Result<WeightFiles> {
    // A mistyped path is reported before any official file is downloaded.
    for (option, path) in [
        ("--stage1-ckpt", &args.stage1_ckpt),
        ("--sd-ckpt", &args.sd_ckpt),
        ("--controlnet-ckpt", &args.controlnet_ckpt),
        ("--face-stage1-ckpt", &args.face_stage1_ckpt),
        ("--detector-ckpt", &args.detector_ckpt),
        ("--parser-ckpt", &args.parser_ckpt),
    ] {
        if let Some(path) = path.as_ref().filter(|p| !p.is_file()) {
            bail!("{option} {}: no such file", path.display());
        }
    }
    let hub = args.hub.hub()?;
    let files = release_files(config.task, config.version);
    let mut progress = Progress::default();
    let mut fetch = |explicit: &Option<PathBuf>, file: &ModelFile| -> Result<PathBuf> {
        match explicit {
            Some(path) => Ok(path.clone()),
            None => Ok(hub.fetch_file(file, &mut progress)?),
        }
    };
    let face = match face_files(config)? {
        Some(face) => Some(FaceWeightFiles {
            stage1: fetch(&args.face_stage1_ckpt, face.stage1)?,
            detector: fetch(&args.detector_ckpt, face.detector)?,
            parser: fetch(&args.parser_ckpt, face.parser)?,
        }),
        None => None,
    };
    Ok(WeightFiles {
        stage1: fetch(&args.stage1_ckpt, files.stage1)?,
        sd: fetch(&args.sd_ckpt, files.sd)?,
        controlnet: fetch(&args.controlnet_ckpt, files.controlnet)?,
        bpe_vocab: fetch(&None, files.bpe_vocab)?,
        face,
    })
}
