//! Stable Diffusion 2.x checkpoints as a whole: the UNet, the VAE and the text encoder read
//! from one `.ckpt` (`v2-1_512-ema-pruned.ckpt`, DiffBIR's zero-SNR fine-tune
//! `sd2.1-base-zsnr-laionaes5.ckpt`), the way `ControlLDM.load_pretrained_sd` reads them.

use burn::module::Module;
use burn::tensor::Device;
use diffbir_core::{Checkpoint, LoadReport, Result, apply_checkpoint};
use regex::Regex;

use crate::clip::{CLIP_SD21_KEYS, ClipTextConfig, ClipTextEncoder};
use crate::unet::{SD_UNET_KEYS, Unet, UnetConfig};
use crate::vae::{AutoencoderKl, SD_VAE_KEYS, VaeConfig};

/// Keys of an SD 2.x checkpoint that belong to no DiffBIR module: the DDPM schedule buffers
/// of the training wrapper and the EMA bookkeeping. DiffBIR computes its schedules itself.
pub const SD_CHECKPOINT_DROPPABLE: &[&str] = &[
    r"^betas$",
    r"^alphas_cumprod$",
    r"^alphas_cumprod_prev$",
    r"^sqrt_alphas_cumprod$",
    r"^sqrt_one_minus_alphas_cumprod$",
    r"^log_one_minus_alphas_cumprod$",
    r"^sqrt_recip_alphas_cumprod$",
    r"^sqrt_recipm1_alphas_cumprod$",
    r"^posterior_variance$",
    r"^posterior_log_variance_clipped$",
    r"^posterior_mean_coef1$",
    r"^posterior_mean_coef2$",
    r"^logvar$",
    r"^model_ema\.decay$",
    r"^model_ema\.num_updates$",
];

/// The frozen SD 2.x parts DiffBIR runs.
#[derive(Module, Debug)]
pub struct StableDiffusion {
    /// The denoising UNet (`model.diffusion_model.*`).
    pub unet: Unet,
    /// The autoencoder (`first_stage_model.*`).
    pub vae: AutoencoderKl,
    /// The text encoder (`cond_stage_model.model.*`).
    pub clip: ClipTextEncoder,
}

/// Shapes of the three parts.
#[derive(Debug, Clone)]
pub struct StableDiffusionConfig {
    /// UNet.
    pub unet: UnetConfig,
    /// VAE.
    pub vae: VaeConfig,
    /// Text encoder.
    pub clip: ClipTextConfig,
}

impl StableDiffusionConfig {
    /// SD 2.1 as DiffBIR configures it (`cldm.yaml`); the zero-SNR fine-tune has the same
    /// shapes.
    pub fn sd21() -> Self {
        Self {
            unet: UnetConfig::sd21(),
            vae: VaeConfig::sd21(),
            clip: ClipTextConfig::vit_h14(),
        }
    }

    /// Builds the parts with random weights (after validating the configs).
    pub fn init(&self, device: &Device) -> Result<StableDiffusion> {
        self.unet.validate()?;
        self.vae.validate()?;
        self.clip.validate()?;
        Ok(StableDiffusion {
            unet: self.unet.init(device),
            vae: self.vae.init(device),
            clip: self.clip.init(device),
        })
    }
}

impl StableDiffusion {
    /// Applies an SD checkpoint to the three parts and reports it as one model: module paths
    /// are prefixed with the part (`unet.`, `vae.`, `clip.`); keys outside the three parts
    /// are dropped when listed in [`SD_CHECKPOINT_DROPPABLE`] and unused otherwise.
    pub fn apply(&mut self, checkpoint: &Checkpoint) -> Result<LoadReport> {
        let parts = [
            (
                "unet",
                apply_checkpoint(&mut self.unet, checkpoint, &SD_UNET_KEYS)?,
            ),
            (
                "vae",
                apply_checkpoint(&mut self.vae, checkpoint, &SD_VAE_KEYS)?,
            ),
            (
                "clip",
                apply_checkpoint(&mut self.clip, checkpoint, &CLIP_SD21_KEYS)?,
            ),
        ];
        let mut report = LoadReport {
            model: "sd21".into(),
            ..LoadReport::default()
        };
        for (part, r) in parts {
            let prefixed = |keys: Vec<String>| keys.into_iter().map(move |k| format!("{part}.{k}"));
            report.applied.extend(prefixed(r.applied));
            report.missing.extend(prefixed(r.missing));
            report.unused.extend(prefixed(r.unused));
            report.mismatched.extend(r.mismatched);
            report.dropped.extend(r.dropped);
        }
        let droppable: Vec<Regex> = SD_CHECKPOINT_DROPPABLE
            .iter()
            .map(|p| Regex::new(p).expect("valid pattern"))
            .collect();
        let prefixes = [
            SD_UNET_KEYS.prefix,
            SD_VAE_KEYS.prefix,
            CLIP_SD21_KEYS.prefix,
        ];
        for key in checkpoint
            .keys()
            .filter(|k| !prefixes.iter().any(|p| k.starts_with(p)))
        {
            if droppable.iter().any(|re| re.is_match(key)) {
                report.dropped.push(key.to_string());
            } else {
                report.unused.push(key.to_string());
            }
        }
        Ok(report)
    }

    /// Builds SD from `config` and loads a checkpoint strictly.
    pub fn load(
        config: &StableDiffusionConfig,
        checkpoint: &Checkpoint,
        device: &Device,
    ) -> Result<(Self, LoadReport)> {
        let mut sd = config.init(device)?;
        let report = sd.apply(checkpoint)?.strict(checkpoint)?;
        Ok((sd, report))
    }
}
