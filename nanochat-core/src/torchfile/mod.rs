//! PyTorch's file format (`torch.save` since 1.6: a zip archive of `<name>/data.pkl`, the pickled
//! object, and `<name>/data/<key>`, one raw little-endian storage per key), read without
//! executing anything: the pickle goes through [`pickle::Pickle`] with an allowlist of globals
//! (the subset `torch.load(weights_only=True)` allows that a state dict needs), and tensors are
//! copied out of their storages into [`HostTensor`]s.
//!
//! This is how nanochat's `model_<step>.pt`, `optim_<step>_rank<r>.pt` and `token_bytes.pt`
//! are read (`nanochat/checkpoint_manager.py`, `save_checkpoint` / `load_checkpoint`, at
//! 16788ee and 92d63d4).
//!
//! Memory stays bounded by a small multiple of the file: a storage must be exactly as long as
//! its header claims, an entry may not inflate past [`MAX_INFLATE`] times the file, and the
//! tensors materialised add up to at most a few times the storages' elements.

pub mod pickle;
mod write;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

pub use pickle::{TensorRef, Value};
pub use write::{write_pt, PtWriteValue};

use crate::io::{HostData, HostTensor};
use crate::{CoreError, Result};

/// An archive entry may decompress to at most this many times the file's size.
pub const MAX_INFLATE: u64 = 64;

/// The element type of a torch storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TorchDType {
    /// `torch.float32` (`FloatStorage`).
    F32,
    /// `torch.float64` (`DoubleStorage`).
    F64,
    /// `torch.float16` (`HalfStorage`).
    F16,
    /// `torch.bfloat16` (`BFloat16Storage`).
    BF16,
    /// `torch.int64` (`LongStorage`).
    I64,
    /// `torch.int32` (`IntStorage`).
    I32,
    /// `torch.int16` (`ShortStorage`).
    I16,
    /// `torch.int8` (`CharStorage`).
    I8,
    /// `torch.uint8` (`ByteStorage`).
    U8,
    /// `torch.bool` (`BoolStorage`).
    Bool,
}

impl TorchDType {
    /// The dtype of a storage class (`torch.FloatStorage`), if known.
    pub fn from_storage_class(class: &str) -> Option<TorchDType> {
        Some(match class {
            "torch.FloatStorage" => TorchDType::F32,
            "torch.DoubleStorage" => TorchDType::F64,
            "torch.HalfStorage" => TorchDType::F16,
            "torch.BFloat16Storage" => TorchDType::BF16,
            "torch.LongStorage" => TorchDType::I64,
            "torch.IntStorage" => TorchDType::I32,
            "torch.ShortStorage" => TorchDType::I16,
            "torch.CharStorage" => TorchDType::I8,
            "torch.ByteStorage" => TorchDType::U8,
            "torch.BoolStorage" => TorchDType::Bool,
            _ => return None,
        })
    }

    /// The storage class `torch.save` names for this dtype.
    pub fn storage_class(self) -> &'static str {
        match self {
            TorchDType::F32 => "FloatStorage",
            TorchDType::F64 => "DoubleStorage",
            TorchDType::F16 => "HalfStorage",
            TorchDType::BF16 => "BFloat16Storage",
            TorchDType::I64 => "LongStorage",
            TorchDType::I32 => "IntStorage",
            TorchDType::I16 => "ShortStorage",
            TorchDType::I8 => "CharStorage",
            TorchDType::U8 => "ByteStorage",
            TorchDType::Bool => "BoolStorage",
        }
    }

    /// torch's name (`float32`, `bfloat16`...).
    pub fn name(self) -> &'static str {
        match self {
            TorchDType::F32 => "float32",
            TorchDType::F64 => "float64",
            TorchDType::F16 => "float16",
            TorchDType::BF16 => "bfloat16",
            TorchDType::I64 => "int64",
            TorchDType::I32 => "int32",
            TorchDType::I16 => "int16",
            TorchDType::I8 => "int8",
            TorchDType::U8 => "uint8",
            TorchDType::Bool => "bool",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            TorchDType::F64 | TorchDType::I64 => 8,
            TorchDType::F32 | TorchDType::I32 => 4,
            TorchDType::F16 | TorchDType::BF16 | TorchDType::I16 => 2,
            TorchDType::I8 | TorchDType::U8 | TorchDType::Bool => 1,
        }
    }

    /// Whether it holds floats.
    pub fn is_float(self) -> bool {
        matches!(
            self,
            TorchDType::F32 | TorchDType::F64 | TorchDType::F16 | TorchDType::BF16
        )
    }
}

