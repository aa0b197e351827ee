//! The frozen Stable Diffusion 2.1 parts DiffBIR uses: the VAE, the UNet and the OpenCLIP
//! ViT-H/14 text encoder with its tokenizer.
#![deny(missing_docs)]

pub mod clip;
pub mod nn;
pub mod sd;
pub mod unet;
pub mod vae;
pub mod vae_tiled;

pub use clip::{ClipTextConfig, ClipTextEncoder, ClipTokenizer};
pub use unet::{Control, Unet, UnetConfig};
pub use vae::{AutoencoderKl, Latent, VaeConfig, VaeTiles};
