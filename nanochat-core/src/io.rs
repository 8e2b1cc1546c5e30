//! safetensors I/O: reading any file of float/int tensors to the host, and writing device
//! tensors atomically (temporary file, fsync, rename), so a crash never leaves a half-written
//! file where a good one was.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, View};

use crate::{CoreError, DType, Device, Result, Tensor};

/// A tensor read from a file, on the host.
#[derive(Clone, Debug, PartialEq)]
pub enum HostData {
    /// f64 values (a file's f64 tensors).
    Float(Vec<f64>),
    /// f32 values: a file's f32, bf16 and f16 tensors, held exactly in half the memory of
    /// f64 (a model's weights as a checkpoint is read).
    F32(Vec<f32>),
    /// Any integer dtype, widened to i64.
    Int(Vec<i64>),
}

/// A tensor read from a safetensors file: its shape and row-major values, widened.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// Dimensions, outermost first (`[]` for a scalar).
    pub shape: Vec<usize>,
    /// Its values, row-major; as many as the product of `shape`.
    pub data: HostData,
}

impl HostTensor {
    /// Number of elements: the product of `shape` (1 for a scalar).
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether it has no elements (some dimension is 0).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The float values as f64 (widened from f32 when held so); [`CoreError::Format`] naming
    /// `path` and tensor `name` when it holds integers.
    pub fn floats(&self, path: &str, name: &str) -> Result<Cow<'_, [f64]>> {
        match &self.data {
            HostData::Float(v) => Ok(Cow::Borrowed(v)),
            HostData::F32(v) => Ok(Cow::Owned(v.iter().map(|&x| x as f64).collect())),
            HostData::Int(_) => Err(format_err(
                path,
                name,
                "holds integers where floats were expected",
            )),
        }
    }

    /// The integer values; [`CoreError::Format`] naming `path` and tensor `name` when it holds
    /// floats.
    pub fn ints(&self, path: &str, name: &str) -> Result<&[i64]> {
        match &self.data {
            HostData::Int(v) => Ok(v),
            HostData::Float(_) | HostData::F32(_) => Err(format_err(
                path,
                name,
                "holds floats where integers were expected",
            )),
        }
    }

    /// Uploads a float tensor in `dtype` (same shape). Errors: [`CoreError::Format`] when it
    /// holds integers; device errors.
    pub fn to_device(
        &self,
        device: &Device,
        dtype: DType,
        path: &str,
        name: &str,
    ) -> Result<Tensor> {
        match &self.data {
            HostData::F32(v) => Tensor::from_f32(device, v, &self.shape, dtype),
            _ => Tensor::from_f64(device, &self.floats(path, name)?, &self.shape, dtype),
        }
    }
}

pub(crate) fn format_err(path: &str, tensor: &str, why: impl Into<String>) -> CoreError {
    CoreError::Format {
        path: path.to_string(),
        tensor: tensor.to_string(),
        why: why.into(),
    }
}

fn file_err(path: &Path, why: impl std::fmt::Display) -> CoreError {
    CoreError::file(path, why)
}

/// The tensors and metadata of a safetensors file.
#[derive(Clone, Debug, Default)]
pub struct SafetensorsFile {
    /// Every tensor by name.
    pub tensors: BTreeMap<String, HostTensor>,
    /// The header's `__metadata__` strings (empty when it has none).
    pub metadata: HashMap<String, String>,
}

impl SafetensorsFile {
    /// A tensor by name; [`CoreError::Format`] naming the file and the tensor when it is
    /// missing.
    pub fn get(&self, path: &str, name: &str) -> Result<&HostTensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| format_err(path, name, "missing from the file"))
    }
}

