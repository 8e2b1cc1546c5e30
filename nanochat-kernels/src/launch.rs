//! Launch geometry shared by the kernels.
//!
//! Two shapes of work cover every kernel here:
//! - element-wise: `n` independent items spread over all units, each unit taking `steps` items,
//!   either a contiguous block (CPU) or strided by the launch size (GPU, coalesced);
//! - row-wise: one row per plane (warp) on a GPU, whose units stride over the row and reduce with
//!   plane operations; one row per unit on the CPU, whose planes have a single unit.

use cubecl::prelude::*;

use crate::device::DeviceInfo;
use crate::Handle;

/// Geometry of an element-wise launch over `n` items.
#[derive(Clone, Debug)]
pub(crate) struct Elemwise {
    pub cube_count: CubeCount,
    pub cube_dim: CubeDim,
    /// Items per unit.
    pub steps: usize,
    pub blocked: bool,
}

/// Units per cube for element-wise work on a GPU.
const GPU_CUBE_UNITS: u32 = 256;
/// Most cubes of an element-wise GPU launch; beyond it units take several items.
const GPU_MAX_CUBES: usize = 65_535;

pub(crate) fn elemwise(info: &DeviceInfo, n: usize) -> Elemwise {
    let n = n.max(1);
    if info.blocked {
        let units = info.max_units_per_cube.min(n as u32).max(1);
        Elemwise {
            cube_count: CubeCount::Static(1, 1, 1),
            cube_dim: CubeDim::new_1d(units),
            steps: n.div_ceil(units as usize),
            blocked: true,
        }
    } else {
        let units = GPU_CUBE_UNITS.min(info.max_units_per_cube);
        let cubes = n.div_ceil(units as usize).clamp(1, GPU_MAX_CUBES);
        let total = cubes * units as usize;
        Elemwise {
            cube_count: CubeCount::Static(cubes as u32, 1, 1),
            cube_dim: CubeDim::new_1d(units),
            steps: n.div_ceil(total),
            blocked: false,
        }
    }
}

/// An element-wise launch of op `op` over `len` elements of `elem_bytes` bytes: the geometry
/// over `len / vs` vectors, the vector width `vs` (the widest dividing `len`), and the buffers
/// read as such vectors.
pub(crate) fn flat(
    client: &cubecl::client::Client,
    op: &'static str,
    elem_bytes: usize,
    len: usize,
) -> (Elemwise, usize, VecBuffers) {
    let vs = vector_size(client, elem_bytes, &[len]);
    let geo = elemwise(&DeviceInfo::of(client), len / vs);
    (geo, vs, VecBuffers::new(op, vs, elem_bytes))
}

/// Index of the `step`-th item of this unit (see [`Elemwise`]); may exceed the item count.
#[cube]
pub(crate) fn item_index(step: usize, steps: usize, #[comptime] blocked: bool) -> usize {
    if comptime![blocked] {
        ABSOLUTE_POS * steps + step
    } else {
        ABSOLUTE_POS + step * (CUBE_DIM as usize * CUBE_COUNT)
    }
}

/// Geometry of a row-wise launch over `rows` rows.
#[derive(Clone, Debug)]
pub(crate) struct Rowwise {
    pub cube_count: CubeCount,
    /// x: units sharing one row (the plane), y: rows per cube.
    pub cube_dim: CubeDim,
    /// Whether units along x reduce with plane operations (x > 1).
    pub plane: bool,
}

pub(crate) fn rowwise(info: &DeviceInfo, rows: usize) -> Rowwise {
    let rows = rows.max(1);
    if info.has_planes() {
        let x = info.plane_dim;
        let y = (256 / x).clamp(1, info.max_units_per_cube / x);
        let cubes = rows.div_ceil(y as usize);
        Rowwise {
            cube_count: grid_1d(cubes),
            cube_dim: CubeDim::new_2d(x, y),
            plane: true,
        }
    } else {
        let y = info.max_units_per_cube.min(rows as u32).max(1);
        Rowwise {
            cube_count: CubeCount::Static(rows.div_ceil(y as usize) as u32, 1, 1),
            cube_dim: CubeDim::new_2d(1, y),
            plane: false,
        }
    }
}

/// Geometry of a row-wise launch over a (rows, cols) tensor read as vectors of `vs` elements,
/// and the buffer arguments of op `op` over it.
pub(crate) struct RowLaunch {
    /// Vector width (divides `cols`).
    pub vs: usize,
    pub geo: Rowwise,
    /// Vectors in the whole tensor.
    pub vecs: usize,
    op: &'static str,
    rows: usize,
    elem_bytes: usize,
}

