//! Element-wise kernels: unary maps (exp, log, tanh, relu^2, tanh softcap, scalar affine, ...),
//! binary ops on equal shapes (vectorised; broadcasting ones are in `broadcast`), the fused
//! backward maps of relu^2 and softcap, fills, and casts between float types. Arithmetic runs in f32 whatever
//! the storage type.

use cubecl::prelude::*;

use crate::device::DeviceInfo;
use crate::dtype::KernelFloat;
use crate::launch::{self, item_index};
use crate::{Client, DType, Handle, Result};

/// A unary map, with its scalar parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    /// -x.
    Neg,
    /// e^x.
    Exp,
    /// Natural logarithm.
    Log,
    /// tanh(x).
    Tanh,
    /// max(x, 0).
    Relu,
    /// relu(x)^2, nanochat's MLP activation.
    Relu2,
    /// x^2.
    Square,
    /// sqrt(x).
    Sqrt,
    /// 1 / sqrt(x).
    Rsqrt,
    /// 1 / x.
    Recip,
    /// cap * tanh(x / cap), nanochat's logit softcap.
    Softcap {
        /// The bound of the output's magnitude.
        cap: f32,
    },
    /// mul * x + add: every scalar op (scale, shift, negate-and-shift).
    Affine {
        /// The factor.
        mul: f32,
        /// The offset.
        add: f32,
    },
}

pub use cube_enums::{Binary, UnaryKind};

// `#[derive(CubeType)]` generates public companions of each enum here (an `...Expand` enum and
// one constructor per variant) that cannot carry docs: `missing_docs` is allowed on this module
// for them and turned back on for the enums themselves.
#[allow(missing_docs)]
mod cube_enums {
    use cubecl::prelude::*;

    // Declares `UnaryKind`, the variants of `Unary` without their scalars, and `Unary::split`,
    // from the names of the variants that have no scalars.
    macro_rules! unary_kinds {
        ($($plain:ident),* $(,)?) => {
            /// The compile-time part of a [`Unary`](super::Unary) (kernels are specialised per
            /// op); the variants are those of `Unary`, whose scalars the kernels take at run time.
            #[warn(missing_docs)]
            #[derive(CubeType, Clone, Copy, Debug, Hash, PartialEq, Eq)]
            pub enum UnaryKind {
                $(
                    #[doc = concat!("[`Unary::", stringify!($plain), "`](super::Unary::", stringify!($plain), ").")]
                    $plain,
                )*
                /// [`Unary::Softcap`](super::Unary::Softcap).
                Softcap,
                /// [`Unary::Affine`](super::Unary::Affine).
                Affine,
            }

            impl super::Unary {
                /// The kernel's op and its two run-time scalars.
                pub(super) fn split(self) -> (UnaryKind, f32, f32) {
                    use super::Unary;
                    match self {
                        $(Unary::$plain => (UnaryKind::$plain, 0.0, 0.0),)*
                        Unary::Softcap { cap } => (UnaryKind::Softcap, cap, 1.0 / cap),
                        Unary::Affine { mul, add } => (UnaryKind::Affine, mul, add),
                    }
                }
            }
        };
    }

    unary_kinds!(Neg, Exp, Log, Tanh, Relu, Relu2, Square, Sqrt, Rsqrt, Recip);

    /// A binary op on two tensors.
    #[warn(missing_docs)]
    #[derive(CubeType, Clone, Copy, Debug, Hash, PartialEq, Eq)]
    pub enum Binary {
        /// x + y.
        Add,
        /// x - y.
        Sub,
        /// x * y.
        Mul,
        /// x / y.
        Div,
        /// a * x + b * y with the launch's two scalars (a, b).
        Axpby,
        /// d/dx of relu(x)^2 times the incoming gradient: (x, g) -> 2 relu(x) g.
        Relu2Backward,
        /// Softcap backward from its output: (y, g) -> g (1 - (y / cap)^2), scalar a = 1 / cap.
        SoftcapBackward,
    }
}

