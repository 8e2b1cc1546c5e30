//! Softmax over the last axis.

use nanochat_kernels::softmax::{softmax as softmax_kernel, softmax_backward};

use crate::autograd::recording;
use crate::{Result, Tape, Tensor};

/// Softmax over the last axis of `x` (any shape, rows of its last dimension), in `x`'s dtype
/// (`F.softmax(x, dim=-1)`).
pub fn softmax(tape: Option<&Tape>, x: &Tensor) -> Result<Tensor> {
    let (rows, cols) = x.rows_cols();
    let y = launch_wrap!(x, x.shape(), F, c => softmax_kernel::<F>(c, x.handle(), rows, cols))?;
    if let Some(t) = recording(tape, &[x]) {
        let y2 = y.clone();
        t.record("softmax", &[x], &y, move |g, sink| {
            let dx = launch_wrap!(&y2, y2.shape(), F, c => softmax_backward::<F>(c, y2.handle(), g.handle(), rows, cols))?;
            sink.add(0, dx)
        });
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::*;
    use nanochat_kernels::softmax::softmax_ref;

    gradcheck_test!(softmax_gradcheck(rows in 1usize..5, cols in 1usize..20, seed in any::<u64>()) {
        let x = Input::random(&mut rng(seed), &[rows, cols], -3.0, 3.0);
        check!("softmax", &[x], |t, xs| softmax(t, &xs[0]), move |xs| softmax_ref(&xs[0], cols), seed)?;
    });
}
