//! Errors of the core library: each names the op, file, tensor or limit at fault, in fields a
//! caller can match on (`matches!(e, CoreError::ContextFull { .. })`) as well as in its message.

use std::path::{Path, PathBuf};

use thiserror::Error;

use nanochat_kernels::KernelError;

use crate::checkpoint::Phase;

/// Every error of nanochat-core. Library functions return [`Result`]; the binary wraps these
/// in `anyhow` with context. (nanochat raises Python exceptions or asserts instead.)
#[derive(Debug, Error)]
pub enum CoreError {
    /// A kernel launch, buffer or device failure from `nanochat-kernels` (message passed
    /// through unchanged).
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// Shapes an op cannot combine.
    #[error("{op}: {why} (shapes {shapes:?})")]
    Shape {
        /// The op (`matmul`, `reshape`, `dims2`...).
        op: &'static str,
        /// The shapes of its inputs, in argument order.
        shapes: Vec<Vec<usize>>,
        /// What rule they break.
        why: String,
    },
    /// Tensors of different dtypes or devices given to one op.
    #[error("{op}: {why}")]
    Mismatch {
        /// The op.
        op: &'static str,
        /// Which inputs differ, and how.
        why: String,
    },
    /// A read, write, listing or creation of `path` that the operating system refused. The
    /// message is `path: error` (the `io::Error` is part of the message, not a separate
    /// `source()`, so a chain printed with `{:#}` does not repeat it).
    #[error("{}: {error}", .path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        error: std::io::Error,
    },
    /// An operating-system call that is on no file (a pipe, standard output).
    #[error("{op}: {error}")]
    Os {
        /// The call (`sandbox: creating a pipe`, `writing the reply to stdout`...).
        op: &'static str,
        /// The operating system's error.
        error: std::io::Error,
    },
    /// A file or folder that is not there, and what to do about it (`hint`: the command that
    /// makes it, or what does exist).
    #[error("{} is missing: {hint}", .path.display())]
    Missing {
        /// The missing file or folder.
        path: PathBuf,
        /// What to run or pass instead.
        hint: String,
    },
    /// A file whose contents cannot be used (not JSON, a bad line or item, a failed checksum).
    #[error("{path}: {why}")]
    File {
        /// The file (or a label such as `<bundled corpus>`).
        path: String,
        /// What is wrong, with the line, row or field.
        why: String,
    },
    /// A file whose contents are not what was expected (a missing tensor, a wrong shape).
    #[error("{path}: tensor `{tensor}`: {why}")]
    Format {
        /// The file (or the name bytes were given under).
        path: String,
        /// The tensor or metadata key (`transformer.wte.weight`, `__metadata__.config`).
        tensor: String,
        /// What is wrong with it.
        why: String,
    },
    /// Work stopped on purpose (a streaming client went away).
    #[error("cancelled")]
    Cancelled,
    /// More tokens than a context holds: `len` tokens of `what` (a prompt, a KV cache) against
    /// the model's `block_size` or the cache's capacity, `limit`.
    #[error("{what} of {len} tokens exceeds the context of {limit} tokens")]
    ContextFull {
        /// What overflowed (`prompt`, `sequence`, `KV cache`).
        what: &'static str,
        /// Its length in tokens.
        len: usize,
        /// The most it may hold, in tokens.
        limit: usize,
    },
    /// A tokenizer whose vocabulary size is not the model's `vocab_size`.
    #[error("tokenizer of {tokenizer} tokens for a model of vocab_size {model}")]
    VocabMismatch {
        /// The tokenizer's vocabulary size (tokens, specials included).
        tokenizer: usize,
        /// The model's `vocab_size`.
        model: usize,
    },
    /// A model and a tokenizer it was not trained with (files named, fingerprints in `why`).
    #[error("{model}: refusing tokenizer {tokenizer}: {why}")]
    TokenizerMismatch {
        /// The model's checkpoint.
        model: String,
        /// The tokenizer's file or folder.
        tokenizer: String,
        /// The fingerprints that differ.
        why: String,
    },
    /// No model of `phase` under `dir` (the phase's checkpoint folder): none at all when `tag`
    /// is `None`, else none tagged `tag`; `tags` are the tags that exist there.
    #[error("{}", checkpoint_not_found(.phase, .dir, .tag, .tags))]
    CheckpointNotFound {
        /// The training phase (base, mid, sft, rl).
        phase: Phase,
        /// The phase's checkpoint folder.
        dir: PathBuf,
        /// The tag asked for; `None`: any.
        tag: Option<String>,
        /// The tags found under `dir`.
        tags: Vec<String>,
    },
    /// No committed step `step` in a model's folder `dir` (`None`: no committed step at all);
    /// `steps` are the committed steps there, ascending.
    #[error("{}", step_not_found(.dir, .step, .steps))]
    StepNotFound {
        /// The model's folder.
        dir: PathBuf,
        /// The step asked for; `None`: the latest.
        step: Option<u64>,
        /// The committed steps there, ascending.
        steps: Vec<u64>,
    },
    /// A setting, flag or argument outside what it may be: `name` (`top_k`, `total batch
    /// size`), the value as given, and what was expected (a range, a multiple, a form).
    #[error("{name} = {value}: expected {expected}")]
    InvalidArgument {
        /// The setting, field or flag.
        name: &'static str,
        /// Its value, as given.
        value: String,
        /// What it must be (`at least 1`, `a multiple of 64`).
        expected: String,
    },
    /// A name that is none of the known ones: `kind` (`task`, `device`, `source`), the name
    /// given, and the known ones.
    #[error("unknown {kind} `{name}`: expected {expected}")]
    Unknown {
        /// What kind of name (`task`, `device`, `source`).
        kind: &'static str,
        /// The name given.
        name: String,
        /// The known names.
        expected: String,
    },
    /// An index past the end: item `index` of `what`, which has `len` items.
    #[error("{what}: index {index} is out of range (it has {len})")]
    OutOfRange {
        /// The indexed collection.
        what: String,
        /// The index asked for.
        index: usize,
        /// How many items it has.
        len: usize,
    },
    /// Input that holds none of what is needed: no `what` (`examples`, `tokens`) in `within`
    /// (a task, a word list, the data sources).
    #[error("{within}: no {what}")]
    NoData {
        /// What is lacking (`examples`, `tokens`, `sources`, `prompt tokens`).
        what: &'static str,
        /// Where it was looked for.
        within: String,
    },
    /// None of the environment variables `vars` is set (non-empty); `hint` says what to set.
    #[error("none of {} is set: {hint}", .vars.join(", "))]
    EnvNotSet {
        /// The variables tried, in order of precedence.
        vars: Vec<&'static str>,
        /// What to set.
        hint: &'static str,
    },
    /// A training run whose memory estimate exceeds what `device` has free (bytes), for a
    /// micro-batch of `batch` x `seq` tokens.
    #[error(
        "this run needs about {:.2} GiB (weights, gradients, optimizer state, activations of a {batch} x {seq} micro-batch) \
         but {device} has {:.2} GiB free: lower --batch-size or --seq-len, or pick a smaller model",
        gib(.need),
        gib(.free)
    )]
    OutOfMemory {
        /// The device, as it prints (`cuda:0`).
        device: String,
        /// Estimated bytes the run needs.
        need: u64,
        /// Bytes free on the device.
        free: u64,
        /// Rows per micro-batch (B).
        batch: usize,
        /// Tokens per row (T).
        seq: usize,
    },
    /// A model whose weights alone (`need` bytes) would not fit in what `device` has free
    /// (`free` bytes), refused before anything is allocated.
    #[error(
        "the model (n_layer {n_layer}, n_embd {n_embd}, vocab_size {vocab_size}: {num_params} parameters) needs about {:.2} GiB \
         {stage}, but {device} has {:.2} GiB free: use a smaller model (--depth, --vocab) or a machine with more free memory",
        gib(.need),
        gib(.free)
    )]
    ModelTooLarge {
        /// What the memory is for: `for its weights`, `to load its checkpoint`.
        stage: &'static str,
        /// The device, as it prints (`cpu`, `cuda:0`).
        device: String,
        /// Bytes of the weights.
        need: u64,
        /// Bytes free on the device.
        free: u64,
        /// The config's parameters ([`GPTConfig::num_params`](crate::model::GPTConfig::num_params)).
        num_params: u64,
        /// The config's layers.
        n_layer: usize,
        /// The config's width.
        n_embd: usize,
        /// The config's vocabulary.
        vocab_size: usize,
    },
    /// Something this build, platform or object does not do (`op`), and why.
    #[error("{op}: {why}")]
    Unsupported {
        /// The operation refused.
        op: &'static str,
        /// Why (and what to do instead).
        why: String,
    },
    /// A folder another process is writing into ([`crate::dist::FolderLock`]): its lock file
    /// and who holds it.
    #[error("{}: another run is writing into this folder ({holder}); wait for it to finish, or train into another folder (--model-tag)", .lock.display())]
    Busy {
        /// The lock file.
        lock: std::path::PathBuf,
        /// The holder as it recorded itself (`pid 123 on host`), or `unknown`.
        holder: String,
    },
    /// A task run on a device's runner thread panicked (or the thread is gone): the device and
    /// the panic's message.
    #[error("{device}: a task on the device's runner thread failed: {message}")]
    WorkerPanicked {
        /// The device, as it prints.
        device: String,
        /// The panic's message.
        message: String,
    },
    /// Tokenizer training, loading or use: the operation (`train`, `encode`, `chat format`...)
    /// and why.
    #[error("tokenizer {op}: {why}")]
    Tokenizer {
        /// The operation.
        op: &'static str,
        /// What went wrong.
        why: String,
    },
    /// A tape used in a way backward cannot follow (`op`: `backward`, a backward rule).
    #[error("autograd {op}: {why}")]
    Tape {
        /// `backward`, or the op whose rule refused.
        op: &'static str,
        /// What went wrong.
        why: String,
    },
    /// The backward rule of `op` failed with `error`.
    #[error("backward of {op}: {error}")]
    Backward {
        /// The op whose backward rule failed.
        op: &'static str,
        /// Its error.
        error: Box<CoreError>,
    },
    /// An evaluation task that failed to load or to evaluate: `op` (`loading task`, `evaluating`),
    /// the task's name as given (`GSM8K`, a CORE label) and the error.
    #[error("{op} {task}: {error}")]
    Task {
        /// What failed: `loading task` or `evaluating`.
        op: &'static str,
        /// The task's name as given.
        task: String,
        /// The underlying error.
        error: Box<CoreError>,
    },
    /// No gradient reached the tensor `name` (it did not take part in the loss).
    #[error("autograd: no gradient reached `{name}` ({tensor})")]
    NoGradient {
        /// The parameter's name (a state_dict name).
        name: String,
        /// The tensor (shape, dtype, device), as it debug-prints.
        tensor: String,
    },
    /// A broken invariant of this library (a bug, not bad input): the op and what went wrong.
    #[error("{op}: internal error: {why}")]
    Internal {
        /// Where it broke.
        op: &'static str,
        /// What went wrong.
        why: String,
    },
}

