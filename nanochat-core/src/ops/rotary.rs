//! Rotary position embedding on (B, T, H, D) tensors, nanochat's half-split layout.

use nanochat_kernels::rotary::{rotary_backward, rotary_forward, rotary_tables, RotaryShape};
use nanochat_kernels::DType;

use crate::autograd::recording;
use crate::{CoreError, Device, Result, Tape, Tensor};

/// Precomputed cos/sin tables, (positions, head_dim / 2) each, in the model's dtype.
#[derive(Clone, Debug)]
pub struct RotaryTables {
    /// cos of the angles, (positions, head_dim / 2).
    pub cos: Tensor,
    /// sin of the angles, (positions, head_dim / 2).
    pub sin: Tensor,
    /// Head dimension D the tables rotate (D / 2 frequency pairs).
    pub head_dim: usize,
}

impl RotaryTables {
    /// nanochat's tables (`inv_freq = base^(-2i/D)`, computed in f32) for `positions` positions.
    pub fn new(
        device: &Device,
        positions: usize,
        head_dim: usize,
        base: f32,
        dtype: DType,
    ) -> Result<Self> {
        let (cos, sin) = rotary_tables(positions, head_dim, base);
        let half = head_dim / 2;
        Ok(RotaryTables {
            cos: Tensor::from_f32(device, &cos, &[positions, half], dtype)?,
            sin: Tensor::from_f32(device, &sin, &[positions, half], dtype)?,
            head_dim,
        })
    }

    /// How many positions the tables cover (nanochat's `rotary_seq_len`).
    pub fn positions(&self) -> usize {
        self.cos.shape()[0]
    }
}

/// Rotates `x` (B, T, H, D) by the angles of positions `t0..t0 + T`.
pub fn rotary(tape: Option<&Tape>, x: &Tensor, tables: &RotaryTables, t0: usize) -> Result<Tensor> {
    let (batch, seq, heads, head_dim) = x.dims4()?;
    if head_dim != tables.head_dim {
        return Err(CoreError::shape(
            "rotary",
            &[x.shape(), tables.cos.shape()],
            "head_dim differs from the tables'",
        ));
    }
    let s = RotaryShape {
        batch,
        seq,
        heads,
        head_dim,
        t0,
        table_len: tables.positions(),
    };
    let (cos, sin) = (tables.cos.clone(), tables.sin.clone());
    crate::tensor::same_kind("rotary", &[x, &cos])?;
    let y = launch_wrap!(x, x.shape(), F, c => rotary_forward::<F>(c, x.handle(), cos.handle(), sin.handle(), s))?;
    if let Some(t) = recording(tape, &[x]) {
        t.record("rotary", &[x], &y, move |g, sink| {
            let dx = launch_wrap!(g, g.shape(), F, c => rotary_backward::<F>(c, g.handle(), cos.handle(), sin.handle(), s))?;
            sink.add(0, dx)
        });
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::*;
    use nanochat_kernels::check::f64s;
    use nanochat_kernels::rotary::rotary_ref;

    gradcheck_test!(rotary_gradcheck(b in 1usize..3, t_len in 1usize..6, h in 1usize..4, half in 1usize..5, t0 in 0usize..3, seed in any::<u64>()) {
        let d = 2 * half;
        let x = Input::random(&mut rng(seed), &[b, t_len, h, d], -2.0, 2.0);
        let tables = RotaryTables::new(&crate::Device::cpu().unwrap(), t0 + t_len, d, 10000.0, DType::F32).unwrap();
        let (cos, sin) = (f64s(&tables.cos.to_vec_f32().unwrap()), f64s(&tables.sin.to_vec_f32().unwrap()));
        let s = RotaryShape { batch: b, seq: t_len, heads: h, head_dim: d, t0, table_len: t0 + t_len };
        check!("rotary", &[x], |t, xs| rotary(t, &xs[0], &tables, t0), move |xs| rotary_ref(&xs[0], &cos, &sin, s, 1.0), seed)?;
    });
}
