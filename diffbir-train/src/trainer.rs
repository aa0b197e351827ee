//! The training loop both stages run: devices and replicas, a fresh start or a resume, the
//! data loader, the optimiser step, the log, image grids, validation, checkpoints and the
//! final weights. What differs between the stages is a [`Stage`].

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde_json::json;

use crate::config::TrainConfig;
use crate::data::{Batch, Loader, TrainingSet};
use crate::error::{Error, Result};
use crate::optim::{AdamW, AdamWConfig, frozen, trainable};
use crate::parallel::{Replica, combine, parse_devices, run_step, shards};
use crate::realesrgan::RealEsrganTransform;
use crate::run::{
    Event, RunDir, RunOptions, Summary, Validation, check_batch_fits, check_resumable, data_state,
    due, next_batch, restore_data, save_grid,
};
use crate::state::{
    Named, TrainState, apply_tensors, load_state, module_tensors, save_state, state_path,
    weights_path, write_safetensors,
};

/// The loop's settings, from a stage's `[train]` section.
pub(crate) struct Schedule<'a> {
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub batch_size: usize,
    pub num_workers: usize,
    pub train_steps: u64,
    pub log_every: u64,
    pub ckpt_every: u64,
    pub image_every: u64,
    pub val_every: u64,
    pub seed: u64,
    pub device: &'a str,
}

/// An image grid: rows of `[B, 3, S, S]` images in `[0, 1]`, up to `columns` per row.
pub(crate) struct Grid {
    pub rows: Vec<Vec<f32>>,
    pub columns: usize,
}

/// What one training stage brings to [`train`].
pub(crate) trait Stage: Sync {
    /// The tag stored in training states.
    const TAG: &'static str;
    /// The log's name of the mean training loss.
    const LOSS_KEY: &'static str;
    /// The stage's config.
    type Config: TrainConfig;
    /// The trained network.
    type Net: Module;
    /// What every device holds besides the trained network (frozen networks).
    type Ctx: Send + Sync;
    /// What a replica's loss keeps of its samples for the image grid.
    type Side: Send;

    fn config(&self) -> &Self::Config;
    fn schedule(&self) -> Schedule<'_>;
    /// The training set and the batch transform (one pool per shard, on `device`).
    fn data(
        &self,
        shards: usize,
        device: &Device,
    ) -> Result<(Arc<dyn TrainingSet>, Option<RealEsrganTransform>)>;
    /// The context on the main device.
    fn context(&self, device: &Device) -> Result<Self::Ctx>;
    /// A copy of the context on another device.
    fn context_on(ctx: &Self::Ctx, device: &Device) -> Self::Ctx;
    /// The network with fresh weights: what a resumed state is applied to.
    fn build(&self, device: &Device) -> Result<Self::Net>;
    /// A fresh run's initial weights (the device is seeded before [`build`](Self::build)).
    fn initialise(&self, net: &mut Self::Net, ctx: &Self::Ctx) -> Result<()>;
    /// The loss of the samples `range` of the global `batch` at `step` (weighted so that the
    /// replicas' losses add up to the whole batch's), and, with `keep`, what the image grid
    /// needs of them.
    #[allow(clippy::too_many_arguments)]
    fn loss(
        &self,
        ctx: &Self::Ctx,
        net: &Self::Net,
        batch: &Batch,
        range: Range<usize>,
        step: u64,
        keep: bool,
        device: &Device,
    ) -> (Tensor<1>, Option<Self::Side>);
    /// The image grid of a step, from the replicas' sides in sample order.
    fn grid(
        &self,
        ctx: &Self::Ctx,
        net: &Self::Net,
        batch: &Batch,
        sides: Vec<Self::Side>,
        device: &Device,
    ) -> Result<Grid>;
    /// Validation after `step`, for a stage that has any.
    fn validate(&self, net: &Self::Net, device: &Device, step: u64) -> Option<Validation>;
    /// The network's tensors under the official checkpoint keys.
    fn official(&self, net: &Self::Net) -> Result<Vec<Named>>;
}

