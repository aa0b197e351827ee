//! The stage-2 trainer (`train_stage2.py`, spec §9.2): the IRControlNet trained on a frozen
//! Stable Diffusion (UNet, VAE, text encoder) and a frozen stage-1 restorer, with the latent
//! diffusion loss for `eps` or `v`, the reference's prompt handling and
//! `noise_aug_timestep`, and `AdamW(controlnet, lr)` with PyTorch's defaults otherwise
//! (weight decay 0.01).
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

use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use diffbir_controlnet::{CONTROLNET_KEYS, ControlLdm, ControlNet, init_controlnet};
use diffbir_core::{Checkpoint, NoiseSource, Precision, load_into};
use diffbir_ldm::clip::{ClipTextEncoder, ClipTokenizer};
use diffbir_ldm::sd::{StableDiffusion, StableDiffusionConfig};
use diffbir_ldm::vae::AutoencoderKl;
use diffbir_rm::{Restorer, Stage1};
use diffbir_sampler::{NoiseSchedule, Parameterization};
use rand::Rng;
use serde_json::json;

use crate::config::{Stage2TrainConfig, TrainConfig};
use crate::data::{Batch, Loader, rng_for, stream};
use crate::error::{Error, Result};
use crate::optim::{AdamW, AdamWConfig, frozen, trainable};
use crate::parallel::{Replica, combine, parse_devices, run_step, scalar, shards};
use crate::run::{
    Event, RunDir, RunOptions, Summary, check_batch_fits, check_resumable, data_state, due,
    next_batch, restore_data, save_grid, to_tensor,
};
use crate::state::{
    Named, TrainState, apply_tensors, load_state, module_tensors, official_tensors, save_state,
    state_path, weights_path, write_safetensors,
};

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

/// The reference's ControlNet key names for a module path (the inverse of the UNet key
/// map's renames).
pub fn official_controlnet_key(path: &str) -> String {
    const INVERSE: &[(&str, &str)] = &[
        (".in_norm.", ".in_layers.0."),
        (".in_conv.", ".in_layers.2."),
        (".emb_linear.", ".emb_layers.1."),
        (".out_norm.", ".out_layers.0."),
        (".out_conv.", ".out_layers.3."),
        (".ff.geglu.", ".ff.net.0.proj."),
        (".ff.out.", ".ff.net.2."),
    ];
    let mut key = path.to_string();
    for (from, to) in INVERSE {
        key = key.replace(from, to);
    }
    key
}

