//! Key-blocked causal attention forward, the CPU runtime's fast path.
//!
//! The row kernel of [`super::forward`] gives each unit one query row and reduces every score
//! across the lanes of a vector (a dot product along `D`); on a CPU those horizontal sums and
//! their serial dependencies dominate. Here a unit owns a block of [`QB`] query rows of one
//! head and walks the keys `N` at a time (`N` = the vector width) with the keys along the
//! lanes: the scores of a key block are `N`-wide vectors built from K transposed to
//! (B, Hkv, D, Tk), with `QB` independent accumulators, so there is no horizontal sum in the
//! inner loop. The online softmax (running max `m`, sum `l`) is updated once per key block and
//! the weighted values accumulate from V's rows as they are. Keys past a row's causal limit, or
//! before its window, get a score of about -1e30, so their probability is exactly zero; key
//! blocks wholly before the window of every row of a unit are not visited at all.
//!
//! Needs `Tq`, `Tk` and `D` to be multiples of `N` (the caller picks `N` so; `N` = 1 works for
//! any shape, only slower) and K, V in the contiguous layout.

use cubecl::prelude::*;

use super::{query_row, AttentionShape, AttnArgs};
use crate::device::DeviceInfo;
use crate::dtype::KernelFloat;
use crate::launch::{self, item_index, lane_max, lane_sum};
use crate::{Client, Handle, Result};

/// Query rows per unit of the forward (independent accumulators in the inner loops; 8 was
/// about 10% faster than 4 on the reference CPU).
///
/// Only the loops over `QB` and the lanes are unrolled: unrolling the loops over `D` as well
/// made the backward take 23 s to JIT-compile at D = 128 (and run 70% slower), against 0.8 s.
const QB: usize = 8;

/// Lane indices `0, 1, ..., N - 1` as floats.
#[cube]
pub(super) fn iota<N: Size>() -> Vector<f32, N> {
    let mut v = Vector::<f32, N>::new(0.0);
    let mut x = 0.0f32;
    #[unroll]
    for l in 0..N::value() {
        v.insert(l, x);
        x += 1.0;
    }
    v
}

/// 0 where `lanes + lead >= 0`, about -1e30 (a score whose exponential is zero) elsewhere:
/// the causal mask of a block, with `lanes` the lane indices (or their negatives) and `lead`
/// the offset that makes a lane's value its distance inside the limit.
#[cube]
pub(super) fn causal_penalty<N: Size>(lanes: Vector<f32, N>, lead: f32) -> Vector<f32, N> {
    min(lanes + Vector::new(lead), Vector::new(0.0)) * Vector::new(1.0e30)
}

/// Rows `r0..r0 + rows` of head `h`, batch `b` of `x` (B, T, heads, d) as f32, `d` apart, each
/// times `scale` when `scaled`; rows past `t` repeat the last one (their results are not
/// written).
#[cube]
#[allow(clippy::too_many_arguments)]
pub(super) fn load_row_block<F: Float>(
    x: &[F],
    r0: usize,
    t: usize,
    heads: usize,
    b: usize,
    h: usize,
    scale: f32,
    #[comptime] scaled: bool,
    #[comptime] rows: usize,
    #[comptime] d: usize,
) -> Array<f32> {
    let mut out = Array::<f32>::new(comptime![rows * d]);
    #[unroll]
    for qi in 0..rows {
        let i = min(r0 + qi, t - 1);
        let base = ((b * t + i) * heads + h) * d;
        for dd in 0..d {
            if comptime![scaled] {
                out[qi * d + dd] = f32::cast_from(x[base + dd]) * scale;
            } else {
                out[qi * d + dd] = f32::cast_from(x[base + dd]);
            }
        }
    }
    out
}

/// An array of `len` zero vectors.
#[cube]
pub(super) fn zeros<N: Size>(#[comptime] len: usize) -> Array<Vector<f32, N>> {
    let mut out = Array::<Vector<f32, N>>::new(len);
    for x in 0..len {
        out[x] = Vector::new(0.0);
    }
    out
}

