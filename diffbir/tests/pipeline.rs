//! The whole pipeline on real photos with the tiny random-weight models of the reference
//! fixtures (SD-layout checkpoint, raw ControlNet file, SwinIR weights).

#[path = "../../testing/fixtures.rs"]
mod fixtures;

use std::path::PathBuf;

use burn::tensor::Device;
use diffbir::controlnet::ControlNetConfig;
use diffbir::core::NoiseSource;
use diffbir::ldm::clip::ClipTextConfig;
use diffbir::ldm::{UnetConfig, VaeConfig};
use diffbir::pipeline::{Pipeline, PipelineConfig, Task, Version, WeightFiles};
use diffbir::rm::{Stage1Config, SwinIrConfig};
use diffbir::sampler::{SamplerConfig, SamplerKind, SamplerOptions};

fn shared() -> PathBuf {
    fixtures::fixtures()
}

/// A v2.1 SR pipeline with the fixtures' tiny networks and one sampler step (the networks
/// still run at the reference's 512-pixel working size, so keep the runs few).
fn tiny_pipeline(upscale: f64, n_samples: usize) -> Pipeline {
    tiny_pipeline_with(upscale, n_samples, 2, "edm_euler", 1)
}

fn tiny_pipeline_with(
    upscale: f64,
    n_samples: usize,
    batch_size: usize,
    sampler: &str,
    steps: usize,
) -> Pipeline {
    let fixtures = shared();
    let mut config = PipelineConfig::new(Task::Sr, Version::V21);
    config.models.stage1 = Stage1Config::SwinIr(SwinIrConfig::tiny());
    config.models.unet = UnetConfig::tiny();
    config.models.controlnet = ControlNetConfig::tiny();
    config.models.vae = VaeConfig::tiny();
    config.models.clip = ClipTextConfig::tiny();
    config.stage2.sampler = sampler
        .parse::<SamplerKind>()
        .map(|kind| SamplerConfig::new(kind, steps, &SamplerOptions::new()))
        .unwrap();
    config.upscale = upscale;
    config.n_samples = n_samples;
    config.batch_size = batch_size;
    let files = WeightFiles {
        stage1: fixtures.join("swinir_tiny.weights.safetensors"),
        sd: fixtures.join("sd_tiny.sd21_format.ckpt"),
        controlnet: fixtures.join("sd_tiny.controlnet_format.pth"),
        bpe_vocab: fixtures.join("bpe_simple_vocab_16e6.txt.gz"),
        face: None,
    };
    Pipeline::load(config, &files, &Device::flex()).unwrap()
}

#[test]
fn restores_a_real_photo_to_the_upscaled_size_reproducibly() {
    let pipeline = tiny_pipeline(2.0, 2);
    let image = image::open(shared().join("../images/real47/1.jpg")).unwrap(); // 276×182
    let run = || {
        let mut noise = NoiseSource::seeded(231);
        pipeline.restore(&image, &mut noise, &mut ()).unwrap()
    };
    let first = run();
    assert_eq!(first.len(), 2);
    for sample in &first {
        assert_eq!(sample.dims(), [1, 3, 364, 552]);
    }
    // Same seed, same result; samples of one image differ through their noise.
    let again = run();
    let same: f32 = (first[0].clone() - again[0].clone())
        .abs()
        .max()
        .into_scalar();
    assert_eq!(same, 0.0);
    let differ: f32 = (first[0].clone() - first[1].clone())
        .abs()
        .max()
        .into_scalar();
    assert!(differ > 0.0);
}

