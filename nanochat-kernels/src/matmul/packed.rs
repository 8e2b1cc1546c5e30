//! Our CPU GEMM: the GotoBLAS / BLIS blocking (Goto and van de Geijn, "Anatomy of
//! High-Performance Matrix Multiplication", 2008) written in cubecl, for the CPU runtime.
//!
//! `out[b] = op(A[b]) @ op(B[b])` as the dispatch defines it ([`super::MatmulShape`]).
//! - B is first copied into panels of [`NR`] columns, each stored depth-major (`k` rows of
//!   `NR` contiguous values, zero past `n`): the micro-kernel reads one panel row as [`NRV`]
//!   whole vectors.
//! - Each unit (a worker thread on the CPU runtime) owns a contiguous run of the (batch, row
//!   panel) pairs (or of the column panels when there are fewer pairs than units). It takes
//!   them [`MC`] row panels at a time and walks the depth in blocks of [`KC`]: each block of A
//!   (`MC * MR` rows x `KC`, 516 KiB in f32) is copied into the unit's scratch, where it stays
//!   in L2 while every column panel of B passes over it; a column panel's block (`KC x NR`,
//!   32 KiB) stays in L1 across the row panels. Row-major f32 A is copied row by row (rows
//!   `KC` apart: contiguous reads and writes, and the micro-kernel's [`MR`] broadcasts sit at
//!   fixed offsets); A given transposed (and bf16) as depth-major panels of `MR` rows.
//! - The micro-kernel keeps an `MR x NR` block of f32 accumulators (24 of AVX-512's 32 vector
//!   registers): per step of the sum, `NRV` vector loads of B, `MR` broadcasts of A and
//!   `MR * NRV` fused multiply-adds. After the first depth block it adds into the output.
//!
//! Why not cubek's `CpuGemm`: it reads both operands in place (no packing), keeps at most 16
//! accumulators (its heuristic budgets for AVX2's 16 registers; we force 4 x 64 on AVX-512) and
//! launches checked, so every load also clamps its index. On the reference 2-core machine this
//! kernel runs the model's products at 250-350 GFLOP/s where `CpuGemm` runs them at 150-270
//! (docs/benchmarks.md, "Packed CPU GEMM").
//!
//! Launched unchecked: every index is in bounds by construction, given the shape checks of
//! [`super::matmul_into`] (the operands' lengths come from the validated shape; rows past `m`
//! read row `m - 1` and are not written; columns past `n` are zero in the panels and not
//! written; each unit writes only its own part of the scratch).

use cubecl::prelude::*;

use super::{Gemm, MatmulShape};
use crate::device::DeviceInfo;
use crate::dtype::KernelFloat;
use crate::{launch, Client, DType, Handle, KernelError, Result};

/// Values per vector: one AVX-512 register of f32.
pub const LANES: usize = 16;
/// Rows of a micro-tile.
pub const MR: usize = 12;
/// Vectors per micro-tile row (`NR = NRV * LANES` columns).
pub const NRV: usize = 2;
/// Columns of a panel of B.
pub const NR: usize = NRV * LANES;
/// Depth of a block of the sum (f32; bf16 sums the whole depth in registers at once, so that
/// partial sums are never rounded to bf16).
pub const KC: usize = 256;
/// Row panels per block of A (`MC * MR` rows x [`KC`]: 516 KiB in f32, held in L2). With 1024
/// rows and 2 units this is each unit's whole share, so a wide B (the lm_head's forward) streams
/// once per unit: 129 -> 105 ms against 21 panels at 1024 x 65536 x 256.
pub const MC: usize = 43;

/// Depth of one step of packing a transposed B (see [`pack_b_kernel`]).
const PACK_DEPTH: usize = 32;

/// Most values any buffer of a packed product may hold: its kernels index in 32 bits.
const MAX_VALUES: usize = 1 << 31;

/// Most depth a non-f32 product takes (its whole depth is one block, so the per-unit scratch
/// grows with it: `MC * MR * k` values per unit).
const MAX_BLOCK_DEPTH: usize = 16 * KC;