/// Parses safetensors bytes (`path` names the source in errors). F64 tensors are read as f64,
/// F32 and BF16 as f32 (exactly), I64, I32 and U32 widened to i64. Bad input is an error, never a panic:
/// [`CoreError::File`] for a malformed file, [`CoreError::Format`] for another dtype.
pub fn parse_safetensors(bytes: &[u8], path: &str) -> Result<SafetensorsFile> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| file_err(Path::new(path), format!("not a safetensors file: {e}")))?;
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| file_err(Path::new(path), e))?;
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        let d = view.data();
        let data = match view.dtype() {
            Dtype::F64 => HostData::Float(decode_le(d, f64::from_le_bytes)),
            Dtype::F32 => HostData::F32(decode_le(d, f32::from_le_bytes)),
            Dtype::BF16 => HostData::F32(DType::BF16.decode(d)),
            Dtype::I64 => HostData::Int(decode_le(d, i64::from_le_bytes)),
            Dtype::I32 => HostData::Int(decode_le(d, |b| i32::from_le_bytes(b) as i64)),
            Dtype::U32 => HostData::Int(decode_le(d, |b| u32::from_le_bytes(b) as i64)),
            other => {
                return Err(format_err(
                    path,
                    &name,
                    format!("unsupported dtype {other:?}"),
                ))
            }
        };
        tensors.insert(
            name,
            HostTensor {
                shape: view.shape().to_vec(),
                data,
            },
        );
    }
    Ok(SafetensorsFile {
        tensors,
        metadata: meta.metadata().clone().unwrap_or_default(),
    })
}

/// Little-endian `N`-byte values of `d`, each widened by `from` (a trailing partial value is
/// ignored; safetensors has checked the length).
fn decode_le<const N: usize, T>(d: &[u8], from: fn([u8; N]) -> T) -> Vec<T> {
    d.chunks_exact(N)
        .map(|c| from(c.try_into().expect("chunks_exact yields N bytes")))
        .collect()
}

/// Reads a safetensors file ([`parse_safetensors`]); [`CoreError::Io`] when it cannot be read.
pub fn read_safetensors(path: &Path) -> Result<SafetensorsFile> {
    let bytes = std::fs::read(path).map_err(|e| CoreError::io(path, e))?;
    parse_safetensors(&bytes, &path.display().to_string())
}

struct Raw {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &Raw {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Writes `path` atomically: the bytes go to a temporary file beside it, are synced, then the
/// file is renamed over `path`. Errors: [`CoreError::Io`] naming the folder or the file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| CoreError::io(dir, e))?;
    let name = path
        .file_name()
        .ok_or_else(|| CoreError::invalid("write_atomic path", path.display(), "a file path"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(CoreError::io(path, e));
    }
    Ok(())
}

/// Saves device tensors (in their own dtype, F32 or BF16) and string metadata to `path`,
/// atomically ([`write_atomic`]), the header's keys sorted so equal inputs give equal bytes.
/// Errors: [`CoreError::Format`] when a tensor cannot be read back from its device;
/// [`CoreError::Io`].
pub fn save_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &HashMap<String, String>,
) -> Result<()> {
    let mut raws = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let bytes = t
            .device()
            .client()
            .read_one(t.handle().clone())
            .map_err(|e| CoreError::Format {
                path: path.display().to_string(),
                tensor: name.clone(),
                why: format!("{e:?}"),
            })?;
        let n = t.len() * t.dtype().size();
        let dtype = match t.dtype() {
            DType::F32 => Dtype::F32,
            DType::BF16 => Dtype::BF16,
        };
        raws.push((
            name.clone(),
            Raw {
                dtype,
                shape: t.shape().to_vec(),
                bytes: bytes[..n].to_vec(),
            },
        ));
    }
    let meta = if metadata.is_empty() {
        None
    } else {
        Some(metadata.clone())
    };
    let bytes = safetensors::serialize(raws.iter().map(|(n, r)| (n.as_str(), r)), meta)
        .map_err(|e| file_err(path, e))?;
    write_atomic(path, &canonical_header(bytes))
}

