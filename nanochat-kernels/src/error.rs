//! Errors of the kernel layer: each names the op and the shapes or sizes that were wrong.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum KernelError {
    /// A buffer does not hold as many bytes as the shape given with it needs.
    #[error("{op}: buffer `{arg}` holds {got} bytes, its shape {shape:?} ({dtype}) needs {need}")]
    BufferSize {
        op: &'static str,
        arg: &'static str,
        shape: Vec<usize>,
        dtype: &'static str,
        need: u64,
        got: u64,
    },
    /// Shapes that the op cannot combine.
    #[error("{op}: incompatible shapes {shapes:?}: {why}")]
    Shape {
        op: &'static str,
        shapes: Vec<Vec<usize>>,
        why: String,
    },
    /// A parameter outside what the op supports.
    #[error("{op}: {why}")]
    Unsupported { op: &'static str, why: String },
    /// The runtime refused or failed the work (out of memory, compilation, a device error).
    #[error("{op}: runtime error: {why}")]
    Runtime { op: &'static str, why: String },
}

impl KernelError {
    pub(crate) fn shape(op: &'static str, shapes: &[&[usize]], why: impl Into<String>) -> Self {
        KernelError::Shape {
            op,
            shapes: shapes.iter().map(|s| s.to_vec()).collect(),
            why: why.into(),
        }
    }

    pub(crate) fn unsupported(op: &'static str, why: impl Into<String>) -> Self {
        KernelError::Unsupported {
            op,
            why: why.into(),
        }
    }

    pub(crate) fn runtime(op: &'static str, why: impl std::fmt::Display) -> Self {
        KernelError::Runtime {
            op,
            why: why.to_string(),
        }
    }
}
