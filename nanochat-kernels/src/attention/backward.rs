//! Flash-style causal attention backward, recomputing probabilities from the saved logsumexp
//! (no T x T matrix):
//! - `delta[b,h,i] = dout_i . out_i`;
//! - dQ: one unit per query row, streaming the keys it attends to;
//! - dK, dV: one unit per key row, streaming every query (of every head of its group) that
//!   attends to it; no atomics, every gradient row is written once.
//!
//! With `p_ij = exp(scale q_i.k_j - lse_i)`, `dp_ij = dout_i.v_j` and
//! `ds_ij = p_ij (dp_ij - delta_i)`: `dq_i = scale sum_j ds_ij k_j`,
//! `dk_j = scale sum_i ds_ij q_i`, `dv_j = sum_i p_ij dout_i`.

use cubecl::prelude::*;

use super::forward::scaled_row_and_acc;
use super::{query_row, AttentionShape, AttnArgs, KvLayout};
use crate::device::DeviceInfo;
use crate::dtype::KernelFloat;
use crate::launch::{self, item_index, lane_sum};
use crate::{Client, Handle, Result};

#[cube]
fn dot<F: Float, N: Size>(
    a: &Array<Vector<f32, N>>,
    b: &[Vector<F, N>],
    base: usize,
    #[comptime] dv: usize,
) -> f32 {
    let mut sv = Vector::<f32, N>::new(0.0);
    #[unroll]
    for d in 0..dv {
        sv += a[d] * Vector::<f32, N>::cast_from(b[base + d]);
    }
    lane_sum::<N>(sv)
}

#[cube]
fn load<F: Float, N: Size>(
    src: &[Vector<F, N>],
    base: usize,
    #[comptime] dv: usize,
) -> Array<Vector<f32, N>> {
    let mut out = Array::<Vector<f32, N>>::new(dv);
    #[unroll]
    for d in 0..dv {
        out[d] = Vector::<f32, N>::cast_from(src[base + d]);
    }
    out
}

