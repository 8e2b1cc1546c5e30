//! Token embedding: rows of `wte` gathered by id; the backward scatter-adds into `wte`.

use nanochat_kernels::embedding::{embedding_backward, embedding_forward};
use nanochat_kernels::with_float;

use super::wrap;
use crate::autograd::recording;
use crate::{CoreError, Result, Tape, Tensor};

/// `wte[ids]`: ids shaped `ids_shape` give an output of shape (ids_shape..., C).
pub fn embedding(
    tape: Option<&Tape>,
    wte: &Tensor,
    ids: &[u32],
    ids_shape: &[usize],
) -> Result<Tensor> {
    let (vocab, dim) = wte.dims2()?;
    if ids_shape.iter().product::<usize>() != ids.len() {
        return Err(CoreError::shape(
            "embedding",
            &[ids_shape, &[ids.len()]],
            "ids do not fill their shape",
        ));
    }
    let h = with_float!(wte.dtype(), F => embedding_forward::<F>(wte.device().client(), wte.handle(), vocab, dim, ids))?;
    let mut shape = ids_shape.to_vec();
    shape.push(dim);
    let y = wrap(wte, h, &shape)?;
    if let Some(t) = recording(tape, &[wte]) {
        let ids = ids.to_vec();
        let w2 = wte.clone();
        t.record("embedding", &[wte], &y, move |g, sink| {
            let h = with_float!(g.dtype(), F => embedding_backward::<F>(g.device().client(), g.handle(), &ids, vocab, dim))?;
            sink.add(0, wrap(&w2, h, &[vocab, dim])?)
        });
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::*;

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn embedding_gradcheck(vocab in 1usize..7, dim in 1usize..9, n in 1usize..12, seed in any::<u64>()) {
            let mut r = rng(seed);
            let w = Input::random(&mut r, &[vocab, dim], -1.0, 1.0);
            // Repeated ids are likely: their gradients must add.
            let ids: Vec<u32> = (0..n).map(|i| ((i * 5 + seed as usize) % vocab) as u32).collect();
            let ids2 = ids.clone();
            let res = assert_gradcheck(&[w], |t, xs| embedding(t, &xs[0], &ids, &[n]),
                move |xs| nanochat_kernels::embedding::embedding_forward_ref(&xs[0], dim, &ids2), Tolerance::default(), seed);
            prop_assert!(res.is_ok(), "{}", res.unwrap_err());
        }
    }
}
