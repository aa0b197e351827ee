//! The subcommands of the `diffbir` program that restore images.

pub mod args;
pub mod faces;
pub mod restore;
pub mod values;
