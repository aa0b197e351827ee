//! Refusing pickles that reference code: every global a PyTorch checkpoint's pickles name must
//! be on an allow-list of tensor rebuilders, storages and plain containers.
//!
//! The tensors themselves are read by burn-store's reader, which never executes anything; it
//! keeps unknown objects as opaque placeholders, so a file whose pickle also calls
//! `os.system` would load quietly. PyTorch's `weights_only` loader refuses such files, and so
//! does this one: the pickles are walked opcode by opcode (a small stack machine, enough to
//! resolve `STACK_GLOBAL`'s operands), and the first global outside the allow-list is
//! reported with the opcode that named it. Callers who trust a file can allow more names
//! process-wide with [`allow_pickle_globals`], as `torch.serialization.add_safe_globals` does.
//!
//! Written by hand because no maintained crate scans pickles without building Python
//! objects; the walker only keeps strings (for `STACK_GLOBAL`) and is bounded in memory by
//! the limits below.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::rc::Rc;
use std::sync::RwLock;

use crate::error::{Error, Result};

/// Largest pickle entry read from a zip checkpoint (the real SD 2.1 `data.pkl` is < 2 MiB).
const MAX_PICKLE_BYTES: u64 = 512 << 20;
/// Most values on the pickle stack at once.
const MAX_STACK: usize = 1 << 22;
/// Most memo entries.
const MAX_MEMO: usize = 1 << 22;
/// Longest text line (`GLOBAL` names, `INT` text, …).
const MAX_LINE: usize = 1 << 16;
/// Most pickles in one tar member's table (storages or tensors).
const MAX_TAR_RECORDS: usize = 1 << 24;

/// Names allowed on top of the built-in list, `module.name`.
static EXTRA_ALLOWED: RwLock<BTreeSet<String>> = RwLock::new(BTreeSet::new());

/// Allows more pickle globals (`module.name`, e.g. `numpy.core.multiarray.scalar`) in every
/// checkpoint opened afterwards by this process, for files the caller trusts. Nothing in a
/// pickle is ever executed; this only stops the refusal.
pub fn allow_pickle_globals<I, S>(names: I)
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut extra = EXTRA_ALLOWED.write().unwrap_or_else(|e| e.into_inner());
    extra.extend(names.into_iter().map(Into::into));
}

/// Whether `module.name` is a global a weights-only file may reference.
fn is_allowed(module: &str, name: &str) -> bool {
    const DTYPES: [&str; 22] = [
        "float32",
        "float",
        "float64",
        "double",
        "float16",
        "half",
        "bfloat16",
        "int64",
        "long",
        "int32",
        "int",
        "int16",
        "short",
        "int8",
        "uint8",
        "bool",
        "complex64",
        "complex128",
        "cfloat",
        "cdouble",
        "float8_e4m3fn",
        "float8_e5m2",
    ];
    const STORAGES: [&str; 13] = [
        "FloatStorage",
        "DoubleStorage",
        "HalfStorage",
        "BFloat16Storage",
        "LongStorage",
        "IntStorage",
        "ShortStorage",
        "CharStorage",
        "ByteStorage",
        "BoolStorage",
        "ComplexFloatStorage",
        "ComplexDoubleStorage",
        "UntypedStorage",
    ];
    let builtin = match module {
        "collections" => name == "OrderedDict",
        "torch._utils" => matches!(
            name,
            "_rebuild_tensor"
                | "_rebuild_tensor_v2"
                | "_rebuild_tensor_v3"
                | "_rebuild_parameter"
                | "_rebuild_parameter_with_state"
        ),
        "torch._tensor" => name == "_rebuild_from_type_v2",
        "torch.nn.parameter" => name == "Parameter",
        "torch.storage" => matches!(name, "UntypedStorage" | "TypedStorage"),
        "torch" => STORAGES.contains(&name) || DTYPES.contains(&name) || name == "Size",
        "builtins" | "__builtin__" => {
            matches!(name, "set" | "frozenset" | "bytearray" | "complex")
        }
        // How protocol-2 pickles spell `bytes` for Python 2 compatibility.
        "_codecs" => name == "encode",
        _ => false,
    };
    builtin || {
        let extra = EXTRA_ALLOWED.read().unwrap_or_else(|e| e.into_inner());
        extra.contains(&format!("{module}.{name}"))
    }
}

