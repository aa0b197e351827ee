//! Training configurations as TOML files, mirroring DiffBIR's
//! `XPixelGroup/DiffBIR@3f8b530:configs/train/train_stage1.yaml:L1-L69` and
//! `train_stage2.yaml:L1-L137`: a `[model]` part, a `[dataset]` part with the
//! `CodeformerDataset` parameters, and a `[train]` part with the schedule.
//!
//! Relative paths in a config (file lists, folders, checkpoints) are resolved against the
//! config file's folder, then against each folder above it, and the first candidate that
//! exists wins; so `../shared/images` in `diffbir-train/configs/tiny-stage1.toml` finds the
//! workspace's sibling `shared/images` folder wherever the command is started from.

use std::path::{Path, PathBuf};

use diffbir_metrics::LpipsNet;
use std::sync::Arc;

use diffbir_controlnet::ControlNetConfig;
use diffbir_ldm::clip::ClipTextConfig;
use diffbir_ldm::{UnetConfig, VaeConfig};
use diffbir_rm::Stage1Config;
use diffbir_sampler::{NoiseScheduleConfig, SamplerConfig, SamplerKind, SamplerOptions};
use serde::{Deserialize, Serialize};

pub use crate::checks::resolve;
use crate::data::{CodeformerConfig, CodeformerDataset, TrainingSet};
use crate::error::{Error, Result};
use crate::realesrgan::{
    RealEsrganConfig, RealEsrganDataset, RealEsrganTransform, RealEsrganTransformConfig,
};

/// A stage-1 training run (`train_stage1.yaml`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage1TrainConfig {
    /// The restorer to train (`kind = "swinir" | "rrdbnet" | "scunet"` and its `config`).
    pub model: Stage1Config,
    /// Training (and optional validation) data.
    pub dataset: DatasetSection,
    /// The Real-ESRGAN degradation (`RealESRGANBatchTransform`), with
    /// `[dataset.realesrgan]` only.
    #[serde(default)]
    pub batch_transform: Option<RealEsrganTransformConfig>,
    /// Optimiser and schedule.
    pub train: Stage1Schedule,
}

/// The `[dataset]` part: `train` and an optional held-out `val` set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSection {
    /// `CodeformerDataset`
    /// (`XPixelGroup/DiffBIR@3f8b530:diffbir/dataset/codeformer.py:L21-L133`): pairs degraded on
    /// the loader's threads.
    #[serde(default)]
    pub train: Option<CodeformerConfig>,
    /// `RealESRGANDataset`
    /// (`XPixelGroup/DiffBIR@3f8b530:diffbir/dataset/realesrgan.py:L17-L226`), degraded by the
    /// top-level `[batch_transform]`; replaces `train`.
    #[serde(default)]
    pub realesrgan: Option<RealEsrganConfig>,
    /// Held-out images (stage 1's validation), CodeFormer-degraded.
    #[serde(default)]
    pub val: Option<CodeformerConfig>,
}

impl DatasetSection {
    fn resolve_paths(&mut self, base: &Path) {
        if let Some(train) = &mut self.train {
            train.resolve_paths(base);
        }
        if let Some(r) = &mut self.realesrgan {
            r.resolve_paths(base);
        }
        if let Some(val) = &mut self.val {
            val.resolve_paths(base);
        }
    }

    /// Checks the sets and their pairing with `batch_transform` (present exactly when the
    /// Real-ESRGAN set is used) for a global batch split over `devices`.
    fn validate(
        &self,
        transform: Option<&RealEsrganTransformConfig>,
        batch_size: usize,
        devices: usize,
    ) -> Result<()> {
        match (&self.train, &self.realesrgan, transform) {
            (Some(train), None, None) => train.validate("dataset.train")?,
            (None, Some(r), Some(tr)) => {
                r.validate("dataset.realesrgan")?;
                tr.validate("batch_transform", batch_size / devices.max(1), r.out_size)?;
            }
            (None, Some(_), None) => {
                return Err(Error::field(
                    "batch_transform",
                    "the Real-ESRGAN dataset needs a [batch_transform] section (its \
                     degradation)",
                ));
            }
            (Some(_), None, Some(_)) => {
                return Err(Error::field(
                    "batch_transform",
                    "the Real-ESRGAN batch transform needs [dataset.realesrgan] instead of \
                     [dataset.train]",
                ));
            }
            _ => {
                return Err(Error::field(
                    "dataset",
                    "give exactly one of [dataset.train] (CodeFormer degradation) and \
                     [dataset.realesrgan]",
                ));
            }
        }
        if let Some(val) = &self.val {
            val.validate("dataset.val")?;
        }
        Ok(())
    }

