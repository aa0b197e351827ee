//! Writing checkpoints: PyTorch's `torch.save` zip format (readable by `torch.load` and by
//! [`Checkpoint::open`](crate::Checkpoint::open)) and `.safetensors`.
//!
//! The PyTorch writer emits what `torch.save(state_dict)` emits: a zip archive with
//! `archive/data.pkl` (a protocol-2 pickle of an `OrderedDict` of tensors rebuilt with
//! `torch._utils._rebuild_tensor_v2`), one stored entry per tensor under `archive/data/`,
//! `archive/byteorder` and `archive/version`. Optionally the dictionary is nested under a key
//! (`{"state_dict": …}` as PyTorch Lightning writes). Writes are atomic.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use burn::tensor::{DType, TensorData};

use crate::error::{Error, Result};
use crate::image::write_atomically;

/// A named tensor to write.
pub type NamedTensor = (String, TensorData);

/// Writes `tensors` in PyTorch's zip format, nested under `wrapper` when given (e.g.
/// `Some("state_dict")`, with `epoch` and `global_step` set to 0 beside it as Lightning does).
pub fn save_pytorch(path: &Path, tensors: &[NamedTensor], wrapper: Option<&str>) -> Result<()> {
    let mut pickle = Pickle::default();
    pickle.proto();
    if let Some(wrapper) = wrapper {
        pickle.op(b'}');
        pickle.op(b'(');
        pickle.unicode(wrapper);
        pickle.state_dict(path, tensors)?;
        for counter in ["epoch", "global_step"] {
            pickle.unicode(counter);
            pickle.int(0);
        }
        pickle.op(b'u');
    } else {
        pickle.state_dict(path, tensors)?;
    }
    pickle.op(b'.');

    let stem = "archive";
    write_atomically(path, |out| {
        let zip_err = |e: zip::result::ZipError| Error::Io {
            path: path.to_path_buf(),
            error: std::io::Error::other(e),
        };
        let mut zip = zip::ZipWriter::new(out);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(true)
            .with_alignment(64);
        let mut entry = |name: String, bytes: &[u8]| -> Result<()> {
            zip.start_file(name, options).map_err(zip_err)?;
            zip.write_all(bytes).map_err(|e| Error::io(path, e))
        };
        entry(format!("{stem}/data.pkl"), &pickle.bytes)?;
        entry(format!("{stem}/byteorder"), b"little")?;
        for (i, (_, data)) in tensors.iter().enumerate() {
            entry(format!("{stem}/data/{i}"), data.as_bytes())?;
        }
        entry(format!("{stem}/version"), b"3\n")?;
        zip.finish().map_err(zip_err)?;
        Ok(())
    })
}

/// Writes `tensors` as a `.safetensors` file.
pub fn save_safetensors(path: &Path, tensors: &[NamedTensor]) -> Result<()> {
    let mut views = Vec::with_capacity(tensors.len());
    for (name, data) in tensors {
        let dtype = match data.dtype() {
            DType::F32 => safetensors::Dtype::F32,
            DType::F64 => safetensors::Dtype::F64,
            DType::F16 => safetensors::Dtype::F16,
            DType::BF16 => safetensors::Dtype::BF16,
            DType::I64 => safetensors::Dtype::I64,
            DType::I32 => safetensors::Dtype::I32,
            DType::U8 => safetensors::Dtype::U8,
            other => return Err(unsupported(path, name, other)),
        };
        let view =
            safetensors::tensor::TensorView::new(dtype, data.shape().to_vec(), data.as_bytes())
                .map_err(|e| Error::Tensor {
                    path: path.to_path_buf(),
                    key: name.clone(),
                    reason: e.to_string(),
                })?;
        views.push((name.clone(), view));
    }
    let bytes =
        safetensors::serialize(views, None::<HashMap<String, String>>).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            error: std::io::Error::other(e),
        })?;
    write_atomically(path, |out| {
        out.write_all(&bytes).map_err(|e| Error::io(path, e))
    })
}

fn unsupported(path: &Path, key: &str, dtype: DType) -> Error {
    Error::Tensor {
        path: path.to_path_buf(),
        key: key.to_string(),
        reason: format!("cannot store dtype {dtype:?}"),
    }
}

/// A minimal protocol-2 pickle writer for what `torch.save` needs.
#[derive(Default)]
struct Pickle {
    bytes: Vec<u8>,
}

impl Pickle {
    fn op(&mut self, op: u8) {
        self.bytes.push(op);
    }

    fn proto(&mut self) {
        self.bytes.extend_from_slice(&[0x80, 2]);
    }

    fn unicode(&mut self, s: &str) {
        self.op(b'X');
        self.bytes
            .extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(s.as_bytes());
    }

    fn global(&mut self, module: &str, name: &str) {
        self.op(b'c');
        self.bytes.extend_from_slice(module.as_bytes());
        self.op(b'\n');
        self.bytes.extend_from_slice(name.as_bytes());
        self.op(b'\n');
    }

