//! Batched matmul with transposed operands, through one dispatch point per device.
//!
//! `out[b] = op(A[b]) @ op(B[b])` (batch, m, n), where A is stored (batch, m, k) or, transposed,
//! (batch, k, m), and B is stored (batch, k, n) or (batch, n, k); either operand may instead be
//! one matrix shared by every batch (a weight). The model's products are all of this form:
//! `y = x @ W^T` (`trans_b`), `dx = dy @ W`, `dW = dy^T @ x` (`trans_a`).
//!
//! Dispatch ([`matmul`]): on the CPU runtime our packed GEMM ([`packed_matmul`]) on AVX-512
//! hosts for outputs whose rows are whole vectors (`n` a multiple of 16), cubek's `CpuGemm`
//! otherwise (or everywhere with `NANOCHAT_CPU_MATMUL=cpugemm`), and the GEMV kernel for a few
//! rows against a transposed B; on CUDA every candidate allowed
//! by the [`Precision`] (cuBLASLt, cubek's TMA and tensor-core routines, cubek's true-f32
//! `SimpleUnit`, our tiled kernel) is timed once per shape and the fastest is remembered. Our
//! tiled kernel ([`tiled_matmul`]) is the oracle and the fallback when a routine refuses a shape.

mod cubek;
#[cfg(feature = "cuda")]
mod cublaslt;
mod gemv;
mod packed;
mod packed_checks;
mod reference;
pub mod state;
mod tiled;

use std::time::Instant;

pub use gemv::{gemv_eligible, gemv_nt, GEMV_MAX_ROWS};
pub use packed::{packed_eligible, packed_matmul, packed_matmul_ext, Epilogue, PackedExtras};
pub use reference::matmul_ref;
pub use state::{device_key, precision_for, set_precision_for};
pub use tiled::tiled_matmul;

use crate::check::{f64s, Check, Ctx};
use crate::dtype::KernelFloat;
use crate::{launch, Client, DType, Handle, KernelError, Result};

/// Sizes and layout of a batched matmul.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatmulShape {
    /// Products in the batch (the output is (batch, m, n)).
    pub batch: usize,
    /// Rows of op(A) and of the output.
    pub m: usize,
    /// Columns of op(B) and of the output.
    pub n: usize,
    /// Columns of op(A), rows of op(B): the length of each dot product.
    pub k: usize,
    /// A is stored (k, m) per batch.
    pub trans_a: bool,
    /// B is stored (n, k) per batch.
    pub trans_b: bool,
    /// A holds `batch` matrices (else one, shared).
    pub lhs_batched: bool,
    /// B holds `batch` matrices (else one, shared).
    pub rhs_batched: bool,
}

impl MatmulShape {
    /// A plain 2-d product (m, k) @ (k, n) with optional transposes.
    pub fn new(m: usize, n: usize, k: usize, trans_a: bool, trans_b: bool) -> Self {
        MatmulShape {
            batch: 1,
            m,
            n,
            k,
            trans_a,
            trans_b,
            lhs_batched: true,
            rhs_batched: true,
        }
    }

    /// `batch` products, both operands batched.
    pub fn batched(
        batch: usize,
        m: usize,
        n: usize,
        k: usize,
        trans_a: bool,
        trans_b: bool,
    ) -> Self {
        MatmulShape {
            batch,
            ..Self::new(m, n, k, trans_a, trans_b)
        }
    }

    /// (batch, row, col) strides of A as op(A) is indexed: element (b, i, p).
    pub fn lhs_strides(&self) -> (usize, usize, usize) {
        op_strides(self.lhs_batched, self.trans_a, self.m, self.k)
    }

    /// (batch, row, col) strides of B as op(B) is indexed: element (b, p, j).
    pub fn rhs_strides(&self) -> (usize, usize, usize) {
        op_strides(self.rhs_batched, self.trans_b, self.k, self.n)
    }

    /// Elements stored in A.
    pub fn lhs_len(&self) -> usize {
        (if self.lhs_batched { self.batch } else { 1 }) * self.m * self.k
    }