impl RowLaunch {
    /// A (rows, cols) argument, read as `vecs` vectors of `vs` elements.
    pub fn vectors(&self, arg: &'static str, handle: &Handle) -> crate::Result<BufferArg> {
        buffer(self.op, arg, handle, self.vecs, self.vs * self.elem_bytes)
    }

    /// A per-row argument of `item_bytes`-byte items (4 for f32 statistics and i32 targets).
    pub fn per_row(
        &self,
        arg: &'static str,
        handle: &Handle,
        item_bytes: usize,
    ) -> crate::Result<BufferArg> {
        buffer(self.op, arg, handle, self.rows, item_bytes)
    }
}

/// Launches kernel `$kernel` on `$client` with the cube count and cube dim of geometry `$geo`
/// (an [`Elemwise`] or a [`Rowwise`]) and vector size `$vs`, then the kernel's own arguments.
macro_rules! launch_on {
    ($kernel:ident::<$F:ident>, $client:expr, $geo:expr, $vs:expr; $($arg:expr),* $(,)?) => {
        $kernel::launch::<$F>($client, $geo.cube_count, $geo.cube_dim, $vs, $($arg),*)
    };
}
pub(crate) use launch_on;

/// The buffer arguments of op `op` whose tensors are read as vectors of `vs` elements of
/// `elem_bytes` bytes, and whose statistics (f32, i32) as 4-byte words.
pub(crate) struct VecBuffers {
    op: &'static str,
    vs: usize,
    elem_bytes: usize,
}

impl VecBuffers {
    pub fn new(op: &'static str, vs: usize, elem_bytes: usize) -> VecBuffers {
        VecBuffers { op, vs, elem_bytes }
    }

    /// A tensor of `elems` elements (a multiple of `vs`), as `elems / vs` vectors.
    pub fn vecs(&self, arg: &'static str, h: &Handle, elems: usize) -> crate::Result<BufferArg> {
        buffer(self.op, arg, h, elems / self.vs, self.vs * self.elem_bytes)
    }

    /// A tensor of `elems` elements, read one element at a time.
    pub fn scalars(&self, arg: &'static str, h: &Handle, elems: usize) -> crate::Result<BufferArg> {
        buffer(self.op, arg, h, elems, self.elem_bytes)
    }

    /// `n` 4-byte words.
    pub fn words(&self, arg: &'static str, h: &Handle, n: usize) -> crate::Result<BufferArg> {
        buffer(self.op, arg, h, n, 4)
    }

    /// `n` 4-byte words (a multiple of `vs`), as `n / vs` vectors.
    pub fn word_vecs(&self, arg: &'static str, h: &Handle, n: usize) -> crate::Result<BufferArg> {
        buffer(self.op, arg, h, n / self.vs, self.vs * 4)
    }
}

/// Launches row kernel `$kernel` on `$client` with the cube count, cube dim and vector size of
/// the [`RowLaunch`] `$l`, then the kernel's own arguments (buffers built beforehand, e.g. by
/// [`RowLaunch::vectors`]).
macro_rules! launch_rows {
    ($kernel:ident::<$F:ident>, $client:expr, $l:ident; $($arg:expr),* $(,)?) => {
        $kernel::launch::<$F>($client, $l.geo.cube_count, $l.geo.cube_dim, $l.vs, $($arg),*)
    };
}
pub(crate) use launch_rows;

/// The row-wise launch of op `op` over a (rows, cols) tensor of `elem_bytes`-byte elements.
pub(crate) fn row_launch(
    client: &cubecl::client::Client,
    op: &'static str,
    elem_bytes: usize,
    rows: usize,
    cols: usize,
) -> RowLaunch {
    let vs = vector_size(client, elem_bytes, &[cols]);
    RowLaunch {
        vs,
        geo: rowwise(&DeviceInfo::of(client), rows),
        vecs: rows * cols / vs,
        op,
        rows,
        elem_bytes,
    }
}

/// A row-wise op needs non-empty rows (a max or a mean of nothing is undefined).
pub(crate) fn check_rows(op: &'static str, rows: usize, cols: usize) -> crate::Result<()> {
    if rows > 0 && cols == 0 {
        return Err(crate::KernelError::shape(
            op,
            &[&[rows, cols]],
            "rows are empty",
        ));
    }
    Ok(())
}

