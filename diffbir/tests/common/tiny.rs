//! Tiny random-weight models standing in for the official v2.1 files, for tests that run
//! whole restorations: the fixtures that hold them, their shapes, and small real photos.
//! Include with `#[path = "common/tiny.rs"] mod tiny;` beside `mod fixtures;`.
//! Each test uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use diffbir::controlnet::ControlNetConfig;
use diffbir::faces::FaceModelConfigs;
use diffbir::hub::release_files;
use diffbir::ldm::clip::ClipTextConfig;
use diffbir::ldm::{UnetConfig, VaeConfig};
use diffbir::pipeline::{ModelConfigs, PipelineConfig, Task, Version};
use diffbir::rm::{Stage1Config, SwinIrConfig};
use image::DynamicImage;

/// The shared folder of the fixtures (`fixtures/`, `images/`).
pub fn shared() -> PathBuf {
    crate::fixtures::fixtures().join("..")
}

/// The official file names of `task` at v2.1, each with the fixture that stands in for it.
pub fn official_files(task: Task) -> [(&'static str, &'static str); 4] {
    let files = release_files(task, Version::V21);
    [
        (files.stage1.file_name, "swinir_tiny.weights.safetensors"),
        (files.sd.file_name, "sd_tiny.sd21_format.ckpt"),
        (files.controlnet.file_name, "sd_tiny.controlnet_format.pth"),
        (files.bpe_vocab.file_name, "bpe_simple_vocab_16e6.txt.gz"),
    ]
}

/// The generated face cases (`testing/fixtures/face`).
pub fn face_cases() -> PathBuf {
    crate::fixtures::repo_fixtures("face")
}

/// The tiny detector and parser of the face cases, as (official file name, weight file of
/// the face cases), and the face stage 1's stand-in from the shared fixtures.
pub fn official_face_files() -> [(&'static str, PathBuf); 3] {
    [
        (
            "face_swinir_v1.ckpt",
            shared().join("fixtures/swinir_tiny.weights.safetensors"),
        ),
        (
            "detection_Resnet50_Final.pth",
            face_cases().join(TINY_DETECTOR),
        ),
        ("parsing_parsenet.pth", face_cases().join(TINY_PARSER)),
    ]
}

/// The face cases' random-weight detector (a narrow ResNet backbone).
const TINY_DETECTOR: &str = "retinaface_resnet50_narrow.weights.safetensors";
/// The face cases' random-weight parser at 512.
const TINY_PARSER: &str = "face_paste_back.parsenet.weights.safetensors";

/// The shapes of the face stand-ins, read from the face cases' index.
pub fn tiny_face_models() -> FaceModelConfigs {
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(face_cases().join("index.json")).unwrap())
            .unwrap();
    let config = |file: &str| index["weight_files"][file]["config"].clone();
    FaceModelConfigs {
        stage1: Stage1Config::SwinIr(SwinIrConfig::tiny()),
        detector: serde_json::from_value(config(TINY_DETECTOR)).unwrap(),
        parser: serde_json::from_value(config(TINY_PARSER)).unwrap(),
    }
}

/// A weights folder holding the stand-ins of `task`'s official files under their names.
pub fn weights_dir(task: Task, dir: &Path) -> PathBuf {
    let weights = dir.join("weights");
    std::fs::create_dir_all(&weights).unwrap();
    for (name, fixture) in official_files(task) {
        std::fs::copy(shared().join("fixtures").join(fixture), weights.join(name)).unwrap();
    }
    if task == Task::UnalignedFace {
        for (name, path) in official_face_files() {
            std::fs::copy(path, weights.join(name)).unwrap();
        }
    }
    weights
}

/// The tiny shapes of every v2.1 network (each task has a SwinIR stage 1 in v2.1).
pub fn tiny_models() -> ModelConfigs {
    let mut models: ModelConfigs = PipelineConfig::new(Task::Sr, Version::V21).models;
    models.stage1 = Stage1Config::SwinIr(SwinIrConfig::tiny());
    models.unet = UnetConfig::tiny();
    models.controlnet = ControlNetConfig::tiny();
    models.vae = VaeConfig::tiny();
    models.clip = ClipTextConfig::tiny();
    models.face = tiny_face_models();
    models
}

/// [`tiny_models`] written as JSON to `dir/tiny.json`.
pub fn tiny_models_file(dir: &Path) -> PathBuf {
    let path = dir.join("tiny.json");
    std::fs::write(&path, serde_json::to_string_pretty(&tiny_models()).unwrap()).unwrap();
    path
}

/// The options that run the command on the tiny models, offline, with one sampler step:
/// `weights` holds them under the official names, `models` is the JSON of their shapes.
pub fn tiny_model_args(weights: &Path, models: &Path) -> Vec<String> {
    [
        "--weights-dir",
        weights.to_str().unwrap(),
        "--model-config",
        models.to_str().unwrap(),
        "--offline",
        "--sampler",
        "edm_euler",
        "--steps",
        "1",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// `diffbir restore --input inputs --output output` on the tiny models, then `extra`.
pub fn tiny_restore_args(
    weights: &Path,
    models: &Path,
    inputs: &Path,
    output: &Path,
    extra: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> = ["restore", "--input", inputs.to_str().unwrap(), "--output"]
        .map(str::to_owned)
        .to_vec();
    args.push(output.to_str().unwrap().to_owned());
    args.extend(tiny_model_args(weights, models));
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

/// A `side`×`side` copy of the middle square of a photo of the shared images.
pub fn photo(path: &str, side: u32) -> DynamicImage {
    let full = image::open(shared().join("images").join(path)).unwrap();
    let s = full.width().min(full.height());
    full.crop_imm((full.width() - s) / 2, (full.height() - s) / 2, s, s)
        .resize_exact(side, side, image::imageops::FilterType::Triangle)
}

/// A folder `dir/in` holding a real 120×80 photo as `a_rgb.png`, an RGBA copy with an alpha
/// ramp (`b_rgba.png`) and a gray copy (`c_gray.png`).
pub fn rgb_rgba_gray_inputs(dir: &Path) -> PathBuf {
    let inputs = dir.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    let photo = image::open(shared().join("images/demo/bsr/49.jpg")).unwrap();
    photo.save(inputs.join("a_rgb.png")).unwrap();
    let mut rgba = photo.to_rgba8();
    for (x, _, p) in rgba.enumerate_pixels_mut() {
        p[3] = (x * 2) as u8;
    }
    rgba.save(inputs.join("b_rgba.png")).unwrap();
    photo.to_luma8().save(inputs.join("c_gray.png")).unwrap();
    inputs
}