/// Whether [`packed_matmul`] takes shape `s` in `dtype`: an output whose rows are whole
/// vectors, a depth of at least 1 (at most 4096 outside f32), and every buffer (operands,
/// panels, output, scratch for up to 256 units) under 2^31 values.
pub fn packed_eligible(s: &MatmulShape, dtype: DType) -> bool {
    let rhs_batch = if s.rhs_batched { s.batch } else { 1 };
    // Saturating: a shape too large for any buffer is refused here, not an overflow.
    let product = |dims: &[usize]| dims.iter().fold(1usize, |acc, &d| acc.saturating_mul(d));
    let sizes = [
        product(&[if s.lhs_batched { s.batch } else { 1 }, s.m, s.k]),
        product(&[rhs_batch, s.n.div_ceil(NR), NR, s.k]),
        product(&[s.batch, s.m, s.n]),
        256usize.saturating_mul(scratch_per_unit(s.k, dtype)),
    ];
    s.n.is_multiple_of(LANES)
        && s.k > 0
        && (dtype == DType::F32 || s.k <= MAX_BLOCK_DEPTH)
        && sizes.iter().all(|&v| v < MAX_VALUES)
}

/// The depth of one block of the sum: [`KC`] in f32, the whole depth otherwise.
fn block_depth(k: usize, dtype: DType) -> usize {
    if dtype == DType::F32 {
        KC.min(k)
    } else {
        k
    }
}

/// Values of scratch each unit holds: a block of A, `MC * MR` rows of at least [`KC`].
/// Saturating, so that [`packed_eligible`] can refuse any depth with it.
fn scratch_per_unit(k: usize, dtype: DType) -> usize {
    (MC * MR).saturating_mul(block_depth(k, dtype).max(KC))
}

/// The contiguous run `[start, end)` of `items` that unit `u` of `units` owns.
#[cube]
fn unit_run(items: usize) -> (usize, usize) {
    let units = CUBE_DIM as usize;
    let per = items.div_ceil(units);
    let start = min(UNIT_POS as usize * per, items);
    (start, min(start + per, items))
}

/// Depth steps `p0..p1` of one column of a panel (slot `dst` of its first step, `nr` apart):
/// the values `b[at + p * step]`, or zeros for a column past `n` (`valid` false).
#[cube]
#[allow(clippy::too_many_arguments)]
fn pack_column<F: Float>(
    b: &[F],
    bp: &mut [F],
    at: usize,
    step: usize,
    dst: usize,
    valid: bool,
    p0: usize,
    p1: usize,
    #[comptime] nr: usize,
) {
    if valid {
        for p in p0..p1 {
            bp[dst + p * nr] = b[at + p * step];
        }
    } else {
        for p in p0..p1 {
            bp[dst + p * nr] = F::new(0.0);
        }
    }
}

/// Copies op(B) (batch, k, n), element (b, p, j) at `b * b_bs + p * b_rs + j * b_cs`, into
/// panels `bp[((b * panels + q) * k + p) * nr + c]` = element (b, p, q * nr + c), zero past `n`.
/// `cols_outer` walks each column down the depth (B given transposed: reads contiguous).
/// `sym`: B is square and symmetric with only its upper triangle valid (not transposed).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn pack_b_kernel<F: Float>(
    b: &[F],
    bp: &mut [F],
    n: usize,
    k: usize,
    b_bs: usize,
    b_rs: usize,
    b_cs: usize,
    panels: usize,
    batch: usize,
    #[comptime] nr: usize,
    #[comptime] cols_outer: bool,
    #[comptime] sym: bool,
) {
    let (start, end) = unit_run(batch * panels);
    for item in start..end {
        let bi = item / panels;
        let q = item % panels;
        let src = bi * b_bs;
        let dst = item * k * nr;
        if comptime![cols_outer] {
            // Down each column in steps of PACK_DEPTH: the panel rows written in one step
            // (PACK_DEPTH x nr values) stay in L1 while every column fills its place in them.
            let mut p0 = 0;
            while p0 < k {
                let p1 = min(p0 + PACK_DEPTH, k);
                #[unroll]
                for c in 0..nr {
                    let col = q * nr + c;
                    let at = src + col * b_cs;
                    pack_column::<F>(b, bp, at, b_rs, dst + c, col < n, p0, p1, nr);
                }
                p0 = p1;
            }
        } else {
            // With `sym`, rows above the panel's columns hold them as they are; the panel's
            // own band of rows is read element by element at (min, max); below it, column j
            // of row p is row j's p-th value (walked down each column: contiguous reads).
            let mut direct = k;
            let mut band = k;
            if comptime![sym] {
                direct = min(q * nr, k);
                band = min(q * nr + nr, k);
            }
            for p in 0..direct {
                #[unroll]
                for c in 0..nr {
                    let col = q * nr + c;
                    let v = if col < n {
                        b[src + p * b_rs + min(col, n - 1) * b_cs]
                    } else {
                        F::new(0.0)
                    };
                    bp[dst + p * nr + c] = v;
                }
            }
            for p in direct..band {
                #[unroll]
                for c in 0..nr {
                    let col = q * nr + c;
                    let j = min(col, n - 1);
                    let v = if col < n {
                        b[src + min(p, j) * b_rs + max(p, j) * b_cs]
                    } else {
                        F::new(0.0)
                    };
                    bp[dst + p * nr + c] = v;
                }
            }
            #[unroll]
            for c in 0..nr {
                let col = q * nr + c;
                let at = src + col * b_rs;
                pack_column::<F>(b, bp, at, b_cs, dst + c, col < n, band, k, nr);
            }
        }
    }
}

