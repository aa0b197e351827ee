//! Stage-2 networks at their official sizes (random weights): the VAE on 512×512 images, the
//! UNet, the IRControlNet alone and one full ControlLdm step (IRControlNet + UNet) on a 64×64
//! latent, and the text encoder on two prompts. One sampler step with classifier-free guidance
//! is timed both ways: as the samplers run it, both branches in one batch-2 call through
//! `ClassifierFree` (`cfg_step/64x64/b2`), and as the original does, two batch-1 calls
//! (`cfg_step/64x64/2xb1`). The 2048² tiled VAE
//! decode is in the `stage2_large` bench.
//!
//! Reference PyTorch CPU times (2 threads, fp32) from the project's performance baseline:
//! VAE encode 8.25 s, VAE decode 17.2 s, ControlNet+UNet 7.12 s (batch 1) and 12.9 s
//! (batch 2), ControlNet alone 1.66 s (b1) and 3.76 s (b2), one step as the original runs it
//! (two batch-1 calls) 14.2 s, text encoder on 2 prompts 0.65 s. `cargo xtask bench
//! --compare-torch` times PyTorch on the same shapes.

use std::time::Duration;

use burn::tensor::{Distribution, Int, Tensor, TensorData};
use criterion::{Criterion, criterion_group, criterion_main};
use diffbir::sampler::{ClassifierFree, Denoiser, GuidedCond, ModelTimesteps, Parameterization};
use diffbir_benches::bench_device;
use diffbir_controlnet::{ControlCond, ControlDenoiser, ControlLdm, ControlNetConfig};
use diffbir_ldm::clip::ClipTextConfig;
use diffbir_ldm::unet::Control;
use diffbir_ldm::{UnetConfig, VaeConfig};

fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10).measurement_time(Duration::from_secs(60));
    g
}

fn vae(c: &mut Criterion) {
    let (name, device) = bench_device();
    let vae = VaeConfig::sd21().init(&device);
    let image = Tensor::<4>::random([1, 3, 512, 512], Distribution::Uniform(-1.0, 1.0), &device);
    let latent = Tensor::<4>::random([1, 4, 64, 64], Distribution::Default, &device);
    let mut g = group(c, "vae");
    g.bench_function(format!("encode/512x512/{name}"), |b| {
        b.iter(|| vae.encode(image.clone()).mode().into_data())
    });
    g.bench_function(format!("decode/64x64/{name}"), |b| {
        b.iter(|| vae.decode(latent.clone()).into_data())
    });
    g.finish();
}

fn denoiser(c: &mut Criterion) {
    let (name, device) = bench_device();
    let cldm = ControlLdm {
        unet: UnetConfig::sd21().init(&device),
        controlnet: ControlNetConfig::sd21()
            .init(&device)
            .expect("valid preset"),
    };
    let mut g = group(c, "denoiser");
    for batch in [1, 2] {
        let x = Tensor::<4>::random([batch, 4, 64, 64], Distribution::Default, &device);
        let hint = Tensor::<4>::random([batch, 4, 64, 64], Distribution::Default, &device);
        let t = Tensor::<1>::full([batch], 500.0, &device);
        let ctx = Tensor::<3>::random([batch, 77, 1024], Distribution::Default, &device);
        g.bench_function(format!("unet/64x64/b{batch}/{name}"), |b| {
            b.iter(|| {
                cldm.unet
                    .forward(x.clone(), t.clone(), &ctx, Control::None)
                    .into_data()
            })
        });
        g.bench_function(format!("controlnet/64x64/b{batch}/{name}"), |b| {
            b.iter(|| {
                cldm.controlnet
                    .forward(x.clone(), hint.clone(), t.clone(), &ctx)
                    .into_iter()
                    .map(|r| r.into_data())
                    .collect::<Vec<_>>()
            })
        });
        g.bench_function(format!("controlldm/64x64/b{batch}/{name}"), |b| {
            b.iter(|| {
                cldm.forward(x.clone(), t.clone(), &ctx, hint.clone(), &[1.0; 13])
                    .into_data()
            })
        });
    }
    // One guided step as the samplers evaluate it (both branches in one batch-2 call), and as
    // the original does (two batch-1 calls); same condition latent, different text, scale 6.
    let model = ControlDenoiser {
        cldm: &cldm,
        strength: 1.0,
        parameterization: Parameterization::V,
    };
    let guided = ClassifierFree::new(model, 6.0);
    let x = Tensor::<4>::random([1, 4, 64, 64], Distribution::Default, &device);
    let c_img = Tensor::<4>::random([1, 4, 64, 64], Distribution::Default, &device);
    let text = || Tensor::<3>::random([1, 77, 1024], Distribution::Default, &device);
    let cond = GuidedCond {
        cond: ControlCond {
            c_txt: text(),
            c_img: c_img.clone(),
        },
        uncond: Some(ControlCond {
            c_txt: text(),
            c_img,
        }),
    };
    let t = ModelTimesteps::new(500.0, 1);
    g.bench_function(format!("cfg_step/64x64/b2/{name}"), |b| {
        b.iter(|| guided.predict(x.clone(), &t, &cond).into_data())
    });
    let uncond = cond.uncond.as_ref().expect("both branches");
    g.bench_function(format!("cfg_step/64x64/2xb1/{name}"), |b| {
        b.iter(|| {
            let c = model.predict(x.clone(), &t, &cond.cond);
            let u = model.predict(x.clone(), &t, uncond);
            (u.clone() + (c - u).mul_scalar(6.0)).into_data()
        })
    });
    g.finish();
}

fn text_encoder(c: &mut Criterion) {
    let (name, device) = bench_device();
    let clip = ClipTextConfig::vit_h14().init(&device);
    let ids: Vec<i64> = (0..2 * 77).map(|i| (i * 37 % 49_000) as i64).collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [2, 77]), &device);
    let mut g = group(c, "text_encoder");
    g.bench_function(format!("vit_h14/2x77/{name}"), |b| {
        b.iter(|| clip.forward(tokens.clone()).into_data())
    });
    g.finish();
}

criterion_group!(benches, text_encoder, vae, denoiser);
criterion_main!(benches);
