//! Token embedding: rows of `wte` gathered by id; the backward scatter-adds into `wte`.

use nanochat_kernels::dtype::bf16;
use nanochat_kernels::embedding::{
    embedding_backward, embedding_backward_sequential, embedding_forward,
};

use crate::autograd::recording;
use crate::{CoreError, DType, Result, Tape, Tensor};

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

/// `wte[ids]` for an f32 table whose values are bf16 (nanochat's bf16-stored `wte` and value
/// embeddings, [`crate::optim::MuonAdamW::keep_in_bf16`]), with PyTorch's CPU gradient of such
/// a table: the output gradient rounded to bf16, then each row's positions added in order,
/// every partial sum rounded to bf16 (`embedding_dense_backward` into a bf16 `grad_weight`),
/// returned as f32. The forward equals [`embedding`]'s.
pub fn embedding_bf16_storage(
    tape: Option<&Tape>,
    wte: &Tensor,
    ids: &[u32],
    ids_shape: &[usize],
) -> Result<Tensor> {
    let y = embedding(None, wte, ids, ids_shape)?;
    if let Some(t) = recording(tape, &[wte]) {
        let (vocab, dim) = wte.dims2()?;
        let ids = ids.to_vec();
        let w2 = wte.clone();
        t.record("embedding_bf16_storage", &[wte], &y, move |g, sink| {
            let g16 = super::cast(None, g, DType::BF16)?;
            let c = g16.device().client();
            let h = embedding_backward_sequential::<bf16>(c, g16.handle(), &ids, vocab, dim)?;
            let dw = Tensor::from_handle(w2.device(), h, &[vocab, dim], DType::BF16)?;
            sink.add(0, super::cast(None, &dw, w2.dtype())?)
        });
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::*;
    use nanochat_kernels::embedding::embedding_forward_ref;

    #[test]
    fn bf16_storage_rounds_the_gradient_as_pytorch_does_into_a_bf16_table() {
        let dev = crate::Device::cpu().unwrap();
        let (vocab, dim) = (3, 5);
        let w = Tensor::from_f32(&dev, &[0.5; 15], &[vocab, dim], DType::F32).unwrap();
        // Id 1 three times: 1 + 2^-9 + 2^-9 is 1 in bf16 after each add (ties to even), but
        // 1 + 2^-8 when summed in f32 first.
        let ids = [1u32, 1, 0, 1];
        let mut g = vec![0.0f32; 4 * dim];
        for (p, v) in [(0, 1.0), (1, 2f32.powi(-9)), (2, 0.25), (3, 2f32.powi(-9))] {
            g[p * dim..(p + 1) * dim].fill(v);
        }
        let gt = Tensor::from_f32(&dev, &g, &[4, dim], DType::F32).unwrap();
        let grad_of = |bf16: bool| {
            let tape = Tape::new();
            let w = tape.watch(&w);
            let y = if bf16 {
                embedding_bf16_storage(Some(&tape), &w, &ids, &[4]).unwrap()
            } else {
                embedding(Some(&tape), &w, &ids, &[4]).unwrap()
            };
            let loss =
                crate::ops::sum(Some(&tape), &crate::ops::mul(Some(&tape), &y, &gt).unwrap())
                    .unwrap();
            tape.backward(&loss)
                .unwrap()
                .get(&w)
                .unwrap()
                .to_vec_f32()
                .unwrap()
        };
        let dw = grad_of(true);
        assert_eq!(dw[dim..2 * dim], [1.0; 5]);
        assert_eq!(dw[..dim], [0.25; 5]);
        assert_eq!(dw[2 * dim..], [0.0; 5]);
        assert_eq!(grad_of(false)[dim], 1.0 + 2f32.powi(-8));
    }

    gradcheck_test!(embedding_gradcheck(vocab in 1usize..7, dim in 1usize..9, n in 1usize..12, seed in any::<u64>()) {
        let w = Input::random(&mut rng(seed), &[vocab, dim], -1.0, 1.0);
        // Repeated ids are likely: their gradients must add.
        let ids: Vec<u32> = (0..n).map(|i| ((i * 5 + seed as usize) % vocab) as u32).collect();
        let ids2 = ids.clone();
        check!("embedding", &[w], |t, xs| embedding(t, &xs[0], &ids, &[n]), move |xs| embedding_forward_ref(&xs[0], dim, &ids2), seed)?;
    });
}
