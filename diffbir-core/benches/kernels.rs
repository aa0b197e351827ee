//! The CPU kernels (`diffbir_core::kernels`) against burn's operations, on the convolution
//! and attention shapes of the UNet, the VAE and stage 1, SiLU on the VAE's largest
//! activation, and the micro-kernel alone.
//! Throughput is in floating-point operations (2 per multiply-add), so criterion reports
//! FLOP/s. `cargo bench -p diffbir-core --bench kernels`.

use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use diffbir_core::kernels;

/// (name, batch, cin, cout, side, kernel)
static SHAPES: &[(&str, usize, usize, usize, usize, usize)] = &[
    ("unet-320", 1, 320, 320, 64, 3),
    ("unet-640", 1, 640, 640, 32, 3),
    ("unet-1280", 1, 1280, 1280, 16, 3),
    ("unet-1280-8", 1, 1280, 1280, 8, 3),
    ("unet-1x1-320", 1, 320, 320, 64, 1),
    ("vae-128", 1, 128, 128, 256, 3),
    ("vae-512", 1, 512, 512, 64, 3),
    ("swinir-180", 1, 180, 180, 64, 3),
    ("rrdb-64", 1, 64, 32, 128, 3),
];

fn conv(c: &mut Criterion) {
    let device = Device::flex();
    let mut group = c.benchmark_group("conv2d");
    group.sample_size(10);
    for &(name, batch, cin, cout, side, k) in SHAPES {
        let x = Tensor::<4>::random([batch, cin, side, side], Distribution::Default, &device);
        let w = Tensor::<4>::random([cout, cin, k, k], Distribution::Default, &device);
        let b = Tensor::<1>::random([cout], Distribution::Default, &device);
        let options = ConvOptions::new([1, 1], [k / 2, k / 2], [1, 1], 1);
        let flops = 2 * batch * cout * cin * k * k * side * side;
        group.throughput(Throughput::Elements(flops as u64));
        group.bench_function(BenchmarkId::new("kernels", name), |bench| {
            bench.iter(|| {
                kernels::conv2d(x.clone(), w.clone(), Some(b.clone()), options.clone()).into_data()
            })
        });
        group.bench_function(BenchmarkId::new("burn", name), |bench| {
            bench.iter(|| {
                burn::tensor::module::conv2d(x.clone(), w.clone(), Some(b.clone()), options.clone())
                    .into_data()
            })
        });
    }
    group.finish();
}

/// One thread running the micro-kernel on a tile whose operands stay in L1: the kernel's
/// ceiling on this CPU.
fn microkernel(c: &mut Criterion) {
    use kernels::microkernel::{APanel, CTile, Isa, tile};
    let Some(isa) = Isa::detect() else { return };
    let (mr, nr, k) = (isa.mr(), isa.nr(), 192);
    let a = vec![0.5f32; mr * k];
    let panels: usize = std::env::var("MK_PANELS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let b = vec![0.25f32; nr * k * panels];
    let mut out = vec![0f32; mr * nr];
    let mut group = c.benchmark_group("microkernel");
    group.throughput(Throughput::Elements((2 * mr * nr * k * 1000) as u64));
    group.bench_function(format!("{isa:?}/{mr}x{nr}x{k}x1000"), |bench| {
        bench.iter(|| {
            for _ in 0..1000 {
                let c_tile = CTile {
                    ptr: out.as_mut_ptr(),
                    ldc: nr,
                    rows: mr,
                    cols: nr,
                    accumulate: true,
                    row_bias: std::ptr::null(),
                };
                let a_panel = APanel {
                    ptr: a.as_ptr(),
                    row_stride: 1,
                    k_stride: mr,
                };
                // SAFETY: detected ISA; the buffers hold the tile's operands.
                #[allow(unsafe_code)]
                unsafe {
                    tile(isa, k, a_panel, b.as_ptr(), c_tile)
                };
            }
        })
    });
    group.finish();
}

/// (name, heads, queries, keys, dim): the UNet's self- and cross-attention at a 64×64 latent,
/// the VAE's attention at 64×64.
static ATTENTION: &[(&str, usize, usize, usize, usize)] = &[
    ("unet-self", 5, 4096, 4096, 64),
    ("unet-cross", 5, 4096, 77, 64),
    ("vae", 1, 4096, 4096, 512),
];

fn attention(c: &mut Criterion) {
    use burn::tensor::ops::AttentionModuleOptions;
    let device = Device::flex();
    let mut group = c.benchmark_group("attention");
    group.sample_size(10);
    for &(name, heads, lq, lk, d) in ATTENTION {
        let q = Tensor::<4>::random([1, heads, lq, d], Distribution::Default, &device);
        let k = Tensor::<4>::random([1, heads, lk, d], Distribution::Default, &device);
        let v = Tensor::<4>::random([1, heads, lk, d], Distribution::Default, &device);
        group.throughput(Throughput::Elements((4 * heads * lq * lk * d) as u64));
        let options = AttentionModuleOptions::default();
        group.bench_function(BenchmarkId::new("kernels", name), |bench| {
            bench.iter(|| {
                kernels::attention(q.clone(), k.clone(), v.clone(), None, None, options).into_data()
            })
        });
        group.bench_function(BenchmarkId::new("burn", name), |bench| {
            bench.iter(|| {
                burn::tensor::module::attention(
                    q.clone(),
                    k.clone(),
                    v.clone(),
                    None,
                    None,
                    options,
                )
                .into_data()
            })
        });
    }
    group.finish();
}

/// SiLU over the VAE decoder's largest activation (128 channels at 512²), on a tensor that
/// owns its buffer (ours computes in place) as the networks call it.
fn silu(c: &mut Criterion) {
    let device = Device::flex();
    let x = Tensor::<4>::random([1, 128, 512, 512], Distribution::Default, &device);
    let mut group = c.benchmark_group("silu");
    group.sample_size(10);
    group.throughput(Throughput::Elements(x.shape().num_elements() as u64));
    group.bench_function("kernels/vae-128x512x512", |bench| {
        bench.iter(|| kernels::silu(x.clone() * 1.0).into_data())
    });
    group.bench_function("burn/vae-128x512x512", |bench| {
        bench.iter(|| burn::tensor::activation::silu(x.clone() * 1.0).into_data())
    });
    group.finish();
}

criterion_group!(benches, microkernel, conv, attention, silu);
criterion_main!(benches);
