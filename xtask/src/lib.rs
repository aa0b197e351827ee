//! Developer tasks of diffbir-rs, run as `cargo xtask <command>`.
//!
//! - `bench`: one-shot timings of every network at its official size;
//! - `differential`: every network family on a device (wgpu, …) against the CPU backend, over
//!   randomly drawn small configurations;
//! - `eval`: restores a folder of degraded images and tabulates the metrics of stage 1 and
//!   of the whole restoration;
//! - `parity`: runs the reference cases of a fixtures folder against this implementation;
//! - `fake-checkpoint`: writes a random-weight checkpoint in an official on-disk layout from a
//!   key manifest, or (`--tiny`) a folder of tiny random models under every official file
//!   name.

pub mod bench;
pub mod differential;
pub mod eval;
pub mod fake_checkpoint;
pub mod parity;
