//! Kernel benchmarks shared by `nanochat bench kernels` and the criterion benches: each times a
//! kernel on the given client (after a warm-up that includes JIT compilation) and reports the
//! achieved TFLOP/s-style throughput (GFLOP/s for compute-bound kernels, GB/s for memory-bound
//! ones).

use std::time::Instant;

use serde_json::{json, Map, Value};

use crate::attention::{
    attention_backward_with, attention_forward_with, AttentionKernel, AttentionShape,
    BackwardInputs, KvLayout,
};
use crate::check::upload_as;
use crate::cross_entropy::{cross_entropy_backward, cross_entropy_forward, upload_targets};
use crate::dtype::KernelFloat;
use crate::matmul::{matmul, matmul_with, sync, MatmulKernel, MatmulShape};
use crate::rmsnorm::{rmsnorm_backward, rmsnorm_forward};
use crate::{Client, Result};

/// The AdamW step the benchmarks time (nanochat's betas, no weight decay, the first step).
pub const BENCH_ADAMW: crate::optim::AdamWStep = crate::optim::AdamWStep {
    lr: 1e-3,
    beta1: 0.8,
    beta2: 0.95,
    eps: 1e-10,
    weight_decay: 0.0,
    step: 1,
};

/// Median seconds per call of `f` over `reps` timed calls, after `warmup` untimed ones.
pub fn time_it(
    client: &Client,
    warmup: usize,
    reps: usize,
    mut f: impl FnMut() -> Result<()>,
) -> Result<f64> {
    for _ in 0..warmup {
        f()?;
    }
    sync(client)?;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        sync(client)?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(times[times.len() / 2])
}

