//! Differentiable slicing along one axis and its adjoint, zero padding: what nanochat HEAD's
//! model indexes with (`logits[..., :vocab_size]`, `x[..., :24]` for the smear gate,
//! `x[..., :12]` for the value-embedding gate, `resid_lambdas[i]`, and the previous token's
//! embedding `x[:, :-1]` shifted by one). Also the logistic `sigmoid` its gates use.
//!
//! `slice` keeps positions `start..start + len` of axis `dim`; its backward pads the gradient
//! with zeros back to the input's shape. `pad` puts zeros before and after; its backward slices.
//! Both run the layout kernels `slice_cols` / `write_rows` over the (rows, axis, inner) view.

use nanochat_kernels::elementwise::Unary;

use super::{map, narrow, write_rows};
use crate::autograd::recording;
use crate::{CoreError, Result, Tape, Tensor};

/// `x` (.., n, ..) with zeros put before (`before` positions) and after (`after` positions)
/// along axis `dim`, without recording.
fn pad_raw(x: &Tensor, dim: usize, before: usize, after: usize) -> Result<Tensor> {
    let shape = x.shape();
    let rows: usize = shape[..dim].iter().product();
    let inner: usize = shape[dim + 1..].iter().product();
    let n = shape[dim];
    let mut out_shape = shape.to_vec();
    out_shape[dim] = before + n + after;
    let out = Tensor::zeros(x.device(), &out_shape, x.dtype())?;
    if n > 0 && rows * inner > 0 {
        // The (rows, axis, inner) views: x's positions land at `before..before + n`.
        let dst = out.alias(&[rows, before + n + after, inner])?;
        write_rows(&dst, &x.alias(&[rows, n, inner])?, before)?;
    }
    Ok(out)
}

fn check_axis(op: &'static str, x: &Tensor, dim: usize) -> Result<()> {
    if dim >= x.rank() {
        return Err(CoreError::shape(
            op,
            &[x.shape()],
            format!("axis {dim} beyond rank {}", x.rank()),
        ));
    }
    Ok(())
}

/// Positions `start..start + len` of axis `dim` of `x` (PyTorch's `x.narrow(dim, start, len)`,
/// made contiguous); the gradient flows back into those positions, zero elsewhere. `x` itself
/// when that is the whole axis.
///
/// Errors: [`CoreError::Shape`] when `dim` is beyond `x`'s rank or the positions run past the
/// axis' end.
pub fn slice(
    tape: Option<&Tape>,
    x: &Tensor,
    dim: usize,
    start: usize,
    len: usize,
) -> Result<Tensor> {
    check_axis("slice", x, dim)?;
    let y = narrow(x, dim, start, len)?;
    if y.id() == x.id() {
        return Ok(y);
    }
    if let Some(t) = recording(tape, &[x]) {
        let after = x.shape()[dim] - start - len;
        t.record("slice", &[x], &y, move |g, sink| {
            sink.add(0, pad_raw(g, dim, start, after)?)
        });
    }
    Ok(y)
}

/// `x` with `before` zero positions put in front and `after` behind along axis `dim`
/// (PyTorch's `F.pad` on one axis); the gradient is the middle positions of the output's.
///
/// Errors: [`CoreError::Shape`] when `dim` is beyond `x`'s rank.
pub fn pad(
    tape: Option<&Tape>,
    x: &Tensor,
    dim: usize,
    before: usize,
    after: usize,
) -> Result<Tensor> {
    check_axis("pad", x, dim)?;
    let y = pad_raw(x, dim, before, after)?;
    if let Some(t) = recording(tape, &[x]) {
        let n = x.shape()[dim];
        t.record("pad", &[x], &y, move |g, sink| {
            sink.add(0, narrow(g, dim, before, n)?)
        });
    }
    Ok(y)
}

