//! A few rows against a transposed weight: `out = x @ W^T` with x (rows, k), W (n, k), the
//! shape of every linear layer while decoding (rows = the batch of sequences, one token each).
//!
//! A unit owns [`JB`] outputs `j` and computes, for every row of x, the dot products with W's
//! rows `j` along `k` in `N`-wide vectors: W is read once, in place, in the order it is stored
//! (the weights are the whole cost: memory-bound), and x (a few KiB) stays in L1. The CPU
//! dispatch sends such products here instead of to CpuGemm, which would first copy W
//! transposed (all of `lm_head`, every token).

use cubecl::prelude::*;

use super::{Gemm, MatmulShape};
use crate::device::DeviceInfo;
use crate::dtype::KernelFloat;
use crate::launch::{self, item_index, lane_sum};
use crate::{Client, KernelError, Result};

/// Outputs per unit (independent accumulators; x's vector reused across them).
const JB: usize = 4;

/// Most rows of x this kernel takes (more rows amortise W over a GEMM's tiles instead).
pub const GEMV_MAX_ROWS: usize = 8;

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn gemv_nt_kernel<F: Float, N: Size>(
    x: &[Vector<F, N>],
    w: &[Vector<F, N>],
    out: &mut [F],
    rows: usize,
    cols: usize,
    kv: usize,
    blocks: usize,
    steps: usize,
    #[comptime] blocked: bool,
) {
    for s in 0..steps {
        let blk = item_index(s, steps, blocked);
        if blk < blocks {
            let j0 = blk * JB;
            for r in 0..rows {
                let mut acc = Array::<Vector<f32, N>>::new(JB);
                #[unroll]
                for jj in 0..JB {
                    acc[jj] = Vector::new(0.0);
                }
                for c in 0..kv {
                    let xv = Vector::<f32, N>::cast_from(x[r * kv + c]);
                    #[unroll]
                    for jj in 0..JB {
                        let j = min(j0 + jj, cols - 1);
                        acc[jj] += xv * Vector::<f32, N>::cast_from(w[j * kv + c]);
                    }
                }
                #[unroll]
                for jj in 0..JB {
                    let j = j0 + jj;
                    if j < cols {
                        out[r * cols + j] = F::cast_from(lane_sum::<N>(acc[jj]));
                    }
                }
            }
        }
    }
}

/// Whether [`gemv_nt`] takes this product: B transposed and shared by A's batches (or a single
/// batch), A not transposed, at most [`GEMV_MAX_ROWS`] rows in all.
pub fn gemv_eligible(s: &MatmulShape) -> bool {
    s.trans_b
        && !s.trans_a
        && (s.batch == 1 || (s.lhs_batched && !s.rhs_batched))
        && s.batch * s.m <= GEMV_MAX_ROWS
}

/// Writes `A @ B^T` into `out` for a [`gemv_eligible`] shape (A's batches are its rows).
pub fn gemv_nt<F: KernelFloat>(client: &Client, g: Gemm) -> Result<()> {
    let Gemm { a, b, out, s } = g;
    if !gemv_eligible(s) {
        return Err(KernelError::unsupported(
            "matmul (gemv)",
            format!("shape {s:?}: needs A @ B^T, B shared, at most {GEMV_MAX_ROWS} rows"),
        ));
    }
    let rows = s.batch * s.m;
    let (n, k) = (s.n, s.k);
    let vs = launch::vector_size(client, F::DTYPE.size(), &[k]);
    let blocks = n.div_ceil(JB);
    let geo = launch::elemwise(&DeviceInfo::of(client), blocks);
    gemv_nt_kernel::launch::<F>(
        client,
        geo.cube_count,
        geo.cube_dim,
        vs,
        launch::buffer("gemv_nt", "x", a, rows * k / vs, vs * F::DTYPE.size())?,
        launch::buffer("gemv_nt", "w", b, n * k / vs, vs * F::DTYPE.size())?,
        launch::buffer("gemv_nt", "out", out, rows * n, F::DTYPE.size())?,
        rows,
        n,
        k / vs,
        blocks,
        geo.steps,
        geo.blocked,
    );
    Ok(())
}
