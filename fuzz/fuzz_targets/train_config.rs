//! TOML training configs (`diffbir-train stage1|stage2 --config`): parsing, the relative path
//! resolution and every check `load_config` makes before a run starts; a config that passes
//! must also survive the TOML round trip every checkpoint stores, and describe networks of a
//! bounded size.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use diffbir_fuzz::model_size;
use diffbir_train::config::{Stage1TrainConfig, Stage2TrainConfig, TrainConfig, load_config};
use libfuzzer_sys::fuzz_target;

fn round_trip<C: TrainConfig>(config: &C) {
    let Ok(text) = config.to_toml() else {
        return;
    };
    let back: C = toml::from_str(&text)
        .unwrap_or_else(|e| panic!("a validated config does not read back: {e}\n{text}"));
    assert_eq!(
        back.trajectory(),
        config.trajectory(),
        "the stored config differs"
    );
}

/// Where the config is written: `train/configs/train.toml` in the scratch folder, beside
/// empty stand-ins for the files the repository's configs name (validation only checks
/// that they exist), so that configs derived from them can pass.
fn config_path() -> &'static Path {
    static PATH: LazyLock<PathBuf> = LazyLock::new(|| {
        let root = diffbir_fuzz::scratch_file("train");
        for file in [
            "shared/fixtures/sd_tiny.sd21_format.ckpt",
            "shared/fixtures/swinir_tiny.weights.safetensors",
            "shared/fixtures/bpe_simple_vocab_16e6.txt.gz",
            "configs/weights/v2-1_512-ema-pruned.ckpt",
            "configs/weights/codeformer_swinir.ckpt",
            "configs/weights/bpe_simple_vocab_16e6.txt.gz",
            "configs/weights/sd2.1-base-zsnr-laionaes5.ckpt",
            "configs/weights/realesrgan_s4_swinir_100k.pth",
        ] {
            let path = root.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"").unwrap();
        }
        root.join("configs/train.toml")
    });
    &PATH
}

fuzz_target!(|data: &[u8]| {
    let path = config_path();
    std::fs::write(path, data).unwrap();
    let verbose = std::env::var_os("DIFFBIR_FUZZ_VERBOSE").is_some();
    let stage1 = load_config::<Stage1TrainConfig>(path);
    let stage2 = load_config::<Stage2TrainConfig>(path);
    if verbose {
        eprintln!(
            "stage 1: {:?}\nstage 2: {:?}",
            stage1.as_ref().map(drop),
            stage2.as_ref().map(drop)
        );
    }
    if let Ok(config) = stage1 {
        round_trip(&config);
        model_size::check_stage1(&config.model);
    }
    if let Ok(config) = stage2 {
        round_trip(&config);
        let m = &config.model;
        model_size::check_stage1(&m.stage1);
        model_size::check_unet(&m.unet);
        model_size::check_controlnet(&m.controlnet);
        model_size::check_vae(&m.vae);
        model_size::check_clip(&m.clip);
        model_size::check_schedule(&m.diffusion);
    }
});