impl CoreError {
    pub(crate) fn shape(op: &'static str, shapes: &[&[usize]], why: impl Into<String>) -> Self {
        CoreError::Shape {
            op,
            shapes: shapes.iter().map(|s| s.to_vec()).collect(),
            why: why.into(),
        }
    }

    /// [`CoreError::Io`] of `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        CoreError::Io {
            path: path.into(),
            error,
        }
    }

    /// [`CoreError::Missing`] with `hint` when `error` says `path` is not there, else
    /// [`CoreError::Io`].
    pub(crate) fn io_or_missing(
        path: impl Into<PathBuf>,
        error: std::io::Error,
        hint: impl Into<String>,
    ) -> Self {
        let path = path.into();
        if error.kind() == std::io::ErrorKind::NotFound {
            CoreError::Missing {
                path,
                hint: hint.into(),
            }
        } else {
            CoreError::Io { path, error }
        }
    }

    /// [`CoreError::File`]: `path`'s contents are unusable, and why.
    pub(crate) fn file(path: impl AsRef<Path>, why: impl std::fmt::Display) -> Self {
        CoreError::File {
            path: path.as_ref().display().to_string(),
            why: why.to_string(),
        }
    }

    /// [`CoreError::InvalidArgument`].
    pub(crate) fn invalid(
        name: &'static str,
        value: impl std::fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        CoreError::InvalidArgument {
            name,
            value: value.to_string(),
            expected: expected.into(),
        }
    }

    /// [`CoreError::NoData`].
    pub(crate) fn no_data(what: &'static str, within: impl std::fmt::Display) -> Self {
        CoreError::NoData {
            what,
            within: within.to_string(),
        }
    }
}

