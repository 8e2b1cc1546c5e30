//! Softmax along the last axis, forward and backward (dx = y * (dy - sum(dy * y))), with f32
//! statistics. Cross-entropy has its own fused kernel (see `cross_entropy`).

use cubecl::prelude::*;

use crate::check::{f64s, Check, Ctx};
use crate::dtype::KernelFloat;
use crate::launch::{self, launch_rows, row_dot, row_index, row_max_sumexp};
use crate::reduce::ROW_SHAPES;
use crate::{Client, Handle, Result};

#[cube(launch)]
fn softmax_kernel<F: Float, N: Size>(
    x: &[Vector<F, N>],
    y: &mut [Vector<F, N>],
    rows: usize,
    cols: usize,
    #[comptime] plane: bool,
) {
    let row = row_index();
    if row < rows {
        let vecs = cols / N::value();
        let base = row * vecs;
        let (m, s) = row_max_sumexp::<F, N>(x, base, vecs, 0.0, false, false, plane);
        let mv = Vector::<f32, N>::new(m);
        let inv = Vector::<f32, N>::new(1.0 / s);
        let mut c = UNIT_POS_X as usize;
        while c < vecs {
            let e = (Vector::<f32, N>::cast_from(x[base + c]) - mv).exp();
            y[base + c] = Vector::cast_from(e * inv);
            c += CUBE_DIM_X as usize;
        }
    }
}

#[cube(launch)]
fn softmax_backward_kernel<F: Float, N: Size>(
    y: &[Vector<F, N>],
    dy: &[Vector<F, N>],
    dx: &mut [Vector<F, N>],
    rows: usize,
    cols: usize,
    #[comptime] plane: bool,
) {
    let row = row_index();
    if row < rows {
        let vecs = cols / N::value();
        let base = row * vecs;
        let stride = CUBE_DIM_X as usize;
        let dot = Vector::<f32, N>::new(row_dot::<F, N>(y, dy, base, vecs, plane));
        let mut c = UNIT_POS_X as usize;
        while c < vecs {
            let yv = Vector::<f32, N>::cast_from(y[base + c]);
            let g = Vector::<f32, N>::cast_from(dy[base + c]);
            dx[base + c] = Vector::cast_from(yv * (g - dot));
            c += stride;
        }
    }
}

/// Checks the (rows, cols) `inputs` of `op` and allocates its (rows, cols) output; returns it
/// with the row launch, `None` when there are no rows.
fn prepare<F: KernelFloat>(
    client: &Client,
    op: &'static str,
    inputs: &[(&'static str, &Handle)],
    rows: usize,
    cols: usize,
) -> Result<(Handle, Option<launch::RowLaunch>)> {
    for &(arg, h) in inputs {
        launch::check_size(op, arg, h, &[rows, cols], F::DTYPE)?;
    }
    launch::check_rows(op, rows, cols)?;
    let out = client.empty(rows * cols * F::DTYPE.size());
    let l = (rows > 0).then(|| launch::row_launch(client, op, F::DTYPE.size(), rows, cols));
    Ok((out, l))
}

/// Softmax of each row of a (rows, cols) tensor.
pub fn softmax<F: KernelFloat>(
    client: &Client,
    x: &Handle,
    rows: usize,
    cols: usize,
) -> Result<Handle> {
    let (y, l) = prepare::<F>(client, "softmax", &[("x", x)], rows, cols)?;
    let Some(l) = l else { return Ok(y) };
    let (ax, ay) = (l.vectors("x", x)?, l.vectors("y", &y)?);
    launch_rows!(softmax_kernel::<F>, client, l; ax, ay, rows, cols, l.geo.plane);
    Ok(y)
}

/// Gradient of softmax from its output `y` and the incoming gradient `dy`.
pub fn softmax_backward<F: KernelFloat>(
    client: &Client,
    y: &Handle,
    dy: &Handle,
    rows: usize,
    cols: usize,
) -> Result<Handle> {
    let inputs = [("y", y), ("dy", dy)];
    let (dx, l) = prepare::<F>(client, "softmax_backward", &inputs, rows, cols)?;
    let Some(l) = l else { return Ok(dx) };
    let (ay, ady, adx) = (
        l.vectors("y", y)?,
        l.vectors("dy", dy)?,
        l.vectors("dx", &dx)?,
    );
    launch_rows!(softmax_backward_kernel::<F>, client, l; ay, ady, adx, rows, cols, l.geo.plane);
    Ok(dx)
}

/// Plain-Rust reference of [`softmax`].
pub fn softmax_ref(x: &[f64], cols: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(cols) {
        let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
        out.extend(row.iter().map(|v| (v - m).exp() / s));
    }
    out
}

/// Plain-Rust reference of [`softmax_backward`].
pub fn softmax_backward_ref(y: &[f64], dy: &[f64], cols: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(y.len());
    for (yr, gr) in y.chunks(cols).zip(dy.chunks(cols)) {
        let dot: f64 = yr.iter().zip(gr).map(|(a, b)| a * b).sum();
        out.extend(yr.iter().zip(gr).map(|(a, b)| a * (b - dot)));
    }
    out
}

pub(crate) fn checks() -> Vec<Check> {
    crate::check::check_list!["softmax" => check_softmax]
}

fn check_softmax(ctx: &mut Ctx) -> Result<()> {
    for (rows, cols) in ROW_SHAPES {
        let case = format!("rows={rows} cols={cols}");
        let x = ctx.rand(rows * cols, -8.0, 8.0);
        let hx = ctx.upload(&x);
        let hy = crate::with_float!(ctx.dtype, F => softmax::<F>(ctx.client, &hx, rows, cols))?;
        let y = ctx.download(&hy)?;
        let want = softmax_ref(&f64s(&x), cols);
        let tol = ctx.tol(8.0);
        ctx.compare("softmax.forward", &case, &y, &want, tol);

        let dy = ctx.rand(rows * cols, -1.0, 1.0);
        let hdy = ctx.upload(&dy);
        let hdx = crate::with_float!(ctx.dtype, F => softmax_backward::<F>(ctx.client, &hy, &hdy, rows, cols))?;
        let got = ctx.download(&hdx)?;
        let want = softmax_backward_ref(&f64s(&y), &f64s(&dy), cols);
        let tol = ctx.tol(16.0);
        ctx.compare("softmax.backward", &case, &got, &want, tol);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    crate::check::check_tests!(softmax_matches_reference => "softmax");
}
