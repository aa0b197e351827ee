//! Data parallelism over several devices, as the reference's `accelerate` runs with
//! `split_batches=True`: `train.batch_size` is the **global** batch, split into equal
//! contiguous parts, one per device.
//!
//! One step with devices `d₀ (main), d₁, …, d_{N−1}` and a global batch of `B = N·b` samples:
//!
//! 1. replica `k` (on `d_k`) computes the loss of samples `k·b .. (k+1)·b`, weighted so that
//!    the replicas' losses add up to the single-device loss of the whole batch: stage 1's
//!    sum-reduced MSE is a sum over samples (weight 1), stage 2's mean-reduced loss is a mean
//!    (weight `b / B`, the sub-batch's share of the global batch);
//! 2. each replica runs its backward pass, on its own thread, and its gradients are collected
//!    by parameter id and moved to the main device;
//! 3. the gradients are summed and the optimiser (whose state lives on the main device)
//!    updates the main copy of the weights — exactly the update one device would make with
//!    the whole global batch, up to float rounding of the summation order;
//! 4. the updated weights are copied to the other devices.
//!
//! What burn 0.22 provides and what is ours:
//!
//! - burn: per-device model copies with their own autodiff leaves ([`Module::fork`], which
//!   keeps the parameter ids), gradients keyed by parameter id
//!   ([`GradientsParams::from_grads`]), moving them between devices
//!   ([`GradientsParams::to_device`]), and summing the gradients of several devices
//!   ([`MultiGradientsParams`], the structure behind burn's own `step_multi`).
//!   burn's collective all-reduce (`Tensor::set_distributed`, `DistributedContext`) exists
//!   only for the GPU (cubecl) and remote backends and is not used: the CPU backend rejects
//!   it, and the gather-to-main scheme above works on every backend.
//! - ours: the device list, the batch split and its check, the loss weights, running the
//!   replicas on threads, the optimiser taking the combined gradients
//!   ([`crate::optim::GradientSource`]) and the weight synchronisation.
//!
//! Checkpoints hold only the main copy and the optimiser state, so they do not depend on the
//! device count: a run may be resumed on another number of devices.
//!
//! The CPU backend has a single device, so `device = "cpu,cpu"` runs two replicas on it: the
//! whole code path (split, per-replica gradients, combination, synchronisation) without a
//! speed-up; it is how the equivalence with one device is tested.

use std::ops::Range;

use burn::module::Module;
use burn::optim::{GradientsParams, MultiGradientsParams};
use burn::tensor::{Device, Tensor};
use diffbir_core::device::parse_device;

use crate::error::{Error, Result};
use crate::optim::GradientSource;

/// Parses the `train.device` setting: one device name, or a comma-separated list of them
/// (`cuda:0,cuda:1`) for data parallelism, the first being the main device.
pub fn parse_devices(spec: &str) -> Result<Vec<Device>> {
    device_names(spec)?
        .iter()
        .map(|name| {
            parse_device(name).map_err(|e| Error::field("train.device", format!("`{name}`: {e}")))
        })
        .collect()
}

/// The device names of a `train.device` setting, trimmed, in order.
pub fn device_names(spec: &str) -> Result<Vec<String>> {
    let names: Vec<String> = spec.split(',').map(|s| s.trim().to_string()).collect();
    if names.iter().any(String::is_empty) {
        return Err(Error::field(
            "train.device",
            format!("`{spec}` has an empty device name (expected e.g. `cuda:0,cuda:1`)"),
        ));
    }
    Ok(names)
}

/// The contiguous sample ranges of each of `devices` replicas in a global batch of
/// `batch_size` samples; an error naming `train.batch_size` when it does not divide.
pub fn shards(batch_size: usize, devices: usize) -> Result<Vec<Range<usize>>> {
    let n = devices.max(1);
    if !batch_size.is_multiple_of(n) {
        return Err(Error::field(
            "train.batch_size",
            format!(
                "the global batch of {batch_size} cannot be split evenly over the {n} devices \
                 of `train.device`; use a multiple of {n}"
            ),
        ));
    }
    let b = batch_size / n;
    Ok((0..n).map(|k| k * b..(k + 1) * b).collect())
}

