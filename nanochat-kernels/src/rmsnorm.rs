//! RMSNorm without weights, as nanochat: `y = x * rstd`, `rstd = 1 / sqrt(mean(x^2) + eps)`.
//! The forward saves `rstd` (f32, one per row); the backward is
//! `dx = rstd * dy - x * rstd^3 * mean(dy * x)`.

use cubecl::prelude::*;

use crate::check::{f64s, Check, Ctx};
use crate::dtype::KernelFloat;
use crate::launch::{self, launch_rows, row_dot, row_index};
use crate::reduce::ROW_SHAPES;
use crate::{Client, Handle, Result};

#[cube(launch)]
fn rmsnorm_forward_kernel<F: Float, N: Size>(
    x: &[Vector<F, N>],
    y: &mut [Vector<F, N>],
    rstd: &mut [f32],
    rows: usize,
    cols: usize,
    eps: f32,
    #[comptime] plane: bool,
) {
    let row = row_index();
    if row < rows {
        let vecs = cols / N::value();
        let base = row * vecs;
        let stride = CUBE_DIM_X as usize;
        let ms = row_dot::<F, N>(x, x, base, vecs, plane) / f32::cast_from(cols);
        let r = (ms + eps).inverse_sqrt();
        let rv = Vector::<f32, N>::new(r);
        let mut c = UNIT_POS_X as usize;
        while c < vecs {
            y[base + c] = Vector::cast_from(Vector::<f32, N>::cast_from(x[base + c]) * rv);
            c += stride;
        }
        if UNIT_POS_X == 0 {
            rstd[row] = r;
        }
    }
}

#[cube(launch)]
fn rmsnorm_backward_kernel<F: Float, N: Size>(
    x: &[Vector<F, N>],
    rstd: &[f32],
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
        let mean_dot = row_dot::<F, N>(x, dy, base, vecs, plane) / f32::cast_from(cols);
        let r = rstd[row];
        let rv = Vector::<f32, N>::new(r);
        let kv = Vector::<f32, N>::new(r * r * r * mean_dot);
        let mut c = UNIT_POS_X as usize;
        while c < vecs {
            let xv = Vector::<f32, N>::cast_from(x[base + c]);
            let g = Vector::<f32, N>::cast_from(dy[base + c]);
            dx[base + c] = Vector::cast_from(g * rv - xv * kv);
            c += stride;
        }
    }
}

/// RMSNorm of each row of a (rows, cols) tensor: returns `y` (dtype `F`) and `rstd` (f32, rows).
pub fn rmsnorm_forward<F: KernelFloat>(
    client: &Client,
    x: &Handle,
    rows: usize,
    cols: usize,
    eps: f32,
) -> Result<(Handle, Handle)> {
    launch::check_size("rmsnorm", "x", x, &[rows, cols], F::DTYPE)?;
    launch::check_rows("rmsnorm", rows, cols)?;
    let y = client.empty(rows * cols * F::DTYPE.size());
    let rstd = client.empty(rows.max(1) * 4);
    if rows == 0 {
        return Ok((y, rstd));
    }
    let l = launch::row_launch(client, "rmsnorm_forward", F::DTYPE.size(), rows, cols);
    let (ax, ay, ar) = (
        l.vectors("x", x)?,
        l.vectors("y", &y)?,
        l.per_row("rstd", &rstd, 4)?,
    );
    launch_rows!(rmsnorm_forward_kernel::<F>, client, l; ax, ay, ar, rows, cols, eps, l.geo.plane);
    Ok((y, rstd))
}

