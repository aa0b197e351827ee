//! Checkpoints of a training run, as `.safetensors` files written atomically (a temporary
//! file in the same folder, synced, then renamed over the final name), so a run killed at
//! any moment leaves every checkpoint either complete or absent.
//!
//! A run's `checkpoints/` folder holds, per checkpoint step `N` (7 digits):
//!
//! - `N.safetensors`: the trained network's weights under the official PyTorch key names
//!   (the reference's `{step:07d}.pt`), loadable wherever the official files are;
//! - `N.state.safetensors`: everything `--resume` needs: the weights in burn's layout
//!   (`model.*`), the AdamW moments per parameter (`optim.<path>.exp_avg[_sq]`), and in the
//!   metadata the stage, the step, the optimiser step, the seed (every random draw of the run
//!   derives from the seed and the step, so together they are the generator state) and the
//!   config as TOML.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, bridge};
use burn::tensor::{DType, TensorData};
use diffbir_core::image::write_atomically;

use crate::error::{Error, Result};

/// The format tag in the metadata of a state file.
pub const STATE_FORMAT: &str = "diffbir-train-state/1";

/// A named host tensor.
pub type Named = (String, TensorData);

/// Everything a run needs to continue exactly where it stopped.
#[derive(Debug, Clone)]
pub struct TrainState {
    /// `stage1` or `stage2`.
    pub stage: String,
    /// Optimisation steps done.
    pub step: u64,
    /// The run's seed.
    pub seed: u64,
    /// The config the run was started with (TOML).
    pub config: String,
    /// The trained module's tensors, burn layout and paths.
    pub model: Vec<Named>,
    /// AdamW moments.
    pub optimizer: Vec<Named>,
    /// AdamW steps (equals `step`).
    pub optimizer_step: u64,
    /// The data pipeline's own state (the Real-ESRGAN training pools), empty when it has
    /// none.
    pub data: Vec<Named>,
    /// Its description (JSON), empty when it has none.
    pub data_meta: String,
}

/// `dir/NNNNNNN.state.safetensors`.
pub fn state_path(dir: &Path, step: u64) -> PathBuf {
    dir.join(format!("{step:07}.state.safetensors"))
}

/// `dir/NNNNNNN.safetensors`.
pub fn weights_path(dir: &Path, step: u64) -> PathBuf {
    dir.join(format!("{step:07}.safetensors"))
}

fn st_dtype(path: &Path, name: &str, dtype: DType) -> Result<safetensors::Dtype> {
    Ok(match dtype {
        DType::F32 => safetensors::Dtype::F32,
        DType::F64 => safetensors::Dtype::F64,
        DType::F16 => safetensors::Dtype::F16,
        DType::BF16 => safetensors::Dtype::BF16,
        DType::I64 => safetensors::Dtype::I64,
        DType::I32 => safetensors::Dtype::I32,
        DType::U8 => safetensors::Dtype::U8,
        other => {
            return Err(Error::Checkpoint {
                path: path.into(),
                reason: format!("`{name}` has dtype {other:?}, which is not stored"),
            });
        }
    })
}

fn burn_dtype(dtype: safetensors::Dtype) -> Option<DType> {
    Some(match dtype {
        safetensors::Dtype::F32 => DType::F32,
        safetensors::Dtype::F64 => DType::F64,
        safetensors::Dtype::F16 => DType::F16,
        safetensors::Dtype::BF16 => DType::BF16,
        safetensors::Dtype::I64 => DType::I64,
        safetensors::Dtype::I32 => DType::I32,
        safetensors::Dtype::U8 => DType::U8,
        _ => return None,
    })
}

/// Writes named tensors (and string metadata) as one `.safetensors` file, atomically.
pub fn write_safetensors(
    path: &Path,
    tensors: &[Named],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let mut views = Vec::with_capacity(tensors.len());
    for (name, data) in tensors {
        let view = safetensors::tensor::TensorView::new(
            st_dtype(path, name, data.dtype())?,
            data.shape().to_vec(),
            data.as_bytes(),
        )
        .map_err(|e| Error::Checkpoint {
            path: path.into(),
            reason: format!("`{name}`: {e}"),
        })?;
        views.push((name.clone(), view));
    }
    let bytes = safetensors::serialize(views, metadata).map_err(|e| Error::Checkpoint {
        path: path.into(),
        reason: e.to_string(),
    })?;
    write_atomically(path, |out| {
        out.write_all(&bytes).map_err(|e| diffbir_core::Error::Io {
            path: path.into(),
            error: e,
        })
    })?;
    Ok(())
}

