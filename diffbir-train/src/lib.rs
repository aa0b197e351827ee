//! Training of both DiffBIR stages: datasets and degradations, the stage-1 and stage-2
//! trainers, atomic checkpoints and exact resume.
//!
//! - [`degradation`]: the operations DiffBIR's training data synthesis is made of (blur
//!   kernels, `filter2D` and USM sharpening, DiffJPEG, Gaussian noise, the CodeFormer
//!   dataset's OpenCV blur and resizes);
//! - [`data`]: file lists and folders, the `CodeformerDataset` crops and degradations, and
//!   a loader preparing batches on worker threads beside the training step;
//! - [`realesrgan`]: v2.1's `RealESRGANDataset` (parquet lists with long and short
//!   captions) and `RealESRGANBatchTransform` (the second-order degradation and its
//!   training-pair pools, run on the training device);
//! - [`config`]: TOML configs mirroring `configs/train/train_stage{1,2}.yaml`;
//! - [`stage1`], [`stage2`]: the trainers;
//! - [`optim`]: AdamW with PyTorch's update rule and path-keyed, saveable state;
//! - [`parallel`]: data parallelism over several devices (`train.device = "cuda:0,cuda:1"`):
//!   the global batch split over replicas, their gradients combined with burn's
//!   multi-device gradients, one update equal to the single-device one;
//! - [`state`]: checkpoints (weights under the official names, and resumable states);
//! - [`metrics`]: PSNR and SSIM.
//!
//! Every random draw of a run derives from its seed and the step (or sample) index, so a run
//! resumed from a checkpoint follows the uninterrupted run's trajectory exactly.
//!
//! ```no_run
//! use diffbir_train::{RunOptions, config::{Stage1TrainConfig, load_config}, stage1::train_stage1};
//!
//! let config: Stage1TrainConfig = load_config("diffbir-train/configs/tiny-stage1.toml".as_ref())?;
//! let options = RunOptions { out: "runs/tiny".into(), steps: Some(100), resume: true };
//! let summary = train_stage1(&config, &options, &mut |_event| {})?;
//! println!("weights: {}", summary.weights.display());
//! # Ok::<(), diffbir_train::Error>(())
//! ```
#![deny(missing_docs)]

mod checks;
pub mod config;
pub mod data;
pub mod degradation;
mod error;
pub mod metrics;
pub mod optim;
pub mod parallel;
pub mod realesrgan;
mod run;
pub mod stage1;
pub mod stage2;
pub mod state;
mod trainer;

pub use error::{Error, Result};
pub use run::{Event, RunOptions, Summary, Validation};
