//! The matmul dispatch's state, kept per device so that two GPUs in one process (`chat-web -n 4
//! --device cuda` puts four workers on four GPUs) never share it:
//! - [`PerDevice`]: one value per device key (`cpu`, `cuda:0`, `cuda:1`, ...), each behind its
//!   own lock, so work on one GPU never waits for another's (cuBLASLt handles and streams);
//! - the [`Precision`] of f32 matmuls, per device ([`set_precision_for`]);
//! - the autotune cache ([`Autotune`]): the fastest kernel per (device, op, shape, dtype,
//!   precision), optionally persisted to a JSON file named by `NANOCHAT_AUTOTUNE_CACHE` so that
//!   a later process (a rerun of `scripts/gpu-check.sh`) does not time the candidates again.
//!
//! PyTorch keeps the same split: `torch.backends.cuda.matmul.allow_tf32` is process-wide but
//! cuBLAS handles are per device and per stream (`at::cuda::getCurrentCUDABlasHandle`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use super::{MatmulKernel, MatmulShape, Precision};
use crate::{Client, DType, KernelError, Result};

/// The key of a client's device in per-device state: `cpu`, or `<runtime>:<index>` (`cuda:0`),
/// the same text as `Backend`'s `Display`.
pub fn device_key(client: &Client) -> String {
    let index = client.service_id().device.index_id;
    match client.name() {
        "cpu" => "cpu".to_string(),
        name => format!("{name}:{index}"),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The state is plain data: a panic elsewhere cannot leave it half-written.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One value per device key, created on first use. Each value has its own lock: a caller
/// holding `cuda:0`'s does not block one that wants `cuda:1`'s.
pub struct PerDevice<T> {
    map: Mutex<Option<HashMap<String, Arc<Mutex<T>>>>>,
}

impl<T> Default for PerDevice<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> PerDevice<T> {
    /// No values yet (a `const fn`, so that a `static` can hold one).
    pub const fn new() -> Self {
        PerDevice {
            map: Mutex::new(None),
        }
    }

    /// The value of `key`, or `None` when none was created for it.
    pub fn get(&self, key: &str) -> Option<Arc<Mutex<T>>> {
        lock(&self.map).as_ref()?.get(key).cloned()
    }

    /// The value of `key`, created by `init` the first time. An `init` error is returned and
    /// nothing is stored (the next call tries again).
    pub fn get_or_try_init(
        &self,
        key: &str,
        init: impl FnOnce() -> Result<T>,
    ) -> Result<Arc<Mutex<T>>> {
        let mut map = lock(&self.map);
        let map = map.get_or_insert_with(HashMap::new);
        if let Some(v) = map.get(key) {
            return Ok(v.clone());
        }
        let v = Arc::new(Mutex::new(init()?));
        map.insert(key.to_string(), v.clone());
        Ok(v)
    }

    /// The keys that have a value, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = lock(&self.map)
            .as_ref()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    }
}

static PRECISION: Mutex<Option<HashMap<String, Precision>>> = Mutex::new(None);

/// Sets what f32 matmuls dispatched on device `key` may trade for speed (default
/// [`Precision::Strict`]). Other devices keep theirs.
pub fn set_precision_for(key: &str, p: Precision) {
    lock(&PRECISION)
        .get_or_insert_with(HashMap::new)
        .insert(key.to_string(), p);
}

/// The precision of device `key` ([`Precision::Strict`] unless set).
pub fn precision_for(key: &str) -> Precision {
    lock(&PRECISION)
        .as_ref()
        .and_then(|m| m.get(key).copied())
        .unwrap_or(Precision::Strict)
}

/// What the autotune cache remembers a choice by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TuneKey {
    /// [`device_key`] of the client.
    pub device: String,
    /// The op tuned (`matmul`).
    pub op: &'static str,
    /// The problem's sizes and layout.
    pub shape: MatmulShape,
    /// The element type.
    pub dtype: DType,
    /// The device's f32 matmul precision when the choice was made.
    pub precision: Precision,
}

impl TuneKey {
    fn to_json(&self, kernel: MatmulKernel) -> serde_json::Value {
        let s = &self.shape;
        serde_json::json!({
            "device": self.device,
            "op": self.op,
            "shape": [s.batch, s.m, s.n, s.k],
            "trans": [s.trans_a, s.trans_b],
            "batched": [s.lhs_batched, s.rhs_batched],
            "dtype": self.dtype.name(),
            "precision": format!("{:?}", self.precision),
            "kernel": format!("{kernel:?}"),
        })
    }

