//! The stage-1 trainer (`XPixelGroup/DiffBIR@3f8b530:train_stage1.py:L21-L254`): a restorer
//! (SwinIR by default, any [`Stage1`] network) trained on CodeFormer-degraded pairs with the
//! sum-reduced MSE, `AdamW(lr, weight_decay 0, betas (0.9, 0.999), eps 1e-8)`, a constant
//! learning rate and no EMA, gradient clipping or accumulation.
//!
//! With several devices (`train.device = "cuda:0,cuda:1"`), each computes the sum-reduced
//! loss of its part of the global batch and the gradients are summed (see
//! [`crate::parallel`]): the update is the one a single device makes with the whole batch.

use std::ops::Range;
use std::sync::Arc;

use burn::tensor::{Device, Tensor};
use diffbir_core::{Checkpoint, load_into};
use diffbir_metrics::Lpips;
use diffbir_rm::{Restorer, Stage1};

use crate::config::{Stage1TrainConfig, TrainConfig};
use crate::data::{Batch, CodeformerDataset, TrainingSet, validation_batches};
use crate::error::Result;
use crate::metrics::{psnr, ssim};
use crate::parallel::scalar;
use crate::realesrgan::RealEsrganTransform;
use crate::run::{Event, RunOptions, Summary, Validation, to_tensor};
use crate::state::{Named, official_tensors};
use crate::trainer::{Grid, Schedule, Stage, train};

/// The stage tag stored in stage-1 states.
pub const STAGE1: &str = "stage1";

/// Sum-reduced squared error, as `F.mse_loss(pred, gt, reduction="sum")`.
///
/// # Shapes
/// - `pred`, `gt`: `[B, 3, H, W]`
/// - returns `[1]`
pub fn sum_mse(pred: Tensor<4>, gt: Tensor<4>) -> Tensor<1> {
    (pred - gt).powi_scalar(2).sum()
}

/// Runs the network on the held-out batches and averages loss, PSNR, SSIM and, with a
/// network, LPIPS.
pub fn validate(
    model: &Stage1,
    lpips: Option<&Lpips>,
    batches: &[Batch],
    device: &Device,
    step: u64,
) -> Validation {
    let (mut loss, mut p, mut s, mut n) = (0.0, 0.0, 0.0, 0usize);
    let mut lpips_sum = 0.0;
    for batch in batches {
        let b = batch.len();
        let size = batch.size;
        let pred = model.restore(to_tensor(&batch.lq, b, size, device));
        let gt = to_tensor(&batch.gt, b, size, device);
        if let Some(lpips) = lpips {
            lpips_sum += scalar(lpips.forward(pred.clone(), gt.clone(), true).mean());
        }
        loss += scalar(sum_mse(pred.clone(), gt));
        let pred: Vec<f32> = pred
            .clamp(0.0, 1.0)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        let per = 3 * size * size;
        for i in 0..b {
            let (x, y) = (
                &pred[i * per..(i + 1) * per],
                &batch.gt[i * per..(i + 1) * per],
            );
            p += psnr(x, y);
            s += ssim(x, y, 3, size, size);
            n += 1;
        }
    }
    Validation {
        step,
        loss: loss / batches.len().max(1) as f64,
        psnr: p / n.max(1) as f64,
        ssim: s / n.max(1) as f64,
        lpips: lpips.map(|_| lpips_sum / batches.len().max(1) as f64),
    }
}

/// Trains stage 1 as configured, writing into `options.out`; `observer` sees every event.
pub fn train_stage1(
    config: &Stage1TrainConfig,
    options: &RunOptions,
    observer: &mut dyn FnMut(&Event),
) -> Result<Summary> {
    config.validate()?;
    let t = &config.train;
    let val = match (&config.dataset.val, t.val_every) {
        (Some(v), every) if every > 0 => Some(validation_batches(
            &CodeformerDataset::new(v, 0.5)?,
            t.batch_size,
            t.seed,
        )?),
        _ => None,
    };
    let lpips = match (&t.val_lpips, &val) {
        (Some(v), Some(_)) => {
            // Validation runs on the main device, the first of `train.device`.
            let device = crate::parallel::parse_devices(&t.device)?.swap_remove(0);
            let trunk = Checkpoint::open(&v.trunk)?;
            let heads = Checkpoint::open(&v.heads)?;
            Some(Lpips::from_checkpoints(v.net, &trunk, &heads, &device).map_err(metrics_error)?)
        }
        _ => None,
    };
    train(&Stage1Run { config, val, lpips }, options, observer)
}

