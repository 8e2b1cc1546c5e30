//! Differentiable ops. Each takes the tape as `Option<&Tape>` (None: inference, nothing is
//! recorded or saved), runs its forward through the kernels, records its backward rule when an
//! input requires a gradient, and is gradient-checked against an f64 reference in its module.
//! Composite ops built from these (e.g. [`linear`]) need no rule of their own. A few ops are
//! for inference only and take no tape ([`narrow`], [`write_rows`], [`attention_cached`]: what
//! a KV cache and last-position logits need), so that the model calls no kernel itself.

/// Launches a kernel for `$like`'s dtype: binds `$F` to its float type and `$c` to its device's
/// client, then evaluates `$launch` (as `with_float!` does for a dtype) (the kernel call, a `Result`).
macro_rules! launch {
    ($like:expr, $F:ident, $c:ident => $launch:expr) => {{
        let like: &$crate::Tensor = $like;
        let $c = like.device().client();
        nanochat_kernels::with_float!(like.dtype(), $F => $launch)
    }};
}

/// [`launch!`] of a kernel that gives one buffer, wrapped as a tensor of `$shape` on `$like`'s
/// device, of `$like`'s dtype.
macro_rules! launch_wrap {
    ($like:expr, $shape:expr, $F:ident, $c:ident => $launch:expr) => {{
        let like: &$crate::Tensor = $like;
        let h = $crate::ops::launch!(like, $F, $c => $launch)?;
        $crate::ops::wrap(like, h, $shape)
    }};
}
pub(crate) use {launch, launch_wrap};

mod attention;
mod cross_entropy;
mod dropout;
mod elementwise;
mod embedding;
mod matmul;
mod reduce;
mod rmsnorm;
mod rotary;
mod shape;
mod slice;
mod softmax;

pub use attention::{attention, attention_cached};
pub use cross_entropy::{cross_entropy, softcap_cross_entropy, Reduction};
pub use dropout::dropout;
pub use elementwise::{
    add, affine, div, exp, log, mul, neg, relu2, scale, softcap, square, sub, tanh,
};
pub use embedding::{embedding, embedding_bf16_storage};
pub use matmul::{linear, matmul};
pub use reduce::{mean, sum, sum_last};
pub use rmsnorm::rmsnorm;
pub use rotary::{rotary, RotaryTables};
pub use shape::{cast, narrow, reshape, round_bf16_in_place, transpose, write_rows};
pub use slice::{pad, sigmoid, slice};
pub use softmax::softmax;

use nanochat_kernels::broadcast::binary_broadcast;
use nanochat_kernels::elementwise::{unary, Binary, Unary};
use nanochat_kernels::reduce::sum_to;
use nanochat_kernels::Handle;

use crate::{Result, Tensor};

/// Wraps a kernel's output buffer as a tensor on `like`'s device, of `like`'s dtype.
pub(crate) fn wrap(like: &Tensor, h: Handle, shape: &[usize]) -> Result<Tensor> {
    Tensor::from_handle(like.device(), h, shape, like.dtype())
}

/// `op(x)` without recording.
pub(crate) fn map(x: &Tensor, op: Unary) -> Result<Tensor> {
    launch_wrap!(x, x.shape(), F, c => unary::<F>(c, x.handle(), x.len(), op))
}

/// `op(x, y)` with broadcasting, without recording.
pub(crate) fn zip(x: &Tensor, y: &Tensor, op: Binary, a: f32, b: f32) -> Result<Tensor> {
    crate::tensor::same_kind("binary op", &[x, y])?;
    let (h, shape) = launch!(x, F, c => binary_broadcast::<F>(c, (x.handle(), x.shape()), (y.handle(), y.shape()), op, a, b))?;
    wrap(x, h, &shape)
}

/// Sums a broadcast gradient back to `shape` (identity when the shapes agree).
pub(crate) fn reduce_to(g: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if g.shape() == shape {
        return Ok(g.clone());
    }
    launch_wrap!(g, shape, F, c => sum_to::<F>(c, g.handle(), g.shape(), shape))
}

/// `g` broadcast to `shape`.
pub(crate) fn expand(g: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if g.shape() == shape {
        return Ok(g.clone());
    }
    zip(
        &Tensor::zeros(g.device(), shape, g.dtype())?,
        g,
        Binary::Add,
        0.0,
        0.0,
    )
}

#[cfg(test)]
pub(crate) mod testing {
    //! Shared pieces of the ops' gradient-check tests.
    pub(crate) use crate::autograd::gradcheck::{check, gradcheck_test};
    pub use crate::autograd::gradcheck::{rng, Input, Tolerance};
    pub use proptest::prelude::*;

    /// Few, small cases: each builds kernels and runs finite differences on the CPU.
    pub fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 6,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }
}