/// A vector of `x` as f32, through `cap * tanh(x / cap)` when `capped` (the logit softcap).
#[cube]
pub(crate) fn load_capped<F: Float, N: Size>(
    x: Vector<F, N>,
    cap: f32,
    #[comptime] capped: bool,
) -> Vector<f32, N> {
    let v = Vector::<f32, N>::cast_from(x);
    if comptime![capped] {
        (v * Vector::new(1.0 / cap)).tanh() * Vector::new(cap)
    } else {
        v
    }
}

/// The largest softcap whose bound can stand in for a row's maximum: every softcapped value y
/// lies in [-cap, cap], so each `exp(y - cap)` lies in [exp(-2 cap), 1], a normal f32 for
/// cap <= 40 (exp(-80) ~ 1.8e-35 > 1.2e-38), and their sum neither overflows nor vanishes.
pub(crate) const MAX_BOUNDING_CAP: f32 = 40.0;

/// Running maximum and sum of `exp(x - max)` over one row (`vecs` vectors from `base`, each
/// softcapped when `capped`), shared by the units of the row: the two passes of a stable
/// softmax / logsumexp. With `bounded` (capped, and `cap <= MAX_BOUNDING_CAP`, decided by the
/// host) one pass: the cap stands in for the maximum, `(cap, sum exp(y - cap))`, which gives
/// the same logsumexp `m + ln(s)` without the first pass or the second tanh of every element.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(crate) fn row_max_sumexp<F: Float, N: Size>(
    x: &[Vector<F, N>],
    base: usize,
    vecs: usize,
    cap: f32,
    #[comptime] capped: bool,
    #[comptime] bounded: bool,
    #[comptime] plane: bool,
) -> (f32, f32) {
    let stride = CUBE_DIM_X as usize;
    let m = if comptime![capped && bounded] {
        cap
    } else {
        let mut mx = Vector::<f32, N>::new(f32::NEG_INFINITY);
        let mut c = UNIT_POS_X as usize;
        while c < vecs {
            mx = max(mx, load_capped::<F, N>(x[base + c], cap, capped));
            c += stride;
        }
        row_max(lane_max::<N>(mx), plane)
    };
    let mv = Vector::<f32, N>::new(m);
    let mut s = Vector::<f32, N>::new(0.0);
    let mut c = UNIT_POS_X as usize;
    while c < vecs {
        s += (load_capped::<F, N>(x[base + c], cap, capped) - mv).exp();
        c += stride;
    }
    (m, row_sum(lane_sum::<N>(s), plane))
}

/// A 1-d count of cubes folded into two dimensions when it exceeds a grid dimension's limit.
pub(crate) fn grid_1d(cubes: usize) -> CubeCount {
    const MAX_X: usize = 65_535;
    if cubes <= MAX_X {
        CubeCount::Static(cubes as u32, 1, 1)
    } else {
        CubeCount::Static(MAX_X as u32, cubes.div_ceil(MAX_X) as u32, 1)
    }
}

/// Linear cube index of a [`grid_1d`] launch.
#[cube]
pub(crate) fn cube_index_1d() -> usize {
    CUBE_POS_Y as usize * CUBE_COUNT_X as usize + CUBE_POS_X as usize
}

/// The row of this unit in a [`rowwise`] launch (may exceed the row count).
#[cube]
pub(crate) fn row_index() -> usize {
    cube_index_1d() * CUBE_DIM_Y as usize + UNIT_POS_Y as usize
}

/// Sum over the units of a row ([`Rowwise::plane`]); the value itself when a row has one unit.
#[cube]
pub(crate) fn row_sum(v: f32, #[comptime] plane: bool) -> f32 {
    if comptime![plane] {
        plane_sum(v)
    } else {
        v
    }
}

/// Maximum over the units of a row (see [`row_sum`]).
#[cube]
pub(crate) fn row_max(v: f32, #[comptime] plane: bool) -> f32 {
    if comptime![plane] {
        plane_max(v)
    } else {
        v
    }
}

/// The dot product of row `a[base..base + vecs]` with `b`'s, in f32: each unit sums its strided
/// vectors, then lanes, then the row's units ([`row_sum`]).
#[cube]
pub(crate) fn row_dot<F: Float, N: Size>(
    a: &[Vector<F, N>],
    b: &[Vector<F, N>],
    base: usize,
    vecs: usize,
    #[comptime] plane: bool,
) -> f32 {
    let mut dot = Vector::<f32, N>::new(0.0);
    let mut c = UNIT_POS_X as usize;
    while c < vecs {
        dot += Vector::<f32, N>::cast_from(a[base + c]) * Vector::<f32, N>::cast_from(b[base + c]);
        c += CUBE_DIM_X as usize;
    }
    row_sum(lane_sum::<N>(dot), plane)
}