impl Unary {
    /// Plain-Rust reference of one element.
    pub fn eval(self, x: f64) -> f64 {
        match self {
            Unary::Neg => -x,
            Unary::Exp => x.exp(),
            Unary::Log => x.ln(),
            Unary::Tanh => x.tanh(),
            Unary::Relu => x.max(0.0),
            Unary::Relu2 => x.max(0.0).powi(2),
            Unary::Square => x * x,
            Unary::Sqrt => x.sqrt(),
            Unary::Rsqrt => 1.0 / x.sqrt(),
            Unary::Recip => 1.0 / x,
            Unary::Softcap { cap } => cap as f64 * (x / cap as f64).tanh(),
            Unary::Affine { mul, add } => mul as f64 * x + add as f64,
        }
    }
}

impl Binary {
    /// Plain-Rust reference of one element, with the launch scalars `(a, b)`.
    pub fn eval(self, x: f64, y: f64, a: f64, b: f64) -> f64 {
        match self {
            Binary::Add => x + y,
            Binary::Sub => x - y,
            Binary::Mul => x * y,
            Binary::Div => x / y,
            Binary::Axpby => a * x + b * y,
            Binary::Relu2Backward => 2.0 * x.max(0.0) * y,
            Binary::SoftcapBackward => y * (1.0 - (x * a) * (x * a)),
        }
    }
}

#[cube]
fn apply_unary<N: Size>(
    x: Vector<f32, N>,
    a: f32,
    b: f32,
    #[comptime] op: UnaryKind,
) -> Vector<f32, N> {
    let zero = Vector::<f32, N>::new(0.0);
    match op {
        UnaryKind::Neg => -x,
        UnaryKind::Exp => x.exp(),
        UnaryKind::Log => x.ln(),
        UnaryKind::Tanh => x.tanh(),
        UnaryKind::Relu => max(x, zero),
        UnaryKind::Relu2 => {
            let r = max(x, zero);
            r * r
        }
        UnaryKind::Square => x * x,
        UnaryKind::Sqrt => x.sqrt(),
        UnaryKind::Rsqrt => x.inverse_sqrt(),
        UnaryKind::Recip => Vector::<f32, N>::new(1.0) / x,
        UnaryKind::Softcap => (x * Vector::new(b)).tanh() * Vector::new(a),
        UnaryKind::Affine => x * Vector::new(a) + Vector::new(b),
    }
}

#[cube]
pub(crate) fn apply_binary<N: Size>(
    x: Vector<f32, N>,
    y: Vector<f32, N>,
    a: f32,
    b: f32,
    #[comptime] op: Binary,
) -> Vector<f32, N> {
    match op {
        Binary::Add => x + y,
        Binary::Sub => x - y,
        Binary::Mul => x * y,
        Binary::Div => x / y,
        Binary::Axpby => x * Vector::new(a) + y * Vector::new(b),
        Binary::Relu2Backward => max(x, Vector::new(0.0)) * y * Vector::new(2.0),
        Binary::SoftcapBackward => {
            let t = x * Vector::new(a);
            y * (Vector::new(1.0) - t * t)
        }
    }
}

#[cube(launch)]
fn unary_kernel<F: Float, N: Size>(
    input: &[Vector<F, N>],
    output: &mut [Vector<F, N>],
    a: f32,
    b: f32,
    steps: usize,
    #[comptime] op: UnaryKind,
    #[comptime] blocked: bool,
) {
    for s in 0..steps {
        let i = item_index(s, steps, blocked);
        if i < output.len() {
            let x = Vector::<f32, N>::cast_from(input[i]);
            output[i] = Vector::cast_from(apply_unary::<N>(x, a, b, op));
        }
    }
}

#[cube(launch)]
fn binary_kernel<F: Float, N: Size>(
    lhs: &[Vector<F, N>],
    rhs: &[Vector<F, N>],
    output: &mut [Vector<F, N>],
    a: f32,
    b: f32,
    steps: usize,
    #[comptime] op: Binary,
    #[comptime] blocked: bool,
) {
    for s in 0..steps {
        let i = item_index(s, steps, blocked);
        if i < output.len() {
            let x = Vector::<f32, N>::cast_from(lhs[i]);
            let y = Vector::<f32, N>::cast_from(rhs[i]);
            output[i] = Vector::cast_from(apply_binary::<N>(x, y, a, b, op));
        }
    }
}

