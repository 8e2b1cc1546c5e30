//! Errors of the core library: each names the op, file, tensor or limit at fault.

use thiserror::Error;

use nanochat_kernels::KernelError;

#[derive(Debug, Error)]
pub enum CoreError {
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// Shapes an op cannot combine.
    #[error("{op}: {why} (shapes {shapes:?})")]
    Shape {
        op: &'static str,
        shapes: Vec<Vec<usize>>,
        why: String,
    },
    /// Tensors of different dtypes or devices given to one op.
    #[error("{op}: {why}")]
    Mismatch { op: &'static str, why: String },
    /// A file that could not be read or written.
    #[error("{path}: {why}")]
    File { path: String, why: String },
    /// A file whose contents are not what was expected (a missing tensor, a wrong shape).
    #[error("{path}: tensor `{tensor}`: {why}")]
    Format {
        path: String,
        tensor: String,
        why: String,
    },
    /// Work stopped on purpose (a streaming client went away).
    #[error("cancelled")]
    Cancelled,
    /// An invalid configuration or request (the message names what and why).
    #[error("{0}")]
    Config(String),
    /// A model and a tokenizer it was not trained with (files named, fingerprints in `why`).
    #[error("{model}: refusing tokenizer {tokenizer}: {why}")]
    TokenizerMismatch {
        model: String,
        tokenizer: String,
        why: String,
    },
    /// Tokenizer training, loading or use.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Backward asked for something the tape cannot give.
    #[error("autograd: {0}")]
    Autograd(String),
}

impl CoreError {
    pub(crate) fn shape(op: &'static str, shapes: &[&[usize]], why: impl Into<String>) -> Self {
        CoreError::Shape {
            op,
            shapes: shapes.iter().map(|s| s.to_vec()).collect(),
            why: why.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, CoreError>;
