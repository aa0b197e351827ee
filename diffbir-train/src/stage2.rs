//! The stage-2 trainer (`XPixelGroup/DiffBIR@3f8b530:train_stage2.py:L20-L241`): the
//! IRControlNet trained on a frozen Stable Diffusion (UNet, VAE, text encoder) and a frozen
//! stage-1 restorer, with the latent diffusion loss for `eps` or `v`, the reference's prompt
//! handling and `noise_aug_timestep`, and `AdamW(controlnet, lr)` with PyTorch's defaults
//! otherwise (weight decay 0.01).
//!
//! Per step, with `s = latent_scale_factor`:
//!
//! ```text
//! z0    = s · VAE.encode(2·gt − 1).sample()
//! clean = stage1(lq);  c_txt = CLIP(prompts);  c_img = s · VAE.encode(2·clean − 1).mode()
//! c_img' = q_sample(c_img, t' ~ U{0..noise_aug_timestep−1}, ε')   (when noise_aug_timestep > 0)
//! t ~ U{0..T−1};  ε ~ N(0, I);  x_t = q_sample(z0, t, ε)
//! loss  = mean((ControlLDM(x_t, t, c_txt, c_img') − target)²),  target = ε or √ᾱ·ε − √(1−ᾱ)·z0
//! ```
//!
//! The frozen networks live outside autodiff; the UNet's activations become tracked where the
//! ControlNet's residuals join them, so gradients reach the ControlNet only.
//!
//! With several devices (`train.device = "cuda:0,cuda:1"`), each holds the frozen parts and a
//! copy of the ControlNet, and computes the loss of its part of the global batch weighted by
//! its share (`b / B`), so that the summed gradients are those of the mean over the whole
//! batch (see [`crate::parallel`]). Each sample's timesteps and noise are the ones it gets in
//! a single-device run, so the update does not depend on the device count.

use std::ops::Range;
use std::sync::Arc;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use diffbir_controlnet::{CONTROLNET_KEYS, ControlCond, ControlDenoiser, ControlLdm, ControlNet};
use diffbir_core::{Checkpoint, NoiseSource, Precision, load_into};
use diffbir_ldm::clip::{ClipTextEncoder, ClipTokenizer};
use diffbir_ldm::sd::{StableDiffusion, StableDiffusionConfig};
use diffbir_ldm::vae::AutoencoderKl;
use diffbir_rm::{Restorer, Stage1};
use diffbir_sampler::{
    NoiseSchedule, Parameterization, SamplerConfig, SamplerKind, SamplerOptions,
};
use rand::Rng;

use crate::config::{Stage2TrainConfig, TrainConfig};
use crate::data::{Batch, TrainingSet, rng_for, stream};
use crate::error::{Error, Result};
use crate::parallel::scalar;
use crate::realesrgan::RealEsrganTransform;
use crate::run::{Event, RunOptions, Summary, Validation, to_tensor};
use crate::state::{Named, official_tensors};
use crate::trainer::{Grid, Schedule, Stage, train};

/// The stage tag stored in stage-2 states.
pub const STAGE2: &str = "stage2";

/// The frozen parts of stage 2.
#[derive(Debug)]
pub struct Frozen {
    /// The SD UNet.
    pub unet: diffbir_ldm::Unet,
    /// The VAE.
    pub vae: AutoencoderKl,
    /// The text encoder.
    pub clip: ClipTextEncoder,
    /// Its tokenizer.
    pub tokenizer: ClipTokenizer,
    /// The stage-1 restorer.
    pub stage1: Stage1,
    /// The training noise schedule.
    pub schedule: NoiseSchedule,
    /// The latent scale factor.
    pub scale: f64,
}

/// The conditions of one batch.
#[derive(Debug, Clone)]
pub struct Condition {
    /// Text context `[B, 77, D]`.
    pub c_txt: Tensor<3>,
    /// Scaled condition latent `[B, 4, h, w]`.
    pub c_img: Tensor<4>,
    /// The stage-1 output `[B, 3, H, W]`.
    pub clean: Tensor<4>,
}

