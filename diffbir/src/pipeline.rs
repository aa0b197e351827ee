//! The whole restoration: stage 1, DiffBIR's resize rules, stage 2, colour fix and the final
//! resize, as `inference.py` runs it for each task and version
//! (`XPixelGroup/DiffBIR@3f8b530:diffbir/inference/loop.py:L154-L210`,
//! `diffbir/pipeline.py:L235-L420`).
//!
//! [`Pipeline::builder`] is the short way to one (downloads, defaults, a seed); this is the
//! long way, from checkpoint files, down to tensors:
//!
//! ```no_run
//! use diffbir::pipeline::{Pipeline, PipelineConfig, Task, Version, WeightFiles};
//! use diffbir::core::{NoiseSource, device::parse_device};
//!
//! let device = parse_device("cpu")?;
//! let config = PipelineConfig::new(Task::Sr, Version::V21);
//! let files = WeightFiles::in_dir("weights", &config); // the official file names
//! let pipeline = Pipeline::load(config, &files, &device)?;
//! let image = diffbir::image::open("photo.png").expect("readable");
//! let mut noise = NoiseSource::seeded(231);
//! let restored = pipeline.restore(&image, &mut noise, &mut ())?; // [0, 1], one per sample
//! # Ok::<(), diffbir::Error>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::tensor::{Device, Tensor};
use diffbir_controlnet::{ControlLdm, ControlNetConfig};
use diffbir_core::color::ColorFix;
use diffbir_core::image::image_to_tensor;
use diffbir_core::resize::{self, pil_upscale, upscaled_size};
use diffbir_core::{Checkpoint, NoiseSource, Precision};
use diffbir_hub::release_files;
use diffbir_ldm::clip::{ClipTextConfig, ClipTokenizer};
use diffbir_ldm::sd::{StableDiffusion, StableDiffusionConfig};
use diffbir_ldm::{UnetConfig, VaeConfig};
use diffbir_rm::{Restorer, RrdbNetConfig, ScuNetConfig, Stage1, Stage1Config, SwinIrConfig};
use diffbir_sampler::{
    NoiseScheduleConfig, SampleObserver, SamplerConfig, SamplerKind, SamplerOptions, StartPoint,
    StepInfo,
};
use image::DynamicImage;
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;

use crate::builder::DEFAULT_SEED;
use crate::error::{Error, Result};
use crate::faces::{
    FaceModelConfigs, FaceModels, FaceOptions, FaceWeightFiles, detector_file_name,
};
use crate::observe::{Event, Observer, proceed};
use crate::residency::{PerStage, load_controlnet, load_stage1};
use crate::stage2::{Stage2, Stage2Networks, Stage2Options, VaeTiling};

pub use crate::residency::Residency;

pub use diffbir_core::release::{Task, Version};

/// The default positive prompt of DiffBIR v2.1.
pub const DEFAULT_POS_PROMPT: &str = "Cinematic, High Contrast, highly detailed, taken using a Canon EOS R camera, hyper detailed photo - realistic maximum detail, 32k, Color Grading, ultra HD, extreme meticulous detailing, skin pore detailing, hyper sharpness, perfect without deformations.";
/// The default negative prompt of DiffBIR v2.1.
pub const DEFAULT_NEG_PROMPT: &str = "painting, oil painting, illustration, drawing, art, sketch, oil painting, cartoon, CG Style, 3D render, unreal engine, blurring, dirty, messy, worst quality, low quality, frames, watermark, signature, jpeg artifacts, deformed, lowres, over-smooth.";
/// The default negative prompt of DiffBIR v2.
pub const V2_NEG_PROMPT: &str =
    "low quality, blurry, low-resolution, noisy, unsharp, weird textures";

/// The shapes of every network of a pipeline (the official ones by default; `custom` runs may
/// bring their own).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelConfigs {
    /// Stage-1 network.
    pub stage1: Stage1Config,
    /// SD UNet.
    pub unet: UnetConfig,
    /// IRControlNet.
    pub controlnet: ControlNetConfig,
    /// SD VAE.
    pub vae: VaeConfig,
    /// Text encoder.
    pub clip: ClipTextConfig,
    /// Training schedule of the SD checkpoint.
    pub schedule: NoiseScheduleConfig,
    /// The face models of `unaligned_face` (`stage1` is then the background's); files that
    /// leave them out get the official shapes.
    #[serde(default)]
    pub face: FaceModelConfigs,
}

