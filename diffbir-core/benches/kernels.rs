//! The CPU kernels (`diffbir_core::kernels`) against burn's operations, on the convolution,
//! linear and attention shapes of the UNet, the VAE and stage 1, SiLU on the VAE's largest
//! activation, and the micro-kernels alone; convolutions and linear layers also in bf16 where
//! the CPU has AVX-512 BF16 (`kernels-bf16`).
//! Throughput is in floating-point operations (2 per multiply-add), so criterion reports
//! FLOP/s. `cargo bench -p diffbir-core --bench kernels`.

use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Device, Distribution, Tensor};
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

/// Whether this CPU runs the bf16 kernels.
fn has_bf16() -> bool {
    kernels::microkernel::Isa::detect().is_some_and(|isa| isa.has_bf16())
}

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
        if has_bf16() {
            let (x, w, b) = (
                x.cast(DType::BF16),
                w.cast(DType::BF16),
                b.cast(DType::BF16),
            );
            group.bench_function(BenchmarkId::new("kernels-bf16", name), |bench| {
                bench.iter(|| {
                    kernels::conv2d(x.clone(), w.clone(), Some(b.clone()), options.clone())
                        .into_data()
                })
            });
        }
    }
    group.finish();
}

/// (name, tokens, d_input, d_output): the UNet's projections at a 64×64 latent (batch 2), its
/// GEGLU, the keys from the text context, and the text encoder's MLP.
static LINEAR: &[(&str, usize, usize, usize)] = &[
    ("unet-proj-320", 8192, 320, 320),
    ("unet-geglu-320", 8192, 320, 2560),
    ("unet-ff-out-320", 8192, 1280, 320),
    ("unet-proj-1280", 512, 1280, 1280),
    ("unet-context-k", 154, 1024, 320),
    ("clip-mlp", 154, 1024, 4096),
];

fn linear(c: &mut Criterion) {
    let device = Device::flex();
    let mut group = c.benchmark_group("linear");
    group.sample_size(10);
    for &(name, tokens, d_in, d_out) in LINEAR {
        let x = Tensor::<2>::random([tokens, d_in], Distribution::Default, &device);
        // Stored `[d_output, d_input]` and transposed, as checkpoints load.
        let w = Tensor::<2>::random([d_out, d_in], Distribution::Default, &device).transpose();
        let b = Tensor::<1>::random([d_out], Distribution::Default, &device);
        group.throughput(Throughput::Elements((2 * tokens * d_in * d_out) as u64));
        group.bench_function(BenchmarkId::new("kernels", name), |bench| {
            bench.iter(|| kernels::linear(x.clone(), w.clone(), Some(b.clone())).into_data())
        });
        group.bench_function(BenchmarkId::new("burn", name), |bench| {
            bench.iter(|| {
                burn::tensor::module::linear(x.clone(), w.clone(), Some(b.clone())).into_data()
            })
        });
        if has_bf16() {
            let (x, w, b) = (
                x.cast(DType::BF16),
                w.cast(DType::BF16),
                b.cast(DType::BF16),
            );
            group.bench_function(BenchmarkId::new("kernels-bf16", name), |bench| {
                bench.iter(|| kernels::linear(x.clone(), w.clone(), Some(b.clone())).into_data())
            });
        }
    }
    group.finish();
}

/// One thread running the micro-kernels on a tile whose operands stay in L1: the kernels'
/// ceiling on this CPU.
fn microkernel(c: &mut Criterion) {
    use kernels::microkernel::{APanel, CTile, Isa, TileBias, bf16, tile, tile_bf16};
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
                    bias: TileBias::None,
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
    if isa.has_bf16() {
        let a = vec![bf16::from_f32(0.5); mr * k];
        let b = vec![bf16::from_f32(0.25); nr * k * panels];
        group.bench_function(format!("{isa:?}-bf16/{mr}x{nr}x{k}x1000"), |bench| {
            bench.iter(|| {
                for _ in 0..1000 {
                    let c_tile = CTile {
                        ptr: out.as_mut_ptr(),
                        ldc: nr,
                        rows: mr,
                        cols: nr,
                        accumulate: true,
                        bias: TileBias::None,
                    };
                    let a_panel = APanel {
                        ptr: a.as_ptr(),
                        row_stride: k,
                        k_stride: 1,
                    };
                    // SAFETY: detected ISA with bf16; the buffers hold the tile's operands.
                    #[allow(unsafe_code)]
                    unsafe {
                        tile_bf16(isa, k, a_panel, b.as_ptr(), c_tile)
                    };
                }
            })
        });
    }
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

criterion_group!(benches, microkernel, conv, linear, attention, silu);
criterion_main!(benches);
