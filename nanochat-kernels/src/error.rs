//! Errors of the kernel layer: each names the op and the shapes or sizes that were wrong.

use thiserror::Error;

/// Every error of a launch function ([`crate::Result`]); nanochat-core wraps it in its own.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum KernelError {
    /// A buffer does not hold as many bytes as the shape given with it needs.
    #[error("{op}: buffer `{arg}` holds {got} bytes, its shape {shape:?} ({dtype}) needs {need}")]
    BufferSize {
        /// The launch function.
        op: &'static str,
        /// Its argument.
        arg: &'static str,
        /// The shape given with the buffer.
        shape: Vec<usize>,
        /// The element type's name.
        dtype: &'static str,
        /// Bytes the shape needs.
        need: u64,
        /// Bytes the buffer holds.
        got: u64,
    },
    /// A kernel argument whose declared view would reach past its buffer, refused before the
    /// launch (a wrong length computed inside a launch function: see `launch::binding`).
    #[error(
        "{op}: kernel argument `{arg}` (shape {shape:?}, strides {strides:?}, {item_bytes}-byte \
         items) needs {} bytes, its buffer holds {got}",
        need.map_or("more than u64::MAX".to_string(), |n| n.to_string())
    )]
    LaunchBounds {
        /// The kernel.
        op: &'static str,
        /// The kernel's parameter.
        arg: &'static str,
        /// The declared shape, in items.
        shape: Vec<usize>,
        /// The declared strides, in items.
        strides: Vec<usize>,
        /// Bytes per item.
        item_bytes: usize,
        /// Bytes the view reaches; `None` when that overflows `u64`.
        need: Option<u64>,
        /// Bytes the buffer holds after its offsets.
        got: u64,
    },
    /// Shapes that the op cannot combine.
    #[error("{op}: incompatible shapes {shapes:?}: {why}")]
    Shape {
        /// The launch function.
        op: &'static str,
        /// The shapes involved.
        shapes: Vec<Vec<usize>>,
        /// What is wrong with them.
        why: String,
    },
    /// A parameter outside what the op supports.
    #[error("{op}: {why}")]
    Unsupported {
        /// The launch function.
        op: &'static str,
        /// The parameter and the limit.
        why: String,
    },
    /// The runtime refused or failed the work (out of memory, compilation, a device error).
    #[error("{op}: runtime error: {why}")]
    Runtime {
        /// The launch function (or `device`).
        op: &'static str,
        /// The runtime's message.
        why: String,
    },
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