    /// Side of the training images.
    pub fn out_size(&self) -> usize {
        match (&self.train, &self.realesrgan) {
            (Some(t), _) => t.out_size,
            (None, Some(r)) => r.out_size,
            (None, None) => 0,
        }
    }

    /// The training set (`p_empty_prompt` applies to the CodeFormer set; the Real-ESRGAN set
    /// has its own) and, for the Real-ESRGAN set, its batch transform with one pool per
    /// shard on `device`.
    pub fn open(
        &self,
        transform: Option<&RealEsrganTransformConfig>,
        p_empty_prompt: f64,
        shards: usize,
        device: &burn::tensor::Device,
    ) -> Result<(Arc<dyn TrainingSet>, Option<RealEsrganTransform>)> {
        match (&self.train, &self.realesrgan, transform) {
            (Some(train), None, None) => Ok((
                Arc::new(CodeformerDataset::new(train, p_empty_prompt)?),
                None,
            )),
            (None, Some(r), Some(tr)) => Ok((
                Arc::new(RealEsrganDataset::new(r)?),
                Some(RealEsrganTransform::new(tr, shards, device)?),
            )),
            _ => Err(Error::field(
                "dataset",
                "give exactly one of [dataset.train] and [dataset.realesrgan] (with \
                 [batch_transform])",
            )),
        }
    }
}

/// `[train.val_lpips]`: the LPIPS network of stage-1 validation, from its official files.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValLpips {
    /// The trunk: `alex` (the reference's) or `vgg`.
    #[serde(default = "default_lpips_net")]
    pub net: LpipsNet,
    /// torchvision's trunk (`alexnet-owt-7be5be79.pth`, `vgg16-397923af.pth`).
    pub trunk: PathBuf,
    /// The `lpips` heads (`LPIPS_v0.1_alex-df73285e.pth`, `LPIPS_v0.1_vgg-a78928a0.pth`).
    pub heads: PathBuf,
}

fn default_lpips_net() -> LpipsNet {
    LpipsNet::Alex
}

/// The `[train]` part of a stage-1 config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage1Schedule {
    /// AdamW learning rate (reference: 1e-4).
    pub learning_rate: f64,
    /// AdamW weight decay (reference: 0 for stage 1).
    #[serde(default)]
    pub weight_decay: f64,
    /// Global batch size (reference: 96).
    pub batch_size: usize,
    /// Threads preparing samples beside the training step.
    #[serde(default = "default_workers")]
    pub num_workers: usize,
    /// Total optimisation steps (reference: 150 000); `--steps` overrides it.
    pub train_steps: u64,
    /// Steps between log lines (reference: 50).
    pub log_every: u64,
    /// Steps between checkpoints (reference: 10 000).
    pub ckpt_every: u64,
    /// Steps between image grids (reference: 1000; 0 turns them off).
    #[serde(default)]
    pub image_every: u64,
    /// Steps between validations (reference: 1000; 0 turns them off).
    #[serde(default)]
    pub val_every: u64,
    /// LPIPS in validation (`val/lpips`, which the reference logs with AlexNet); none when
    /// absent, and not loaded when validation is off.
    #[serde(default)]
    pub val_lpips: Option<ValLpips>,
    /// Initial weights (the reference's `train.resume`: a stage-1 state dict, loaded strictly).
    #[serde(default)]
    pub resume: Option<PathBuf>,
    /// Seed of every random draw (reference: 231).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Device name (`cpu`, `wgpu`, `cuda:0`, …), or a comma-separated list of them
    /// (`cuda:0,cuda:1`) for data parallelism: the global batch is split evenly over the
    /// devices, the first being the main one (see [`crate::parallel`]).
    #[serde(default = "default_device")]
    pub device: String,
}

