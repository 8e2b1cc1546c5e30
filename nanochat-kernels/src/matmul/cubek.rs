//! cubek's matmul routines on our buffers: `CpuGemm` on the CPU runtime; the TMA strategies
//! (`SpecializedTmaMma`, `DoubleTmaMma`, which need the `cuda-cpp` NVRTC path), the ordered
//! double-buffered tensor-core routine and the true-f32 `SimpleUnit` on CUDA.
//!
//! cubek turns f32 inputs into tf32 in every tensor-core routine; only `CpuGemm`, `SimpleUnit`
//! and our tiled kernel are true f32 (see `super::Precision`).

use cubecl::prelude::*;
use cubek::matmul::definition::{MatmulElems, MatmulGlobalElems};
use cubek::matmul::launch::launch_ref;
use cubek::matmul::multi_level::Strategy as MultiLevel;
use cubek::matmul::strategy::Strategy;
use cubek::matmul::tiled;
use cubek::std::InputBinding;

use super::{MatmulKernel, MatmulShape};
use crate::dtype::KernelFloat;
use crate::{Client, Handle, KernelError, Result};

fn strategy(kernel: MatmulKernel) -> Strategy {
    match kernel {
        MatmulKernel::CpuGemm => tiled::Strategy::CpuGemm(Default::default()).into(),
        MatmulKernel::CubekSimpleUnit => MultiLevel::SimpleUnit(Default::default()).into(),
        MatmulKernel::CubekSpecializedTma => MultiLevel::SpecializedTmaMma(Default::default()).into(),
        MatmulKernel::CubekDoubleTma => MultiLevel::DoubleTmaMma(Default::default()).into(),
        MatmulKernel::CubekOrderedDoubleCmma => MultiLevel::OrderedDoubleCmma(Default::default()).into(),
        MatmulKernel::Tiled | MatmulKernel::CublasLt => unreachable!("not a cubek routine"),
    }
}

/// Writes `op(A) @ op(B)` into `out` (batch, m, n) with a cubek routine.
pub fn cubek_matmul<F: KernelFloat>(
    client: &Client,
    kernel: MatmulKernel,
    a: &Handle,
    b: &Handle,
    out: &Handle,
    s: &MatmulShape,
) -> Result<()> {
    // CpuGemm is fastest on row-major operands (its vectorised path needs a row-major rhs):
    // transposed ones are copied to row-major first, O(n k) or O(m k) against the product's
    // O(m n k) (docs/benchmarks.md has the figures).
    if kernel == MatmulKernel::CpuGemm && s.trans_b && s.k > 1 && s.n > 1 {
        let rhs_batch = if s.rhs_batched { s.batch } else { 1 };
        let b_rows = crate::layout::transpose::<F>(client, b, rhs_batch, s.n, s.k)?;
        let s2 = MatmulShape { trans_b: false, ..*s };
        return cubek_matmul::<F>(client, kernel, a, &b_rows, out, &s2);
    }
    if kernel == MatmulKernel::CpuGemm && s.trans_a && s.k > 1 && s.m > 1 {
        let lhs_batch = if s.lhs_batched { s.batch } else { 1 };
        let a_rows = crate::layout::transpose::<F>(client, a, lhs_batch, s.k, s.m)?;
        let s2 = MatmulShape { trans_a: false, ..*s };
        return cubek_matmul::<F>(client, kernel, &a_rows, b, out, &s2);
    }
    let MatmulShape { batch, m, n, k, .. } = *s;
    let (a_bs, a_rs, a_cs) = s.lhs_strides();
    let (b_bs, b_rs, b_cs) = s.rhs_strides();
    let (a_batch, b_batch) = (if s.lhs_batched { batch } else { 1 }, if s.rhs_batched { batch } else { 1 });
    let ty = F::cube_elem_type();
    let lhs = unsafe { TensorBinding::from_raw_parts(a.clone(), vec![a_bs, a_rs, a_cs].into(), vec![a_batch, m, k].into()) };
    let rhs = unsafe { TensorBinding::from_raw_parts(b.clone(), vec![b_bs, b_rs, b_cs].into(), vec![b_batch, k, n].into()) };
    let dst = unsafe { TensorBinding::from_raw_parts(out.clone(), vec![m * n, n, 1].into(), vec![batch, m, n].into()) };
    let mut dtypes = MatmulElems::from_globals(&MatmulGlobalElems { lhs: ty, rhs: ty, out: ty });
    launch_ref(
        &strategy(kernel),
        client,
        InputBinding::new(lhs, ty),
        InputBinding::new(rhs, ty),
        dst,
        &mut dtypes,
    )
    .map_err(|e| KernelError::runtime("matmul", format!("{kernel:?}: {e}")))
}
