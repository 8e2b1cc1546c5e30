//! Rotary position embedding in nanochat's half-split layout, on (B, T, H, D) tensors:
//! with `x1 = x[..., :D/2]`, `x2 = x[..., D/2:]` and per-position tables `cos`, `sin` of shape
//! (positions, D/2): `y1 = x1 cos + x2 sin`, `y2 = -x1 sin + x2 cos`.
//! The backward is the transposed rotation, i.e. the same kernel with `sin` negated.
//! `t0` offsets the positions (decoding with a KV cache starts at the cache length).

use cubecl::prelude::*;

use crate::check::{f64s, Check, Ctx};
use crate::device::DeviceInfo;
use crate::dtype::KernelFloat;
use crate::launch::{self, item_index};
use crate::{Client, Handle, KernelError, Result};

/// Shape of a rotary application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotaryShape {
    /// Sequences in the batch.
    pub batch: usize,
    /// Positions per sequence.
    pub seq: usize,
    /// Heads per position.
    pub heads: usize,
    /// Elements per head (even: the two halves are rotated as pairs).
    pub head_dim: usize,
    /// First position (row of the tables) of the sequence.
    pub t0: usize,
    /// Rows in the cos/sin tables.
    pub table_len: usize,
}

#[cube(launch)]
fn rotary_kernel<F: Float>(
    x: &[F],
    cos: &[F],
    sin: &[F],
    y: &mut [F],
    seq: usize,
    heads: usize,
    half: usize,
    t0: usize,
    sign: f32,
    steps: usize,
    #[comptime] blocked: bool,
) {
    let items = x.len() / 2;
    for s in 0..steps {
        let i = item_index(s, steps, blocked);
        if i < items {
            let row = i / half;
            let d = i % half;
            let t = (row / heads) % seq;
            let base = row * 2 * half + d;
            let c = f32::cast_from(cos[(t0 + t) * half + d]);
            let sn = f32::cast_from(sin[(t0 + t) * half + d]) * sign;
            let x1 = f32::cast_from(x[base]);
            let x2 = f32::cast_from(x[base + half]);
            y[base] = F::cast_from(x1 * c + x2 * sn);
            y[base + half] = F::cast_from(x2 * c - x1 * sn);
        }
    }
}

fn launch_rotary<F: KernelFloat>(
    client: &Client,
    x: &Handle,
    cos: &Handle,
    sin: &Handle,
    s: RotaryShape,
    sign: f32,
) -> Result<Handle> {
    let op = if sign > 0.0 {
        "rotary"
    } else {
        "rotary_backward"
    };
    let RotaryShape {
        batch,
        seq,
        heads,
        head_dim,
        t0,
        table_len,
    } = s;
    if head_dim % 2 != 0 {
        return Err(KernelError::unsupported(
            op,
            format!("head_dim {head_dim} is odd"),
        ));
    }
    if t0 + seq > table_len {
        return Err(KernelError::unsupported(
            op,
            format!(
                "positions {t0}..{} exceed the rotary tables' {table_len} rows",
                t0 + seq
            ),
        ));
    }
    let half = head_dim / 2;
    launch::check_size(op, "x", x, &[batch, seq, heads, head_dim], F::DTYPE)?;
    launch::check_size(op, "cos", cos, &[table_len, half], F::DTYPE)?;
    launch::check_size(op, "sin", sin, &[table_len, half], F::DTYPE)?;
    let len = batch * seq * heads * head_dim;
    let y = client.empty(len * F::DTYPE.size());
    if len == 0 {
        return Ok(y);
    }
    let g = launch::elemwise(&DeviceInfo::of(client), len / 2);
    rotary_kernel::launch::<F>(
        client,
        g.cube_count,
        g.cube_dim,
        launch::buffer("rotary", "x", x, len, F::DTYPE.size())?,
        launch::buffer("rotary", "cos", cos, table_len * half, F::DTYPE.size())?,
        launch::buffer("rotary", "sin", sin, table_len * half, F::DTYPE.size())?,
        launch::buffer("rotary", "y", &y, len, F::DTYPE.size())?,
        seq,
        heads,
        half,
        t0,
        sign,
        g.steps,
        g.blocked,
    );
    Ok(y)
}

/// Applies the rotation to `x` (B, T, H, D).
pub fn rotary_forward<F: KernelFloat>(
    client: &Client,
    x: &Handle,
    cos: &Handle,
    sin: &Handle,
    s: RotaryShape,
) -> Result<Handle> {
    launch_rotary::<F>(client, x, cos, sin, s, 1.0)
}