/// Every setting of a restoration, validated in one place.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// The task.
    pub task: Task,
    /// The release whose models and defaults are used.
    pub version: Version,
    /// Network shapes.
    pub models: ModelConfigs,
    /// Output scale relative to the input (`--upscale`).
    pub upscale: f64,
    /// Stage 2.
    pub stage2: Stage2Options,
    /// Tiled stage 1: tile size and stride in pixels (`--cleaner_tiled`).
    pub cleaner_tile: Option<(usize, usize)>,
    /// Colour fix against the stage-1 result.
    pub color_fix: ColorFix,
    /// Float precision of stage 1 and the diffusion networks (the VAE and the text encoder
    /// stay in f32, as in the reference).
    pub precision: Precision,
    /// Samples per image (`--n_samples`).
    pub n_samples: usize,
    /// Samples per diffusion batch (`--batch_size`).
    pub batch_size: usize,
    /// How `unaligned_face` finds and pastes faces.
    pub faces: FaceOptions,
    /// Whether the networks stay in memory or are loaded for each stage.
    pub residency: Residency,
}

impl PipelineConfig {
    /// The reference's defaults for `task` at `version` (`inference.py` for v2.1, the v2 and
    /// v1 command lines for the older releases).
    pub fn new(task: Task, version: Version) -> Self {
        let stage1 = match (task, version) {
            // unaligned_face's background is v2's SR (`unaligned_bfr_loop.py:L30-L35`).
            (Task::Sr | Task::UnalignedFace, Version::V2) => {
                Stage1Config::RrdbNet(RrdbNetConfig::bsrnet())
            }
            (Task::Denoise, Version::V2) => Stage1Config::ScuNet(ScuNetConfig::scunet_psnr()),
            _ => Stage1Config::SwinIr(SwinIrConfig::diffbir()),
        };
        let schedule = match version {
            Version::V21 => NoiseScheduleConfig::sd_v21(),
            _ => NoiseScheduleConfig::sd_v2(),
        };
        let (sampler, steps, cfg_scale, pos, neg) = match version {
            Version::V21 => (
                SamplerKind::EdmDpmPp3mSde,
                10,
                6.0,
                DEFAULT_POS_PROMPT,
                DEFAULT_NEG_PROMPT,
            ),
            Version::V2 => (SamplerKind::Spaced, 50, 4.0, "", V2_NEG_PROMPT),
            Version::V1 => (SamplerKind::Spaced, 50, 1.0, "", ""),
        };
        let sampler = SamplerConfig::new(sampler, steps, &SamplerOptions::new());
        Self {
            task,
            version,
            models: ModelConfigs {
                stage1,
                unet: UnetConfig::sd21(),
                controlnet: ControlNetConfig::sd21(),
                vae: VaeConfig::sd21(),
                clip: ClipTextConfig::vit_h14(),
                schedule,
                face: FaceModelConfigs::default(),
            },
            upscale: if task == Task::Face { 1.0 } else { 4.0 },
            stage2: Stage2Options {
                sampler,
                strength: 1.0,
                cfg_scale,
                rescale_cfg: false,
                start_point: StartPoint::Noise,
                noise_aug: 0,
                pos_prompt: pos.into(),
                neg_prompt: neg.into(),
                vae_encoder_tile: None,
                vae_decoder_tile: None,
                vae_tiling: VaeTiling::Synced,
                cldm_tile: None,
                guidance: None,
            },
            cleaner_tile: None,
            color_fix: ColorFix::Wavelet,
            precision: Precision::F32,
            n_samples: 1,
            batch_size: 1,
            faces: FaceOptions::default(),
            residency: Residency::Resident,
        }
    }

