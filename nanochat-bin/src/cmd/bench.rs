//! `nanochat bench kernels`: matmul, attention forward/backward, RMSNorm and cross-entropy
//! throughput on one device, printed as one JSON object (GFLOP/s and GB/s).

use std::process::ExitCode;

use anyhow::Context;
use nanochat_core::bench::{bench_kernels, bench_tokenizer, KernelBenchOptions};
use nanochat_core::model::Architecture;
use nanochat_kernels::DType;

/// `--json`: the output is JSON either way; this makes it one compact line.
#[derive(clap::Args)]
pub struct JsonArg {
    /// Print compact JSON on one line (the output is JSON either way).
    #[arg(long)]
    json: bool,
}

impl JsonArg {
    /// Prints `value` compact or pretty.
    fn print(&self, value: &impl serde::Serialize) -> anyhow::Result<ExitCode> {
        if self.json {
            println!("{}", serde_json::to_string(value)?);
        } else {
            println!("{}", serde_json::to_string_pretty(value)?);
        }
        Ok(ExitCode::SUCCESS)
    }
}

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
    #[arg(long, default_value_t = 4, value_parser = super::depth)]
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
    #[command(flatten)]
    json: JsonArg,
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
    args.json.print(&r)
}

#[derive(clap::Args)]
pub struct TrainArgs {
    /// The model and optimizer: v1's, or HEAD's (SSSL windows, value embeddings, MuonAdamW).
    #[arg(long, value_parser = ["v1", "head"], default_value = "v1")]
    recipe: String,
    /// Depth (n_embd = 64 * depth, 128-dim heads).
    #[arg(long, default_value_t = 4, value_parser = super::depth)]
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
    /// Under `mpirun`: which parameters the optimizer deals out to one owner each (`all`,
    /// training's; `matrices`: Muon's only, AdamW replicated; `none`: every rank updates every
    /// parameter).
    #[arg(long, value_parser = ["all", "matrices", "none"], default_value = "all")]
    shard_optimizer: String,
    #[command(flatten)]
    json: JsonArg,
}

fn run_train(args: TrainArgs) -> anyhow::Result<ExitCode> {
    let dtype = DType::from(args.dtype);
    let device = args.device.open()?;
    let opts = nanochat_core::train::BenchTrainOptions {
        recipe: Architecture::parse(&args.recipe).unwrap_or_default(),
        depth: args.depth,
        vocab: args.vocab,
        batch: args.batch_size,
        seq: args.seq_len,
        steps: args.steps,
        dtype,
        shard: nanochat_core::dist::ShardPolicy::parse(&args.shard_optimizer)?,
    };
    let r = nanochat_core::train::bench_train(&device, &opts).context("training benchmark")?;
    args.json.print(&r)
}

#[derive(clap::Args)]
pub struct TokenizerArgs {
    /// Directory (or file) of the tokenizer (default: as `tok-train` writes it).
    #[arg(long)]
    tokenizer: Option<std::path::PathBuf>,
    #[command(flatten)]
    json: JsonArg,
}

fn run_tokenizer(args: TokenizerArgs) -> anyhow::Result<ExitCode> {
    let dir = super::paths()?.tokenizer_dir_or(args.tokenizer.as_deref());
    let out = bench_tokenizer(&dir)
        .with_context(|| format!("tokenizer benchmark of {}", dir.display()))?;
    args.json.print(&out)
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
    #[command(flatten)]
    json: JsonArg,
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
    let sizes = KernelBenchOptions {
        matmul_size: args.matmul_size,
        train_gemms: args.train_gemms,
        train_gemm_tokens: args.train_gemm_tokens,
    }
    .sizes(&device);
    eprintln!("benchmarking kernels on {device} ({dtype}); sizes {sizes:?}");
    let out = bench_kernels(&device, dtype, &sizes, args.tf32)
        .with_context(|| format!("kernel benchmark on {device}"))?;
    args.json.print(&out)
}