    /// Elements stored in B.
    pub fn rhs_len(&self) -> usize {
        (if self.rhs_batched { self.batch } else { 1 }) * self.k * self.n
    }

    /// Multiply-adds times two.
    pub fn flops(&self) -> f64 {
        2.0 * self.batch as f64 * self.m as f64 * self.n as f64 * self.k as f64
    }
}

/// One implementation of the matmul.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulKernel {
    /// Our register-tiled kernel (oracle, fallback); true f32.
    Tiled,
    /// cubek `Tiled(CpuGemm)`: the CPU runtime's path for outputs of ragged width; true f32.
    CpuGemm,
    /// Our packed CPU GEMM ([`packed_matmul`]): the CPU runtime's fast path on AVX-512 hosts;
    /// true f32.
    CpuPacked,
    /// cubek `SimpleUnit`: no tensor cores, true f32 on CUDA.
    CubekSimpleUnit,
    /// cubek `SpecializedTmaMma` (sm_90, cuda-cpp); tf32 for f32 inputs.
    CubekSpecializedTma,
    /// cubek `DoubleTmaMma` (sm_90, cuda-cpp); tf32 for f32 inputs.
    CubekDoubleTma,
    /// cubek `OrderedDoubleCmma`; tf32 for f32 inputs.
    CubekOrderedDoubleCmma,
    /// cuBLASLt through cudarc (CUDA only); `CUBLAS_COMPUTE_32F` unless tf32 is allowed.
    CublasLt,
    /// Our few-rows `x @ W^T` kernel ([`gemv_nt`]): the CPU's decode path; true f32.
    Gemv,
}

impl MatmulKernel {
    /// Every matmul kernel (the dispatch's candidates on a device are a subset).
    pub const ALL: [MatmulKernel; 9] = [
        MatmulKernel::Tiled,
        MatmulKernel::CpuGemm,
        MatmulKernel::CpuPacked,
        MatmulKernel::CubekSimpleUnit,
        MatmulKernel::CubekSpecializedTma,
        MatmulKernel::CubekDoubleTma,
        MatmulKernel::CubekOrderedDoubleCmma,
        MatmulKernel::CublasLt,
        MatmulKernel::Gemv,
    ];

    /// Whether the kernel keeps f32 inputs in true f32 (no tf32 tensor cores).
    pub fn is_true_f32(self) -> bool {
        matches!(
            self,
            MatmulKernel::Tiled
                | MatmulKernel::Gemv
                | MatmulKernel::CpuGemm
                | MatmulKernel::CpuPacked
                | MatmulKernel::CubekSimpleUnit
                | MatmulKernel::CublasLt
        )
    }
}

/// What an f32 matmul may trade for speed. bf16 inputs always accumulate in f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Precision {
    /// True f32: tests, `verify-reference` and the default.
    Strict,
    /// tf32 tensor cores allowed for f32 inputs (training on a GPU).
    Tf32,
}

/// Allows (or forbids, the default) tf32 for f32 matmuls dispatched on this client's device.
/// Other devices keep their own setting ([`state::set_precision_for`]).
pub fn set_precision(client: &Client, p: Precision) {
    set_precision_for(&device_key(client), p);
}

/// The precision of f32 matmuls on this client's device ([`Precision::Strict`] unless set).
pub fn precision(client: &Client) -> Precision {
    precision_for(&device_key(client))
}

/// The kernels [`matmul`] may choose on this client for this dtype and precision, best guess
/// first.
pub fn candidates(client: &Client, dtype: DType, precision: Precision) -> Vec<MatmulKernel> {
    let info = crate::DeviceInfo::of(client);
    if info.runtime == "cpu" || info.blocked {
        return vec![
            MatmulKernel::CpuPacked,
            MatmulKernel::CpuGemm,
            MatmulKernel::Tiled,
        ];
    }
    let fast = dtype == DType::BF16 || precision == Precision::Tf32;
    let mut out = Vec::new();
    if cfg!(feature = "cuda") && info.runtime == "cuda" {
        out.push(MatmulKernel::CublasLt);
    }
    if fast {
        out.extend([
            MatmulKernel::CubekSpecializedTma,
            MatmulKernel::CubekDoubleTma,
            MatmulKernel::CubekOrderedDoubleCmma,
        ]);
    } else {
        out.push(MatmulKernel::CubekSimpleUnit);
    }
    out.push(MatmulKernel::Tiled);
    out
}