#[cube(launch)]
fn attention_delta_kernel<F: Float, N: Size>(
    out: &[Vector<F, N>],
    dout: &[Vector<F, N>],
    delta: &mut [f32],
    rows: usize,
    tq: usize,
    heads: usize,
    steps: usize,
    #[comptime] dv: usize,
) {
    for s in 0..steps {
        let r = item_index(s, steps, false);
        if r < rows {
            let (i, _, h, b) = query_row(r, tq, heads);
            let base = ((b * tq + i) * heads + h) * dv;
            let o = load::<F, N>(out, base, dv);
            delta[r] = dot::<F, N>(&o, dout, base, dv);
        }
    }
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn attention_dq_kernel<F: Float, N: Size>(
    q: &[Vector<F, N>],
    k: &[Vector<F, N>],
    v: &[Vector<F, N>],
    dout: &[Vector<F, N>],
    lse: &[f32],
    delta: &[f32],
    dq: &mut [Vector<F, N>],
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
            let kv_base = (b * a.tk * a.kv_heads + h / a.group) * dv;
            let kv_row = a.kv_heads * dv;
            let (qr, mut acc) = scaled_row_and_acc::<F, N>(q, q_base, a.scale, dv);
            let g = load::<F, N>(dout, q_base, dv);
            let (l, dl) = (lse[r], delta[r]);
            let limit = i + a.tk - a.tq + 1;
            let first = (limit - 1).saturating_sub(a.window);
            for j in first..limit {
                let kb = kv_base + j * kv_row;
                let p = (dot::<F, N>(&qr, k, kb, dv) - l).exp();
                let ds = Vector::<f32, N>::new(p * (dot::<F, N>(&g, v, kb, dv) - dl));
                #[unroll]
                for d in 0..dv {
                    acc[d] += ds * Vector::<f32, N>::cast_from(k[kb + d]);
                }
            }
            #[unroll]
            for d in 0..dv {
                dq[q_base + d] = Vector::cast_from(acc[d] * Vector::new(a.scale));
            }
        }
    }
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn attention_dkv_kernel<F: Float, N: Size>(
    q: &[Vector<F, N>],
    k: &[Vector<F, N>],
    v: &[Vector<F, N>],
    dout: &[Vector<F, N>],
    lse: &[f32],
    delta: &[f32],
    dk: &mut [Vector<F, N>],
    dvv: &mut [Vector<F, N>],
    rows: usize,
    a: AttnArgs,
    steps: usize,
    #[comptime] dv: usize,
) {
    let (tq, tk, heads, kv_heads) = (a.tq, a.tk, a.heads, a.kv_heads);
    for s in 0..steps {
        let r = item_index(s, steps, false);
        if r < rows {
            // Rows ordered (b, hk, j).
            let j = r % tk;
            let bhk = r / tk;
            let hk = bhk % kv_heads;
            let b = bhk / kv_heads;
            let kv_base = ((b * tk + j) * kv_heads + hk) * dv;
            let kr = load::<F, N>(k, kv_base, dv);
            let vr = load::<F, N>(v, kv_base, dv);
            let mut acc_k = Array::<Vector<f32, N>>::new(dv);
            let mut acc_v = Array::<Vector<f32, N>>::new(dv);
            #[unroll]
            for d in 0..dv {
                acc_k[d] = Vector::new(0.0);
                acc_v[d] = Vector::new(0.0);
            }
            // Query i attends key j when j <= i + tk - tq <= j + window.
            let offset = tk - tq;
            let first = j.saturating_sub(offset);
            let end = min((j + a.window + 1).saturating_sub(offset), tq);
            for hh in 0..a.group {
                let h = hk * a.group + hh;
                let stat_base = (b * heads + h) * tq;
                for i in first..end {
                    let q_base = ((b * tq + i) * heads + h) * dv;
                    let p = (dot::<F, N>(&kr, q, q_base, dv) * a.scale - lse[stat_base + i]).exp();
                    let ds = Vector::<f32, N>::new(
                        p * (dot::<F, N>(&vr, dout, q_base, dv) - delta[stat_base + i]),
                    );
                    let pv = Vector::<f32, N>::new(p);
                    #[unroll]
                    for d in 0..dv {
                        acc_v[d] += pv * Vector::<f32, N>::cast_from(dout[q_base + d]);
                        acc_k[d] += ds * Vector::<f32, N>::cast_from(q[q_base + d]);
                    }
                }
            }
            #[unroll]
            for d in 0..dv {
                dk[kv_base + d] = Vector::cast_from(acc_k[d] * Vector::new(a.scale));
                dvv[kv_base + d] = Vector::cast_from(acc_v[d]);
            }
        }
    }
}

/// The tensors an attention backward reads: contiguous `q` (B, Tq, H, D), `k` and `v`
/// (B, Tk, Hkv, D), the forward's `out` (like q) and `lse` (B, H, Tq, f32), and the incoming
/// gradient `dout` (like q).
#[derive(Clone, Copy, Debug)]
pub struct BackwardInputs<'a> {
    /// Queries (B, Tq, H, D).
    pub q: &'a Handle,
    /// Keys (B, Tk, Hkv, D).
    pub k: &'a Handle,
    /// Values (B, Tk, Hkv, D).
    pub v: &'a Handle,
    /// The forward's output (B, Tq, H, D).
    pub out: &'a Handle,
    /// The forward's logsumexp (B, H, Tq), f32.
    pub lse: &'a Handle,
    /// The gradient of the output (B, Tq, H, D).
    pub dout: &'a Handle,
}

