//! `cargo xtask fake-checkpoint --tiny --out DIR`: a folder of tiny random-weight models under
//! the official file names and in the official on-disk layouts, with the model configs that
//! describe them, so `diffbir restore --weights-dir DIR --model-config DIR/model-config.json
//! --offline …` runs every task of every release in seconds.
//!
//! The folder holds every file some task of some release loads (`diffbir::hub::release_files`),
//! both RetinaFace detectors, the LPIPS networks of `diffbir metrics` (their widths are read
//! from the heads' shapes, so they need no config), a synthetic BPE merges file
//! ([`super::bpe`]) and three model configs ([`MODEL_CONFIGS`]). Each network is built from its tiny configuration, given
//! random N(0, 0.02²) values (batch norms' running variances stay 1, a variance must be
//! positive) and written under its official keys (the model's key map inverted).

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::store::ModuleSnapshot;
use burn::tensor::{Device, TensorData};
use diffbir::controlnet::{CONTROLNET_KEYS, ControlNetConfig};
use diffbir::core::KeyMap;
use diffbir::core::save::NamedTensor;
use diffbir::face::{Backbone, PARSENET_KEYS, ParseNetConfig, RETINAFACE_KEYS, RetinaFaceConfig};
use diffbir::faces::{FaceModelConfigs, detector_file_name};
use diffbir::hub::{ModelFile, find_file, release_files};
use diffbir::ldm::clip::{CLIP_SD21_KEYS, ClipTextConfig};
use diffbir::ldm::sd::StableDiffusionConfig;
use diffbir::ldm::unet::SD_UNET_KEYS;
use diffbir::ldm::vae::SD_VAE_KEYS;
use diffbir::ldm::{UnetConfig, VaeConfig};
use diffbir::metrics::clip_iqa::{CLIP_IQA_KEYS, ClipIqaConfig};
use diffbir::metrics::{LPIPS_LIN_KEYS, LPIPS_TRUNK_KEYS, LpipsConfig, LpipsNet};
use diffbir::pipeline::{ModelConfigs, PipelineConfig, Task, Version};
use diffbir::rm::{RrdbNetConfig, ScuNetConfig, Stage1Config, SwinIrConfig};
use diffbir::scoring::{clip_iqa_files, lpips_files};
use diffbir_train::state::official_tensors;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{Layout, bpe, normal_values, save};

/// The stage-1 networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage1Kind {
    /// SwinIR (every release's face model, v1's and v2.1's general model).
    SwinIr,
    /// RRDBNet (BSRNet, v2 sr and v2 unaligned_face).
    RrdbNet,
    /// SCUNet (v2 denoise).
    ScuNet,
}

impl Stage1Kind {
    /// The network a stage-1 configuration builds.
    pub fn of(config: &Stage1Config) -> Self {
        match config {
            Stage1Config::SwinIr(_) => Self::SwinIr,
            Stage1Config::RrdbNet(_) => Self::RrdbNet,
            Stage1Config::ScuNet(_) => Self::ScuNet,
        }
    }

    /// Its tiny configuration.
    pub fn tiny(self) -> Stage1Config {
        match self {
            Self::SwinIr => Stage1Config::SwinIr(SwinIrConfig::tiny()),
            Self::RrdbNet => Stage1Config::RrdbNet(RrdbNetConfig::tiny()),
            Self::ScuNet => Stage1Config::ScuNet(ScuNetConfig::tiny()),
        }
    }

    /// The network's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::SwinIr => "SwinIR",
            Self::RrdbNet => "RRDBNet",
            Self::ScuNet => "SCUNet",
        }
    }
}

/// What one official file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// A stage-1 network.
    Stage1(Stage1Kind),
    /// Stable Diffusion: UNet, VAE and text encoder.
    StableDiffusion,
    /// An IRControlNet.
    ControlNet,
    /// The text tokenizer's BPE merges.
    BpeMerges,
    /// A RetinaFace face detector.
    Detector(Backbone),
    /// The ParseNet face parser.
    Parser,
    /// The trunk of an LPIPS network (torchvision's `features`).
    LpipsTrunk(LpipsNet),
    /// The linear heads of an LPIPS network.
    LpipsHeads(LpipsNet),
    /// OpenAI's CLIP (CLIP-IQA's model).
    Clip,
}

