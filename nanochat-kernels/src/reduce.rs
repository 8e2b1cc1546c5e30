//! Reductions along the last axis: sum, max and mean of squares of each row, accumulated in f32.

use cubecl::prelude::*;

use crate::check::{Check, Ctx};
use crate::device::DeviceInfo;
use crate::dtype::KernelFloat;
use crate::launch::{self, item_index, lane_max, lane_sum, row_index, row_max, row_sum};
use crate::{Client, Handle, Result};

pub use cube_enums::Reduce;

// `#[derive(CubeType)]` generates public companions of each enum here (an `...Expand` enum and
// one constructor per variant) that cannot carry docs: `missing_docs` is allowed on this module
// for them and turned back on for the enums themselves.
#[allow(missing_docs)]
mod cube_enums {
    use cubecl::prelude::*;

    /// Which reduction of a row.
    #[warn(missing_docs)]
    #[derive(CubeType, Clone, Copy, Debug, Hash, PartialEq, Eq)]
    pub enum Reduce {
        /// The sum.
        Sum,
        /// The maximum.
        Max,
        /// mean(x^2), the statistic of RMSNorm.
        MeanSquare,
    }
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
    launch::check_rows("reduce_rows", rows, cols)?;
    let out = client.empty(rows * F::DTYPE.size());
    if rows == 0 {
        return Ok(out);
    }
    let l = launch::row_launch(client, "reduce_rows", F::DTYPE.size(), rows, cols);
    let (ax, aout) = (l.vectors("x", x)?, l.per_row("out", &out, F::DTYPE.size())?);
    launch::launch_rows!(reduce_rows_kernel::<F>, client, l; ax, aout, rows, cols, op, l.geo.plane);
    Ok(out)
}

#[cube(launch)]
fn sum_to_kernel<F: Float>(
    big: &Tensor<F>,
    small: &mut Tensor<F>,
    per: usize,
    steps: usize,
    #[comptime] blocked: bool,
) {
    let rank = big.rank();
    for s in 0..steps {
        let j = item_index(s, steps, blocked);
        if j < small.len() {
            // Offset in `big` of the kept coordinates of j.
            let mut rem = j;
            let mut base = 0;
            let mut d = rank;
            while d > 0 {
                d -= 1;
                let c = rem % small.shape(d);
                rem /= small.shape(d);
                base += c * big.stride(d);
            }
            let mut acc = 0.0f32;
            for r in 0..per {
                // Walk the reduced coordinates (dimensions where `small` has size 1).
                let mut rr = r;
                let mut off = base;
                let mut e = rank;
                while e > 0 {
                    e -= 1;
                    if small.shape(e) == 1 {
                        let c = rr % big.shape(e);
                        rr /= big.shape(e);
                        off += c * big.stride(e);
                    }
                }
                acc += f32::cast_from(big[off]);
            }
            small[j] = F::cast_from(acc);
        }
    }
}

/// `small` padded on the left with 1s to `rank` dimensions (aligned on the right, as broadcasting
/// does); its leading dimensions past `rank` are dropped.
fn align_right(small: &[usize], rank: usize) -> Vec<usize> {
    (0..rank)
        .map(|i| {
            if i + small.len() >= rank {
                small[i + small.len() - rank]
            } else {
                1
            }
        })
        .collect()
}

/// Sums a contiguous tensor of shape `big` down to `small` (the gradient of a broadcast):
/// `small` aligns on the right with `big` and each of its dimensions is 1 or equal to big's.
pub fn sum_to<F: KernelFloat>(
    client: &Client,
    x: &Handle,
    big: &[usize],
    small: &[usize],
) -> Result<Handle> {
    launch::check_size("sum_to", "x", x, big, F::DTYPE)?;
    let rank = big.len();
    let aligned = align_right(small, rank);
    if small.len() > rank || aligned.iter().zip(big).any(|(&s, &b)| s != 1 && s != b) {
        return Err(crate::KernelError::shape(
            "sum_to",
            &[big, small],
            "not a broadcast of the smaller shape",
        ));
    }
    let small_len: usize = aligned.iter().product();
    let big_len: usize = big.iter().product();
    if small_len == 0 || big_len == 0 {
        return crate::elementwise::fill::<F>(client, small_len, 0.0);
    }
    // Adjacent dimensions that are both kept or both summed merge (those of size 1 drop).
    let mut merged: Vec<(usize, bool)> = Vec::with_capacity(rank);
    for (&b, &s) in big.iter().zip(&aligned) {
        let kept = s != 1;
        if b == 1 {
            continue;
        }
        match merged.last_mut() {
            Some((n, k)) if *k == kept => *n *= b,
            _ => merged.push((b, kept)),
        }
    }
    match merged[..] {
        // Everything summed (a scalar's gradient), or the trailing elements of each kept
        // row (a per-head gate's): contiguous rows.
        [] => return sum_rows::<F>(client, x, 1, 1),
        [(n, false)] => return sum_rows::<F>(client, x, 1, n),
        [(r, true), (c, false)] => return sum_rows::<F>(client, x, r, c),
        _ => {}
    }
    let big_view: Vec<usize> = merged.iter().map(|&(n, _)| n).collect();
    let small_view: Vec<usize> = merged.iter().map(|&(n, k)| if k { n } else { 1 }).collect();
    let out = client.empty(small_len * F::DTYPE.size());
    let g = launch::elemwise(&DeviceInfo::of(client), small_len);
    sum_to_kernel::launch::<F>(
        client,
        g.cube_count,
        g.cube_dim,
        launch::binding(
            "sum_to",
            "big",
            x,
            &crate::broadcast::contiguous_strides(&big_view),
            &big_view,
            F::DTYPE.size(),
        )?
        .into_tensor_arg(),
        launch::binding(
            "sum_to",
            "small",
            &out,
            &crate::broadcast::contiguous_strides(&small_view),
            &small_view,
            F::DTYPE.size(),
        )?
        .into_tensor_arg(),
        big_len / small_len,
        g.steps,
        g.blocked,
    );
    Ok(out)
}

