//! Shared helpers of the diffbir-rs benchmarks.
#![deny(missing_docs)]

use burn::tensor::Device;
use diffbir_core::device::DeviceSpec;

/// The device benchmarks run on: `DIFFBIR_BENCH_DEVICE` (e.g. `wgpu`), else the CPU.
///
/// # Panics
///
/// When the variable names a device this build cannot open.
pub fn bench_device() -> (String, Device) {
    let name = std::env::var("DIFFBIR_BENCH_DEVICE").unwrap_or_else(|_| "cpu".into());
    let spec: DeviceSpec = name
        .parse()
        .unwrap_or_else(|e| panic!("DIFFBIR_BENCH_DEVICE: {e}"));
    let device = spec
        .device()
        .unwrap_or_else(|e| panic!("DIFFBIR_BENCH_DEVICE: {e}"));
    (spec.to_string(), device)
}
