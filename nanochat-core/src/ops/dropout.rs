//! Dropout (training mode only: callers skip it in eval mode or at p = 0).

use nanochat_kernels::dropout::dropout as dropout_kernel;
use nanochat_kernels::with_float;

use super::wrap;
use crate::autograd::recording;
use crate::{Result, Tape, Tensor};

/// Zeroes each element with probability `p` (mask drawn from `seed` and the element index)
/// and scales the kept ones by 1 / (1 - p).
pub fn dropout(tape: Option<&Tape>, x: &Tensor, p: f32, seed: u32) -> Result<Tensor> {
    let h = with_float!(x.dtype(), F => dropout_kernel::<F>(x.device().client(), x.handle(), x.len(), p, seed))?;
    let y = wrap(x, h, x.shape())?;
    if let Some(t) = recording(tape, &[x]) {
        t.record("dropout", &[x], &y, move |g, sink| {
            // The same mask: the same seed over the same element indices.
            let h = with_float!(g.dtype(), F => dropout_kernel::<F>(g.device().client(), g.handle(), g.len(), p, seed))?;
            sink.add(0, wrap(g, h, g.shape())?)
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
        fn dropout_gradcheck(rows in 1usize..5, cols in 1usize..20, p in 0.0f32..0.9, seed in any::<u32>()) {
            let mut r = rng(seed as u64);
            let x = Input::random(&mut r, &[rows, cols], -2.0, 2.0);
            let res = assert_gradcheck(&[x], |t, xs| dropout(t, &xs[0], p, seed),
                move |xs| nanochat_kernels::dropout::dropout_ref(&xs[0], p, seed), Tolerance::default(), seed as u64);
            prop_assert!(res.is_ok(), "{}", res.unwrap_err());
        }
    }
}
