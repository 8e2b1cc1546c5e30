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

/// `op(full, small)` (or `op(small, full)` when `small_first`) where each `run` consecutive
/// elements of `full` (a multiple of the vector width) meet one element of `small`: a scalar
/// operand (`run` = the whole length) or one value per row (`run` = the row length).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn binary_runs_kernel<F: Float, N: Size>(
    full: &[Vector<F, N>],
    small: &[F],
    output: &mut [Vector<F, N>],
    a: f32,
    b: f32,
    run: usize,
    steps: usize,
    #[comptime] op: Binary,
    #[comptime] small_first: bool,
    #[comptime] blocked: bool,
) {
    let lanes = N::value();
    for s in 0..steps {
        let i = item_index(s, steps, blocked);
        if i < output.len() {
            let x = Vector::<f32, N>::cast_from(full[i]);
            let y = Vector::<f32, N>::new(f32::cast_from(small[i * lanes / run]));
            output[i] = Vector::cast_from(apply_ordered::<N>(x, y, a, b, op, small_first));
        }
    }
}

/// `op(full, small)` (or `op(small, full)` when `small_first`) where `small` is one row of
/// `small_vecs` vectors repeated over every row of `full` (a per-channel operand), or one such
/// row per group of `group_vecs` vectors of `full` (a stack of matrices, each scaling its
/// columns by its own row).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn binary_rows_kernel<F: Float, N: Size>(
    full: &[Vector<F, N>],
    small: &[Vector<F, N>],
    output: &mut [Vector<F, N>],
    a: f32,
    b: f32,
    small_vecs: usize,
    group_vecs: usize,
    steps: usize,
    #[comptime] op: Binary,
    #[comptime] small_first: bool,
    #[comptime] blocked: bool,
) {
    for s in 0..steps {
        let i = item_index(s, steps, blocked);
        if i < output.len() {
            let x = Vector::<f32, N>::cast_from(full[i]);
            let y =
                Vector::<f32, N>::cast_from(small[(i / group_vecs) * small_vecs + i % small_vecs]);
            output[i] = Vector::cast_from(apply_ordered::<N>(x, y, a, b, op, small_first));
        }
    }
}