    /// Checks every setting; [`Pipeline::load`] calls it.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, reason: String| {
            Err(Error::Core(diffbir_core::Error::InvalidArgument {
                what: what.into(),
                reason,
            }))
        };
        if !(self.upscale.is_finite() && self.upscale > 0.0) {
            return bad(
                "upscale",
                format!("{} must be a positive number", self.upscale),
            );
        }
        if self.task == Task::UnalignedFace {
            if self.version == Version::V1 {
                return bad(
                    "version",
                    "DiffBIR v1 has no unaligned_face task: use v2 or v2.1".into(),
                );
            }
            self.models.face.validate()?;
            if self.residency == Residency::PerStage {
                return bad(
                    "residency",
                    "unaligned_face keeps its networks resident: per-stage loading is for the \
                     other tasks"
                        .into(),
                );
            }
        }
        if self.n_samples == 0 || self.batch_size == 0 {
            return bad(
                "samples",
                "n_samples and batch_size must be at least 1".into(),
            );
        }
        if let Some((size, stride)) = self.cleaner_tile {
            if size == 0 || stride == 0 {
                return bad(
                    "cleaner tile",
                    format!("size {size} and stride {stride} must be positive"),
                );
            }
            // unaligned_face tiles the faces' stage 1 too.
            let faces = (self.task == Task::UnalignedFace).then_some(&self.models.face.stage1);
            for stage1 in std::iter::once(&self.models.stage1).chain(faces) {
                if let Stage1Config::SwinIr(swinir) = stage1 {
                    let multiple =
                        swinir.window_size * if swinir.unshuffle { swinir.sf } else { 1 };
                    if !size.is_multiple_of(multiple) {
                        return bad(
                            "cleaner tile",
                            format!(
                                "SwinIR tiles must be a multiple of {multiple} pixels, got {size}"
                            ),
                        );
                    }
                }
            }
        }
        self.stage2.validate()?;
        self.models.schedule.validate()?;
        // Step counts the sampler cannot run fail here, before any model is loaded.
        self.stage2.sampler.init(&self.models.schedule.init())?;
        self.models.stage1.validate()?;
        self.models.unet.validate()?;
        self.models.controlnet.validate()?;
        self.models.vae.validate()?;
        Ok(self.models.clip.validate()?)
    }
}

/// Where the checkpoints of a pipeline are.
#[derive(Debug, Clone)]
pub struct WeightFiles {
    /// Stage-1 checkpoint.
    pub stage1: PathBuf,
    /// SD checkpoint (UNet, VAE, text encoder).
    pub sd: PathBuf,
    /// IRControlNet checkpoint.
    pub controlnet: PathBuf,
    /// The text tokenizer's BPE merges (`bpe_simple_vocab_16e6.txt.gz`).
    pub bpe_vocab: PathBuf,
    /// The face models (`unaligned_face` only).
    pub face: Option<FaceWeightFiles>,
}

impl WeightFiles {
    /// The official file names of `config`'s task and version inside `dir` (see
    /// [`release_files`]).
    pub fn in_dir(dir: impl AsRef<Path>, config: &PipelineConfig) -> Self {
        let dir = dir.as_ref();
        let files = release_files(config.task, config.version);
        Self {
            stage1: dir.join(files.stage1.file_name),
            sd: dir.join(files.sd.file_name),
            controlnet: dir.join(files.controlnet.file_name),
            bpe_vocab: dir.join(files.bpe_vocab.file_name),
            face: files.face.map(|face| FaceWeightFiles {
                stage1: dir.join(face.stage1.file_name),
                detector: dir.join(detector_file_name(config.models.face.detector.network_name)),
                parser: dir.join(face.parser.file_name),
            }),
        }
    }
}

/// A loaded restoration pipeline.
///
/// It is `Send + Sync`: threads may restore with one pipeline at once, and
/// [`Self::with_config`] makes copies with other settings that share its networks.
#[derive(Debug, Clone)]
pub struct Pipeline {
    config: PipelineConfig,
    networks: Arc<Networks>,
    device: Device,
    seed: u64,
}

/// The networks of a pipeline, shared by its copies.
#[derive(Debug)]
enum Networks {
    /// Loaded once and kept.
    Resident {
        stage1: Stage1,
        stage2: Stage2,
        faces: Option<FaceModels>,
    },
    /// Loaded for each stage.
    PerStage(PerStage),
}

impl Pipeline {
    /// Validates `config`, then loads every checkpoint strictly (a file for another model is
    /// an error naming the keys that did not match).
    pub fn load(config: PipelineConfig, files: &WeightFiles, device: &Device) -> Result<Self> {
        config.validate()?;
        config.precision.check(device)?;
        if config.task == Task::UnalignedFace && files.face.is_none() {
            return Err(Error::Core(diffbir_core::Error::invalid(
                "weight files",
                "unaligned_face needs the face models' files (WeightFiles::face)",
            )));
        }
        let networks = match config.residency {
            Residency::Resident => Self::load_resident(&config, files, device)?,
            Residency::PerStage => Networks::PerStage(PerStage::new(&config, files, device)?),
        };
        Ok(Self {
            config,
            networks: Arc::new(networks),
            device: device.clone(),
            seed: DEFAULT_SEED,
        })
    }