impl Frozen {
    /// Loads the SD checkpoint, the stage-1 checkpoint and the tokenizer of `config`.
    pub fn load(config: &Stage2TrainConfig, device: &Device) -> Result<Self> {
        let m = &config.model;
        let t = &config.train;
        let sd_config = StableDiffusionConfig {
            unet: m.unet.clone(),
            vae: m.vae.clone(),
            clip: m.clip.clone(),
        };
        let (sd, _) = StableDiffusion::load(&sd_config, &Checkpoint::open(&t.sd_path)?, device)?;
        let (stage1, _) = m.stage1.load(
            &Checkpoint::open(&t.swinir_path)?,
            m.stage1.key_map(),
            Precision::F32,
            device,
        )?;
        Ok(Self {
            unet: sd.unet,
            vae: sd.vae,
            clip: sd.clip,
            tokenizer: ClipTokenizer::from_file(&t.bpe_path)?,
            stage1,
            schedule: m.diffusion.init(),
            scale: m.latent_scale_factor,
        })
    }

    /// A copy on `device` (shared tensors when it is the device they are on).
    pub fn to_device(&self, device: &Device) -> Self {
        Self {
            unet: self.unet.clone().to_device(device),
            vae: self.vae.clone().to_device(device),
            clip: self.clip.clone().to_device(device),
            tokenizer: self.tokenizer.clone(),
            stage1: self.stage1.clone().to_device(device),
            schedule: self.schedule.clone(),
            scale: self.scale,
        }
    }

    /// `prepare_condition`: stage 1, then the text and the scaled condition latent.
    ///
    /// # Shapes
    /// - `lq`: `[B, 3, H, W]` in `[0, 1]`
    pub fn condition(&self, lq: Tensor<4>, prompts: &[String]) -> Condition {
        let clean = self.stage1.restore(lq);
        let c_img = self
            .vae
            .encode(clean.clone().mul_scalar(2.0).sub_scalar(1.0))
            .mode()
            .mul_scalar(self.scale);
        Condition {
            c_txt: self.clip.encode(&self.tokenizer, prompts),
            c_img,
            clean,
        }
    }
}

fn timesteps(t: &[usize], device: &Device) -> Tensor<1> {
    let v: Vec<f32> = t.iter().map(|&t| t as f32).collect();
    Tensor::from_data(TensorData::new(v, [t.len()]), device)
}

/// One training step's random draws, from the step's own stream; a replica's share holds
/// its samples' timesteps and draws its samples' noise streams (from `offset` on).
struct StepDraws {
    t: Vec<usize>,
    t_aug: Vec<usize>,
    noise: NoiseSource,
    offset: usize,
}

impl StepDraws {
    /// The draws of the samples `range` of the batch.
    fn shard(self, range: std::ops::Range<usize>) -> Self {
        Self {
            t: self.t[range.clone()].to_vec(),
            t_aug: self.t_aug[range.clone()].to_vec(),
            noise: self.noise,
            offset: self.offset + range.start,
        }
    }

    /// Standard normal noise shaped like `x`, from the streams of this share's samples
    /// (the noise source keeps one stream per batch item).
    fn randn_like(&mut self, x: &Tensor<4>) -> Tensor<4> {
        if self.offset == 0 {
            return self.noise.randn_like(x);
        }
        let [b, c, h, w] = x.dims();
        self.noise
            .randn([self.offset + b, c, h, w], &x.device())
            .narrow(0, self.offset, b)
    }
}

fn draws(seed: u64, step: u64, b: usize, timesteps: usize, aug: usize) -> StepDraws {
    let mut rng = rng_for(seed, stream::STEP, step);
    let t = (0..b).map(|_| rng.random_range(0..timesteps)).collect();
    let t_aug = (0..b)
        .map(|_| if aug > 0 { rng.random_range(0..aug) } else { 0 })
        .collect();
    StepDraws {
        t,
        t_aug,
        noise: NoiseSource::seeded(rng.random::<u64>()),
        offset: 0,
    }
}

