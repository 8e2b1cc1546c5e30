//! RMSNorm without weights over the last axis (nanochat's `norm`).

use nanochat_kernels::rmsnorm::{rmsnorm_backward, rmsnorm_forward};

use super::wrap;
use crate::autograd::recording;
use crate::{Result, Tape, Tensor};

/// `x * rsqrt(mean(x^2) + eps)` over the last axis.
pub fn rmsnorm(tape: Option<&Tape>, x: &Tensor, eps: f32) -> Result<Tensor> {
    let (rows, cols) = x.rows_cols();
    let (h, rstd) = launch!(x, F, c => rmsnorm_forward::<F>(c, x.handle(), rows, cols, eps))?;
    let y = wrap(x, h, x.shape())?;
    if let Some(t) = recording(tape, &[x]) {
        let x2 = x.clone();
        t.record("rmsnorm", &[x], &y, move |g, sink| {
            let dx = launch_wrap!(&x2, x2.shape(), F, c => rmsnorm_backward::<F>(c, x2.handle(), &rstd, g.handle(), rows, cols))?;
            sink.add(0, dx)
        });
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::*;
    use nanochat_kernels::rmsnorm::rmsnorm_forward_ref;

    gradcheck_test!(rmsnorm_gradcheck(rows in 1usize..5, cols in 2usize..40, seed in any::<u64>()) {
        let x = Input::random(&mut rng(seed), &[rows, cols], -2.0, 2.0);
        let eps = 1e-6;
        check!("rmsnorm", &[x], |t, xs| rmsnorm(t, &xs[0], eps as f32), move |xs| rmsnorm_forward_ref(&xs[0], cols, eps).0, seed)?;
    });
}
