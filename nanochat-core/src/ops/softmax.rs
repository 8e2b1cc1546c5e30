//! Softmax over the last axis.

use nanochat_kernels::softmax::{softmax as softmax_kernel, softmax_backward};
use nanochat_kernels::with_float;

use super::wrap;
use crate::autograd::recording;
use crate::{Result, Tape, Tensor};

pub fn softmax(tape: Option<&Tape>, x: &Tensor) -> Result<Tensor> {
    let (rows, cols) = x.rows_cols();
    let h = with_float!(x.dtype(), F => softmax_kernel::<F>(x.device().client(), x.handle(), rows, cols))?;
    let y = wrap(x, h, x.shape())?;
    if let Some(t) = recording(tape, &[x]) {
        let y2 = y.clone();
        t.record("softmax", &[x], &y, move |g, sink| {
            let h = with_float!(y2.dtype(), F => softmax_backward::<F>(y2.device().client(), y2.handle(), g.handle(), rows, cols))?;
            sink.add(0, wrap(&y2, h, y2.shape())?)
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
        fn softmax_gradcheck(rows in 1usize..5, cols in 1usize..20, seed in any::<u64>()) {
            let mut r = rng(seed);
            let x = Input::random(&mut r, &[rows, cols], -3.0, 3.0);
            let res = assert_gradcheck(&[x], |t, xs| softmax(t, &xs[0]),
                move |xs| nanochat_kernels::softmax::softmax_ref(&xs[0], cols), Tolerance::default(), seed);
            prop_assert!(res.is_ok(), "{}", res.unwrap_err());
        }
    }
}