/// A tensor read from a torch file: the dtype it was stored in, and its values widened.
#[derive(Clone, Debug, PartialEq)]
pub struct PtTensor {
    /// The stored dtype (nanochat keeps `wte` and the value embeddings in bf16 on GPUs).
    pub dtype: TorchDType,
    /// Shape and row-major values.
    pub tensor: HostTensor,
}

/// A torch file in memory: its pickled object ([`TorchFile::root`]) and the storages its
/// tensors point into ([`TorchFile::tensor`]).
pub struct TorchFile {
    path: String,
    bytes: Vec<u8>,
    prefix: String,
    /// The pickled object, tensors as references ([`TorchFile::tensor`] reads them).
    pub root: Value,
    /// Elements [`TorchFile::tensor`] may still materialise.
    budget: Cell<u64>,
}

fn err(path: &str, why: impl std::fmt::Display) -> CoreError {
    CoreError::File {
        path: path.into(),
        why: why.to_string(),
    }
}

impl TorchFile {
    /// Reads and parses a torch file. Errors ([`CoreError::Io`], [`CoreError::File`] naming the
    /// file): not a zip archive, no `data.pkl`, a big-endian archive, a refused pickle (naming
    /// the opcode or global).
    pub fn open(path: &Path) -> Result<TorchFile> {
        let bytes = std::fs::read(path).map_err(|e| CoreError::io(path, e))?;
        TorchFile::parse(bytes, &path.display().to_string())
    }

