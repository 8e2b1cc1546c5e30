//! Decode path: one new query per (batch, head) against a KV cache holding `len` positions.
//! The units of a cube split the cached keys, each keeping a partial online softmax (max, sum,
//! weighted values) in registers; the partials are merged through shared memory. This keeps a
//! GPU busy even when batch x heads is small, which the one-row-per-unit forward would not.

use cubecl::prelude::*;

use super::forward::{attend, scaled_row_and_acc};
use super::{AttentionShape, AttnArgs, KvLayout};
use crate::device::DeviceInfo;
use crate::dtype::KernelFloat;
use crate::launch::{self, grid_1d};
use crate::{Client, Handle, KernelError, Result};

#[cube(launch)]
fn attention_decode_kernel<F: Float, N: Size>(
    q: &[Vector<F, N>],
    k: &[Vector<F, N>],
    v: &[Vector<F, N>],
    o: &mut [Vector<F, N>],
    a: AttnArgs,
    #[comptime] dv: usize,
    #[comptime] units: usize,
) {
    let bh = CUBE_POS_Y as usize * CUBE_COUNT_X as usize + CUBE_POS_X as usize;
    let h = bh % a.heads;
    let b = bh / a.heads;
    let u = UNIT_POS_X as usize;
    let q_base = bh * dv;
    let kv_base = b * a.kv_batch_stride + (h / a.group) * dv;
    let (qr, mut acc) = scaled_row_and_acc::<F, N>(q, q_base, a.scale, dv);
    let mut m = f32::new(f32::NEG_INFINITY);
    let mut l = 0.0f32;
    // The window's keys: positions tk - 1 - window ..= tk - 1.
    let mut j = (a.tk - 1).saturating_sub(a.window) + u;
    while j < a.tk {
        let (m2, l2) = attend::<F, N>(&qr, k, v, kv_base + j * a.kv_row_stride, &mut acc, m, l, dv);
        m = m2;
        l = l2;
        j += units;
    }
    let mut sm_m = Shared::<[f32]>::new_slice(units);
    let mut sm_l = Shared::<[f32]>::new_slice(units);
    let mut sm_o = Shared::<[Vector<f32, N>]>::new_slice(units * dv);
    sm_m[u] = m;
    sm_l[u] = l;
    #[unroll]
    for d in 0..dv {
        sm_o[u * dv + d] = acc[d];
    }
    sync_cube();
    let mut mm = f32::new(f32::NEG_INFINITY);
    for w in 0..units {
        mm = max(mm, sm_m[w]);
    }
    let mut total = 0.0f32;
    for w in 0..units {
        total += sm_l[w] * (sm_m[w] - mm).exp();
    }
    let mut d = u;
    while d < dv {
        let mut sum = Vector::<f32, N>::new(0.0);
        for w in 0..units {
            sum += sm_o[w * dv + d] * Vector::new((sm_m[w] - mm).exp());
        }
        o[q_base + d] = Vector::cast_from(sum * Vector::new(1.0 / total));
        d += units;
    }
}

/// One query per (batch, head): `q` (B, 1, H, D) against the first `len = s.tk` positions of a
/// KV cache laid out as `kv`. Returns the output (B, 1, H, D).
pub fn attention_decode<F: KernelFloat>(
    client: &Client,
    q: &Handle,
    k: &Handle,
    v: &Handle,
    s: &AttentionShape,
    kv: &KvLayout,
) -> Result<Handle> {
    s.validate("attention_decode")?;
    if s.tq != 1 {
        return Err(KernelError::unsupported(
            "attention_decode",
            format!("decodes one query, got Tq = {}", s.tq),
        ));
    }
    s.check_qkv::<F>("attention_decode", [q, k, v], kv)?;
    let info = DeviceInfo::of(client);
    let units = if info.has_planes() {
        64.min(info.max_units_per_cube as usize)
    } else {
        info.max_units_per_cube as usize
    };
    // At most one unit per key in the window.
    let units = units.clamp(1, s.tk.min(s.kernel_window() + 1).max(1));
    let vs = kv.vector_size::<F>(client, s);
    let q_len = s.q_rows() * s.head_dim;
    let o = client.empty(q_len * F::DTYPE.size());
    let b = launch::VecBuffers::new("attention_decode", vs, F::DTYPE.size());
    let (aq, ao) = (b.vecs("q", q, q_len)?, b.vecs("o", &o, q_len)?);
    let (ak, av) = (b.vecs("k", k, kv.len(s))?, b.vecs("v", v, kv.len(s))?);
    let (count, dim) = (grid_1d(s.batch * s.heads), CubeDim::new_1d(units as u32));
    attention_decode_kernel::launch::<F>(
        client,
        count,
        dim,
        vs,
        aq,
        ak,
        av,
        ao,
        s.args(kv, vs),
        s.head_dim / vs,
        units,
    );
    Ok(o)
}
