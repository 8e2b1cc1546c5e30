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

use super::blocked::{blocked_vector_size, causal_penalty, iota, transpose_heads};
use super::AttentionShape;
use crate::device::DeviceInfo;
use crate::dtype::KernelFloat;
use crate::launch::{self, item_index};
use crate::{Client, Handle, Result};

/// Rows (queries for dQ, keys for dK and dV) per unit: 8 was faster than 4 or 16 on the
/// reference CPU (each vector of K^T, V^T, Q^T or dout^T loaded serves eight accumulators).
const QB: usize = 8;

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
    tq: usize,
    tk: usize,
    heads: usize,
    kv_heads: usize,
    group: usize,
    window: usize,
    scale: f32,
    steps: usize,
    #[comptime] d: usize,
) {
    let n = N::value();
    let dv = comptime![d / n];
    let q_blocks = tq.div_ceil(QB);
    let lanes = iota::<N>();
    let neg_lanes = Vector::<f32, N>::new(0.0) - lanes;
    for s in 0..steps {
        let r = item_index(s, steps, false);
        if r < blocks {
            let i0 = (r % q_blocks) * QB;
            let bh = r / q_blocks;
            let h = bh % heads;
            let b = bh / heads;
            let hk = h / group;
            let offset = tk - tq;
            let mut qs = Array::<f32>::new(comptime![QB * d]);
            let mut gs = Array::<f32>::new(comptime![QB * d]);
            let mut row_lse = Array::<f32>::new(QB);
            let mut row_delta = Array::<f32>::new(QB);
            #[unroll]
            for qi in 0..QB {
                let i = min(i0 + qi, tq - 1);
                let base = ((b * tq + i) * heads + h) * d;
                for dd in 0..d {
                    qs[qi * d + dd] = f32::cast_from(q[base + dd]) * scale;
                    gs[qi * d + dd] = f32::cast_from(dout[base + dd]);
                }
                row_lse[qi] = lse[bh * tq + i];
                row_delta[qi] = delta[bh * tq + i];
            }
            let mut acc = Array::<Vector<f32, N>>::new(comptime![QB * dv]);
            for x in 0..QB * dv {
                acc[x] = Vector::new(0.0);
            }
            let mut da = Array::<f32>::new(comptime![QB * n]);
            let tkv = tk / n;
            let t_base = (b * kv_heads + hk) * d * tkv;
            let row_k = kv_heads * dv;
            let k_base = b * tk * row_k + hk * dv;
            let last = min(i0 + QB, tq) - 1 + offset;
            let key_blocks = last / n + 1;
            let first_block = (i0 + offset).saturating_sub(window) / n;
            for jb in first_block..key_blocks {
                let j = jb * n;
                let mut sc = Array::<Vector<f32, N>>::new(QB);
                let mut dp = Array::<Vector<f32, N>>::new(QB);
                #[unroll]
                for qi in 0..QB {
                    sc[qi] = Vector::new(0.0);
                    dp[qi] = Vector::new(0.0);
                }
                for dd in 0..d {
                    let kv = Vector::<f32, N>::cast_from(kt[t_base + dd * tkv + jb]);
                    let vv = Vector::<f32, N>::cast_from(vt[t_base + dd * tkv + jb]);
                    #[unroll]
                    for qi in 0..QB {
                        sc[qi] += Vector::new(qs[qi * d + dd]) * kv;
                        dp[qi] += Vector::new(gs[qi * d + dd]) * vv;
                    }
                }
                let diagonal = j + n > i0 + offset + 1;
                let windowed = j + window < last;
                #[unroll]
                for qi in 0..QB {
                    let mut s_row = sc[qi] - Vector::new(row_lse[qi]);
                    if diagonal {
                        let lead = f32::cast_from(i0 + qi + offset) - f32::cast_from(j);
                        s_row += causal_penalty::<N>(neg_lanes, lead);
                    }
                    if windowed {
                        let lead = f32::cast_from(j + window) - f32::cast_from(i0 + qi + offset);
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
                        dq[base + x] = Vector::cast_from(acc[qi * dv + x] * Vector::new(scale));
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
    tq: usize,
    tk: usize,
    heads: usize,
    kv_heads: usize,
    group: usize,
    window: usize,
    scale: f32,
    steps: usize,
    #[comptime] d: usize,
) {
    let n = N::value();
    let dv = comptime![d / n];
    let k_blocks = tk.div_ceil(QB);
    let lanes = iota::<N>();
    let neg_lanes = Vector::<f32, N>::new(0.0) - lanes;
    for s in 0..steps {
        let r = item_index(s, steps, false);
        if r < blocks {
            // Blocks ordered (b, hk, key block).
            let j0 = (r % k_blocks) * QB;
            let bhk = r / k_blocks;
            let hk = bhk % kv_heads;
            let b = bhk / kv_heads;
            let offset = tk - tq;
            let mut ks = Array::<f32>::new(comptime![QB * d]);
            let mut vs = Array::<f32>::new(comptime![QB * d]);
            #[unroll]
            for kj in 0..QB {
                let j = min(j0 + kj, tk - 1);
                let base = ((b * tk + j) * kv_heads + hk) * d;
                for dd in 0..d {
                    ks[kj * d + dd] = f32::cast_from(k[base + dd]) * scale;
                    vs[kj * d + dd] = f32::cast_from(v[base + dd]);
                }
            }
            let mut acc_k = Array::<Vector<f32, N>>::new(comptime![QB * dv]);
            let mut acc_v = Array::<Vector<f32, N>>::new(comptime![QB * dv]);
            for x in 0..QB * dv {
                acc_k[x] = Vector::new(0.0);
                acc_v[x] = Vector::new(0.0);
            }
            let mut pa = Array::<f32>::new(comptime![QB * n]);
            let mut da = Array::<f32>::new(comptime![QB * n]);
            let tqv = tq / n;
            // Query i (position i + offset) sees key j when j <= i + offset <= j + window:
            // query blocks from the first that sees j0 to the last that sees the unit's last key.
            let first = j0.saturating_sub(offset);
            let j_last = min(j0 + QB, tk) - 1;
            let end_blocks = min(
                (j_last + window + 1).saturating_sub(offset).div_ceil(n),
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
                    let mut sc = Array::<Vector<f32, N>>::new(QB);
                    let mut dp = Array::<Vector<f32, N>>::new(QB);
                    #[unroll]
                    for kj in 0..QB {
                        sc[kj] = Vector::new(0.0);
                        dp[kj] = Vector::new(0.0);
                    }
                    for dd in 0..d {
                        let qv = Vector::<f32, N>::cast_from(qt[t_base + dd * tqv + ib]);
                        let gv = Vector::<f32, N>::cast_from(gt[t_base + dd * tqv + ib]);
                        #[unroll]
                        for kj in 0..QB {
                            sc[kj] += Vector::new(ks[kj * d + dd]) * qv;
                            dp[kj] += Vector::new(vs[kj * d + dd]) * gv;
                        }
                    }
                    let l = lse[stat_base + ib];
                    let dl = delta[stat_base + ib];
                    let diagonal = i0 + offset < j0 + QB - 1;
                    let windowed = i0 + n - 1 + offset > j0 + window;
                    #[unroll]
                    for kj in 0..QB {
                        let mut s_row = sc[kj] - l;
                        if diagonal {
                            let lead = f32::cast_from(i0 + offset) - f32::cast_from(j0 + kj);
                            s_row += causal_penalty::<N>(lanes, lead);
                        }
                        if windowed {
                            let lead =
                                f32::cast_from(j0 + kj + window) - f32::cast_from(i0 + offset);
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
                        dk[base + x] = Vector::cast_from(acc_k[kj * dv + x] * Vector::new(scale));
                        dvv[base + x] = Vector::cast_from(acc_v[kj * dv + x]);
                    }
                }
            }
        }
    }
}

/// [`super::attention_backward`] with the key-blocked kernels.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward_blocked<F: KernelFloat>(
    client: &Client,
    q: &Handle,
    k: &Handle,
    v: &Handle,
    out: &Handle,
    lse: &Handle,
    dout: &Handle,
    s: &AttentionShape,
) -> Result<(Handle, Handle, Handle)> {
    let op = "attention_backward";
    super::backward::check_backward_args::<F>(op, q, k, v, out, lse, dout, s)?;
    let AttentionShape {
        batch,
        tq,
        tk,
        heads,
        kv_heads,
        head_dim,
        ..
    } = *s;
    let info = DeviceInfo::of(client);
    let vs = blocked_vector_size::<F>(client, s);
    let q_rows = batch * heads * tq;
    let k_rows = batch * kv_heads * tk;
    let (q_len, k_len) = (q_rows * head_dim, k_rows * head_dim);
    let delta = super::backward::attention_delta::<F>(client, out, dout, s)?;
    let kt = transpose_heads::<F>(client, k, batch, tk, kv_heads * head_dim)?;
    let vt = transpose_heads::<F>(client, v, batch, tk, kv_heads * head_dim)?;
    let group = heads / kv_heads;
    let scale = s.scale() as f32;

    let dq = client.empty(q_len * F::DTYPE.size());
    let blocks = batch * heads * tq.div_ceil(QB);
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
        blocks, tq, tk, heads, kv_heads, group, s.kernel_window(), scale, g.steps, head_dim);

    let qt = transpose_heads::<F>(client, q, batch, tq, heads * head_dim)?;
    let gt = transpose_heads::<F>(client, dout, batch, tq, heads * head_dim)?;
    let dk = client.empty(k_len * F::DTYPE.size());
    let dvh = client.empty(k_len * F::DTYPE.size());
    let blocks = batch * kv_heads * tk.div_ceil(QB);
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
        blocks, tq, tk, heads, kv_heads, group, s.kernel_window(), scale, g.steps, head_dim);
    Ok((dq, dk, dvh))
}