/// Gradient of [`rotary_forward`]: the inverse rotation applied to `dy`.
pub fn rotary_backward<F: KernelFloat>(
    client: &Client,
    dy: &Handle,
    cos: &Handle,
    sin: &Handle,
    s: RotaryShape,
) -> Result<Handle> {
    launch_rotary::<F>(client, dy, cos, sin, s, -1.0)
}

/// nanochat's tables: `inv_freq[i] = base^(-2i/D)`, `angle = t * inv_freq`, computed in f32
/// (as nanochat does) and returned as (cos, sin), each (positions, D/2) row-major.
pub fn rotary_tables(positions: usize, head_dim: usize, base: f32) -> (Vec<f32>, Vec<f32>) {
    let half = head_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| 1.0 / base.powf((2 * i) as f32 / head_dim as f32))
        .collect();
    let mut cos = Vec::with_capacity(positions * half);
    let mut sin = Vec::with_capacity(positions * half);
    for t in 0..positions {
        for f in &inv_freq {
            let a = t as f32 * f;
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    (cos, sin)
}

/// Plain-Rust reference of [`rotary_forward`] (`sign = 1`) and [`rotary_backward`] (`sign = -1`).
pub fn rotary_ref(x: &[f64], cos: &[f64], sin: &[f64], s: RotaryShape, sign: f64) -> Vec<f64> {
    let half = s.head_dim / 2;
    let mut y = vec![0.0; x.len()];
    for row in 0..s.batch * s.seq * s.heads {
        let t = (row / s.heads) % s.seq + s.t0;
        for d in 0..half {
            let (c, sn) = (cos[t * half + d], sign * sin[t * half + d]);
            let (x1, x2) = (x[row * s.head_dim + d], x[row * s.head_dim + d + half]);
            y[row * s.head_dim + d] = x1 * c + x2 * sn;
            y[row * s.head_dim + d + half] = -x1 * sn + x2 * c;
        }
    }
    y
}

pub(crate) fn checks() -> Vec<Check> {
    crate::check::check_list!["rotary" => check_rotary]
}

fn check_rotary(ctx: &mut Ctx) -> Result<()> {
    for (batch, seq, heads, head_dim, t0) in [
        (1, 1, 1, 2, 0),
        (2, 5, 3, 6, 0),
        (1, 7, 2, 34, 3),
        (3, 17, 5, 64, 1),
    ] {
        let s = RotaryShape {
            batch,
            seq,
            heads,
            head_dim,
            t0,
            table_len: t0 + seq + 2,
        };
        let case = format!("{s:?}");
        let (cos, sin) = rotary_tables(s.table_len, head_dim, 10000.0);
        let (cos, sin) = (
            ctx.dtype.decode(&ctx.dtype.encode(&cos)),
            ctx.dtype.decode(&ctx.dtype.encode(&sin)),
        );
        let x = ctx.rand(batch * seq * heads * head_dim, -2.0, 2.0);
        let (hx, hc, hs) = (ctx.upload(&x), ctx.upload(&cos), ctx.upload(&sin));
        let tol = ctx.tol(4.0);
        for (name, sign) in [("rotary.forward", 1.0), ("rotary.backward", -1.0)] {
            let out = crate::with_float!(ctx.dtype, F => if sign > 0.0 {
                rotary_forward::<F>(ctx.client, &hx, &hc, &hs, s)
            } else {
                rotary_backward::<F>(ctx.client, &hx, &hc, &hs, s)
            })?;
            let got = ctx.download(&out)?;
            let want = rotary_ref(&f64s(&x), &f64s(&cos), &f64s(&sin), s, sign);
            ctx.compare(name, &case, &got, &want, tol);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    crate::check::check_tests!(rotary_matches_reference => "rotary");

    #[test]
    fn backward_inverts_forward() {
        use super::*;
        let s = RotaryShape {
            batch: 1,
            seq: 3,
            heads: 2,
            head_dim: 4,
            t0: 0,
            table_len: 3,
        };
        let (c, sn) = rotary_tables(3, 4, 10000.0);
        let (c, sn) = (f64s(&c), f64s(&sn));
        let x: Vec<f64> = (0..24).map(|i| i as f64 * 0.1 - 1.0).collect();
        let back = rotary_ref(&rotary_ref(&x, &c, &sn, s, 1.0), &c, &sn, s, -1.0);
        for (a, b) in x.iter().zip(back) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }
}