/// (batch, row, col) strides of an operand indexed as the (rows, cols) matrix `op(X)`: X is
/// stored (rows, cols), or (cols, rows) when `trans`; batches are `rows * cols` apart when
/// `batched`, else shared (stride 0).
fn op_strides(batched: bool, trans: bool, rows: usize, cols: usize) -> (usize, usize, usize) {
    let bs = if batched { rows * cols } else { 0 };
    if trans {
        (bs, 1, rows)
    } else {
        (bs, cols, 1)
    }
}

fn validate<F: KernelFloat>(a: &Handle, b: &Handle, s: &MatmulShape) -> Result<()> {
    if s.batch == 0 || s.m == 0 || s.n == 0 {
        return Err(KernelError::shape(
            "matmul",
            &[&[s.batch, s.m, s.n, s.k]],
            "batch, m and n must be positive",
        ));
    }
    // Every length below (operands, output, packed panels) then fits in usize with room.
    let fits = |dims: &[usize]| {
        dims.iter()
            .try_fold(1usize << 8, |acc, &d| acc.checked_mul(d))
            .is_some()
    };
    if !fits(&[s.batch, s.m, s.k])
        || !fits(&[s.batch, s.k, s.n.saturating_add(32)])
        || !fits(&[s.batch, s.m, s.n])
    {
        return Err(KernelError::shape(
            "matmul",
            &[&[s.batch, s.m, s.n, s.k]],
            "sizes overflow the address space",
        ));
    }
    launch::check_size("matmul", "lhs", a, &[s.lhs_len()], F::DTYPE)?;
    launch::check_size("matmul", "rhs", b, &[s.rhs_len()], F::DTYPE)?;
    Ok(())
}

/// Checks the operands ([`validate`]); for an empty sum (k = 0), the zero (batch, m, n) output.
fn validate_or_zeros<F: KernelFloat>(
    client: &Client,
    a: &Handle,
    b: &Handle,
    s: &MatmulShape,
) -> Result<Option<Handle>> {
    validate::<F>(a, b, s)?;
    if s.k == 0 {
        return crate::elementwise::fill::<F>(client, s.batch * s.m * s.n, 0.0).map(Some);
    }
    Ok(None)
}

/// Writes `op(A) @ op(B)` into `out` with one given kernel.
pub fn matmul_into<F: KernelFloat>(
    client: &Client,
    kernel: MatmulKernel,
    a: &Handle,
    b: &Handle,
    out: &Handle,
    s: &MatmulShape,
) -> Result<()> {
    validate::<F>(a, b, s)?;
    launch::check_size("matmul", "out", out, &[s.batch, s.m, s.n], F::DTYPE)?;
    if s.k == 0 {
        // No routine handles an empty sum; `matmul` and `matmul_with` return zeros for it.
        return Err(KernelError::unsupported(
            "matmul",
            "k = 0: use `matmul`, which returns zeros",
        ));
    }
    let g = Gemm { a, b, out, s };
    match kernel {
        MatmulKernel::Tiled => tiled_matmul::<F>(client, g),
        MatmulKernel::Gemv => gemv_nt::<F>(client, g),
        MatmulKernel::CpuPacked => packed_matmul::<F>(client, g),
        MatmulKernel::CublasLt => cublaslt_into::<F>(client, g),
        k => cubek::cubek_matmul::<F>(client, k, g),
    }
}