    fn from_json(v: &serde_json::Value) -> Option<(TuneKey, MatmulKernel)> {
        let us = |k: &str, i: usize| v[k][i].as_u64().map(|x| x as usize);
        let b = |k: &str, i: usize| v[k][i].as_bool();
        let shape = MatmulShape {
            batch: us("shape", 0)?,
            m: us("shape", 1)?,
            n: us("shape", 2)?,
            k: us("shape", 3)?,
            trans_a: b("trans", 0)?,
            trans_b: b("trans", 1)?,
            lhs_batched: b("batched", 0)?,
            rhs_batched: b("batched", 1)?,
        };
        let named = |k: &str| v[k].as_str();
        let op = match named("op")? {
            "matmul" => "matmul",
            _ => return None,
        };
        let precision = match named("precision")? {
            "Strict" => Precision::Strict,
            "Tf32" => Precision::Tf32,
            _ => return None,
        };
        let kernel = MatmulKernel::ALL
            .into_iter()
            .find(|k| format!("{k:?}") == named("kernel").unwrap_or(""))?;
        Some((
            TuneKey {
                device: named("device")?.to_string(),
                op,
                shape,
                dtype: DType::parse(named("dtype")?)?,
                precision,
            },
            kernel,
        ))
    }
}

/// The autotune cache: the fastest kernel found per [`TuneKey`], in memory and, when a file is
/// set, on disk (one JSON object, rewritten atomically after each new entry).
pub struct Autotune {
    choices: HashMap<TuneKey, MatmulKernel>,
    file: Option<PathBuf>,
}

impl Autotune {
    /// An empty cache that lives in memory only.
    pub fn in_memory() -> Self {
        Autotune {
            choices: HashMap::new(),
            file: None,
        }
    }

    /// A cache backed by `file`: its entries are read now (a missing file is an empty cache;
    /// an unreadable or unparsable one is an error naming it). An entry this build does not
    /// know (a kernel renamed since, a malformed line) is skipped with a warning and dropped
    /// at the next write; every new entry is written back.
    pub fn with_file(file: &Path) -> Result<Self> {
        let mut out = Autotune {
            choices: HashMap::new(),
            file: Some(file.to_path_buf()),
        };
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(cache_error(file, e)),
        };
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| cache_error(file, e))?;
        let entries = v["entries"]
            .as_array()
            .ok_or_else(|| cache_error(file, "no `entries` array"))?;
        for (i, e) in entries.iter().enumerate() {
            match TuneKey::from_json(e) {
                Some((key, kernel)) => {
                    out.choices.insert(key, kernel);
                }
                None => tracing::warn!(
                    "{}",
                    cache_error(
                        file,
                        format!("entries[{i}] is not understood, skipped: {e}")
                    )
                ),
            }
        }
        Ok(out)
    }

    /// The kernel chosen for `key`, if any.
    pub fn get(&self, key: &TuneKey) -> Option<MatmulKernel> {
        self.choices.get(key).copied()
    }

    /// Remembers a choice; with a file, rewrites it (write to a temporary file, then rename).
    pub fn insert(&mut self, key: TuneKey, kernel: MatmulKernel) -> Result<()> {
        self.choices.insert(key, kernel);
        let Some(file) = &self.file else {
            return Ok(());
        };
        let mut entries: Vec<_> = self.choices.iter().map(|(k, v)| k.to_json(*v)).collect();
        entries.sort_by_key(|e| e.to_string());
        let text = serde_json::to_string_pretty(&serde_json::json!({ "entries": entries }))
            .map_err(|e| cache_error(file, e))?;
        // A temporary file of this process's own, synced, then renamed over the old one.
        let tmp = file.with_extension(format!("json.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, file)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            cache_error(file, e)
        })
    }

    /// The number of choices remembered.
    pub fn len(&self) -> usize {
        self.choices.len()
    }

    /// Whether no choice is remembered.
    pub fn is_empty(&self) -> bool {
        self.choices.is_empty()
    }
}

fn cache_error(file: &Path, why: impl std::fmt::Display) -> KernelError {
    KernelError::runtime(
        "matmul autotune cache",
        format!("{} (NANOCHAT_AUTOTUNE_CACHE): {why}", file.display()),
    )
}

