//! The options `restore` and `serve` share: what the networks are loaded with
//! ([`ModelArgs`]) and how one image is restored ([`RestoreOptions`]; a server's job options
//! go through the same definitions).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use diffbir::core::Precision;
use diffbir::core::color::ColorFix;
use diffbir::face::{Backbone, FaceSelection, RetinaFaceConfig};
use diffbir::faces::{FaceWeightFiles, face_files};
use diffbir::hub::{ModelFile, release_files};
use diffbir::pipeline::{ModelConfigs, PipelineConfig, Task, Version, WeightFiles};
use diffbir::plan::Fixed;
use diffbir::sampler::{
    GuidanceDomain, GuidanceLoss, RestorationGuidanceConfig, SamplerConfig, SamplerKind,
    SamplerOptions, StartPoint,
};
use diffbir::stage2::VaeTiling;
use serde::Serialize;

use crate::cli::values::named;
use crate::{HubArgs, Progress};

/// What the networks are loaded with: task, release, shapes, files and precision.
#[derive(Args, Debug)]
pub struct ModelArgs {
    /// What to restore (face: aligned 512×512 faces; unaligned_face: photos with faces
    /// anywhere, restored face by face and pasted back).
    #[arg(long, default_value = "sr", value_parser = named::<Task>())]
    pub task: Task,
    /// DiffBIR release.
    #[arg(long, default_value = "v2.1", value_parser = named::<Version>())]
    pub version: Version,
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
    /// unaligned_face: stage-1 checkpoint of the faces instead of the official one.
    #[arg(long)]
    face_stage1_ckpt: Option<PathBuf>,
    /// unaligned_face: face detector checkpoint instead of the official one.
    #[arg(long)]
    detector_ckpt: Option<PathBuf>,
    /// unaligned_face: face parsing checkpoint instead of the official one.
    #[arg(long)]
    parser_ckpt: Option<PathBuf>,
    /// Float precision (fp32, fp16 and bf16 are accepted too).
    #[arg(long, alias = "dtype", default_value = "f32", value_parser = named::<Precision>())]
    pub precision: Precision,
    #[command(flatten)]
    pub hub: HubArgs,
}

impl ModelArgs {
    /// The release's defaults for the task, with the networks' shapes and precision.
    pub fn base_config(&self) -> Result<PipelineConfig> {
        let mut config = PipelineConfig::new(self.task, self.version);
        if let Some(path) = &self.model_config {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            config.models = serde_json::from_str::<ModelConfigs>(&text)
                .with_context(|| format!("{} does not describe the networks", path.display()))?;
        }
        if let Some(backbone) = self.face_detector {
            config.models.face.detector = RetinaFaceConfig::of(backbone);
        }
        config.precision = self.precision;
        Ok(config)
    }

    /// The checkpoint files: explicit options first, else the official files through the
    /// hub (--weights-dir folders, the cache, or a download).
    pub fn weight_files(&self, config: &PipelineConfig) -> Result<WeightFiles> {
        // A mistyped path is reported before any official file is downloaded.
        for (option, path) in [
            ("--stage1-ckpt", &self.stage1_ckpt),
            ("--sd-ckpt", &self.sd_ckpt),
            ("--controlnet-ckpt", &self.controlnet_ckpt),
            ("--face-stage1-ckpt", &self.face_stage1_ckpt),
            ("--detector-ckpt", &self.detector_ckpt),
            ("--parser-ckpt", &self.parser_ckpt),
        ] {
            if let Some(path) = path.as_ref().filter(|p| !p.is_file()) {
                bail!("{option} {}: no such file", path.display());
            }
        }
        let hub = self.hub.hub()?;
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
                stage1: fetch(&self.face_stage1_ckpt, face.stage1)?,
                detector: fetch(&self.detector_ckpt, face.detector)?,
                parser: fetch(&self.parser_ckpt, face.parser)?,
            }),
            None => None,
        };
        Ok(WeightFiles {
            stage1: fetch(&self.stage1_ckpt, files.stage1)?,
            sd: fetch(&self.sd_ckpt, files.sd)?,
            controlnet: fetch(&self.controlnet_ckpt, files.controlnet)?,
            bpe_vocab: fetch(&None, files.bpe_vocab)?,
            face,
        })
    }
}

/// How one image is restored (DiffBIR's `inference.py` names in kebab case, plus ours). The
/// serde names (snake case) are a server job's option keys.
#[derive(Args, Debug, Clone, Serialize)]
pub struct RestoreOptions {
    /// Output scale relative to the input (default 4, or 1 for faces).
    #[arg(long)]
    upscale: Option<f64>,
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
    pub n_samples: usize,
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
    pub seed: u64,
    /// Colour fix against the stage-1 result.
    #[arg(long, alias = "color_fix", default_value = "wavelet", value_parser = named::<ColorFix>())]
    color_fix: ColorFix,
}

impl RestoreOptions {
    /// The tiling the options set explicitly, which the memory planner keeps.
    pub fn fixed_tiling(&self) -> Fixed {
        Fixed {
            stage1: self.cleaner_tiled,
            vae_encoder: self.vae_encoder_tiled,
            vae_decoder: self.vae_decoder_tiled,
            diffusion: self.cldm_tiled,
            residency: false,
        }
    }

    /// The `--g-*` settings, with the update rule of `version` (v2.1 uses v2's).
    fn guidance_config(&self, version: Version) -> RestorationGuidanceConfig {
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
        config
    }

    /// `base` (the loaded networks' settings) with these options, validated.
    pub fn config(&self, base: &PipelineConfig) -> Result<PipelineConfig> {
        let mut config = base.clone();
        if let Some(upscale) = self.upscale {
            config.upscale = upscale;
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
        stage2.guidance = self.guidance.then(|| self.guidance_config(config.version));
        config.cleaner_tile = self
            .cleaner_tiled
            .then_some((self.cleaner_tile_size, self.cleaner_tile_stride));
        config.color_fix = self.color_fix;
        config.n_samples = self.n_samples;
        config.batch_size = self.batch_size;
        config.validate()?;
        Ok(config)
    }
}
