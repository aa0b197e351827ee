//! Reading checkpoints: `.safetensors` and PyTorch pickles (`.pth`, `.pt`, `.ckpt`, `.bin`).
//!
//! PyTorch files are parsed without executing any pickle code (burn-store's reader). The
//! wrappers the official DiffBIR files and their ancestors use are unwrapped the way the
//! original loaders do (`XPixelGroup/DiffBIR@3f8b530:diffbir/utils/common.py:L113-L120`,
//! `load_model_from_url`, and v1's `7bd5675:utils/realesrgan/realesrganer.py:L59-L65`): a nested
//! `params_ema`, `params` or `state_dict` dictionary is selected, and a `module.` prefix left by
//! `DataParallel` is stripped. Tensor bytes stay in the file until a module asks for them.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::pytorch_reader::PytorchReader;
use burn::store::{ModuleStore, SafetensorsStore, bridge};
use burn::tensor::{DType, TensorData};

use crate::error::{Error, Result};
pub use crate::pickle_guard::allow_pickle_globals;

/// The container a checkpoint was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointFormat {
    /// A `.safetensors` file.
    Safetensors,
    /// A PyTorch `torch.save` file (zip, legacy or tar container).
    Pytorch,
}

/// Name, shape and dtype of one stored tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// The key after unwrapping.
    pub key: String,
    /// The stored shape.
    pub shape: Vec<usize>,
    /// The stored element type.
    pub dtype: DType,
}

impl TensorInfo {
    /// Number of elements.
    pub fn num_elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// An opened checkpoint: its tensors by key, read lazily.
#[derive(Debug)]
pub struct Checkpoint {
    path: PathBuf,
    format: CheckpointFormat,
    unwrapped: Vec<String>,
    tensors: BTreeMap<String, PackTensor>,
}

/// Top-level wrappers selected, in order of preference, when a file nests its weights.
/// `params_ema`/`params` are BasicSR's (EMA weights first, as its loaders prefer);
/// `state_dict` is PyTorch Lightning's and DiffBIR's own.
const WRAPPERS: [&str; 3] = ["params_ema", "params", "state_dict"];

impl Checkpoint {
    /// Opens a checkpoint, recognising the container from its first bytes (the extension is
    /// not trusted), and unwraps it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let format = sniff(&path)?;
        let bad = |reason: String| Error::Checkpoint {
            path: path.clone(),
            reason,
        };
        let tensors: BTreeMap<String, PackTensor> = match format {
            CheckpointFormat::Safetensors => SafetensorsStore::from_file(&path)
                .get_all_tensors()
                .map_err(|e| bad(e.to_string()))?
                .clone(),
            CheckpointFormat::Pytorch => {
                crate::pickle_guard::check_pytorch_file(&path)?;
                PytorchReader::new(&path)
                    .map_err(|e| bad(e.to_string()))?
                    .into_tensors()
                    .into_iter()
                    .map(|(key, t)| (key, bridge::from_pytorch(t)))
                    .collect()
            }
        };
        if tensors.is_empty() {
            return Err(bad("it holds no tensors".into()));
        }
        let mut ckpt = Self {
            path,
            format,
            unwrapped: Vec::new(),
            tensors,
        };
        if format == CheckpointFormat::Pytorch {
            ckpt.unwrap_wrappers();
        }
        Ok(ckpt)
    }

    fn unwrap_wrappers(&mut self) {
        if let Some(wrapper) = WRAPPERS.iter().find(|w| {
            let prefix = format!("{w}.");
            self.tensors.keys().any(|k| k.starts_with(&prefix))
        }) {
            let prefix = format!("{wrapper}.");
            let tensors = std::mem::take(&mut self.tensors);
            self.tensors = tensors
                .into_iter()
                .filter_map(|(k, t)| k.strip_prefix(&prefix).map(|k| (k.to_string(), t)))
                .collect();
            self.unwrapped.push(format!("selected `{wrapper}`"));
        }
        if self.tensors.keys().all(|k| k.starts_with("module.")) {
            let tensors = std::mem::take(&mut self.tensors);
            self.tensors = tensors
                .into_iter()
                .map(|(k, t)| (k["module.".len()..].to_string(), t))
                .collect();
            self.unwrapped.push("stripped `module.`".into());
        }
    }

    /// The file this checkpoint was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The container format.
    pub fn format(&self) -> CheckpointFormat {
        self.format
    }

