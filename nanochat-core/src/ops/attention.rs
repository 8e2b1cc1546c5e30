//! Causal self-attention with grouped-query heads, on q (B, T, H, D), k and v (B, T, Hkv, D),
//! scale 1/sqrt(D); flash-style kernels (no T x T matrix), backward from the saved logsumexp.
//! For inference, [`attention_cached`] attends new queries to the filled part of a KV cache.

use nanochat_kernels::attention::{
    attention_backward, attention_decode, attention_forward, AttentionShape, KvLayout,
};

use super::wrap;
use crate::autograd::recording;
use crate::{CoreError, Result, Tape, Tensor};

/// Causal attention of `q` (B, T, H, D) over `k`, `v` (B, T, Hkv, D), H a multiple of Hkv,
/// each query seeing the `window + 1` keys up to itself (`usize::MAX`: all of them); returns
/// (B, T, H, D) (nanochat's `scaled_dot_product_attention(..., is_causal=True,
/// enable_gqa=True)` in the (B, T, H, D) layout, or HEAD's `flash_attn_func(...,
/// window_size=(window, 0))`).
///
/// Errors: shapes that disagree, different dtypes or devices.
pub fn attention(
    tape: Option<&Tape>,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    window: usize,
) -> Result<Tensor> {
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
    let s = AttentionShape::new(batch, t, heads, kv_heads, head_dim).with_window(window);
    let (ho, lse) = launch!(q, F, c => attention_forward::<F>(c, q.handle(), k.handle(), v.handle(), &s, &KvLayout::contiguous(&s)))?;
    let out = wrap(q, ho, q.shape())?;
    if let Some(tp) = recording(tape, &[q, k, v]) {
        let (q2, k2, v2, o2) = (q.clone(), k.clone(), v.clone(), out.clone());
        tp.record("attention", &[q, k, v], &out, move |g, sink| {
            let (dq, dk, dv) = launch!(&q2, F, c => attention_backward::<F>(c, q2.handle(), k2.handle(), v2.handle(), o2.handle(), &lse, g.handle(), &s))?;
            sink.add(0, wrap(&q2, dq, q2.shape())?)?;
            sink.add(1, wrap(&k2, dk, k2.shape())?)?;
            sink.add(2, wrap(&v2, dv, v2.shape())?)
        });
    }
    Ok(out)
}

/// Attention of new queries over a KV cache: `q` (B, Tq, H, D), the queries of positions
/// `len - Tq..len`, attends to positions `0..len` of `k`, `v` (B, capacity, Hkv, D), causally
/// (nanochat's cached attention: the whole prefix, then causal within the chunk). One query per
/// row (decoding) takes the decode kernel. Returns (B, Tq, H, D). Inference only: records
/// nothing on a tape.
///
/// Errors: shapes that disagree, `Tq > len` or `len > capacity`, different dtypes or devices.
pub fn attention_cached(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    len: usize,
    window: usize,
) -> Result<Tensor> {
    let (batch, tq, heads, head_dim) = q.dims4()?;
    let (kb, capacity, kv_heads, kd) = k.dims4()?;
    if (kb, kd) != (batch, head_dim) || v.shape() != k.shape() || tq > len || len > capacity {
        return Err(CoreError::shape(
            "attention_cached",
            &[q.shape(), k.shape(), v.shape()],
            format!("need q (B, Tq, H, D), k and v (B, capacity, Hkv, D), Tq <= {len} <= capacity"),
        ));
    }
    crate::tensor::same_kind("attention_cached", &[q, k, v])?;
    let s = AttentionShape {
        batch,
        tq,
        tk: len,
        heads,
        kv_heads,
        head_dim,
        window,
    };
    let layout = KvLayout::cache(&s, capacity);
    let out = launch!(q, F, client => if tq == 1 {
        attention_decode::<F>(client, q.handle(), k.handle(), v.handle(), &s, &layout)
    } else {
        attention_forward::<F>(client, q.handle(), k.handle(), v.handle(), &s, &layout)
            .map(|(o, _)| o)
    })?;
    wrap(q, out, q.shape())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::*;
    use nanochat_kernels::attention::attention_forward_ref;

    /// A window from 0 (each query sees itself) to past T, or none.
    fn window() -> impl Strategy<Value = usize> {
        (0usize..9).prop_map(|w| if w >= 7 { usize::MAX } else { w })
    }

    gradcheck_test!(attention_gradcheck(b in 1usize..3, t_len in 1usize..7, kv in 1usize..3, group in 1usize..3, half in 1usize..4, w in window(), seed in any::<u64>()) {
        let (h, d) = (kv * group, 2 * half);
        let mut r = rng(seed);
        let q = Input::random(&mut r, &[b, t_len, h, d], -1.0, 1.0);
        let k = Input::random(&mut r, &[b, t_len, kv, d], -1.0, 1.0);
        let v = Input::random(&mut r, &[b, t_len, kv, d], -1.0, 1.0);
        let s = AttentionShape::new(b, t_len, h, kv, d).with_window(w);
        check!(&format!("{s:?}"), &[q, k, v], |t, xs| attention(t, &xs[0], &xs[1], &xs[2], w), move |xs| attention_forward_ref(&xs[0], &xs[1], &xs[2], &s).0, seed)?;
    });

    proptest! {
        #![proptest_config(config())]

        /// Queries over a cache (filled to `len` of its capacity) give the last rows of the
        /// full causal attention over those `len` positions, one query (decode) or several,
        /// with the same window.
        #[test]
        fn cached_attention_equals_the_last_rows_of_full_attention(b in 1usize..3, len in 1usize..7, spare in 0usize..3,
                                                                  kv in 1usize..3, group in 1usize..3, tq_pick in 0usize..7, w in window(), seed in any::<u64>()) {
            let (h, d, tq) = (kv * group, 4, 1 + tq_pick % len);
            let dev = crate::Device::cpu().unwrap();
            let mut r = rng(seed);
            let mk = |r: &mut _, shape: &[usize]| {
                let x = Input::random(r, shape, -1.0, 1.0);
                let v: Vec<f32> = x.values.iter().map(|&v| v as f32).collect();
                Tensor::from_f32(&dev, &v, shape, crate::DType::F32).unwrap()
            };
            let q = mk(&mut r, &[b, len, h, d]);
            let k = mk(&mut r, &[b, len, kv, d]);
            let v = mk(&mut r, &[b, len, kv, d]);
            let full = attention(None, &q, &k, &v, w).unwrap().to_vec_f32().unwrap();
            let cap = len + spare;
            let (kc, vc) = (Tensor::zeros(&dev, &[b, cap, kv, d], crate::DType::F32).unwrap(), Tensor::zeros(&dev, &[b, cap, kv, d], crate::DType::F32).unwrap());
            crate::ops::write_rows(&kc, &k, 0).unwrap();
            crate::ops::write_rows(&vc, &v, 0).unwrap();
            let q_new = crate::ops::narrow(&q, 1, len - tq, tq).unwrap();
            let got = attention_cached(&q_new, &kc, &vc, len, w).unwrap().to_vec_f32().unwrap();
            let row = h * d;
            for bi in 0..b {
                for i in 0..tq {
                    let want = &full[(bi * len + len - tq + i) * row..][..row];
                    let g = &got[(bi * tq + i) * row..][..row];
                    for (x, y) in g.iter().zip(want) {
                        prop_assert!((x - y).abs() < 1e-5, "b {bi} query {i}: {x} vs {y}");
                    }
                }
            }
            prop_assert!(attention_cached(&q_new, &kc, &vc, cap + 1, usize::MAX).is_err());
        }
    }
}
