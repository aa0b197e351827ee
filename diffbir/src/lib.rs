//! DiffBIR blind image restoration in Rust.
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
//! - [`zoo`]: the model architectures that checkpoints can be verified against.
//!
//! Library users turn the default features (the command-line program, the downloads and the
//! CPU backend) off and pick what they need:
//!
//! ```toml
//! # "download" adds the weight downloads (`hub::Hub`).
//! diffbir = { version = "0.1", default-features = false, features = ["flex"] }
//! ```
#![warn(missing_docs)]

pub use diffbir_controlnet as controlnet;
pub use diffbir_core as core;
pub use diffbir_hub as hub;
pub use diffbir_ldm as ldm;
pub use diffbir_rm as rm;
pub use diffbir_sampler as sampler;

pub mod pipeline;
pub mod stage2;
pub mod zoo;

pub use diffbir_core::{Error, Result};
