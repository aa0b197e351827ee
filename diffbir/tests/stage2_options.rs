//! Stage-2 options with the fixtures' tiny networks: restoration guidance and VAE tiling, and
//! their settings on the command line.

#[path = "../../testing/fixtures.rs"]
mod fixtures;

use std::process::Command;

use burn::tensor::{Device, Tensor};
use diffbir::controlnet::ControlNetConfig;
use diffbir::core::NoiseSource;
use diffbir::core::image::image_to_tensor;
use diffbir::ldm::clip::ClipTextConfig;
use diffbir::ldm::{UnetConfig, VaeConfig};
use diffbir::pipeline::{Pipeline, PipelineConfig, Residency, Task, Version, WeightFiles};
use diffbir::rm::{Stage1Config, SwinIrConfig};
use diffbir::sampler::{
    GuidanceDomain, GuidanceLoss, RestorationGuidanceConfig, SamplerConfig, SamplerKind,
    SamplerOptions,
};
use diffbir::stage2::{Stage2Options, VaeTiling};

/// A v2 pipeline (spaced sampler) with the fixtures' tiny networks, resident.
fn tiny_pipeline() -> Pipeline {
    tiny_pipeline_with(Residency::Resident)
}

/// A v2 pipeline (spaced sampler) with the fixtures' tiny networks, loaded as `residency`
/// says.
fn tiny_pipeline_with(residency: Residency) -> Pipeline {
    let fixtures = fixtures::fixtures();
    let mut config = PipelineConfig::new(Task::Sr, Version::V2);
    config.models.stage1 = Stage1Config::SwinIr(SwinIrConfig::tiny());
    config.models.unet = UnetConfig::tiny();
    config.models.controlnet = ControlNetConfig::tiny();
    config.models.vae = VaeConfig::tiny();
    config.models.clip = ClipTextConfig::tiny();
    config.stage2.sampler = SamplerConfig::new(SamplerKind::Spaced, 3, &SamplerOptions::new());
    config.residency = residency;
    let files = WeightFiles {
        stage1: fixtures.join("swinir_tiny.weights.safetensors"),
        sd: fixtures.join("sd_tiny.sd21_format.ckpt"),
        controlnet: fixtures.join("sd_tiny.controlnet_format.pth"),
        bpe_vocab: fixtures.join("bpe_simple_vocab_16e6.txt.gz"),
        face: None,
    };
    Pipeline::load(config, &files, &Device::flex()).unwrap()
}

/// A 64×64 crop of a real photo in `[0, 1]`.
fn condition() -> Tensor<4> {
    let photo = image::open(fixtures::fixtures().join("../images/real47/1.jpg")).unwrap();
    let (x, _) = image_to_tensor(&photo.crop_imm(40, 40, 64, 64), &Device::flex());
    x
}

fn run(pipeline: &Pipeline, options: &Stage2Options) -> diffbir::core::Result<Tensor<4>> {
    let mut noise = NoiseSource::seeded(231);
    pipeline
        .stage2()
        .expect("resident networks")
        .apply(condition(), options, &mut noise, &mut ())
}

fn max_abs_diff(a: &Tensor<4>, b: &Tensor<4>) -> f32 {
    (a.clone() - b.clone()).abs().max().into_scalar::<f32>()
}

#[test]
fn guidance_changes_the_sample_in_both_spaces_and_a_zero_scale_changes_nothing() {
    let pipeline = tiny_pipeline();
    let base = pipeline.config().stage2.clone();
    let free = run(&pipeline, &base).unwrap();
    assert_eq!(free.dims(), [1, 3, 64, 64]);
    for (loss, space) in [
        (GuidanceLoss::Mse, GuidanceDomain::Latent),
        (GuidanceLoss::Mse, GuidanceDomain::Rgb),
        (GuidanceLoss::WeightedMse, GuidanceDomain::Rgb),
    ] {
        let mut options = base.clone();
        options.guidance = Some(RestorationGuidanceConfig::new(loss, space, 0.05));
        let guided = run(&pipeline, &options).unwrap();
        assert_eq!(guided.dims(), free.dims());
        let diff = max_abs_diff(&guided, &free);
        assert!(
            diff > 1e-3,
            "{loss:?} in {space:?} changed nothing ({diff})"
        );
    }
    // RGB guidance draws no noise, so a zero scale leaves the run exactly as it was.
    let mut options = base.clone();
    options.guidance = Some(RestorationGuidanceConfig::new(
        GuidanceLoss::Mse,
        GuidanceDomain::Rgb,
        0.0,
    ));
    assert_eq!(max_abs_diff(&run(&pipeline, &options).unwrap(), &free), 0.0);
}