fn values(n: usize, seed: u32) -> Vec<f32> {
    // Cheap deterministic pseudo-random values in [-1, 1).
    let mut x = seed.wrapping_mul(2654435761).max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

/// GFLOP/s of an (m, k) @ (k, n) product with `kernel` (or the dispatch when `None`).
pub fn matmul_gflops<F: KernelFloat>(
    client: &Client,
    s: MatmulShape,
    kernel: Option<MatmulKernel>,
    reps: usize,
) -> Result<f64> {
    let a = upload_as::<F>(client, &values(s.lhs_len(), 1));
    let b = upload_as::<F>(client, &values(s.rhs_len(), 2));
    let secs = time_it(client, 2, reps, || {
        match kernel {
            Some(k) => matmul_with::<F>(client, k, &a, &b, &s)?,
            None => matmul::<F>(client, &a, &b, &s)?,
        };
        Ok(())
    })?;
    Ok(s.flops() / secs / 1e9)
}

/// GFLOP/s of the attention forward and backward with `kernel` (backward counted as 2.5x the
/// forward's FLOPs, the usual flash-attention convention).
pub fn attention_gflops<F: KernelFloat>(
    client: &Client,
    kernel: AttentionKernel,
    s: AttentionShape,
    reps: usize,
) -> Result<(f64, f64)> {
    let (fwd, bwd) = attention_seconds::<F>(client, kernel, s, reps)?;
    let flops = s.forward_flops();
    Ok((flops / fwd / 1e9, 2.5 * flops / bwd / 1e9))
}

/// Seconds per call of the attention forward and backward with `kernel`.
pub fn attention_seconds<F: KernelFloat>(
    client: &Client,
    kernel: AttentionKernel,
    s: AttentionShape,
    reps: usize,
) -> Result<(f64, f64)> {
    let nq = s.batch * s.tq * s.heads * s.head_dim;
    let nk = s.batch * s.tk * s.kv_heads * s.head_dim;
    let q = upload_as::<F>(client, &values(nq, 3));
    let k = upload_as::<F>(client, &values(nk, 4));
    let v = upload_as::<F>(client, &values(nk, 5));
    let g = upload_as::<F>(client, &values(nq, 6));
    let layout = KvLayout::contiguous(&s);
    let fwd = time_it(client, 1, reps, || {
        attention_forward_with::<F>(client, kernel, [&q, &k, &v], &s, &layout).map(|_| ())
    })?;
    let (o, lse) = attention_forward_with::<F>(client, kernel, [&q, &k, &v], &s, &layout)?;
    let bwd = time_it(client, 1, reps, || {
        let x = BackwardInputs::new([&q, &k, &v], (&o, &lse), &g);
        attention_backward_with::<F>(client, kernel, &x, &s).map(|_| ())
    })?;
    Ok((fwd, bwd))
}

/// nanochat HEAD's sliding window against full attention: seconds of the forward and backward
/// of `s` (a short-window "S" layer) and of the same shape without its window (an "L" layer),
/// with the device's kernel, as JSON (`s_over_l`: the time ratio of forward plus backward;
/// `ideal`: the ratio of visible query-key pairs).
pub fn attention_window_ratio<F: KernelFloat>(
    client: &Client,
    s: AttentionShape,
    reps: usize,
) -> Result<Value> {
    let long = s.with_window(usize::MAX);
    let kernel = AttentionKernel::for_device(client, &s, &KvLayout::contiguous(&s));
    let (sf, sb) = attention_seconds::<F>(client, kernel, s, reps)?;
    let (lf, lb) = attention_seconds::<F>(client, kernel, long, reps)?;
    Ok(json!({
        "shape": format!("{s:?}"),
        "kernel": format!("{kernel:?}"),
        "s_fwd_s": sf, "s_bwd_s": sb, "l_fwd_s": lf, "l_bwd_s": lb,
        "s_over_l_fwd": sf / lf,
        "s_over_l_bwd": sb / lb,
        "s_over_l": (sf + sb) / (lf + lb),
        "ideal": s.pairs() / long.pairs(),
    }))
}

/// GB/s of RMSNorm forward and backward over (rows, cols) (bytes each kernel must move).
pub fn rmsnorm_gbps<F: KernelFloat>(
    client: &Client,
    rows: usize,
    cols: usize,
    reps: usize,
) -> Result<(f64, f64)> {
    let x = upload_as::<F>(client, &values(rows * cols, 7));
    let dy = upload_as::<F>(client, &values(rows * cols, 8));
    let fwd = time_it(client, 1, reps, || {
        rmsnorm_forward::<F>(client, &x, rows, cols, 1e-6).map(|_| ())
    })?;
    let (_, rstd) = rmsnorm_forward::<F>(client, &x, rows, cols, 1e-6)?;
    let bwd = time_it(client, 1, reps, || {
        rmsnorm_backward::<F>(client, &x, &rstd, &dy, rows, cols).map(|_| ())
    })?;
    let bytes = (rows * cols * F::DTYPE.size()) as f64;
    Ok((2.0 * bytes / fwd / 1e9, 3.0 * bytes / bwd / 1e9))
}

/// GB/s of the fused cross-entropy forward and backward over (rows, vocab, Some(15.0)) logits.
pub fn cross_entropy_gbps<F: KernelFloat>(
    client: &Client,
    rows: usize,
    vocab: usize,
    reps: usize,
) -> Result<(f64, f64)> {
    let logits = upload_as::<F>(
        client,
        &values(rows * vocab, 9)
            .iter()
            .map(|v| v * 8.0)
            .collect::<Vec<_>>(),
    );
    let targets: Vec<i32> = (0..rows).map(|r| (r * 7919 % vocab) as i32).collect();
    let t = upload_targets(client, &targets);
    let grad = crate::check::upload_f32(client, &vec![1.0 / rows as f32; rows]);
    let fwd = time_it(client, 1, reps, || {
        cross_entropy_forward::<F>(client, &logits, &t, rows, vocab, Some(15.0)).map(|_| ())
    })?;
    let (_, lse) = cross_entropy_forward::<F>(client, &logits, &t, rows, vocab, Some(15.0))?;
    let bwd = time_it(client, 1, reps, || {
        cross_entropy_backward::<F>(client, &logits, &t, &lse, &grad, rows, vocab, Some(15.0))
            .map(|_| ())
    })?;
    let bytes = (rows * vocab * F::DTYPE.size()) as f64;
    Ok((bytes / fwd / 1e9, 2.0 * bytes / bwd / 1e9))
}

/// GB/s of the memory-bound kernels not covered above, each over `rows x cols` elements:
/// element-wise add, softmax, embedding gather and scatter-add, rotary, AdamW, transpose,
/// bf16 cast, and the decode attention (bytes of the KV cache read).
pub fn memory_bound_gbps<F: KernelFloat>(
    client: &Client,
    rows: usize,
    cols: usize,
    reps: usize,
) -> Result<Map<String, Value>> {
    use crate::elementwise::{binary, cast, Binary};
    let n = rows * cols;
    let es = F::DTYPE.size() as f64;
    let x = upload_as::<F>(client, &values(n, 10));
    let y = upload_as::<F>(client, &values(n, 11));
    let mut out = Map::new();
    let mut put = |key: &str, bytes: f64, secs: f64| {
        out.insert(key.to_string(), json!(bytes / secs / 1e9));
    };
    let t = time_it(client, 1, reps, || {
        binary::<F>(client, &x, &y, n, Binary::Add, 0.0, 0.0).map(|_| ())
    })?;
    put("add_gbps", 3.0 * n as f64 * es, t);
    let t = time_it(client, 1, reps, || {
        crate::softmax::softmax::<F>(client, &x, rows, cols).map(|_| ())
    })?;
    put("softmax_gbps", 2.0 * n as f64 * es, t);
    let ids: Vec<u32> = (0..rows as u32).map(|i| (i * 7) % rows as u32).collect();
    let t = time_it(client, 1, reps, || {
        crate::embedding::embedding_forward::<F>(client, &x, rows, cols, &ids).map(|_| ())
    })?;
    put("embedding_gbps", 2.0 * n as f64 * es, t);
    let t = time_it(client, 1, reps, || {
        crate::embedding::embedding_backward::<F>(client, &y, &ids, rows, cols).map(|_| ())
    })?;
    put("embedding_bwd_gbps", 2.0 * n as f64 * es, t);
    let head_dim = 64.min(cols - cols % 2).max(2);
    let heads = cols / head_dim;
    let rs = crate::rotary::RotaryShape {
        batch: 1,
        seq: rows,
        heads,
        head_dim,
        t0: 0,
        table_len: rows,
    };
    let (c, sn) = crate::rotary::rotary_tables(rows, head_dim, 10000.0);
    let (hc, hs) = (upload_as::<F>(client, &c), upload_as::<F>(client, &sn));
    let t = time_it(client, 1, reps, || {
        crate::rotary::rotary_forward::<F>(client, &x, &hc, &hs, rs).map(|_| ())
    })?;
    put(
        "rotary_gbps",
        2.0 * (rows * heads * head_dim) as f64 * es,
        t,
    );
    let m = crate::check::upload_f32(client, &vec![0.0; n]);
    let v = crate::check::upload_f32(client, &vec![0.0; n]);
    let h = BENCH_ADAMW;
    let t = time_it(client, 1, reps, || {
        crate::optim::adamw_step::<F>(client, &x, &y, &m, &v, n, &h)
    })?;
    put("adamw_gbps", (3.0 * es + 16.0) * n as f64, t);
    let t = time_it(client, 1, reps, || {
        crate::layout::transpose::<F>(client, &x, 1, rows, cols).map(|_| ())
    })?;
    put("transpose_gbps", 2.0 * n as f64 * es, t);
    let t = time_it(client, 1, reps, || {
        cast::<F, crate::dtype::bf16>(client, &x, n).map(|_| ())
    })?;
    put("cast_to_bf16_gbps", (es + 2.0) * n as f64, t);
    // Decode: one query per head against a cache of `rows` positions.
    let s = AttentionShape::prefixed(1, 1, rows, heads, heads, head_dim);
    let q = upload_as::<F>(client, &values(heads * head_dim, 12));
    let layout = KvLayout::contiguous(&s);
    let t = time_it(client, 1, reps, || {
        crate::attention::attention_decode::<F>(client, &q, &x, &y, &s, &layout).map(|_| ())
    })?;
    put(
        "attention_decode_gbps",
        2.0 * (rows * heads * head_dim) as f64 * es,
        t,
    );
    Ok(out)
}

/// The GEMMs of one training step of a depth-`depth` nanochat model over `tokens` rows
/// (nanochat's scaling: n_embd = 64 * depth, 128-dim heads, `n_kv_head = n_head`, a 4x MLP):
/// each linear layer's forward `y = x @ W^T`, input gradient `dx = dy @ W` and weight gradient
/// `dW = dy^T @ x`, with the layer names of nanochat's `gpt.py` (`c_q`, `c_k` and `c_v` share
/// the `c_q` shape; the attention's own products are not GEMMs of this kind).
pub fn training_gemm_shapes(
    depth: usize,
    tokens: usize,
    vocab: usize,
) -> Vec<(&'static str, &'static str, MatmulShape)> {
    let d = 64 * depth;
    let layers = [
        ("c_q", d, d),
        ("attn.c_proj", d, d),
        ("c_fc", d, 4 * d),
        ("mlp.c_proj", 4 * d, d),
        ("lm_head", d, vocab),
    ];
    let mut out = Vec::new();
    for (name, fan_in, fan_out) in layers {
        out.push((
            name,
            "forward",
            MatmulShape::new(tokens, fan_out, fan_in, false, true),
        ));
        out.push((
            name,
            "input_grad",
            MatmulShape::new(tokens, fan_in, fan_out, false, false),
        ));
        out.push((
            name,
            "weight_grad",
            MatmulShape::new(fan_out, fan_in, tokens, true, false),
        ));
    }
    out
}

/// Which training-step GEMMs `bench kernels` times ([`training_gemm_shapes`]).
#[derive(Clone, Debug)]
pub struct TrainGemms {
    /// (depth, tokens per step) of each model: d12 at B 16 x T 2048 and d20 at B 8 x T 2048 on
    /// a GPU, as `bench train` runs them.
    pub models: Vec<(usize, usize)>,
    /// Vocabulary size (the width of the lm_head GEMMs).
    pub vocab: usize,
}

/// Sizes of the kernel benchmark: `quick` for a CPU, full for a GPU.
#[derive(Clone, Debug)]
pub struct BenchSizes {
    /// Side of the square matmul (m = n = k); Newton-Schulz runs at up to 512.
    pub matmul: usize,
    /// Shape of the attention forward and backward.
    pub attention: AttentionShape,
    /// A HEAD short-window layer (T 2048, window 512), timed against the same shape without
    /// its window.
    pub window_layer: AttentionShape,
    /// Rows of the row-wise and memory-bound kernels (rmsnorm, cross-entropy, element-wise).
    pub rows: usize,
    /// Columns of those kernels, and the depth of the decoding lm_head product.
    pub cols: usize,
    /// Vocabulary size: the cross-entropy's (rows, vocab) logits and the lm_head's rows.
    pub vocab: usize,
    /// Timed calls of each kernel (after untimed warm-up calls).
    pub reps: usize,
    /// Training-step GEMMs (none by default on the CPU, d12 and d20 on a GPU).
    pub train_gemms: TrainGemms,
}

impl BenchSizes {
    /// The sizes for `client`'s device: the quick ones on the CPU runtime, the full ones on a
    /// GPU.
    pub fn for_client(client: &Client) -> Self {
        if crate::DeviceInfo::of(client).blocked {
            BenchSizes {
                matmul: 1024,
                attention: AttentionShape::new(1, 1024, 2, 2, 128),
                window_layer: AttentionShape::new(1, 2048, 2, 2, 128).with_window(512),
                rows: 1024,
                cols: 768,
                vocab: 8192,
                reps: 5,
                train_gemms: TrainGemms {
                    models: Vec::new(),
                    vocab: 65536,
                },
            }
        } else {
            BenchSizes {
                matmul: 4096,
                attention: AttentionShape::new(4, 1024, 12, 12, 128),
                window_layer: AttentionShape::new(4, 2048, 12, 12, 128).with_window(512),
                rows: 16384,
                cols: 768,
                vocab: 32768,
                reps: 10,
                train_gemms: TrainGemms {
                    models: vec![(12, 16 * 2048), (20, 8 * 2048)],
                    vocab: 65536,
                },
            }
        }
    }
}

/// Every kernel figure as one JSON object (keys such as `matmul_1024_gflops`,
/// `attention_fwd_gflops`, `rmsnorm_gbps`, `cross_entropy_gbps`), measured on the device's
/// thread (see `Client::exclusive`).
pub fn run_kernel_benchmarks<F: KernelFloat>(client: &Client, sizes: &BenchSizes) -> Result<Value> {
    let (c, s) = (client.clone(), sizes.clone());
    client
        .exclusive(move || run_kernel_benchmarks_inline::<F>(&c, &s))
        .map_err(|e| crate::KernelError::runtime("bench", format!("{e:?}")))?
}

fn run_kernel_benchmarks_inline<F: KernelFloat>(
    client: &Client,
    sizes: &BenchSizes,
) -> Result<Value> {
    let mut out = Map::new();
    let n = sizes.matmul;
    let info = crate::DeviceInfo::of(client);
    out.insert("runtime".into(), json!(info.runtime));
    out.insert("dtype".into(), json!(F::DTYPE.name()));
    let sq = MatmulShape::new(n, n, n, false, false);
    out.insert(
        format!("matmul_{n}_gflops"),
        json!(matmul_gflops::<F>(client, sq, None, sizes.reps)?),
    );
    let nt = MatmulShape::new(n, n, n, false, true);
    out.insert(
        format!("matmul_{n}_nt_gflops"),
        json!(matmul_gflops::<F>(client, nt, None, sizes.reps)?),
    );
    let mut per_kernel = Map::new();
    for k in crate::matmul::candidates(client, F::DTYPE, crate::matmul::precision(client)) {
        let v = matmul_gflops::<F>(client, sq, Some(k), sizes.reps.min(3))
            .map(|g| json!(g))
            .unwrap_or_else(|e| json!(e.to_string()));
        per_kernel.insert(format!("{k:?}"), v);
    }
    out.insert(
        format!("matmul_{n}_gflops_by_kernel"),
        Value::Object(per_kernel),
    );
    out.insert(
        "train_gemms".into(),
        // Three timed calls each: the d12/d20 shapes are large, and there are 30 of them.
        Value::Array(train_gemm_gflops::<F>(
            client,
            &sizes.train_gemms,
            sizes.reps.min(3),
        )?),
    );
    let chosen = AttentionKernel::for_device(
        client,
        &sizes.attention,
        &KvLayout::contiguous(&sizes.attention),
    );
    out.insert(
        "attention_shape".into(),
        json!(format!("{:?}", sizes.attention)),
    );
    out.insert("attention_kernel".into(), json!(format!("{chosen:?}")));
    let mut per_kernel = Map::new();
    for kernel in AttentionKernel::ALL {
        let (fwd, bwd) = attention_gflops::<F>(client, kernel, sizes.attention, sizes.reps)?;
        if kernel == chosen {
            out.insert("attention_fwd_gflops".into(), json!(fwd));
            out.insert("attention_bwd_gflops".into(), json!(bwd));
        }
        per_kernel.insert(
            format!("{kernel:?}"),
            json!({"fwd_gflops": fwd, "bwd_gflops": bwd}),
        );
    }
    out.insert(
        "attention_gflops_by_kernel".into(),
        Value::Object(per_kernel),
    );
    out.insert(
        "attention_window".into(),
        attention_window_ratio::<F>(client, sizes.window_layer, sizes.reps.min(3))?,
    );
    let (fwd, bwd) = rmsnorm_gbps::<F>(client, sizes.rows, sizes.cols, sizes.reps)?;
    out.insert("rmsnorm_shape".into(), json!([sizes.rows, sizes.cols]));
    out.insert("rmsnorm_gbps".into(), json!(fwd));
    out.insert("rmsnorm_bwd_gbps".into(), json!(bwd));
    let (fwd, bwd) = cross_entropy_gbps::<F>(client, sizes.rows, sizes.vocab, sizes.reps)?;
    out.insert(
        "cross_entropy_shape".into(),
        json!([sizes.rows, sizes.vocab]),
    );
    out.insert("cross_entropy_gbps".into(), json!(fwd));
    out.insert("cross_entropy_bwd_gbps".into(), json!(bwd));
    out.extend(memory_bound_gbps::<F>(
        client, sizes.rows, sizes.cols, sizes.reps,
    )?);
    let ns = 512.min(sizes.matmul);
    let a = upload_as::<F>(client, &values(ns * ns, 13));
    let t = time_it(client, 1, sizes.reps.min(3), || {
        crate::optim::newton_schulz::<F>(client, &a, ns, ns, 5).map(|_| ())
    })?;
    // Five iterations of three (n x n) products each.
    out.insert(
        format!("newton_schulz_{ns}_gflops"),
        json!(15.0 * 2.0 * (ns as f64).powi(3) / t / 1e9),
    );
    // Decoding's lm_head: one row against a (vocab, cols) weight; GB/s of the weight read.
    let (n, k) = (sizes.vocab, sizes.cols);
    let x = upload_as::<F>(client, &values(k, 14));
    let w = upload_as::<F>(client, &values(n * k, 15));
    let s = MatmulShape::new(1, n, k, false, true);
    let t = time_it(client, 1, sizes.reps, || {
        crate::matmul::matmul_with::<F>(client, crate::matmul::MatmulKernel::Gemv, &x, &w, &s)
            .map(|_| ())
    })?;
    out.insert("gemv_shape".into(), json!([1, n, k]));
    out.insert(
        "gemv_gbps".into(),
        json!((n * k * F::DTYPE.size()) as f64 / t / 1e9),
    );
    Ok(Value::Object(out))
}

/// GFLOP/s of each training-step GEMM of `which` ([`training_gemm_shapes`]): through the
/// dispatch (with the kernel it chose) and, where the device has it, through cuBLASLt alone
/// (`cublaslt_gflops`, null elsewhere), the figure to hold the dispatch against.
pub fn train_gemm_gflops<F: KernelFloat>(
    client: &Client,
    which: &TrainGemms,
    reps: usize,
) -> Result<Vec<Value>> {
    let has_cublaslt =
        crate::matmul::candidates(client, F::DTYPE, crate::matmul::precision(client))
            .contains(&MatmulKernel::CublasLt);
    let mut out = Vec::new();
    for &(depth, tokens) in &which.models {
        for (layer, pass, s) in training_gemm_shapes(depth, tokens, which.vocab) {
            let a = upload_as::<F>(client, &values(s.lhs_len(), 16));
            let b = upload_as::<F>(client, &values(s.rhs_len(), 17));
            let kernel = crate::matmul::choose::<F>(client, &a, &b, &s)?;
            drop((a, b));
            let gflops = matmul_gflops::<F>(client, s, None, reps)?;
            let cublaslt = if has_cublaslt {
                match matmul_gflops::<F>(client, s, Some(MatmulKernel::CublasLt), reps) {
                    Ok(g) => json!(g),
                    Err(e) => json!(e.to_string()),
                }
            } else {
                Value::Null
            };
            out.push(json!({
                "model": format!("d{depth}"),
                "tokens": tokens,
                "layer": layer,
                "pass": pass,
                "m": s.m, "n": s.n, "k": s.k,
                "trans_a": s.trans_a, "trans_b": s.trans_b,
                "kernel": format!("{kernel:?}"),
                "gflops": gflops,
                "cublaslt_gflops": cublaslt,
            }));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_gemms_are_the_three_products_of_each_linear_layer() {
        let shapes = training_gemm_shapes(12, 32768, 65536);
        assert_eq!(shapes.len(), 15);
        // lm_head forward: (tokens, 768) @ (65536, 768)^T.
        let (_, _, fwd) = shapes
            .iter()
            .find(|(l, p, _)| *l == "lm_head" && *p == "forward")
            .unwrap();
        assert_eq!(
            (fwd.m, fwd.n, fwd.k, fwd.trans_b),
            (32768, 65536, 768, true)
        );
        // c_fc weight gradient: (3072, tokens) @ (tokens, 768), the sum over tokens.
        let (_, _, wg) = shapes
            .iter()
            .find(|(l, p, _)| *l == "c_fc" && *p == "weight_grad")
            .unwrap();
        assert_eq!((wg.m, wg.n, wg.k, wg.trans_a), (3072, 768, 32768, true));
        // Every pass of a layer costs the same FLOPs.
        for layer in ["c_q", "c_fc", "lm_head"] {
            let f: Vec<f64> = shapes
                .iter()
                .filter(|(l, _, _)| *l == layer)
                .map(|(_, _, s)| s.flops())
                .collect();
            assert!(f.iter().all(|x| *x == f[0]), "{layer}: {f:?}");
        }
    }

    #[test]
    fn train_gemm_figures_run_on_the_cpu_without_cublaslt() {
        let client = crate::Backend::Cpu.client().unwrap();
        let which = TrainGemms {
            models: vec![(1, 8)],
            vocab: 96,
        };
        let rows = train_gemm_gflops::<f32>(&client, &which, 1).unwrap();
        assert_eq!(rows.len(), 15);
        for r in &rows {
            assert!(r["gflops"].as_f64().unwrap() > 0.0, "{r}");
            assert!(r["cublaslt_gflops"].is_null(), "{r}");
            assert_eq!(r["model"], "d1");
        }
    }
}