/// The latent diffusion loss of one batch (`z0` encoding, condition, noising, prediction).
fn loss(
    frozen_parts: &Frozen,
    cldm: &ControlLdm,
    batch: &Batch,
    draws: &mut StepDraws,
    aug: usize,
    device: &Device,
) -> (Tensor<1>, Condition) {
    let b = batch.len();
    let gt = to_tensor(&batch.gt, b, batch.size, device)
        .mul_scalar(2.0)
        .sub_scalar(1.0);
    let lq = to_tensor(&batch.lq, b, batch.size, device);
    let s = &frozen_parts.schedule;
    let posterior = frozen_parts.vae.encode(gt);
    let e = draws.randn_like(&posterior.mean);
    let z0 = (posterior.mean + posterior.std * e).mul_scalar(frozen_parts.scale);
    let cond = frozen_parts.condition(lq, &batch.prompts);
    let c_img = if aug > 0 {
        let e = draws.randn_like(&cond.c_img);
        s.q_sample(cond.c_img.clone(), &draws.t_aug, e)
    } else {
        cond.c_img.clone()
    };
    let eps = draws.randn_like(&z0);
    let x_t = s.q_sample(z0.clone(), &draws.t, eps.clone());
    let target = match s.parameterization() {
        Parameterization::Eps => eps,
        Parameterization::V => s.get_v(z0, eps, &draws.t),
    };
    let pred = cldm.forward(x_t, timesteps(&draws.t, device), &cond.c_txt, c_img, &[]);
    ((pred - target).powi_scalar(2).mean(), cond)
}

/// The diffusion loss of `batch` with the draws training would make at `step` (no
/// gradient kept): comparable between two ControlNets on the same batch.
pub fn batch_loss(
    frozen_parts: &Frozen,
    cldm: &ControlLdm,
    batch: &Batch,
    seed: u64,
    step: u64,
    noise_aug_timestep: usize,
) -> f64 {
    let device = cldm.unet.devices().into_iter().next().unwrap_or_default();
    let mut d = draws(
        seed,
        step,
        batch.len(),
        frozen_parts.schedule.num_timesteps(),
        noise_aug_timestep,
    );
    let (l, _) = loss(
        frozen_parts,
        cldm,
        batch,
        &mut d,
        noise_aug_timestep,
        &device,
    );
    scalar(l)
}

/// The reference's training samples: the spaced sampler over `steps` steps from pure noise,
/// conditioned on `cond` (no classifier-free guidance), decoded to RGB in `[0, 1]`.
pub fn sample(
    frozen_parts: &Frozen,
    cldm: &ControlLdm,
    cond: &Condition,
    steps: usize,
    noise: &mut NoiseSource,
) -> Result<Tensor<4>> {
    let schedule = &frozen_parts.schedule;
    let sampler =
        SamplerConfig::new(SamplerKind::Spaced, steps, &SamplerOptions::new()).init(schedule)?;
    let model = ControlDenoiser {
        cldm,
        strength: 1.0,
        parameterization: schedule.parameterization(),
    };
    let cond = ControlCond {
        c_txt: cond.c_txt.clone(),
        c_img: cond.c_img.clone(),
    };
    let x_t = noise.randn_like(&cond.c_img);
    let z = sampler.sample(&model, x_t, &cond, noise, &mut ());
    Ok(frozen_parts
        .vae
        .decode(z.div_scalar(frozen_parts.scale))
        .add_scalar(1.0)
        .div_scalar(2.0)
        .clamp(0.0, 1.0))
}

/// The replicas' conditions, joined on `device` in sample order.
fn gather(conds: Vec<Condition>, device: &Device) -> Condition {
    if let [one] = conds.as_slice() {
        return one.clone();
    }
    let cat3 =
        |v: Vec<Tensor<3>>| Tensor::cat(v.into_iter().map(|x| x.to_device(device)).collect(), 0);
    let cat4 =
        |v: Vec<Tensor<4>>| Tensor::cat(v.into_iter().map(|x| x.to_device(device)).collect(), 0);
    Condition {
        c_txt: cat3(conds.iter().map(|c| c.c_txt.clone()).collect()),
        c_img: cat4(conds.iter().map(|c| c.c_img.clone()).collect()),
        clean: cat4(conds.iter().map(|c| c.clean.clone()).collect()),
    }
}

/// Trains stage 2 as configured, writing into `options.out`; `observer` sees every event.
pub fn train_stage2(
    config: &Stage2TrainConfig,
    options: &RunOptions,
    observer: &mut dyn FnMut(&Event),
) -> Result<Summary> {
    config.validate()?;
    train(&Stage2Run { config }, options, observer)
}

/// Stage 2 in the shared loop: the IRControlNet trained, the rest frozen on every device.
struct Stage2Run<'a> {
    config: &'a Stage2TrainConfig,
}