/// The same safetensors bytes with the JSON header's keys in sorted order (the `safetensors`
/// crate writes `__metadata__` in hash-map order, which differs from run to run): identical
/// tensors and metadata always give identical bytes. The header keeps its length (the same
/// keys and values, only reordered), so the data offsets are unchanged.
fn canonical_header(mut bytes: Vec<u8>) -> Vec<u8> {
    let Some(n) = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
    else {
        return bytes;
    };
    let Some(header) = bytes.get(8..8 + n) else {
        return bytes;
    };
    // serde_json's map is a BTreeMap (no `preserve_order`): parsing sorts every object's keys.
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(header) else {
        return bytes;
    };
    let sorted = serde_json::to_vec(&value).expect("a JSON value serialises");
    if sorted.len() > n {
        return bytes;
    }
    bytes[8..8 + sorted.len()].copy_from_slice(&sorted);
    bytes[8 + sorted.len()..8 + n].fill(b' ');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_and_read_back() {
        let dev = Device::cpu().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/t.safetensors");
        let a = Tensor::from_f32(&dev, &[1.0, 2.5, -3.0, 4.0], &[2, 2], DType::F32).unwrap();
        let b = Tensor::from_f32(&dev, &[0.5, -1.5, 2.0], &[3], DType::BF16).unwrap();
        let meta = HashMap::from([("config".to_string(), "{\"n\": 1}".to_string())]);
        save_safetensors(&path, &[("a".into(), a), ("b".into(), b)], &meta).unwrap();
        let f = read_safetensors(&path).unwrap();
        assert_eq!(f.metadata["config"], "{\"n\": 1}");
        let p = path.display().to_string();
        assert_eq!(
            *f.get(&p, "a").unwrap().floats(&p, "a").unwrap(),
            [1.0, 2.5, -3.0, 4.0]
        );
        assert_eq!(f.get(&p, "b").unwrap().shape, vec![3]);
        assert!(f
            .get(&p, "c")
            .unwrap_err()
            .to_string()
            .contains("tensor `c`: missing"));
        // No temporary file is left behind.
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }

    /// Issue 12.8: the same tensors and metadata give the same bytes, whatever order the
    /// metadata map iterates in (each HashMap has its own random order).
    #[test]
    fn identical_content_gives_identical_bytes() {
        let dev = Device::cpu().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let a = Tensor::from_f32(&dev, &[1.0, 2.5, -3.0, 4.0], &[2, 2], DType::F32).unwrap();
        let save = |name: &str| {
            let meta: HashMap<String, String> = (0..16)
                .map(|i| (format!("key{i}"), format!("value \"{i}\" é")))
                .collect();
            let path = dir.path().join(name);
            save_safetensors(&path, &[("w".into(), a.clone())], &meta).unwrap();
            std::fs::read(path).unwrap()
        };
        let first = save("a.safetensors");
        for i in 0..4 {
            assert_eq!(save(&format!("b{i}.safetensors")), first);
        }
        let f = parse_safetensors(&first, "a").unwrap();
        assert_eq!(f.metadata.len(), 16);
        assert_eq!(f.metadata["key3"], "value \"3\" é");
        // The header's keys are sorted.
        let n = u64::from_le_bytes(first[..8].try_into().unwrap()) as usize;
        let header = std::str::from_utf8(&first[8..8 + n]).unwrap();
        assert!(header.find("key10").unwrap() < header.find("key2").unwrap());
    }

    /// A failed read or write is [`CoreError::Io`] naming the path, the OS error kept.
    #[test]
    fn io_failures_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.safetensors");
        let e = read_safetensors(&missing).unwrap_err();
        assert!(
            matches!(&e, CoreError::Io { path, error } if path == &missing && error.kind() == std::io::ErrorKind::NotFound),
            "{e:?}"
        );
        assert!(
            e.to_string().starts_with(&missing.display().to_string()),
            "{e}"
        );
        // A folder that cannot be made: its parent is a file.
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        let e = write_atomic(&file.join("sub/x.bin"), b"y").unwrap_err();
        assert!(
            matches!(&e, CoreError::Io { path, .. } if path == &file.join("sub")),
            "{e:?}"
        );
        assert!(matches!(
            write_atomic(Path::new("/"), b"y"),
            Err(CoreError::InvalidArgument { .. })
        ));
        assert!(matches!(
            parse_safetensors(b"", "x.safetensors"),
            Err(CoreError::File { .. })
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            b"\x08\0\0\0\0\0\0\0{}",
            b"\xff\xff\xff\xff\xff\xff\xff\xff",
            b"\x02\0\0\0\0\0\0\0{]",
        ] {
            assert!(parse_safetensors(bytes, "x.safetensors").is_err());
        }
    }

    #[test]
    fn reads_the_reference_fixture() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/reference/gqa_tiny.safetensors");
        let f = read_safetensors(&path).unwrap();
        let p = path.display().to_string();
        assert_eq!(
            f.get(&p, "input.idx")
                .unwrap()
                .ints(&p, "input.idx")
                .unwrap()
                .len(),
            32
        );
        assert!(f.metadata["config"].contains("n_kv_head"));
    }
}
