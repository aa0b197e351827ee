//! Noise schedules, samplers, classifier-free guidance, restoration guidance and tiled
//! sampling of DiffBIR.
//!
//! This crate is being built up; see the workspace `ARCHITECTURE.md` for its planned contents.
