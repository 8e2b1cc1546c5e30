//! cubek's matmul routines on our buffers: `CpuGemm` on the CPU runtime; the TMA strategies
//! (`SpecializedTmaMma`, `DoubleTmaMma`, which need the `cuda-cpp` NVRTC path), the ordered
//! double-buffered tensor-core routine and the true-f32 `SimpleUnit` on CUDA.
//!
//! cubek turns f32 inputs into tf32 in every tensor-core routine; only `CpuGemm`, `SimpleUnit`
//! and our tiled kernel are true f32 (see `super::Precision`).

use cubek::matmul::definition::{MatmulElems, MatmulGlobalElems};
use cubek::matmul::launch::launch_ref;
use cubek::matmul::multi_level::Strategy as MultiLevel;
use cubek::matmul::strategy::Strategy;
use cubek::matmul::tiled;
use cubek::std::InputBinding;

use super::{Gemm, MatmulKernel, MatmulShape};
use crate::dtype::KernelFloat;
use crate::layout::{slice_cols, transpose};
use crate::{Client, Handle, KernelError, Result};

fn strategy(kernel: MatmulKernel) -> Strategy {
    match kernel {
        MatmulKernel::CpuGemm => tiled::Strategy::CpuGemm(Default::default()).into(),
        MatmulKernel::CubekSimpleUnit => MultiLevel::SimpleUnit(Default::default()).into(),
        MatmulKernel::CubekSpecializedTma => {
            MultiLevel::SpecializedTmaMma(Default::default()).into()
        }
        MatmulKernel::CubekDoubleTma => MultiLevel::DoubleTmaMma(Default::default()).into(),
        MatmulKernel::CubekOrderedDoubleCmma => {
            MultiLevel::OrderedDoubleCmma(Default::default()).into()
        }
        MatmulKernel::Tiled
        | MatmulKernel::CublasLt
        | MatmulKernel::Gemv
        | MatmulKernel::CpuPacked => {
            unreachable!("not a cubek routine")
        }
    }
}

/// Writes `op(A) @ op(B)` into `out` (batch, m, n) with a cubek routine.
pub fn cubek_matmul<F: KernelFloat>(client: &Client, kernel: MatmulKernel, g: Gemm) -> Result<()> {
    if kernel == MatmulKernel::CpuGemm {
        return cpu_gemm::<F>(client, g);
    }
    let Gemm { a, b, out, s } = g;
    launch::<F>(
        client,
        kernel,
        (a, s.lhs_strides()),
        (b, s.rhs_strides()),
        out,
        s,
        s.n,
    )
}

/// Products wider than this run as column panels on the CPU...
const CPU_PANEL_MIN_N: usize = 384;

/// ...when they have at least this many rows (with fewer, copying the panels costs more than
/// it saves: 256 x 1024 x 256 ran at 183 GFLOP/s in panels and 208 without).
const CPU_PANEL_MIN_M: usize = 512;

/// Bytes of B one CPU launch should stream: about half the L2 of the reference machine.
const CPU_B_BLOCK_BYTES: usize = 1 << 20;

/// Columns of B per panel: about 1 MiB of B, a multiple of 16 (the widest f32 vector),
/// between 64 and 256.
fn cpu_panel_width(k: usize, elem_bytes: usize) -> usize {
    let cols = CPU_B_BLOCK_BYTES / (k.max(1) * elem_bytes);
    (cols / 16 * 16).clamp(64, 256)
}

/// Rows of B (the depth of the sum) per launch: about 1 MiB of B at the panel width, a multiple
/// of 16, at least 256.
fn cpu_depth_block(n_cols: usize, elem_bytes: usize) -> usize {
    let rows = CPU_B_BLOCK_BYTES / (n_cols.max(1) * elem_bytes);
    (rows / 16 * 16).max(256)
}

/// Whether [`cpu_gemm`] computes `A^T B` as `(B^T A)^T`: one product (no batch) with A given
/// transposed and B not, where copying A row-major (m x k elements) costs more than twice
/// copying B (n x k) and the result (m x n). Measured at 1024 tokens, vocab 65536, n_embd 256:
/// the lm_head's weight gradient 188 ms as given, 157 ms + the result's transpose swapped.
pub(crate) fn swaps_operands(s: &MatmulShape) -> bool {
    s.batch == 1 && s.trans_a && !s.trans_b && s.m * s.k > 2 * (s.n * s.k + s.m * s.n)
}

