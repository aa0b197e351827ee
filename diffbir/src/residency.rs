//! Whether a pipeline's networks stay in memory for the whole restoration or are loaded for
//! the stage that runs them ([`Residency`]), and the loaders both ways share.
//!
//! Loaded per stage, a restoration holds one stage's weights at a time (the largest are the
//! UNet and the IRControlNet of the diffusion) instead of all of them: with the official f32
//! networks, 4.6 GiB instead of 6.3 GiB. The price is reading the checkpoints again for every
//! image (and every diffusion batch of it).

use std::path::Path;

use burn::tensor::{Device, Tensor};
use diffbir_controlnet::{CONTROLNET_KEYS, ControlLdm, ControlNet};
use diffbir_core::{Checkpoint, Precision, Result, load_into};
use diffbir_ldm::clip::{CLIP_SD21_KEYS, ClipTextEncoder, ClipTokenizer};
use diffbir_ldm::unet::SD_UNET_KEYS;
use diffbir_ldm::vae::{AutoencoderKl, SD_VAE_KEYS};
use diffbir_rm::Stage1;
use diffbir_sampler::NoiseSchedule;

use crate::pipeline::{ModelConfigs, PipelineConfig, WeightFiles};
use crate::stage2::{Stage2Networks, encode_text};

diffbir_core::named_enum! {
    /// Whether a pipeline's networks stay in memory between the stages of a restoration
    /// (`--residency`).
    #[derive(Default)]
    pub enum Residency ("residency") {
        /// Every network is loaded once, with the pipeline, and stays in memory: the fastest
        /// for more than one image.
        #[default]
        Resident = "resident",
        /// Each network is loaded from its checkpoint when its stage runs and dropped after
        /// it: the peak holds one stage's weights, and the checkpoints are read again for
        /// every image.
        PerStage = "per-stage",
    }
}

/// The stage-1 network of `models`, loaded strictly from `path`.
pub(crate) fn load_stage1(
    models: &ModelConfigs,
    path: &Path,
    precision: Precision,
    device: &Device,
) -> Result<Stage1> {
    let checkpoint = Checkpoint::open(path)?;
    let (stage1, _) =
        models
            .stage1
            .load(&checkpoint, models.stage1.key_map(), precision, device)?;
    Ok(stage1)
}

/// The IRControlNet of `models`, loaded strictly from `path` (in f32).
pub(crate) fn load_controlnet(
    models: &ModelConfigs,
    path: &Path,
    device: &Device,
) -> Result<ControlNet> {
    let mut controlnet = models.controlnet.init(device)?;
    load_into(&mut controlnet, &Checkpoint::open(path)?, &CONTROLNET_KEYS)?;
    Ok(controlnet)
}

/// The networks of a pipeline loaded per stage: where and how to load each one.
#[derive(Debug)]
pub(crate) struct PerStage {
    files: WeightFiles,
    models: ModelConfigs,
    precision: Precision,
    device: Device,
    tokenizer: ClipTokenizer,
    schedule: NoiseSchedule,
}

impl PerStage {
    /// Checks every file by loading each network once, one after the other (the check's peak
    /// is one network's; nothing runs), and keeps what loading them again needs.
    pub(crate) fn new(
        config: &PipelineConfig,
        files: &WeightFiles,
        device: &Device,
    ) -> Result<Self> {
        let networks = Self {
            files: files.clone(),
            models: config.models.clone(),
            precision: config.precision,
            device: device.clone(),
            tokenizer: ClipTokenizer::from_file(&files.bpe_vocab)?,
            schedule: config.models.schedule.init(),
        };
        drop(networks.stage1()?);
        let sd = networks.sd()?;
        drop(networks.clip(&sd)?);
        drop(networks.vae(&sd)?);
        drop(networks.cldm(&sd)?);
        Ok(networks)
    }

    /// The stage-1 network.
    pub(crate) fn stage1(&self) -> Result<Stage1> {
        load_stage1(
            &self.models,
            &self.files.stage1,
            self.precision,
            &self.device,
        )
    }

    /// The SD checkpoint (its tensors are read when a part is loaded from it).
    fn sd(&self) -> Result<Checkpoint> {
        Checkpoint::open(&self.files.sd)
    }

    fn clip(&self, sd: &Checkpoint) -> Result<ClipTextEncoder> {
        let mut clip = self.models.clip.init(&self.device);
        load_into(&mut clip, sd, &CLIP_SD21_KEYS)?;
        Ok(clip)
    }

    fn vae(&self, sd: &Checkpoint) -> Result<AutoencoderKl> {
        let mut vae = self.models.vae.init(&self.device);
        load_into(&mut vae, sd, &SD_VAE_KEYS)?;
        Ok(vae)
    }

    /// UNet + IRControlNet at the pipeline's precision.
    fn cldm(&self, sd: &Checkpoint) -> Result<ControlLdm> {
        let mut unet = self.models.unet.init(&self.device);
        load_into(&mut unet, sd, &SD_UNET_KEYS)?;
        let controlnet = load_controlnet(&self.models, &self.files.controlnet, &self.device)?;
        Ok(ControlLdm { unet, controlnet }.with_precision(self.precision))
    }
}

impl Stage2Networks for PerStage {
    fn schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }

    fn texts(&self, prompts: [&str; 2], batch: usize) -> Result<[Tensor<3>; 2]> {
        let clip = self.clip(&self.sd()?)?;
        Ok(prompts.map(|prompt| encode_text(&clip, &self.tokenizer, prompt, batch)))
    }

    fn with_vae<R>(&self, f: impl FnOnce(&AutoencoderKl) -> Result<R>) -> Result<R> {
        f(&self.vae(&self.sd()?)?)
    }

    fn with_cldm<R>(
        &self,
        vae: bool,
        f: impl FnOnce(&ControlLdm, Option<&AutoencoderKl>) -> Result<R>,
    ) -> Result<R> {
        let sd = self.sd()?;
        let cldm = self.cldm(&sd)?;
        let vae = vae.then(|| self.vae(&sd)).transpose()?;
        drop(sd);
        f(&cldm, vae.as_ref())
    }
}
