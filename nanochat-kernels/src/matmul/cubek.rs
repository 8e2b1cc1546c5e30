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
use crate::layout::{slice_cols, transpose};
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
    if kernel == MatmulKernel::CpuGemm {
        return cpu_gemm::<F>(client, a, b, out, s);
    }
    launch::<F>(client, kernel, a, b, out, s, s.n)
}

/// Products wider than this run as column panels on the CPU.
const CPU_PANEL_MIN_N: usize = 384;

/// Columns of B per panel: about 1 MiB of B (half the L2 of the reference machine), a multiple
/// of 16 (the widest f32 vector), between 64 and 256.
fn cpu_panel_width(k: usize, elem_bytes: usize) -> usize {
    let cols = (1 << 20) / (k.max(1) * elem_bytes);
    (cols / 16 * 16).clamp(64, 256)
}

/// CpuGemm is fast on contiguous row-major operands and blocks only for L1: A is made
/// row-major, and B is fed as contiguous row-major panels of columns that stay in L2, each
/// product writing its columns of `out` in place. The copies cost O((m + n) k) against the
/// product's O(m n k); at 1024^3 this runs ~3x faster than one launch on B as it lies
/// (docs/benchmarks.md).
fn cpu_gemm<F: KernelFloat>(client: &Client, a: &Handle, b: &Handle, out: &Handle, s: &MatmulShape) -> Result<()> {
    let MatmulShape { batch, m, n, k, .. } = *s;
    let lhs_batch = if s.lhs_batched { batch } else { 1 };
    let rhs_batch = if s.rhs_batched { batch } else { 1 };
    let a_rows = if s.trans_a && m > 1 && k > 1 { Some(transpose::<F>(client, a, lhs_batch, k, m)?) } else { None };
    let a = a_rows.as_ref().unwrap_or(a);
    let trans_a = s.trans_a && a_rows.is_none();
    let width = if n > CPU_PANEL_MIN_N { cpu_panel_width(k, F::DTYPE.size()) } else { n };
    let es = F::DTYPE.size() as u64;
    let mut j0 = 0;
    while j0 < n {
        let nb = width.min(n - j0);
        let whole = nb == n;
        // The panel: columns j0..j0 + nb of op(B), as a contiguous (rhs_batch, k, nb) tensor.
        let panel = match (s.trans_b, whole) {
            (false, true) => b.clone(),
            (false, false) => slice_cols::<F>(client, b, rhs_batch * k, n, j0, nb)?,
            (true, _) if k == 1 || nb == 1 => {
                if whole { b.clone() } else { slice_cols::<F>(client, b, rhs_batch, n * k, j0 * k, nb * k)? }
            }
            (true, true) => transpose::<F>(client, b, rhs_batch, n, k)?,
            (true, false) => {
                let rows = slice_cols::<F>(client, b, rhs_batch, n * k, j0 * k, nb * k)?;
                transpose::<F>(client, &rows, rhs_batch, nb, k)?
            }
        };
        let ps = MatmulShape { n: nb, trans_a, trans_b: false, ..*s };
        launch::<F>(client, MatmulKernel::CpuGemm, a, &panel, &out.clone().offset_start(j0 as u64 * es), &ps, n)?;
        j0 += nb;
    }
    Ok(())
}

/// One cubek launch of `op(A) @ op(B)` for shape `s`, writing an output whose rows are
/// `out_row` elements apart (the full width when `out` is a column panel of a wider matrix).
fn launch<F: KernelFloat>(
    client: &Client,
    kernel: MatmulKernel,
    a: &Handle,
    b: &Handle,
    out: &Handle,
    s: &MatmulShape,
    out_row: usize,
) -> Result<()> {
    let MatmulShape { batch, m, n, k, .. } = *s;
    let (a_bs, a_rs, a_cs) = s.lhs_strides();
    let (b_bs, b_rs, b_cs) = s.rhs_strides();
    let (a_batch, b_batch) = (if s.lhs_batched { batch } else { 1 }, if s.rhs_batched { batch } else { 1 });
    let ty = F::cube_elem_type();
    let lhs = unsafe { TensorBinding::from_raw_parts(a.clone(), vec![a_bs, a_rs, a_cs].into(), vec![a_batch, m, k].into()) };
    let rhs = unsafe { TensorBinding::from_raw_parts(b.clone(), vec![b_bs, b_rs, b_cs].into(), vec![b_batch, k, n].into()) };
    let dst =
        unsafe { TensorBinding::from_raw_parts(out.clone(), vec![m * out_row, out_row, 1].into(), vec![batch, m, n].into()) };
    let mut dtypes = MatmulElems::from_globals(&MatmulGlobalElems { lhs: ty, rhs: ty, out: ty });
    launch_ref(&strategy(kernel), client, InputBinding::new(lhs, ty), InputBinding::new(rhs, ty), dst, &mut dtypes)
        .map_err(|e| KernelError::runtime("matmul", format!("{kernel:?}: {e}")))
}
