//! The stage-1 trainer (`train_stage1.py`, spec §9.1): a restorer (SwinIR by default, any
//! [`Stage1`] network) trained on CodeFormer-degraded pairs with the sum-reduced MSE,
//! `AdamW(lr, weight_decay 0, betas (0.9, 0.999), eps 1e-8)`, a constant learning rate and
//! no EMA, gradient clipping or accumulation.
//!
//! With several devices (`train.device = "cuda:0,cuda:1"`), each computes the sum-reduced
//! loss of its part of the global batch and the gradients are summed (see
//! [`crate::parallel`]): the update is the one a single device makes with the whole batch.

use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use diffbir_core::{Checkpoint, load_into};
use diffbir_rm::{Restorer, Stage1};
use serde_json::json;

use crate::config::{Stage1TrainConfig, TrainConfig};
use crate::data::{Batch, CodeformerDataset, Loader, validation_batches};
use crate::error::{Error, Result};
use crate::metrics::{psnr, ssim};
use crate::optim::{AdamW, AdamWConfig, frozen, trainable};
use crate::parallel::{Replica, combine, parse_devices, run_step, shards};
use crate::run::{
    Event, RunDir, RunOptions, Summary, Validation, check_batch_fits, check_resumable, data_state,
    due, next_batch, restore_data, save_grid, to_tensor,
};
use crate::state::{
    TrainState, load_state, module_tensors, official_tensors, save_state, state_path, weights_path,
    write_safetensors,
};

/// The stage tag stored in stage-1 states.
pub const STAGE1: &str = "stage1";

use crate::parallel::scalar;

/// Sum-reduced squared error, as `F.mse_loss(pred, gt, reduction="sum")`.
///
/// # Shapes
/// - `pred`, `gt`: `[B, 3, H, W]`
/// - returns `[1]`
pub fn sum_mse(pred: Tensor<4>, gt: Tensor<4>) -> Tensor<1> {
    (pred - gt).powi_scalar(2).sum()
}

