//! `diffbir restore --model-config` JSON (`ModelConfigs`) through the checks the command runs
//! before building any network (`PipelineConfig::validate`, untiled and with a tiled stage
//! 1). A config that passes must describe networks of a bounded size; small ones are built
//! for real, which must not panic.
#![no_main]

use diffbir::pipeline::{ModelConfigs, PipelineConfig, Task, Version};
use diffbir_fuzz::model_size;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(models) = serde_json::from_slice::<ModelConfigs>(data) else {
        return;
    };
    let mut config = PipelineConfig::new(Task::Sr, Version::V21);
    config.models = models;
    let plain = config.validate();
    config.cleaner_tile = Some((512, 256));
    let tiled = config.validate();
    if std::env::var_os("DIFFBIR_FUZZ_VERBOSE").is_some() {
        eprintln!("untiled: {plain:?}\ntiled: {tiled:?}");
    }
    if plain.is_err() && tiled.is_err() {
        return;
    }
    let m = &config.models;
    model_size::check_stage1(&m.stage1);
    model_size::check_unet(&m.unet);
    model_size::check_controlnet(&m.controlnet);
    model_size::check_vae(&m.vae);
    model_size::check_clip(&m.clip);
    model_size::check_schedule(&m.schedule);
    model_size::build_if_small(m);
});