#[cube(launch)]
fn cast_kernel<I: Float, O: Float, N: Size>(
    input: &[Vector<I, N>],
    output: &mut [Vector<O, N>],
    steps: usize,
    #[comptime] blocked: bool,
) {
    for s in 0..steps {
        let i = item_index(s, steps, blocked);
        if i < output.len() {
            output[i] = Vector::cast_from(input[i]);
        }
    }
}

/// `op(x)` element-wise over `len` elements of dtype `F`; returns a new buffer.
pub fn unary<F: KernelFloat>(client: &Client, x: &Handle, len: usize, op: Unary) -> Result<Handle> {
    let dtype = F::DTYPE;
    launch::check_size("unary", "x", x, &[len], dtype)?;
    let out = client.empty(len * dtype.size());
    if len == 0 {
        return Ok(out);
    }
    let (g, vs, bufs) = launch::flat(client, "unary", dtype.size(), len);
    let (kind, a, b) = op.split();
    let (ax, aout) = (bufs.vecs("input", x, len)?, bufs.vecs("output", &out, len)?);
    launch::launch_on!(unary_kernel::<F>, client, g, vs; ax, aout, a, b, g.steps, kind, g.blocked);
    Ok(out)
}

/// `op(x, y)` element-wise on two buffers of `len` elements with scalars `(a, b)` (used by
/// [`Binary::Axpby`] and [`Binary::SoftcapBackward`]).
pub fn binary<F: KernelFloat>(
    client: &Client,
    x: &Handle,
    y: &Handle,
    len: usize,
    op: Binary,
    a: f32,
    b: f32,
) -> Result<Handle> {
    let dtype = F::DTYPE;
    launch::check_size("binary", "lhs", x, &[len], dtype)?;
    launch::check_size("binary", "rhs", y, &[len], dtype)?;
    let out = client.empty(len * dtype.size());
    if len == 0 {
        return Ok(out);
    }
    let (g, vs, bufs) = launch::flat(client, "binary", dtype.size(), len);
    let (ax, ay) = (bufs.vecs("lhs", x, len)?, bufs.vecs("rhs", y, len)?);
    let aout = bufs.vecs("output", &out, len)?;
    launch::launch_on!(binary_kernel::<F>, client, g, vs; ax, ay, aout, a, b, g.steps, op, g.blocked);
    Ok(out)
}

#[cube(launch)]
fn fill_kernel<F: Float, N: Size>(
    output: &mut [Vector<F, N>],
    value: f32,
    steps: usize,
    #[comptime] blocked: bool,
) {
    for s in 0..steps {
        let i = item_index(s, steps, blocked);
        if i < output.len() {
            output[i] = Vector::cast_from(Vector::<f32, N>::new(value));
        }
    }
}

/// A new buffer of `len` elements all equal to `value`.
pub fn fill<F: KernelFloat>(client: &Client, len: usize, value: f32) -> Result<Handle> {
    let out = client.empty(len.max(1) * F::DTYPE.size());
    if len == 0 {
        return Ok(out);
    }
    let (g, vs, bufs) = launch::flat(client, "fill", F::DTYPE.size(), len);
    let aout = bufs.vecs("output", &out, len)?;
    launch::launch_on!(fill_kernel::<F>, client, g, vs; aout, value, g.steps, g.blocked);
    Ok(out)
}

#[cube(launch)]
fn axpby_inplace_kernel<F: Float, N: Size>(
    y: &mut [Vector<F, N>],
    x: &[Vector<F, N>],
    a: f32,
    b: f32,
    steps: usize,
    #[comptime] blocked: bool,
) {
    for s in 0..steps {
        let i = item_index(s, steps, blocked);
        if i < y.len() {
            let yv = Vector::<f32, N>::cast_from(y[i]);
            let xv = Vector::<f32, N>::cast_from(x[i]);
            y[i] = Vector::cast_from(yv * Vector::new(a) + xv * Vector::new(b));
        }
    }
}

