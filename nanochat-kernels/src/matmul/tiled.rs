//! Our own matmul kernel, the oracle and fallback of the dispatch: each unit computes a 4x4
//! block of outputs in f32 registers, reading both operands through strides (so transposed and
//! batch-broadcast operands cost nothing). Simple and correct on every runtime; the fast paths
//! are cubek's and the vendor's.

use cubecl::prelude::*;

use super::{Gemm, MatmulShape};
use crate::device::DeviceInfo;
use crate::dtype::KernelFloat;
use crate::launch::{self, item_index};
use crate::{Client, Result};

const TILE: usize = 4;

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn tiled_matmul_kernel<F: Float>(
    a: &[F],
    b: &[F],
    out: &mut [F],
    m: usize,
    n: usize,
    k: usize,
    a_bs: usize,
    a_rs: usize,
    a_cs: usize,
    b_bs: usize,
    b_rs: usize,
    b_cs: usize,
    tiles_m: usize,
    tiles_n: usize,
    items: usize,
    steps: usize,
    #[comptime] blocked: bool,
) {
    for s in 0..steps {
        let item = item_index(s, steps, blocked);
        if item < items {
            let bi = item / (tiles_m * tiles_n);
            let rem = item % (tiles_m * tiles_n);
            let m0 = (rem / tiles_n) * 4;
            let n0 = (rem % tiles_n) * 4;
            let mut acc = Array::<f32>::new(16usize);
            #[unroll]
            for i in 0..16 {
                acc[i] = 0.0;
            }
            // Rows/columns past the edge read the last valid one and are never written.
            let mut a_off = Array::<usize>::new(4usize);
            let mut b_off = Array::<usize>::new(4usize);
            #[unroll]
            for r in 0..4 {
                a_off[r] = bi * a_bs + min(m0 + r, m - 1) * a_rs;
                b_off[r] = bi * b_bs + min(n0 + r, n - 1) * b_cs;
            }
            for p in 0..k {
                let mut av = Array::<f32>::new(4usize);
                let mut bv = Array::<f32>::new(4usize);
                #[unroll]
                for r in 0..4 {
                    av[r] = f32::cast_from(a[a_off[r] + p * a_cs]);
                    bv[r] = f32::cast_from(b[b_off[r] + p * b_rs]);
                }
                #[unroll]
                for r in 0..4 {
                    #[unroll]
                    for c in 0..4 {
                        acc[r * 4 + c] += av[r] * bv[c];
                    }
                }
            }
            #[unroll]
            for r in 0..4 {
                #[unroll]
                for c in 0..4 {
                    if m0 + r < m && n0 + c < n {
                        out[(bi * m + m0 + r) * n + n0 + c] = F::cast_from(acc[r * 4 + c]);
                    }
                }
            }
        }
    }
}

/// Writes `op(A) @ op(B)` into `out` (batch, m, n) with the tiled kernel.
pub fn tiled_matmul<F: KernelFloat>(client: &Client, g: Gemm) -> Result<()> {
    let Gemm { a, b, out, s } = g;
    let MatmulShape { batch, m, n, k, .. } = *s;
    let (tiles_m, tiles_n) = (m.div_ceil(TILE), n.div_ceil(TILE));
    let items = batch * tiles_m * tiles_n;
    let geo = launch::elemwise(&DeviceInfo::of(client), items);
    let (a_bs, a_rs, a_cs) = s.lhs_strides();
    let (b_bs, b_rs, b_cs) = s.rhs_strides();
    tiled_matmul_kernel::launch::<F>(
        client,
        geo.cube_count,
        geo.cube_dim,
        launch::buffer("tiled_matmul", "a", a, s.lhs_len(), F::DTYPE.size())?,
        launch::buffer("tiled_matmul", "b", b, s.rhs_len(), F::DTYPE.size())?,
        launch::buffer("tiled_matmul", "out", out, batch * m * n, F::DTYPE.size())?,
        m,
        n,
        k,
        a_bs,
        a_rs,
        a_cs,
        b_bs,
        b_rs,
        b_cs,
        tiles_m,
        tiles_n,
        items,
        geo.steps,
        geo.blocked,
    );
    Ok(())
}
