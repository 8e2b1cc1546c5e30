//! Binary ops with numpy broadcasting: operands are read through strides with 0 on broadcast
//! dimensions; equal shapes take the vectorised path of `elementwise::binary`.

use cubecl::prelude::*;

use crate::check::{f64s, Check, Ctx};
use crate::device::DeviceInfo;
use crate::dtype::KernelFloat;
use crate::elementwise::{apply_binary, binary, binary_operands, Binary, BINARY_OPS};
use crate::launch::{self, item_index};
use crate::{Client, Handle, KernelError, Result};

/// Broadcasting binary op: `lhs` and `rhs` carry the output's rank and shape with stride 0 on
/// broadcast dimensions; the output is contiguous.
#[cube(launch)]
fn binary_broadcast_kernel<F: Float>(
    lhs: &Tensor<F>,
    rhs: &Tensor<F>,
    output: &mut Tensor<F>,
    a: f32,
    b: f32,
    steps: usize,
    #[comptime] op: Binary,
    #[comptime] blocked: bool,
) {
    let rank = output.rank();
    for s in 0..steps {
        let i = item_index(s, steps, blocked);
        if i < output.len() {
            let mut rem = i;
            let mut li = 0;
            let mut ri = 0;
            let mut d = rank;
            while d > 0 {
                d -= 1;
                let dim = output.shape(d);
                let c = rem % dim;
                rem /= dim;
                li += c * lhs.stride(d);
                ri += c * rhs.stride(d);
            }
            let x = Vector::<f32, Const<1>>::cast_from(lhs[li]);
            let y = Vector::<f32, Const<1>>::cast_from(rhs[ri]);
            let r = apply_binary::<Const<1>>(x, y, a, b, op);
            output[i] = F::cast_from(r.extract(0usize));
        }
    }
}

/// The shape two shapes broadcast to (numpy rules, aligned on the right), or an error.
pub fn broadcast_shape(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(KernelError::shape(
                    op,
                    &[a, b],
                    format!("dimension {i} is {da} vs {db}, neither is 1"),
                ))
            }
        };
    }
    Ok(out)
}

/// Strides of a contiguous tensor of `shape` viewed with the broadcast `out_shape`: 0 where the
/// tensor has size 1 (or is missing) and the output does not.
pub fn broadcast_strides(shape: &[usize], out_shape: &[usize]) -> Vec<usize> {
    let rank = out_shape.len();
    let own = contiguous_strides(shape);
    (0..rank)
        .map(|i| {
            if i + shape.len() < rank {
                return 0;
            }
            let j = i + shape.len() - rank;
            if shape[j] == 1 && out_shape[i] != 1 {
                0
            } else {
                own[j]
            }
        })
        .collect()
}

/// Row-major strides of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// `op(x, y)` with numpy broadcasting of two contiguous tensors; returns the output and its
/// shape. Equal shapes take the vectorised path.
pub fn binary_broadcast<F: KernelFloat>(
    client: &Client,
    (x, x_shape): (&Handle, &[usize]),
    (y, y_shape): (&Handle, &[usize]),
    op: Binary,
    a: f32,
    b: f32,
) -> Result<(Handle, Vec<usize>)> {
    let out_shape = broadcast_shape("binary_broadcast", x_shape, y_shape)?;
    if x_shape == y_shape {
        let len = x_shape.iter().product();
        return Ok((binary::<F>(client, x, y, len, op, a, b)?, out_shape));
    }
    let dtype = F::DTYPE;
    launch::check_size("binary_broadcast", "lhs", x, x_shape, dtype)?;
    launch::check_size("binary_broadcast", "rhs", y, y_shape, dtype)?;
    let len: usize = out_shape.iter().product();
    let out = client.empty(len * dtype.size());
    if len == 0 {
        return Ok((out, out_shape));
    }
    let (view, xs, ys) = broadcast_view(&out_shape, x_shape, y_shape);
    let es = dtype.size();
    let g = launch::elemwise(&DeviceInfo::of(client), len);
    binary_broadcast_kernel::launch::<F>(
        client,
        g.cube_count,
        g.cube_dim,
        launch::binding("binary_broadcast", "lhs", x, &xs, &view, es)?.into_tensor_arg(),
        launch::binding("binary_broadcast", "rhs", y, &ys, &view, es)?.into_tensor_arg(),
        launch::binding(
            "binary_broadcast",
            "output",
            &out,
            &contiguous_strides(&view),
            &view,
            es,
        )?
        .into_tensor_arg(),
        a,
        b,
        g.steps,
        op,
        g.blocked,
    );
    Ok((out, out_shape))
}

