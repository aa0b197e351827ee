//! The frozen Stable Diffusion 2.1 parts DiffBIR uses: the VAE, the UNet and the OpenCLIP
//! ViT-H/14 text encoder with its tokenizer.
//!
//! This crate is being built up; see the workspace `ARCHITECTURE.md` for its planned contents.
