//! The `nanochat bench` measurements that are not a model's: kernel throughput
//! ([`bench_kernels`]) and tokenizer encoding speed ([`bench_tokenizer`]). Training and decoding
//! throughput are [`crate::train::bench_train`] and [`crate::engine::bench_decode`]. Every one
//! returns JSON for `docs/benchmarks.md` (nanochat has no counterpart; the reference figures
//! there are PyTorch's and tiktoken's).

use std::path::Path;

use nanochat_kernels::bench::{run_kernel_benchmarks, BenchSizes};
use nanochat_kernels::matmul::{precision, set_precision, Precision};
use nanochat_kernels::with_float;
use serde_json::{json, Value};

use crate::tokenizer::{eval, Tokenizer};
use crate::{DType, Device, Result};

/// Sizes of `bench kernels` beyond the device's defaults ([`BenchSizes::for_client`]).
#[derive(Clone, Debug, Default)]
pub struct KernelBenchOptions {
    /// Side of the square matmul (default 1024 on the CPU, 4096 on a GPU).
    pub matmul_size: Option<usize>,
    /// Depths whose training-step GEMMs are timed beside cuBLASLt (0 entries are skipped;
    /// `None`: the device's default, 12 and 20 on a GPU and none on the CPU).
    pub train_gemms: Option<Vec<usize>>,
    /// Rows (tokens) of those GEMMs (default: 16 x 2048 at depth 12, else 8 x 2048).
    pub train_gemm_tokens: Option<usize>,
}

impl KernelBenchOptions {
    /// The device's default sizes with these options applied.
    pub fn sizes(&self, device: &Device) -> BenchSizes {
        let mut sizes = BenchSizes::for_client(device.client());
        if let Some(n) = self.matmul_size {
            sizes.matmul = n;
        }
        if let Some(depths) = &self.train_gemms {
            sizes.train_gemms.models = depths
                .iter()
                .filter(|&&d| d > 0)
                .map(|&d| (d, if d == 12 { 16 * 2048 } else { 8 * 2048 }))
                .collect();
        }
        if let Some(tokens) = self.train_gemm_tokens {
            for m in &mut sizes.train_gemms.models {
                m.1 = tokens;
            }
        }
        sizes
    }
}

/// Times every kernel at `sizes` in `dtype` (keys such as `matmul_1024_gflops`,
/// `attention_fwd_gflops`, `rmsnorm_gbps`), plus `device` and `matmul_precision`. With `tf32`,
/// f32 matmuls on this device may use tf32 from here on. Errors: a failed launch
/// ([`crate::CoreError::Kernel`]).
pub fn bench_kernels(
    device: &Device,
    dtype: DType,
    sizes: &BenchSizes,
    tf32: bool,
) -> Result<Value> {
    if tf32 {
        set_precision(device.client(), Precision::Tf32);
    }
    let mut out = with_float!(dtype, F => run_kernel_benchmarks::<F>(device.client(), sizes))?;
    out["device"] = json!(device.to_string());
    out["matmul_precision"] = json!(format!("{:?}", precision(device.client())));
    Ok(out)
}

/// Encoding speed (MB/s) of the tokenizer in `dir` on the whole bundled corpus (6.2 MB of
/// English in ~1,000 documents), beside tiktoken's GPT-2 and GPT-4 encodings' recorded
/// speeds; with `tokenizer`, `vocab_size` and `threads`. Errors name the tokenizer folder.
pub fn bench_tokenizer(dir: &Path) -> Result<Value> {
    let tok = Tokenizer::from_pretrained(dir)?;
    let reference = eval::Reference::load()?;
    let docs = crate::data::bundled_documents()?;
    let speed = eval::encode_speed(&tok, &reference, &docs, 3);
    let mut out = serde_json::to_value(&speed).expect("speeds serialise");
    out["tokenizer"] = json!(dir.display().to_string());
    out["vocab_size"] = json!(tok.vocab_size());
    out["threads"] = json!(std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1));
    Ok(out)
}