    fn load_resident(
        config: &PipelineConfig,
        files: &WeightFiles,
        device: &Device,
    ) -> Result<Networks> {
        let models = &config.models;
        let stage1 = load_stage1(models, &files.stage1, config.precision, device)?;
        let sd_config = StableDiffusionConfig {
            unet: models.unet.clone(),
            vae: models.vae.clone(),
            clip: models.clip.clone(),
        };
        let (sd, _) = StableDiffusion::load(&sd_config, &Checkpoint::open(&files.sd)?, device)?;
        let cldm = ControlLdm {
            unet: sd.unet,
            controlnet: load_controlnet(models, &files.controlnet, device)?,
        }
        .with_precision(config.precision);
        let stage2 = Stage2 {
            cldm,
            vae: sd.vae,
            clip: sd.clip,
            tokenizer: ClipTokenizer::from_file(&files.bpe_vocab)?,
            schedule: models.schedule.init(),
        };
        let faces = match &files.face {
            Some(face) if config.task == Task::UnalignedFace => Some(FaceModels::load(
                &models.face,
                face,
                config.precision,
                device,
            )?),
            _ => None,
        };
        Ok(Networks::Resident {
            stage1,
            stage2,
            faces,
        })
    }

    /// A pipeline over networks the caller built or loaded, kept resident (`unaligned_face`
    /// needs its face models: use [`Self::load`]). `config.models` must describe them;
    /// `config` is validated and its residency set to [`Residency::Resident`].
    pub fn from_networks(
        mut config: PipelineConfig,
        stage1: Stage1,
        stage2: Stage2,
        device: &Device,
    ) -> Result<Self> {
        config.residency = Residency::Resident;
        config.validate()?;
        if config.task == Task::UnalignedFace {
            return Err(Error::Core(diffbir_core::Error::invalid(
                "task",
                "an unaligned_face pipeline needs its face models: load it with Pipeline::load",
            )));
        }
        Ok(Self {
            config,
            networks: Arc::new(Networks::Resident {
                stage1,
                stage2,
                faces: None,
            }),
            device: device.clone(),
            seed: DEFAULT_SEED,
        })
    }

    /// A pipeline with other settings over the same loaded networks (nothing is loaded or
    /// copied): upscale, stage 2, tiling, colour fix, samples, faces. What the networks were
    /// loaded with cannot change: `config` must have this pipeline's task, version and
    /// precision, and its `models` and `residency` are replaced by the loaded ones (a
    /// configuration for per-stage loading, whose memory plan counts one stage's weights, is
    /// refused by a resident pipeline).
    pub fn with_config(&self, mut config: PipelineConfig) -> Result<Self> {
        let loaded = &self.config;
        for (what, same) in [
            ("task", config.task == loaded.task),
            ("version", config.version == loaded.version),
            ("precision", config.precision == loaded.precision),
        ] {
            if !same {
                return Err(Error::Core(diffbir_core::Error::invalid(
                    what,
                    format!(
                        "the networks were loaded for {} {} at {}; load another pipeline to change \
                         the {what}",
                        loaded.task, loaded.version, loaded.precision
                    ),
                )));
            }
        }
        if config.residency == Residency::PerStage && loaded.residency == Residency::Resident {
            return Err(Error::Core(diffbir_core::Error::invalid(
                "residency",
                "the settings load the networks per stage and this pipeline holds them all: \
                 load a pipeline per stage (PipelineConfig::residency)",
            )));
        }
        config.models = loaded.models.clone();
        config.residency = loaded.residency;
        config.validate()?;
        Ok(Self {
            config,
            networks: Arc::clone(&self.networks),
            device: self.device.clone(),
            seed: self.seed,
        })
    }

    /// The same pipeline with `seed` for [`Self::restore_image`] and the other image methods.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The seed of [`Self::restore_image`] and the other image methods.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The device the networks are on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The settings this pipeline runs with.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// Stage 2 alone, for callers with their own condition images (`None` when the networks
    /// are loaded per stage).
    pub fn stage2(&self) -> Option<&Stage2> {
        match &*self.networks {
            Networks::Resident { stage2, .. } => Some(stage2),
            Networks::PerStage(_) => None,
        }
    }