/// Why a pickle stream was not accepted.
enum Refusal {
    /// A global outside the allow-list.
    Global {
        global: String,
        opcode: &'static str,
    },
    /// The stream is not a pickle this walker can follow.
    Malformed(String),
}

impl From<std::io::Error> for Refusal {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Self::Malformed("the pickle ends before its STOP opcode".into())
        } else {
            Self::Malformed(e.to_string())
        }
    }
}

fn malformed<T>(reason: impl Into<String>) -> std::result::Result<T, Refusal> {
    Err(Refusal::Malformed(reason.into()))
}

type Scan<T> = std::result::Result<T, Refusal>;

/// What the walker keeps of a stack value: strings (operands of `STACK_GLOBAL`), the name of
/// a global (the class a storage table names) and small integers (a tar table's count).
#[derive(Clone)]
enum Value {
    Str(Rc<str>),
    Global,
    Int(i64),
    Other,
}

/// Checks every pickle of the PyTorch checkpoint at `path` (zip, legacy or tar container).
pub(crate) fn check_pytorch_file(path: &Path) -> Result<()> {
    let refused = |refusal: Refusal| match refusal {
        Refusal::Global { global, opcode } => Error::PickleGlobal {
            path: path.to_path_buf(),
            global,
            opcode,
        },
        Refusal::Malformed(reason) => Error::Checkpoint {
            path: path.to_path_buf(),
            reason: format!("its pickle cannot be read safely: {reason}"),
        },
    };
    let mut file = BufReader::new(File::open(path).map_err(|e| Error::io(path, e))?);
    let head = file.fill_buf().map_err(|e| Error::io(path, e))?;
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        check_zip(path).map_err(refused)
    } else if is_tar(head) {
        check_tar(file).map_err(refused)
    } else {
        // Legacy `torch.save`: the magic number, protocol version, system info, the object
        // and the storage keys, each its own pickle, then raw storage bytes. Any other file
        // is one plain pickle.
        let first = scan(&mut file).map_err(refused)?;
        if first.legacy_magic {
            (0..4)
                .try_for_each(|_| scan(&mut file).map(drop))
                .map_err(refused)?;
        }
        Ok(())
    }
}

fn is_tar(head: &[u8]) -> bool {
    head.get(257..262) == Some(b"ustar")
}

fn check_zip(path: &Path) -> Scan<()> {
    let file = File::open(path)?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file))
        .or_else(|e| malformed(format!("the zip container is unreadable: {e}")))?;
    for i in 0..zip.len() {
        let entry = zip
            .by_index(i)
            .or_else(|e| malformed(format!("zip entry {i} is unreadable: {e}")))?;
        let name = entry.name().map(|n| n.into_owned()).unwrap_or_default();
        if !name.ends_with(".pkl") {
            continue;
        }
        if entry.size() > MAX_PICKLE_BYTES {
            return malformed(format!(
                "{name} is {} bytes, more than the {MAX_PICKLE_BYTES} a weights pickle may have",
                entry.size()
            ));
        }
        scan(&mut BufReader::new(entry.take(MAX_PICKLE_BYTES)))?;
    }
    Ok(())
}