/// The buffers and shape of one product `out = op(A) @ op(B)`, as each kernel's launch takes
/// them (checked by [`matmul_into`]).
#[derive(Clone, Copy)]
pub struct Gemm<'a> {
    /// A: (batch or 1, m, k), or (batch or 1, k, m) when transposed.
    pub a: &'a Handle,
    /// B: (batch or 1, k, n), or (batch or 1, n, k) when transposed.
    pub b: &'a Handle,
    /// The (batch, m, n) output.
    pub out: &'a Handle,
    /// Sizes and transposes.
    pub s: &'a MatmulShape,
}

impl<'a> Gemm<'a> {
    /// `out = op(a) @ op(b)` of shape `s`.
    pub fn new(a: &'a Handle, b: &'a Handle, out: &'a Handle, s: &'a MatmulShape) -> Self {
        Gemm { a, b, out, s }
    }
}

#[cfg(feature = "cuda")]
fn cublaslt_into<F: KernelFloat>(client: &Client, g: Gemm) -> Result<()> {
    let tf32 = precision(client) == Precision::Tf32;
    cublaslt::cublaslt_matmul::<F>(client, g.a, g.b, g.out, g.s, tf32)
}

#[cfg(not(feature = "cuda"))]
fn cublaslt_into<F: KernelFloat>(_: &Client, _: Gemm) -> Result<()> {
    Err(KernelError::unsupported(
        "matmul",
        "cuBLASLt needs a build with the `cuda` feature",
    ))
}

/// `op(A) @ op(B)` as a new (batch, m, n) buffer with one given kernel.
pub fn matmul_with<F: KernelFloat>(
    client: &Client,
    kernel: MatmulKernel,
    a: &Handle,
    b: &Handle,
    s: &MatmulShape,
) -> Result<Handle> {
    if let Some(zeros) = validate_or_zeros::<F>(client, a, b, s)? {
        return Ok(zeros);
    }
    let out = client.empty(s.batch * s.m * s.n * F::DTYPE.size());
    matmul_into::<F>(client, kernel, a, b, &out, s)?;
    Ok(out)
}

/// The kernel [`matmul`] uses for this problem (timing the candidates the first time a shape is
/// seen on a device with several; the choice is remembered per device, shape, dtype and
/// precision in [`state::autotune`], on disk when `NANOCHAT_AUTOTUNE_CACHE` names a file).
pub fn choose<F: KernelFloat>(
    client: &Client,
    a: &Handle,
    b: &Handle,
    s: &MatmulShape,
) -> Result<MatmulKernel> {
    let prec = precision(client);
    let cands = candidates(client, F::DTYPE, prec);
    if cands[0] == MatmulKernel::CpuPacked {
        return Ok(cpu_choice(s, F::DTYPE));
    }
    let key = state::TuneKey {
        device: device_key(client),
        op: "matmul",
        shape: *s,
        dtype: F::DTYPE,
        precision: prec,
    };
    if let Some(k) = state::autotune().get(&key) {
        return Ok(k);
    }
    let out = client.empty(s.batch * s.m * s.n * F::DTYPE.size());
    let mut best: Option<(f64, MatmulKernel)> = None;
    for &kernel in &cands {
        let run = || -> Result<f64> {
            matmul_into::<F>(client, kernel, a, b, &out, s)?;
            sync(client)?;
            let reps = 3;
            let t = Instant::now();
            for _ in 0..reps {
                matmul_into::<F>(client, kernel, a, b, &out, s)?;
            }
            sync(client)?;
            Ok(t.elapsed().as_secs_f64() / reps as f64)
        };
        match run() {
            Ok(t) => {
                tracing::debug!(?kernel, secs = t, shape = ?s, "matmul candidate");
                if best.is_none_or(|(bt, _)| t < bt) {
                    best = Some((t, kernel));
                }
            }
            Err(e) => tracing::debug!(?kernel, error = %e, "matmul candidate refused"),
        }
    }
    let (_, kernel) =
        best.ok_or_else(|| KernelError::runtime("matmul", format!("no kernel ran shape {s:?}")))?;
    if let Err(e) = state::autotune().insert(key, kernel) {
        // Only the file failed: the choice is kept in memory.
        tracing::warn!("{e}");
    }
    Ok(kernel)
}

