//! Key-blocked causal attention backward, the CPU runtime's fast path (see [`super::blocked`]
//! for the layout idea; [`super::backward`] has the formulas and the row kernels).
//!
//! - dQ: a unit owns [`QB`] query rows of one head and walks the keys `N` at a time: scores
//!   from K transposed, `dp` from V transposed (both (B, Hkv, D, Tk)), `ds` on the lanes, then
//!   `dq += ds K` from K's rows.
//! - dK, dV: a unit owns [`QB`] key rows of one kv head and walks, for every query head of its
//!   group, the queries that see them `N` at a time: scores from Q transposed, `dp` from dout
//!   transposed (both (B, H, D, Tq)), the saved logsumexp and `delta` read as vectors, then
//!   `dv += p dout` and `dk += ds q` from the rows of dout and q.
//!
//! Every gradient row is written once, by one unit: no atomics, deterministic.

use cubecl::prelude::*;

use super::backward::BackwardInputs;
use super::blocked::{
    blocked_vector_size, causal_penalty, iota, load_row_block, transpose_heads, zeros,
};
use super::{query_row, AttentionShape, AttnArgs};
use crate::device::DeviceInfo;
use crate::dtype::KernelFloat;
use crate::launch::{self, item_index};
use crate::{Client, Handle, Result};

/// Rows (queries for dQ, keys for dK and dV) per unit: 8 was faster than 4 or 16 on the
/// reference CPU (each vector of K^T, V^T, Q^T or dout^T loaded serves eight accumulators).
const QB: usize = 8;