#[test]
fn guidance_is_refused_where_the_original_has_none() {
    let pipeline = tiny_pipeline();
    let guidance = RestorationGuidanceConfig::new(GuidanceLoss::Mse, GuidanceDomain::Latent, 1.0);
    let mut edm = pipeline.config().stage2.clone();
    edm.sampler = SamplerConfig::new(SamplerKind::EdmEuler, 3, &SamplerOptions::new());
    edm.guidance = Some(guidance.clone());
    let mut tiled = pipeline.config().stage2.clone();
    tiled.cldm_tile = Some((64, 32));
    tiled.guidance = Some(guidance);
    let mut latent_w_mse = pipeline.config().stage2.clone();
    latent_w_mse.guidance = Some(RestorationGuidanceConfig::new(
        GuidanceLoss::WeightedMse,
        GuidanceDomain::Latent,
        1.0,
    ));
    for (options, expected) in [(edm, "spaced"), (tiled, "tiled"), (latent_w_mse, "rgb")] {
        let err = run(&pipeline, &options).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
    }
}

/// Loading the networks per stage changes when they are in memory, not what they compute:
/// whole restorations (stage 1 included) equal the resident pipeline's bit for bit, with
/// restoration guidance (the VAE beside the diffusion networks) and with tiled stages.
#[test]
fn networks_loaded_per_stage_restore_exactly_as_resident_ones() {
    let resident = tiny_pipeline();
    let per_stage = tiny_pipeline_with(Residency::PerStage);
    assert!(per_stage.stage2().is_none());
    let photo = image::open(fixtures::fixtures().join("../images/real47/1.jpg")).unwrap();
    let photo = photo.crop_imm(40, 40, 48, 40);
    let mut base = resident.config().clone();
    base.stage2.sampler = SamplerConfig::new(SamplerKind::Spaced, 2, &SamplerOptions::new());
    let mut guided = base.clone();
    // Latent guidance still holds the VAE beside the diffusion networks (it encodes the
    // target), at less cost than RGB guidance's decoding at every step.
    guided.stage2.guidance = Some(RestorationGuidanceConfig::new(
        GuidanceLoss::Mse,
        GuidanceDomain::Latent,
        0.05,
    ));
    let mut tiled = base;
    tiled.upscale = 2.0;
    tiled.cleaner_tile = Some((64, 32));
    tiled.stage2.vae_decoder_tile = Some(256);
    tiled.stage2.cldm_tile = Some((256, 128));
    tiled.n_samples = 2;
    for config in [guided, tiled] {
        let [a, b] = [&resident, &per_stage].map(|pipeline| {
            let pipeline = pipeline.with_config(config.clone()).unwrap();
            let mut noise = NoiseSource::seeded(231);
            pipeline.restore(&photo, &mut noise, &mut ()).unwrap()
        });
        assert_eq!(a.len(), config.n_samples);
        for (a, b) in a.iter().zip(&b) {
            assert_eq!(a.dims(), b.dims());
            assert_eq!(max_abs_diff(a, b), 0.0);
        }
    }
    // A configuration planned per stage counts one stage's weights: a resident pipeline
    // refuses it.
    let mut config = resident.config().clone();
    config.residency = Residency::PerStage;
    let err = resident.with_config(config).unwrap_err().to_string();
    assert!(err.contains("per stage"), "{err}");
}

#[test]
fn both_vae_tilings_restore_the_full_image() {
    let pipeline = tiny_pipeline();
    let mut options = pipeline.config().stage2.clone();
    let untiled = run(&pipeline, &options).unwrap();
    options.vae_encoder_tile = Some(32);
    options.vae_decoder_tile = Some(32);
    let mut results = Vec::new();
    for tiling in [VaeTiling::Synced, VaeTiling::Blended] {
        options.vae_tiling = tiling;
        let x = run(&pipeline, &options).unwrap();
        assert_eq!(x.dims(), untiled.dims());
        let finite: bool = x.clone().is_finite().all().into_scalar();
        assert!(finite, "{tiling:?}");
        results.push(x);
    }
    // Different algorithms, different (valid) results.
    assert!(max_abs_diff(&results[0], &results[1]) > 1e-4);
}

#[test]
fn the_command_line_checks_stage2_settings_before_loading_models() {
    let dir = tempfile::tempdir().unwrap();
    let photo = fixtures::fixtures().join("../images/demo/bsr/49.jpg");
    let out = dir.path().join("out");
    for (extra, expected) in [
        (vec!["--guidance"], "spaced"),
        (
            vec!["--guidance", "--sampler", "spaced", "--g-loss", "l1"],
            "l1",
        ),
        (
            vec!["--guidance", "--sampler", "spaced", "--g-space", "pixel"],
            "pixel",
        ),
        (
            vec!["--guidance", "--sampler", "spaced", "--g-loss", "w_mse"],
            "rgb",
        ),
        (
            vec!["--guidance", "--version", "v2", "--cldm-tiled"],
            "tiled",
        ),
        (vec!["--vae-tiling", "mosaic"], "mosaic"),
    ] {
        let out_dir = out.to_str().unwrap();
        let mut args = vec!["restore", "--input", photo.to_str().unwrap()];
        args.extend(["--output", out_dir, "--offline"]);
        args.extend(extra);
        let output = Command::new(env!("CARGO_BIN_EXE_diffbir"))
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
}
