//! Reductions: sum and mean of all elements (to a 0-d tensor), sum over the last axis.

use nanochat_kernels::reduce::{reduce_rows, Reduce};

use super::expand;
use crate::autograd::recording;
use crate::{Result, Tape, Tensor};

fn sum_rows(x: &Tensor, rows: usize, cols: usize, out_shape: &[usize]) -> Result<Tensor> {
    launch_wrap!(x, out_shape, F, c => reduce_rows::<F>(c, x.handle(), rows, cols, Reduce::Sum))
}

/// Sum of all elements, as a 0-d tensor.
pub fn sum(tape: Option<&Tape>, x: &Tensor) -> Result<Tensor> {
    // Two passes (rows of the last axis, then their sums) keep every row reduction short.
    let (rows, cols) = x.rows_cols();
    let y = if rows <= 1 {
        sum_rows(x, 1, x.len(), &[])?
    } else {
        sum_rows(&sum_rows(x, rows, cols, &[rows])?, 1, rows, &[])?
    };
    if let Some(t) = recording(tape, &[x]) {
        let shape = x.shape().to_vec();
        t.record("sum", &[x], &y, move |g, sink| {
            sink.add(0, expand(g, &shape)?)
        });
    }
    Ok(y)
}

/// Mean of all elements, as a 0-d tensor.
pub fn mean(tape: Option<&Tape>, x: &Tensor) -> Result<Tensor> {
    let n = x.len().max(1) as f32;
    super::scale(tape, &sum(tape, x)?, 1.0 / n)
}

/// Sum over the last axis: (..., C) -> (...).
pub fn sum_last(tape: Option<&Tape>, x: &Tensor) -> Result<Tensor> {
    let (rows, cols) = x.rows_cols();
    let out_shape = &x.shape()[..x.rank().saturating_sub(1)];
    let y = sum_rows(x, rows, cols, out_shape)?;
    if let Some(t) = recording(tape, &[x]) {
        let shape = x.shape().to_vec();
        t.record("sum_last", &[x], &y, move |g, sink| {
            // (...) -> (..., 1) -> broadcast to (..., C)
            let mut col = g.shape().to_vec();
            col.push(1);
            sink.add(0, expand(&g.alias(&col)?, &shape)?)
        });
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::*;

    gradcheck_test!(reductions_gradcheck(a in 1usize..4, b in 1usize..5, c in 1usize..9, seed in any::<u64>()) {
        let x = [Input::random(&mut rng(seed), &[a, b, c], -2.0, 2.0)];
        check!("sum", &x, |t, xs| sum(t, &xs[0]), |xs| vec![xs[0].iter().sum()], seed)?;
        let n = (a * b * c) as f64;
        check!("mean", &x, |t, xs| mean(t, &xs[0]), move |xs| vec![xs[0].iter().sum::<f64>() / n], seed)?;
        check!("sum_last", &x, |t, xs| sum_last(t, &xs[0]), move |xs| xs[0].chunks(c).map(|r| r.iter().sum()).collect(), seed)?;
    });
}