impl Stage for Stage2Run<'_> {
    const TAG: &'static str = STAGE2;
    const LOSS_KEY: &'static str = "loss/loss_simple_step";
    type Config = Stage2TrainConfig;
    type Net = ControlNet;
    type Ctx = Frozen;
    type Side = Condition;

    fn config(&self) -> &Stage2TrainConfig {
        self.config
    }

    fn schedule(&self) -> Schedule<'_> {
        let t = &self.config.train;
        Schedule {
            learning_rate: t.learning_rate,
            weight_decay: t.weight_decay,
            batch_size: t.batch_size,
            num_workers: t.num_workers,
            train_steps: t.train_steps,
            log_every: t.log_every,
            ckpt_every: t.ckpt_every,
            image_every: t.image_every,
            val_every: 0,
            seed: t.seed,
            device: &t.device,
        }
    }

    fn data(
        &self,
        shards: usize,
        device: &Device,
    ) -> Result<(Arc<dyn TrainingSet>, Option<RealEsrganTransform>)> {
        let dataset = &self.config.dataset;
        if !dataset.out_size().is_multiple_of(8) {
            return Err(Error::field(
                "dataset.out_size",
                "stage 2 needs a multiple of 8 (the VAE's downsampling)",
            ));
        }
        dataset.open(
            self.config.batch_transform.as_ref(),
            self.config.train.p_empty_prompt,
            shards,
            device,
        )
    }

    fn context(&self, device: &Device) -> Result<Frozen> {
        Frozen::load(self.config, device)
    }

    fn context_on(ctx: &Frozen, device: &Device) -> Frozen {
        ctx.to_device(device)
    }

    fn build(&self, device: &Device) -> Result<ControlNet> {
        Ok(self.config.model.controlnet.init(device)?)
    }

    fn initialise(&self, net: &mut ControlNet, ctx: &Frozen) -> Result<()> {
        match &self.config.train.resume {
            Some(p) => {
                load_into(net, &Checkpoint::open(p)?, &CONTROLNET_KEYS)?;
            }
            None => {
                net.init_from_unet(&ctx.unet)?;
            }
        }
        Ok(())
    }

    fn loss(
        &self,
        ctx: &Frozen,
        net: &ControlNet,
        batch: &Batch,
        range: Range<usize>,
        step: u64,
        keep: bool,
        device: &Device,
    ) -> (Tensor<1>, Option<Condition>) {
        let t = &self.config.train;
        let global = batch.len();
        let part = batch.shard(range.clone());
        let b = part.len();
        let cldm = ControlLdm {
            unet: ctx.unet.clone(),
            controlnet: net.clone(),
        };
        let timesteps = ctx.schedule.num_timesteps();
        let mut d = draws(t.seed, step, global, timesteps, t.noise_aug_timestep).shard(range);
        let (l, cond) = loss(ctx, &cldm, &part, &mut d, t.noise_aug_timestep, device);
        let l = if b == global {
            l
        } else {
            l.mul_scalar(b as f64 / global as f64)
        };
        (l, keep.then_some(cond))
    }

    fn grid(
        &self,
        ctx: &Frozen,
        net: &ControlNet,
        batch: &Batch,
        sides: Vec<Condition>,
        device: &Device,
    ) -> Result<Grid> {
        let cldm = ControlLdm {
            unet: ctx.unet.clone(),
            controlnet: net.clone(),
        };
        let cond = gather(sides, device);
        let mut noise = NoiseSource::seeded(self.config.train.seed);
        let samples = sample(
            ctx,
            &cldm,
            &cond,
            self.config.train.sample_steps,
            &mut noise,
        )?;
        let host = |x: Tensor<4>| x.into_data().try_to_vec::<f32>().unwrap_or_default();
        Ok(Grid {
            rows: vec![
                batch.lq.clone(),
                host(cond.clean.clamp(0.0, 1.0)),
                host(samples),
                batch.gt.clone(),
            ],
            columns: 8,
        })
    }

    fn validate(&self, _net: &ControlNet, _device: &Device, _step: u64) -> Option<Validation> {
        None
    }

    fn official(&self, net: &ControlNet) -> Result<Vec<Named>> {
        official_tensors(net)?
            .into_iter()
            .map(|(path, data)| Ok((CONTROLNET_KEYS.official_key(&path)?, data)))
            .collect()
    }
}
