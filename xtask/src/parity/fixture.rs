//! Reading one parity case: its JSON description and its `.io.safetensors` tensors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Int, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

/// A tensor of a case file, kept in its stored precision as `f64` values.
#[derive(Debug, Clone)]
pub struct StoredTensor {
    /// Shape as stored.
    pub shape: Vec<usize>,
    /// Values widened to f64 (integers are exact up to 2^53).
    pub values: Vec<f64>,
    /// Whether the stored dtype is an integer type.
    pub integer: bool,
}

/// One parity case.
#[derive(Debug)]
pub struct Case {
    /// Case name (the JSON file's stem).
    pub name: String,
    /// Folder of the case (weights are looked up next to it).
    pub dir: PathBuf,
    /// The case's JSON.
    pub json: Value,
    tensors: BTreeMap<String, StoredTensor>,
}

/// `|actual − expected| ≤ atol + rtol·|expected|`, or integer-exact.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    /// Absolute part.
    pub atol: f64,
    /// Relative part.
    pub rtol: f64,
    /// Integer-exact comparison.
    pub exact: bool,
}

impl std::fmt::Display for Tolerance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.exact {
            f.write_str("exact")
        } else {
            write!(f, "{:.0e}+{:.0e}*|x|", self.atol, self.rtol)
        }
    }
}

impl Case {
    /// Reads `<dir>/<name>.json` and its io file.
    pub fn open(json_path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(json_path)
            .with_context(|| format!("reading {}", json_path.display()))?;
        let json: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", json_path.display()))?;
        let dir = json_path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let name = json
            .get("case")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| {
                json_path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
        let io_name = json
            .get("io_file")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("{name}.io.safetensors"));
        let io_path = dir.join(&io_name);
        let tensors = read_tensors(&io_path)?;
        Ok(Self {
            name,
            dir,
            json,
            tensors,
        })
    }

    /// The case's builder (which code path it exercises).
    pub fn builder(&self) -> &str {
        self.json
            .get("builder")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// The recommended tolerance.
    pub fn tolerance(&self) -> Tolerance {
        Self::tolerance_in(self.json.get("tolerance"))
    }

    /// The tolerance of one output: its own entry in `tolerance.outputs` where the case gives
    /// one (an output known to fewer digits than the rest, e.g. a result of a cancellation),
    /// else the case's.
    pub fn output_tolerance(&self, name: &str) -> Tolerance {
        match self
            .json
            .pointer("/tolerance/outputs")
            .and_then(|o| o.get(name))
        {
            Some(own) => Self::tolerance_in(Some(own)),
            None => self.tolerance(),
        }
    }

    /// Whether the case gives `name` a tolerance of its own (integer outputs are compared
    /// exactly unless it does).
    pub fn has_own_tolerance(&self, name: &str) -> bool {
        self.json
            .pointer("/tolerance/outputs")
            .and_then(|o| o.get(name))
            .is_some()
    }

    fn tolerance_in(t: Option<&Value>) -> Tolerance {
        let num = |k: &str| t.and_then(|t| t.get(k)).and_then(Value::as_f64);
        Tolerance {
            atol: num("atol").unwrap_or(0.0),
            rtol: num("rtol").unwrap_or(0.0),
            exact: t
                .and_then(|t| t.get("exact"))
                .and_then(Value::as_bool)
                .unwrap_or(false),
        }
    }

    /// A field of the case's JSON, by JSON pointer (`/config/embed_dim`).
    pub fn field(&self, pointer: &str) -> Result<&Value> {
        self.json
            .pointer(pointer)
            .with_context(|| format!("case {} has no `{pointer}`", self.name))
    }

    /// An unsigned integer field, by JSON pointer.
    pub fn usize_field(&self, pointer: &str) -> Result<usize> {
        self.field(pointer)?
            .as_u64()
            .map(|v| v as usize)
            .with_context(|| format!("case {}: `{pointer}` is not an unsigned integer", self.name))
    }

    /// The case's constructor `config` laid over `defaults` (this port's defaults, which are
    /// the original constructor's): arguments the case leaves out keep their default, nested
    /// objects are merged the same way, and arguments the port does not model (training-only
    /// ones such as `drop_path_rate`) are ignored.
    pub fn config<T: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        defaults: T,
    ) -> Result<T> {
        self.config_at("/config", defaults)
    }