/// Rows summed in at least this many parts run as two row reductions...
const SUM_PARTS: usize = 64;

/// ...when the rows are at least this long.
const SUM_SPLIT_MIN_COLS: usize = 4096;

/// The sums of `rows` contiguous rows of `cols` elements. Few long rows (a scalar's gradient
/// sums a whole activation) are first cut into about [`SUM_PARTS`] contiguous parts summed in
/// parallel, then those partial sums (f32 only: bf16 partials would round) summed per row.
fn sum_rows<F: KernelFloat>(
    client: &Client,
    x: &Handle,
    rows: usize,
    cols: usize,
) -> Result<Handle> {
    if F::DTYPE == crate::DType::F32 && rows < SUM_PARTS && cols >= SUM_SPLIT_MIN_COLS {
        let cap = SUM_PARTS.div_ceil(rows);
        let parts = (1..=cap)
            .rev()
            .find(|&d| cols.is_multiple_of(d))
            .unwrap_or(1);
        if parts > 1 {
            let partial = reduce_rows::<F>(client, x, rows * parts, cols / parts, Reduce::Sum)?;
            return reduce_rows::<F>(client, &partial, rows, parts, Reduce::Sum);
        }
    }
    reduce_rows::<F>(client, x, rows, cols, Reduce::Sum)
}

/// Plain-Rust reference of [`sum_to`].
pub fn sum_to_ref(x: &[f64], big: &[usize], small: &[usize]) -> Vec<f64> {
    let rank = big.len();
    let aligned = align_right(small, rank);
    let strides = crate::broadcast::contiguous_strides(&aligned);
    let mut out = vec![0.0; aligned.iter().product()];
    for (i, v) in x.iter().enumerate() {
        let (mut rem, mut j) = (i, 0);
        for d in (0..rank).rev() {
            let c = rem % big[d];
            rem /= big[d];
            if aligned[d] != 1 {
                j += c * strides[d];
            }
        }
        out[j] += v;
    }
    out
}

/// Plain-Rust reference of [`reduce_rows`].
pub fn reduce_rows_ref(x: &[f64], cols: usize, op: Reduce) -> Vec<f64> {
    x.chunks(cols).map(|row| op.eval(row)).collect()
}

pub(crate) fn checks() -> Vec<Check> {
    crate::check::check_list![
        "reduce.rows" => check_reduce,
        "reduce.sum_to" => check_sum_to,
    ]
}

/// Odd row shapes: single elements, widths around vector and plane sizes, a long vocab-like row.
pub(crate) const ROW_SHAPES: [(usize, usize); 7] = [
    (1, 1),
    (3, 7),
    (5, 33),
    (17, 64),
    (2, 1000),
    (9, 129),
    (3, 4099),
];

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
            let label = format!("rows={rows} cols={cols}");
            ctx.compare(&format!("reduce {op:?}"), &label, &got, &want, tol);
        }
    }
    Ok(())
}

fn check_sum_to(ctx: &mut Ctx) -> Result<()> {
    // Shapes for every path: the general kernel (kept dimensions after summed ones, with size-1
    // dimensions between), one row or trailing rows summed whole, and long rows summed in parts
    // (a scalar's gradient over 2 x 3 x 4099 and 8 x 4096; a gate's over (2, 3, 4096)).
    let cases: [(&[usize], &[usize]); 12] = [
        (&[1], &[1]),
        (&[3, 5, 7], &[5, 1]),
        (&[3, 5, 7], &[3, 1, 7]),
        (&[4, 9], &[]),
        (&[2, 3, 4, 5], &[3, 1, 5]),
        (&[6, 33], &[33]),
        (&[1, 6, 1, 33], &[6, 1, 1]),
        (&[2, 3, 4099], &[1]),
        (&[8, 4096], &[]),
        (&[2, 3, 4096], &[2, 3, 1]),
        (&[5, 1, 7], &[5, 1, 7]),
        (&[4, 1, 4100], &[4, 1, 1]),
    ];
    for (big, small) in cases {
        let x = ctx.rand(big.iter().product(), -1.0, 1.0);
        let hx = ctx.upload(&x);
        let out = crate::with_float!(ctx.dtype, F => sum_to::<F>(ctx.client, &hx, big, small))?;
        let want = sum_to_ref(&crate::check::f64s(&x), big, small);
        let got = ctx.download(&out)?;
        let tol = ctx.tol(4.0);
        let label = format!("{big:?} -> {small:?}");
        ctx.compare("sum_to", &label, &got[..want.len()], &want, tol);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    crate::check::check_tests!(sum_to_matches_reference => "reduce.sum_to", reduce_matches_reference => "reduce.rows");
}