impl<'a> BackwardInputs<'a> {
    /// The inputs of the backward of a forward over `q`, `k`, `v` that returned `(out, lse)`,
    /// with the gradient `dout` of its output.
    pub fn new(
        [q, k, v]: [&'a Handle; 3],
        (out, lse): (&'a Handle, &'a Handle),
        dout: &'a Handle,
    ) -> Self {
        BackwardInputs {
            q,
            k,
            v,
            out,
            lse,
            dout,
        }
    }

    /// The argument checks of the backward (contiguous q, k, v; out, dout like q; lse
    /// (B, H, Tq)).
    pub(super) fn check<F: KernelFloat>(&self, op: &'static str, s: &AttentionShape) -> Result<()> {
        s.validate(op)?;
        let q_dims = [s.batch, s.tq, s.heads, s.head_dim];
        for (arg, h) in [("q", self.q), ("out", self.out), ("dout", self.dout)] {
            launch::check_size(op, arg, h, &q_dims, F::DTYPE)?;
        }
        launch::check_words(op, "lse", self.lse, &[s.batch, s.heads, s.tq])?;
        KvLayout::contiguous(s).check::<F>(op, self.k, self.v, s)
    }
}

/// `delta[b, h, i] = dout_i . out_i` (B, H, Tq), f32.
pub(super) fn attention_delta<F: KernelFloat>(
    client: &Client,
    out: &Handle,
    dout: &Handle,
    s: &AttentionShape,
) -> Result<Handle> {
    let (q_rows, head_dim) = (s.q_rows(), s.head_dim);
    let vs = launch::vector_size(client, F::DTYPE.size(), &[head_dim]);
    let delta = client.empty(q_rows * 4);
    let g = launch::elemwise(&DeviceInfo::of(client), q_rows);
    let b = launch::VecBuffers::new("attention_delta", vs, F::DTYPE.size());
    let q_elems = q_rows * head_dim;
    let (aout, adout) = (b.vecs("out", out, q_elems)?, b.vecs("dout", dout, q_elems)?);
    let adelta = b.words("delta", &delta, q_rows)?;
    launch::launch_on!(attention_delta_kernel::<F>, client, g, vs; aout, adout, adelta, q_rows, s.tq, s.heads, g.steps, head_dim / vs);
    Ok(delta)
}

/// Gradients (dq, dk, dv) of [`super::attention_forward`] for contiguous inputs `x`, with the
/// row kernels (one unit per query row for dQ, per key row for dK and dV).
pub fn attention_backward_rows<F: KernelFloat>(
    client: &Client,
    x: &BackwardInputs,
    s: &AttentionShape,
) -> Result<(Handle, Handle, Handle)> {
    x.check::<F>("attention_backward", s)?;
    let (q, k, v, lse, dout) = (x.q, x.k, x.v, x.lse, x.dout);
    let info = DeviceInfo::of(client);
    let vs = launch::vector_size(client, F::DTYPE.size(), &[s.head_dim]);
    let (q_rows, k_rows) = (s.q_rows(), s.k_rows());
    let (q_len, k_len) = (q_rows * s.head_dim, k_rows * s.head_dim);
    let delta = attention_delta::<F>(client, x.out, dout, s)?;
    let args = || s.args(&KvLayout::contiguous(s), vs);
    let g = launch::elemwise(&info, q_rows);
    let dq = client.empty(q_len * F::DTYPE.size());
    let b = launch::VecBuffers::new("attention_dq", vs, F::DTYPE.size());
    let (aq, ak, av) = (
        b.vecs("q", q, q_len)?,
        b.vecs("k", k, k_len)?,
        b.vecs("v", v, k_len)?,
    );
    let (adout, alse) = (b.vecs("dout", dout, q_len)?, b.words("lse", lse, q_rows)?);
    let (adelta, adq) = (b.words("delta", &delta, q_rows)?, b.vecs("dq", &dq, q_len)?);
    launch::launch_on!(attention_dq_kernel::<F>, client, g, vs; aq, ak, av, adout, alse, adelta, adq,
        q_rows, args(), g.steps, s.head_dim / vs);
    let dk = client.empty(k_len * F::DTYPE.size());
    let dvh = client.empty(k_len * F::DTYPE.size());
    let g = launch::elemwise(&info, k_rows);
    let b = launch::VecBuffers::new("attention_dkv", vs, F::DTYPE.size());
    let (aq, ak, av) = (
        b.vecs("q", q, q_len)?,
        b.vecs("k", k, k_len)?,
        b.vecs("v", v, k_len)?,
    );
    let (adout, alse) = (b.vecs("dout", dout, q_len)?, b.words("lse", lse, q_rows)?);
    let adelta = b.words("delta", &delta, q_rows)?;
    let (adk, adv) = (b.vecs("dk", &dk, k_len)?, b.vecs("dvv", &dvh, k_len)?);
    launch::launch_on!(attention_dkv_kernel::<F>, client, g, vs; aq, ak, av, adout, alse, adelta, adk, adv,
        k_rows, args(), g.steps, s.head_dim / vs);
    Ok((dq, dk, dvh))
}
