//! Shape ops: reshape (a free view of the same buffer), transpose of the last two axes, and
//! casts between dtypes.

use nanochat_kernels::layout::transpose as transpose_kernel;
use nanochat_kernels::{elementwise, with_float, DType};

use super::wrap;
use crate::autograd::recording;
use crate::{CoreError, Result, Tape, Tensor};

/// The same elements under a new shape (same count).
pub fn reshape(tape: Option<&Tape>, x: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if shape.iter().product::<usize>() != x.len() {
        return Err(CoreError::shape(
            "reshape",
            &[x.shape(), shape],
            "element counts differ",
        ));
    }
    let y = x.alias(shape)?;
    if let Some(t) = recording(tape, &[x]) {
        let old = x.shape().to_vec();
        t.record("reshape", &[x], &y, move |g, sink| {
            sink.add(0, g.alias(&old)?)
        });
    }
    Ok(y)
}

fn transpose_raw(x: &Tensor) -> Result<Tensor> {
    let r = x.rank();
    let (rows, cols) = (x.shape()[r - 2], x.shape()[r - 1]);
    let batch = x.len() / (rows * cols).max(1);
    let h = with_float!(x.dtype(), F => transpose_kernel::<F>(x.device().client(), x.handle(), batch, rows, cols))?;
    let mut shape = x.shape().to_vec();
    shape.swap(r - 2, r - 1);
    wrap(x, h, &shape)
}

/// Swaps the last two axes (materialised: tensors are always contiguous).
pub fn transpose(tape: Option<&Tape>, x: &Tensor) -> Result<Tensor> {
    if x.rank() < 2 {
        return Err(CoreError::shape(
            "transpose",
            &[x.shape()],
            "needs rank 2 or more",
        ));
    }
    let y = transpose_raw(x)?;
    if let Some(t) = recording(tape, &[x]) {
        t.record("transpose", &[x], &y, |g, sink| {
            sink.add(0, transpose_raw(g)?)
        });
    }
    Ok(y)
}

fn cast_raw(x: &Tensor, dtype: DType) -> Result<Tensor> {
    if x.dtype() == dtype {
        return Ok(x.clone());
    }
    let c = x.device().client();
    let h = match (x.dtype(), dtype) {
        (DType::F32, DType::BF16) => elementwise::cast::<f32, HalfBf16>(c, x.handle(), x.len())?,
        (DType::BF16, DType::F32) => elementwise::cast::<HalfBf16, f32>(c, x.handle(), x.len())?,
        _ => unreachable!("equal dtypes returned above"),
    };
    Tensor::from_handle(x.device(), h, x.shape(), dtype)
}

type HalfBf16 = nanochat_kernels::dtype::bf16;

/// The tensor converted to `dtype` (round to nearest even into bf16); gradients convert back.
pub fn cast(tape: Option<&Tape>, x: &Tensor, dtype: DType) -> Result<Tensor> {
    let y = cast_raw(x, dtype)?;
    if y.id() == x.id() {
        return Ok(y);
    }
    if let Some(t) = recording(tape, &[x]) {
        let from = x.dtype();
        t.record("cast", &[x], &y, move |g, sink| {
            sink.add(0, cast_raw(g, from)?)
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
        fn shape_ops_gradcheck(b in 1usize..3, r in 1usize..6, c in 1usize..7, seed in any::<u64>()) {
            let mut g = rng(seed);
            let x = Input::random(&mut g, &[b, r, c], -2.0, 2.0);
            let res = assert_gradcheck(&[x.clone()], |t, xs| reshape(t, &xs[0], &[b * r, c]), |xs| xs[0].clone(), Tolerance::default(), seed);
            prop_assert!(res.is_ok(), "reshape: {}", res.unwrap_err());
            let res = assert_gradcheck(&[x.clone()], |t, xs| transpose(t, &xs[0]),
                move |xs| nanochat_kernels::layout::transpose_ref(&xs[0], b, r, c), Tolerance::default(), seed);
            prop_assert!(res.is_ok(), "transpose: {}", res.unwrap_err());
            // f32 -> bf16 -> f32 with gradients flowing back through both casts (bf16 rounding of
            // the forward is within the tolerance of a gradient of 1).
            let res = assert_gradcheck(&[x], |t, xs| cast(t, &cast(t, &xs[0], DType::BF16)?, DType::F32), |xs| xs[0].clone(),
                Tolerance { atol: 1e-2, rtol: 1e-2, h: 1e-2 }, seed);
            prop_assert!(res.is_ok(), "cast: {}", res.unwrap_err());
        }
    }

    #[test]
    fn reshape_checks_counts() {
        let dev = crate::Device::cpu().unwrap();
        let x = Tensor::zeros(&dev, &[2, 3], DType::F32).unwrap();
        assert!(reshape(None, &x, &[4])
            .unwrap_err()
            .to_string()
            .contains("element counts differ"));
    }
}
