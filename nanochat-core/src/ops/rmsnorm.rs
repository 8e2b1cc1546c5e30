//! RMSNorm without weights over the last axis (nanochat's `norm`).

use nanochat_kernels::rmsnorm::{rmsnorm_backward, rmsnorm_forward};
use nanochat_kernels::with_float;

use super::wrap;
use crate::autograd::recording;
use crate::{Result, Tape, Tensor};

/// `x * rsqrt(mean(x^2) + eps)` over the last axis.
pub fn rmsnorm(tape: Option<&Tape>, x: &Tensor, eps: f32) -> Result<Tensor> {
    let (rows, cols) = x.rows_cols();
    let (h, rstd) = with_float!(x.dtype(), F => rmsnorm_forward::<F>(x.device().client(), x.handle(), rows, cols, eps))?;
    let y = wrap(x, h, x.shape())?;
    if let Some(t) = recording(tape, &[x]) {
        let x2 = x.clone();
        t.record("rmsnorm", &[x], &y, move |g, sink| {
            let h = with_float!(x2.dtype(), F =>
                rmsnorm_backward::<F>(x2.device().client(), x2.handle(), &rstd, g.handle(), rows, cols))?;
            sink.add(0, wrap(&x2, h, x2.shape())?)
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
        fn rmsnorm_gradcheck(rows in 1usize..5, cols in 2usize..40, seed in any::<u64>()) {
            let mut r = rng(seed);
            let x = Input::random(&mut r, &[rows, cols], -2.0, 2.0);
            let eps = 1e-6;
            let res = assert_gradcheck(&[x], |t, xs| rmsnorm(t, &xs[0], eps as f32),
                move |xs| nanochat_kernels::rmsnorm::rmsnorm_forward_ref(&xs[0], cols, eps).0, Tolerance::default(), seed);
            prop_assert!(res.is_ok(), "{}", res.unwrap_err());
        }
    }
}
