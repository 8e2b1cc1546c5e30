//! Data movement: batched 2-d transpose (Muon's Newton-Schulz on tall matrices, the tensor
//! layer's `transpose`), column slices (matmul panels) and row writes (KV-cache appends).

use cubecl::prelude::*;

use crate::check::{f64s, Check, Ctx};
use crate::device::DeviceInfo;
use crate::dtype::KernelFloat;
use crate::launch::{self, item_index};
use crate::{Client, Handle, Result};

#[cube(launch)]
fn transpose_kernel<F: Float>(
    x: &[F],
    y: &mut [F],
    rows: usize,
    cols: usize,
    steps: usize,
    #[comptime] blocked: bool,
) {
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

/// The CPU's transpose: a unit owns `N` columns of one matrix and walks its rows `N` at a
/// time, loading an `N` x `N` tile as `N` vectors and writing each output row's `N` elements
/// together (a cache line at a time: output rows a power of two apart would otherwise evict
/// each other's lines between single-element writes).
#[cube(launch)]
fn transpose_columns_kernel<F: Float, N: Size>(
    x: &[Vector<F, N>],
    y: &mut [F],
    rows: usize,
    col_vectors: usize,
    items: usize,
    steps: usize,
    #[comptime] blocked: bool,
) {
    let n = N::value();
    for s in 0..steps {
        let it = item_index(s, steps, blocked);
        if it < items {
            let cb = it % col_vectors;
            let b = it / col_vectors;
            let x_base = b * rows * col_vectors + cb;
            // Output (b, c, r) for c = cb * n + lane.
            let y_base = (b * col_vectors + cb) * n * rows;
            let tiles = rows / n;
            for t in 0..tiles {
                let r0 = t * n;
                let mut tile = Array::<Vector<F, N>>::new(n);
                #[unroll]
                for k in 0..n {
                    tile[k] = x[x_base + (r0 + k) * col_vectors];
                }
                #[unroll]
                for lane in 0..n {
                    #[unroll]
                    for k in 0..n {
                        y[y_base + lane * rows + r0 + k] = tile[k].extract(lane);
                    }
                }
            }
            for r in tiles * n..rows {
                let v = x[x_base + r * col_vectors];
                #[unroll]
                for lane in 0..n {
                    y[y_base + lane * rows + r] = v.extract(lane);
                }
            }
        }
    }
}

/// (batch, rows, cols) -> (batch, cols, rows).
pub fn transpose<F: KernelFloat>(
    client: &Client,
    x: &Handle,
    batch: usize,
    rows: usize,
    cols: usize,
) -> Result<Handle> {
    transpose_with::<F>(client, x, batch, rows, cols, DeviceInfo::of(client).blocked)
}

/// [`transpose`] with the column kernel (the CPU's) or the element kernel (GPUs').
fn transpose_with<F: KernelFloat>(
    client: &Client,
    x: &Handle,
    batch: usize,
    rows: usize,
    cols: usize,
    columns: bool,
) -> Result<Handle> {
    let len = batch * rows * cols;
    let y = client.empty(len.max(1) * F::DTYPE.size());
    transpose_write::<F>(client, x, &y, (batch, rows, cols), columns)?;
    Ok(y)
}

/// [`transpose`] written into `y`, a (batch, cols, rows) buffer of its own (not `x`).
/// Errors: `x` or `y` not of that size.
pub fn transpose_into<F: KernelFloat>(
    client: &Client,
    x: &Handle,
    y: &Handle,
    batch: usize,
    rows: usize,
    cols: usize,
) -> Result<()> {
    launch::check_size("transpose", "y", y, &[batch, cols, rows], F::DTYPE)?;
    transpose_write::<F>(
        client,
        x,
        y,
        (batch, rows, cols),
        DeviceInfo::of(client).blocked,
    )
}

fn transpose_write<F: KernelFloat>(
    client: &Client,
    x: &Handle,
    y: &Handle,
    (batch, rows, cols): (usize, usize, usize),
    columns: bool,
) -> Result<()> {
    launch::check_size("transpose", "x", x, &[batch, rows, cols], F::DTYPE)?;
    let len = batch * rows * cols;
    if len == 0 {
        return Ok(());
    }
    let info = DeviceInfo::of(client);
    if columns {
        let vs = launch::vector_size(client, F::DTYPE.size(), &[cols]);
        let items = batch * cols / vs;
        let g = launch::elemwise(&info, items);
        transpose_columns_kernel::launch::<F>(
            client,
            g.cube_count,
            g.cube_dim,
            vs,
            launch::buffer("transpose_columns", "x", x, len / vs, vs * F::DTYPE.size())?,
            launch::buffer("transpose_columns", "y", y, len, F::DTYPE.size())?,
            rows,
            cols / vs,
            items,
            g.steps,
            g.blocked,
        );
        return Ok(());
    }
    let g = launch::elemwise(&info, len);
    transpose_kernel::launch::<F>(
        client,
        g.cube_count,
        g.cube_dim,
        launch::buffer("transpose", "x", x, len, F::DTYPE.size())?,
        launch::buffer("transpose", "y", y, len, F::DTYPE.size())?,
        rows,
        cols,
        g.steps,
        g.blocked,
    );
    Ok(())
}

#[cube(launch)]
fn slice_cols_kernel<F: Float, N: Size>(
    x: &[Vector<F, N>],
    y: &mut [Vector<F, N>],
    cols: usize,
    start: usize,
    width: usize,
    steps: usize,
    #[comptime] blocked: bool,
) {
    for s in 0..steps {
        let i = item_index(s, steps, blocked);
        if i < y.len() {
            let r = i / width;
            y[i] = x[r * cols + start + i % width];
        }
    }
}

/// Columns `start..start + width` of a (rows, cols) matrix, as a contiguous (rows, width) one.
pub fn slice_cols<F: KernelFloat>(
    client: &Client,
    x: &Handle,
    rows: usize,
    cols: usize,
    start: usize,
    width: usize,
) -> Result<Handle> {
    launch::check_size("slice_cols", "x", x, &[rows, cols], F::DTYPE)?;
    if start + width > cols {
        return Err(crate::KernelError::shape(
            "slice_cols",
            &[&[rows, cols]],
            format!("columns {start}..{} out of range", start + width),
        ));
    }
    let len = rows * width;
    let y = client.empty(len.max(1) * F::DTYPE.size());
    if len == 0 {
        return Ok(y);
    }
    let vs = launch::vector_size(client, F::DTYPE.size(), &[cols, start, width]);
    let g = launch::elemwise(&DeviceInfo::of(client), len / vs);
    slice_cols_kernel::launch::<F>(
        client,
        g.cube_count,
        g.cube_dim,
        vs,
        launch::buffer("slice_cols", "x", x, rows * cols / vs, vs * F::DTYPE.size())?,
        launch::buffer("slice_cols", "y", &y, len / vs, vs * F::DTYPE.size())?,
        cols / vs,
        start / vs,
        width / vs,
        g.steps,
        g.blocked,
    );
    Ok(y)
}

#[cube(launch)]
fn write_rows_kernel<F: Float, N: Size>(
    src: &[Vector<F, N>],
    dst: &mut [Vector<F, N>],
    seq: usize,
    row: usize,
    capacity: usize,
    pos: usize,
    steps: usize,
    #[comptime] blocked: bool,
) {
    for s in 0..steps {
        let i = item_index(s, steps, blocked);
        if i < src.len() {
            // src (batch, seq, row) -> dst (batch, capacity, row) at position pos.
            let r = i / row;
            let b = r / seq;
            let t = r % seq;
            dst[(b * capacity + pos + t) * row + i % row] = src[i];
        }
    }
}

/// Writes `src` (batch, seq, row) into `dst` (batch, capacity, row) at positions
/// `pos..pos + seq`, in place (a KV cache append).
#[allow(clippy::too_many_arguments)]
pub fn write_rows<F: KernelFloat>(
    client: &Client,
    dst: &Handle,
    capacity: usize,
    src: &Handle,
    batch: usize,
    seq: usize,
    row: usize,
    pos: usize,
) -> Result<()> {
    launch::check_size("write_rows", "src", src, &[batch, seq, row], F::DTYPE)?;
    launch::check_size("write_rows", "dst", dst, &[batch, capacity, row], F::DTYPE)?;
    if pos + seq > capacity {
        return Err(crate::KernelError::unsupported(
            "write_rows",
            format!(
                "positions {pos}..{} exceed the capacity of {capacity}",
                pos + seq
            ),
        ));
    }
    let len = batch * seq * row;
    if len == 0 {
        return Ok(());
    }
    let vs = launch::vector_size(client, F::DTYPE.size(), &[row]);
    let g = launch::elemwise(&DeviceInfo::of(client), len / vs);
    write_rows_kernel::launch::<F>(
        client,
        g.cube_count,
        g.cube_dim,
        vs,
        launch::buffer("write_rows", "src", src, len / vs, vs * F::DTYPE.size())?,
        launch::buffer(
            "write_rows",
            "dst",
            dst,
            batch * capacity * row / vs,
            vs * F::DTYPE.size(),
        )?,
        seq,
        row / vs,
        capacity,
        pos,
        g.steps,
        g.blocked,
    );
    Ok(())
}

/// Plain-Rust reference of [`write_rows`] (updates `dst`).
pub fn write_rows_ref(
    dst: &mut [f64],
    capacity: usize,
    src: &[f64],
    seq: usize,
    row: usize,
    pos: usize,
) {
    for (r, chunk) in src.chunks(row).enumerate() {
        let (b, t) = (r / seq, r % seq);
        dst[(b * capacity + pos + t) * row..][..row].copy_from_slice(chunk);
    }
}

/// Plain-Rust reference of [`slice_cols`].
pub fn slice_cols_ref(x: &[f64], cols: usize, start: usize, width: usize) -> Vec<f64> {
    x.chunks(cols)
        .flat_map(|row| row[start..start + width].iter().copied())
        .collect()
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
    crate::check::check_list![
        "layout.transpose" => check_transpose,
        "layout.slice_cols" => check_slice_cols,
        "layout.write_rows" => check_write_rows,
    ]
}

fn check_transpose(ctx: &mut Ctx) -> Result<()> {
    for (batch, rows, cols) in [
        (1, 1, 1),
        (1, 7, 13),
        (3, 5, 33),
        (2, 64, 1),
        (2, 5, 32),
        (1, 33, 48),
        (3, 17, 8),
    ] {
        let x = ctx.rand(batch * rows * cols, -1.0, 1.0);
        let hx = ctx.upload(&x);
        let want = transpose_ref(&f64s(&x), batch, rows, cols);
        for columns in [false, true] {
            let y = crate::with_float!(ctx.dtype, F => transpose_with::<F>(ctx.client, &hx, batch, rows, cols, columns))?;
            let got = ctx.download(&y)?;
            let kernel = if columns { "columns" } else { "elements" };
            let label = format!("{kernel} {batch}x{rows}x{cols}");
            ctx.compare("transpose", &label, &got, &want, 0.0);
        }
    }
    Ok(())
}

fn check_slice_cols(ctx: &mut Ctx) -> Result<()> {
    for (rows, cols, start, width) in [(1, 1, 0, 1), (3, 7, 2, 5), (5, 64, 16, 32), (4, 33, 31, 2)]
    {
        let x = ctx.rand(rows * cols, -1.0, 1.0);
        let hx = ctx.upload(&x);
        let y = crate::with_float!(ctx.dtype, F => slice_cols::<F>(ctx.client, &hx, rows, cols, start, width))?;
        let got = ctx.download(&y)?;
        let label = format!("{rows}x{cols}[{start}..+{width}]");
        let expected = slice_cols_ref(&f64s(&x), cols, start, width);
        ctx.compare("slice_cols", &label, &got, &expected, 0.0);
    }
    Ok(())
}

fn check_write_rows(ctx: &mut Ctx) -> Result<()> {
    for (batch, capacity, seq, row, pos) in [
        (1, 1, 1, 1, 0),
        (2, 9, 3, 6, 4),
        (3, 17, 1, 64, 16),
        (1, 33, 33, 7, 0),
    ] {
        let dst = ctx.rand(batch * capacity * row, -1.0, 1.0);
        let src = ctx.rand(batch * seq * row, -1.0, 1.0);
        let (hd, hs) = (ctx.upload(&dst), ctx.upload(&src));
        crate::with_float!(ctx.dtype, F => write_rows::<F>(ctx.client, &hd, capacity, &hs, batch, seq, row, pos))?;
        let got = ctx.download(&hd)?;
        let mut want = f64s(&dst);
        write_rows_ref(&mut want, capacity, &f64s(&src), seq, row, pos);
        let label = format!("b={batch} cap={capacity} seq={seq} row={row} pos={pos}");
        ctx.compare("write_rows", &label, &got, &want, 0.0);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    crate::check::check_tests!(write_rows_matches_reference => "layout.write_rows", slice_cols_matches_reference => "layout.slice_cols", transpose_matches_reference => "layout.transpose");
}
