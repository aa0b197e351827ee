//! Training of both DiffBIR stages: degradation pipelines, datasets, trainers and exact
//! resume.
//!
//! This crate is being built up; see the workspace `ARCHITECTURE.md` for its planned contents.
