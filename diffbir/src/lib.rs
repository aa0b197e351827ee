//! DiffBIR blind image restoration in Rust.
//!
//! Restoring a photo with the official v2.1 weights (downloaded and cached on first use):
//!
//! ```no_run
//! use diffbir::{Pipeline, Task, Version};
//!
//! let pipeline = Pipeline::builder(Task::Sr, Version::V21).seed(231).build()?;
//! let restored = pipeline.restore_path("photo.png")?;
//! diffbir::save_image("restored.png", &restored[0])?;
//! # Ok::<(), diffbir::Error>(())
//! ```
//!
//! [`PipelineBuilder`] sets the device, the precision, the seed and every option of the
//! release; [`Pipeline::restore_image_observed`] reports progress to an [`Observer`], which
//! can cancel. Stage 1 alone ([`rm`]), stage 2 alone ([`stage2`]) and the samplers
//! ([`sampler`]) are usable on their own; `examples/` has a program for each.
//!
//! This is the crate applications depend on. It re-exports the component crates and holds
//! what wires them together:
//!
//! - [`core`]: images ⇄ tensors, checkpoints and key maps, seeded noise, colour fixes, tiling,
//!   device selection;
//! - [`rm`]: stage-1 restoration networks;
//! - [`ldm`]: Stable Diffusion 2.1 parts;
//! - [`controlnet`]: the IRControlNet;
//! - [`sampler`]: noise schedules and samplers;
//! - [`pipeline`]: the whole restoration for each task and version;
//! - [`stage2`]: the generation stage (condition latent, prompts, sampler, decoding);
//! - [`hub`]: the official weight files of each task and release, downloaded, verified and
//!   cached (the downloads need the `download` feature, on by default);
//! - [`zoo`]: the model architectures that checkpoints can be verified against;
//! - `train` (feature `train`): training of both stages, the `diffbir-train` crate.
//!
//! Library users turn the default features (the command-line program, the downloads and the
//! CPU backend) off and pick what they need:
//!
//! ```toml
//! # "download" adds the weight downloads (`hub::Hub`).
//! diffbir = { version = "0.1", default-features = false, features = ["flex"] }
//! ```
#![deny(missing_docs)]

pub use diffbir_controlnet as controlnet;
pub use diffbir_core as core;
pub use diffbir_face as face;
pub use diffbir_hub as hub;
pub use diffbir_ldm as ldm;
pub use diffbir_metrics as metrics;
pub use diffbir_rm as rm;
pub use diffbir_sampler as sampler;

#[cfg(feature = "train")]
pub use diffbir_train as train;
pub use image;

mod builder;
mod error;
pub mod faces;
mod images;
mod observe;
pub mod pipeline;
pub mod plan;
mod residency;
pub mod scoring;
pub mod stage2;
pub mod zoo;

pub use builder::{DEFAULT_SEED, PipelineBuilder};
pub use diffbir_core::image::save_image;
pub use diffbir_core::{Fault, Precision};
pub use error::{Error, Result};
pub use faces::{FaceOptions, FaceRestoration};
pub use observe::{Event, Observer, Part};
pub use pipeline::{ModelConfigs, Pipeline, PipelineConfig, Task, Version, WeightFiles};
