//! Token embedding: rows of `wte` gathered by id; the backward scatter-adds into `wte`.

use nanochat_kernels::embedding::{embedding_backward, embedding_forward};

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
    let mut shape = ids_shape.to_vec();
    shape.push(dim);
    let y = launch_wrap!(wte, &shape, F, c => embedding_forward::<F>(c, wte.handle(), vocab, dim, ids))?;
    if let Some(t) = recording(tape, &[wte]) {
        let ids = ids.to_vec();
        let w2 = wte.clone();
        t.record("embedding", &[wte], &y, move |g, sink| {
            let h = launch!(g, F, c => embedding_backward::<F>(c, g.handle(), &ids, vocab, dim))?;
            sink.add(0, super::wrap(&w2, h, &[vocab, dim])?)
        });
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::*;
    use nanochat_kernels::embedding::embedding_forward_ref;

    gradcheck_test!(embedding_gradcheck(vocab in 1usize..7, dim in 1usize..9, n in 1usize..12, seed in any::<u64>()) {
        let w = Input::random(&mut rng(seed), &[vocab, dim], -1.0, 1.0);
        // Repeated ids are likely: their gradients must add.
        let ids: Vec<u32> = (0..n).map(|i| ((i * 5 + seed as usize) % vocab) as u32).collect();
        let ids2 = ids.clone();
        check!("embedding", &[w], |t, xs| embedding(t, &xs[0], &ids, &[n]), move |xs| embedding_forward_ref(&xs[0], dim, &ids2), seed)?;
    });
}