    /// [`TorchFile::open`] of bytes in memory; `path` names them in errors.
    pub fn parse(bytes: Vec<u8>, path: &str) -> Result<TorchFile> {
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.as_slice()))
            .map_err(|e| err(path, format!("not a torch file (a zip archive): {e}")))?;
        let pkl_name = zip
            .file_names()
            .filter_map(|n| n.ok().map(|n| n.to_string()))
            .filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1 || n == "data.pkl")
            .min()
            .ok_or_else(|| err(path, "not a torch file: no data.pkl in the archive"))?;
        let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
        if let Ok(bo) = read_entry(&mut zip, &format!("{prefix}byteorder"), 64, path) {
            if bo != b"little" {
                return Err(err(
                    path,
                    format!(
                        "byteorder `{}`: only little-endian archives are supported",
                        String::from_utf8_lossy(&bo)
                    ),
                ));
            }
        }
        let limit = (bytes.len() as u64).saturating_mul(MAX_INFLATE);
        let pkl = read_entry(&mut zip, &pkl_name, limit, path)?;
        let root = pickle::Pickle::parse(&pkl, &pickle::torch_allowed())
            .and_then(|p| p.to_value())
            .map_err(|e| err(path, format!("{pkl_name}: {e}")))?;
        drop(zip);
        let budget = (bytes.len() as u64)
            .saturating_mul(4)
            .saturating_add(1 << 20);
        Ok(TorchFile {
            path: path.into(),
            bytes,
            prefix,
            root,
            budget: Cell::new(budget),
        })
    }

    /// The file's name, as errors give it.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The values of a tensor; `name` says which in errors ([`CoreError::Format`]): a storage
    /// missing from the archive or of another length than its header claims, a view outside
    /// its storage, an unknown storage class, or more elements than the budget allows.
    pub fn tensor(&self, t: &TensorRef, name: &str) -> Result<PtTensor> {
        let ferr = |why: String| crate::io::format_err(&self.path, name, why);
        let dtype = TorchDType::from_storage_class(&t.class)
            .ok_or_else(|| ferr(format!("storage class {}", t.class)))?;
        let numel = t
            .size
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| ferr(format!("size {:?} overflows", t.size)))?;
        if numel > 0 {
            let last = t
                .size
                .iter()
                .zip(&t.stride)
                .try_fold(t.offset, |a, (&d, &s)| {
                    a.checked_add((d - 1).checked_mul(s)?)
                })
                .ok_or_else(|| ferr("its view overflows".into()))?;
            if last >= t.storage_numel {
                return Err(ferr(format!(
                    "its view (offset {}, size {:?}, stride {:?}) reaches element {last} of a storage of {}",
                    t.offset, t.size, t.stride, t.storage_numel
                )));
            }
        }
        let left = self.budget.get();
        if numel > left {
            return Err(ferr(format!(
                "{numel} elements: more than this file's tensors can hold ({left} left of a budget of 4 per byte of the file)"
            )));
        }
        self.budget.set(left - numel);
        let want = t
            .storage_numel
            .checked_mul(dtype.size() as u64)
            .ok_or_else(|| ferr("storage size overflows".into()))?;
        let entry = format!("{}data/{}", self.prefix, t.key);
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(self.bytes.as_slice()))
            .map_err(|e| err(&self.path, e))?;
        let limit = (self.bytes.len() as u64).saturating_mul(MAX_INFLATE);
        if want > limit {
            return Err(ferr(format!(
                "its storage claims {want} bytes, more than {MAX_INFLATE} times the file"
            )));
        }
        let raw = read_entry(&mut zip, &entry, limit, &self.path)?;
        if raw.len() as u64 != want {
            return Err(ferr(format!(
                "storage {entry} has {} bytes, its header claims {} elements of {} ({want} bytes)",
                raw.len(),
                t.storage_numel,
                dtype.name()
            )));
        }
        let n = numel as usize;
        let shape: Vec<usize> = t.size.iter().map(|&d| d as usize).collect();
        // Element indices of the view, row-major: `offset + k` for a contiguous view (no list of
        // indices, which would take 8 bytes per element of the largest tensor).
        let contiguous = {
            let mut expect = 1u64;
            t.size.iter().zip(&t.stride).rev().all(|(&d, &st)| {
                let ok = d == 1 || st == expect;
                expect = expect.saturating_mul(d);
                ok
            })
        };
        let mut index = Vec::new();
        if n > 0 && !contiguous {
            index.reserve(n);
            let mut pos = vec![0u64; shape.len()];
            for _ in 0..n {
                index.push(
                    (t.offset + pos.iter().zip(&t.stride).map(|(&p, &s)| p * s).sum::<u64>())
                        as usize,
                );
                for d in (0..pos.len()).rev() {
                    pos[d] += 1;
                    if pos[d] < t.size[d] {
                        break;
                    }
                    pos[d] = 0;
                }
            }
        }
        let first = t.offset as usize;
        let elem = |k: usize| if contiguous { first + k } else { index[k] };
        let s = dtype.size();
        let at = |k: usize| {
            let i = elem(k);
            &raw[i * s..(i + 1) * s]
        };
        // Float dtypes narrower than f64 are held in f32 (exactly): half the memory of f64.
        let data = match dtype {
            TorchDType::F32 => HostData::F32(
                (0..n)
                    .map(|k| f32::from_le_bytes(at(k).try_into().unwrap()))
                    .collect(),
            ),
            TorchDType::F64 => HostData::Float(
                (0..n)
                    .map(|k| f64::from_le_bytes(at(k).try_into().unwrap()))
                    .collect(),
            ),
            TorchDType::F16 => HostData::F32(
                (0..n)
                    .map(|k| half::f16::from_le_bytes(at(k).try_into().unwrap()).to_f32())
                    .collect(),
            ),
            TorchDType::BF16 => HostData::F32(
                (0..n)
                    .map(|k| half::bf16::from_le_bytes(at(k).try_into().unwrap()).to_f32())
                    .collect(),
            ),
            TorchDType::I64 => HostData::Int(
                (0..n)
                    .map(|k| i64::from_le_bytes(at(k).try_into().unwrap()))
                    .collect(),
            ),
            TorchDType::I32 => HostData::Int(
                (0..n)
                    .map(|k| i32::from_le_bytes(at(k).try_into().unwrap()) as i64)
                    .collect(),
            ),
            TorchDType::I16 => HostData::Int(
                (0..n)
                    .map(|k| i16::from_le_bytes(at(k).try_into().unwrap()) as i64)
                    .collect(),
            ),
            TorchDType::I8 => HostData::Int((0..n).map(|k| raw[elem(k)] as i8 as i64).collect()),
            TorchDType::U8 | TorchDType::Bool => {
                HostData::Int((0..n).map(|k| raw[elem(k)] as i64).collect())
            }
        };
        Ok(PtTensor {
            dtype,
            tensor: HostTensor { shape, data },
        })
    }

    /// The file as a state dict (`torch.save(model.state_dict())`): a dict of names to
    /// tensors, with the `_orig_mod.` prefix of a `torch.compile`d model removed. Errors: the
    /// root is not such a dict (naming what it holds instead), a key appears twice, or a tensor
    /// cannot be read.
    pub fn state_dict(&self) -> Result<BTreeMap<String, PtTensor>> {
        let Value::Dict(items) = &self.root else {
            return Err(err(
                &self.path,
                "not a state dict: its object is not a dict",
            ));
        };
        let mut out = BTreeMap::new();
        for (k, v) in items {
            let Value::Str(k) = k else {
                return Err(err(
                    &self.path,
                    "not a state dict: a key that is not a string",
                ));
            };
            let Value::Tensor(t) = v else {
                return Err(crate::io::format_err(&self.path, k, "not a tensor"));
            };
            let name = k.strip_prefix("_orig_mod.").unwrap_or(k).to_string();
            let t = self.tensor(t, k)?;
            if out.insert(name.clone(), t).is_some() {
                return Err(crate::io::format_err(
                    &self.path,
                    &name,
                    "appears twice (with and without `_orig_mod.`)",
                ));
            }
        }
        Ok(out)
    }
}

