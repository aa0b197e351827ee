//! Tiled stage-1 inference: it agrees with untiled inference away from the image border, and
//! its peak memory does not grow with the number of tiles (only the output buffers do).
//!
//! Peak memory is measured with a counting global allocator, which sees every tensor the
//! flex backend allocates (`testing/counting_alloc.rs`, which needs `unsafe`).
#![allow(unsafe_code)]

use burn::tensor::{Device, Distribution, Tensor};
use diffbir_rm::{Restorer, RrdbNetConfig, Stage1};

#[path = "../../testing/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{SERIAL, peak_during};

#[global_allocator]
static GLOBAL: counting_alloc::Counting = counting_alloc::Counting;

fn model(device: &Device) -> Stage1 {
    Stage1::RrdbNet(RrdbNetConfig::tiny().init(device))
}

#[test]
fn tiled_output_matches_untiled_output() {
    let _guard = SERIAL.lock().unwrap();
    let device = Device::flex();
    let m = model(&device);
    let x = Tensor::<4>::random([1, 3, 72, 96], Distribution::Default, &device);
    let untiled = m.restore(x.clone());
    let tiled = m.restore_tiled(x, 48, 24).unwrap();
    assert_eq!(tiled.dims(), untiled.dims());
    let diff: f32 = (tiled - untiled).abs().max().into_scalar();
    // Tile borders carry Gaussian weights of ~1e-5, so border effects are damped away.
    assert!(diff < 2e-3, "max |tiled - untiled| = {diff}");
}

#[test]
fn peak_memory_does_not_grow_with_the_tile_count() {
    let _guard = SERIAL.lock().unwrap();
    let device = Device::flex();
    let m = model(&device);
    let f32_bytes = |shape: [usize; 4]| shape.iter().product::<usize>() * 4;
    let mut working = Vec::new();
    for side in [64, 128, 256] {
        let x = Tensor::<4>::random([1, 3, side, side], Distribution::Default, &device);
        let (y, peak) = peak_during(|| m.restore_tiled(x.clone(), 64, 32).unwrap().into_data());
        // What has to grow with the image: the output, the blend accumulator and its weights.
        let out = f32_bytes([1, 3, 4 * side, 4 * side]);
        let buffers = 3 * out + f32_bytes([1, 1, 4 * side, 4 * side]);
        working.push(peak.saturating_sub(buffers));
        drop(y);
    }
    let untiled_peak = {
        let x = Tensor::<4>::random([1, 3, 256, 256], Distribution::Default, &device);
        peak_during(|| m.restore(x).into_data()).1
    };
    // 1 tile, 9 tiles, 49 tiles: the working memory beyond the output stays that of a tile.
    assert!(
        working[2] < 2 * working[0].max(1 << 20),
        "working memory grew with the tile count: {working:?}"
    );
    assert!(
        untiled_peak > 4 * working[2],
        "untiled peak {untiled_peak} should dwarf the tiled working memory {working:?}"
    );
}