/// A stage-2 training run (`train_stage2.yaml`, `train_stage2_v2.1.yaml`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage2TrainConfig {
    /// Network shapes.
    pub model: Stage2Models,
    /// Training data.
    pub dataset: DatasetSection,
    /// The Real-ESRGAN degradation (`RealESRGANBatchTransform`), with
    /// `[dataset.realesrgan]` only.
    #[serde(default)]
    pub batch_transform: Option<RealEsrganTransformConfig>,
    /// Optimiser, schedule and the frozen parts' files.
    pub train: Stage2Schedule,
}

/// The `[model]` part of a stage-2 config (`model.cldm`, `model.swinir`, `model.diffusion`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage2Models {
    /// The frozen SD UNet.
    pub unet: UnetConfig,
    /// The trained IRControlNet (`hint_channels = 4`).
    pub controlnet: ControlNetConfig,
    /// The frozen VAE.
    pub vae: VaeConfig,
    /// The frozen text encoder.
    pub clip: ClipTextConfig,
    /// The frozen stage-1 restorer.
    pub stage1: Stage1Config,
    /// The training noise schedule (`eps` or `v`).
    pub diffusion: NoiseScheduleConfig,
    /// The latent scale factor (0.18215).
    #[serde(default = "default_latent_scale")]
    pub latent_scale_factor: f64,
}

/// The `[train]` part of a stage-2 config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage2Schedule {
    /// The SD checkpoint (UNet, VAE, text encoder), loaded strictly and frozen.
    pub sd_path: PathBuf,
    /// The stage-1 checkpoint, loaded strictly and frozen.
    pub swinir_path: PathBuf,
    /// The text tokenizer's BPE merges (`bpe_simple_vocab_16e6.txt.gz`).
    pub bpe_path: PathBuf,
    /// AdamW learning rate (v2: 1e-4, v2.1: 1e-5).
    pub learning_rate: f64,
    /// AdamW weight decay (PyTorch's default, 0.01, as the reference uses).
    #[serde(default = "default_stage2_decay")]
    pub weight_decay: f64,
    /// Global batch size (v2: 256, v2.1: 512).
    pub batch_size: usize,
    /// Threads preparing samples beside the training step.
    #[serde(default = "default_workers")]
    pub num_workers: usize,
    /// Total optimisation steps; `--steps` overrides it.
    pub train_steps: u64,
    /// Steps between log lines.
    pub log_every: u64,
    /// Steps between checkpoints.
    pub ckpt_every: u64,
    /// Steps between sample images (0 turns them off).
    #[serde(default)]
    pub image_every: u64,
    /// Sampling steps of the sample images (the reference: 50, spaced sampler; at least 2).
    #[serde(default = "default_sample_steps")]
    pub sample_steps: usize,
    /// Initial ControlNet weights (strict); without it the ControlNet starts from the UNet.
    #[serde(default)]
    pub resume: Option<PathBuf>,
    /// The condition latent is noised to a timestep below this (v2.1: 200; 0 turns it off).
    #[serde(default)]
    pub noise_aug_timestep: usize,
    /// Probability that a prompt is replaced by the empty prompt (`CodeformerDataset`: 0.5).
    #[serde(default = "default_p_empty")]
    pub p_empty_prompt: f64,
    /// Seed of every random draw (reference: 231).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Device name (`cpu`, `wgpu`, `cuda:0`, …), or a comma-separated list of them
    /// (`cuda:0,cuda:1`) for data parallelism: the global batch is split evenly over the
    /// devices, the first being the main one (see [`crate::parallel`]).
    #[serde(default = "default_device")]
    pub device: String,
}

fn default_workers() -> usize {
    2
}
fn default_seed() -> u64 {
    231
}
fn default_device() -> String {
    "cpu".into()
}
fn default_latent_scale() -> f64 {
    0.18215
}
fn default_stage2_decay() -> f64 {
    0.01
}
fn default_sample_steps() -> usize {
    50
}
fn default_p_empty() -> f64 {
    0.5
}