    /// Like [`config`](Self::config), for the object at another JSON pointer.
    pub fn config_at<T: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        pointer: &str,
        defaults: T,
    ) -> Result<T> {
        fn overlay(base: &mut Value, given: &Value) {
            if let (Some(base), Some(given)) = (base.as_object_mut(), given.as_object()) {
                for (key, value) in given {
                    match base.get_mut(key) {
                        Some(slot) if slot.is_object() && value.is_object() => overlay(slot, value),
                        Some(slot) => *slot = value.clone(),
                        None => {}
                    }
                }
            }
        }
        let mut merged = serde_json::to_value(defaults)?;
        overlay(&mut merged, self.field(pointer)?);
        serde_json::from_value(merged).with_context(|| {
            format!(
                "case {}: `{pointer}` does not describe this module",
                self.name
            )
        })
    }

    /// A stored tensor by full name (`input.x`).
    pub fn stored(&self, name: &str) -> Result<&StoredTensor> {
        self.tensors
            .get(name)
            .with_context(|| format!("case {} has no tensor `{name}`", self.name))
    }

    /// Names of the expected outputs (`output.*`).
    pub fn output_names(&self) -> Vec<String> {
        self.names_with_prefix("output.")
    }

    /// Names of the stored tensors starting with `prefix`, sorted (so `NN`-numbered tensors
    /// come in order).
    pub fn names_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.tensors
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// The recorded noise draws (`noise.NNN`), in draw order.
    pub fn noise_draws(&self) -> Vec<TensorData> {
        self.tensors
            .iter()
            .filter(|(k, _)| k.starts_with("noise."))
            .map(|(_, t)| float_data(t))
            .collect()
    }

    /// A stored float tensor on `device`.
    pub fn float<const D: usize>(&self, name: &str, device: &Device) -> Result<Tensor<D>> {
        let t = self.stored(name)?;
        if t.shape.len() != D {
            bail!(
                "case {}: `{name}` has rank {}, expected {D}",
                self.name,
                t.shape.len()
            );
        }
        Ok(Tensor::from_data(float_data(t), device))
    }

    /// A stored integer tensor on `device`.
    pub fn int<const D: usize>(&self, name: &str, device: &Device) -> Result<Tensor<D, Int>> {
        let t = self.stored(name)?;
        if t.shape.len() != D {
            bail!(
                "case {}: `{name}` has rank {}, expected {D}",
                self.name,
                t.shape.len()
            );
        }
        let values: Vec<i64> = t.values.iter().map(|v| *v as i64).collect();
        Ok(Tensor::from_data(
            TensorData::new(values, t.shape.clone()),
            device,
        ))
    }
}

fn float_data(t: &StoredTensor) -> TensorData {
    let values: Vec<f32> = t.values.iter().map(|v| *v as f32).collect();
    TensorData::new(values, t.shape.clone())
}

fn read_tensors(path: &Path) -> Result<BTreeMap<String, StoredTensor>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let st = SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{} is not a safetensors file", path.display()))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let data = view.data();
        let (values, integer): (Vec<f64>, bool) = match view.dtype() {
            Dtype::F32 => (
                data.chunks_exact(4)
                    .map(|c| f64::from(f32::from_le_bytes(c.try_into().expect("4 bytes"))))
                    .collect(),
                false,
            ),
            Dtype::F64 => (
                data.chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect(),
                false,
            ),
            Dtype::F16 => (
                data.chunks_exact(2)
                    .map(|c| f64::from(half::f16::from_le_bytes([c[0], c[1]])))
                    .collect(),
                false,
            ),
            Dtype::I64 => (
                data.chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f64)
                    .collect(),
                true,
            ),
            Dtype::I32 => (
                data.chunks_exact(4)
                    .map(|c| f64::from(i32::from_le_bytes(c.try_into().expect("4 bytes"))))
                    .collect(),
                true,
            ),
            Dtype::BOOL | Dtype::U8 => (data.iter().map(|b| f64::from(*b)).collect(), true),
            other => bail!(
                "{}: tensor `{name}` has unsupported dtype {other:?}",
                path.display()
            ),
        };
        out.insert(
            name.to_string(),
            StoredTensor {
                shape: view.shape().to_vec(),
                values,
                integer,
            },
        );
    }
    Ok(out)
}
