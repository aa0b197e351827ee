//! What both trainers share: run options, progress events, the JSON-lines log, image grids
//! and the checkpoint bookkeeping.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;
use serde_json::{Value, json};

use crate::config::TrainConfig;
use crate::data::{Batch, Loader};
use crate::error::{Error, Result};
use crate::realesrgan::RealEsrganTransform;
use crate::state::{Named, TrainState, latest_state, remove_partial_files};

/// Where and how long to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Output folder: `log.jsonl`, `checkpoints/`, `images/`, `final.safetensors`.
    pub out: PathBuf,
    /// Total steps, overriding the config's `train_steps`.
    pub steps: Option<u64>,
    /// Continue from the latest state in `out/checkpoints` (a fresh start when there is
    /// none). Without it, an output folder that already holds checkpoints is refused.
    pub resume: bool,
}

/// Stage-1 validation results (means over the held-out images).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Validation {
    /// Step the weights had reached.
    pub step: u64,
    /// Sum-of-squares loss per batch, averaged over batches (the reference's `val/loss`).
    pub loss: f64,
    /// PSNR in dB of the clamped prediction.
    pub psnr: f64,
    /// SSIM of the clamped prediction.
    pub ssim: f64,
    /// LPIPS of the prediction as it is (`normalize=True`), averaged per batch then over
    /// batches as the reference does, when `[train.val_lpips]` is set.
    pub lpips: Option<f64>,
}

/// Progress of a run, for a progress bar or a log.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// The run starts at `start` (0, or the step of the state it resumes) and ends at `end`.
    Started {
        /// First step to run.
        start: u64,
        /// Step count at the end.
        end: u64,
        /// The state file resumed from.
        resumed_from: Option<PathBuf>,
    },
    /// One optimisation step finished.
    Step {
        /// Steps done.
        step: u64,
        /// Its loss.
        loss: f64,
    },
    /// A validation finished.
    Validated(Validation),
    /// A checkpoint was written.
    Checkpoint {
        /// Steps done.
        step: u64,
        /// The state file.
        path: PathBuf,
    },
    /// Sample images were written.
    Images {
        /// Steps done.
        step: u64,
        /// The image file.
        path: PathBuf,
    },
}

/// What a finished run did.
#[derive(Debug, Clone)]
pub struct Summary {
    /// First step run (0 for a fresh run).
    pub start: u64,
    /// Steps done at the end.
    pub end: u64,
    /// The loss of every step run, in order.
    pub losses: Vec<f64>,
    /// Optimisation steps per second (data waits included, validation and checkpoints not).
    pub steps_per_sec: f64,
    /// Validations run, in order (a fresh stage-1 run validates once before training).
    pub validations: Vec<Validation>,
    /// `out/final.safetensors`.
    pub weights: PathBuf,
}

/// The run folder: log file and checkpoint folder.
#[derive(Debug)]
pub(crate) struct RunDir {
    pub out: PathBuf,
    pub checkpoints: PathBuf,
    log: File,
}

impl RunDir {
    /// Creates the folders, cleans interrupted writes and finds the state to resume.
    pub fn open(options: &RunOptions) -> Result<(Self, Option<(u64, PathBuf)>)> {
        let out = options.out.clone();
        let checkpoints = out.join("checkpoints");
        std::fs::create_dir_all(&checkpoints).map_err(|e| Error::io(&checkpoints, e))?;
        remove_partial_files(&checkpoints)?;
        let latest = latest_state(&checkpoints)?;
        if latest.is_some() && !options.resume {
            return Err(Error::Checkpoint {
                path: checkpoints,
                reason: "this run folder already has checkpoints: pass --resume to continue it, \
                         or choose another output folder"
                    .into(),
            });
        }
        let log_path = out.join("log.jsonl");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| Error::io(&log_path, e))?;
        Ok((
            Self {
                out,
                checkpoints,
                log,
            },
            latest.filter(|_| options.resume),
        ))
    }

    /// Appends one JSON line to `log.jsonl`.
    pub fn log(&mut self, value: Value) -> Result<()> {
        let path = self.out.join("log.jsonl");
        writeln!(self.log, "{value}").map_err(|e| Error::io(&path, e))?;
        self.log.flush().map_err(|e| Error::io(&path, e))
    }

    /// Logs a validation.
    pub fn log_validation(&mut self, stage: &str, v: &Validation) -> Result<()> {
        let mut line = json!({
            "stage": stage, "step": v.step, "val/loss": v.loss, "val/psnr": v.psnr,
            "val/ssim": v.ssim,
        });
        if let Some(lpips) = v.lpips {
            line["val/lpips"] = json!(lpips);
        }
        self.log(line)
    }

    /// `out/images/NNNNNNN.png`.
    pub fn image_path(&self, step: u64) -> Result<PathBuf> {
        let dir = self.out.join("images");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(dir.join(format!("{step:07}.png")))
    }
}