/// Reads a TOML config, resolving its relative paths (see the module docs) and validating it.
pub fn load_config<C: TrainConfig>(path: &Path) -> Result<C> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut config: C = toml::from_str(&text).map_err(|e| Error::Config {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    config.resolve_paths(base);
    config.validate()?;
    Ok(config)
}

fn json(value: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

/// Behaviour shared by both stages' configs.
pub trait TrainConfig: serde::de::DeserializeOwned + Serialize {
    /// Resolves relative paths against `base` and the folders above it.
    fn resolve_paths(&mut self, base: &Path);
    /// Checks every value; the error names the field.
    fn validate(&self) -> Result<()>;
    /// The settings a resumed run must share with the run that wrote the state (network,
    /// data, optimiser), by name, as JSON.
    fn trajectory(&self) -> Vec<(&'static str, serde_json::Value)>;
    /// The config as TOML (stored in every checkpoint).
    fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| Error::Config {
            path: "<memory>".into(),
            reason: e.to_string(),
        })
    }
}

fn resolve_opt(base: &Path, path: &mut Option<PathBuf>) {
    if let Some(p) = path {
        *p = resolve(base, p);
    }
}

fn check_schedule(
    device: &str,
    batch_size: usize,
    train_steps: u64,
    log_every: u64,
    ckpt_every: u64,
    learning_rate: f64,
    weight_decay: f64,
) -> Result<()> {
    if batch_size == 0 {
        return Err(Error::field("train.batch_size", "must be at least 1"));
    }
    crate::parallel::shards(batch_size, crate::parallel::device_names(device)?.len())?;
    if train_steps == 0 {
        return Err(Error::field("train.train_steps", "must be at least 1"));
    }
    if log_every == 0 {
        return Err(Error::field("train.log_every", "must be at least 1"));
    }
    if ckpt_every == 0 {
        return Err(Error::field("train.ckpt_every", "must be at least 1"));
    }
    if !(learning_rate.is_finite() && learning_rate > 0.0) {
        return Err(Error::field(
            "train.learning_rate",
            format!("must be a positive number, got {learning_rate}"),
        ));
    }
    if !(weight_decay.is_finite() && weight_decay >= 0.0) {
        return Err(Error::field(
            "train.weight_decay",
            format!("must be zero or positive, got {weight_decay}"),
        ));
    }
    Ok(())
}

/// The trajectory settings both stages have: the network, the data, the seed, the batch and
/// the optimiser's.
fn common_trajectory(
    model: serde_json::Value,
    dataset: &DatasetSection,
    transform: &Option<RealEsrganTransformConfig>,
    (seed, batch_size, learning_rate, weight_decay): (u64, usize, f64, f64),
) -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("model", model),
        (
            "dataset.train / dataset.realesrgan",
            json(&(&dataset.train, &dataset.realesrgan)),
        ),
        ("batch_transform", json(transform)),
        ("train.seed", json(&seed)),
        ("train.batch_size", json(&batch_size)),
        (
            "train.learning_rate / weight_decay",
            json(&(learning_rate, weight_decay)),
        ),
    ]
}

impl TrainConfig for Stage1TrainConfig {
    fn trajectory(&self) -> Vec<(&'static str, serde_json::Value)> {
        let t = &self.train;
        common_trajectory(
            json(&self.model),
            &self.dataset,
            &self.batch_transform,
            (t.seed, t.batch_size, t.learning_rate, t.weight_decay),
        )
    }

    fn resolve_paths(&mut self, base: &Path) {
        self.dataset.resolve_paths(base);
        resolve_opt(base, &mut self.train.resume);
        if let Some(lpips) = &mut self.train.val_lpips {
            lpips.trunk = resolve(base, &lpips.trunk);
            lpips.heads = resolve(base, &lpips.heads);
        }
    }