/// The CPU runtime's kernel for a shape: the GEMV kernel for a few rows against a transposed B
/// (decoding: x @ W^T; a GEMM would first copy all of W every token, the GEMV kernel reads it
/// in place), the packed GEMM where it takes the shape on an AVX-512 host, `CpuGemm` otherwise.
fn cpu_choice(s: &MatmulShape, dtype: DType) -> MatmulKernel {
    if gemv_eligible(s) {
        MatmulKernel::Gemv
    } else if packed_eligible(s, dtype) && cubek::has_avx512() && !cpugemm_forced() {
        MatmulKernel::CpuPacked
    } else {
        MatmulKernel::CpuGemm
    }
}

/// Whether [`matmul`] runs shape `s` in `F` on this client with the packed CPU GEMM (so that
/// [`packed_matmul_ext`]'s symmetric and fused products may stand in for it).
pub fn takes_packed<F: KernelFloat>(client: &Client, s: &MatmulShape) -> bool {
    let cands = candidates(client, F::DTYPE, precision(client));
    cands[0] == MatmulKernel::CpuPacked && cpu_choice(s, F::DTYPE) == MatmulKernel::CpuPacked
}

/// Whether `NANOCHAT_CPU_MATMUL=cpugemm` sends every CPU product to cubek's `CpuGemm` (to
/// measure the packed kernel against it in one build, docs/benchmarks.md).
fn cpugemm_forced() -> bool {
    static FORCED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FORCED.get_or_init(|| {
        std::env::var("NANOCHAT_CPU_MATMUL").is_ok_and(|v| v.eq_ignore_ascii_case("cpugemm"))
    })
}

/// Waits for every launch on the client to finish.
pub fn sync(client: &Client) -> Result<()> {
    cubecl::future::block_on(client.sync())
        .map_err(|e| KernelError::runtime("sync", format!("{e:?}")))
}

