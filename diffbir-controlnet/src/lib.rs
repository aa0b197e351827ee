//! The IRControlNet and `ControlLdm` (UNet + ControlNet + control scales) of DiffBIR.
//!
//! This crate is being built up; see the workspace `ARCHITECTURE.md` for its planned contents.
