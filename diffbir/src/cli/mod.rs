//! The subcommands of the `diffbir` program that restore and score images.

pub mod args;
pub mod faces;
pub mod metrics;
pub mod restore;
pub mod values;