/// The bytes a tensor of `shape` and dtype needs, checked against a handle.
pub(crate) fn check_size(
    op: &'static str,
    arg: &'static str,
    handle: &cubecl::server::Handle,
    shape: &[usize],
    dtype: crate::DType,
) -> crate::Result<()> {
    // A shape whose size overflows needs more than any buffer holds: an error, not a panic.
    let need = shape
        .iter()
        .try_fold(dtype.size() as u64, |acc, &d| acc.checked_mul(d as u64))
        .unwrap_or(u64::MAX);
    let got = handle.size_in_used();
    if got < need {
        return Err(crate::KernelError::BufferSize {
            op,
            arg,
            shape: shape.to_vec(),
            dtype: dtype.name(),
            need,
            got,
        });
    }
    Ok(())
}

/// Same for buffers of plain 4-byte words (f32 statistics, u32/i32 ids).
pub(crate) fn check_words(
    op: &'static str,
    arg: &'static str,
    handle: &cubecl::server::Handle,
    shape: &[usize],
) -> crate::Result<()> {
    check_size(op, arg, handle, shape, crate::DType::F32)
}

/// A buffer argument of a kernel launch: `len` items of `item_bytes` bytes each from the start
/// of `handle` (an item of a `&[Vector<F, N>]` parameter is `N` elements, of a `&[F]` one
/// element). See [`binding`] for the check.
pub(crate) fn buffer(
    op: &'static str,
    arg: &'static str,
    handle: &Handle,
    len: usize,
    item_bytes: usize,
) -> crate::Result<BufferArg> {
    Ok(binding(op, arg, handle, &[1], &[len], item_bytes)?.into_buffer_arg())
}

/// The one place where a kernel argument is made from a raw handle, a shape and strides: every
/// launch in this crate takes its arguments from here (through [`buffer`], or
/// `binding(..)?.into_tensor_arg()` for a strided view), so that no kernel is told that a
/// buffer is longer than it is.
///
/// # Errors
/// [`KernelError::LaunchBounds`](crate::KernelError::LaunchBounds) when the view reaches past
/// the bytes `handle` holds (its size after offsets) or its extent overflows `u64`;
/// [`KernelError::Shape`](crate::KernelError::Shape) when `strides` and `shape` differ in
/// rank. Public launch functions check their inputs with [`check_size`] first, so either error
/// means that a launch computed a wrong length.
pub(crate) fn binding(
    op: &'static str,
    arg: &'static str,
    handle: &Handle,
    strides: &[usize],
    shape: &[usize],
    item_bytes: usize,
) -> crate::Result<TensorBinding> {
    if strides.len() != shape.len() {
        return Err(crate::KernelError::shape(
            op,
            &[strides, shape],
            format!("argument `{arg}`: strides and shape differ in rank"),
        ));
    }
    let got = handle.size_in_used();
    let need = view_bytes(strides, shape, item_bytes);
    if !matches!(need, Some(n) if n <= got) {
        return Err(crate::KernelError::LaunchBounds {
            op,
            arg,
            shape: shape.to_vec(),
            strides: strides.to_vec(),
            item_bytes,
            need,
            got,
        });
    }
    // SAFETY: the one requirement of `TensorBinding::from_raw_parts` is a shape and strides
    // that stay inside the buffer (kernels size their loops and indices by them: a view longer
    // than its buffer would read or write past it). The view's extent (`view_bytes`: one past
    // the furthest item it addresses) was checked above against the bytes the handle holds
    // after its offsets.
    let binding = unsafe {
        TensorBinding::from_raw_parts(
            handle.clone(),
            strides.to_vec().into(),
            shape.to_vec().into(),
        )
    };
    Ok(binding)
}

/// Bytes from the start of a buffer up to one past the furthest item that a view of `shape` and
/// `strides` (in items of `item_bytes` bytes) addresses: 0 for an empty view, `None` when the
/// extent overflows `u64`.
fn view_bytes(strides: &[usize], shape: &[usize], item_bytes: usize) -> Option<u64> {
    if shape.contains(&0) {
        return Some(0);
    }
    let mut last: u64 = 0;
    for (&stride, &dim) in strides.iter().zip(shape) {
        last = last.checked_add((dim as u64 - 1).checked_mul(stride as u64)?)?;
    }
    last.checked_add(1)?.checked_mul(item_bytes as u64)
}