/// `o` and `lse` of query rows `i0..i0 + QB` (clamped to `tq`) of head `h`, batch `b`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn attention_forward_blocked_kernel<F: Float, N: Size>(
    q: &[F],
    kt: &[Vector<F, N>],
    v: &[Vector<F, N>],
    o: &mut [Vector<F, N>],
    lse: &mut [f32],
    blocks: usize,
    a: AttnArgs,
    steps: usize,
    #[comptime] d: usize,
) {
    let (tq, tk, heads, kv_heads) = (a.tq, a.tk, a.heads, a.kv_heads);
    let n = N::value();
    let dv = comptime![d / n];
    let q_blocks = tq.div_ceil(QB);
    // Key lane l of a block starting at j is visible to position p when p - j - l >= 0, and
    // inside the window when j + l + window - p >= 0.
    let lanes = iota::<N>();
    let neg_lanes = Vector::<f32, N>::new(0.0) - lanes;
    for s in 0..steps {
        let r = item_index(s, steps, false);
        if r < blocks {
            let (qb, bh, h, b) = query_row(r, q_blocks, heads);
            let (i0, hk, offset) = (qb * QB, h / a.group, tk - tq);
            // Scaled query rows (rows past tq repeat the last one and are not written).
            let qs = load_row_block::<F>(q, i0, tq, heads, b, h, a.scale, true, QB, d);
            let mut acc = zeros::<N>(comptime![QB * dv]);
            let mut m = Array::<f32>::new(QB);
            let mut l = Array::<f32>::new(QB);
            #[unroll]
            for qi in 0..QB {
                m[qi] = f32::new(f32::NEG_INFINITY);
                l[qi] = 0.0;
            }
            let mut pa = Array::<f32>::new(comptime![QB * n]);
            let mut corr = Array::<f32>::new(QB);
            let tkv = tk / n;
            let kt_base = (b * kv_heads + hk) * d * tkv;
            let row_v = kv_heads * dv;
            let v_base = b * tk * row_v + hk * dv;
            // Keys first..=last: from the window start of the block's first row to the limit of
            // its last valid row. Key blocks wholly outside the window are skipped.
            let last = min(i0 + QB, tq) - 1 + offset;
            let key_blocks = last / n + 1;
            let first_block = (i0 + offset).saturating_sub(a.window) / n;
            for jb in first_block..key_blocks {
                let j = jb * n;
                let mut sc = Array::<Vector<f32, N>>::new(QB);
                #[unroll]
                for qi in 0..QB {
                    sc[qi] = Vector::new(0.0);
                }
                for dd in 0..d {
                    let kv = Vector::<f32, N>::cast_from(kt[kt_base + dd * tkv + jb]);
                    #[unroll]
                    for qi in 0..QB {
                        sc[qi] += Vector::new(qs[qi * d + dd]) * kv;
                    }
                }
                let diagonal = j + n > i0 + offset + 1;
                let windowed = j + a.window < last;
                #[unroll]
                for qi in 0..QB {
                    let mut s_row = sc[qi];
                    if diagonal {
                        let lead = f32::cast_from(i0 + qi + offset) - f32::cast_from(j);
                        s_row += causal_penalty::<N>(neg_lanes, lead);
                    }
                    if windowed {
                        let lead = f32::cast_from(j + a.window) - f32::cast_from(i0 + qi + offset);
                        s_row += causal_penalty::<N>(lanes, lead);
                    }
                    let m_new = max(m[qi], lane_max::<N>(s_row));
                    corr[qi] = (m[qi] - m_new).exp();
                    let p = (s_row - Vector::new(m_new)).exp();
                    l[qi] = l[qi] * corr[qi] + lane_sum::<N>(p);
                    m[qi] = m_new;
                    #[unroll]
                    for jj in 0..n {
                        pa[qi * n + jj] = p.extract(jj);
                    }
                }
                for x in 0..dv {
                    let mut a = Array::<Vector<f32, N>>::new(QB);
                    #[unroll]
                    for qi in 0..QB {
                        a[qi] = acc[qi * dv + x] * Vector::new(corr[qi]);
                    }
                    #[unroll]
                    for jj in 0..n {
                        // Keys past tk only occur masked (probability 0); read a valid row.
                        let key = min(j + jj, tk - 1);
                        let vv = Vector::<f32, N>::cast_from(v[v_base + key * row_v + x]);
                        #[unroll]
                        for qi in 0..QB {
                            a[qi] += Vector::new(pa[qi * n + jj]) * vv;
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
                    let inv = Vector::<f32, N>::new(1.0 / l[qi]);
                    for x in 0..dv {
                        o[base + x] = Vector::cast_from(acc[qi * dv + x] * inv);
                    }
                    lse[bh * tq + i] = m[qi] + l[qi].ln();
                }
            }
        }
    }
}

/// The vector width of the key-blocked kernels for a shape: the widest that divides `D`, `Tq`
/// and `Tk`.
pub(super) fn blocked_vector_size<F: KernelFloat>(client: &Client, s: &AttentionShape) -> usize {
    launch::vector_size(client, F::DTYPE.size(), &[s.head_dim, s.tq, s.tk])
}

/// K (B, Tk, Hkv, D) transposed to (B, Hkv, D, Tk).
pub(super) fn transpose_heads<F: KernelFloat>(
    client: &Client,
    x: &Handle,
    batch: usize,
    t: usize,
    row: usize,
) -> Result<Handle> {
    crate::layout::transpose::<F>(client, x, batch, t, row)
}

/// [`super::attention_forward`] with the key-blocked kernel, for contiguous q, k, v.
pub fn attention_forward_blocked<F: KernelFloat>(
    client: &Client,
    [q, k, v]: [&Handle; 3],
    s: &AttentionShape,
) -> Result<(Handle, Handle)> {
    let kv = super::KvLayout::contiguous(s);
    s.check_qkv::<F>("attention", [q, k, v], &kv)?;
    let vs = blocked_vector_size::<F>(client, s);
    let kt = transpose_heads::<F>(client, k, s.batch, s.tk, kv.row_stride)?;
    let (rows, head_dim) = (s.q_rows(), s.head_dim);
    let o = client.empty(rows * head_dim * F::DTYPE.size());
    let lse = client.empty(rows * 4);
    let blocks = s.batch * s.heads * s.tq.div_ceil(QB);
    let g = launch::elemwise(&DeviceInfo::of(client), blocks);
    let kv_len = s.k_rows() * head_dim;
    let b = launch::VecBuffers::new("attention_forward_blocked", vs, F::DTYPE.size());
    let (aq, akt) = (
        b.scalars("q", q, rows * head_dim)?,
        b.vecs("kt", &kt, kv_len)?,
    );
    let (av, ao) = (b.vecs("v", v, kv_len)?, b.vecs("o", &o, rows * head_dim)?);
    let alse = b.words("lse", &lse, rows)?;
    launch::launch_on!(attention_forward_blocked_kernel::<F>, client, g, vs; aq, akt, av, ao, alse,
        blocks, s.args(&kv, vs), g.steps, head_dim);
    Ok((o, lse))
}