/// The logistic function `1 / (1 + e^-x)` element-wise (`torch.sigmoid`), computed as
/// `0.5 + 0.5 tanh(x / 2)` (exact in real arithmetic, no overflow for large |x|); the gradient
/// is `sigmoid(x) (1 - sigmoid(x))` through the tanh and affine ops' own rules.
///
/// Errors: those of the kernels (none for a valid tensor).
pub fn sigmoid(tape: Option<&Tape>, x: &Tensor) -> Result<Tensor> {
    let half = super::scale(tape, x, 0.5)?;
    super::affine(tape, &super::tanh(tape, &half)?, 0.5, 0.5)
}

/// `sigmoid` without a tape (inference code that has no tape to pass).
#[allow(dead_code)]
pub(crate) fn sigmoid_raw(x: &Tensor) -> Result<Tensor> {
    let t = map(x, Unary::Affine { mul: 0.5, add: 0.0 })?;
    map(&map(&t, Unary::Tanh)?, Unary::Affine { mul: 0.5, add: 0.5 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::*;

    /// f64 reference of `slice` on a (rows, n, inner) view.
    fn slice_ref(
        x: &[f64],
        rows: usize,
        n: usize,
        inner: usize,
        start: usize,
        len: usize,
    ) -> Vec<f64> {
        (0..rows)
            .flat_map(|r| x[(r * n + start) * inner..(r * n + start + len) * inner].to_vec())
            .collect()
    }

    /// f64 reference of `pad` on a (rows, n, inner) view.
    fn pad_ref(
        x: &[f64],
        rows: usize,
        n: usize,
        inner: usize,
        before: usize,
        after: usize,
    ) -> Vec<f64> {
        let m = before + n + after;
        let mut out = vec![0.0; rows * m * inner];
        for r in 0..rows {
            out[(r * m + before) * inner..(r * m + before + n) * inner]
                .copy_from_slice(&x[r * n * inner..(r + 1) * n * inner]);
        }
        out
    }

    gradcheck_test!(slice_pad_sigmoid_gradcheck(a in 1usize..4, n in 2usize..7, c in 1usize..5, dim in 0usize..3, cut in 0usize..6, extra in 0usize..3, seed in any::<u64>()) {
        let shape = [a, n, c];
        let x = [Input::random(&mut rng(seed), &shape, -2.0, 2.0)];
        let (rows, len, inner): (usize, usize, usize) = (shape[..dim].iter().product(), shape[dim], shape[dim + 1..].iter().product());
        let start = cut % len;
        let take = 1 + (cut + extra) % (len - start);
        check!("slice", &x, |t, xs| slice(t, &xs[0], dim, start, take), move |xs| slice_ref(&xs[0], rows, len, inner, start, take), seed)?;
        check!("pad", &x, |t, xs| pad(t, &xs[0], dim, extra, start), move |xs| pad_ref(&xs[0], rows, len, inner, extra, start), seed)?;
        check!("sigmoid", &x, |t, xs| sigmoid(t, &xs[0]), |xs| xs[0].iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect(), seed)?;
    });

    #[test]
    fn slice_and_pad_name_bad_axes_and_ranges() {
        let dev = crate::Device::cpu().unwrap();
        let x = Tensor::zeros(&dev, &[2, 3], crate::DType::F32).unwrap();
        assert!(matches!(
            slice(None, &x, 2, 0, 1),
            Err(CoreError::Shape { .. })
        ));
        assert!(matches!(
            slice(None, &x, 1, 2, 2),
            Err(CoreError::Shape { .. })
        ));
        assert!(matches!(
            pad(None, &x, 5, 1, 1),
            Err(CoreError::Shape { .. })
        ));
        assert_eq!(pad(None, &x, 1, 1, 2).unwrap().shape(), &[2, 6]);
        let s = sigmoid_raw(
            &Tensor::from_f32(&dev, &[0.0, 40.0, -40.0], &[3], crate::DType::F32).unwrap(),
        )
        .unwrap();
        assert_eq!(s.to_vec_f32().unwrap(), vec![0.5, 1.0, 0.0]);
    }
}