/// The pre-1.0 tar container: `sys_info` and `pickle` are pickles, `storages` and `tensors`
/// are tables of small pickles between raw bytes (the layout of `torch.serialization`'s
/// `legacy_load`).
fn check_tar(file: impl Read) -> Scan<()> {
    let mut archive = tar::Archive::new(file);
    let entries = archive
        .entries()
        .or_else(|e| malformed(format!("the tar container is unreadable: {e}")))?;
    for entry in entries {
        let entry = entry.or_else(|e| malformed(format!("a tar entry is unreadable: {e}")))?;
        let name = entry
            .path()
            .map(|p| p.to_string_lossy().trim_start_matches("./").to_string())
            .unwrap_or_default();
        let mut r = BufReader::new(entry);
        match name.as_str() {
            "sys_info" | "pickle" => drop(scan(&mut r)?),
            "storages" => {
                for _ in 0..tar_count(&mut r)? {
                    // (key, location, storage type), the element count, the bytes.
                    let storage_type = scan(&mut r)?.last_global;
                    let size = storage_type
                        .as_deref()
                        .and_then(element_size)
                        .map_or_else(|| malformed("a tar storage has no storage type"), Ok)?;
                    let numel = read_i64(&mut r)?;
                    skip(&mut r, numel.saturating_mul(size))?;
                }
                scan(&mut r)?; // the list of views
            }
            "tensors" => {
                for _ in 0..tar_count(&mut r)? {
                    scan(&mut r)?; // (key, storage key, tensor type)
                    let rank = read_i64(&mut r)? & 0xffff_ffff;
                    if rank > 64 {
                        return malformed(format!("a tar tensor has rank {rank}"));
                    }
                    // Shape, stride and storage offset, eight bytes each.
                    skip(&mut r, (2 * rank + 1) * 8)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn tar_count(r: &mut impl BufRead) -> Scan<u64> {
    match scan(r)?.int {
        Some(n) if (0..=MAX_TAR_RECORDS as i64).contains(&n) => Ok(n as u64),
        Some(n) => malformed(format!("a tar table claims {n} records")),
        None => malformed("a tar table does not start with its record count"),
    }
}

fn element_size(storage: &str) -> Option<u64> {
    Some(match storage.strip_prefix("torch.")? {
        "DoubleStorage" | "LongStorage" | "ComplexFloatStorage" => 8,
        "FloatStorage" | "IntStorage" => 4,
        "HalfStorage" | "BFloat16Storage" | "ShortStorage" => 2,
        "CharStorage" | "ByteStorage" | "BoolStorage" => 1,
        "ComplexDoubleStorage" => 16,
        _ => return None,
    })
}

fn read_i64(r: &mut impl Read) -> Scan<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    u64::try_from(i64::from_le_bytes(b)).or_else(|_| malformed("a tar table holds a negative size"))
}

fn skip(r: &mut impl Read, n: u64) -> Scan<()> {
    let copied = std::io::copy(&mut r.take(n), &mut std::io::sink())?;
    if copied < n {
        return malformed("a tar table ends inside its raw bytes");
    }
    Ok(())
}

/// The magic number opening a legacy `torch.save` file, as `LONG1` bytes and as `LONG` text.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const LEGACY_MAGIC_TEXT: &str = "119547037146038801333356";

/// What a scanned pickle leaves behind for the containers.
#[derive(Default)]
struct Scanned {
    /// The last global named, `module.name`.
    last_global: Option<String>,
    /// The value, when the whole pickle is one small integer.
    int: Option<i64>,
    /// Whether the whole pickle is the legacy format's magic number.
    legacy_magic: bool,
}

/// Walks one pickle up to its `STOP`, checking every global it names.
fn scan(r: &mut impl BufRead) -> Scan<Scanned> {
    let mut w = Walker::default();
    let mut out = Scanned::default();
    loop {
        let op = read_u8(r)?;
        match op {
            // Framing and protocol.
            0x80 => drop(read_u8(r)?),
            0x95 => drop(read_n::<8>(r)?),
            b'.' => {
                if let [Value::Int(n)] = w.stack[..] {
                    out.int = Some(n);
                }
                out.legacy_magic = w.stack.len() == 1 && w.saw_legacy_magic;
                return Ok(out);
            }
            // Strings and bytes.
            b'S' => {
                let line = read_line(r)?;
                let text = line.trim_matches(|c| c == '\'' || c == '"').to_string();
                w.push(Value::Str(text.into()))?
            }
            b'V' => {
                let line = read_line(r)?;
                w.push(Value::Str(line.into()))?
            }
            b'T' | b'X' => {
                let n = u32::from_le_bytes(read_n(r)?) as u64;
                w.push_text(r, n)?
            }
            b'U' | 0x8c => {
                let n = u64::from(read_u8(r)?);
                w.push_text(r, n)?
            }
            0x8d => {
                let n = u64::from_le_bytes(read_n(r)?);
                w.push_text(r, n)?
            }
            b'B' => {
                let n = u32::from_le_bytes(read_n(r)?) as u64;
                w.push_bytes(r, n)?
            }
            b'C' => {
                let n = u64::from(read_u8(r)?);
                w.push_bytes(r, n)?
            }
            0x8e | 0x96 => {
                let n = u64::from_le_bytes(read_n(r)?);
                w.push_bytes(r, n)?
            }
            // Numbers and constants.
            b'I' | b'L' => {
                let line = read_line(r)?;
                let digits = line.trim_end_matches('L');
                w.saw_legacy_magic |= digits == LEGACY_MAGIC_TEXT;
                w.push(digits.parse().map_or(Value::Other, Value::Int))?
            }
            b'F' => {
                read_line(r)?;
                w.push(Value::Other)?
            }
            b'J' => w.push(Value::Int(i32::from_le_bytes(read_n(r)?).into()))?,
            b'K' => w.push(Value::Int(read_u8(r)?.into()))?,
            b'M' => w.push(Value::Int(u16::from_le_bytes(read_n(r)?).into()))?,
            0x8a => {
                let n = u64::from(read_u8(r)?);
                let bytes = read_bounded(r, n)?;
                w.saw_legacy_magic |= bytes == LEGACY_MAGIC;
                w.push(Value::Other)?
            }
            0x8b => {
                let n = u32::from_le_bytes(read_n(r)?) as u64;
                w.push_bytes(r, n)?
            }
            b'G' => {
                read_n::<8>(r)?;
                w.push(Value::Other)?
            }
            b'N' | 0x88 | 0x89 | b']' | b')' | b'}' | 0x8f => w.push(Value::Other)?,
            // Containers.
            b'(' => w.marks.push(w.stack.len()),
            b'l' | b't' | 0x91 | b'd' => {
                w.pop_mark()?;
                w.push(Value::Other)?
            }
            b'e' | b'u' | 0x90 => {
                w.pop_mark()?;
                w.top()?;
            }
            b'a' => {
                w.pop()?;
                w.top()?;
            }
            b's' => {
                w.pop()?;
                w.pop()?;
                w.top()?;
            }
            0x85..=0x87 => {
                for _ in 0..(op - 0x84) {
                    w.pop()?;
                }
                w.push(Value::Other)?
            }
            b'0' => {
                if w.stack.len() > w.marks.last().copied().unwrap_or(0) {
                    w.pop()?;
                } else {
                    w.pop_mark()?;
                }
            }
            b'1' => drop(w.pop_mark()?),
            b'2' => {
                let top = w.top()?.clone();
                w.push(top)?
            }
            // Memo.
            b'p' => {
                let idx = read_line(r)?
                    .parse()
                    .or_else(|_| malformed("PUT with a non-numeric index"))?;
                w.put(idx)?
            }
            b'q' => {
                let idx = u64::from(read_u8(r)?);
                w.put(idx)?
            }
            b'r' => {
                let idx = u64::from(u32::from_le_bytes(read_n(r)?));
                w.put(idx)?
            }
            0x94 => {
                let idx = w.memo.len() as u64;
                w.put(idx)?
            }
            b'g' => {
                let idx = read_line(r)?
                    .parse()
                    .or_else(|_| malformed("GET with a non-numeric index"))?;
                w.get(idx)?
            }
            b'h' => {
                let idx = u64::from(read_u8(r)?);
                w.get(idx)?
            }
            b'j' => {
                let idx = u64::from(u32::from_le_bytes(read_n(r)?));
                w.get(idx)?
            }
            // Globals and calls.
            b'c' => {
                let (module, name) = (read_line(r)?, read_line(r)?);
                out.last_global = Some(w.check(&module, &name, "GLOBAL")?);
                w.push(Value::Global)?
            }
            0x93 => {
                let name = w.pop()?;
                let module = w.pop()?;
                let (Value::Str(module), Value::Str(name)) = (module, name) else {
                    return malformed("STACK_GLOBAL's operands are not strings");
                };
                out.last_global = Some(w.check(&module, &name, "STACK_GLOBAL")?);
                w.push(Value::Global)?
            }
            b'i' => {
                let (module, name) = (read_line(r)?, read_line(r)?);
                w.check(&module, &name, "INST")?;
                w.pop_mark()?;
                w.push(Value::Other)?
            }
            b'o' => {
                let args = w.pop_mark()?;
                match args.first() {
                    Some(Value::Global) => {}
                    _ => return malformed("OBJ without a class"),
                }
                w.push(Value::Other)?
            }
            b'R' | 0x81 => {
                w.pop()?;
                w.pop()?;
                w.push(Value::Other)?
            }
            0x92 => {
                w.pop()?;
                w.pop()?;
                w.pop()?;
                w.push(Value::Other)?
            }
            b'b' => {
                w.pop()?;
                w.top()?;
            }
            b'P' => {
                read_line(r)?;
                w.push(Value::Other)?
            }
            b'Q' => {
                w.pop()?;
                w.push(Value::Other)?
            }
            0x97 => w.push(Value::Other)?,
            0x98 => drop(w.top()?),
            0x82..=0x84 => {
                return malformed(
                    "it names a global through the copyreg extension registry (EXT1/2/4)",
                );
            }
            other => return malformed(format!("unknown pickle opcode 0x{other:02x}")),
        }
    }
}

/// The walker's stack, marks and memo.
#[derive(Default)]
struct Walker {
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
    saw_legacy_magic: bool,
}

impl Walker {
    fn push(&mut self, v: Value) -> Scan<()> {
        if self.stack.len() >= MAX_STACK {
            return malformed(format!("more than {MAX_STACK} values on the pickle stack"));
        }
        self.stack.push(v);
        Ok(())
    }

    fn pop(&mut self) -> Scan<Value> {
        if self.stack.len() <= self.marks.last().copied().unwrap_or(0) {
            return malformed("an opcode pops more values than the stack holds");
        }
        Ok(self.stack.pop().expect("checked above"))
    }

    fn top(&self) -> Scan<&Value> {
        if self.stack.len() <= self.marks.last().copied().unwrap_or(0) {
            return malformed("an opcode needs a value on an empty stack");
        }
        Ok(self.stack.last().expect("checked above"))
    }

    fn pop_mark(&mut self) -> Scan<Vec<Value>> {
        let Some(mark) = self.marks.pop() else {
            return malformed("an opcode needs a MARK that is not there");
        };
        Ok(self.stack.split_off(mark))
    }

    fn put(&mut self, idx: u64) -> Scan<()> {
        let top = self.top()?.clone();
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&idx) {
            return malformed(format!("more than {MAX_MEMO} memo entries"));
        }
        self.memo.insert(idx, top);
        Ok(())
    }

    fn get(&mut self, idx: u64) -> Scan<()> {
        let Some(v) = self.memo.get(&idx).cloned() else {
            return malformed(format!("memo entry {idx} is read before it is written"));
        };
        self.push(v)
    }

    fn push_text(&mut self, r: &mut impl BufRead, n: u64) -> Scan<()> {
        let bytes = read_bounded(r, n)?;
        let v = match String::from_utf8(bytes) {
            Ok(s) => Value::Str(s.into()),
            Err(_) => Value::Other,
        };
        self.push(v)
    }

    fn push_bytes(&mut self, r: &mut impl BufRead, n: u64) -> Scan<()> {
        let copied = std::io::copy(&mut r.take(n), &mut std::io::sink())?;
        if copied < n {
            return malformed("the pickle ends inside a byte string");
        }
        self.push(Value::Other)
    }

    fn check(&self, module: &str, name: &str, opcode: &'static str) -> Scan<String> {
        if is_allowed(module, name) {
            Ok(format!("{module}.{name}"))
        } else {
            Err(Refusal::Global {
                global: format!("{module}.{name}"),
                opcode,
            })
        }
    }
}

fn read_u8(r: &mut impl Read) -> Scan<u8> {
    Ok(read_n::<1>(r)?[0])
}

fn read_n<const N: usize>(r: &mut impl Read) -> Scan<[u8; N]> {
    let mut b = [0u8; N];
    r.read_exact(&mut b)?;
    Ok(b)
}

/// Reads `n` bytes without trusting `n` for the allocation.
fn read_bounded(r: &mut impl Read, n: u64) -> Scan<Vec<u8>> {
    let mut out = Vec::new();
    r.take(n).read_to_end(&mut out)?;
    if (out.len() as u64) < n {
        return malformed("the pickle ends inside a string");
    }
    Ok(out)
}

fn read_line(r: &mut impl BufRead) -> Scan<String> {
    let mut line = Vec::new();
    r.take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') {
        return malformed(if line.len() > MAX_LINE {
            "a text line of the pickle is too long"
        } else {
            "the pickle ends inside a text line"
        });
    }
    line.pop();
    String::from_utf8(line).or_else(|_| malformed("a text line of the pickle is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Checkpoint;
    use crate::save::save_pytorch;
    use burn::tensor::TensorData;
    use std::io::{Cursor, Write};

    fn text(s: &str) -> Vec<u8> {
        let mut v = vec![b'X'];
        v.extend_from_slice(&(s.len() as u32).to_le_bytes());
        v.extend_from_slice(s.as_bytes());
        v
    }

    fn global(module: &str, name: &str) -> Vec<u8> {
        format!("c{module}\n{name}\n").into_bytes()
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    /// `os.system('true')` through GLOBAL + REDUCE.
    fn reduce_call() -> Vec<u8> {
        cat(&[&global("os", "system"), &text("true"), &[0x85, b'R']])
    }

    fn scan_bytes(bytes: &[u8]) -> Scan<Scanned> {
        scan(&mut Cursor::new(bytes))
    }

    fn refused_global(bytes: &[u8]) -> (String, &'static str) {
        match scan_bytes(bytes) {
            Err(Refusal::Global { global, opcode }) => (global, opcode),
            Err(Refusal::Malformed(m)) => panic!("malformed, not refused: {m}"),
            Ok(_) => panic!("accepted"),
        }
    }

    /// A real `torch.save` zip from [`save_pytorch`] whose pickle gets `extra` (bytes that
    /// push one value) stored under the key `"extra"` of its top-level dictionary.
    fn zip_with(dir: &Path, name: &str, extra: &[u8]) -> std::path::PathBuf {
        let clean = dir.join(format!("{name}.clean.pth"));
        let tensors = vec![(
            "weight".to_string(),
            TensorData::new(vec![1.0f32, 2.0], [2]),
        )];
        save_pytorch(&clean, &tensors, Some("state_dict")).unwrap();
        let mut src = zip::ZipArchive::new(File::open(&clean).unwrap()).unwrap();
        let path = dir.join(name);
        let mut out = zip::ZipWriter::new(File::create(&path).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for i in 0..src.len() {
            let mut entry = src.by_index(i).unwrap();
            let name = entry.name().unwrap().into_owned();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            if name.ends_with("data.pkl") {
                assert_eq!(bytes.pop(), Some(b'.'));
                bytes.extend(text("extra"));
                bytes.extend_from_slice(extra);
                bytes.extend_from_slice(b"s.");
            }
            out.start_file(name, opts).unwrap();
            out.write_all(&bytes).unwrap();
        }
        out.finish().unwrap();
        path
    }

    fn refusal_of(path: &Path) -> (String, &'static str) {
        match Checkpoint::open(path) {
            Err(Error::PickleGlobal { global, opcode, .. }) => (global, opcode),
            Err(other) => panic!("{}: another error: {other}", path.display()),
            Ok(_) => panic!("{}: accepted", path.display()),
        }
    }

    #[test]
    fn a_reduce_next_to_a_state_dict_is_refused_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = zip_with(dir.path(), "reduce.pth", &reduce_call());
        assert_eq!(refusal_of(&path), ("os.system".into(), "GLOBAL"));
        let err = Checkpoint::open(&path).unwrap_err();
        assert!(err.to_string().contains("`os.system`"), "{err}");
        assert!(err.to_string().contains("--allow-pickle-global"), "{err}");
        // The same file without the extra entry loads.
        let clean = dir.path().join("reduce.pth.clean.pth");
        assert_eq!(Checkpoint::open(clean).unwrap().len(), 1);
    }

    #[test]
    fn stack_global_is_resolved_through_the_memo() {
        // `os` and `system` memoised, read back with BINGET, then STACK_GLOBAL.
        let call = cat(&[
            &text("os"),
            b"q\x07",
            b"0",
            &text("system"),
            b"q\x08",
            b"0",
            b"h\x07h\x08\x93",
            &text("true"),
            &[0x85, b'R'],
        ]);
        let dir = tempfile::tempdir().unwrap();
        let path = zip_with(dir.path(), "stack.pth", &call);
        assert_eq!(refusal_of(&path), ("os.system".into(), "STACK_GLOBAL"));
    }

    #[test]
    fn inst_and_obj_are_refused() {
        let inst = cat(&[b"(", &text("true"), b"ios\nsystem\n"]);
        assert_eq!(
            refused_global(&cat(&[b"\x80\x02", &inst, b"."])),
            ("os.system".into(), "INST")
        );
        let obj = cat(&[
            b"(",
            &text("subprocess"),
            &text("Popen"),
            b"\x93",
            &text("ls"),
            b"o",
        ]);
        assert_eq!(
            refused_global(&cat(&[b"\x80\x04", &obj, b"."])),
            ("subprocess.Popen".into(), "STACK_GLOBAL")
        );
        let dir = tempfile::tempdir().unwrap();
        let path = zip_with(dir.path(), "inst.pth", &inst);
        assert_eq!(refusal_of(&path), ("os.system".into(), "INST"));
    }

    #[test]
    fn nested_references_are_found() {
        // {"a": [{"b": (1, os.system('true'))}]} deep inside the file's dictionary.
        let nested = cat(&[
            b"}(",
            &text("a"),
            b"](}(",
            &text("b"),
            b"K\x01",
            &reduce_call(),
            b"\x86ueu",
        ]);
        let dir = tempfile::tempdir().unwrap();
        let path = zip_with(dir.path(), "nested.pth", &nested);
        assert_eq!(refusal_of(&path), ("os.system".into(), "GLOBAL"));
    }

    #[test]
    fn legacy_and_tar_containers_are_scanned() {
        let dir = tempfile::tempdir().unwrap();
        // Legacy: magic, protocol, system info, the object, the storage keys.
        let mut legacy = cat(&[b"\x80\x02\x8a\x0a", &LEGACY_MAGIC, b"."]);
        legacy.extend_from_slice(b"\x80\x02M\xe9\x03.");
        legacy.extend_from_slice(b"\x80\x02}.");
        legacy.extend(cat(&[b"\x80\x02}", &text("x"), &reduce_call(), b"s."]));
        legacy.extend_from_slice(b"\x80\x02].");
        let path = dir.path().join("legacy.pt");
        std::fs::write(&path, &legacy).unwrap();
        assert_eq!(refusal_of(&path), ("os.system".into(), "GLOBAL"));

        let path = dir.path().join("old.tar");
        let mut tar = tar::Builder::new(File::create(&path).unwrap());
        let pickle = cat(&[b"\x80\x02", &reduce_call(), b"."]);
        let mut header = tar::Header::new_gnu();
        header.set_size(pickle.len() as u64);
        header.set_cksum();
        tar.append_data(&mut header, "pickle", pickle.as_slice())
            .unwrap();
        tar.finish().unwrap();
        drop(tar);
        assert_eq!(refusal_of(&path), ("os.system".into(), "GLOBAL"));
    }

    #[test]
    fn allowed_names_and_the_process_wide_allowance() {
        for (m, n) in [
            ("collections", "OrderedDict"),
            ("torch._utils", "_rebuild_tensor_v2"),
            ("torch", "HalfStorage"),
            ("torch", "bfloat16"),
            ("_codecs", "encode"),
        ] {
            assert!(is_allowed(m, n), "{m}.{n}");
        }
        for (m, n) in [
            ("os", "system"),
            ("builtins", "eval"),
            ("torch", "load"),
            ("numpy.core.multiarray", "scalar"),
        ] {
            assert!(!is_allowed(m, n), "{m}.{n}");
        }
        let config = cat(&[&global("trainer.config", "Settings"), b")R"]);
        let dir = tempfile::tempdir().unwrap();
        let path = zip_with(dir.path(), "config.pth", &config);
        assert_eq!(refusal_of(&path).0, "trainer.config.Settings");
        allow_pickle_globals(["trainer.config.Settings"]);
        assert_eq!(Checkpoint::open(&path).unwrap().len(), 1);
    }

    #[test]
    fn malformed_pickles_are_errors_not_panics() {
        for bytes in [
            &b""[..],
            b"\x80\x02",
            b"\x80\x02t.",
            b"\x80\x02h\x01.",
            b"\x80\x02X\xff\xff\xff\xffabc",
            b"\x80\x02\x93.",
            b"\x80\x02K\x01K\x02\x93.",
            b"\x80\x02\x82\x01.",
            b"\x80\x02\xff.",
            b"\x80\x02cos",
        ] {
            assert!(
                matches!(scan_bytes(bytes), Err(Refusal::Malformed(_))),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn the_public_checkpoints_pass() {
        let dir = crate::checkpoint::tests::fixtures_dir();
        for name in ["sd_tiny.sd21_format.ckpt", "sd_tiny.controlnet_format.pth"] {
            check_pytorch_file(&dir.join(name)).unwrap();
        }
    }
}
