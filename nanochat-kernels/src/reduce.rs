//! Reductions along the last axis: sum, max and mean of squares of each row, accumulated in f32.

use cubecl::prelude::*;

use crate::check::{Check, Ctx};
use crate::device::DeviceInfo;
use crate::dtype::KernelFloat;
use crate::launch::{self, lane_max, lane_sum, row_index, row_max, row_sum};
use crate::{Client, Handle, Result};

/// Which reduction of a row.
#[derive(CubeType, Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Reduce {
    Sum,
    Max,
    /// mean(x^2), the statistic of RMSNorm.
    MeanSquare,
}

impl Reduce {
    /// Plain-Rust reference of one row.
    pub fn eval(self, row: &[f64]) -> f64 {
        match self {
            Reduce::Sum => row.iter().sum(),
            Reduce::Max => row.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Reduce::MeanSquare => row.iter().map(|v| v * v).sum::<f64>() / row.len() as f64,
        }
    }
}

#[cube(launch)]
fn reduce_rows_kernel<F: Float, N: Size>(
    x: &[Vector<F, N>],
    out: &mut [F],
    rows: usize,
    cols: usize,
    #[comptime] op: Reduce,
    #[comptime] plane: bool,
) {
    let row = row_index();
    if row < rows {
        let vecs = cols / N::value();
        let base = row * vecs;
        let init = match op {
            Reduce::Max => f32::new(f32::NEG_INFINITY),
            _ => f32::new(0.0),
        };
        let mut acc = Vector::<f32, N>::new(init);
        let mut c = UNIT_POS_X as usize;
        while c < vecs {
            let v = Vector::<f32, N>::cast_from(x[base + c]);
            match op {
                Reduce::Sum => acc += v,
                Reduce::Max => acc = max(acc, v),
                Reduce::MeanSquare => acc += v * v,
            }
            c += CUBE_DIM_X as usize;
        }
        let r = match op {
            Reduce::Max => row_max(lane_max::<N>(acc), plane),
            Reduce::Sum => row_sum(lane_sum::<N>(acc), plane),
            Reduce::MeanSquare => row_sum(lane_sum::<N>(acc), plane) / f32::cast_from(cols),
        };
        if UNIT_POS_X == 0 {
            out[row] = F::cast_from(r);
        }
    }
}

/// Reduces each of `rows` rows of `cols` elements; returns `rows` values of dtype `F`.
pub fn reduce_rows<F: KernelFloat>(
    client: &Client,
    x: &Handle,
    rows: usize,
    cols: usize,
    op: Reduce,
) -> Result<Handle> {
    launch::check_size("reduce_rows", "x", x, &[rows, cols], F::DTYPE)?;
    if cols == 0 && rows > 0 {
        return Err(crate::KernelError::shape("reduce_rows", &[&[rows, cols]], "rows are empty"));
    }
    let out = client.empty(rows * F::DTYPE.size());
    if rows == 0 {
        return Ok(out);
    }
    let vs = launch::vector_size(client, F::DTYPE.size(), &[cols]);
    let g = launch::rowwise(&DeviceInfo::of(client), rows);
    unsafe {
        reduce_rows_kernel::launch::<F>(
            client,
            g.cube_count,
            g.cube_dim,
            vs,
            BufferArg::from_raw_parts(x.clone(), rows * cols / vs),
            BufferArg::from_raw_parts(out.clone(), rows),
            rows,
            cols,
            op,
            g.plane,
        )
    };
    Ok(out)
}

/// Plain-Rust reference of [`reduce_rows`].
pub fn reduce_rows_ref(x: &[f64], cols: usize, op: Reduce) -> Vec<f64> {
    x.chunks(cols).map(|row| op.eval(row)).collect()
}

pub(crate) fn checks() -> Vec<Check> {
    vec![Check { name: "reduce.rows", run: check_reduce }]
}

/// Odd row shapes: single elements, widths around vector and plane sizes, a long vocab-like row.
pub(crate) const ROW_SHAPES: [(usize, usize); 7] =
    [(1, 1), (3, 7), (5, 33), (17, 64), (2, 1000), (9, 129), (3, 4099)];

fn check_reduce(ctx: &mut Ctx) -> Result<()> {
    for op in [Reduce::Sum, Reduce::Max, Reduce::MeanSquare] {
        for (rows, cols) in ROW_SHAPES {
            let x = ctx.rand(rows * cols, -2.0, 2.0);
            let hx = ctx.upload(&x);
            let out = crate::with_float!(ctx.dtype, F => reduce_rows::<F>(ctx.client, &hx, rows, cols, op))?;
            let got = ctx.download(&out)?;
            let want = reduce_rows_ref(&crate::check::f64s(&x), cols, op);
            // A sum of `cols` terms in f32 loses up to ~sqrt(cols) ulps; the output is stored in
            // the dtype, so bf16 adds one rounding.
            let tol = ctx.tol(4.0) + 1e-7 * (cols as f64).sqrt();
            ctx.compare(&format!("reduce {op:?}"), &format!("rows={rows} cols={cols}"), &got, &want, tol);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reduce_matches_reference() {
        crate::check::assert_check("reduce.rows");
    }
}