/// The widest vector size of the client's preferred sizes that divides every given length.
pub(crate) fn vector_size(
    client: &cubecl::client::Client,
    elem_bytes: usize,
    lens: &[usize],
) -> usize {
    client
        .io_optimized_vector_sizes(elem_bytes)
        .filter(|&v| lens.iter().all(|&l| l % v == 0))
        .max()
        .unwrap_or(1)
}

/// Sum of the lanes of a vector, as a balanced tree (dependency depth log2 N, not N: on the
/// CPU the lanes are scalar adds and a serial chain dominates short dot products).
#[cube]
pub(crate) fn lane_sum<N: Size>(v: Vector<f32, N>) -> f32 {
    let n = N::value();
    let mut a = Array::<f32>::new(n);
    #[unroll]
    for i in 0..n {
        a[i] = v.extract(i);
    }
    // Halving stages of width 32, 16, ..., 1 (each only when the vector is wider).
    halve(&mut a, n, 32usize);
    halve(&mut a, n, 16usize);
    halve(&mut a, n, 8usize);
    halve(&mut a, n, 4usize);
    halve(&mut a, n, 2usize);
    halve(&mut a, n, 1usize);
    a[0]
}

/// One stage of [`lane_sum`]: `a[i] += a[i + width]` for `i < width`, when `n > width`.
#[cube]
fn halve(a: &mut Array<f32>, #[comptime] n: usize, #[comptime] width: usize) {
    if comptime![n > width] {
        #[unroll]
        for i in 0..width {
            a[i] += a[i + width];
        }
    }
}

/// Maximum of the lanes of a vector.
#[cube]
pub(crate) fn lane_max<N: Size>(v: Vector<f32, N>) -> f32 {
    let mut m = f32::new(f32::NEG_INFINITY);
    #[unroll]
    for i in 0..N::value() {
        m = max(m, v.extract(i));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KernelError;

    #[test]
    fn view_bytes_is_one_past_the_furthest_item() {
        // Contiguous 3 x 4 of 4-byte items: 48 bytes.
        assert_eq!(view_bytes(&[4, 1], &[3, 4], 4), Some(48));
        // A broadcast row (stride 0) reaches only its 4 items.
        assert_eq!(view_bytes(&[0, 1], &[3, 4], 2), Some(8));
        // Rows 10 apart: the last item is at 2 * 10 + 3.
        assert_eq!(view_bytes(&[10, 1], &[3, 4], 1), Some(24));
        assert_eq!(view_bytes(&[4, 1], &[0, 4], 4), Some(0));
        assert_eq!(view_bytes(&[usize::MAX, 1], &[3, 1], 4), None);
    }

    #[test]
    fn arguments_longer_than_their_buffer_are_refused() {
        let client = crate::Backend::Cpu.client().unwrap();
        let h = client.create_from_slice(&[0u8; 16]);
        // Four 4-byte items fit; five do not.
        assert!(buffer("op", "x", &h, 4, 4).is_ok());
        assert!(buffer("op", "x", &h, 2, 8).is_ok());
        let err = buffer("op", "x", &h, 5, 4).err().unwrap();
        assert_eq!(
            err,
            KernelError::LaunchBounds {
                op: "op",
                arg: "x",
                shape: vec![5],
                strides: vec![1],
                item_bytes: 4,
                need: Some(20),
                got: 16,
            }
        );
        // A strided view is measured by its furthest item, not by its element count.
        assert!(binding("op", "t", &h, &[0, 1], &[100, 4], 4).is_ok());
        let err = binding("op", "t", &h, &[3, 1], &[2, 2], 4).err().unwrap();
        assert!(matches!(
            err,
            KernelError::LaunchBounds {
                need: Some(20),
                got: 16,
                ..
            }
        ));
        let err = binding("op", "t", &h, &[1], &[2, 2], 4).err().unwrap();
        assert!(matches!(err, KernelError::Shape { .. }), "{err}");
        // A handle's offsets shrink what it holds.
        let tail = h.clone().offset_start(8);
        assert!(buffer("op", "x", &tail, 2, 4).is_ok());
        assert!(buffer("op", "x", &tail, 3, 4).is_err());
    }
}
