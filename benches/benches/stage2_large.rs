//! Stage 2 at a large size: the tiled VAE decode of a 2048×2048 image (256×256 latent) in tiles
//! of 32 latents, DiffBIR's default `--vae_decoder_tile_size 256`
//! (`XPixelGroup/DiffBIR@3f8b530:inference.py:L151-L153`, divided by 8 in
//! `diffbir/pipeline.py:L229`). Random weights.
//!
//! One iteration takes minutes on a CPU (it decodes about 2.6× the pixels of the image, each
//! tile with its margin), so this bench is apart from `stage2`: `cargo bench --bench
//! stage2_large`. `cargo xtask bench --component vae-decode-tiled` times it once.

use std::time::Duration;

use burn::tensor::{Distribution, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use diffbir_benches::bench_device;
use diffbir_ldm::VaeConfig;

fn vae_tiled(c: &mut Criterion) {
    let (name, device) = bench_device();
    let vae = VaeConfig::sd21().init(&device);
    let latent = Tensor::<4>::random([1, 4, 256, 256], Distribution::Default, &device);
    let mut g = c.benchmark_group("vae_tiled");
    g.sample_size(10).measurement_time(Duration::from_secs(60));
    g.bench_function(format!("decode/256x256/tile32/{name}"), |b| {
        b.iter(|| vae.decode_tiled(latent.clone(), 32, None).into_data())
    });
    g.finish();
}

criterion_group!(benches, vae_tiled);
criterion_main!(benches);
