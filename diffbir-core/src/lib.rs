//! Shared foundations of diffbir-rs.
//!
//! Everything the model crates and the pipeline have in common:
//!
//! - [`image`]: image files ⇄ `[B, 3, H, W]` tensors in `[0, 1]`, with atomic writes;
//! - [`checkpoint`] and [`weights`]: reading `.safetensors`/`.pth`/`.ckpt` files and loading
//!   them strictly into burn modules through per-model [`KeyMap`]s;
//! - [`save`]: writing PyTorch-format and `.safetensors` checkpoints;
//! - [`noise`]: seeded, backend-independent noise that can replay recorded draws;
//! - [`color`]: the wavelet and AdaIN colour fixes;
//! - [`resize`]: PyTorch's antialiased bicubic resize, PIL's 8-bit bicubic resize, short-edge
//!   resizing, padding to multiples and the pipeline's post-processing;
//! - [`tiling`]: sliding windows, Gaussian weights and tiled evaluation;
//! - [`device`]: turning `cpu`, `wgpu` or `cuda:1` into a burn `Device`;
//! - [`precision`]: f32, f16 or bf16 inference (weights cast after loading);
//! - [`named`]: enums whose names come from one table (`FromStr`, `Display`, serde);
//! - [`release`]: the DiffBIR tasks and releases (`sr`, `face`, `denoise`; `v1`, `v2`, `v2.1`);
//! - [`alloc`]: the host allocator setting the programs start with;
//! - [`Error`]: one error type, sorted by whose fault a failure is.
//!
//! ```no_run
//! use diffbir_core::{device::parse_device, image, color::ColorFix};
//!
//! let device = parse_device("cpu")?;
//! let (x, meta) = image::read_image("photo.png", &image::ReadOptions::default(), &device)?;
//! let fixed = ColorFix::Wavelet.apply(x.clone(), x);
//! let out = image::tensor_to_image(fixed.squeeze_dim(0), meta.alpha.as_ref(), &image::SaveOptions::like(&meta));
//! image::save_image("out.png", &out)?;
//! # Ok::<(), diffbir_core::Error>(())
//! ```
#![deny(missing_docs)]

pub mod alloc;
pub mod checkpoint;
pub mod color;
pub mod device;
mod error;
pub mod gaussian;
pub mod image;
pub mod kernels;
pub mod named;
pub mod noise;
mod pickle_guard;
pub mod precision;
pub mod release;
pub mod resize;
pub mod save;
pub mod tiling;
pub mod weights;

pub use checkpoint::{Checkpoint, CheckpointFormat, TensorInfo};
pub use error::{Error, Fault, Result};
pub use noise::NoiseSource;
pub use precision::{Precision, cast_module};
pub use weights::{KeyMap, KeyRule, LoadReport, apply_checkpoint, load_into};