/// Gradient of RMSNorm with respect to `x`, from `x`, the saved `rstd` and `dy`.
pub fn rmsnorm_backward<F: KernelFloat>(
    client: &Client,
    x: &Handle,
    rstd: &Handle,
    dy: &Handle,
    rows: usize,
    cols: usize,
) -> Result<Handle> {
    launch::check_size("rmsnorm_backward", "x", x, &[rows, cols], F::DTYPE)?;
    launch::check_size("rmsnorm_backward", "dy", dy, &[rows, cols], F::DTYPE)?;
    launch::check_words("rmsnorm_backward", "rstd", rstd, &[rows])?;
    let dx = client.empty(rows * cols * F::DTYPE.size());
    if rows == 0 || cols == 0 {
        return Ok(dx);
    }
    let l = launch::row_launch(client, "rmsnorm_backward", F::DTYPE.size(), rows, cols);
    let (ax, ar) = (l.vectors("x", x)?, l.per_row("rstd", rstd, 4)?);
    let (ady, adx) = (l.vectors("dy", dy)?, l.vectors("dx", &dx)?);
    launch_rows!(rmsnorm_backward_kernel::<F>, client, l; ax, ar, ady, adx, rows, cols, l.geo.plane);
    Ok(dx)
}

/// Plain-Rust reference of [`rmsnorm_forward`]: (y, rstd).
pub fn rmsnorm_forward_ref(x: &[f64], cols: usize, eps: f64) -> (Vec<f64>, Vec<f64>) {
    let mut y = Vec::with_capacity(x.len());
    let mut rstd = Vec::new();
    for row in x.chunks(cols) {
        let ms = row.iter().map(|v| v * v).sum::<f64>() / cols as f64;
        let r = 1.0 / (ms + eps).sqrt();
        rstd.push(r);
        y.extend(row.iter().map(|v| v * r));
    }
    (y, rstd)
}

/// Plain-Rust reference of [`rmsnorm_backward`].
pub fn rmsnorm_backward_ref(x: &[f64], dy: &[f64], cols: usize, eps: f64) -> Vec<f64> {
    let (_, rstd) = rmsnorm_forward_ref(x, cols, eps);
    let mut dx = Vec::with_capacity(x.len());
    for ((xr, gr), r) in x.chunks(cols).zip(dy.chunks(cols)).zip(rstd) {
        let mean_dot = xr.iter().zip(gr).map(|(a, b)| a * b).sum::<f64>() / cols as f64;
        dx.extend(
            xr.iter()
                .zip(gr)
                .map(|(a, g)| r * g - a * r * r * r * mean_dot),
        );
    }
    dx
}

pub(crate) fn checks() -> Vec<Check> {
    crate::check::check_list!["rmsnorm" => check_rmsnorm]
}

fn check_rmsnorm(ctx: &mut Ctx) -> Result<()> {
    for (rows, cols) in ROW_SHAPES {
        // One column makes dx vanish analytically unless eps is large next to x^2.
        let eps = if cols == 1 { 0.5f32 } else { 1e-6 };
        let case = format!("rows={rows} cols={cols}");
        let x = ctx.rand(rows * cols, -3.0, 3.0);
        let hx = ctx.upload(&x);
        let (hy, hr) = crate::with_float!(ctx.dtype, F => rmsnorm_forward::<F>(ctx.client, &hx, rows, cols, eps))?;
        let (want_y, want_r) = rmsnorm_forward_ref(&f64s(&x), cols, eps as f64);
        let y = ctx.download(&hy)?;
        let r = crate::check::download(ctx.client, crate::DType::F32, &hr)?;
        let tol = ctx.tol(4.0);
        ctx.compare("rmsnorm.forward y", &case, &y, &want_y, tol);
        ctx.compare("rmsnorm.forward rstd", &case, &r, &want_r, 1e-5);

        let dy = ctx.rand(rows * cols, -1.0, 1.0);
        let hdy = ctx.upload(&dy);
        let hdx = crate::with_float!(ctx.dtype, F => rmsnorm_backward::<F>(ctx.client, &hx, &hr, &hdy, rows, cols))?;
        let got = ctx.download(&hdx)?;
        let want = rmsnorm_backward_ref(&f64s(&x), &f64s(&dy), cols, eps as f64);
        let tol = ctx.tol(16.0).max(1e-5);
        ctx.compare("rmsnorm.backward dx", &case, &got, &want, tol);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    crate::check::check_tests!(rmsnorm_matches_reference => "rmsnorm");
}