#[test]
fn a_sample_depends_on_the_seed_and_its_index_only() {
    // An ancestral sampler draws fresh noise at every step besides the start latent.
    // Square, so the reference's 512-pixel working size stays 512×512.
    let image = image::open(shared().join("../images/real47/1.jpg"))
        .unwrap()
        .crop_imm(0, 0, 182, 182)
        .thumbnail(64, 64);
    let run = |batch_size: usize, before: Option<&image::DynamicImage>| {
        let pipeline = tiny_pipeline_with(1.0, 2, batch_size, "edm_euler_a", 2);
        let mut noise = NoiseSource::seeded(5);
        if let Some(other) = before {
            pipeline.restore(other, &mut noise, &mut ()).unwrap();
        }
        pipeline.restore(&image, &mut noise, &mut ()).unwrap()
    };
    let reference = run(2, None);
    let other = image.fliph();
    for (batch_size, before) in [(1, None), (2, Some(&other))] {
        let samples = run(batch_size, before);
        for (i, (a, b)) in samples.iter().zip(&reference).enumerate() {
            let diff: f32 = (a.clone() - b.clone()).abs().max().into_scalar();
            // Batched convolutions may round differently; other noise differs by far more.
            assert!(
                diff < 1e-4,
                "sample {i} with batch size {batch_size} (another image first: {}) differs by {diff}",
                before.is_some()
            );
        }
    }
    let apart: f32 = (reference[0].clone() - reference[1].clone())
        .abs()
        .max()
        .into_scalar();
    assert!(apart > 1e-2, "samples 0 and 1 should differ");
}

#[test]
fn a_checkpoint_for_another_model_is_refused() {
    let fixtures = shared();
    let mut config = PipelineConfig::new(Task::Sr, Version::V21);
    config.models.stage1 = Stage1Config::SwinIr(SwinIrConfig::tiny());
    let files = WeightFiles {
        // The RRDBNet weights where SwinIR is expected.
        stage1: fixtures.join("rrdbnet_tiny.weights.safetensors"),
        sd: fixtures.join("sd_tiny.sd21_format.ckpt"),
        controlnet: fixtures.join("sd_tiny.controlnet_format.pth"),
        bpe_vocab: fixtures.join("bpe_simple_vocab_16e6.txt.gz"),
        face: None,
    };
    let err = Pipeline::load(config, &files, &Device::flex()).unwrap_err();
    assert!(
        err.to_string().contains("rrdbnet_tiny.weights.safetensors"),
        "{err}"
    );
}

#[test]
fn copies_with_other_settings_share_the_networks_across_threads() {
    fn shareable<T: Send + Sync>(_: &T) {}
    let pipeline = tiny_pipeline(1.0, 1);
    shareable(&pipeline);
    let mut config = pipeline.config().clone();
    config.upscale = 2.0;
    let upscaled = pipeline.with_config(config).unwrap();
    let image = image::open(shared().join("../images/real47/1.jpg"))
        .unwrap()
        .thumbnail(48, 48);
    // Both restore at once from two threads, each with its own settings.
    let run = |p: &Pipeline| {
        let mut noise = NoiseSource::seeded(1);
        p.restore(&image, &mut noise, &mut ()).unwrap()[0].dims()
    };
    let (one, two) = std::thread::scope(|s| {
        let a = s.spawn(|| run(&pipeline));
        let b = s.spawn(|| run(&upscaled));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (w, h) = (image.width() as usize, image.height() as usize);
    assert_eq!(one, [1, 3, h, w]);
    assert_eq!(two, [1, 3, 2 * h, 2 * w]);

    // What the networks were loaded with stays.
    for (what, config) in [
        ("task", PipelineConfig::new(Task::Denoise, Version::V21)),
        ("version", PipelineConfig::new(Task::Sr, Version::V2)),
    ] {
        let err = pipeline.with_config(config).unwrap_err();
        assert!(err.to_string().contains(what), "{err}");
    }
    let mut config = pipeline.config().clone();
    config.precision = diffbir::core::Precision::Bf16;
    assert!(pipeline.with_config(config).is_err());
    // Settings are validated as at load time.
    let mut config = pipeline.config().clone();
    config.n_samples = 0;
    assert!(pipeline.with_config(config).is_err());
}
