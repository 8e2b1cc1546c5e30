//! Element-wise ops with numpy broadcasting: add, sub, mul, div; and the unary maps the model
//! needs (exp, log, tanh, relu^2, the logit softcap, scale/affine, neg, square).

use nanochat_kernels::elementwise::{Binary, Unary};

use super::{map, reduce_to, zip};
use crate::autograd::recording;
use crate::{Result, Tape, Tensor};

/// Records a broadcasting binary op whose input gradients are `ga(g)` and `gb(g)`, each summed
/// back over broadcast dimensions.
fn binary_op(
    tape: Option<&Tape>,
    name: &'static str,
    a: &Tensor,
    b: &Tensor,
    op: Binary,
    grads: impl FnOnce(&Tensor, &Tensor, &Tensor, bool, bool) -> Result<(Option<Tensor>, Option<Tensor>)>
        + 'static,
) -> Result<Tensor> {
    let y = zip(a, b, op, 0.0, 0.0)?;
    if let Some(t) = recording(tape, &[a, b]) {
        let (a2, b2) = (a.clone(), b.clone());
        t.record(name, &[a, b], &y, move |g, sink| {
            let (ga, gb) = grads(g, &a2, &b2, sink.wants(0), sink.wants(1))?;
            if let Some(ga) = ga {
                sink.add(0, reduce_to(&ga, a2.shape())?)?;
            }
            if let Some(gb) = gb {
                sink.add(1, reduce_to(&gb, b2.shape())?)?;
            }
            Ok(())
        });
    }
    Ok(y)
}

/// `a + b` with numpy broadcasting (`torch.add`); the output has the broadcast shape.
///
/// Errors: [`CoreError::Kernel`](crate::CoreError::Kernel) naming the op and both shapes when they
/// do not broadcast.
pub fn add(tape: Option<&Tape>, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary_op(tape, "add", a, b, Binary::Add, |g, _, _, wa, wb| {
        Ok((wa.then(|| g.clone()), wb.then(|| g.clone())))
    })
}

/// `a - b` with numpy broadcasting (`torch.sub`); errors as [`add`].
pub fn sub(tape: Option<&Tape>, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary_op(tape, "sub", a, b, Binary::Sub, |g, _, _, wa, wb| {
        Ok((
            wa.then(|| g.clone()),
            if wb { Some(map(g, Unary::Neg)?) } else { None },
        ))
    })
}

/// `a * b` element-wise with numpy broadcasting (`torch.mul`); errors as [`add`].
pub fn mul(tape: Option<&Tape>, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary_op(tape, "mul", a, b, Binary::Mul, |g, a, b, wa, wb| {
        let ga = if wa {
            Some(zip(g, b, Binary::Mul, 0.0, 0.0)?)
        } else {
            None
        };
        let gb = if wb {
            Some(zip(g, a, Binary::Mul, 0.0, 0.0)?)
        } else {
            None
        };
        Ok((ga, gb))
    })
}

/// `a / b` element-wise with numpy broadcasting (`torch.div`); errors as [`add`].
pub fn div(tape: Option<&Tape>, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary_op(tape, "div", a, b, Binary::Div, |g, a, b, wa, wb| {
        let g_over_b = zip(g, b, Binary::Div, 0.0, 0.0)?;
        // d(a/b)/db = -a/b^2 = -(g/b) * (a/b)
        let gb = if wb {
            let a_over_b = zip(a, b, Binary::Div, 0.0, 0.0)?;
            Some(map(
                &zip(&g_over_b, &a_over_b, Binary::Mul, 0.0, 0.0)?,
                Unary::Neg,
            )?)
        } else {
            None
        };
        Ok((wa.then_some(g_over_b), gb))
    })
}

