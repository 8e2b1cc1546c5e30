//! Matrix products: `matmul` (2-d, or batched 3-d with equal batches, with transposed operands)
//! and `linear` (x @ W^T over any leading dimensions, a composite of reshape and matmul).

use nanochat_kernels::matmul::{matmul as matmul_kernel, MatmulShape};

use super::reshape;
use crate::autograd::recording;
use crate::{CoreError, Result, Tape, Tensor};

fn shape_of(a: &Tensor, b: &Tensor, trans_a: bool, trans_b: bool) -> Result<MatmulShape> {
    let err = |why: &str| CoreError::shape("matmul", &[a.shape(), b.shape()], why);
    let (batch, ar, ac, br, bc) = match (a.shape(), b.shape()) {
        (&[ar, ac], &[br, bc]) => (1, ar, ac, br, bc),
        (&[ba, ar, ac], &[bb, br, bc]) if ba == bb => (ba, ar, ac, br, bc),
        (&[_, _, _], &[_, _, _]) => return Err(err("batch sizes differ")),
        _ => return Err(err("operands must both be 2-d or both 3-d")),
    };
    let (m, k) = if trans_a { (ac, ar) } else { (ar, ac) };
    let (k2, n) = if trans_b { (bc, br) } else { (br, bc) };
    if k != k2 {
        return Err(err(&format!("inner dimensions {k} and {k2} differ")));
    }
    Ok(MatmulShape::batched(batch, m, n, k, trans_a, trans_b))
}

fn matmul_raw(a: &Tensor, b: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
    crate::tensor::same_kind("matmul", &[a, b])?;
    let s = shape_of(a, b, trans_a, trans_b)?;
    let shape: Vec<usize> = if a.rank() == 3 {
        vec![s.batch, s.m, s.n]
    } else {
        vec![s.m, s.n]
    };
    launch_wrap!(a, &shape, F, c => matmul_kernel::<F>(c, a.handle(), b.handle(), &s))
}

/// `op(a) @ op(b)` where `op` transposes the last two axes when asked.
pub fn matmul(
    tape: Option<&Tape>,
    a: &Tensor,
    b: &Tensor,
    trans_a: bool,
    trans_b: bool,
) -> Result<Tensor> {
    let c = matmul_raw(a, b, trans_a, trans_b)?;
    if let Some(t) = recording(tape, &[a, b]) {
        let (a2, b2) = (a.clone(), b.clone());
        t.record("matmul", &[a, b], &c, move |g, sink| {
            if sink.wants(0) {
                // dA = dC op(B)^T, or (A stored transposed) op(B) dC^T.
                let da = if trans_a {
                    matmul_raw(&b2, g, trans_b, true)?
                } else {
                    matmul_raw(g, &b2, false, !trans_b)?
                };
                sink.add(0, da)?;
            }
            if sink.wants(1) {
                // dB = op(A)^T dC, or (B stored transposed) dC^T op(A).
                let db = if trans_b {
                    matmul_raw(g, &a2, true, trans_a)?
                } else {
                    matmul_raw(&a2, g, !trans_a, false)?
                };
                sink.add(1, db)?;
            }
            Ok(())
        });
    }
    Ok(c)
}

/// nanochat's Linear without bias: `x @ w^T` with `w` (out, in) and `x` (..., in).
pub fn linear(tape: Option<&Tape>, x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (out_f, in_f) = w.dims2()?;
    let (rows, cols) = x.rows_cols();
    if cols != in_f {
        return Err(CoreError::shape(
            "linear",
            &[x.shape(), w.shape()],
            format!("input has {cols} features, weight takes {in_f}"),
        ));
    }
    let x2 = reshape(tape, x, &[rows, cols])?;
    let y = matmul(tape, &x2, w, false, true)?;
    let mut shape = x.shape().to_vec();
    *shape.last_mut().expect("rank >= 1") = out_f;
    reshape(tape, &y, &shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::*;
    use nanochat_kernels::matmul::matmul_ref;

    gradcheck_test!(matmul_gradcheck(batch in 0usize..3, m in 1usize..6, n in 1usize..6, k in 1usize..7, ta in any::<bool>(), tb in any::<bool>(), seed in any::<u64>()) {
        let mut r = rng(seed);
        let lead: Vec<usize> = if batch == 0 { vec![] } else { vec![batch] };
        let a_shape: Vec<usize> = lead.iter().copied().chain(if ta { [k, m] } else { [m, k] }).collect();
        let b_shape: Vec<usize> = lead.iter().copied().chain(if tb { [n, k] } else { [k, n] }).collect();
        let a = Input::random(&mut r, &a_shape, -1.0, 1.0);
        let b = Input::random(&mut r, &b_shape, -1.0, 1.0);
        let s = MatmulShape::batched(batch.max(1), m, n, k, ta, tb);
        check!(&format!("{s:?}"), &[a, b], |t, xs| matmul(t, &xs[0], &xs[1], ta, tb), move |xs| matmul_ref(&xs[0], &xs[1], &s), seed)?;
    });

    gradcheck_test!(linear_gradcheck(b in 1usize..3, t_len in 1usize..4, i in 1usize..6, o in 1usize..6, seed in any::<u64>()) {
        let mut r = rng(seed);
        let x = Input::random(&mut r, &[b, t_len, i], -1.0, 1.0);
        let w = Input::random(&mut r, &[o, i], -1.0, 1.0);
        let s = MatmulShape::new(b * t_len, o, i, false, true);
        check!("linear", &[x, w], |t, xs| linear(t, &xs[0], &xs[1]), move |xs| matmul_ref(&xs[0], &xs[1], &s), seed)?;
    });

    #[test]
    fn mismatched_shapes_are_errors() {
        let dev = crate::Device::cpu().unwrap();
        let a = Tensor::zeros(&dev, &[2, 3], crate::DType::F32).unwrap();
        let b = Tensor::zeros(&dev, &[4, 5], crate::DType::F32).unwrap();
        let e = matmul(None, &a, &b, false, false).unwrap_err().to_string();
        assert!(e.contains("inner dimensions 3 and 4"), "{e}");
        assert!(linear(None, &a, &b)
            .unwrap_err()
            .to_string()
            .contains("weight takes 5"));
    }
}