/// The product over packed B: see the module docs. A is read at (b, i, p) =
/// `b * a_bs + i * a_rs + p * a_cs` and packed block by block into the unit's part of
/// `scratch`; `b_batched` (0 or 1) says whether B has a panel set per batch or one shared;
/// `out` is (batch, m, n) as `n_vecs` vectors per row. With `row_stride` > 0 (f32, A
/// row-major) the scratch holds each row of the block `row_stride` values apart, copied as it
/// is; with 0 it holds depth-major panels (step p of a panel: its `mr` rows side by side).
#[cube(launch_unchecked)]
// The comptime branches stay apart from the runtime ones inside them.
#[allow(clippy::too_many_arguments, clippy::collapsible_if)]
fn packed_gemm_kernel<F: Float, N: Size>(
    a: &[F],
    scratch: &mut [F],
    bp: &[Vector<F, N>],
    out: &mut [Vector<F, N>],
    c_in: &[Vector<F, N>],
    alpha: f32,
    beta: f32,
    m: usize,
    k: usize,
    m_panels: usize,
    n_panels: usize,
    n_vecs: usize,
    batch: usize,
    a_bs: usize,
    a_rs: usize,
    a_cs: usize,
    b_batched: usize,
    kc: usize,
    mc: usize,
    #[comptime] mr: usize,
    #[comptime] nrv: usize,
    #[comptime] row_stride: usize,
    #[comptime] sym_a: bool,
    #[comptime] sym_out: bool,
    #[comptime] epilogue: bool,
) {
    // Units split the (batch, row panel) pairs, or the column panels when there are fewer
    // pairs than units.
    let pairs = batch * m_panels;
    let split_rows = pairs >= CUBE_DIM as usize;
    let mut r_lo = 0;
    let mut r_hi = pairs;
    let mut c_lo = 0;
    let mut c_hi = n_panels;
    if split_rows {
        let (lo, hi) = unit_run(pairs);
        r_lo = lo;
        r_hi = hi;
    } else {
        let (lo, hi) = unit_run(n_panels);
        c_lo = lo;
        c_hi = hi;
    }
    let blocks = k.div_ceil(kc);
    let sbase = UNIT_POS as usize * mc * mr * max(kc, row_stride);
    // The unit's row panels in blocks of at most `mc`, as even as they go (44 panels: 22 + 22,
    // not 43 + 1, whose last block would stream every panel of B for one row panel).
    let owned = r_hi - r_lo;
    let per_block = owned.div_ceil(max(owned.div_ceil(mc), 1));
    let mut r0 = r_lo;
    while r0 < r_hi {
        let r1 = min(r0 + per_block, r_hi);
        for blk in 0..blocks {
            let k0 = blk * kc;
            let k1 = min(k0 + kc, k);
            let kb = k1 - k0;
            // This block of A (rows r0..r1, depth k0..k1) into the unit's scratch, as
            // panels of mr rows: it stays in L2 for every column panel below.
            if comptime![row_stride > 0] {
                // Row-major A: each row of the block copied as it is (contiguous reads and
                // writes), rows `row_stride` apart.
                for rp in r0..r1 {
                    let src = (rp / m_panels) * a_bs;
                    let row0 = (rp % m_panels) * mr;
                    let dst = sbase + (rp - r0) * mr * row_stride;
                    // Depth [k0, lo_end) lies left of the panel's rows and [lo_end,
                    // hi_start) is their band (both empty without `sym_a`); the rest is
                    // copied row by row.
                    let mut lo_end = k0;
                    let mut hi_start = k0;
                    if comptime![sym_a] {
                        lo_end = min(max(row0, k0), k1);
                        hi_start = min(max(row0 + mr, k0), k1);
                    }
                    #[unroll]
                    for r in 0..mr {
                        let i = min(row0 + r, m - 1);
                        let s0 = src + i * a_rs;
                        let d0 = dst + r * row_stride;
                        for p in hi_start - k0..kb {
                            scratch[d0 + p] = a[s0 + (k0 + p) * a_cs];
                        }
                    }
                    if comptime![sym_a] {
                        // Only the upper triangle is valid. Left of the panel's rows, (i, q)
                        // is (q, i): row q's mr values at the panel's rows, contiguous; in the
                        // panel's own band, element by element at (min, max).
                        for q in k0..lo_end {
                            #[unroll]
                            for r in 0..mr {
                                let i = min(row0 + r, m - 1);
                                scratch[dst + r * row_stride + q - k0] =
                                    a[src + q * a_rs + i * a_cs];
                            }
                        }
                        for q in lo_end..hi_start {
                            #[unroll]
                            for r in 0..mr {
                                let i = min(row0 + r, m - 1);
                                scratch[dst + r * row_stride + q - k0] =
                                    a[src + min(i, q) * a_rs + max(i, q) * a_cs];
                            }
                        }
                    }
                }
            } else {
                // Depth-major panels: step p of a panel holds its mr rows side by side (A
                // given transposed: mr contiguous values per step).
                for rp in r0..r1 {
                    let src = (rp / m_panels) * a_bs;
                    let row0 = (rp % m_panels) * mr;
                    let dst = sbase + (rp - r0) * kb * mr;
                    for p in k0..k1 {
                        #[unroll]
                        for r in 0..mr {
                            let i = min(row0 + r, m - 1);
                            let mut at = src + i * a_rs + p * a_cs;
                            if comptime![sym_a] {
                                at = src + min(i, p) * a_rs + max(i, p) * a_cs;
                            }
                            scratch[dst + (p - k0) * mr + r] = a[at];
                        }
                    }
                }
            }
            for pn in c_lo..c_hi {
                for rp in r0..r1 {
                    let bi = rp / m_panels;
                    let pm = rp % m_panels;
                    let row0 = pm * mr;
                    // A symmetric output: micro-tiles wholly below the diagonal are skipped.
                    let mut live = true;
                    if comptime![sym_out] {
                        live = (pn + 1) * nrv * N::value() > row0;
                    }
                    if live {
                        let b0 = ((bi * b_batched) * n_panels + pn) * k * nrv;
                        let a0 = if comptime![row_stride > 0] {
                            sbase + (rp - r0) * mr * row_stride
                        } else {
                            sbase + (rp - r0) * kb * mr
                        };
                        let mut acc = Array::<Vector<f32, N>>::new(comptime!(mr * nrv));
                        // With an epilogue each depth block's sum starts from zero and is folded
                        // into the output at its end (C at block 0), so C may be the output.
                        let mut fresh = blk == 0;
                        if comptime![epilogue] {
                            fresh = true;
                        }
                        if fresh {
                            #[unroll]
                            for i in 0..mr * nrv {
                                acc[i] = Vector::new(0.0);
                            }
                        } else {
                            #[unroll]
                            for r in 0..mr {
                                let o = (bi * m + min(row0 + r, m - 1)) * n_vecs;
                                #[unroll]
                                for v in 0..nrv {
                                    let col = min(pn * nrv + v, n_vecs - 1);
                                    acc[r * nrv + v] = Vector::cast_from(out[o + col]);
                                }
                            }
                        }
                        for p in 0..kb {
                            let mut bv = Array::<Vector<f32, N>>::new(nrv);
                            #[unroll]
                            for v in 0..nrv {
                                bv[v] = Vector::cast_from(bp[b0 + (k0 + p) * nrv + v]);
                            }
                            #[unroll]
                            for r in 0..mr {
                                let ai = if comptime![row_stride > 0] {
                                    a0 + r * row_stride + p
                                } else {
                                    a0 + p * mr + r
                                };
                                let x = Vector::<f32, N>::new(f32::cast_from(scratch[ai]));
                                #[unroll]
                                for v in 0..nrv {
                                    acc[r * nrv + v] = fma(x, bv[v], acc[r * nrv + v]);
                                }
                            }
                        }
                        if comptime![epilogue] {
                            // out = alpha * (A @ B) + beta * c, in f32: beta * c joins the first
                            // block's sum, each later block adds alpha times its own.
                            let av = Vector::<f32, N>::new(alpha);
                            let bv = Vector::<f32, N>::new(beta);
                            #[unroll]
                            for r in 0..mr {
                                let o = (bi * m + min(row0 + r, m - 1)) * n_vecs;
                                #[unroll]
                                for v in 0..nrv {
                                    let col = min(pn * nrv + v, n_vecs - 1);
                                    let mut base = Vector::<f32, N>::cast_from(out[o + col]);
                                    if blk == 0 {
                                        base = Vector::<f32, N>::cast_from(c_in[o + col]) * bv;
                                    }
                                    acc[r * nrv + v] = fma(acc[r * nrv + v], av, base);
                                }
                            }
                        }
                        #[unroll]
                        for r in 0..mr {
                            let row = row0 + r;
                            if row < m {
                                let o = (bi * m + row) * n_vecs;
                                #[unroll]
                                for v in 0..nrv {
                                    let col = pn * nrv + v;
                                    if col < n_vecs {
                                        out[o + col] = Vector::cast_from(acc[r * nrv + v]);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        r0 = r1;
    }
}

/// Writes `op(A) @ op(B)` into `out` (batch, m, n), f32 or bf16 (accumulated in f32), with the
/// packed kernel: one launch copies B into panels, one computes the product (copying A block by
/// block into a per-unit scratch). Errors ([`KernelError::Unsupported`]) for a shape that
/// [`packed_eligible`] refuses (the dispatch then takes `CpuGemm`); operand sizes are checked
/// by the caller ([`super::matmul_into`]).
pub fn packed_matmul<F: KernelFloat>(client: &Client, g: Gemm) -> Result<()> {
    packed_matmul_ext::<F>(client, g, PackedExtras::default())
}

/// `out = alpha * op(A) @ op(B) + beta * C` (f32 arithmetic), the epilogue of a
/// [`packed_matmul_ext`]: C is (batch, m, n), like the output.
#[derive(Clone, Copy)]
pub struct Epilogue<'a> {
    /// The product's factor.
    pub alpha: f32,
    /// C's factor.
    pub beta: f32,
    /// C, (batch, m, n) in the product's dtype. It may be the output buffer itself: each
    /// micro-tile reads its part of C before it first writes there.
    pub c: &'a Handle,
}

/// What a packed product does beyond `out = op(A) @ op(B)`: the symmetric products and fused
/// sums of Polar Express (`X X^T`, `b A + c A A`, `a X + B X`; [`crate::optim`]).
#[derive(Clone, Copy, Default)]
pub struct PackedExtras<'a> {
    /// A is square and symmetric, and only its upper triangle (`j >= i`) is valid (the output
    /// of a `sym_out` product): element (i, j) is read at (min(i, j), max(i, j)). Not with a
    /// transposed A.
    pub sym_a: bool,
    /// The same for B.
    pub sym_b: bool,
    /// The output is square and known to be symmetric (`X X^T`, or a polynomial in a symmetric
    /// matrix): only the micro-tiles (12 x 32) that reach the upper triangle are
    /// computed (about 56% of them at 256 x 256), and the rest of the output is left as it
    /// was. Every element on or above the diagonal is written; read the result with `sym_a` or
    /// `sym_b`.
    pub sym_out: bool,
    /// A sum with a given matrix, fused into each micro-tile's writes.
    pub epilogue: Option<Epilogue<'a>>,
}

/// [`packed_matmul`] with [`PackedExtras`]. Errors: a shape [`packed_eligible`] refuses, a
/// symmetric operand that is transposed or not square, a symmetric output that is not square,
/// an epilogue matrix too small for the output.
pub fn packed_matmul_ext<F: KernelFloat>(client: &Client, g: Gemm, x: PackedExtras) -> Result<()> {
    let Gemm { a, b, out, s } = g;
    let bad = |why: &str| {
        Err(KernelError::shape(
            "matmul",
            &[&[s.batch, s.m, s.n, s.k]],
            format!("packed kernel: {why}"),
        ))
    };
    super::validate::<F>(a, b, s)?;
    launch::check_size("matmul", "out", out, &[s.batch, s.m, s.n], F::DTYPE)?;
    if x.sym_a && (s.trans_a || s.m != s.k) {
        return bad("a symmetric A must be square (m = k) and not transposed");
    }
    if x.sym_b && (s.trans_b || s.k != s.n) {
        return bad("a symmetric B must be square (k = n) and not transposed");
    }
    if x.sym_out && s.m != s.n {
        return bad("a symmetric output must be square (m = n)");
    }
    if let Some(e) = x.epilogue {
        launch::check_size("matmul", "epilogue c", e.c, &[s.batch, s.m, s.n], F::DTYPE)?;
    }
    let units = DeviceInfo::of(client).max_units_per_cube;
    if !packed_eligible(s, F::DTYPE) || units > 256 {
        return Err(KernelError::unsupported(
            "matmul",
            format!(
                "packed kernel: {s:?} in {:?} (n must be a multiple of {LANES}, k at least 1 and \
                 at most {MAX_BLOCK_DEPTH} outside f32, every buffer under 2^31 values, at most \
                 256 units)",
                F::DTYPE
            ),
        ));
    }
    let MatmulShape { batch, m, n, k, .. } = *s;
    let es = F::DTYPE.size();
    let one = || CubeCount::Static(1, 1, 1);
    let (m_panels, n_panels) = (m.div_ceil(MR), n.div_ceil(NR));
    let rhs_batch = if s.rhs_batched { batch } else { 1 };
    let b_len = rhs_batch * n_panels * k * NR;
    let bp = client.empty(b_len * es);
    let (a_bs, a_rs, a_cs) = s.lhs_strides();
    let (b_bs, b_rs, b_cs) = s.rhs_strides();
    let kc = block_depth(k, F::DTYPE);
    let scratch_len = units as usize * scratch_per_unit(k, F::DTYPE);
    let scratch = client.empty(scratch_len * es);
    // SAFETY: every index the kernels form is in bounds. B's pack reads (b, p, j) with
    // b < rhs_batch, p < k, j < n: inside the validated `rhs_len`; it writes the `b_len`
    // panels. The product reads A at (b, i, p) with b < its batch, i clamped to m - 1,
    // p < k: inside `lhs_len`; each unit writes its own `MC * MR * max(kc, KC)` of the scratch; the
    // output's rows < m and vectors < n / LANES only.
    unsafe {
        pack_b_kernel::launch_unchecked::<F>(
            client,
            one(),
            CubeDim::new_1d(units),
            launch::buffer("matmul", "rhs", b, s.rhs_len(), es)?,
            launch::buffer("matmul", "rhs panels", &bp, b_len, es)?,
            n,
            k,
            b_bs,
            b_rs,
            b_cs,
            n_panels,
            rhs_batch,
            NR,
            s.trans_b,
            x.sym_b,
        );
        packed_gemm_kernel::launch_unchecked::<F>(
            client,
            one(),
            CubeDim::new_1d(units),
            LANES,
            launch::buffer("matmul", "lhs", a, s.lhs_len(), es)?,
            launch::buffer("matmul", "lhs scratch", &scratch, scratch_len, es)?,
            launch::buffer("matmul", "rhs panels", &bp, b_len / LANES, es * LANES)?,
            launch::buffer("matmul", "out", out, batch * m * n / LANES, es * LANES)?,
            match x.epilogue {
                Some(e) => launch::buffer(
                    "matmul",
                    "epilogue c",
                    e.c,
                    batch * m * n / LANES,
                    es * LANES,
                )?,
                // Never read without an epilogue: any buffer of vectors will do.
                None => launch::buffer("matmul", "rhs panels", &bp, b_len / LANES, es * LANES)?,
            },
            x.epilogue.map_or(1.0, |e| e.alpha),
            x.epilogue.map_or(0.0, |e| e.beta),
            m,
            k,
            m_panels,
            n_panels,
            n / LANES,
            batch,
            a_bs,
            a_rs,
            a_cs,
            usize::from(s.rhs_batched),
            kc,
            MC,
            MR,
            NRV,
            if F::DTYPE == DType::F32 && !s.trans_a {
                KC
            } else {
                0
            },
            x.sym_a,
            x.sym_out,
            x.epilogue.is_some(),
        );
    }
    Ok(())
}
