//! Writing torch files as `torch.save` does (protocol-2 pickle, zip archive with uncompressed,
//! 64-byte-aligned storages), naming only globals `torch.load(weights_only=True)` allows:
//! `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` and the typed storage classes.

use std::io::Write;
use std::path::Path;

use super::TorchDType;
use crate::{CoreError, Result};

/// A value to pickle.
#[derive(Clone, Debug, PartialEq)]
pub enum PtWriteValue {
    /// `None`.
    None,
    /// A `bool`.
    Bool(bool),
    /// An `int`.
    Int(i64),
    /// A `float`.
    Float(f64),
    /// A `str`.
    Str(String),
    /// A `list`.
    List(Vec<PtWriteValue>),
    /// A `tuple`.
    Tuple(Vec<PtWriteValue>),
    /// A plain `dict`.
    Dict(Vec<(PtWriteValue, PtWriteValue)>),
    /// A `collections.OrderedDict` (what `state_dict()` returns).
    OrderedDict(Vec<(String, PtWriteValue)>),
    /// A contiguous tensor: its dtype, shape and raw little-endian bytes.
    Tensor {
        /// Element type.
        dtype: TorchDType,
        /// Shape.
        shape: Vec<usize>,
        /// `shape.product() * dtype.size()` bytes.
        bytes: Vec<u8>,
    },
}

impl PtWriteValue {
    /// A tensor of `values` stored as `dtype` (floats rounded to nearest even for bf16/f16,
    /// integers truncated toward zero for integer dtypes).
    pub fn tensor(dtype: TorchDType, shape: &[usize], values: &[f64]) -> PtWriteValue {
        let mut bytes = Vec::with_capacity(values.len() * dtype.size());
        for &v in values {
            match dtype {
                TorchDType::F32 => bytes.extend((v as f32).to_le_bytes()),
                TorchDType::F64 => bytes.extend(v.to_le_bytes()),
                TorchDType::F16 => bytes.extend(half::f16::from_f64(v).to_le_bytes()),
                TorchDType::BF16 => bytes.extend(half::bf16::from_f64(v).to_le_bytes()),
                TorchDType::I64 => bytes.extend((v as i64).to_le_bytes()),
                TorchDType::I32 => bytes.extend((v as i32).to_le_bytes()),
                TorchDType::I16 => bytes.extend((v as i16).to_le_bytes()),
                TorchDType::I8 => bytes.extend((v as i8).to_le_bytes()),
                TorchDType::U8 => bytes.push(v as u8),
                TorchDType::Bool => bytes.push((v != 0.0) as u8),
            }
        }
        PtWriteValue::Tensor {
            dtype,
            shape: shape.to_vec(),
            bytes,
        }
    }

    /// A `str`.
    pub fn str(s: &str) -> PtWriteValue {
        PtWriteValue::Str(s.to_string())
    }
}

struct Pickler {
    out: Vec<u8>,
    storages: Vec<Vec<u8>>,
}

impl Pickler {
    fn global(&mut self, module: &str, name: &str) {
        self.out.push(b'c');
        self.out.extend(module.as_bytes());
        self.out.push(b'\n');
        self.out.extend(name.as_bytes());
        self.out.push(b'\n');
    }

    fn str(&mut self, s: &str) {
        self.out.push(b'X');
        self.out.extend((s.len() as u32).to_le_bytes());
        self.out.extend(s.as_bytes());
    }

    fn int(&mut self, v: i64) {
        if (0..256).contains(&v) {
            self.out.push(b'K');
            self.out.push(v as u8);
        } else if (0..65536).contains(&v) {
            self.out.push(b'M');
            self.out.extend((v as u16).to_le_bytes());
        } else if i32::try_from(v).is_ok() {
            self.out.push(b'J');
            self.out.extend((v as i32).to_le_bytes());
        } else {
            self.out.extend([0x8a, 8]);
            self.out.extend(v.to_le_bytes());
        }
    }

    fn ints_tuple(&mut self, v: &[usize]) {
        match v.len() {
            0 => self.out.push(b')'),
            n @ 1..=3 => {
                for &x in v {
                    self.int(x as i64);
                }
                self.out.push(0x84 + n as u8);
            }
            _ => {
                self.out.push(b'(');
                for &x in v {
                    self.int(x as i64);
                }
                self.out.push(b't');
            }
        }
    }

    fn items(&mut self, items: &[PtWriteValue], close: u8) {
        for chunk in items.chunks(1000) {
            self.out.push(b'(');
            for v in chunk {
                self.value(v);
            }
            self.out.push(close);
        }
    }

