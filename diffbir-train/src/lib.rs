//! Training of both DiffBIR stages: degradation pipelines, datasets, trainers and exact
//! resume.
//!
//! This crate is being built up; see the workspace `ARCHITECTURE.md` for its planned contents.
//! So far it holds:
//!
//! - [`degradation`]: the operations DiffBIR's training data synthesis is made of (blur
//!   kernels, `filter2D` and USM sharpening, DiffJPEG, Gaussian noise, the CodeFormer
//!   dataset's OpenCV blur and resizes).
#![warn(missing_docs)]

pub mod degradation;