impl fmt::Display for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stage1(kind) => write!(f, "stage 1, {}", kind.name()),
            Self::StableDiffusion => f.write_str("Stable Diffusion: UNet, VAE, text encoder"),
            Self::ControlNet => f.write_str("IRControlNet"),
            Self::BpeMerges => f.write_str("BPE merges"),
            Self::Detector(backbone) => write!(f, "RetinaFace, {backbone}"),
            Self::Parser => f.write_str("ParseNet"),
            Self::LpipsTrunk(net) => write!(f, "LPIPS trunk, {net}"),
            Self::LpipsHeads(net) => write!(f, "LPIPS heads, {net}"),
            Self::Clip => f.write_str("CLIP (CLIP-IQA)"),
        }
    }
}

/// One official file of the folder.
#[derive(Debug, Clone, Copy)]
pub struct OfficialFile {
    /// The registry entry (its `file_name` is the name in the folder).
    pub file: &'static ModelFile,
    /// What it holds.
    pub content: Content,
}

/// Every official file some valid task × version loads (a pair whose default settings do
/// not validate, v1 unaligned_face, is skipped), plus both RetinaFace detectors; each once,
/// in the order first met.
///
/// # Errors
///
/// If the registry lacks a detector or gives one file two different contents.
pub fn official_files() -> Result<Vec<OfficialFile>> {
    let mut all: Vec<OfficialFile> = Vec::new();
    let mut add = |file: &'static ModelFile, content: Content| -> Result<()> {
        match all.iter().find(|o| o.file.file_name == file.file_name) {
            Some(seen) if seen.content != content => bail!(
                "{} would hold both {} and {content}",
                file.file_name,
                seen.content
            ),
            Some(_) => Ok(()),
            None => {
                all.push(OfficialFile { file, content });
                Ok(())
            }
        }
    };
    for task in Task::ALL {
        for version in Version::ALL {
            let config = PipelineConfig::new(task, version);
            if config.validate().is_err() {
                continue;
            }
            let files = release_files(task, version);
            let models = &config.models;
            add(
                files.stage1,
                Content::Stage1(Stage1Kind::of(&models.stage1)),
            )?;
            add(files.controlnet, Content::ControlNet)?;
            add(files.sd, Content::StableDiffusion)?;
            add(files.bpe_vocab, Content::BpeMerges)?;
            if let Some(face) = files.face {
                add(
                    face.stage1,
                    Content::Stage1(Stage1Kind::of(&models.face.stage1)),
                )?;
                add(
                    face.detector,
                    Content::Detector(models.face.detector.network_name),
                )?;
                add(face.parser, Content::Parser)?;
            }
        }
    }
    for backbone in Backbone::ALL {
        add(
            find_file(detector_file_name(backbone))?,
            Content::Detector(backbone),
        )?;
    }
    for net in LpipsNet::ALL {
        let [trunk, heads] = lpips_files(net);
        add(trunk, Content::LpipsTrunk(net))?;
        add(heads, Content::LpipsHeads(net))?;
    }
    let [clip, bpe] = clip_iqa_files();
    add(clip, Content::Clip)?;
    add(bpe, Content::BpeMerges)?;
    Ok(all)
}

/// The model configs of the folder: file name, the release whose noise schedule it carries,
/// and its stage-1 network. The first is the one for every SwinIR stage 1 (every release's
/// face task, v1 and v2.1 otherwise); its schedule is v2.1's, the default release's.
pub const MODEL_CONFIGS: [(&str, Version, Stage1Kind); 3] = [
    ("model-config.json", Version::V21, Stage1Kind::SwinIr),
    ("model-config.v2-sr.json", Version::V2, Stage1Kind::RrdbNet),
    (
        "model-config.v2-denoise.json",
        Version::V2,
        Stage1Kind::ScuNet,
    ),
];

/// The model config of the folder that describes `task` at `version`: the one of its stage-1
/// network (for unaligned_face, the background's).
///
/// # Errors
///
/// If no model config has that network.
pub fn model_config_file(task: Task, version: Version) -> Result<&'static str> {
    let kind = Stage1Kind::of(&PipelineConfig::new(task, version).models.stage1);
    MODEL_CONFIGS
        .iter()
        .find(|(_, _, k)| *k == kind)
        .map(|(name, _, _)| *name)
        .with_context(|| format!("no model config has a {} stage 1", kind.name()))
}