/// `op(A) @ op(B)` as a new (batch, m, n) buffer, through the device's dispatch. A routine that
/// refuses the shape falls back to the tiled kernel.
pub fn matmul<F: KernelFloat>(
    client: &Client,
    a: &Handle,
    b: &Handle,
    s: &MatmulShape,
) -> Result<Handle> {
    let kernel = match validate_or_zeros::<F>(client, a, b, s)? {
        Some(zeros) => return Ok(zeros),
        None => choose::<F>(client, a, b, s)?,
    };
    match matmul_with::<F>(client, kernel, a, b, s) {
        Ok(h) => Ok(h),
        Err(e) if kernel != MatmulKernel::Tiled => {
            tracing::debug!(?kernel, error = %e, "matmul falls back to the tiled kernel");
            matmul_with::<F>(client, MatmulKernel::Tiled, a, b, s)
        }
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------------------------------------
// Checks

pub(crate) fn checks() -> Vec<Check> {
    crate::check::check_list![
        "matmul.dispatch" => check_dispatch,
        "matmul.tiled" => check_tiled,
        "matmul.gemv" => check_gemv,
        "matmul.packed" => check_packed,
        "matmul.packed_extras" => packed_checks::check_packed_extras,
    ]
}

/// Odd shapes: size 1, primes around tile and vector widths, transposes, shared operands.
fn shapes() -> Vec<MatmulShape> {
    let mut out = Vec::new();
    for (m, n, k) in [
        (1, 1, 1),
        (7, 13, 5),
        (33, 17, 65),
        (64, 48, 40),
        (129, 67, 3),
    ] {
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            out.push(MatmulShape::new(m, n, k, ta, tb));
        }
    }
    // Wider than a CPU panel: column panels with a ragged last one (the CPU cuts panels from
    // 512 rows on), B given as it is and transposed (each panel then transposed straight from
    // B's rows), and deep enough to be split in depth too.
    out.push(MatmulShape::new(33, 601, 20, false, false));
    for (ta, tb) in [(false, false), (false, true), (true, true)] {
        out.push(MatmulShape::new(520, 601, 20, ta, tb));
    }
    out.push(MatmulShape::new(520, 400, 6200, false, true));
    // Deeper than a CPU depth block (k split into partial sums), narrow and wide.
    out.push(MatmulShape::new(7, 300, 2600, false, true));
    out.push(MatmulShape::new(5, 450, 9000, true, false));
    // A^T B with A much larger than B and C (a weight gradient of the lm_head's shape): the
    // CPU computes (B^T A)^T.
    out.push(MatmulShape::new(601, 7, 40, true, false));
    out.push(MatmulShape::new(2000, 9, 65, true, false));
    out.push(MatmulShape::batched(2, 9, 403, 17, false, true));
    out.push(MatmulShape::batched(3, 9, 11, 7, false, true));
    // Decode-sized: a few rows (batched, B shared) against a transposed weight, odd widths.
    for (batch, m, n, k) in [
        (1, 3, 1001, 37),
        (2, 4, 257, 96),
        (8, 1, 130, 64),
        (1, 8, 5, 1),
    ] {
        out.push(MatmulShape {
            rhs_batched: false,
            ..MatmulShape::batched(batch, m, n, k, false, true)
        });
    }
    out.push(MatmulShape::batched(2, 5, 6, 33, true, false));
    out.push(MatmulShape {
        rhs_batched: false,
        ..MatmulShape::batched(4, 10, 7, 13, false, true)
    });
    out.push(MatmulShape {
        lhs_batched: false,
        ..MatmulShape::batched(3, 6, 10, 9, false, false)
    });
    // Whole-vector widths for the packed kernel: ragged row panels (m not a multiple of 12),
    // a ragged column panel (48 = one and a half panels), depths of one, of a ragged last
    // block (300 = 256 + 44) and of several blocks; every layout, batched with either
    // operand shared.
    for (m, n, k) in [(1, 16, 1), (13, 48, 7), (25, 32, 300), (37, 96, 513)] {
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            out.push(MatmulShape::new(m, n, k, ta, tb));
        }
    }
    for (ta, tb) in [(false, false), (true, true)] {
        out.push(MatmulShape::batched(3, 14, 48, 29, ta, tb));
        for (lhs_batched, rhs_batched) in [(true, false), (false, true)] {
            out.push(MatmulShape {
                lhs_batched,
                rhs_batched,
                ..MatmulShape::batched(2, 13, 80, 270, ta, tb)
            });
        }
    }
    out
}

fn run_matmul_check(ctx: &mut Ctx, name: &str, kernel: Option<MatmulKernel>) -> Result<()> {
    let dtype = ctx.dtype;
    let shapes = shapes()
        .into_iter()
        .filter(|s| kernel != Some(MatmulKernel::Gemv) || gemv_eligible(s))
        .filter(|s| kernel != Some(MatmulKernel::CpuPacked) || packed_eligible(s, dtype));
    for s in shapes {
        let a = ctx.rand(s.lhs_len(), -1.0, 1.0);
        let b = ctx.rand(s.rhs_len(), -1.0, 1.0);
        let (ha, hb) = (ctx.upload(&a), ctx.upload(&b));
        let out = crate::with_float!(ctx.dtype, F => match kernel {
            Some(k) => matmul_with::<F>(ctx.client, k, &ha, &hb, &s),
            None => matmul::<F>(ctx.client, &ha, &hb, &s),
        })?;
        let got = ctx.download(&out)?;
        let want = matmul_ref(&f64s(&a), &f64s(&b), &s);
        // f32 dot products of length k: rounding grows like sqrt(k).
        let tol = ctx.tol(4.0) + 2e-7 * (s.k as f64).sqrt();
        ctx.compare(name, &format!("{s:?}"), &got, &want, tol);
    }
    Ok(())
}

fn check_dispatch(ctx: &mut Ctx) -> Result<()> {
    run_matmul_check(ctx, "matmul (dispatch)", None)
}