/// Runs `stage` as configured, writing into `options.out`; `observer` sees every event.
pub(crate) fn train<S: Stage>(
    stage: &S,
    options: &RunOptions,
    observer: &mut dyn FnMut(&Event),
) -> Result<Summary> {
    let s = stage.schedule();
    let devices = parse_devices(s.device)?;
    let device = devices[0].clone();
    let parts = shards(s.batch_size, devices.len())?;
    let end = options.steps.unwrap_or(s.train_steps);
    let config_text = stage.config().to_toml()?;
    let (mut dir, latest) = RunDir::open(options)?;
    let (train_set, mut transform) = stage.data(parts.len(), &device)?;
    check_batch_fits(train_set.len(), s.batch_size)?;
    let ctx = stage.context(&device)?;

    let mut optim = AdamW::new(AdamWConfig::new(s.learning_rate).with_weight_decay(s.weight_decay));
    let (net, start, resumed_from) = match latest {
        Some((_, path)) => {
            let mut state = load_state(&path)?;
            check_resumable(&state, S::TAG, stage.config(), &path)?;
            restore_data(transform.as_mut(), &mut state, &path)?;
            let mut net = stage.build(&device)?;
            apply_tensors(&mut net, state.model, &path)?;
            optim
                .load_state(state.optimizer_step, state.optimizer, &device)
                .map_err(|reason| Error::Checkpoint {
                    path: path.clone(),
                    reason,
                })?;
            (net, state.step, Some(path))
        }
        None => {
            device.seed(s.seed);
            let mut net = stage.build(&device)?;
            stage.initialise(&mut net, &ctx)?;
            (net, 0, None)
        }
    };
    let mut net = trainable(net);
    let mut replicas: Vec<Replica<S::Net, S::Ctx>> = devices[1..]
        .iter()
        .map(|d| Replica {
            device: d.clone(),
            model: net.clone().fork(d),
            ctx: S::context_on(&ctx, d),
        })
        .collect();
    observer(&Event::Started {
        start,
        end,
        resumed_from: resumed_from.clone(),
    });
    dir.log(json!({
        "stage": S::TAG, "event": "start", "step": start, "end": end,
        "resumed_from": resumed_from.map(|p| p.display().to_string()),
    }))?;

    let mut validations = Vec::new();
    let mut validate = |dir: &mut RunDir,
                        observer: &mut dyn FnMut(&Event),
                        net: &S::Net,
                        step: u64|
     -> Result<()> {
        if let Some(v) = stage.validate(&frozen(net.clone()), &device, step) {
            dir.log_validation(S::TAG, &v)?;
            observer(&Event::Validated(v));
            validations.push(v);
        }
        Ok(())
    };
    if start == 0 {
        validate(&mut dir, observer, &net, 0)?;
    }

    let mut loader = Loader::spawn(
        train_set,
        s.batch_size,
        s.seed,
        start,
        end,
        s.num_workers,
        2,
    );
    let mut losses = Vec::new();
    let mut window = Vec::new();
    let mut train_secs = 0.0;
    let mut step = start;
    while step < end {
        let tick = Instant::now();
        let batch = next_batch(&mut loader, transform.as_mut(), &parts, s.seed)?;
        let keep = due(step + 1, s.image_every) || (step == 0 && s.image_every > 0);
        let results = run_step(
            &device,
            (&net, &ctx),
            &mut replicas,
            &parts,
            |m| m,
            |dev, net: &S::Net, ctx: &S::Ctx, range| {
                stage.loss(ctx, net, &batch, range, step, keep, dev)
            },
        );
        let (mut grads, loss, sides) = combine(results, &device);
        net = optim.step(net, &mut grads);
        for r in &mut replicas {
            r.model = net.clone().fork(&r.device);
        }
        step += 1;
        train_secs += tick.elapsed().as_secs_f64();
        losses.push(loss);
        window.push(loss);
        observer(&Event::Step { step, loss });

        if due(step, s.log_every) || step == end {
            let mean = window.iter().sum::<f64>() / window.len() as f64;
            window.clear();
            dir.log(json!({
                "stage": S::TAG, "step": step, S::LOSS_KEY: mean,
                "lr": s.learning_rate, "steps_per_sec": losses.len() as f64 / train_secs,
            }))?;
        }
        if due(step, s.image_every) || (step == 1 && s.image_every > 0) {
            let sides = sides.into_iter().flatten().collect();
            let grid = stage.grid(&ctx, &frozen(net.clone()), &batch, sides, &device)?;
            let rows: Vec<&[f32]> = grid.rows.iter().map(Vec::as_slice).collect();
            let path = dir.image_path(step)?;
            save_grid(&path, &rows, batch.size, grid.columns)?;
            observer(&Event::Images { step, path });
        }
        if due(step, s.val_every) {
            validate(&mut dir, observer, &net, step)?;
        }
        if due(step, s.ckpt_every) || step == end {
            let data = data_state(transform.as_ref(), batch.size)?;
            let path = checkpoint(stage, &dir, &net, &optim, &config_text, step, data)?;
            observer(&Event::Checkpoint { step, path });
        }
    }
    drop(loader);

    let weights = dir.out.join("final.safetensors");
    write_safetensors(&weights, &stage.official(&frozen(net))?, None)?;
    dir.log(json!({"stage": S::TAG, "event": "finished", "step": step}))?;
    Ok(Summary {
        start,
        end: step,
        steps_per_sec: if train_secs > 0.0 {
            losses.len() as f64 / train_secs
        } else {
            0.0
        },
        losses,
        validations,
        weights,
    })
}

/// Writes the weights (official keys) and the resumable state of `step`.
fn checkpoint<S: Stage>(
    stage: &S,
    dir: &RunDir,
    net: &S::Net,
    optim: &AdamW,
    config_text: &str,
    step: u64,
    (data, data_meta): (Vec<Named>, String),
) -> Result<PathBuf> {
    let inference = frozen(net.clone());
    write_safetensors(
        &weights_path(&dir.checkpoints, step),
        &stage.official(&inference)?,
        None,
    )?;
    let path = state_path(&dir.checkpoints, step);
    save_state(
        &path,
        &TrainState {
            stage: S::TAG.into(),
            step,
            seed: stage.schedule().seed,
            config: config_text.to_string(),
            model: module_tensors(&inference)?,
            optimizer: optim.state_tensors(),
            optimizer_step: optim.step_count(),
            data,
            data_meta,
        },
    )?;
    Ok(path)
}