/// Whether a periodic action is due after `step` steps (`every = 0` means never).
/// Images stored as `[b, 3, size, size]` floats, as a tensor.
pub(crate) fn to_tensor(values: &[f32], b: usize, size: usize, device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values.to_vec(), [b, 3, size, size]), device)
}

/// Fails unless the training set holds at least one global batch.
pub(crate) fn check_batch_fits(images: usize, batch_size: usize) -> Result<()> {
    if images < batch_size {
        return Err(Error::field(
            "train.batch_size",
            format!("{batch_size} is larger than the {images} training images"),
        ));
    }
    Ok(())
}

/// The next batch: the loader's, passed through the batch transform when there is one.
pub(crate) fn next_batch(
    loader: &mut Loader,
    transform: Option<&mut RealEsrganTransform>,
    shards: &[std::ops::Range<usize>],
    seed: u64,
) -> Result<Batch> {
    let batch = loader.next_batch()?;
    match transform {
        Some(t) => t.apply(&batch, shards, seed, batch.step),
        None => Ok(batch),
    }
}

/// The batch transform's pools for a checkpoint (nothing without a transform).
pub(crate) fn data_state(
    transform: Option<&RealEsrganTransform>,
    size: usize,
) -> Result<(Vec<Named>, String)> {
    match transform {
        Some(t) => t.state(size),
        None => Ok((Vec::new(), String::new())),
    }
}

/// Puts a resumed state's pools back into the batch transform.
pub(crate) fn restore_data(
    transform: Option<&mut RealEsrganTransform>,
    state: &mut TrainState,
    path: &Path,
) -> Result<()> {
    let data = std::mem::take(&mut state.data);
    match transform {
        Some(t) => t
            .restore(data, &state.data_meta)
            .map_err(|e| Error::Checkpoint {
                path: path.into(),
                reason: e.to_string(),
            }),
        None if data.is_empty() => Ok(()),
        None => Err(Error::Checkpoint {
            path: path.into(),
            reason: "holds training pools, but this config has no batch transform".into(),
        }),
    }
}

/// Fails unless `state` was written by `stage` with the settings of `config` that shape the
/// trajectory ([`TrainConfig::trajectory`]); the step count and the periodic actions may
/// change.
pub(crate) fn check_resumable<C: TrainConfig>(
    state: &TrainState,
    stage: &str,
    config: &C,
    path: &Path,
) -> Result<()> {
    let bad = |reason: String| Error::Checkpoint {
        path: path.into(),
        reason,
    };
    if state.stage != stage {
        return Err(bad(format!(
            "is a {} state, not a {stage} one",
            state.stage
        )));
    }
    let saved: C = toml::from_str(&state.config)
        .map_err(|e| bad(format!("its stored config does not parse: {e}")))?;
    for ((field, was), (_, now)) in saved.trajectory().iter().zip(config.trajectory()) {
        if *was != now {
            return Err(bad(format!(
                "was written with another `{field}`; resume with the run's own config"
            )));
        }
    }
    Ok(())
}

pub(crate) fn due(step: u64, every: u64) -> bool {
    every > 0 && step.is_multiple_of(every)
}

/// A grid with one row per given image set and up to `columns` samples per row.
///
/// Each set is `[B, 3, S, S]` in `[0, 1]` (clamped here).
pub(crate) fn save_grid(path: &Path, rows: &[&[f32]], size: usize, columns: usize) -> Result<()> {
    let per = 3 * size * size;
    let cols = rows
        .iter()
        .map(|r| r.len() / per)
        .min()
        .unwrap_or(0)
        .min(columns)
        .max(1);
    let mut grid = RgbImage::new((cols * size) as u32, (rows.len() * size) as u32);
    for (r, set) in rows.iter().enumerate() {
        for c in 0..cols.min(set.len() / per) {
            let img = &set[c * per..(c + 1) * per];
            for y in 0..size {
                for x in 0..size {
                    let px = [0, 1, 2].map(|ch| {
                        diffbir_core::image::quantize_u8(img[ch * size * size + y * size + x])
                    });
                    grid.put_pixel((c * size + x) as u32, (r * size + y) as u32, image::Rgb(px));
                }
            }
        }
    }
    diffbir_core::image::save_image(path, &image::DynamicImage::ImageRgb8(grid))?;
    Ok(())
}