/// The metrics' errors as training's: what is not the foundations' is a bad LPIPS file.
fn metrics_error(e: diffbir_metrics::Error) -> crate::error::Error {
    match e {
        diffbir_metrics::Error::Core(e) => e.into(),
        e => crate::error::Error::field("train.val_lpips", e.to_string()),
    }
}

/// Stage 1 in the shared loop: the network alone, its predictions kept for the grid.
struct Stage1Run<'a> {
    config: &'a Stage1TrainConfig,
    /// The held-out batches, when validation is on.
    val: Option<Vec<Batch>>,
    /// The LPIPS network of validation.
    lpips: Option<Lpips>,
}

impl Stage for Stage1Run<'_> {
    const TAG: &'static str = STAGE1;
    const LOSS_KEY: &'static str = "train/loss_step";
    type Config = Stage1TrainConfig;
    type Net = Stage1;
    type Ctx = ();
    type Side = Vec<f32>;

    fn config(&self) -> &Stage1TrainConfig {
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
            val_every: t.val_every,
            seed: t.seed,
            device: &t.device,
        }
    }

    fn data(
        &self,
        shards: usize,
        device: &Device,
    ) -> Result<(Arc<dyn TrainingSet>, Option<RealEsrganTransform>)> {
        self.config
            .dataset
            .open(self.config.batch_transform.as_ref(), 0.5, shards, device)
    }

    fn context(&self, _device: &Device) -> Result<()> {
        Ok(())
    }

    fn context_on(_ctx: &(), _device: &Device) {}

    fn build(&self, device: &Device) -> Result<Stage1> {
        Ok(self.config.model.init(device)?)
    }

    fn initialise(&self, net: &mut Stage1, _ctx: &()) -> Result<()> {
        if let Some(weights) = &self.config.train.resume {
            load_into(
                net,
                &Checkpoint::open(weights)?,
                self.config.model.key_map(),
            )?;
        }
        Ok(())
    }

    fn loss(
        &self,
        _ctx: &(),
        net: &Stage1,
        batch: &Batch,
        range: Range<usize>,
        _step: u64,
        keep: bool,
        device: &Device,
    ) -> (Tensor<1>, Option<Vec<f32>>) {
        let part = batch.shard(range);
        let b = part.len();
        let lq = to_tensor(&part.lq, b, part.size, device);
        let gt = to_tensor(&part.gt, b, part.size, device);
        let pred = net.restore(lq);
        let host = keep.then(|| {
            pred.clone()
                .inner()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap_or_default()
        });
        (sum_mse(pred, gt), host)
    }

    fn grid(
        &self,
        _ctx: &(),
        _net: &Stage1,
        batch: &Batch,
        sides: Vec<Vec<f32>>,
        _device: &Device,
    ) -> Result<Grid> {
        Ok(Grid {
            rows: vec![batch.lq.clone(), sides.concat(), batch.gt.clone()],
            columns: 4,
        })
    }

    fn validate(&self, net: &Stage1, device: &Device, step: u64) -> Option<Validation> {
        self.val
            .as_ref()
            .map(|batches| validate(net, self.lpips.as_ref(), batches, device, step))
    }

    fn official(&self, net: &Stage1) -> Result<Vec<Named>> {
        let map = self.config.model.key_map();
        official_tensors(net)?
            .into_iter()
            .map(|(path, data)| Ok((map.official_key(&path)?, data)))
            .collect()
    }
}