/// The process's autotune cache: on disk at `$NANOCHAT_AUTOTUNE_CACHE` when that is set (and
/// readable; otherwise a warning and an in-memory cache), in memory otherwise.
pub fn autotune() -> MutexGuard<'static, Autotune> {
    static CACHE: OnceLock<Mutex<Autotune>> = OnceLock::new();
    lock(CACHE.get_or_init(|| {
        let cache = match std::env::var_os("NANOCHAT_AUTOTUNE_CACHE").filter(|v| !v.is_empty()) {
            Some(path) => Autotune::with_file(Path::new(&path)).unwrap_or_else(|e| {
                tracing::warn!("{e}; tuning in memory only");
                Autotune::in_memory()
            }),
            None => Autotune::in_memory(),
        };
        Mutex::new(cache)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(device: &str) -> TuneKey {
        TuneKey {
            device: device.to_string(),
            op: "matmul",
            shape: MatmulShape::new(32768, 3072, 768, false, true),
            dtype: DType::BF16,
            precision: Precision::Strict,
        }
    }

    #[test]
    fn precision_set_for_one_device_is_invisible_to_another() {
        // Keys no other test uses: the table is process-wide.
        set_precision_for("cuda:0", Precision::Tf32);
        assert_eq!(precision_for("cuda:0"), Precision::Tf32);
        assert_eq!(precision_for("cuda:1"), Precision::Strict);
        set_precision_for("cuda:1", Precision::Strict);
        assert_eq!(precision_for("cuda:0"), Precision::Tf32);
        set_precision_for("cuda:0", Precision::Strict);
        assert_eq!(precision_for("cuda:0"), Precision::Strict);
    }

    #[test]
    fn autotune_entries_are_keyed_by_device_shape_and_dtype() {
        let mut cache = Autotune::in_memory();
        cache.insert(key("cuda:0"), MatmulKernel::CublasLt).unwrap();
        assert_eq!(cache.get(&key("cuda:0")), Some(MatmulKernel::CublasLt));
        assert_eq!(cache.get(&key("cuda:1")), None);
        let f32_key = TuneKey {
            dtype: DType::F32,
            ..key("cuda:0")
        };
        assert_eq!(cache.get(&f32_key), None);
        let other_shape = TuneKey {
            shape: MatmulShape::new(32768, 768, 3072, false, false),
            ..key("cuda:0")
        };
        assert_eq!(cache.get(&other_shape), None);
        cache
            .insert(key("cuda:1"), MatmulKernel::CubekDoubleTma)
            .unwrap();
        assert_eq!(cache.get(&key("cuda:0")), Some(MatmulKernel::CublasLt));
        assert_eq!(
            cache.get(&key("cuda:1")),
            Some(MatmulKernel::CubekDoubleTma)
        );
    }

    #[test]
    fn handles_are_per_device_and_created_once() {
        let handles: PerDevice<Vec<&str>> = PerDevice::new();
        let inits = std::cell::Cell::new(0);
        let h0 = handles
            .get_or_try_init("cuda:0", || {
                inits.set(inits.get() + 1);
                Ok(vec!["stream of cuda:0"])
            })
            .unwrap();
        assert!(handles.get("cuda:1").is_none());
        // An init that fails stores nothing.
        let err = handles.get_or_try_init("cuda:1", || {
            Err(KernelError::unsupported("test", "no such device"))
        });
        assert!(err.is_err());
        assert!(handles.get("cuda:1").is_none());
        let h1 = handles
            .get_or_try_init("cuda:1", || Ok(vec!["stream of cuda:1"]))
            .unwrap();
        // The same value comes back, without a second init; the devices' values differ and
        // one device's lock does not hold the other's.
        let again = handles
            .get_or_try_init("cuda:0", || unreachable!("created above"))
            .unwrap();
        assert!(Arc::ptr_eq(&h0, &again));
        assert_eq!(inits.get(), 1);
        let g0 = h0.lock().unwrap();
        let g1 = h1
            .try_lock()
            .expect("cuda:1 is not blocked by cuda:0's lock");
        assert_eq!((g0[0], g1[0]), ("stream of cuda:0", "stream of cuda:1"));
        assert_eq!(handles.keys(), ["cuda:0", "cuda:1"]);
    }

    #[test]
    fn the_autotune_file_round_trips_and_bad_files_are_named() {
        let dir = std::env::temp_dir().join(format!("autotune-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("autotune.json");
        let _ = std::fs::remove_file(&file);
        let mut cache = Autotune::with_file(&file).unwrap();
        assert!(cache.is_empty());
        cache.insert(key("cuda:0"), MatmulKernel::CublasLt).unwrap();
        cache.insert(key("cuda:1"), MatmulKernel::Tiled).unwrap();
        let back = Autotune::with_file(&file).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back.get(&key("cuda:0")), Some(MatmulKernel::CublasLt));
        assert_eq!(back.get(&key("cuda:1")), Some(MatmulKernel::Tiled));
        // An entry this build does not understand is skipped, the others kept.
        let mut text: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        text["entries"][0]["kernel"] = "RenamedSince".into();
        std::fs::write(&file, text.to_string()).unwrap();
        assert_eq!(Autotune::with_file(&file).unwrap().len(), 1);
        std::fs::write(&file, r#"{"entries": [{"device": "cuda:0"}]}"#).unwrap();
        assert!(Autotune::with_file(&file).unwrap().is_empty());
        std::fs::write(&file, r#"{"no entries": 1}"#).unwrap();
        let err = Autotune::with_file(&file).err().unwrap().to_string();
        assert!(
            err.contains("autotune.json") && err.contains("entries"),
            "{err}"
        );
        std::fs::write(&file, "not json").unwrap();
        let err = Autotune::with_file(&file).err().unwrap().to_string();
        assert!(err.contains("autotune.json"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
