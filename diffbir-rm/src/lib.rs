//! Stage-1 restoration networks of DiffBIR: the SwinIR variant, BSRNet (RRDBNet ×4) and
//! SCUNet. They remove degradations before the diffusion stage.
//!
//! ```no_run
//! use diffbir_core::{Checkpoint, Precision, device::parse_device};
//! use diffbir_rm::{Restorer, Stage1Config, swinir::{SwinIrConfig, SWINIR_GENERAL_KEYS}};
//!
//! let device = parse_device("cpu")?;
//! let checkpoint = Checkpoint::open("general_swinir_v1.ckpt")?;
//! let config = Stage1Config::SwinIr(SwinIrConfig::diffbir());
//! let (model, report) = config.load(&checkpoint, &SWINIR_GENERAL_KEYS, Precision::F32, &device)?;
//! # let lq = burn::tensor::Tensor::<4>::zeros([1, 3, 512, 512], &device);
//! let restored = model.restore(lq);
//! # Ok::<(), diffbir_core::Error>(())
//! ```
#![deny(missing_docs)]

pub mod ops;
mod restorer;
pub mod rrdbnet;
pub mod scunet;
pub mod swinir;

pub use restorer::{Restorer, Stage1, Stage1Config};
pub use rrdbnet::{RrdbNet, RrdbNetConfig};
pub use scunet::{ScuNet, ScuNetConfig};
pub use swinir::{SwinIr, SwinIrConfig};