/// The scores of [`QB`] rows against one block of `N` transposed columns, two at once:
/// `(sum_dd a[r][dd] * at[dd], sum_dd b[r][dd] * bt[dd])` for each row `r`, where `at[dd]`
/// and `bt[dd]` are the vectors at `base + dd * stride`, summed over `dd` in order.
#[cube]
#[allow(clippy::type_complexity)] // two arrays of f32 vectors
fn block_scores<F: Float, N: Size>(
    a: &Array<f32>,
    at: &[Vector<F, N>],
    b: &Array<f32>,
    bt: &[Vector<F, N>],
    base: usize,
    stride: usize,
    #[comptime] d: usize,
) -> (Array<Vector<f32, N>>, Array<Vector<f32, N>>) {
    let mut sa = Array::<Vector<f32, N>>::new(QB);
    let mut sb = Array::<Vector<f32, N>>::new(QB);
    #[unroll]
    for r in 0..QB {
        sa[r] = Vector::new(0.0);
        sb[r] = Vector::new(0.0);
    }
    for dd in 0..d {
        let av = Vector::<f32, N>::cast_from(at[base + dd * stride]);
        let bv = Vector::<f32, N>::cast_from(bt[base + dd * stride]);
        #[unroll]
        for r in 0..QB {
            sa[r] += Vector::new(a[r * d + dd]) * av;
            sb[r] += Vector::new(b[r * d + dd]) * bv;
        }
    }
    (sa, sb)
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn attention_dq_blocked_kernel<F: Float, N: Size>(
    q: &[F],
    dout: &[F],
    kt: &[Vector<F, N>],
    vt: &[Vector<F, N>],
    k: &[Vector<F, N>],
    lse: &[f32],
    delta: &[f32],
    dq: &mut [Vector<F, N>],
    blocks: usize,
    a: AttnArgs,
    steps: usize,
    #[comptime] d: usize,
) {
    let (tq, tk, heads, kv_heads) = (a.tq, a.tk, a.heads, a.kv_heads);
    let n = N::value();
    let dv = comptime![d / n];
    let q_blocks = tq.div_ceil(QB);
    let lanes = iota::<N>();
    let neg_lanes = Vector::<f32, N>::new(0.0) - lanes;
    for s in 0..steps {
        let r = item_index(s, steps, false);
        if r < blocks {
            let (qb, bh, h, b) = query_row(r, q_blocks, heads);
            let (i0, hk, offset) = (qb * QB, h / a.group, tk - tq);
            let qs = load_row_block::<F>(q, i0, tq, heads, b, h, a.scale, true, QB, d);
            let gs = load_row_block::<F>(dout, i0, tq, heads, b, h, a.scale, false, QB, d);
            let mut row_lse = Array::<f32>::new(QB);
            let mut row_delta = Array::<f32>::new(QB);
            #[unroll]
            for qi in 0..QB {
                let i = min(i0 + qi, tq - 1);
                row_lse[qi] = lse[bh * tq + i];
                row_delta[qi] = delta[bh * tq + i];
            }
            let mut acc = zeros::<N>(comptime![QB * dv]);
            let mut da = Array::<f32>::new(comptime![QB * n]);
            let tkv = tk / n;
            let t_base = (b * kv_heads + hk) * d * tkv;
            let row_k = kv_heads * dv;
            let k_base = b * tk * row_k + hk * dv;
            let last = min(i0 + QB, tq) - 1 + offset;
            let key_blocks = last / n + 1;
            let first_block = (i0 + offset).saturating_sub(a.window) / n;
            for jb in first_block..key_blocks {
                let j = jb * n;
                let (sc, dp) = block_scores::<F, N>(&qs, kt, &gs, vt, t_base + jb, tkv, d);
                let diagonal = j + n > i0 + offset + 1;
                let windowed = j + a.window < last;
                #[unroll]
                for qi in 0..QB {
                    let mut s_row = sc[qi] - Vector::new(row_lse[qi]);
                    if diagonal {
                        let lead = f32::cast_from(i0 + qi + offset) - f32::cast_from(j);
                        s_row += causal_penalty::<N>(neg_lanes, lead);
                    }
                    if windowed {
                        let lead = f32::cast_from(j + a.window) - f32::cast_from(i0 + qi + offset);
                        s_row += causal_penalty::<N>(lanes, lead);
                    }
                    let ds = s_row.exp() * (dp[qi] - Vector::new(row_delta[qi]));
                    #[unroll]
                    for jj in 0..n {
                        da[qi * n + jj] = ds.extract(jj);
                    }
                }
                for x in 0..dv {
                    let mut a = Array::<Vector<f32, N>>::new(QB);
                    #[unroll]
                    for qi in 0..QB {
                        a[qi] = acc[qi * dv + x];
                    }
                    #[unroll]
                    for jj in 0..n {
                        let key = min(j + jj, tk - 1);
                        let kv = Vector::<f32, N>::cast_from(k[k_base + key * row_k + x]);
                        #[unroll]
                        for qi in 0..QB {
                            a[qi] += Vector::new(da[qi * n + jj]) * kv;
                        }
                    }
                    #[unroll]
                    for qi in 0..QB {
                        acc[qi * dv + x] = a[qi];
                    }
                }
            }
            #[unroll]
            for qi in 0..QB {
                let i = i0 + qi;
                if i < tq {
                    let base = ((b * tq + i) * heads + h) * dv;
                    for x in 0..dv {
                        dq[base + x] = Vector::cast_from(acc[qi * dv + x] * Vector::new(a.scale));
                    }
                }
            }
        }
    }
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn attention_dkv_blocked_kernel<F: Float, N: Size>(
    k: &[F],
    v: &[F],
    qt: &[Vector<F, N>],
    gt: &[Vector<F, N>],
    q: &[Vector<F, N>],
    dout: &[Vector<F, N>],
    lse: &[Vector<f32, N>],
    delta: &[Vector<f32, N>],
    dk: &mut [Vector<F, N>],
    dvv: &mut [Vector<F, N>],
    blocks: usize,
    a: AttnArgs,
    steps: usize,
    #[comptime] d: usize,
) {
    let (tq, tk, heads, kv_heads, group) = (a.tq, a.tk, a.heads, a.kv_heads, a.group);
    let n = N::value();
    let dv = comptime![d / n];
    let k_blocks = tk.div_ceil(QB);
    let lanes = iota::<N>();
    let neg_lanes = Vector::<f32, N>::new(0.0) - lanes;
    for s in 0..steps {
        let r = item_index(s, steps, false);
        if r < blocks {
            // Blocks ordered (b, hk, key block).
            let (kb, _, hk, b) = query_row(r, k_blocks, kv_heads);
            let (j0, offset) = (kb * QB, tk - tq);
            let ks = load_row_block::<F>(k, j0, tk, kv_heads, b, hk, a.scale, true, QB, d);
            let vs = load_row_block::<F>(v, j0, tk, kv_heads, b, hk, a.scale, false, QB, d);
            let mut acc_k = zeros::<N>(comptime![QB * dv]);
            let mut acc_v = zeros::<N>(comptime![QB * dv]);
            let mut pa = Array::<f32>::new(comptime![QB * n]);
            let mut da = Array::<f32>::new(comptime![QB * n]);
            let tqv = tq / n;
            // Query i (position i + offset) sees key j when j <= i + offset <= j + window:
            // query blocks from the first that sees j0 to the last that sees the unit's last key.
            let first = j0.saturating_sub(offset);
            let j_last = min(j0 + QB, tk) - 1;
            let end_blocks = min(
                (j_last + a.window + 1).saturating_sub(offset).div_ceil(n),
                tqv,
            );
            let row_q = heads * dv;
            for hh in 0..group {
                let h = hk * group + hh;
                let t_base = (b * heads + h) * d * tqv;
                let stat_base = (b * heads + h) * tqv;
                let q_base = b * tq * row_q + h * dv;
                for ib in first / n..end_blocks {
                    let i0 = ib * n;
                    let (sc, dp) = block_scores::<F, N>(&ks, qt, &vs, gt, t_base + ib, tqv, d);
                    let l = lse[stat_base + ib];
                    let dl = delta[stat_base + ib];
                    let diagonal = i0 + offset < j0 + QB - 1;
                    let windowed = i0 + n - 1 + offset > j0 + a.window;
                    #[unroll]
                    for kj in 0..QB {
                        let mut s_row = sc[kj] - l;
                        if diagonal {
                            let lead = f32::cast_from(i0 + offset) - f32::cast_from(j0 + kj);
                            s_row += causal_penalty::<N>(lanes, lead);
                        }
                        if windowed {
                            let lead =
                                f32::cast_from(j0 + kj + a.window) - f32::cast_from(i0 + offset);
                            s_row += causal_penalty::<N>(neg_lanes, lead);
                        }
                        let p = s_row.exp();
                        let ds = p * (dp[kj] - dl);
                        #[unroll]
                        for ii in 0..n {
                            pa[kj * n + ii] = p.extract(ii);
                            da[kj * n + ii] = ds.extract(ii);
                        }
                    }
                    for x in 0..dv {
                        let mut ak = Array::<Vector<f32, N>>::new(QB);
                        let mut av = Array::<Vector<f32, N>>::new(QB);
                        #[unroll]
                        for kj in 0..QB {
                            ak[kj] = acc_k[kj * dv + x];
                            av[kj] = acc_v[kj * dv + x];
                        }
                        #[unroll]
                        for ii in 0..n {
                            let row = q_base + (i0 + ii) * row_q + x;
                            let qv = Vector::<f32, N>::cast_from(q[row]);
                            let gv = Vector::<f32, N>::cast_from(dout[row]);
                            #[unroll]
                            for kj in 0..QB {
                                ak[kj] += Vector::new(da[kj * n + ii]) * qv;
                                av[kj] += Vector::new(pa[kj * n + ii]) * gv;
                            }
                        }
                        #[unroll]
                        for kj in 0..QB {
                            acc_k[kj * dv + x] = ak[kj];
                            acc_v[kj * dv + x] = av[kj];
                        }
                    }
                }
            }
            #[unroll]
            for kj in 0..QB {
                let j = j0 + kj;
                if j < tk {
                    let base = ((b * tk + j) * kv_heads + hk) * dv;
                    for x in 0..dv {
                        dk[base + x] = Vector::cast_from(acc_k[kj * dv + x] * Vector::new(a.scale));
                        dvv[base + x] = Vector::cast_from(acc_v[kj * dv + x]);
                    }
                }
            }
        }
    }
}

/// [`super::attention_backward`] with the key-blocked kernels.
pub fn attention_backward_blocked<F: KernelFloat>(
    client: &Client,
    x: &BackwardInputs,
    s: &AttentionShape,
) -> Result<(Handle, Handle, Handle)> {
    x.check::<F>("attention_backward", s)?;
    let (q, k, v, lse, dout) = (x.q, x.k, x.v, x.lse, x.dout);
    let info = DeviceInfo::of(client);
    let vs = blocked_vector_size::<F>(client, s);
    let (q_rows, k_rows) = (s.q_rows(), s.k_rows());
    let (q_len, k_len) = (q_rows * s.head_dim, k_rows * s.head_dim);
    let delta = super::backward::attention_delta::<F>(client, x.out, dout, s)?;
    let args = || s.args(&super::KvLayout::contiguous(s), vs);
    let kt = transpose_heads::<F>(client, k, s.batch, s.tk, s.kv_heads * s.head_dim)?;
    let vt = transpose_heads::<F>(client, v, s.batch, s.tk, s.kv_heads * s.head_dim)?;

    let dq = client.empty(q_len * F::DTYPE.size());
    let blocks = s.batch * s.heads * s.tq.div_ceil(QB);
    let g = launch::elemwise(&info, blocks);
    let b = launch::VecBuffers::new("attention_dq_blocked", vs, F::DTYPE.size());
    let (aq, adout) = (b.scalars("q", q, q_len)?, b.scalars("dout", dout, q_len)?);
    let (akt, avt, ak) = (
        b.vecs("kt", &kt, k_len)?,
        b.vecs("vt", &vt, k_len)?,
        b.vecs("k", k, k_len)?,
    );
    let (alse, adelta) = (
        b.words("lse", lse, q_rows)?,
        b.words("delta", &delta, q_rows)?,
    );
    let adq = b.vecs("dq", &dq, q_len)?;
    launch::launch_on!(attention_dq_blocked_kernel::<F>, client, g, vs; aq, adout, akt, avt, ak, alse, adelta, adq,
        blocks, args(), g.steps, s.head_dim);

    let qt = transpose_heads::<F>(client, q, s.batch, s.tq, s.heads * s.head_dim)?;
    let gt = transpose_heads::<F>(client, dout, s.batch, s.tq, s.heads * s.head_dim)?;
    let dk = client.empty(k_len * F::DTYPE.size());
    let dvh = client.empty(k_len * F::DTYPE.size());
    let blocks = s.batch * s.kv_heads * s.tk.div_ceil(QB);
    let g = launch::elemwise(&info, blocks);
    let b = launch::VecBuffers::new("attention_dkv_blocked", vs, F::DTYPE.size());
    let (ak, av) = (b.scalars("k", k, k_len)?, b.scalars("v", v, k_len)?);
    let (aqt, agt) = (b.vecs("qt", &qt, q_len)?, b.vecs("gt", &gt, q_len)?);
    let (aq, adout) = (b.vecs("q", q, q_len)?, b.vecs("dout", dout, q_len)?);
    let (alse, adelta) = (
        b.word_vecs("lse", lse, q_rows)?,
        b.word_vecs("delta", &delta, q_rows)?,
    );
    let (adk, adv) = (b.vecs("dk", &dk, k_len)?, b.vecs("dvv", &dvh, k_len)?);
    launch::launch_on!(attention_dkv_blocked_kernel::<F>, client, g, vs; ak, av, aqt, agt, aq, adout, alse, adelta, adk, adv,
        blocks, args(), g.steps, s.head_dim);
    Ok((dq, dk, dvh))
}
