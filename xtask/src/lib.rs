//! Developer tasks of diffbir-rs, run as `cargo xtask <command>`.
//!
//! - `parity`: runs the reference cases of a fixtures folder against this implementation.

pub mod parity;