/// CpuGemm is fast on contiguous row-major operands and blocks only for L1, so the dispatch
/// blocks for L2 around it: A and B are made row-major (transposed copies when given
/// transposed); a deep product (large k) is split into depth blocks whose partial products are
/// summed into the output; within a block B is fed as contiguous row-major panels of at most
/// 256 columns, each launch writing its columns of the output in place. The copies cost
/// O((m + n) k) against the product's O(m n k) (docs/benchmarks.md has the figures).
fn cpu_gemm<F: KernelFloat>(client: &Client, g: Gemm) -> Result<()> {
    let Gemm { a, b, out, s } = g;
    let MatmulShape { batch, m, n, k, .. } = *s;
    if swaps_operands(s) {
        // C = A^T B as C^T = B^T A, then C^T transposed into `out`: for the lm_head's weight
        // gradient (dlogits^T @ x) this copies x and the (vocab, n_embd) result, not the
        // (tokens, vocab) gradient of the logits (the largest tensor of training).
        let es = F::DTYPE.size();
        let ct = client.empty(m * n * es);
        let swapped = MatmulShape::new(n, m, k, true, false);
        cpu_gemm::<F>(
            client,
            Gemm {
                a: b,
                b: a,
                out: &ct,
                s: &swapped,
            },
        )?;
        return crate::layout::transpose_into::<F>(client, &ct, out, 1, n, m);
    }
    let lhs_batch = if s.lhs_batched { batch } else { 1 };
    let rhs_batch = if s.rhs_batched { batch } else { 1 };
    let a_rows = if s.trans_a && m > 1 && k > 1 {
        Some(transpose::<F>(client, a, lhs_batch, k, m)?)
    } else {
        None
    };
    let a = a_rows.as_ref().unwrap_or(a);
    let trans_a = s.trans_a && a_rows.is_none();
    let es = F::DTYPE.size();
    let width = if n > CPU_PANEL_MIN_N && m >= CPU_PANEL_MIN_M {
        cpu_panel_width(k, es)
    } else {
        n
    };
    let depth = cpu_depth_block(width, es);
    let split_depth = k > depth + depth / 2 && rhs_batch == 1 && !trans_a;
    // B given transposed and cut into panels of its whole depth: each panel is the transpose of
    // `width` consecutive rows of the given (n, k) matrix, made straight from them: one copy of
    // B instead of a transposed B and then its panels. The lm_head's forward at vocab 65536
    // (1024 x 65536 x 256): 177 -> 155 ms.
    let b_transposed = s.trans_b && n > 1 && k > 1;
    let panels_from_rows = b_transposed && width < n && rhs_batch == 1 && !split_depth;
    let b_rows = if b_transposed && !panels_from_rows {
        Some(transpose::<F>(client, b, rhs_batch, n, k)?)
    } else {
        None
    };
    let b_given = b;
    let b = b_rows.as_ref().unwrap_or(b);
    // Now A is (lhs_batch, m, k) (or (k, m) when m or k is 1 and it was given transposed: the
    // same memory) and B is (rhs_batch, k, n) row-major, or still (n, k) with `panels_from_rows`.
    let s = MatmulShape {
        trans_a,
        trans_b: false,
        ..*s
    };
    let (a_bs, a_rs, a_cs) = s.lhs_strides();
    let (b_bs, b_rs, b_cs) = s.rhs_strides();
    let mut partial: Option<Handle> = None;
    let mut k0 = 0;
    while k0 < k {
        let kb = if split_depth { depth.min(k - k0) } else { k };
        // Columns k0..k0 + kb of A and rows k0..k0 + kb of B, read in place.
        let a_blk = a.clone().offset_start((k0 * a_cs * es) as u64);
        let b_blk = b.clone().offset_start((k0 * b_rs * es) as u64);
        let dst = if k0 == 0 {
            out.clone()
        } else {
            partial
                .get_or_insert_with(|| client.empty(batch * m * n * es))
                .clone()
        };
        let mut j0 = 0;
        while j0 < n {
            let nb = width.min(n - j0);
            let (panel, panel_strides) = if panels_from_rows {
                let rows = b_given.clone().offset_start((j0 * k * es) as u64);
                (transpose::<F>(client, &rows, 1, nb, k)?, (0, nb, 1))
            } else if nb == n {
                (b_blk.clone(), (b_bs, b_rs, b_cs))
            } else {
                // rhs_batch == 1 here or the depth is whole: the block is rhs_batch * kb rows.
                let rows = if split_depth { kb } else { rhs_batch * kb };
                let p = slice_cols::<F>(client, &b_blk, rows, n, j0, nb)?;
                (p, (if s.rhs_batched { kb * nb } else { 0 }, nb, 1))
            };
            let ps = MatmulShape { n: nb, k: kb, ..s };
            launch::<F>(
                client,
                MatmulKernel::CpuGemm,
                (&a_blk, (a_bs, a_rs, a_cs)),
                (&panel, panel_strides),
                &dst.clone().offset_start((j0 * es) as u64),
                &ps,
                n,
            )?;
            j0 += nb;
        }
        if k0 > 0 {
            crate::elementwise::axpby_inplace::<F>(client, out, &dst, batch * m * n, 1.0, 1.0)?;
        }
        k0 += kb;
    }
    Ok(())
}