/// The tiny shapes of every network, with `stage1` as stage 1 and the noise schedule of
/// `version`. The face models are tiny too (the detector of the reference's backbone).
pub fn tiny_models(version: Version, stage1: Stage1Kind) -> ModelConfigs {
    let mut models = PipelineConfig::new(Task::Sr, version).models;
    models.stage1 = stage1.tiny();
    models.unet = UnetConfig::tiny();
    models.controlnet = ControlNetConfig::tiny();
    models.vae = VaeConfig::tiny();
    models.clip = ClipTextConfig::tiny();
    models.face = FaceModelConfigs {
        stage1: Stage1Kind::SwinIr.tiny(),
        detector: RetinaFaceConfig::tiny(FaceModelConfigs::default().detector.network_name),
        parser: ParseNetConfig::tiny(),
    };
    models
}

/// One file written.
#[derive(Debug, Clone)]
pub struct Written {
    /// Where.
    pub path: PathBuf,
    /// What it holds and how it is stored.
    pub description: String,
}

impl fmt::Display for Written {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.description)
    }
}

/// Writes the whole folder into `dir` (created if needed; files of the same names are
/// replaced): every file of [`official_files`], then the [`MODEL_CONFIGS`]. The random values
/// depend only on `seed` and the file name.
pub fn write(dir: &Path, seed: u64) -> Result<Vec<Written>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let device = Device::flex();
    let mut written = Vec::new();
    for OfficialFile { file, content } in official_files()? {
        let path = dir.join(file.file_name);
        let description = if content == Content::BpeMerges {
            let merges = bpe::write(&path)?;
            format!("{content}, {merges} merges (synthetic)")
        } else {
            let layout = Layout::of_official_file(file.file_name)
                .with_context(|| format!("{} ({content}) has no known layout", file.file_name))?;
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(stream(file.file_name));
            let tensors = randomize(tensors(content, &device)?, &mut rng);
            let n = save(tensors, layout, &path)?;
            format!("{content}, {n} tensors, {}", layout.name())
        };
        written.push(Written { path, description });
    }
    for (name, version, stage1) in MODEL_CONFIGS {
        let path = dir.join(name);
        let json = serde_json::to_string_pretty(&tiny_models(version, stage1))?;
        std::fs::write(&path, json + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        written.push(Written {
            path,
            description: format!(
                "model config: tiny {} stage 1, noise schedule of {version}",
                stage1.name()
            ),
        });
    }
    Ok(written)
}

