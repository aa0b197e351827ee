//! Stage-1 restoration networks of DiffBIR: the SwinIR variant, BSRNet (RRDBNet ×4) and
//! SCUNet. They remove degradations before the diffusion stage.
//!
//! This crate is being built up; see the workspace `ARCHITECTURE.md` for its planned contents.