    /// The networks of an `unaligned_face` pipeline: the background's stage 1 and the face
    /// models (always resident: [`PipelineConfig::validate`] refuses per-stage loading).
    pub(crate) fn face_networks(&self) -> Option<(&Stage1, &FaceModels)> {
        match &*self.networks {
            Networks::Resident {
                stage1,
                faces: Some(faces),
                ..
            } => Some((stage1, faces)),
            _ => None,
        }
    }

    /// Stage 1 (`model`, at `upscale`) with the reference's input and resize rules; returns
    /// the condition image and the output size `(height, width)`.
    fn stage1(
        &self,
        model: &Stage1,
        upscale: f64,
        image: &DynamicImage,
    ) -> Result<(Tensor<4>, (usize, usize))> {
        const SHORT_EDGE: usize = 512;
        let device = &self.device;
        let bsrnet = matches!(model, Stage1::RrdbNet(_));
        let (lq, output) = if bsrnet {
            let rgb = image.to_rgb8();
            let (w, h) = upscaled_size(rgb.width(), rgb.height(), upscale)?;
            (rgb, (h as usize, w as usize))
        } else {
            let rgb = pil_upscale(image, upscale)?;
            let size = (rgb.height() as usize, rgb.width() as usize);
            (rgb, size)
        };
        let (lq, _) = image_to_tensor(&DynamicImage::ImageRgb8(lq), device);
        let short = |t: &Tensor<4>| {
            let [_, _, h, w] = t.dims();
            h.min(w)
        };
        let run = |x: Tensor<4>| match self.config.cleaner_tile {
            Some((size, stride)) => model.restore_tiled(x, size, stride),
            None => Ok(model.restore(x)),
        };
        let cond = match model {
            // SwinIRPipeline resizes before the untiled network, after the tiled one.
            Stage1::SwinIr(_) if self.config.cleaner_tile.is_none() => {
                let lq = if short(&lq) < SHORT_EDGE {
                    resize::resize_short_edge_to(lq, SHORT_EDGE)?
                } else {
                    lq
                };
                run(lq)?
            }
            Stage1::RrdbNet(_) => {
                let y = run(lq)?;
                if output.0.min(output.1) < SHORT_EDGE {
                    resize::resize_short_edge_to(y, SHORT_EDGE)?
                } else {
                    resize::resize_bicubic_antialias(y, output.0, output.1)?
                }
            }
            _ => {
                let y = run(lq)?;
                if short(&y) < SHORT_EDGE {
                    resize::resize_short_edge_to(y, SHORT_EDGE)?
                } else {
                    y
                }
            }
        };
        Ok((cond, output))
    }

    /// Restores one image: `n_samples` results (they differ only by their noise), each
    /// `[1, 3, H·upscale, W·upscale]` in `[0, 1]` (unclamped until quantised). With a seeded
    /// `noise`, sample `i` depends only on the seed and `i`: not on the batch size, nor on
    /// what the source was used for before.
    ///
    /// `observer` sees stage 1, every sampler step and the decoded samples; when it breaks,
    /// the restoration stops within the current step and returns [`Error::Cancelled`].
    ///
    /// `unaligned_face` pipelines restore with [`Self::restore_faces`] (or
    /// [`Self::restore_image`]): their results are pasted 8-bit images.
    pub fn restore(
        &self,
        image: &DynamicImage,
        noise: &mut NoiseSource,
        observer: &mut impl Observer,
    ) -> Result<Vec<Tensor<4>>> {
        if self.config.task == Task::UnalignedFace {
            return Err(Error::Core(diffbir_core::Error::invalid(
                "task",
                "an unaligned_face pipeline restores with restore_faces or restore_image",
            )));
        }
        match &*self.networks {
            Networks::Resident { stage1, .. } => {
                self.restore_with(stage1, self.config.upscale, image, noise, observer)
            }
            Networks::PerStage(networks) => {
                // Stage 1's network is dropped before stage 2 loads its own.
                let (cond, size) = self.stage1(&networks.stage1()?, self.config.upscale, image)?;
                self.finish(cond, size, networks, noise, observer)
            }
        }
    }

