//! `nanochat base-train`: pretrains a GPT on the bundled corpus (default) or given text, JSONL or
//! parquet files, with nanochat's optimizers and schedule; a progress bar with loss, tokens/s and
//! MFU; validation bits per byte and greedy samples at intervals; checkpoints and
//! `metrics.jsonl` under `$NANOCHAT_MODEL_DIR/base_checkpoints/<model_tag>/`. Each input's
//! documents, characters and share used go to stderr and the summary, with a warning naming
//! `--total-steps` or `--eval-tokens` when the run leaves more than 1% of its text unused.
//! The run is set up by `nanochat_core::train::BaseRun`; this command maps its flags and shows
//! the progress.

use std::path::PathBuf;
use std::process::ExitCode;

use nanochat_core::model::ModelSize;
use nanochat_core::train::{BaseRun, BaseTrainOptions};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Model size preset (depth 4 / 8 / 12 / 20).
    #[arg(long, value_parser = ["tiny", "small", "medium", "large"], conflicts_with = "depth")]
    model_size: Option<String>,
    /// Depth (n_layer); n_embd = 64 * depth, 128-dim heads. Default: the tiny preset.
    #[arg(long)]
    depth: Option<usize>,
    /// Rows per micro-batch (per device).
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    /// Tokens per optimizer step (default: one micro-batch); gradients accumulate to it.
    #[arg(long)]
    total_batch_size: Option<usize>,
    /// Optimizer steps.
    #[arg(long, default_value_t = 200)]
    total_steps: u64,
    /// Peak Muon learning rate; the AdamW rates scale by the same factor from their defaults.
    #[arg(long, default_value_t = 0.02)]
    lr: f32,
    /// Sequence length (also the model's block_size).
    #[arg(long, default_value_t = 256)]
    seq_len: usize,
    /// float32, or bfloat16: matmuls and activations in bf16 (f32 accumulation) over f32 master
    /// weights.
    #[arg(long, value_enum, default_value_t)]
    dtype: super::DTypeArg,
    #[command(flatten)]
    device: super::DeviceArg,
    /// Checkpoint folder name (default: d<depth>).
    #[arg(long)]
    model_tag: Option<String>,
    /// Measure validation bpb (and print samples) every N steps; 0: only at the end.
    #[arg(long, default_value_t = 50)]
    eval_every: u64,
    /// Validation tokens per evaluation.
    #[arg(long, default_value_t = 16384)]
    eval_tokens: usize,
    /// Save a checkpoint every N steps; 0: only at the end.
    #[arg(long, default_value_t = 0)]
    save_every: u64,
    /// Continue the run saved at this step.
    #[arg(long)]
    resume_from_step: Option<u64>,
    /// Training text (.txt: documents of whole paragraphs, cut at blank lines; .jsonl; .parquet;
    /// optionally .gz); the last file is validation. Default: the bundled corpus (its last 5% of
    /// documents are validation). Each input's documents, characters and share used are printed.
    #[arg(long, num_args = 1..)]
    input: Vec<PathBuf>,
    /// Tokenizer directory (default: $NANOCHAT_TOKENIZER_PATH or the model dir's tokenizer/).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Seed of the initial weights.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Warmup fraction of the steps.
    #[arg(long, default_value_t = 0.0)]
    warmup_ratio: f64,
    /// Warmdown fraction of the steps (linear to --final-lr-frac).
    #[arg(long, default_value_t = 0.2)]
    warmdown_ratio: f64,
    #[arg(long, default_value_t = 0.0)]
    final_lr_frac: f64,
    /// No progress bar (logs a line per evaluation instead).
    #[arg(long)]
    quiet: bool,
}

impl From<Args> for BaseTrainOptions {
    fn from(a: Args) -> Self {
        BaseTrainOptions {
            // clap accepts only the presets' names.
            model_size: a.model_size.as_deref().and_then(ModelSize::parse),
            depth: a.depth,
            batch_size: a.batch_size,
            total_batch_size: a.total_batch_size,
            total_steps: a.total_steps,
            lr: a.lr,
            seq_len: a.seq_len,
            dtype: a.dtype.into(),
            model_tag: a.model_tag,
            eval_every: a.eval_every,
            eval_tokens: a.eval_tokens,
            save_every: a.save_every,
            resume_from_step: a.resume_from_step,
            inputs: a.input,
            tokenizer: a.tokenizer,
            seed: a.seed,
            warmup_ratio: a.warmup_ratio,
            warmdown_ratio: a.warmdown_ratio,
            final_lr_frac: a.final_lr_frac,
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let device = args.device.open()?;
    let quiet = args.quiet;
    let opts = BaseTrainOptions::from(args);
    let mut run = BaseRun::prepare(&opts, super::paths()?, &device, &mut |l| eprintln!("{l}"))?;
    eprintln!("{}", run.describe());
    let outcome = super::progress::train(&mut run.trainer, quiet, started)?;
    let (settings, results) = run.report(&outcome);
    super::report_stage("base-train", settings, results);
    println!("{}", serde_json::to_string_pretty(&run.summary(&outcome))?);
    Ok(ExitCode::SUCCESS)
}
