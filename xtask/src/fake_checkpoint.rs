//! `cargo xtask fake-checkpoint`: random-weight checkpoints in the official on-disk layouts,
//! so loading official files can be tested without downloading them: one file generated from
//! full-size key manifests (names, shapes and dtypes of every tensor of an official file), or,
//! with `--tiny`, a whole folder of tiny models under the official file names ([`tiny`]).

pub mod bpe;
pub mod tiny;

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::TensorData;
use clap::ValueEnum;
use diffbir_core::save::{NamedTensor, save_pytorch, save_safetensors};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::Deserialize;

/// How the official file stores its state dict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Layout {
    /// `torch.save(state_dict)`: BSRNet.pth, scunet_color_real_psnr.pth,
    /// realesrgan_s4_swinir_100k.pth and the ControlNet files.
    StateDict,
    /// A PyTorch Lightning checkpoint, `{"state_dict": …, "epoch", "global_step"}`:
    /// general_swinir_v1.ckpt, face_swinir_v1.ckpt and the Stable Diffusion checkpoints.
    Lightning,
    /// A state dict saved from `nn.DataParallel` (every key prefixed `module.`):
    /// detection_Resnet50_Final.pth.
    DataParallel,
    /// A `.safetensors` file.
    Safetensors,
}

impl Layout {
    /// The layout of an official checkpoint, by its file name (`None` for a file that is no
    /// checkpoint, such as the BPE merges, or that no task loads).
    pub fn of_official_file(file_name: &str) -> Option<Self> {
        Some(match file_name {
            "general_swinir_v1.ckpt"
            | "face_swinir_v1.ckpt"
            | "v2-1_512-ema-pruned.ckpt"
            | "sd2.1-base-zsnr-laionaes5.ckpt" => Self::Lightning,
            "realesrgan_s4_swinir_100k.pth"
            | "BSRNet.pth"
            | "scunet_color_real_psnr.pth"
            | "v1_general.pth"
            | "v1_face.pth"
            | "v2.pth"
            | "DiffBIR_v2.1.pt"
            | "detection_mobilenet0.25_Final.pth"
            | "parsing_parsenet.pth"
            | "alexnet-owt-7be5be79.pth"
            | "vgg16-397923af.pth"
            | "LPIPS_v0.1_alex-df73285e.pth"
            | "LPIPS_v0.1_vgg-a78928a0.pth" => Self::StateDict,
            "detection_Resnet50_Final.pth" => Self::DataParallel,
            "open_clip_model.safetensors" => Self::Safetensors,
            _ => return None,
        })
    }

    /// The name `--layout` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::StateDict => "state-dict",
            Self::Lightning => "lightning",
            Self::DataParallel => "data-parallel",
            Self::Safetensors => "safetensors",
        }
    }
}

#[derive(Debug, Deserialize)]
struct Manifest {
    keys: Vec<ManifestKey>,
}

#[derive(Debug, Deserialize)]
struct ManifestKey {
    key: String,
    checkpoint_key: Option<String>,
    shape: Vec<usize>,
    dtype: String,
}

/// Writes a checkpoint with every tensor of the manifests (random normal values, σ = 0.02;
/// zeros for integer buffers) under its released-file key, in `layout`. Several manifests
/// make one file (the UNet, VAE and text-encoder manifests make an SD checkpoint). Returns
/// the number of tensors written.
pub fn write(
    manifests: &[impl AsRef<Path>],
    layout: Layout,
    out: &Path,
    seed: u64,
) -> Result<usize> {
    let mut keys = Vec::new();
    for path in manifests {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let manifest: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a key manifest", path.display()))?;
        keys.extend(manifest.keys);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut tensors: Vec<NamedTensor> = Vec::with_capacity(keys.len());
    for entry in &keys {
        let name = entry
            .checkpoint_key
            .clone()
            .unwrap_or_else(|| entry.key.clone());
        let numel: usize = entry.shape.iter().product();
        let data = match entry.dtype.as_str() {
            "float32" | "float16" | "bfloat16" | "float64" => {
                TensorData::new(normal_values(&mut rng, numel), entry.shape.clone())
            }
            "int64" => TensorData::new(vec![0i64; numel], entry.shape.clone()),
            other => bail!("tensor `{name}` has dtype {other}, which the generator does not write"),
        };
        tensors.push((name, data));
    }
    save(tensors, layout, out)
}

/// `n` values drawn from N(0, 0.02²), the random weights of every generated file.
pub(crate) fn normal_values(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    let normal = Normal::new(0.0f32, 0.02).expect("valid normal");
    (0..n).map(|_| normal.sample(rng)).collect()
}

/// Writes tensors under their official keys to `out` in `layout` (which adds the `module.`
/// prefix of [`Layout::DataParallel`]); returns the number of tensors.
pub(crate) fn save(tensors: Vec<NamedTensor>, layout: Layout, out: &Path) -> Result<usize> {
    let tensors: Vec<NamedTensor> = if layout == Layout::DataParallel {
        tensors
            .into_iter()
            .map(|(name, data)| (format!("module.{name}"), data))
            .collect()
    } else {
        tensors
    };
    match layout {
        Layout::StateDict | Layout::DataParallel => save_pytorch(out, &tensors, None)?,
        Layout::Lightning => save_pytorch(out, &tensors, Some("state_dict"))?,
        Layout::Safetensors => save_safetensors(out, &tensors)?,
    }
    Ok(tensors.len())
}
