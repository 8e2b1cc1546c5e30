//! Shape ops: reshape (a free view of the same buffer), transpose of the last two axes, casts
//! between dtypes; and, for inference, narrowing an axis and writing rows in place (a KV cache).

use nanochat_kernels::layout::{
    slice_cols, transpose as transpose_kernel, write_rows as write_rows_kernel,
};
use nanochat_kernels::{elementwise, DType};

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
    let mut shape = x.shape().to_vec();
    shape.swap(r - 2, r - 1);
    launch_wrap!(x, &shape, F, c => transpose_kernel::<F>(c, x.handle(), batch, rows, cols))
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

/// Rounds the values of an f32 tensor to the nearest bf16 (ties to even), in place, keeping its
/// f32 buffer: what storing it in bfloat16 does (nanochat HEAD keeps `wte` and the value
/// embeddings in bf16 and writes its f32 AdamW maths back into them). A bf16 tensor is left
/// as it is. Records nothing on a tape.
pub fn round_bf16_in_place(x: &Tensor) -> Result<()> {
    if x.dtype() != DType::F32 || x.is_empty() {
        return Ok(());
    }
    let rounded = cast_raw(&cast_raw(x, DType::BF16)?, DType::F32)?;
    let c = x.device().client();
    elementwise::axpby_inplace::<f32>(c, x.handle(), rounded.handle(), x.len(), 0.0, 1.0)?;
    Ok(())
}

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

/// Positions `start..start + len` of axis `dim` of `x`, as a contiguous tensor whose axis `dim`
/// has `len` positions (nanochat's `x[:, start:start + len]` for `dim` 1); `x` itself when that
/// is the whole axis. Inference only: records nothing on a tape.
///
/// Errors: `dim` beyond `x`'s rank, or positions past the axis' end.
pub fn narrow(x: &Tensor, dim: usize, start: usize, len: usize) -> Result<Tensor> {
    let shape = x.shape();
    if dim >= shape.len() || start + len > shape[dim] {
        return Err(CoreError::shape(
            "narrow",
            &[shape],
            format!(
                "positions {start}..{} of axis {dim} out of range",
                start + len
            ),
        ));
    }
    if start == 0 && len == shape[dim] {
        return Ok(x.clone());
    }
    // The (rows, cols) view whose columns start * inner .. (start + len) * inner are kept.
    let rows: usize = shape[..dim].iter().product();
    let inner: usize = shape[dim + 1..].iter().product();
    let mut out = shape.to_vec();
    out[dim] = len;
    launch_wrap!(x, &out, F, c => slice_cols::<F>(c, x.handle(), rows, shape[dim] * inner, start * inner, len * inner))
}

/// Writes `src` (B, T, ...) into `dst` (B, S, ...) at positions `pos..pos + T` of axis 1, in
/// place: a KV cache append (nanochat's `KVCache.insert_kv`). Inference only: records nothing.
///
/// Errors: shapes that differ but for axis 1, different dtypes or devices, or
/// `pos + T > S`.
pub fn write_rows(dst: &Tensor, src: &Tensor, pos: usize) -> Result<()> {
    let (ds, ss) = (dst.shape(), src.shape());
    if ds.len() < 2 || ds.len() != ss.len() || ds[0] != ss[0] || ds[2..] != ss[2..] {
        return Err(CoreError::shape(
            "write_rows",
            &[ds, ss],
            "need dst (B, S, ...) and src (B, T, ...) alike but for axis 1",
        ));
    }
    crate::tensor::same_kind("write_rows", &[dst, src])?;
    let row = ss[2..].iter().product();
    launch!(dst, F, c => write_rows_kernel::<F>(c, dst.handle(), ds[1], src.handle(), ss[0], ss[1], row, pos))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::*;

    gradcheck_test!(shape_ops_gradcheck(b in 1usize..3, r in 1usize..6, c in 1usize..7, seed in any::<u64>()) {
        let x = [Input::random(&mut rng(seed), &[b, r, c], -2.0, 2.0)];
        check!("reshape", &x, |t, xs| reshape(t, &xs[0], &[b * r, c]), |xs| xs[0].clone(), seed)?;
        check!("transpose", &x, |t, xs| transpose(t, &xs[0]), move |xs| nanochat_kernels::layout::transpose_ref(&xs[0], b, r, c), seed)?;
        // f32 -> bf16 -> f32 with gradients flowing back through both casts (bf16 rounding of
        // the forward is within the tolerance of a gradient of 1).
        let tol = Tolerance { atol: 1e-2, rtol: 1e-2, h: 1e-2 };
        check!("cast", &x, |t, xs| cast(t, &cast(t, &xs[0], DType::BF16)?, DType::F32), |xs| xs[0].clone(), seed, tol)?;
    });

    /// `narrow` keeps the positions asked for, of any axis; `write_rows` writes them back.
    #[test]
    fn narrow_and_write_rows_agree_with_indexing() {
        let dev = crate::Device::cpu().unwrap();
        let (b, t, c) = (2usize, 5usize, 3usize);
        let vals: Vec<f32> = (0..b * t * c).map(|i| i as f32).collect();
        let x = Tensor::from_f32(&dev, &vals, &[b, t, c], DType::F32).unwrap();
        let at = |bi: usize, ti: usize, ci: usize| vals[(bi * t + ti) * c + ci];
        let y = narrow(&x, 1, 3, 2).unwrap();
        assert_eq!(y.shape(), &[b, 2, c]);
        let want: Vec<f32> = (0..b)
            .flat_map(|bi| (3..5).flat_map(move |ti| (0..c).map(move |ci| (bi, ti, ci))))
            .map(|(bi, ti, ci)| at(bi, ti, ci))
            .collect();
        assert_eq!(y.to_vec_f32().unwrap(), want);
        let z = narrow(&x, 2, 1, 1).unwrap();
        assert_eq!(z.shape(), &[b, t, 1]);
        let want: Vec<f32> = (0..b * t).map(|r| vals[r * c + 1]).collect();
        assert_eq!(z.to_vec_f32().unwrap(), want);
        assert_eq!(narrow(&x, 1, 0, t).unwrap().id(), x.id());
        assert!(narrow(&x, 1, 4, 2).is_err());
        assert!(narrow(&x, 3, 0, 1).is_err());

        let dst = Tensor::zeros(&dev, &[b, t, c], DType::F32).unwrap();
        write_rows(&dst, &y, 3).unwrap();
        let got = dst.to_vec_f32().unwrap();
        for (i, (g, v)) in got.iter().zip(&vals).enumerate() {
            let ti = i / c % t;
            assert_eq!(*g, if ti >= 3 { *v } else { 0.0 }, "element {i}");
        }
        assert!(write_rows(&dst, &y, 4).is_err(), "past the capacity");
        assert!(write_rows(&dst, &z, 0).is_err(), "rows of another width");
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