/// `y = a * y + b * x` in place over `len` elements (optimizer updates of parameters and
/// state that must keep their buffers).
pub fn axpby_inplace<F: KernelFloat>(
    client: &Client,
    y: &Handle,
    x: &Handle,
    len: usize,
    a: f32,
    b: f32,
) -> Result<()> {
    launch::check_size("axpby_inplace", "y", y, &[len], F::DTYPE)?;
    launch::check_size("axpby_inplace", "x", x, &[len], F::DTYPE)?;
    if len == 0 {
        return Ok(());
    }
    let (g, vs, bufs) = launch::flat(client, "axpby_inplace", F::DTYPE.size(), len);
    let (ay, ax) = (bufs.vecs("y", y, len)?, bufs.vecs("x", x, len)?);
    launch::launch_on!(axpby_inplace_kernel::<F>, client, g, vs; ay, ax, a, b, g.steps, g.blocked);
    Ok(())
}

/// Converts `len` elements from `I` to `O` (round to nearest even into bf16).
pub fn cast<I: KernelFloat, O: KernelFloat>(
    client: &Client,
    x: &Handle,
    len: usize,
) -> Result<Handle> {
    let (di, dout) = (I::DTYPE, O::DTYPE);
    launch::check_size("cast", "x", x, &[len], di)?;
    let out = client.empty(len * dout.size());
    if len == 0 {
        return Ok(out);
    }
    let vs = launch::vector_size(client, di.size().max(dout.size()), &[len]);
    let n = len / vs;
    let g = launch::elemwise(&DeviceInfo::of(client), n);
    cast_kernel::launch::<I, O>(
        client,
        g.cube_count,
        g.cube_dim,
        vs,
        launch::buffer("cast", "input", x, n, vs * I::DTYPE.size())?,
        launch::buffer("cast", "output", &out, n, vs * O::DTYPE.size())?,
        g.steps,
        g.blocked,
    );
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Checks against the reference

use crate::check::{f64s, Check, Ctx};

pub(crate) fn checks() -> Vec<Check> {
    crate::check::check_list![
        "elementwise.unary" => check_unary,
        "elementwise.binary" => check_binary,
        "elementwise.cast" => check_cast,
        "elementwise.fill" => check_fill,
        "elementwise.axpby_inplace" => check_axpby_inplace,
    ]
}

const LENS: [usize; 5] = [1, 7, 33, 1000, 4099];

fn check_unary(ctx: &mut Ctx) -> Result<()> {
    let ops = [
        Unary::Neg,
        Unary::Exp,
        Unary::Log,
        Unary::Tanh,
        Unary::Relu,
        Unary::Relu2,
        Unary::Square,
        Unary::Sqrt,
        Unary::Rsqrt,
        Unary::Recip,
        Unary::Softcap { cap: 15.0 },
        Unary::Affine {
            mul: -0.75,
            add: 2.5,
        },
    ];
    for op in ops {
        for len in LENS {
            let positive = matches!(op, Unary::Log | Unary::Sqrt | Unary::Rsqrt | Unary::Recip);
            let x = if positive {
                ctx.rand(len, 0.1, 4.0)
            } else {
                ctx.rand(len, -30.0, 30.0)
            };
            let x = if matches!(op, Unary::Exp) {
                x.iter().map(|v| v / 4.0).collect()
            } else {
                x
            };
            let hx = ctx.upload(&x);
            let out = crate::with_float!(ctx.dtype, F => unary::<F>(ctx.client, &hx, len, op))?;
            let got = ctx.download(&out)?;
            let want: Vec<f64> = x.iter().map(|&v| op.eval(v as f64)).collect();
            let tol = ctx.tol(4.0);
            let label = format!("len={len}");
            ctx.compare(&format!("unary {op:?}"), &label, &got, &want, tol);
        }
    }
    Ok(())
}

pub(crate) const BINARY_OPS: [Binary; 7] = [
    Binary::Add,
    Binary::Sub,
    Binary::Mul,
    Binary::Div,
    Binary::Axpby,
    Binary::Relu2Backward,
    Binary::SoftcapBackward,
];

pub(crate) fn binary_operands(
    ctx: &mut Ctx,
    op: Binary,
    n_x: usize,
    n_y: usize,
) -> (Vec<f32>, Vec<f32>) {
    let x = match op {
        Binary::SoftcapBackward => ctx.rand(n_x, -14.0, 14.0),
        _ => ctx.rand(n_x, -3.0, 3.0),
    };
    let y = match op {
        Binary::Div => ctx.rand(n_y, 0.5, 3.0),
        _ => ctx.rand(n_y, -3.0, 3.0),
    };
    (x, y)
}

fn check_binary(ctx: &mut Ctx) -> Result<()> {
    let (a, b) = (0.7f32, -1.3f32);
    for op in BINARY_OPS {
        let (a, b) = if op == Binary::SoftcapBackward {
            (1.0 / 15.0, 0.0)
        } else {
            (a, b)
        };
        for len in LENS {
            let (x, y) = binary_operands(ctx, op, len, len);
            let (hx, hy) = (ctx.upload(&x), ctx.upload(&y));
            let out = crate::with_float!(ctx.dtype, F => binary::<F>(ctx.client, &hx, &hy, len, op, a, b))?;
            let got = ctx.download(&out)?;
            let want: Vec<f64> = x
                .iter()
                .zip(&y)
                .map(|(&p, &q)| op.eval(p as f64, q as f64, a as f64, b as f64))
                .collect();
            let tol = ctx.tol(4.0);
            let label = format!("len={len}");
            ctx.compare(&format!("binary {op:?}"), &label, &got, &want, tol);
        }
    }
    Ok(())
}

fn check_cast(ctx: &mut Ctx) -> Result<()> {
    use crate::dtype::bf16;
    for len in LENS {
        // f32 -> dtype -> f32 round trip: bf16 rounds to nearest even, f32 is exact.
        let x = ctx.rand_f32(len, -100.0, 100.0);
        let hx = crate::check::upload_f32(ctx.client, &x);
        let (got, want): (Vec<f32>, Vec<f64>) = match ctx.dtype {
            DType::F32 => {
                let h = cast::<f32, f32>(ctx.client, &hx, len)?;
                (
                    crate::check::download(ctx.client, DType::F32, &h)?,
                    f64s(&x),
                )
            }
            DType::BF16 => {
                let h = cast::<f32, bf16>(ctx.client, &hx, len)?;
                let back = cast::<bf16, f32>(ctx.client, &h, len)?;
                let want = x
                    .iter()
                    .map(|&v| bf16::from_f32(v).to_f32() as f64)
                    .collect();
                (crate::check::download(ctx.client, DType::F32, &back)?, want)
            }
        };
        let label = format!("len={len}");
        ctx.compare("cast f32->dtype->f32", &label, &got, &want, 0.0);
    }
    Ok(())
}

fn check_fill(ctx: &mut Ctx) -> Result<()> {
    for len in LENS {
        let h = crate::with_float!(ctx.dtype, F => fill::<F>(ctx.client, len, -2.5))?;
        let got = ctx.download(&h)?;
        let label = format!("len={len}");
        ctx.compare("fill", &label, &got[..len], &vec![-2.5; len], 0.0);
    }
    Ok(())
}

fn check_axpby_inplace(ctx: &mut Ctx) -> Result<()> {
    for len in LENS {
        let y = ctx.rand(len, -1.0, 1.0);
        let x = ctx.rand(len, -1.0, 1.0);
        let (hy, hx) = (ctx.upload(&y), ctx.upload(&x));
        crate::with_float!(ctx.dtype, F => axpby_inplace::<F>(ctx.client, &hy, &hx, len, 0.9, -0.3))?;
        let got = ctx.download(&hy)?;
        let want: Vec<f64> = y
            .iter()
            .zip(&x)
            .map(|(&p, &q)| 0.9 * p as f64 - 0.3 * q as f64)
            .collect();
        let tol = ctx.tol(4.0);
        ctx.compare("axpby_inplace", &format!("len={len}"), &got, &want, tol);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    crate::check::check_tests!(
        axpby_inplace_matches_reference => "elementwise.axpby_inplace", fill_matches_reference => "elementwise.fill",
        unary_matches_reference => "elementwise.unary", binary_matches_reference => "elementwise.binary",
        cast_matches_reference => "elementwise.cast"
    );
}
