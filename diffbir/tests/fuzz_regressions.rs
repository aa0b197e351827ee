//! Inputs the `model_config` fuzz target found (`fuzz/regressions/model_config`, see
//! `docs/fuzzing.md`), replayed without the fuzzer: `--model-config` files that made
//! `PipelineConfig::validate` panic, or that it accepted although the networks they describe
//! would need terabytes. Each must now be refused with an error naming the part at fault.

use std::path::{Path, PathBuf};

use burn::module::Module;
use diffbir::Error;
use diffbir::pipeline::{ModelConfigs, PipelineConfig, Task, Version};

fn regression(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions/model_config")
        .join(name);
    assert!(
        path.is_file(),
        "the fuzz regression input {} is missing (it is committed with the repository)",
        path.display()
    );
    path
}

/// Validates the file as `diffbir restore --model-config` does, untiled and with a tiled
/// stage 1.
fn validate(name: &str) -> Vec<Error> {
    validate_edited(name, |_| {})
}

/// [`validate`] after `edit` changed the file's JSON.
fn validate_edited(name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<Error> {
    let path = regression(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is no longer JSON: {e}", path.display()));
    edit(&mut json);
    let models: ModelConfigs = serde_json::from_value(json)
        .unwrap_or_else(|e| panic!("{} no longer parses: {e}", path.display()));
    let mut config = PipelineConfig::new(Task::Sr, Version::V21);
    config.models = models;
    let untiled = config.validate();
    config.cleaner_tile = Some((512, 256));
    let tiled = config.validate();
    [untiled, tiled]
        .into_iter()
        .map(|r| r.expect_err("a hostile model config was accepted"))
        .collect()
}

fn assert_refused(name: &str, what: &str, reason: &str) {
    assert_errors(name, validate(name), what, reason);
}

fn assert_errors(name: &str, errors: Vec<Error>, what: &str, reason: &str) {
    for err in errors {
        match &err {
            Error::Core(diffbir::core::Error::InvalidArgument { what: w, reason: r }) => {
                assert_eq!(w, what, "{name}: {err}");
                assert!(r.contains(reason), "{name}: {err}");
            }
            other => panic!("{name}: not an invalid-argument error: {other}"),
        }
    }
}

#[test]
fn fuzz_model_config_schedule_beta_outside_0_1() {
    // `linear_start = 5.00085` reached `NoiseScheduleConfig::init`'s assertion.
    assert_refused(
        "schedule-beta-outside-0-1.json",
        "noise schedule config",
        "linear_start must lie in (0, 1)",
    );
}

#[test]
fn fuzz_model_config_unet_level_width_5297152() {
    // `model_channels = 32`, `channel_mult = [1, 165536]`: a 5.3 M-channel level, 1.6·10¹⁵
    // parameters.
    assert_refused(
        "unet-level-width-5297152.json",
        "UNet config",
        "more than 1048576 channels",
    );
}

#[test]
fn fuzz_model_config_unet_channel_mult_overflowing() {
    // `channel_mult = [19007199254740993, 1]`: the width overflows the parameter count. The
    // first level must also be 1 now; the same width on the second level is refused too.
    let name = "unet-channel-mult-1.9e16.json";
    assert_refused(name, "UNet config", "channel_mult must start with 1");
    let second = validate_edited(name, |json| {
        json["unet"]["channel_mult"] = serde_json::json!([1, 19007199254740993u64]);
    });
    assert_errors(name, second, "UNet config", "channels");
}

#[test]
fn fuzz_model_config_vae_level_widths() {
    // `ch_mult = [1, 1, 10241, 0]`: a 327 712-channel level and an empty one.
    assert_refused("vae-level-width-327712.json", "VAE config", "channels");
}

#[test]
fn fuzz_model_config_clip_embed_dim_1616777216() {
    // Two faults in one file: a VAE level of width 0 (`ch_mult = [0, 1, 1, 1]`, accepted
    // before) and a 1.6 G-wide CLIP text projection (12.9 G parameters).
    let name = "clip-embed-dim-1616777216.json";
    assert_refused(name, "VAE config", "must lie in 1..=1048576 channels");
    let vae_fixed = validate_edited(name, |json| {
        json["vae"]["ddconfig"]["ch_mult"] = serde_json::json!([1, 1, 1, 1]);
    });
    assert_errors(
        name,
        vae_fixed,
        "CLIP text config",
        "parameters, more than the 4294967296",
    );
}

#[test]
fn fuzz_model_config_rrdbnet_growth_wider_than_features() {
    // `nf = 2, gc = 64`: a valid network, which the fuzz target's size oracle under-counted
    // (its lower bound assumed gc ≤ nf). Accepted, and built with the parameters its dense
    // blocks have: per block 9 (8 nf gc + 6 gc² + nf²) weights and 4 gc + nf biases, three
    // blocks, plus the six other convolutions (56 + 38 · 4 + 57).
    let name = "rrdbnet-growth-wider-than-features.json";
    let text = std::fs::read_to_string(regression(name)).unwrap();
    let models: ModelConfigs = serde_json::from_str(&text).unwrap();
    let mut config = PipelineConfig::new(Task::Sr, Version::V21);
    config.models = models;
    config.validate().unwrap();
    let device = diffbir::core::device::parse_device("cpu").unwrap();
    let built = config.models.stage1.init(&device).unwrap();
    let per_block = 9 * (8 * 2 * 64 + 6 * 64 * 64 + 2 * 2) + 4 * 64 + 2;
    assert_eq!(built.num_params(), 3 * per_block + 56 + 38 * 4 + 57);
}
