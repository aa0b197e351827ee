//! Stage-1 networks at their official sizes: SwinIR and SCUNet on 512×512, BSRNet on
//! 128×128 (→ 512×512). Random weights (speed does not depend on the values).
//!
//! The reference PyTorch CPU times (2 threads) are in the project's performance baseline:
//! SwinIR 2.20 s, BSRNet 4.11 s, SCUNet 10.15 s.

use std::time::Duration;

use burn::tensor::{Distribution, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use diffbir_benches::bench_device;
use diffbir_rm::{Restorer, RrdbNetConfig, ScuNetConfig, Stage1, SwinIrConfig};

fn stage1(c: &mut Criterion) {
    let (name, device) = bench_device();
    let mut group = c.benchmark_group("stage1");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30));
    let cases = [
        (
            "swinir_diffbir/512x512",
            Stage1::SwinIr(SwinIrConfig::diffbir().init(&device)),
            512,
        ),
        (
            "bsrnet/128x128",
            Stage1::RrdbNet(RrdbNetConfig::bsrnet().init(&device)),
            128,
        ),
        (
            "scunet_psnr/512x512",
            Stage1::ScuNet(ScuNetConfig::scunet_psnr().init(&device)),
            512,
        ),
    ];
    for (label, model, side) in &cases {
        let x = Tensor::<4>::random([1, 3, *side, *side], Distribution::Default, &device);
        group.bench_function(format!("{label}/{name}"), |b| {
            b.iter(|| {
                // Read the result back so lazy backends really compute it.
                let _ = model.restore(x.clone()).into_data();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, stage1);
criterion_main!(benches);