/// The random stream of a file: FNV-1a of its name.
fn stream(file_name: &str) -> u64 {
    file_name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The tensors of a file's networks, from their tiny configurations, under the official keys.
fn tensors(content: Content, device: &Device) -> Result<Vec<NamedTensor>> {
    Ok(match content {
        Content::Stage1(kind) => {
            let config = kind.tiny();
            official(&config.init(device)?, config.key_map())?
        }
        Content::StableDiffusion => {
            let sd = StableDiffusionConfig {
                unet: UnetConfig::tiny(),
                vae: VaeConfig::tiny(),
                clip: ClipTextConfig::tiny(),
            }
            .init(device)?;
            let mut all = official(&sd.unet, &SD_UNET_KEYS)?;
            all.extend(official(&sd.vae, &SD_VAE_KEYS)?);
            all.extend(official(&sd.clip, &CLIP_SD21_KEYS)?);
            all
        }
        Content::ControlNet => official(&ControlNetConfig::tiny().init(device)?, &CONTROLNET_KEYS)?,
        Content::Detector(backbone) => {
            let config = RetinaFaceConfig::tiny(backbone);
            config.validate()?;
            // The key map accepts keys with or without `module.`, and writes them with it;
            // whether the file has it is its layout's business.
            official(&config.init(device), &RETINAFACE_KEYS)?
                .into_iter()
                .map(|(key, data)| match key.strip_prefix("module.") {
                    Some(bare) => (bare.to_string(), data),
                    None => (key, data),
                })
                .collect()
        }
        Content::Parser => {
            let config = ParseNetConfig::tiny();
            config.validate()?;
            official(&config.init(device), &PARSENET_KEYS)?
        }
        Content::LpipsTrunk(net) => official(
            &LpipsConfig::tiny(net).init(device).trunk,
            &LPIPS_TRUNK_KEYS,
        )?,
        Content::LpipsHeads(net) => {
            official(&LpipsConfig::tiny(net).init(device).lin, &LPIPS_LIN_KEYS)?
        }
        Content::Clip => {
            let mut all = official(&ClipIqaConfig::tiny().init(device), &CLIP_IQA_KEYS)?;
            // `logit_scale` is a 0-d tensor, which no module holds: CLIP's released ln(100).
            all.push((
                "logit_scale".into(),
                TensorData::new(vec![100f32.ln()], Vec::<usize>::new()),
            ));
            all
        }
        Content::BpeMerges => bail!("the BPE merges are no checkpoint"),
    })
}

/// A module's tensors in PyTorch's layout under the checkpoint keys of `map`.
fn official<M: ModuleSnapshot>(module: &M, map: &KeyMap) -> Result<Vec<NamedTensor>> {
    official_tensors(module)?
        .into_iter()
        .map(|(path, data)| Ok((map.official_key(&path)?, data)))
        .collect()
}

/// Random N(0, 0.02²) values for every float tensor, except the batch norms' running
/// variances, which keep their initial 1; other tensors keep their values.
fn randomize(tensors: Vec<NamedTensor>, rng: &mut ChaCha8Rng) -> Vec<NamedTensor> {
    tensors
        .into_iter()
        .map(|(name, data)| {
            if !data.dtype().is_float() || name.ends_with("running_var") {
                return (name, data);
            }
            let shape = data.shape().to_vec();
            let values = normal_values(rng, shape.iter().product());
            (name, TensorData::new(values, shape))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_checkpoint_a_release_or_the_face_task_loads_has_a_layout() {
        let mut names = Vec::new();
        for task in Task::ALL {
            for version in Version::ALL {
                let files = release_files(task, version);
                names.extend(
                    files
                        .all()
                        .into_iter()
                        .filter(|f| f.file_name != files.bpe_vocab.file_name)
                        .map(|f| f.file_name),
                );
            }
        }
        names.extend(Backbone::ALL.map(detector_file_name));
        // The metrics' networks.
        names.extend(
            LpipsNet::ALL
                .into_iter()
                .flat_map(lpips_files)
                .map(|f| f.file_name),
        );
        names.push(clip_iqa_files()[0].file_name);
        for name in &names {
            find_file(name).unwrap();
            assert!(Layout::of_official_file(name).is_some(), "{name}");
        }
        // The folder holds each of them once, and the merges.
        let folder: Vec<&str> = official_files()
            .unwrap()
            .iter()
            .map(|o| o.file.file_name)
            .collect();
        for name in &names {
            assert_eq!(folder.iter().filter(|f| *f == name).count(), 1, "{name}");
        }
        assert_eq!(folder.len(), {
            let mut distinct = names.clone();
            distinct.sort_unstable();
            distinct.dedup();
            distinct.len() + 1
        });
    }

    #[test]
    fn unaligned_faces_background_uses_the_sr_stage_1_file() {
        for version in Version::ALL {
            assert_eq!(
                release_files(Task::UnalignedFace, version).stage1,
                release_files(Task::Sr, version).stage1
            );
        }
    }

    #[test]
    fn each_task_and_release_has_the_model_config_of_its_stage_1_file() {
        for task in Task::ALL {
            for version in Version::ALL {
                let name = model_config_file(task, version).unwrap();
                let (_, _, kind) = MODEL_CONFIGS.iter().find(|(n, _, _)| *n == name).unwrap();
                let config = PipelineConfig::new(task, version);
                assert_eq!(
                    Stage1Kind::of(&config.models.stage1),
                    *kind,
                    "{task} {version}"
                );
            }
        }
        let config = |task, version| model_config_file(task, version).unwrap();
        assert_eq!(config(Task::Sr, Version::V2), "model-config.v2-sr.json");
        assert_eq!(
            config(Task::UnalignedFace, Version::V2),
            "model-config.v2-sr.json"
        );
        assert_eq!(
            config(Task::Denoise, Version::V2),
            "model-config.v2-denoise.json"
        );
        assert_eq!(config(Task::Face, Version::V2), "model-config.json");
        assert_eq!(
            config(Task::UnalignedFace, Version::V21),
            "model-config.json"
        );
    }
}