/// `op(full, small)`, or `op(small, full)` when `small_first`.
#[cube]
fn apply_ordered<N: Size>(
    full: Vector<f32, N>,
    small: Vector<f32, N>,
    a: f32,
    b: f32,
    #[comptime] op: Binary,
    #[comptime] small_first: bool,
) -> Vector<f32, N> {
    if comptime![small_first] {
        apply_binary::<N>(small, full, a, b, op)
    } else {
        apply_binary::<N>(full, small, a, b, op)
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
    let (view, xs, ys) = collapse(&view, &xs, &ys);
    let es = dtype.size();
    match Pattern::of(&view, &xs, &ys) {
        Pattern::Same => return Ok((binary::<F>(client, x, y, len, op, a, b)?, out_shape)),
        Pattern::Runs {
            run,
            small_first,
            rows,
            group,
        } => {
            let (full, small) = if small_first { (y, x) } else { (x, y) };
            let vs = launch::vector_size(client, es, &[len, run, group]);
            let g = launch::elemwise(&DeviceInfo::of(client), len / vs);
            let bufs = launch::VecBuffers::new("binary_broadcast", vs, es);
            let (afull, aout) = (
                bufs.vecs("full", full, len)?,
                bufs.vecs("output", &out, len)?,
            );
            if rows {
                let asmall = bufs.vecs("small", small, run * (len / group))?;
                launch::launch_on!(binary_rows_kernel::<F>, client, g, vs; afull, asmall, aout, a, b, run / vs, group / vs, g.steps, op, small_first, g.blocked);
            } else {
                let asmall = bufs.scalars("small", small, len / run)?;
                launch::launch_on!(binary_runs_kernel::<F>, client, g, vs; afull, asmall, aout, a, b, run, g.steps, op, small_first, g.blocked);
            }
            return Ok((out, out_shape));
        }
        Pattern::General => {}
    }
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

/// The broadcast view with its size-1 dimensions dropped and each dimension merged into the
/// one outside it where both operands step through the pair as through one dimension (stride 0
/// in both, or contiguous in both): `[3, 5, 7]` against `[3, 5, 1]` is `[15, 7]` against
/// `[15, 1]`. Rank 0 comes back as `[1]`.
fn collapse(view: &[usize], xs: &[usize], ys: &[usize]) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let (mut d, mut a, mut b): (Vec<usize>, Vec<usize>, Vec<usize>) = (vec![], vec![], vec![]);
    for i in 0..view.len() {
        if view[i] == 1 {
            continue;
        }
        if let (Some(n), Some(sa), Some(sb)) = (d.last_mut(), a.last_mut(), b.last_mut()) {
            if *sa == xs[i] * view[i] && *sb == ys[i] * view[i] {
                *n *= view[i];
                *sa = xs[i];
                *sb = ys[i];
                continue;
            }
        }
        d.push(view[i]);
        a.push(xs[i]);
        b.push(ys[i]);
    }
    if d.is_empty() {
        return (vec![1], vec![1], vec![1]);
    }
    (d, a, b)
}

/// Which kernel a collapsed broadcast takes.
#[derive(Debug, PartialEq)]
enum Pattern {
    /// Both operands are the whole output (their shapes differed only by size-1 dimensions).
    Same,
    /// One operand is the whole output and the other, the small one, is a scalar or one value
    /// per row (`rows` false: each value meets `run` consecutive elements), or one row repeated
    /// (`rows` true: `run` is the row length), over the whole output or over each `group`
    /// consecutive elements with a row of its own (a stack of matrices; `group` is the whole
    /// length otherwise).
    Runs {
        run: usize,
        small_first: bool,
        rows: bool,
        group: usize,
    },
    /// Anything else: the strided kernel.
    General,
}

impl Pattern {
    fn of(view: &[usize], xs: &[usize], ys: &[usize]) -> Pattern {
        let len: usize = view.iter().product();
        let full = |s: &[usize]| s == contiguous_strides(view).as_slice();
        let pick = |small: &[usize], small_first: bool| match (view, small) {
            ([_], [0]) => Pattern::Runs {
                run: len,
                small_first,
                rows: false,
                group: len,
            },
            ([_, c], [1, 0]) => Pattern::Runs {
                run: *c,
                small_first,
                rows: false,
                group: len,
            },
            ([_, c], [0, 1]) => Pattern::Runs {
                run: *c,
                small_first,
                rows: true,
                group: len,
            },
            ([_, r, c], [cs, 0, 1]) if cs == c => Pattern::Runs {
                run: *c,
                small_first,
                rows: true,
                group: r * c,
            },
            _ => Pattern::General,
        };
        match (full(xs), full(ys)) {
            (true, true) => Pattern::Same,
            (true, false) => pick(ys, false),
            (false, true) => pick(xs, true),
            (false, false) => Pattern::General,
        }
    }
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
    // Every kernel: the strided one, scalars, one value per row and one row repeated, with
    // the small operand on either side, at odd sizes and at sizes that vectorise.
    let cases: [(&[usize], &[usize]); 18] = [
        (&[3, 5, 7], &[3, 5, 1]),
        (&[3, 1, 7], &[5, 1]),
        (&[1], &[13, 3]),
        (&[2, 3, 1, 5], &[1, 3, 7, 1]),
        (&[9, 1], &[9, 1]),
        (&[1, 1, 1], &[1]),
        (&[2, 4, 32], &[1]),
        (&[1, 1], &[3, 64]),
        (&[4, 32], &[32]),
        (&[1, 48], &[2, 3, 48]),
        (&[2, 3, 32], &[2, 3, 1]),
        (&[5, 1], &[5, 7]),
        (&[2, 3, 32], &[2, 1, 32]),
        (&[3, 1, 48], &[3, 5, 48]),
        (&[4, 3, 5], &[4, 1, 5]),
        (&[3, 1, 5], &[3, 5]),
        (&[2, 1, 2, 16], &[2, 4, 1, 1]),
        (&[7], &[3, 7]),
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

    /// The collapsed view and the kernel each broadcast of the model takes.
    #[test]
    fn broadcasts_collapse_to_their_kernel() {
        use super::{broadcast_view, collapse, Pattern};
        let pattern = |x: &[usize], y: &[usize]| {
            let out = super::broadcast_shape("t", x, y).unwrap();
            let (v, xs, ys) = broadcast_view(&out, x, y);
            let (v, xs, ys) = collapse(&v, &xs, &ys);
            let p = Pattern::of(&v, &xs, &ys);
            (v, p)
        };
        let runs = |run, small_first, rows| Pattern::Runs {
            run,
            small_first,
            rows,
            group: 0,
        };
        let pattern = |x: &[usize], y: &[usize]| {
            let (v, p) = pattern(x, y);
            // Whole-output runs: the group is the length.
            let len: usize = v.iter().product();
            let p = match p {
                Pattern::Runs {
                    run,
                    small_first,
                    rows,
                    group,
                } if group == len => runs(run, small_first, rows),
                p => p,
            };
            (v, p)
        };
        // resid_lambdas[i] * x: a scalar times (B, T, C).
        assert_eq!(
            pattern(&[1], &[2, 8, 16]),
            (vec![256], runs(256, true, false))
        );
        // The smear and value-embedding gates: one value per row.
        assert_eq!(
            pattern(&[2, 8, 16], &[2, 8, 1]),
            (vec![16, 16], runs(16, false, false))
        );
        assert_eq!(
            pattern(&[2, 8, 4, 1], &[2, 8, 4, 32]),
            (vec![64, 32], runs(32, true, false))
        );
        // A per-channel operand: one row repeated.
        assert_eq!(
            pattern(&[2, 8, 16], &[16]),
            (vec![16, 16], runs(16, false, true))
        );
        // Shapes that differ only by size-1 dimensions.
        assert_eq!(pattern(&[1, 3, 5], &[3, 5]), (vec![15], Pattern::Same));
        // Both broadcast: the strided kernel, on the merged view.
        assert_eq!(
            pattern(&[3, 1, 7], &[5, 1]),
            (vec![3, 5, 7], Pattern::General)
        );
        // One row per matrix of a stack (NorMuon's per-column scale of stacked matrices).
        assert_eq!(
            pattern(&[2, 3, 32], &[2, 1, 32]),
            (
                vec![2, 3, 32],
                Pattern::Runs {
                    run: 32,
                    small_first: false,
                    rows: true,
                    group: 96
                }
            )
        );
    }

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
