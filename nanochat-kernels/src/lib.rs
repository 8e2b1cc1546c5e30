//! nanochat-kernels: every numeric kernel of nanochat-rs.
//!
//! Each kernel is written in cubecl's `#[cube]` DSL, generic at compile time over the float type
//! `F: Float`, and launched on a runtime-chosen [`Client`] (the CPU runtime by default, CUDA with
//! the `cuda` feature). Each module holds, for one op:
//! - a plain-Rust reference in f64 (`*_ref`), the oracle for the kernel and for gradient checks;
//! - the `#[cube]` kernel(s) and a launch function that validates shapes before launching;
//! - a [`check`] that runs kernel and reference on random odd shapes and compares
//!   them, used by the unit tests and by `nanochat selftest`.
//!
//! Layout conventions: tensors are row-major and contiguous unless a function takes strides;
//! "rows" are everything but the last axis. Statistics saved for backward (rstd, logsumexp) are
//! kept in f32 whatever the input dtype, and every reduction accumulates in f32.

pub mod attention;
pub mod bench;
pub mod broadcast;
pub mod check;
pub mod cross_entropy;
pub mod device;
pub mod dropout;
pub mod dtype;
pub mod elementwise;
pub mod embedding;
pub mod error;
pub mod host;
mod launch;
pub mod layout;
pub mod libcalls;
pub mod matmul;
pub mod muon_head;
#[cfg(feature = "cuda")]
pub mod nccl;
pub mod optim;
pub mod reduce;
pub mod rmsnorm;
pub mod rotary;
pub mod softmax;

pub use cubecl;
pub use cubecl::client::Client;
pub use cubecl::server::Handle;
pub use device::{Backend, DeviceInfo};
pub use dtype::DType;
pub use error::KernelError;

/// Result type of every launch function.
pub type Result<T> = std::result::Result<T, KernelError>;