    fn pairs<'a>(&mut self, items: impl Iterator<Item = (PairKey<'a>, &'a PtWriteValue)>) {
        let items: Vec<_> = items.collect();
        for chunk in items.chunks(1000) {
            self.out.push(b'(');
            for (k, v) in chunk {
                match k {
                    PairKey::Str(s) => self.str(s),
                    PairKey::Value(k) => self.value(k),
                }
                self.value(v);
            }
            self.out.push(b'u');
        }
    }

    fn value(&mut self, v: &PtWriteValue) {
        match v {
            PtWriteValue::None => self.out.push(b'N'),
            PtWriteValue::Bool(b) => self.out.push(if *b { 0x88 } else { 0x89 }),
            PtWriteValue::Int(i) => self.int(*i),
            PtWriteValue::Float(f) => {
                self.out.push(b'G');
                self.out.extend(f.to_be_bytes());
            }
            PtWriteValue::Str(s) => self.str(s),
            PtWriteValue::List(items) => {
                self.out.push(b']');
                self.items(items, b'e');
            }
            PtWriteValue::Tuple(items) => {
                self.out.push(b'(');
                for v in items {
                    self.value(v);
                }
                self.out.push(b't');
            }
            PtWriteValue::Dict(items) => {
                self.out.push(b'}');
                self.pairs(items.iter().map(|(k, v)| (PairKey::Value(k), v)));
            }
            PtWriteValue::OrderedDict(items) => {
                self.global("collections", "OrderedDict");
                self.out.extend([b')', b'R']);
                self.pairs(items.iter().map(|(k, v)| (PairKey::Str(k), v)));
            }
            PtWriteValue::Tensor {
                dtype,
                shape,
                bytes,
            } => {
                let key = self.storages.len();
                self.storages.push(bytes.clone());
                let numel: usize = shape.iter().product();
                self.global("torch._utils", "_rebuild_tensor_v2");
                self.out.push(b'(');
                // persistent id: ('storage', torch.<Dtype>Storage, key, 'cpu', numel)
                self.out.push(b'(');
                self.str("storage");
                self.global("torch", dtype.storage_class());
                self.str(&key.to_string());
                self.str("cpu");
                self.int(numel as i64);
                self.out.extend([b't', b'Q']);
                self.int(0);
                self.ints_tuple(shape);
                let mut stride = vec![1usize; shape.len()];
                for d in (0..shape.len().saturating_sub(1)).rev() {
                    stride[d] = stride[d + 1] * shape[d + 1];
                }
                self.ints_tuple(&stride);
                self.out.push(0x89);
                self.global("collections", "OrderedDict");
                self.out.extend([b')', b'R', b't', b'R']);
            }
        }
    }
}

enum PairKey<'a> {
    Str(&'a str),
    Value(&'a PtWriteValue),
}

/// The bytes of a torch file holding `value`, its archive folder named `name` (torch uses the
/// file's stem, e.g. `model_000200`).
pub fn pt_bytes(name: &str, value: &PtWriteValue) -> Result<Vec<u8>> {
    let mut p = Pickler {
        out: vec![0x80, 2],
        storages: Vec::new(),
    };
    p.value(value);
    p.out.push(b'.');
    let zerr =
        |e: zip::result::ZipError| CoreError::file(name, format!("writing the archive: {e}"));
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default())
        .large_file(true)
        .with_alignment(64);
    let mut put = |entry: String, bytes: &[u8]| -> Result<()> {
        zip.start_file(entry, opts).map_err(zerr)?;
        zip.write_all(bytes)
            .map_err(|e| CoreError::file(name, format!("writing the archive: {e}")))
    };
    put(format!("{name}/data.pkl"), &p.out)?;
    put(format!("{name}/.format_version"), b"1")?;
    put(format!("{name}/.storage_alignment"), b"64")?;
    put(format!("{name}/byteorder"), b"little")?;
    for (i, s) in p.storages.iter().enumerate() {
        put(format!("{name}/data/{i}"), s)?;
    }
    put(format!("{name}/version"), b"3\n")?;
    put(
        format!("{name}/.data/serialization_id"),
        b"0000000000000000000000000000000000000000",
    )?;
    Ok(zip.finish().map_err(zerr)?.into_inner())
}

/// Writes `value` as a torch file at `path`, atomically (temporary file, fsync, rename); the
/// archive folder is the file's stem, as `torch.save` names it. Errors: [`CoreError::Io`].
pub fn write_pt(path: &Path, value: &PtWriteValue) -> Result<()> {
    let stem = path
        .file_stem()
        .map_or("archive".into(), |s| s.to_string_lossy().to_string());
    let bytes = pt_bytes(&stem, value)?;
    crate::io::write_atomic(path, &bytes)
}