impl TorchFile {
    /// A value of this file as one to write back ([`write_pt`]): tensors read (contiguous, in
    /// their stored dtype), tuples and lists as lists, dicts as plain dicts. Errors: a tensor
    /// that cannot be read, or an object (not writable).
    pub fn to_write_value(&self, v: &Value) -> Result<PtWriteValue> {
        Ok(match v {
            Value::None => PtWriteValue::None,
            Value::Bool(b) => PtWriteValue::Bool(*b),
            Value::Int(i) => PtWriteValue::Int(*i),
            Value::Float(f) => PtWriteValue::Float(*f),
            Value::Str(s) => PtWriteValue::Str(s.clone()),
            Value::Bytes(_) | Value::Object { .. } => {
                return Err(err(&self.path, "bytes and objects are not written back"))
            }
            Value::List(items) => PtWriteValue::List(
                items
                    .iter()
                    .map(|x| self.to_write_value(x))
                    .collect::<Result<_>>()?,
            ),
            Value::Dict(items) => PtWriteValue::Dict(
                items
                    .iter()
                    .map(|(k, x)| Ok((self.to_write_value(k)?, self.to_write_value(x)?)))
                    .collect::<Result<_>>()?,
            ),
            Value::Tensor(t) => {
                let t = self.tensor(t, &t.key)?;
                let values: Vec<f64> = match &t.tensor.data {
                    HostData::Float(v) => v.clone(),
                    HostData::F32(v) => v.iter().map(|&x| x as f64).collect(),
                    HostData::Int(v) => v.iter().map(|&x| x as f64).collect(),
                };
                PtWriteValue::tensor(t.dtype, &t.tensor.shape, &values)
            }
        })
    }
}

/// What the `torch_file` fuzz target (and the test replaying its corpus) does with arbitrary
/// bytes: read them as a torch file, every tensor of it, and as a `tokenizer.pkl`. Each step
/// must return a value or an error: never panic, hang, or allocate without bound. Returns how
/// many tensors were read.
pub fn fuzz_one(data: &[u8]) -> usize {
    let mut n = 0;
    if let Ok(f) = TorchFile::parse(data.to_vec(), "fuzz.pt") {
        let mut stack = vec![&f.root];
        while let Some(v) = stack.pop() {
            match v {
                Value::Tensor(t) => {
                    if let Ok(t) = f.tensor(t, "fuzz") {
                        let len = match &t.tensor.data {
                            HostData::Float(v) => v.len(),
                            HostData::F32(v) => v.len(),
                            HostData::Int(v) => v.len(),
                        };
                        assert_eq!(len, t.tensor.len());
                        n += 1;
                    }
                }
                Value::List(items) => stack.extend(items),
                Value::Dict(items) => stack.extend(items.iter().flat_map(|(k, v)| [k, v])),
                Value::Object { state, .. } => stack.push(state),
                _ => {}
            }
        }
        let _ = f.state_dict();
    }
    if let Ok(p) = pickle::Pickle::parse(data, &["tiktoken.core.Encoding"]) {
        let _ = p.to_value();
    }
    n
}

/// The bytes of an archive entry, refusing one that inflates past `limit`.
fn read_entry(
    zip: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>,
    name: &str,
    limit: u64,
    path: &str,
) -> Result<Vec<u8>> {
    let entry = zip
        .by_name(name)
        .map_err(|e| err(path, format!("archive entry {name}: {e}")))?;
    let size = entry.size();
    if size > limit {
        return Err(err(
            path,
            format!("archive entry {name} claims {size} bytes, more than {limit}"),
        ));
    }
    let mut out = Vec::with_capacity(size as usize);
    entry
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| err(path, format!("archive entry {name}: {e}")))?;
    if out.len() as u64 > limit {
        return Err(err(
            path,
            format!("archive entry {name} inflates past {limit} bytes"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests;
