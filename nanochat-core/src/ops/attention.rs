//! Causal self-attention with grouped-query heads, on q (B, T, H, D), k and v (B, T, Hkv, D),
//! scale 1/sqrt(D); flash-style kernels (no T x T matrix), backward from the saved logsumexp.

use nanochat_kernels::attention::{
    attention_backward, attention_forward, AttentionShape, KvLayout,
};
use nanochat_kernels::with_float;

use super::wrap;
use crate::autograd::recording;
use crate::{CoreError, Result, Tape, Tensor};

pub fn attention(tape: Option<&Tape>, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let (batch, t, heads, head_dim) = q.dims4()?;
    let (kb, kt, kv_heads, kd) = k.dims4()?;
    if (kb, kt, kd) != (batch, t, head_dim) || v.shape() != k.shape() {
        return Err(CoreError::shape(
            "attention",
            &[q.shape(), k.shape(), v.shape()],
            "q, k, v disagree",
        ));
    }
    crate::tensor::same_kind("attention", &[q, k, v])?;
    let s = AttentionShape::new(batch, t, heads, kv_heads, head_dim);
    let client = q.device().client();
    let (ho, lse) = with_float!(q.dtype(), F =>
        attention_forward::<F>(client, q.handle(), k.handle(), v.handle(), &s, &KvLayout::contiguous(&s)))?;
    let out = wrap(q, ho, q.shape())?;
    if let Some(tp) = recording(tape, &[q, k, v]) {
        let (q2, k2, v2, o2) = (q.clone(), k.clone(), v.clone(), out.clone());
        tp.record("attention", &[q, k, v], &out, move |g, sink| {
            let c = q2.device().client();
            let (dq, dk, dv) = with_float!(q2.dtype(), F =>
                attention_backward::<F>(c, q2.handle(), k2.handle(), v2.handle(), o2.handle(), &lse, g.handle(), &s))?;
            sink.add(0, wrap(&q2, dq, q2.shape())?)?;
            sink.add(1, wrap(&k2, dk, k2.shape())?)?;
            sink.add(2, wrap(&v2, dv, v2.shape())?)
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::*;
    use nanochat_kernels::attention::attention_forward_ref;

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn attention_gradcheck(b in 1usize..3, t_len in 1usize..7, kv in 1usize..3, group in 1usize..3, half in 1usize..4, seed in any::<u64>()) {
            let (h, d) = (kv * group, 2 * half);
            let mut r = rng(seed);
            let q = Input::random(&mut r, &[b, t_len, h, d], -1.0, 1.0);
            let k = Input::random(&mut r, &[b, t_len, kv, d], -1.0, 1.0);
            let v = Input::random(&mut r, &[b, t_len, kv, d], -1.0, 1.0);
            let s = AttentionShape::new(b, t_len, h, kv, d);
            let res = assert_gradcheck(&[q, k, v], |t, xs| attention(t, &xs[0], &xs[1], &xs[2]),
                move |xs| attention_forward_ref(&xs[0], &xs[1], &xs[2], &s).0, Tolerance::default(), seed);
            prop_assert!(res.is_ok(), "{s:?}: {}", res.unwrap_err());
        }
    }
}