/// One cubek launch of `op(A) @ op(B)` for shape `s` with the operands' (batch, row, col)
/// strides given, writing an output whose rows are `out_row` elements apart (the full width
/// when `out` is a column panel of a wider matrix).
fn launch<F: KernelFloat>(
    client: &Client,
    kernel: MatmulKernel,
    (a, (a_bs, a_rs, a_cs)): (&Handle, (usize, usize, usize)),
    (b, (b_bs, b_rs, b_cs)): (&Handle, (usize, usize, usize)),
    out: &Handle,
    s: &MatmulShape,
    out_row: usize,
) -> Result<()> {
    let MatmulShape { batch, m, n, k, .. } = *s;
    let (a_batch, b_batch) = (
        if s.lhs_batched { batch } else { 1 },
        if s.rhs_batched { batch } else { 1 },
    );
    let ty = F::cube_elem_type();
    let es = F::DTYPE.size();
    let bind = |arg: &'static str, h: &Handle, strides: [usize; 3], shape: [usize; 3]| {
        crate::launch::binding("matmul", arg, h, &strides, &shape, es)
    };
    let lhs = bind("lhs", a, [a_bs, a_rs, a_cs], [a_batch, m, k])?;
    let rhs = bind("rhs", b, [b_bs, b_rs, b_cs], [b_batch, k, n])?;
    let dst = bind("out", out, [m * out_row, out_row, 1], [batch, m, n])?;
    let mut dtypes = MatmulElems::from_globals(&MatmulGlobalElems {
        lhs: ty,
        rhs: ty,
        out: ty,
    });
    let strategy = match kernel {
        MatmulKernel::CpuGemm => cpu_gemm_strategy(client, m, n, k, F::DTYPE.size()),
        _ => strategy(kernel),
    };
    launch_ref(
        &strategy,
        client,
        InputBinding::new(lhs, ty),
        InputBinding::new(rhs, ty),
        dst,
        &mut dtypes,
    )
    .map_err(|e| KernelError::runtime("matmul", format!("{kernel:?}: {e}")))
}

/// Bytes of accumulators a CpuGemm leaf keeps in registers on an AVX-512 host: 16 of the 32
/// 64-byte zmm registers. cubek's own heuristic budgets 384 bytes (12 of AVX2's 16 ymm), which
/// on AVX-512 gives a 2 x 32 leaf at ~150 GFLOP/s on the reference 2-core machine; a 4 x 64
/// leaf runs at ~250 (docs/benchmarks.md).
const AVX512_ACC_BYTES: usize = 1024;

/// L1 data cache the depth of a leaf is sized for.
const L1_BYTES: usize = 32 * 1024;

/// The largest divisor of `k` that is at most `cap` (a tile that divides its axis keeps the
/// leaf unrolled and unmasked).
fn largest_divisor(k: usize, cap: usize) -> usize {
    (1..=cap.clamp(1, k.max(1)))
        .rev()
        .find(|&d| k.is_multiple_of(d))
        .unwrap_or(1)
}

pub(crate) fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The CpuGemm plan for an (m, n, k) product: cubek's inferred one, except on AVX-512 hosts
/// where the leaf is sized for 16 zmm accumulators (`tile_n` about `sqrt(budget * 16)`, the
/// rest along `m`), the depth for A and B panels in L1 beside the accumulators, and the output
/// rows (else columns) split over the cores.
fn cpu_gemm_strategy(client: &Client, m: usize, n: usize, k: usize, elem_bytes: usize) -> Strategy {
    use cubek::matmul::routine::BlueprintStrategy;
    use tiled::cpu_gemm::{CpuGemmBlueprint, InstructionShape, PlaneGrid};
    if !has_avx512() {
        return strategy(MatmulKernel::CpuGemm);
    }
    let lanes = 64 / elem_bytes;
    let budget = AVX512_ACC_BYTES / elem_bytes;
    let tile_n = largest_divisor(n, ((budget * lanes) as f64).sqrt() as usize);
    let tile_m = largest_divisor(m, budget / tile_n);
    let l1_depth = (L1_BYTES / elem_bytes).saturating_sub(tile_m * tile_n) / (tile_m + tile_n);
    let tile_k = largest_divisor(k, l1_depth.max(lanes));
    let cores = client
        .properties()
        .hardware
        .num_cpu_cores
        .unwrap_or(1)
        .max(1) as usize;
    let (grid_m, grid_n) = (m.div_ceil(tile_m), n.div_ceil(tile_n));
    let planes = if grid_m % cores == 0 {
        PlaneGrid { m: cores, n: 1 }
    } else if grid_n % cores == 0 {
        PlaneGrid { m: 1, n: cores }
    } else {
        PlaneGrid {
            m: largest_divisor(grid_m, cores),
            n: 1,
        }
    };
    let instruction = InstructionShape {
        m: tile_m,
        n: tile_n,
        k: tile_k,
    };
    tiled::Strategy::CpuGemm(BlueprintStrategy::Forced(CpuGemmBlueprint {
        instruction,
        planes,
    }))
    .into()
}