/// Records a unary op whose input gradient is `grad(g, x, y)`.
fn unary_op(
    tape: Option<&Tape>,
    name: &'static str,
    x: &Tensor,
    op: Unary,
    grad: impl FnOnce(&Tensor, &Tensor, &Tensor) -> Result<Tensor> + 'static,
) -> Result<Tensor> {
    let y = map(x, op)?;
    if let Some(t) = recording(tape, &[x]) {
        let (x2, y2) = (x.clone(), y.clone());
        t.record(name, &[x], &y, move |g, sink| {
            sink.add(0, grad(g, &x2, &y2)?)
        });
    }
    Ok(y)
}

/// `exp(x)` element-wise, any shape.
pub fn exp(tape: Option<&Tape>, x: &Tensor) -> Result<Tensor> {
    unary_op(tape, "exp", x, Unary::Exp, |g, _, y| {
        zip(g, y, Binary::Mul, 0.0, 0.0)
    })
}

/// Natural logarithm element-wise, any shape (`-inf` at 0, NaN below, as `torch.log`).
pub fn log(tape: Option<&Tape>, x: &Tensor) -> Result<Tensor> {
    unary_op(tape, "log", x, Unary::Log, |g, x, _| {
        zip(g, x, Binary::Div, 0.0, 0.0)
    })
}

/// `tanh(x)` element-wise, any shape.
pub fn tanh(tape: Option<&Tape>, x: &Tensor) -> Result<Tensor> {
    // d tanh = 1 - y^2: the softcap backward with cap 1.
    unary_op(tape, "tanh", x, Unary::Tanh, |g, _, y| {
        zip(y, g, Binary::SoftcapBackward, 1.0, 0.0)
    })
}

/// relu(x)^2, the MLP activation.
pub fn relu2(tape: Option<&Tape>, x: &Tensor) -> Result<Tensor> {
    unary_op(tape, "relu2", x, Unary::Relu2, |g, x, _| {
        zip(x, g, Binary::Relu2Backward, 0.0, 0.0)
    })
}

/// cap * tanh(x / cap), the logit softcap.
pub fn softcap(tape: Option<&Tape>, x: &Tensor, cap: f32) -> Result<Tensor> {
    unary_op(
        tape,
        "softcap",
        x,
        Unary::Softcap { cap },
        move |g, _, y| zip(y, g, Binary::SoftcapBackward, 1.0 / cap, 0.0),
    )
}

/// mul * x + add.
pub fn affine(tape: Option<&Tape>, x: &Tensor, mul: f32, add: f32) -> Result<Tensor> {
    unary_op(
        tape,
        "affine",
        x,
        Unary::Affine { mul, add },
        move |g, _, _| map(g, Unary::Affine { mul, add: 0.0 }),
    )
}

/// s * x.
pub fn scale(tape: Option<&Tape>, x: &Tensor, s: f32) -> Result<Tensor> {
    affine(tape, x, s, 0.0)
}

/// `-x` element-wise, any shape.
pub fn neg(tape: Option<&Tape>, x: &Tensor) -> Result<Tensor> {
    unary_op(tape, "neg", x, Unary::Neg, |g, _, _| map(g, Unary::Neg))
}