fn gib(bytes: &u64) -> f64 {
    *bytes as f64 / (1u64 << 30) as f64
}

fn checkpoint_not_found(
    phase: &Phase,
    dir: &Path,
    tag: &Option<String>,
    tags: &[String],
) -> String {
    match tag {
        None => format!(
            "no {} checkpoints under {} (train one with `nanochat {}`)",
            phase.name(),
            dir.display(),
            phase.command()
        ),
        Some(t) => format!(
            "no {} model tagged `{t}` under {}; tags there: {tags:?}",
            phase.name(),
            dir.display()
        ),
    }
}

fn step_not_found(dir: &Path, step: &Option<u64>, steps: &[u64]) -> String {
    let base = match step {
        None => format!("no committed checkpoint in {}", dir.display()),
        Some(s) => format!(
            "no step {s} in {}; committed steps: {steps:?}",
            dir.display()
        ),
    };
    // Model files whose meta is missing (a save cut off before its meta, or a meta deleted):
    // named, so the folder does not look empty.
    let mut orphans: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let stem = name
                .strip_prefix("model_")?
                .strip_suffix(".pt")
                .or_else(|| name.strip_prefix("model_")?.strip_suffix(".safetensors"))?;
            let n: u64 = stem.parse().ok()?;
            (!steps.contains(&n)).then_some(name)
        })
        .collect();
    if orphans.is_empty() {
        return base;
    }
    orphans.sort();
    format!(
        "{base} ({} without its meta_<step>.json: a step counts once its meta is written, and nanochat and this project write it after the model)",
        orphans.join(", ")
    )
}