    fn int(&mut self, v: u64) {
        if let Ok(small) = i32::try_from(v) {
            self.op(b'J');
            self.bytes.extend_from_slice(&small.to_le_bytes());
        } else {
            // LONG1: little-endian two's complement; 9 bytes always hold a u64 as positive.
            self.op(0x8a);
            self.op(9);
            self.bytes.extend_from_slice(&v.to_le_bytes());
            self.op(0);
        }
    }

    fn tuple(&mut self, values: &[usize]) {
        if values.is_empty() {
            self.op(b')');
            return;
        }
        self.op(b'(');
        for &v in values {
            self.int(v as u64);
        }
        self.op(b't');
    }

    fn ordered_dict(&mut self) {
        self.global("collections", "OrderedDict");
        self.op(b')');
        self.op(b'R');
    }

    fn state_dict(&mut self, path: &Path, tensors: &[NamedTensor]) -> Result<()> {
        self.ordered_dict();
        self.op(b'(');
        for (i, (name, data)) in tensors.iter().enumerate() {
            let storage = match data.dtype() {
                DType::F32 => "FloatStorage",
                DType::F64 => "DoubleStorage",
                DType::F16 => "HalfStorage",
                DType::BF16 => "BFloat16Storage",
                DType::I64 => "LongStorage",
                DType::I32 => "IntStorage",
                DType::U8 => "ByteStorage",
                other => return Err(unsupported(path, name, other)),
            };
            let shape = data.shape().to_vec();
            let numel: usize = shape.iter().product();
            let mut stride = vec![1usize; shape.len()];
            for d in (0..shape.len().saturating_sub(1)).rev() {
                stride[d] = stride[d + 1] * shape[d + 1];
            }
            self.unicode(name);
            self.global("torch._utils", "_rebuild_tensor_v2");
            self.op(b'(');
            // Persistent id: ('storage', storage type, key, location, numel).
            self.op(b'(');
            self.unicode("storage");
            self.global("torch", storage);
            self.unicode(&i.to_string());
            self.unicode("cpu");
            self.int(numel as u64);
            self.op(b't');
            self.op(b'Q');
            self.int(0);
            self.tuple(&shape);
            self.tuple(&stride);
            self.op(0x89); // requires_grad = False
            self.ordered_dict(); // backward hooks
            self.op(b't');
            self.op(b'R');
        }
        self.op(b'u');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Checkpoint, CheckpointFormat};

    fn tensors() -> Vec<NamedTensor> {
        vec![
            (
                "a.weight".into(),
                TensorData::new(vec![1.0f32, -2.0, 3.5, 4.0, 5.0, 6.0], [2, 3]),
            ),
            ("b.index".into(), TensorData::new(vec![7i64, 8, 9], [3])),
            (
                "c.scalar".into(),
                TensorData::new(vec![0.25f32], [0usize; 0]),
            ),
            (
                "d.half".into(),
                TensorData::new(vec![half::f16::from_f32(1.5); 4], [2, 2]),
            ),
        ]
    }

    #[test]
    fn pytorch_files_read_back_with_every_wrapper() {
        let dir = tempfile::tempdir().unwrap();
        for wrapper in [None, Some("state_dict"), Some("params_ema")] {
            let p = dir.path().join("w.pth");
            save_pytorch(&p, &tensors(), wrapper).unwrap();
            let ckpt = Checkpoint::open(&p).unwrap();
            assert_eq!(ckpt.format(), CheckpointFormat::Pytorch);
            assert_eq!(
                ckpt.len(),
                4,
                "{wrapper:?}: {:?}",
                ckpt.keys().collect::<Vec<_>>()
            );
            let a = ckpt.tensor_data("a.weight").unwrap();
            assert_eq!(a.shape().to_vec(), vec![2, 3]);
            assert_eq!(
                a.try_to_vec::<f32>().unwrap(),
                vec![1.0, -2.0, 3.5, 4.0, 5.0, 6.0]
            );
            let b = ckpt.tensor_data("b.index").unwrap();
            assert_eq!(b.try_to_vec::<i64>().unwrap(), vec![7, 8, 9]);
            assert_eq!(
                ckpt.tensor_data("c.scalar")
                    .unwrap()
                    .try_to_vec::<f32>()
                    .unwrap(),
                vec![0.25]
            );
            // f16 is widened to f32 on read.
            assert_eq!(
                ckpt.tensor_data("d.half")
                    .unwrap()
                    .try_to_vec::<f32>()
                    .unwrap(),
                vec![1.5; 4]
            );
        }
    }

    #[test]
    fn safetensors_files_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.safetensors");
        save_safetensors(&p, &tensors()).unwrap();
        let ckpt = Checkpoint::open(&p).unwrap();
        assert_eq!(ckpt.format(), CheckpointFormat::Safetensors);
        assert_eq!(
            ckpt.tensor_data("b.index")
                .unwrap()
                .try_to_vec::<i64>()
                .unwrap(),
            vec![7, 8, 9]
        );
    }
}