    /// [`Self::restore`] with another stage-1 network and upscale (the faces of
    /// `unaligned_face`).
    pub(crate) fn restore_with(
        &self,
        model: &Stage1,
        upscale: f64,
        image: &DynamicImage,
        noise: &mut NoiseSource,
        observer: &mut impl Observer,
    ) -> Result<Vec<Tensor<4>>> {
        let (cond, size) = self.stage1(model, upscale, image)?;
        match &*self.networks {
            Networks::Resident { stage2, .. } => self.finish(cond, size, stage2, noise, observer),
            Networks::PerStage(networks) => self.finish(cond, size, networks, noise, observer),
        }
    }

    /// Stage 2, the colour fix and the final resize of `n_samples` samples from the stage-1
    /// result `cond`, to an output of `(out_h, out_w)`.
    fn finish(
        &self,
        cond: Tensor<4>,
        (out_h, out_w): (usize, usize),
        networks: &impl Stage2Networks,
        noise: &mut NoiseSource,
        observer: &mut impl Observer,
    ) -> Result<Vec<Tensor<4>>> {
        proceed(observer.on_event(&Event::Stage1 { condition: &cond }))?;
        let total = self.config.n_samples;
        let mut results = Vec::with_capacity(total);
        while results.len() < total {
            let batch = (total - results.len()).min(self.config.batch_size);
            noise.begin_batch(results.len());
            let cond_batch = Tensor::cat(vec![cond.clone(); batch], 0);
            let mut steps = Steps {
                observer: &mut *observer,
                first_sample: results.len(),
                cancelled: false,
            };
            let sample = crate::stage2::apply(
                networks,
                cond_batch.clone(),
                &self.config.stage2,
                noise,
                &mut steps,
            )?;
            if steps.cancelled {
                return Err(Error::Cancelled);
            }
            let fixed =
                resize::postprocess(sample, cond_batch, self.config.color_fix, out_h, out_w)?;
            let [_, c, h, w] = fixed.dims();
            results.extend((0..batch).map(|i| fixed.clone().slice([i..i + 1, 0..c, 0..h, 0..w])));
            let done = results.len();
            proceed(observer.on_event(&Event::Samples { done, total }))?;
        }
        Ok(results)
    }
}

/// The sampler's observer for one batch: forwards its steps, and remembers a cancellation
/// (the sampler stops early on a break; [`Pipeline::restore`] then returns an error).
struct Steps<'a, O> {
    observer: &'a mut O,
    first_sample: usize,
    cancelled: bool,
}

impl<O: Observer> SampleObserver for Steps<'_, O> {
    fn on_step(&mut self, step: &StepInfo<'_>) -> ControlFlow<()> {
        let flow = self.observer.on_event(&Event::Step {
            first_sample: self.first_sample,
            step,
        });
        self.cancelled |= flow.is_break();
        flow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stage_1_network_is_the_one_of_the_registrys_file() {
        for task in Task::ALL {
            for version in Version::ALL {
                let file = release_files(task, version).stage1.file_name;
                let expected = match file {
                    "BSRNet.pth" => "RRDBNet",
                    f if f.starts_with("scunet") => "SCUNet",
                    _ => "SwinIR",
                };
                let models = PipelineConfig::new(task, version).models;
                let kind = |config: &Stage1Config| match config {
                    Stage1Config::RrdbNet(_) => "RRDBNet",
                    Stage1Config::ScuNet(_) => "SCUNet",
                    Stage1Config::SwinIr(_) => "SwinIR",
                };
                assert_eq!(kind(&models.stage1), expected, "{task} {version}: {file}");
                // The faces' stage 1 (unaligned_face) is the SwinIR of the face task.
                if let Some(face) = release_files(task, version).face {
                    assert_eq!(face.stage1.file_name, "face_swinir_v1.ckpt");
                    assert_eq!(kind(&models.face.stage1), "SwinIR", "{task} {version}");
                }
            }
        }
    }

    #[test]
    fn the_registry_names_the_tokenizer_file_as_the_text_encoder_does() {
        for task in Task::ALL {
            for version in Version::ALL {
                let files = release_files(task, version);
                assert_eq!(
                    files.bpe_vocab.file_name,
                    diffbir_ldm::clip::BPE_VOCAB_FILE,
                    "{task} {version}"
                );
            }
        }
    }
}