/// The result of a nanochat-core function: `T` or a [`CoreError`].
pub type Result<T> = std::result::Result<T, CoreError>;

#[cfg(test)]
mod tests {
    use super::*;

    /// A model file without its meta is named, so its folder does not look empty.
    #[test]
    fn a_model_file_without_its_meta_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("model_000200.pt"), b"x").unwrap();
        let e = CoreError::StepNotFound {
            dir: tmp.path().to_path_buf(),
            step: None,
            steps: vec![],
        };
        let m = e.to_string();
        assert!(
            m.contains("no committed checkpoint")
                && m.contains("model_000200.pt without its meta_<step>.json"),
            "{m}"
        );
    }

    /// Messages keep naming the file, the limit and what exists.
    #[test]
    fn messages_name_what_is_at_fault() {
        let e = CoreError::io(
            "/x/y.bin",
            std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied"),
        );
        assert_eq!(e.to_string(), "/x/y.bin: denied");
        let e = CoreError::io_or_missing(
            "/x/tok",
            std::io::Error::from(std::io::ErrorKind::NotFound),
            "train one with `nanochat tok-train`",
        );
        assert!(
            matches!(&e, CoreError::Missing { path, .. } if path == Path::new("/x/tok")),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "/x/tok is missing: train one with `nanochat tok-train`"
        );
        let e = CoreError::StepNotFound {
            dir: "/m/base_checkpoints/d1".into(),
            step: Some(5),
            steps: vec![1, 2],
        };
        assert_eq!(
            e.to_string(),
            "no step 5 in /m/base_checkpoints/d1; committed steps: [1, 2]"
        );
        let e = CoreError::invalid("top_k", 0, "at least 1");
        assert_eq!(e.to_string(), "top_k = 0: expected at least 1");
        let e = CoreError::EnvNotSet {
            vars: vec!["NANOCHAT_BASE_DIR", "HOME"],
            hint: "set NANOCHAT_BASE_DIR",
        };
        assert_eq!(
            e.to_string(),
            "none of NANOCHAT_BASE_DIR, HOME is set: set NANOCHAT_BASE_DIR"
        );
        let e = CoreError::OutOfMemory {
            device: "cpu".into(),
            need: 3 << 30,
            free: 1 << 30,
            batch: 4,
            seq: 64,
        };
        assert_eq!(
            e.to_string(),
            "this run needs about 3.00 GiB (weights, gradients, optimizer state, activations of a 4 x 64 micro-batch) \
             but cpu has 1.00 GiB free: lower --batch-size or --seq-len, or pick a smaller model"
        );
    }
}
