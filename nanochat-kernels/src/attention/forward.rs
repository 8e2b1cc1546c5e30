//! Flash-style causal attention forward: each unit owns one query row, keeps its output
//! accumulator in registers and streams the keys it sees (the window's, when there is one)
//! with an online softmax (running max and sum), so nothing of size T x T exists. Saves the logsumexp of each row for the backward.
//!
//! Rows are ordered (b, h, i) and handed to units round-robin: neighbouring units share the
//! same K/V rows (cache reuse on the CPU, broadcast loads on a GPU), and the causal triangle's
//! uneven rows are spread evenly.

use cubecl::prelude::*;

use super::{query_row, AttentionShape, AttnArgs, KvLayout};
use crate::device::DeviceInfo;
use crate::dtype::KernelFloat;
use crate::launch::{self, item_index, lane_sum};
use crate::{Client, Handle, Result};

/// One step of the online softmax: folds key/value row `kb` into the running max `m`, sum `l`
/// and weighted values `acc` of a (pre-scaled) query row; returns the new `(m, l)`.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(super) fn attend<F: Float, N: Size>(
    qr: &Array<Vector<f32, N>>,
    k: &[Vector<F, N>],
    v: &[Vector<F, N>],
    kb: usize,
    acc: &mut Array<Vector<f32, N>>,
    m: f32,
    l: f32,
    #[comptime] dv: usize,
) -> (f32, f32) {
    let mut sv = Vector::<f32, N>::new(0.0);
    #[unroll]
    for d in 0..dv {
        sv += qr[d] * Vector::<f32, N>::cast_from(k[kb + d]);
    }
    let score = lane_sum::<N>(sv);
    let m_new = max(m, score);
    let corr = (m - m_new).exp();
    let p = (score - m_new).exp();
    #[unroll]
    for d in 0..dv {
        acc[d] =
            acc[d] * Vector::new(corr) + Vector::<f32, N>::cast_from(v[kb + d]) * Vector::new(p);
    }
    (m_new, l * corr + p)
}

/// Query row `q_base` of `q` times `scale`, and a zeroed accumulator of the same length.
#[cube]
#[allow(clippy::type_complexity)] // two arrays of f32 vectors
pub(super) fn scaled_row_and_acc<F: Float, N: Size>(
    q: &[Vector<F, N>],
    q_base: usize,
    scale: f32,
    #[comptime] dv: usize,
) -> (Array<Vector<f32, N>>, Array<Vector<f32, N>>) {
    let mut qr = Array::<Vector<f32, N>>::new(dv);
    let mut acc = Array::<Vector<f32, N>>::new(dv);
    #[unroll]
    for d in 0..dv {
        qr[d] = Vector::<f32, N>::cast_from(q[q_base + d]) * Vector::new(scale);
        acc[d] = Vector::new(0.0);
    }
    (qr, acc)
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn attention_forward_kernel<F: Float, N: Size>(
    q: &[Vector<F, N>],
    k: &[Vector<F, N>],
    v: &[Vector<F, N>],
    o: &mut [Vector<F, N>],
    lse: &mut [f32],
    rows: usize,
    a: AttnArgs,
    steps: usize,
    #[comptime] dv: usize,
) {
    for s in 0..steps {
        let r = item_index(s, steps, false);
        if r < rows {
            let (i, _, h, b) = query_row(r, a.tq, a.heads);
            let q_base = ((b * a.tq + i) * a.heads + h) * dv;
            let kv_base = b * a.kv_batch_stride + (h / a.group) * dv;
            let (qr, mut acc) = scaled_row_and_acc::<F, N>(q, q_base, a.scale, dv);
            let mut m = f32::new(f32::NEG_INFINITY);
            let mut l = 0.0f32;
            // Keys from the window's start (position minus the window) to the position.
            let limit = i + a.tk - a.tq + 1;
            let first = (limit - 1).saturating_sub(a.window);
            for j in first..limit {
                let (m2, l2) =
                    attend::<F, N>(&qr, k, v, kv_base + j * a.kv_row_stride, &mut acc, m, l, dv);
                m = m2;
                l = l2;
            }
            let inv = Vector::<f32, N>::new(1.0 / l);
            #[unroll]
            for d in 0..dv {
                o[q_base + d] = Vector::cast_from(acc[d] * inv);
            }
            lse[r] = m + l.ln();
        }
    }
}

/// Causal attention of `q` (B, Tq, H, D) over `k`, `v` laid out as `kv` says; query i sits at
/// position `i + Tk - Tq`. Returns the output (B, Tq, H, D) and the logsumexp (B, H, Tq, f32).
/// The row kernel: one unit per query row (any KV layout).
pub fn attention_forward_rows<F: KernelFloat>(
    client: &Client,
    [q, k, v]: [&Handle; 3],
    s: &AttentionShape,
    kv: &KvLayout,
) -> Result<(Handle, Handle)> {
    s.check_qkv::<F>("attention", [q, k, v], kv)?;
    let (rows, head_dim) = (s.q_rows(), s.head_dim);
    let o = client.empty(rows * head_dim * F::DTYPE.size());
    let lse = client.empty(rows * 4);
    let vs = kv.vector_size::<F>(client, s);
    let g = launch::elemwise(&DeviceInfo::of(client), rows);
    let b = launch::VecBuffers::new("attention_forward", vs, F::DTYPE.size());
    let (aq, ao) = (
        b.vecs("q", q, rows * head_dim)?,
        b.vecs("o", &o, rows * head_dim)?,
    );
    let (ak, av) = (b.vecs("k", k, kv.len(s))?, b.vecs("v", v, kv.len(s))?);
    let alse = b.words("lse", &lse, rows)?;
    launch::launch_on!(attention_forward_kernel::<F>, client, g, vs; aq, ak, av, ao, alse,
        rows, s.args(kv, vs), g.steps, head_dim / vs);
    Ok((o, lse))
}