/// `x * x` element-wise, any shape.
pub fn square(tape: Option<&Tape>, x: &Tensor) -> Result<Tensor> {
    unary_op(tape, "square", x, Unary::Square, |g, x, _| {
        map(
            &zip(g, x, Binary::Mul, 0.0, 0.0)?,
            Unary::Affine { mul: 2.0, add: 0.0 },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::*;
    use nanochat_kernels::broadcast::binary_broadcast_ref;

    fn bin_ref(op: Binary, sa: Vec<usize>, sb: Vec<usize>) -> impl Fn(&[Vec<f64>]) -> Vec<f64> {
        move |xs| binary_broadcast_ref(&xs[0], &sa, &xs[1], &sb, op, 0.0, 0.0).0
    }

    /// Broadcast pairs: equal shapes, a row vector, a column, a scalar, leading dims.
    fn shapes() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
        (1usize..4, 1usize..6, 0usize..5).prop_map(|(r, c, kind)| match kind {
            0 => (vec![r, c], vec![r, c]),
            1 => (vec![r, c], vec![c]),
            2 => (vec![r, c], vec![r, 1]),
            3 => (vec![r, c], vec![]),
            _ => (vec![2, 1, c], vec![r, c]),
        })
    }

    type BinFn = fn(Option<&Tape>, &Tensor, &Tensor) -> Result<Tensor>;

    gradcheck_test!(binary_ops_gradcheck((sa, sb) in shapes(), seed in any::<u64>()) {
        let cases: [(BinFn, Binary); 4] = [(add, Binary::Add), (sub, Binary::Sub), (mul, Binary::Mul), (div, Binary::Div)];
        for (f, op) in cases {
            let mut r = rng(seed);
            let a = Input::random(&mut r, &sa, -2.0, 2.0);
            // Divisors kept away from zero.
            let b = if op == Binary::Div { Input::random(&mut r, &sb, 0.5, 2.0) } else { Input::random(&mut r, &sb, -2.0, 2.0) };
            check!(&format!("{op:?} {sa:?} {sb:?}"), &[a, b], |t, xs| f(t, &xs[0], &xs[1]), bin_ref(op, sa.clone(), sb.clone()), seed)?;
        }
    });

    gradcheck_test!(unary_ops_gradcheck(rows in 1usize..4, cols in 1usize..9, seed in any::<u64>()) {
        type UnFn = Box<dyn Fn(Option<&Tape>, &Tensor) -> Result<Tensor> + Sync>;
        let cases: Vec<(UnFn, Unary, f64, f64)> = vec![
            (Box::new(exp), Unary::Exp, -2.0, 2.0),
            (Box::new(log), Unary::Log, 0.5, 3.0),
            (Box::new(tanh), Unary::Tanh, -2.0, 2.0),
            (Box::new(relu2), Unary::Relu2, -2.0, 2.0),
            (Box::new(|t, x| softcap(t, x, 3.0)), Unary::Softcap { cap: 3.0 }, -8.0, 8.0),
            (Box::new(|t, x| affine(t, x, -1.5, 0.25)), Unary::Affine { mul: -1.5, add: 0.25 }, -2.0, 2.0),
            (Box::new(neg), Unary::Neg, -2.0, 2.0),
            (Box::new(square), Unary::Square, -2.0, 2.0),
        ];
        for (f, op, lo, hi) in cases {
            let mut x = Input::random(&mut rng(seed), &[rows, cols], lo, hi);
            if op == Unary::Relu2 {
                // Keep away from the kink at 0, where finite differences straddle it.
                x.values.iter_mut().for_each(|v| if v.abs() < 0.05 { *v += 0.1 });
            }
            check!(&format!("{op:?}"), &[x], |t, xs| f(t, &xs[0]), move |xs| xs[0].iter().map(|&v| op.eval(v)).collect(), seed)?;
        }
    });

    #[test]
    fn repeated_use_accumulates() {
        // d/dx sum(x * x + x) = 2x + 1
        let dev = crate::Device::cpu().unwrap();
        let tape = Tape::new();
        let x = tape.watch(&Tensor::from_f32(&dev, &[1.0, -2.0], &[2], crate::DType::F32).unwrap());
        let y = add(Some(&tape), &mul(Some(&tape), &x, &x).unwrap(), &x).unwrap();
        let loss = crate::ops::sum(Some(&tape), &y).unwrap();
        let g = tape.backward(&loss).unwrap();
        assert_eq!(g.get(&x).unwrap().to_vec_f32().unwrap(), vec![3.0, -3.0]);
    }

    #[test]
    fn inference_records_nothing() {
        let dev = crate::Device::cpu().unwrap();
        let tape = Tape::new();
        let x = Tensor::from_f32(&dev, &[1.0, 2.0], &[2], crate::DType::F32).unwrap();
        // Nothing watched: nothing to record.
        let _ = exp(Some(&tape), &x).unwrap();
        assert!(tape.is_empty());
        let _ = exp(None, &x).unwrap();
    }
}
