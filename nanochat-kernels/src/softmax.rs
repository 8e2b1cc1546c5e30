//! Softmax along the last axis, forward and backward (dx = y * (dy - sum(dy * y))), with f32
//! statistics. Cross-entropy has its own fused kernel (see `cross_entropy`).

use cubecl::prelude::*;

use crate::check::{f64s, Check, Ctx};
use crate::dtype::KernelFloat;
use crate::launch::{self, lane_sum, row_index, row_max_sumexp, row_sum, RowLaunch};
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
        let (m, s) = row_max_sumexp::<F, N>(x, base, vecs, 0.0, false, plane);
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
        let mut dot = Vector::<f32, N>::new(0.0);
        let mut c = UNIT_POS_X as usize;
        while c < vecs {
            dot += Vector::<f32, N>::cast_from(y[base + c])
                * Vector::<f32, N>::cast_from(dy[base + c]);
            c += stride;
        }
        let dot = Vector::<f32, N>::new(row_sum(lane_sum::<N>(dot), plane));
        c = UNIT_POS_X as usize;
        while c < vecs {
            let yv = Vector::<f32, N>::cast_from(y[base + c]);
            let g = Vector::<f32, N>::cast_from(dy[base + c]);
            dx[base + c] = Vector::cast_from(yv * (g - dot));
            c += stride;
        }
    }
}

/// Softmax of each row of a (rows, cols) tensor.
pub fn softmax<F: KernelFloat>(
    client: &Client,
    x: &Handle,
    rows: usize,
    cols: usize,
) -> Result<Handle> {
    launch::check_size("softmax", "x", x, &[rows, cols], F::DTYPE)?;
    launch::check_rows("softmax", rows, cols)?;
    let y = client.empty(rows * cols * F::DTYPE.size());
    if rows == 0 {
        return Ok(y);
    }
    let RowLaunch {
        vs,
        geo: g,
        vecs: n,
    } = launch::row_launch(client, F::DTYPE.size(), rows, cols);
    softmax_kernel::launch::<F>(
        client,
        g.cube_count,
        g.cube_dim,
        vs,
        launch::buffer("softmax", "x", x, n, vs * F::DTYPE.size())?,
        launch::buffer("softmax", "y", &y, n, vs * F::DTYPE.size())?,
        rows,
        cols,
        g.plane,
    );
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
    launch::check_size("softmax_backward", "y", y, &[rows, cols], F::DTYPE)?;
    launch::check_size("softmax_backward", "dy", dy, &[rows, cols], F::DTYPE)?;
    launch::check_rows("softmax_backward", rows, cols)?;
    let dx = client.empty(rows * cols * F::DTYPE.size());
    if rows == 0 {
        return Ok(dx);
    }
    let RowLaunch {
        vs,
        geo: g,
        vecs: n,
    } = launch::row_launch(client, F::DTYPE.size(), rows, cols);
    softmax_backward_kernel::launch::<F>(
        client,
        g.cube_count,
        g.cube_dim,
        vs,
        launch::buffer("softmax_backward", "y", y, n, vs * F::DTYPE.size())?,
        launch::buffer("softmax_backward", "dy", dy, n, vs * F::DTYPE.size())?,
        launch::buffer("softmax_backward", "dx", &dx, n, vs * F::DTYPE.size())?,
        rows,
        cols,
        g.plane,
    );
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
    vec![Check {
        name: "softmax",
        run: check_softmax,
    }]
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
    #[test]
    fn softmax_matches_reference() {
        crate::check::assert_check("softmax");
    }
}
