//! `nanochat bench kernels`: matmul, attention forward/backward, RMSNorm and cross-entropy
//! throughput on one device, printed as one JSON object (GFLOP/s and GB/s).

use std::process::ExitCode;

use anyhow::Context;
use nanochat_kernels::bench::{run_kernel_benchmarks, BenchSizes};
use nanochat_kernels::{with_float, DType};

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Kernel throughput (keys such as matmul_1024_gflops, attention_fwd_gflops, rmsnorm_gbps).
    Kernels(KernelArgs),
    /// Tokenizer encoding speed (MB/s) against tiktoken's GPT-2 and GPT-4 encodings.
    Tokenizer(TokenizerArgs),
    /// Training throughput (tokens/s, MFU, memory) of a model shape on random tokens.
    Train(TrainArgs),
    /// Inference throughput: prefill tokens/s and decode tokens/s at batch 1 and 8.
    Decode(DecodeArgs),
}

#[derive(clap::Args)]
pub struct DecodeArgs {
    /// Depth (n_embd = 64 * depth, 128-dim heads).
    #[arg(long, default_value_t = 4)]
    depth: usize,
    #[arg(long, default_value_t = 65536)]
    vocab: usize,
    #[command(flatten)]
    device: super::DeviceArg,
    /// float32 or bfloat16.
    #[arg(long, value_enum, default_value_t)]
    dtype: super::DTypeArg,
    /// Prompt tokens prefilled.
    #[arg(long, default_value_t = 128)]
    prompt_len: usize,
    /// Timed decode steps (after one warm-up step).
    #[arg(long, default_value_t = 32)]
    steps: usize,
    /// Print compact JSON on one line (the output is JSON either way).
    #[arg(long)]
    json: bool,
}

fn run_decode(args: DecodeArgs) -> anyhow::Result<ExitCode> {
    let dtype = DType::from(args.dtype);
    let device = args.device.open()?;
    let r = nanochat_core::engine::bench_decode(
        &device,
        args.depth,
        args.vocab,
        dtype,
        args.prompt_len,
        args.steps,
    )
    .context("decode benchmark")?;
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&r)?);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Depth (n_embd = 64 * depth, 128-dim heads).
    #[arg(long, default_value_t = 4)]
    depth: usize,
    #[arg(long, default_value_t = 1)]
    batch_size: usize,
    #[arg(long, default_value_t = 1024)]
    seq_len: usize,
    #[arg(long, default_value_t = 65536)]
    vocab: usize,
    #[command(flatten)]
    device: super::DeviceArg,
    /// float32, or bfloat16 (mixed precision over f32 master weights, as base-train; MFU is
    /// then against the bf16 peak).
    #[arg(long, value_enum, default_value_t)]
    dtype: super::DTypeArg,
    /// Timed steps (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Print compact JSON on one line (the output is JSON either way).
    #[arg(long)]
    json: bool,
}

fn run_train(args: TrainArgs) -> anyhow::Result<ExitCode> {
    let dtype = DType::from(args.dtype);
    let device = args.device.open()?;
    let r = nanochat_core::train::bench_train(
        &device,
        args.depth,
        args.vocab,
        args.batch_size,
        args.seq_len,
        args.steps,
        dtype,
    )
    .context("training benchmark")?;
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&r)?);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct TokenizerArgs {
    /// Directory (or file) of the tokenizer (default: as `tok-train` writes it).
    #[arg(long)]
    tokenizer: Option<std::path::PathBuf>,
    /// Print compact JSON on one line (the output is JSON either way).
    #[arg(long)]
    json: bool,
}

fn run_tokenizer(args: TokenizerArgs) -> anyhow::Result<ExitCode> {
    use nanochat_core::tokenizer::{eval, Tokenizer};
    let dir = super::paths()?.tokenizer_dir_or(args.tokenizer.as_deref());
    let tok = Tokenizer::from_pretrained(&dir)
        .with_context(|| format!("loading the tokenizer from {}", dir.display()))?;
    let reference = eval::Reference::load()?;
    // The whole bundled corpus: 6.2 MB of English in ~1,000 documents.
    let docs = nanochat_core::data::bundled_documents()?;
    let speed = eval::encode_speed(&tok, &reference, &docs, 3);
    let mut out = serde_json::to_value(&speed)?;
    out["tokenizer"] = serde_json::json!(dir.display().to_string());
    out["vocab_size"] = serde_json::json!(tok.vocab_size());
    out["threads"] = serde_json::json!(std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1));
    if args.json {
        println!("{out}");
    } else {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct KernelArgs {
    #[command(flatten)]
    device: super::DeviceArg,
    /// Element type: float32 or bfloat16.
    #[arg(long, value_enum, default_value_t)]
    dtype: super::DTypeArg,
    /// Square matmul size (default 1024 on the CPU, 4096 on a GPU).
    #[arg(long)]
    matmul_size: Option<usize>,
    /// Allow tf32 tensor cores for f32 matmuls on CUDA.
    #[arg(long)]
    tf32: bool,
    /// Depths whose training-step GEMMs (every linear layer's forward, input and weight
    /// gradient) are timed beside cuBLASLt, comma-separated, or `none` (default: 12,20 on a
    /// GPU, none on the CPU).
    #[arg(long, value_delimiter = ',', value_parser = parse_depth)]
    train_gemms: Option<Vec<usize>>,
    /// Rows (tokens) of those GEMMs (default: d12 at 16 x 2048, other depths at 8 x 2048).
    #[arg(long)]
    train_gemm_tokens: Option<usize>,
    /// Print compact JSON on one line (the output is JSON either way).
    #[arg(long)]
    json: bool,
}

/// A depth of `--train-gemms` (`none` for no model).
fn parse_depth(s: &str) -> Result<usize, String> {
    match s {
        "none" | "" => Ok(0),
        _ => match s.parse::<usize>() {
            Ok(d) if (1..=64).contains(&d) => Ok(d),
            _ => Err(format!("`{s}` is not a depth from 1 to 64 (or `none`)")),
        },
    }
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    let args = match cmd {
        BenchCommand::Kernels(args) => args,
        BenchCommand::Tokenizer(args) => return run_tokenizer(args),
        BenchCommand::Train(args) => return run_train(args),
        BenchCommand::Decode(args) => return run_decode(args),
    };
    let dtype = DType::from(args.dtype);
    let device = args.device.open()?;
    if args.tf32 {
        nanochat_kernels::matmul::set_precision(
            device.client(),
            nanochat_kernels::matmul::Precision::Tf32,
        );
    }
    let mut sizes = BenchSizes::for_client(device.client());
    if let Some(n) = args.matmul_size {
        sizes.matmul = n;
    }
    if let Some(depths) = &args.train_gemms {
        sizes.train_gemms.models = depths
            .iter()
            .filter(|&&d| d > 0)
            .map(|&d| (d, if d == 12 { 16 * 2048 } else { 8 * 2048 }))
            .collect();
    }
    if let Some(tokens) = args.train_gemm_tokens {
        for m in &mut sizes.train_gemms.models {
            m.1 = tokens;
        }
    }
    eprintln!("benchmarking kernels on {device} ({dtype}); sizes {sizes:?}");
    let mut out = with_float!(dtype, F => run_kernel_benchmarks::<F>(device.client(), &sizes))
        .with_context(|| format!("kernel benchmark on {device}"))?;
    out["device"] = serde_json::json!(device.to_string());
    out["matmul_precision"] = serde_json::json!(format!(
        "{:?}",
        nanochat_kernels::matmul::precision(device.client())
    ));
    if args.json {
        println!("{out}");
    } else {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(ExitCode::SUCCESS)
}
