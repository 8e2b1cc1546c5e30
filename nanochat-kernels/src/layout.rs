//! Data movement: batched 2-d transpose (used by Muon's Newton-Schulz on tall matrices and by
//! the tensor layer's `transpose`).

use cubecl::prelude::*;

use crate::check::{f64s, Check, Ctx};
use crate::device::DeviceInfo;
use crate::dtype::KernelFloat;
use crate::launch::{self, item_index};
use crate::{Client, Handle, Result};

#[cube(launch)]
fn transpose_kernel<F: Float>(x: &[F], y: &mut [F], rows: usize, cols: usize, steps: usize, #[comptime] blocked: bool) {
    let per = rows * cols;
    for s in 0..steps {
        let i = item_index(s, steps, blocked);
        if i < y.len() {
            // y is (batch, cols, rows): element (b, c, r) = x (b, r, c).
            let b = i / per;
            let rem = i % per;
            let c = rem / rows;
            let r = rem % rows;
            y[i] = x[b * per + r * cols + c];
        }
    }
}

/// (batch, rows, cols) -> (batch, cols, rows).
pub fn transpose<F: KernelFloat>(client: &Client, x: &Handle, batch: usize, rows: usize, cols: usize) -> Result<Handle> {
    launch::check_size("transpose", "x", x, &[batch, rows, cols], F::DTYPE)?;
    let len = batch * rows * cols;
    let y = client.empty(len.max(1) * F::DTYPE.size());
    if len == 0 {
        return Ok(y);
    }
    let g = launch::elemwise(&DeviceInfo::of(client), len);
    unsafe {
        transpose_kernel::launch::<F>(
            client,
            g.cube_count,
            g.cube_dim,
            BufferArg::from_raw_parts(x.clone(), len),
            BufferArg::from_raw_parts(y.clone(), len),
            rows,
            cols,
            g.steps,
            g.blocked,
        )
    };
    Ok(y)
}

/// Plain-Rust reference of [`transpose`].
pub fn transpose_ref(x: &[f64], batch: usize, rows: usize, cols: usize) -> Vec<f64> {
    let mut y = vec![0.0; x.len()];
    for b in 0..batch {
        for r in 0..rows {
            for c in 0..cols {
                y[(b * cols + c) * rows + r] = x[(b * rows + r) * cols + c];
            }
        }
    }
    y
}

pub(crate) fn checks() -> Vec<Check> {
    vec![Check { name: "layout.transpose", run: check_transpose }]
}

fn check_transpose(ctx: &mut Ctx) -> Result<()> {
    for (batch, rows, cols) in [(1, 1, 1), (1, 7, 13), (3, 5, 33), (2, 64, 1)] {
        let x = ctx.rand(batch * rows * cols, -1.0, 1.0);
        let hx = ctx.upload(&x);
        let y = crate::with_float!(ctx.dtype, F => transpose::<F>(ctx.client, &hx, batch, rows, cols))?;
        let got = ctx.download(&y)?;
        ctx.compare("transpose", &format!("{batch}x{rows}x{cols}"), &got, &transpose_ref(&f64s(&x), batch, rows, cols), 0.0);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn transpose_matches_reference() {
        crate::check::assert_check("layout.transpose");
    }
}