fn controlnet_official(controlnet: &ControlNet) -> Result<Vec<Named>> {
    Ok(official_tensors(controlnet)?
        .into_iter()
        .map(|(n, d)| (official_controlnet_key(&n), d))
        .collect())
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

/// Deterministic DDIM (η = 0) over `steps` evenly spaced timesteps from the non-augmented
/// condition, decoded to RGB in `[0, 1]`.
pub fn sample(
    frozen_parts: &Frozen,
    cldm: &ControlLdm,
    cond: &Condition,
    steps: usize,
    noise: &mut NoiseSource,
) -> Tensor<4> {
    let s = &frozen_parts.schedule;
    let ac = s.alphas_cumprod();
    let n = ac.len();
    let device = cond.c_img.device();
    let mut x = noise.randn_like(&cond.c_img);
    let b = x.dims()[0];
    let steps = steps.clamp(1, n);
    let ts: Vec<usize> = (0..steps).map(|i| (n - 1) - i * (n - 1) / steps).collect();
    for (i, &t) in ts.iter().enumerate() {
        let a = ac[t];
        let a_prev = ts.get(i + 1).map(|&p| ac[p]).unwrap_or(1.0);
        let out = cldm.forward(
            x.clone(),
            timesteps(&vec![t; b], &device),
            &cond.c_txt,
            cond.c_img.clone(),
            &[],
        );
        let (x0, eps) = match s.parameterization() {
            Parameterization::Eps => (
                (x.clone() - out.clone().mul_scalar((1.0 - a).sqrt())).div_scalar(a.sqrt()),
                out,
            ),
            Parameterization::V => (
                x.clone().mul_scalar(a.sqrt()) - out.clone().mul_scalar((1.0 - a).sqrt()),
                out.mul_scalar(a.sqrt()) + x.clone().mul_scalar((1.0 - a).sqrt()),
            ),
        };
        x = x0.mul_scalar(a_prev.sqrt()) + eps.mul_scalar((1.0 - a_prev).sqrt());
    }
    frozen_parts
        .vae
        .decode(x.div_scalar(frozen_parts.scale))
        .add_scalar(1.0)
        .div_scalar(2.0)
        .clamp(0.0, 1.0)
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
    let t = &config.train;
    let devices = parse_devices(&t.device)?;
    let device = devices[0].clone();
    let ranges = shards(t.batch_size, devices.len())?;
    let end = options.steps.unwrap_or(t.train_steps);
    let config_text = config.to_toml()?;
    let (mut dir, latest) = RunDir::open(options)?;
    let (train_set, mut transform) = config.dataset.open(
        config.batch_transform.as_ref(),
        t.p_empty_prompt,
        ranges.len(),
        &device,
    )?;
    check_batch_fits(train_set.len(), t.batch_size)?;
    if !config.dataset.out_size().is_multiple_of(8) {
        return Err(Error::field(
            "dataset.out_size",
            "stage 2 needs a multiple of 8 (the VAE's downsampling)",
        ));
    }
    let parts = Frozen::load(config, &device)?;

    let mut optim = AdamW::new(AdamWConfig::new(t.learning_rate).with_weight_decay(t.weight_decay));
    let (controlnet, start, resumed_from) = match latest {
        Some((_, path)) => {
            let mut state = load_state(&path)?;
            check_resumable(&state, STAGE2, config, &path)?;
            restore_data(transform.as_mut(), &mut state, &path)?;
            let mut cn = init_controlnet(&config.model.controlnet, &device)?;
            apply_tensors(&mut cn, state.model, &path)?;
            optim
                .load_state(state.optimizer_step, state.optimizer, &device)
                .map_err(|reason| Error::Checkpoint {
                    path: path.clone(),
                    reason,
                })?;
            (cn, state.step, Some(path))
        }
        None => {
            device.seed(t.seed);
            let mut cn = init_controlnet(&config.model.controlnet, &device)?;
            match &t.resume {
                Some(p) => {
                    load_into(&mut cn, &Checkpoint::open(p)?, &CONTROLNET_KEYS)?;
                }
                None => {
                    cn.init_from_unet(&parts.unet)?;
                }
            }
            (cn, 0, None)
        }
    };
    let mut cldm = ControlLdm {
        unet: parts.unet.clone(),
        controlnet: trainable(controlnet),
    };
    let mut replicas: Vec<Replica<ControlLdm, Frozen>> = devices[1..]
        .iter()
        .map(|d| {
            let ctx = parts.to_device(d);
            Replica {
                device: d.clone(),
                model: ControlLdm {
                    unet: ctx.unet.clone(),
                    controlnet: cldm.controlnet.clone().fork(d),
                },
                ctx,
            }
        })
        .collect();
    observer(&Event::Started {
        start,
        end,
        resumed_from: resumed_from.clone(),
    });
    dir.log(json!({
        "stage": STAGE2, "event": "start", "step": start, "end": end,
        "resumed_from": resumed_from.map(|p| p.display().to_string()),
    }))?;

    let mut loader = Loader::spawn(
        train_set,
        t.batch_size,
        t.seed,
        start,
        end,
        t.num_workers,
        2,
    );
    let timesteps_n = parts.schedule.num_timesteps();
    let mut losses = Vec::new();
    let mut window = Vec::new();
    let mut train_secs = 0.0;
    let mut step = start;
    while step < end {
        let tick = Instant::now();
        let batch = next_batch(&mut loader, transform.as_mut(), &ranges, t.seed)?;
        let want_cond = due(step + 1, t.image_every) || (step == 0 && t.image_every > 0);
        let global = batch.len();
        let results = run_step(
            &device,
            (&cldm, &parts),
            &mut replicas,
            &ranges,
            |m: &ControlLdm| &m.controlnet,
            |dev, m: &ControlLdm, ctx: &Frozen, range| {
                let part = batch.shard(range.clone());
                let b = part.len();
                let mut d =
                    draws(t.seed, step, global, timesteps_n, t.noise_aug_timestep).shard(range);
                let (l, cond) = loss(ctx, m, &part, &mut d, t.noise_aug_timestep, dev);
                let l = if b == global {
                    l
                } else {
                    l.mul_scalar(b as f64 / global as f64)
                };
                (l, want_cond.then_some(cond))
            },
        );
        let (mut grads, value, conds) = combine(results, &device);
        let ControlLdm { unet, controlnet } = cldm;
        cldm = ControlLdm {
            unet,
            controlnet: optim.step(controlnet, &mut grads),
        };
        for r in &mut replicas {
            r.model.controlnet = cldm.controlnet.clone().fork(&r.device);
        }
        step += 1;
        train_secs += tick.elapsed().as_secs_f64();
        losses.push(value);
        window.push(value);
        observer(&Event::Step { step, loss: value });

        if due(step, t.log_every) || step == end {
            let mean = window.iter().sum::<f64>() / window.len() as f64;
            window.clear();
            dir.log(json!({
                "stage": STAGE2, "step": step, "loss/loss_simple_step": mean,
                "lr": t.learning_rate, "steps_per_sec": losses.len() as f64 / train_secs,
            }))?;
        }
        if due(step, t.image_every) || (step == 1 && t.image_every > 0) {
            let inference = ControlLdm {
                unet: cldm.unet.clone(),
                controlnet: frozen(cldm.controlnet.clone()),
            };
            let cond = gather(conds.into_iter().flatten().collect(), &device);
            let mut noise = NoiseSource::seeded(t.seed);
            let samples = sample(&parts, &inference, &cond, t.sample_steps, &mut noise);
            let host = |x: Tensor<4>| x.into_data().try_to_vec::<f32>().unwrap_or_default();
            let path = dir.image_path(step)?;
            save_grid(
                &path,
                &[
                    &batch.lq,
                    &host(cond.clean.clamp(0.0, 1.0)),
                    &host(samples),
                    &batch.gt,
                ],
                batch.size,
                8,
            )?;
            observer(&Event::Images { step, path });
        }
        if due(step, t.ckpt_every) || step == end {
            let inference = frozen(cldm.controlnet.clone());
            write_safetensors(
                &weights_path(&dir.checkpoints, step),
                &controlnet_official(&inference)?,
                None,
            )?;
            let path = state_path(&dir.checkpoints, step);
            let (data, data_meta) = data_state(transform.as_ref(), batch.size)?;
            save_state(
                &path,
                &TrainState {
                    stage: STAGE2.into(),
                    step,
                    seed: t.seed,
                    config: config_text.clone(),
                    model: module_tensors(&inference)?,
                    optimizer: optim.state_tensors(),
                    optimizer_step: optim.step_count(),
                    data,
                    data_meta,
                },
            )?;
            observer(&Event::Checkpoint { step, path });
        }
    }
    drop(loader);
    let weights = dir.out.join("final.safetensors");
    write_safetensors(
        &weights,
        &controlnet_official(&frozen(cldm.controlnet))?,
        None,
    )?;
    dir.log(json!({"stage": STAGE2, "event": "finished", "step": step}))?;
    Ok(Summary {
        start,
        end: step,
        steps_per_sec: if train_secs > 0.0 {
            losses.len() as f64 / train_secs
        } else {
            0.0
        },
        losses,
        validations: Vec::new(),
        weights,
    })
}