fn check_tiled(ctx: &mut Ctx) -> Result<()> {
    run_matmul_check(ctx, "matmul (tiled)", Some(MatmulKernel::Tiled))
}

fn check_packed(ctx: &mut Ctx) -> Result<()> {
    run_matmul_check(ctx, "matmul (packed)", Some(MatmulKernel::CpuPacked))
}

fn check_gemv(ctx: &mut Ctx) -> Result<()> {
    run_matmul_check(ctx, "matmul (gemv)", Some(MatmulKernel::Gemv))
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::check::check_tests!(dispatch_matches_reference => "matmul.dispatch", gemv_matches_reference => "matmul.gemv", packed_matches_reference => "matmul.packed", tiled_matches_reference => "matmul.tiled");

    #[test]
    fn cpu_dispatch_takes_packed_for_whole_vector_rows_on_avx512_and_gemv_for_few_rows() {
        let client = crate::Backend::Cpu.client().unwrap();
        let a = crate::check::upload_f32(&client, &[0.5; 256]);
        let pick = |m, n, tb| {
            choose::<f32>(&client, &a, &a, &MatmulShape::new(m, n, 16, false, tb)).unwrap()
        };
        let fast = if cubek::has_avx512() && !cpugemm_forced() {
            MatmulKernel::CpuPacked
        } else {
            MatmulKernel::CpuGemm
        };
        assert_eq!(pick(16, 16, true), fast);
        assert_eq!(pick(16, 16, false), fast);
        assert_eq!(pick(1, 16, false), fast);
        // A row width that is not whole vectors.
        assert_eq!(pick(16, 12, false), MatmulKernel::CpuGemm);
        // bf16 deeper than one block of 4096, and a buffer of 2^31 values: not packed.
        let s = MatmulShape::new(16, 16, 5000, false, false);
        assert!(packed_eligible(&s, DType::F32) && !packed_eligible(&s, DType::BF16));
        assert!(!packed_eligible(
            &MatmulShape::new(1 << 16, 1 << 15, 1, false, false),
            DType::F32
        ));
        assert_eq!(pick(1, 16, true), MatmulKernel::Gemv);
        assert_eq!(pick(8, 16, true), MatmulKernel::Gemv);
    }

    #[test]
    fn only_products_dominated_by_a_transposed_a_swap_operands_on_the_cpu() {
        let swaps = |m, n, k, ta, tb| cubek::swaps_operands(&MatmulShape::new(m, n, k, ta, tb));
        // The lm_head's weight gradient at vocab 8192 and 65536 (1024 tokens, n_embd 256).
        assert!(swaps(65536, 256, 1024, true, false));
        assert!(swaps(8192, 256, 1024, true, false));
        assert!(swaps(601, 7, 40, true, false));
        // The blocks' weight gradients, and products without a transposed A alone.
        assert!(!swaps(1024, 256, 1024, true, false));
        assert!(!swaps(256, 1024, 1024, true, false));
        assert!(!swaps(65536, 256, 1024, false, false));
        assert!(!swaps(65536, 256, 1024, true, true));
        let batched = MatmulShape::batched(2, 601, 7, 40, true, false);
        assert!(!cubek::swaps_operands(&batched));
    }

    #[test]
    fn k_zero_gives_zeros_and_bad_sizes_are_errors() {
        let client = crate::Backend::Cpu.client().unwrap();
        let a = crate::check::upload_f32(&client, &[1.0; 4]);
        let s = MatmulShape::new(2, 3, 0, false, false);
        let out = matmul::<f32>(&client, &a, &a, &s).unwrap();
        assert_eq!(
            crate::check::download(&client, DType::F32, &out).unwrap()[..6],
            [0.0; 6]
        );
        let err =
            matmul::<f32>(&client, &a, &a, &MatmulShape::new(3, 3, 3, false, false)).unwrap_err();
        assert!(err.to_string().contains("matmul: buffer `lhs`"), "{err}");
    }
}