/// A copy of the trained module (and of whatever else a replica needs, `ctx`) on one of the
/// secondary devices.
#[derive(Debug)]
pub(crate) struct Replica<M, C> {
    pub device: Device,
    pub model: M,
    pub ctx: C,
}

/// What one replica's part of a step produced.
pub(crate) struct Part<R> {
    /// The (weighted) loss value of the replica's samples.
    pub loss: f64,
    /// Its gradients, keyed by parameter id, on the main device.
    pub grads: GradientsParams,
    /// Anything else the work returned.
    pub extra: R,
}

/// The summed gradients of a step.
pub(crate) enum Combined {
    /// One device: its gradients as they are.
    One(GradientsParams),
    /// Several: burn's multi-device gradients, summed per parameter.
    Many(MultiGradientsParams),
}

impl GradientSource for Combined {
    fn take<const D: usize>(
        &mut self,
        id: burn::module::ParamId,
        param: &Tensor<D>,
    ) -> Option<Tensor<D>> {
        match self {
            Self::One(g) => g.take(id, param),
            Self::Many(g) => g.take(id, param),
        }
    }
}

/// Runs `work` for every replica (the main copy `main` on `device` on this thread, each of
/// `replicas` on its own thread) over its sample range of `shards`, backpropagates each
/// returned loss and collects the gradients of the module returned by `module_of` on
/// `device`.
///
/// `work` returns the replica's weighted loss (tracked) and an extra value.
pub(crate) fn run_step<M, T, C, R, W>(
    device: &Device,
    main: (&M, &C),
    replicas: &mut [Replica<M, C>],
    shards: &[Range<usize>],
    module_of: fn(&M) -> &T,
    work: W,
) -> Vec<Part<R>>
where
    M: Module,
    T: Module,
    C: Send,
    R: Send,
    W: Fn(&Device, &M, &C, Range<usize>) -> (Tensor<1>, R) + Sync,
{
    let one = |dev: &Device, model: &M, ctx: &C, range: Range<usize>| {
        let (loss, extra) = work(dev, model, ctx, range);
        let grads = loss.backward();
        let value = scalar(loss);
        let mut grads = GradientsParams::from_grads(grads, module_of(model));
        if dev != device {
            grads = grads.to_device(device, module_of(model));
        }
        Part {
            loss: value,
            grads,
            extra,
        }
    };
    if replicas.is_empty() {
        return vec![one(device, main.0, main.1, shards[0].clone())];
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = replicas
            .iter_mut()
            .zip(&shards[1..])
            .map(|(r, range)| {
                let one = &one;
                let range = range.clone();
                scope.spawn(move || one(&r.device, &r.model, &r.ctx, range))
            })
            .collect();
        let mut parts = vec![one(device, main.0, main.1, shards[0].clone())];
        for h in handles {
            match h.join() {
                Ok(part) => parts.push(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        parts
    })
}

/// The gradients of all parts, summed per parameter (burn's [`MultiGradientsParams`]), and
/// the summed loss.
pub(crate) fn combine<R>(parts: Vec<Part<R>>, device: &Device) -> (Combined, f64, Vec<R>) {
    let loss = parts.iter().map(|p| p.loss).sum();
    let mut grads = Vec::with_capacity(parts.len());
    let mut extras = Vec::with_capacity(parts.len());
    for p in parts {
        grads.push((p.grads, device.clone()));
        extras.push(p.extra);
    }
    let combined = if grads.len() == 1 {
        Combined::One(grads.remove(0).0)
    } else {
        Combined::Many(MultiGradientsParams { grads })
    };
    (combined, loss, extras)
}

/// The one-element loss as a host number.
pub(crate) fn scalar(t: Tensor<1>) -> f64 {
    t.inner()
        .into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .map(|v| v[0])
        .unwrap_or(f64::NAN)
}
