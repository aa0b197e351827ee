//! Benchmarks of the diffbir-core image operations at pipeline sizes.

use burn::tensor::{Distribution, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use diffbir_benches::bench_device;
use diffbir_core::color;
use diffbir_core::tiling::{self, TileScale, TileSpec};

fn colour_fix(c: &mut Criterion) {
    let (name, device) = bench_device();
    let content = Tensor::<4>::random([1, 3, 512, 512], Distribution::Default, &device);
    let reference = Tensor::<4>::random([1, 3, 512, 512], Distribution::Default, &device);
    c.bench_function(&format!("wavelet_reconstruction/512x512/{name}"), |b| {
        b.iter(|| {
            let y = color::wavelet_reconstruction(content.clone(), reference.clone());
            // Read back so lazy backends really compute it.
            let _ = y.into_data();
        })
    });
}

fn tiled_identity(c: &mut Criterion) {
    let (name, device) = bench_device();
    let x = Tensor::<4>::random([1, 4, 128, 128], Distribution::Default, &device);
    let spec = TileSpec {
        size: 64,
        stride: 32,
        scale: TileScale::Up(1),
    };
    c.bench_function(&format!("tiled_apply/identity/4x128x128/{name}"), |b| {
        b.iter(|| {
            let y = tiling::tiled_apply(x.clone(), spec, |t, _| t).expect("valid tiling");
            let _ = y.into_data();
        })
    });
}

criterion_group!(benches, colour_fix, tiled_identity);
criterion_main!(benches);
