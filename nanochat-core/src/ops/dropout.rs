//! Dropout (training mode only: callers skip it in eval mode or at p = 0).

use nanochat_kernels::dropout::dropout as dropout_kernel;

use crate::autograd::recording;
use crate::{Result, Tape, Tensor};

/// Zeroes each element with probability `p` (mask drawn from `seed` and the element index)
/// and scales the kept ones by 1 / (1 - p).
pub fn dropout(tape: Option<&Tape>, x: &Tensor, p: f32, seed: u32) -> Result<Tensor> {
    let y =
        launch_wrap!(x, x.shape(), F, c => dropout_kernel::<F>(c, x.handle(), x.len(), p, seed))?;
    if let Some(t) = recording(tape, &[x]) {
        t.record("dropout", &[x], &y, move |g, sink| {
            // The same mask: the same seed over the same element indices.
            let dx = launch_wrap!(g, g.shape(), F, c => dropout_kernel::<F>(c, g.handle(), g.len(), p, seed))?;
            sink.add(0, dx)
        });
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::*;
    use nanochat_kernels::dropout::dropout_ref;

    gradcheck_test!(dropout_gradcheck(rows in 1usize..5, cols in 1usize..20, p in 0.0f32..0.9, seed in any::<u32>()) {
        let x = Input::random(&mut rng(seed as u64), &[rows, cols], -2.0, 2.0);
        check!("dropout", &[x], |t, xs| dropout(t, &xs[0], p, seed), move |xs| dropout_ref(&xs[0], p, seed), seed as u64)?;
    });
}
