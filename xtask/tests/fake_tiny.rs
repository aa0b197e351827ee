//! `cargo xtask fake-checkpoint --tiny`: the folder it writes loads offline, under the
//! official file names, for every task of every release, with the model config of the
//! task's stage-1 network; and each stage-1 network restores a small image through it.

use std::path::Path;

use burn::tensor::Device;
use diffbir::core::Checkpoint;
use diffbir::core::NoiseSource;
use diffbir::face::{Backbone, RetinaFaceConfig};
use diffbir::image::{DynamicImage, Rgb, RgbImage};
use diffbir::ldm::clip::ClipTokenizer;
use diffbir::metrics::clip_iqa::ClipIqa;
use diffbir::metrics::{Lpips, LpipsNet, MetricImage};
use diffbir::pipeline::{ModelConfigs, Pipeline, PipelineConfig, Task, Version, WeightFiles};
use diffbir::sampler::{SamplerConfig, SamplerKind, SamplerOptions};
use xtask::fake_checkpoint::tiny::{self, Stage1Kind};

/// `task` at `version` with the folder's model config (as `--model-config` reads it) and one
/// sampler step.
fn tiny_config(dir: &Path, task: Task, version: Version) -> PipelineConfig {
    let mut config = PipelineConfig::new(task, version);
    let path = dir.join(tiny::model_config_file(task, version).unwrap());
    config.models =
        serde_json::from_str::<ModelConfigs>(&std::fs::read_to_string(path).unwrap()).unwrap();
    config.stage2.sampler = SamplerConfig::new(SamplerKind::EdmEuler, 1, &SamplerOptions::new());
    config
}

fn load(dir: &Path, config: PipelineConfig) -> Pipeline {
    let what = format!("{} {}", config.task, config.version);
    let files = WeightFiles::in_dir(dir, &config);
    Pipeline::load(config, &files, &Device::flex()).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// A 64×64 colour ramp.
fn ramp() -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(64, 64, |x, y| {
        Rgb([(x * 4) as u8, (y * 4) as u8, ((x + y) * 2) as u8])
    }))
}

#[test]
fn the_tiny_folder_loads_every_task_of_every_release_and_restores_with_each_stage_1() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let written = tiny::write(dir, 0).unwrap();
    let official = tiny::official_files().unwrap();
    assert_eq!(written.len(), official.len() + tiny::MODEL_CONFIGS.len());
    for file in &written {
        assert!(file.path.is_file(), "{file}");
    }

    let mut restored: Vec<Stage1Kind> = Vec::new();
    let mut loaded = 0;
    for task in Task::ALL {
        for version in Version::ALL {
            if PipelineConfig::new(task, version).validate().is_err() {
                continue; // v1 has no unaligned_face
            }
            let pipeline = load(dir, tiny_config(dir, task, version));
            loaded += 1;
            let kind = Stage1Kind::of(&pipeline.config().models.stage1);
            if task == Task::UnalignedFace || restored.contains(&kind) {
                continue;
            }
            let samples = pipeline
                .restore(&ramp(), &mut NoiseSource::seeded(1), &mut ())
                .unwrap_or_else(|e| panic!("{task} {version}: {e}"));
            let side = (64.0 * pipeline.config().upscale) as usize;
            assert_eq!(samples.len(), 1);
            assert_eq!(samples[0].dims(), [1, 3, side, side], "{task} {version}");
            let values = samples[0].to_data().try_to_vec::<f32>().unwrap();
            assert!(values.iter().all(|v| v.is_finite()), "{task} {version}");
            restored.push(kind);
        }
    }
    assert_eq!(loaded, Task::ALL.len() * Version::ALL.len() - 1);
    assert_eq!(restored.len(), 3, "{restored:?}");

    // `--face-detector mobilenet0.25` swaps in the released MobileNet configuration, which is
    // the tiny one: the folder's MobileNet file loads with it.
    let mut config = tiny_config(dir, Task::UnalignedFace, Version::V21);
    config.models.face.detector = RetinaFaceConfig::of(Backbone::MobileNet025);
    load(dir, config);

    // The LPIPS networks of `diffbir metrics` load from the folder, their widths read from
    // the heads, and score a pair.
    for net in LpipsNet::ALL {
        let [trunk, heads] = diffbir::scoring::lpips_files(net)
            .map(|f| Checkpoint::open(dir.join(f.file_name)).unwrap());
        let model = Lpips::from_checkpoints(net, &trunk, &heads, &Device::flex()).unwrap();
        let image = MetricImage::from_dynamic(&ramp());
        let d = model.forward(
            image.to_tensor(&Device::flex()),
            image.to_tensor(&Device::flex()).flip([3]),
            true,
        );
        let d = d.to_data().try_to_vec::<f32>().unwrap();
        assert!(d[0].is_finite() && d[0] != 0.0, "{net}: {d:?}");
    }
    // CLIP-IQA's CLIP too, its shapes read from the file, with the folder's BPE merges.
    let [clip, bpe] = diffbir::scoring::clip_iqa_files().map(|f| dir.join(f.file_name));
    let tokenizer = ClipTokenizer::from_file(&bpe).unwrap();
    let model = ClipIqa::load(
        &Checkpoint::open(&clip).unwrap(),
        &tokenizer,
        &Device::flex(),
    )
    .unwrap();
    let score = model.forward(MetricImage::from_dynamic(&ramp()).to_tensor(&Device::flex()));
    let score = score.to_data().try_to_vec::<f32>().unwrap();
    assert!((0.0..=1.0).contains(&score[0]), "{score:?}");
}