/// Reads every tensor and the metadata of a `.safetensors` file.
pub fn read_safetensors(path: &Path) -> Result<(Vec<Named>, HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |reason: String| Error::Checkpoint {
        path: path.into(),
        reason,
    };
    let (_, meta) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let file = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut tensors = Vec::new();
    for (name, view) in file.tensors() {
        let dtype = burn_dtype(view.dtype())
            .ok_or_else(|| bad(format!("`{name}` has an unsupported dtype")))?;
        tensors.push((
            name,
            TensorData::from_bytes_vec(view.data().to_vec(), view.shape().to_vec(), dtype),
        ));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((tensors, metadata))
}

/// Writes a training state atomically.
pub fn save_state(path: &Path, state: &TrainState) -> Result<()> {
    let mut tensors: Vec<Named> = Vec::with_capacity(state.model.len() + state.optimizer.len());
    tensors.extend(
        state
            .model
            .iter()
            .map(|(n, d)| (format!("model.{n}"), d.clone())),
    );
    tensors.extend(
        state
            .optimizer
            .iter()
            .map(|(n, d)| (format!("optim.{n}"), d.clone())),
    );
    tensors.extend(
        state
            .data
            .iter()
            .map(|(n, d)| (format!("data.{n}"), d.clone())),
    );
    let mut metadata = HashMap::from([
        ("format".to_string(), STATE_FORMAT.to_string()),
        ("stage".to_string(), state.stage.clone()),
        ("step".to_string(), state.step.to_string()),
        ("seed".to_string(), state.seed.to_string()),
        (
            "optimizer_step".to_string(),
            state.optimizer_step.to_string(),
        ),
        (
            "rng".to_string(),
            format!(
                "chacha8 streams derived from seed {} and the sample/step index; next step {}",
                state.seed, state.step
            ),
        ),
        ("config".to_string(), state.config.clone()),
    ]);
    if !state.data_meta.is_empty() {
        metadata.insert("data".to_string(), state.data_meta.clone());
    }
    write_safetensors(path, &tensors, Some(metadata))
}

/// Reads a training state written by [`save_state`].
pub fn load_state(path: &Path) -> Result<TrainState> {
    let (tensors, meta) = read_safetensors(path)?;
    let bad = |reason: String| Error::Checkpoint {
        path: path.into(),
        reason,
    };
    if meta.get("format").map(String::as_str) != Some(STATE_FORMAT) {
        return Err(bad(format!("not a {STATE_FORMAT} file")));
    }
    let get = |key: &str| {
        meta.get(key)
            .cloned()
            .ok_or_else(|| bad(format!("metadata `{key}` missing")))
    };
    let num = |key: &str| -> Result<u64> {
        get(key)?
            .parse()
            .map_err(|_| bad(format!("metadata `{key}` is not a number")))
    };
    let mut model = Vec::new();
    let mut optimizer = Vec::new();
    let mut data_tensors = Vec::new();
    for (name, data) in tensors {
        if let Some(n) = name.strip_prefix("model.") {
            model.push((n.to_string(), data));
        } else if let Some(n) = name.strip_prefix("optim.") {
            optimizer.push((n.to_string(), data));
        } else if let Some(n) = name.strip_prefix("data.") {
            data_tensors.push((n.to_string(), data));
        } else {
            return Err(bad(format!("unexpected tensor `{name}`")));
        }
    }
    Ok(TrainState {
        stage: get("stage")?,
        step: num("step")?,
        seed: num("seed")?,
        config: get("config")?,
        model,
        optimizer,
        optimizer_step: num("optimizer_step")?,
        data: data_tensors,
        data_meta: meta.get("data").cloned().unwrap_or_default(),
    })
}

/// The state file with the highest step in `dir`, if any. Temporary files of interrupted
/// writes are ignored.
pub fn latest_state(dir: &Path) -> Result<Option<(u64, PathBuf)>> {
    if !dir.exists() {
        return Ok(None);
    }
    let mut best: Option<(u64, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(step) = name
            .strip_suffix(".state.safetensors")
            .filter(|s| s.len() == 7)
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        if best.as_ref().is_none_or(|(b, _)| step > *b) {
            best = Some((step, path));
        }
    }
    Ok(best)
}

/// Removes leftovers of writes interrupted by a kill (`.diffbir-*.part`) from `dir`.
pub fn remove_partial_files(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with(".diffbir-") && name.ends_with(".part") {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

/// A module's tensors in burn's layout under their module paths (enum variants skipped).
pub fn module_tensors<M: ModuleSnapshot>(module: &M) -> Result<Vec<Named>> {
    collect(module, false)
}

/// A module's tensors in PyTorch's layout (Linear weights `[out, in]`, norm `weight`/`bias`)
/// under their module paths, which are the official key names wherever the module mirrors
/// them.
pub fn official_tensors<M: ModuleSnapshot>(module: &M) -> Result<Vec<Named>> {
    collect(module, true)
}

fn collect<M: ModuleSnapshot>(module: &M, pytorch: bool) -> Result<Vec<Named>> {
    let adapter: Option<Box<dyn burn::store::ModuleAdapter>> = if pytorch {
        Some(Box::new(BurnToPyTorchAdapter))
    } else {
        None
    };
    module
        .collect(None, adapter, true)
        .iter()
        .map(|t| {
            bridge::to_data(t)
                .map(|d| (t.name.clone(), d))
                .map_err(|e| Error::Core(diffbir_core::Error::Unsupported(e.to_string())))
        })
        .collect()
}

/// Applies tensors written by [`module_tensors`] strictly: every module tensor must be
/// given, every given tensor used, every shape right.
pub fn apply_tensors<M: ModuleSnapshot>(
    module: &mut M,
    tensors: Vec<Named>,
    source: &Path,
) -> Result<()> {
    let snapshots = tensors
        .into_iter()
        .map(|(name, data)| bridge::from_data(data, name, None))
        .collect();
    let result = module.apply(snapshots, None, None, true);
    let missing: Vec<String> = result.missing.iter().map(|(p, _)| p.clone()).collect();
    if !missing.is_empty() || !result.unused.is_empty() || !result.errors.is_empty() {
        return Err(Error::Checkpoint {
            path: source.into(),
            reason: format!(
                "does not fit the configured network: missing {missing:?}, unused {:?}, errors {:?}",
                result.unused, result.errors
            ),
        });
    }
    Ok(())
}