/// The output view of a broadcast (`out_shape`, rank 0 viewed as rank 1) and the strides of
/// `x_shape` and `y_shape` broadcast to it.
fn broadcast_view(
    out_shape: &[usize],
    x_shape: &[usize],
    y_shape: &[usize],
) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let view = if out_shape.is_empty() {
        vec![1]
    } else {
        out_shape.to_vec()
    };
    let xs = broadcast_strides(x_shape, &view);
    let ys = broadcast_strides(y_shape, &view);
    (view, xs, ys)
}

/// Plain-Rust reference of [`binary_broadcast`].
pub fn binary_broadcast_ref(
    x: &[f64],
    x_shape: &[usize],
    y: &[f64],
    y_shape: &[usize],
    op: Binary,
    a: f64,
    b: f64,
) -> (Vec<f64>, Vec<usize>) {
    let out_shape = broadcast_shape("binary_broadcast_ref", x_shape, y_shape).expect("shapes");
    let (view, xs, ys) = broadcast_view(&out_shape, x_shape, y_shape);
    let len: usize = out_shape.iter().product();
    let out = (0..len)
        .map(|i| {
            let (mut rem, mut xi, mut yi) = (i, 0, 0);
            for d in (0..view.len()).rev() {
                let c = rem % view[d];
                rem /= view[d];
                xi += c * xs[d];
                yi += c * ys[d];
            }
            op.eval(x[xi], y[yi], a, b)
        })
        .collect();
    (out, out_shape)
}

pub(crate) fn checks() -> Vec<Check> {
    crate::check::check_list!["elementwise.broadcast" => check_broadcast]
}

fn check_broadcast(ctx: &mut Ctx) -> Result<()> {
    let cases: [(&[usize], &[usize]); 6] = [
        (&[3, 5, 7], &[3, 5, 1]),
        (&[3, 1, 7], &[5, 1]),
        (&[1], &[13, 3]),
        (&[2, 3, 1, 5], &[1, 3, 7, 1]),
        (&[9, 1], &[9, 1]),
        (&[1, 1, 1], &[1]),
    ];
    for op in BINARY_OPS {
        for (xs, ys) in cases {
            let (x, y) = binary_operands(ctx, op, xs.iter().product(), ys.iter().product());
            let (hx, hy) = (ctx.upload(&x), ctx.upload(&y));
            let (a, b) = (1.0 / 15.0, 0.5);
            let (out, shape) = crate::with_float!(ctx.dtype, F =>
                binary_broadcast::<F>(ctx.client, (&hx, xs), (&hy, ys), op, a, b))?;
            let got = ctx.download(&out)?;
            let (want, want_shape) =
                binary_broadcast_ref(&f64s(&x), xs, &f64s(&y), ys, op, a as f64, b as f64);
            assert_eq!(shape, want_shape);
            let tol = ctx.tol(4.0);
            let label = format!("{xs:?} with {ys:?}");
            ctx.compare(&format!("broadcast {op:?}"), &label, &got, &want, tol);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    crate::check::check_tests!(broadcast_matches_reference => "elementwise.broadcast");

    #[test]
    fn broadcast_shape_rules() {
        use super::broadcast_shape;
        assert_eq!(
            broadcast_shape("t", &[3, 1, 5], &[4, 1]).unwrap(),
            vec![3, 4, 5]
        );
        assert_eq!(broadcast_shape("t", &[], &[2]).unwrap(), vec![2]);
        assert!(broadcast_shape("t", &[3, 2], &[3]).is_err());
    }
}