/// Runs the network on the held-out batches and averages loss, PSNR and SSIM.
pub fn validate(model: &Stage1, batches: &[Batch], device: &Device, step: u64) -> Validation {
    let (mut loss, mut p, mut s, mut n) = (0.0, 0.0, 0.0, 0usize);
    for batch in batches {
        let b = batch.len();
        let size = batch.size;
        let pred = model.restore(to_tensor(&batch.lq, b, size, device));
        loss += scalar(sum_mse(pred.clone(), to_tensor(&batch.gt, b, size, device)));
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
    let devices = parse_devices(&t.device)?;
    let device = devices[0].clone();
    let parts = shards(t.batch_size, devices.len())?;
    let end = options.steps.unwrap_or(t.train_steps);
    let config_text = config.to_toml()?;
    let (mut dir, latest) = RunDir::open(options)?;

    let (train_set, mut transform) =
        config
            .dataset
            .open(config.batch_transform.as_ref(), 0.5, parts.len(), &device)?;
    check_batch_fits(train_set.len(), t.batch_size)?;
    let val = match (&config.dataset.val, t.val_every) {
        (Some(v), every) if every > 0 => Some(validation_batches(
            &CodeformerDataset::new(v, 0.5)?,
            t.batch_size,
            t.seed,
        )?),
        _ => None,
    };

    let mut optim = AdamW::new(AdamWConfig::new(t.learning_rate).with_weight_decay(t.weight_decay));
    let (model, start, resumed_from) = match latest {
        Some((_, path)) => {
            let mut state = load_state(&path)?;
            check_resumable(&state, STAGE1, config, &path)?;
            restore_data(transform.as_mut(), &mut state, &path)?;
            let mut model = config.model.init(&device)?;
            crate::state::apply_tensors(&mut model, state.model, &path)?;
            optim
                .load_state(state.optimizer_step, state.optimizer, &device)
                .map_err(|reason| Error::Checkpoint {
                    path: path.clone(),
                    reason,
                })?;
            (model, state.step, Some(path))
        }
        None => {
            device.seed(t.seed);
            let mut model = config.model.init(&device)?;
            if let Some(weights) = &t.resume {
                load_into(
                    &mut model,
                    &Checkpoint::open(weights)?,
                    config.model.key_map(),
                )?;
            }
            (model, 0, None)
        }
    };
    let mut model = trainable(model);
    let mut replicas: Vec<Replica<Stage1, ()>> = devices[1..]
        .iter()
        .map(|d| Replica {
            device: d.clone(),
            model: model.clone().fork(d),
            ctx: (),
        })
        .collect();
    observer(&Event::Started {
        start,
        end,
        resumed_from: resumed_from.clone(),
    });
    dir.log(json!({
        "stage": STAGE1, "event": "start", "step": start, "end": end,
        "resumed_from": resumed_from.map(|p| p.display().to_string()),
    }))?;

    let mut validations = Vec::new();
    if let Some(batches) = &val
        && start == 0
    {
        let v = validate(&frozen(model.clone()), batches, &device, 0);
        dir.log_validation(STAGE1, &v)?;
        observer(&Event::Validated(v));
        validations.push(v);
    }

    let mut loader = Loader::spawn(
        train_set,
        t.batch_size,
        t.seed,
        start,
        end,
        t.num_workers,
        2,
    );
    let mut losses = Vec::new();
    let mut window = Vec::new();
    let mut train_secs = 0.0;
    let mut step = start;
    while step < end {
        let tick = Instant::now();
        let batch = next_batch(&mut loader, transform.as_mut(), &parts, t.seed)?;
        let want_pred = due(step + 1, t.image_every) || (step == 0 && t.image_every > 0);
        let results = run_step(
            &device,
            (&model, &()),
            &mut replicas,
            &parts,
            |m| m,
            |dev, m: &Stage1, _: &(), range| {
                let part = batch.shard(range);
                let b = part.len();
                let lq = to_tensor(&part.lq, b, part.size, dev);
                let gt = to_tensor(&part.gt, b, part.size, dev);
                let pred = m.restore(lq);
                let host = want_pred.then(|| {
                    pred.clone()
                        .inner()
                        .into_data()
                        .try_to_vec::<f32>()
                        .unwrap_or_default()
                });
                (sum_mse(pred, gt), host)
            },
        );
        let (mut grads, loss, preds) = combine(results, &device);
        model = optim.step(model, &mut grads);
        for r in &mut replicas {
            r.model = model.clone().fork(&r.device);
        }
        step += 1;
        train_secs += tick.elapsed().as_secs_f64();
        losses.push(loss);
        window.push(loss);
        observer(&Event::Step { step, loss });

        if due(step, t.log_every) || step == end {
            let mean = window.iter().sum::<f64>() / window.len() as f64;
            window.clear();
            dir.log(json!({
                "stage": STAGE1, "step": step, "train/loss_step": mean,
                "lr": t.learning_rate, "steps_per_sec": losses.len() as f64 / train_secs,
            }))?;
        }
        if due(step, t.image_every) || (step == 1 && t.image_every > 0) {
            let pred: Vec<f32> = preds.into_iter().flatten().flatten().collect();
            let path = dir.image_path(step)?;
            save_grid(&path, &[&batch.lq, &pred, &batch.gt], batch.size, 4)?;
            observer(&Event::Images { step, path });
        }
        if let Some(batches) = &val
            && due(step, t.val_every)
        {
            let v = validate(&frozen(model.clone()), batches, &device, step);
            dir.log_validation(STAGE1, &v)?;
            observer(&Event::Validated(v));
            validations.push(v);
        }
        if due(step, t.ckpt_every) || step == end {
            let data = data_state(transform.as_ref(), batch.size)?;
            let path = checkpoint(&dir, &model, &optim, config, &config_text, step, data)?;
            observer(&Event::Checkpoint { step, path });
        }
    }
    drop(loader);

    let weights = dir.out.join("final.safetensors");
    write_safetensors(&weights, &official_tensors(&frozen(model))?, None)?;
    dir.log(json!({"stage": STAGE1, "event": "finished", "step": step}))?;
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

fn checkpoint(
    dir: &RunDir,
    model: &Stage1,
    optim: &AdamW,
    config: &Stage1TrainConfig,
    config_text: &str,
    step: u64,
    (data, data_meta): (Vec<crate::state::Named>, String),
) -> Result<std::path::PathBuf> {
    let inference = frozen(model.clone());
    write_safetensors(
        &weights_path(&dir.checkpoints, step),
        &official_tensors(&inference)?,
        None,
    )?;
    let path = state_path(&dir.checkpoints, step);
    save_state(
        &path,
        &TrainState {
            stage: STAGE1.into(),
            step,
            seed: config.train.seed,
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