    fn validate(&self) -> Result<()> {
        self.model.validate()?;
        let t = &self.train;
        check_schedule(
            &t.device,
            t.batch_size,
            t.train_steps,
            t.log_every,
            t.ckpt_every,
            t.learning_rate,
            t.weight_decay,
        )?;
        self.dataset.validate(
            self.batch_transform.as_ref(),
            t.batch_size,
            crate::parallel::device_names(&t.device)?.len(),
        )?;
        if t.val_every > 0 && self.dataset.val.is_none() {
            return Err(Error::field(
                "train.val_every",
                "validation needs a [dataset.val] section (or set val_every = 0)",
            ));
        }
        Ok(())
    }
}

impl TrainConfig for Stage2TrainConfig {
    fn trajectory(&self) -> Vec<(&'static str, serde_json::Value)> {
        let t = &self.train;
        let mut fields = common_trajectory(
            json(&self.model),
            &self.dataset,
            &self.batch_transform,
            (t.seed, t.batch_size, t.learning_rate, t.weight_decay),
        );
        fields.push(("train.noise_aug_timestep", json(&t.noise_aug_timestep)));
        fields.push(("train.p_empty_prompt", json(&t.p_empty_prompt)));
        fields
    }

    fn resolve_paths(&mut self, base: &Path) {
        self.dataset.resolve_paths(base);
        let t = &mut self.train;
        t.sd_path = resolve(base, &t.sd_path);
        t.swinir_path = resolve(base, &t.swinir_path);
        t.bpe_path = resolve(base, &t.bpe_path);
        resolve_opt(base, &mut t.resume);
    }

    fn validate(&self) -> Result<()> {
        let m = &self.model;
        m.unet.validate()?;
        m.controlnet.validate()?;
        m.vae.validate()?;
        m.clip.validate()?;
        m.stage1.validate()?;
        let max_timesteps = NoiseScheduleConfig::MAX_TIMESTEPS;
        if !(2..=max_timesteps).contains(&m.diffusion.timesteps) {
            return Err(Error::field(
                "model.diffusion.timesteps",
                format!("must lie in 2..={max_timesteps}"),
            ));
        }
        for (name, v) in [
            ("linear_start", m.diffusion.linear_start),
            ("linear_end", m.diffusion.linear_end),
        ] {
            if !(v > 0.0 && v < 1.0) {
                return Err(Error::field(
                    format!("model.diffusion.{name}"),
                    format!("must lie in (0, 1), got {v}"),
                ));
            }
        }
        let t = &self.train;
        check_schedule(
            &t.device,
            t.batch_size,
            t.train_steps,
            t.log_every,
            t.ckpt_every,
            t.learning_rate,
            t.weight_decay,
        )?;
        self.dataset.validate(
            self.batch_transform.as_ref(),
            t.batch_size,
            crate::parallel::device_names(&t.device)?.len(),
        )?;
        if self.dataset.val.is_some() {
            return Err(Error::field(
                "dataset.val",
                "stage 2 has no validation set (it logs sample images instead)",
            ));
        }
        if t.noise_aug_timestep > m.diffusion.timesteps {
            return Err(Error::field(
                "train.noise_aug_timestep",
                format!(
                    "must not exceed the {} diffusion timesteps",
                    m.diffusion.timesteps
                ),
            ));
        }
        if !(0.0..=1.0).contains(&t.p_empty_prompt) {
            return Err(Error::field(
                "train.p_empty_prompt",
                "must be a probability in [0, 1]",
            ));
        }
        if t.image_every > 0 {
            // The sampler of the sample images (the reference's spaced sampler).
            SamplerConfig::new(SamplerKind::Spaced, t.sample_steps, &SamplerOptions::new())
                .init(&m.diffusion.init())
                .map_err(|e| Error::field("train.sample_steps", e.to_string()))?;
        }
        for (name, p) in [
            ("sd_path", &t.sd_path),
            ("swinir_path", &t.swinir_path),
            ("bpe_path", &t.bpe_path),
        ] {
            if !p.exists() {
                return Err(Error::field(
                    format!("train.{name}"),
                    format!("{} does not exist", p.display()),
                ));
            }
        }
        Ok(())
    }
}