    /// What unwrapping was applied (empty for a flat file), e.g. `selected `state_dict``.
    pub fn unwrapped(&self) -> &[String] {
        &self.unwrapped
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether the checkpoint holds no tensors (never true for an opened checkpoint).
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Keys in sorted order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Whether a key is present.
    pub fn contains(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    /// Name, shape and dtype of every tensor, sorted by key.
    pub fn infos(&self) -> Vec<TensorInfo> {
        self.tensors
            .iter()
            .map(|(key, t)| TensorInfo {
                key: key.clone(),
                shape: t.shape.to_vec(),
                dtype: t.dtype,
            })
            .collect()
    }

    /// Total number of elements over all floating-point tensors (the parameter count, plus
    /// float buffers).
    pub fn num_float_elements(&self) -> usize {
        self.tensors
            .values()
            .filter(|t| t.dtype.is_float())
            .map(|t| t.shape.iter().product::<usize>())
            .sum()
    }

    /// Reads one tensor; floating-point data is converted to f32, integers are returned as
    /// stored.
    pub fn tensor_data(&self, key: &str) -> Result<TensorData> {
        let t = self.tensors.get(key).ok_or_else(|| Error::Tensor {
            path: self.path.clone(),
            key: key.to_string(),
            reason: "no such tensor in the checkpoint".into(),
        })?;
        let data = bridge::to_data(t).map_err(|e| Error::Tensor {
            path: self.path.clone(),
            key: key.to_string(),
            reason: e.to_string(),
        })?;
        Ok(if data.dtype().is_float() && data.dtype() != DType::F32 {
            data.convert::<f32>()
        } else {
            data
        })
    }

    /// The tensors as burn-store snapshots, for applying to a module.
    pub(crate) fn snapshots(&self) -> impl Iterator<Item = (&String, &PackTensor)> {
        self.tensors.iter()
    }
}

/// Recognises the container from the first bytes of the file.
///
/// Safetensors is checked first and by its whole framing (an 8-byte little-endian header
/// length that fits in the file, then `{`): its first byte is the low byte of that length, so
/// any single-byte test (such as a pickle's `0x80`) would misread one file in 256.
fn sniff(path: &Path) -> Result<CheckpointFormat> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut head = [0u8; 16];
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    let head = &head[..n];
    let not_a_checkpoint = |what: &str| Error::Checkpoint {
        path: path.to_path_buf(),
        reason: format!("{what}; expected a .safetensors file or a PyTorch .pth/.pt/.ckpt file"),
    };
    if head.is_empty() {
        return Err(not_a_checkpoint("the file is empty"));
    }
    if is_safetensors(head, len) {
        return Ok(CheckpointFormat::Safetensors);
    }
    // PyTorch >= 1.6: a zip archive. Legacy: a pickle stream (protocol opcode 0x80).
    // Before 0.1.10: a tar archive ("ustar" at byte 257, checked by the reader itself).
    if head.starts_with(b"PK\x03\x04") || head[0] == 0x80 {
        return Ok(CheckpointFormat::Pytorch);
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if len >= 512 || matches!(ext.as_str(), "pth" | "pt" | "ckpt" | "bin" | "tar") {
        // Let the PyTorch reader decide (tar containers, or a clear parse error).
        return Ok(CheckpointFormat::Pytorch);
    }
    Err(not_a_checkpoint(
        "the file starts with neither a zip, pickle nor safetensors header",
    ))
}

/// Whether `head` (the file's first bytes) frames a safetensors file of `len` bytes: a
/// header length `n` with `8 + n <= len`, and the header starting with `{`.
fn is_safetensors(head: &[u8], len: u64) -> bool {
    let Some(size) = head.get(..8) else {
        return false;
    };
    let n = u64::from_le_bytes(size.try_into().expect("8 bytes"));
    n >= 2 && n <= len.saturating_sub(8) && head.get(8) == Some(&b'{')
}

#[cfg(test)]
#[path = "../../testing/fixtures.rs"]
mod test_fixtures;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Writes a safetensors file of f32 tensors for tests.
    pub(crate) fn write_safetensors(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
            .iter()
            .map(|(k, s, v)| {
                (
                    k.to_string(),
                    s.clone(),
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                )
            })
            .collect();
        let views: HashMap<String, safetensors::tensor::TensorView<'_>> = bytes
            .iter()
            .map(|(k, s, b)| {
                (
                    k.clone(),
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                        .unwrap(),
                )
            })
            .collect();
        safetensors::serialize_to_file(views, None, path).unwrap();
    }

    pub(crate) fn fixtures_dir() -> PathBuf {
        super::test_fixtures::fixtures()
    }

    #[test]
    fn reads_safetensors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        write_safetensors(
            &p,
            &[
                ("a.weight", vec![2, 3], vec![1.0; 6]),
                ("b", vec![4], vec![2.0; 4]),
            ],
        );
        let ckpt = Checkpoint::open(&p).unwrap();
        assert_eq!(ckpt.format(), CheckpointFormat::Safetensors);
        assert_eq!(ckpt.keys().collect::<Vec<_>>(), ["a.weight", "b"]);
        assert_eq!(ckpt.num_float_elements(), 10);
        let b = ckpt.tensor_data("b").unwrap();
        assert_eq!(b.try_to_vec::<f32>().unwrap(), vec![2.0; 4]);
        assert!(matches!(ckpt.tensor_data("c"), Err(Error::Tensor { .. })));
    }

