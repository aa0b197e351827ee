//! `cargo xtask fake-checkpoint`: random-weight checkpoints in the official on-disk layouts,
//! generated from a full-size key manifest (names, shapes and dtypes of every tensor of an
//! official file), so loading official files can be tested without downloading them.

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
    /// A state dict saved from `nn.DataParallel` (every key prefixed `module.`).
    DataParallel,
    /// A `.safetensors` file.
    Safetensors,
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
    let normal = Normal::new(0.0f32, 0.02).expect("valid normal");
    let mut tensors: Vec<NamedTensor> = Vec::with_capacity(keys.len());
    for entry in &keys {
        let name = entry
            .checkpoint_key
            .clone()
            .unwrap_or_else(|| entry.key.clone());
        let name = if layout == Layout::DataParallel {
            format!("module.{name}")
        } else {
            name
        };
        let numel: usize = entry.shape.iter().product();
        let data = match entry.dtype.as_str() {
            "float32" | "float16" | "bfloat16" | "float64" => {
                let values: Vec<f32> = (0..numel).map(|_| normal.sample(&mut rng)).collect();
                TensorData::new(values, entry.shape.clone())
            }
            "int64" => TensorData::new(vec![0i64; numel], entry.shape.clone()),
            other => bail!("tensor `{name}` has dtype {other}, which the generator does not write"),
        };
        tensors.push((name, data));
    }
    match layout {
        Layout::StateDict | Layout::DataParallel => save_pytorch(out, &tensors, None)?,
        Layout::Lightning => save_pytorch(out, &tensors, Some("state_dict"))?,
        Layout::Safetensors => save_safetensors(out, &tensors)?,
    }
    Ok(tensors.len())
}