    /// A safetensors file of one tensor whose JSON header is exactly `n` bytes long (padded
    /// with spaces, as the format allows), or `None` when `n` is too short for it.
    fn safetensors_with_header_len(n: usize) -> Option<Vec<u8>> {
        let json = r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        (json.len() <= n).then(|| {
            let header = format!("{json}{}", " ".repeat(n - json.len()));
            let mut bytes = (n as u64).to_le_bytes().to_vec();
            bytes.extend_from_slice(header.as_bytes());
            bytes.extend_from_slice(&[0, 0, 128, 63, 0, 0, 0, 64]);
            bytes
        })
    }

    #[test]
    fn safetensors_is_recognised_whatever_its_header_length() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        // Every length up to 1 024, then lengths drawn at random up to 1 MiB (the low byte of
        // the length is the file's first byte: 0x80 is a pickle's PROTO, 0x50 'P' a zip's).
        let mut lengths: Vec<usize> = (0..=1024).collect();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        lengths.extend((0..200).map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            1025 + (state >> 44) as usize
        }));
        lengths.extend([42_880, 0x80 + 256 * 100, 0x0403_4b50 & 0xffff]);
        let mut opened = 0;
        for n in lengths {
            // A bare `{` header of this length is recognised as safetensors by its framing...
            let mut framed = (n as u64).to_le_bytes().to_vec();
            framed.push(b'{');
            framed.resize(8 + n.max(1), b' ');
            std::fs::write(&p, &framed).unwrap();
            let expected = if n >= 2 {
                Some(CheckpointFormat::Safetensors)
            } else {
                None
            };
            assert_eq!(
                sniff(&p)
                    .ok()
                    .filter(|f| *f == CheckpointFormat::Safetensors),
                expected,
                "header length {n}"
            );
            // ...and a real file with a header of that length opens.
            if let Some(bytes) = safetensors_with_header_len(n) {
                std::fs::write(&p, bytes).unwrap();
                let ckpt =
                    Checkpoint::open(&p).unwrap_or_else(|e| panic!("header length {n}: {e}"));
                assert_eq!(ckpt.format(), CheckpointFormat::Safetensors);
                let w = ckpt.tensor_data("w").unwrap();
                assert_eq!(
                    w.try_to_vec::<f32>().unwrap(),
                    [1.0, 2.0],
                    "header length {n}"
                );
                opened += 1;
            }
        }
        assert!(opened > 1000);
        // A length that claims more bytes than the file has is not safetensors.
        let mut lying = (1u64 << 40).to_le_bytes().to_vec();
        lying.extend_from_slice(b"{}");
        std::fs::write(&p, lying).unwrap();
        assert!(Checkpoint::open(&p).is_err());
    }

    #[test]
    fn reads_the_sd_style_ckpt_and_unwraps_state_dict() {
        let ckpt = Checkpoint::open(fixtures_dir().join("sd_tiny.sd21_format.ckpt")).unwrap();
        assert_eq!(ckpt.format(), CheckpointFormat::Pytorch);
        assert_eq!(ckpt.unwrapped(), ["selected `state_dict`"]);
        assert!(ckpt.keys().any(|k| k.starts_with("model.diffusion_model.")));
        assert!(ckpt.keys().any(|k| k.starts_with("first_stage_model.")));
        assert!(ckpt.keys().all(|k| !k.starts_with("state_dict.")));
    }

    #[test]
    fn reads_a_raw_state_dict_pth() {
        let ckpt = Checkpoint::open(fixtures_dir().join("sd_tiny.controlnet_format.pth")).unwrap();
        assert!(ckpt.unwrapped().is_empty());
        let info = ckpt.infos();
        assert!(info.iter().any(|i| i.key.starts_with("input_blocks.0.0.")));
        assert!(
            info.iter()
                .all(|i| !i.shape.is_empty() || i.num_elements() == 1)
        );
    }

    #[test]
    fn corrupt_and_foreign_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, Vec<u8>); 5] = [
            ("empty.pth", vec![]),
            ("text.ckpt", b"hello, this is not a checkpoint".to_vec()),
            ("zip.pth", b"PK\x03\x04garbage garbage garbage".to_vec()),
            ("pickle.pt", vec![0x80, 0x02, b'K', 0x01, b'.']),
            ("bad.safetensors", {
                let mut v = 200u64.to_le_bytes().to_vec();
                v.extend_from_slice(b"{\"a\": 1");
                v
            }),
        ];
        for (name, bytes) in cases {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            let err = Checkpoint::open(&p).unwrap_err();
            assert!(matches!(err, Error::Checkpoint { .. }), "{name}: {err}");
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
        // A real checkpoint cut in half.
        let full = std::fs::read(fixtures_dir().join("sd_tiny.controlnet_format.pth")).unwrap();
        let p = dir.path().join("half.pth");
        std::fs::write(&p, &full[..full.len() / 2]).unwrap();
        assert!(Checkpoint::open(&p).is_err());
        assert!(matches!(
            Checkpoint::open(dir.path().join("missing.pth")),
            Err(Error::Io { .. })
        ));
    }
}
