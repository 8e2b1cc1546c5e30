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

use nanochat_core::model::{Architecture, ModelSize};
use nanochat_core::train::{BaseRun, BaseTrainOptions, HeadTrainOptions};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Which nanochat to train: v1 (Nov 2025: its model, AdamW + Muon, contiguous stream) or
    /// head (Jul 2026: sliding windows, value embeddings, MuonAdamW, best-fit packing and
    /// scaling-law horizon and batch).
    /// Default: v1, or the recipe of the checkpoint --resume-from-step continues.
    #[arg(long, value_parser = ["v1", "head"])]
    recipe: Option<String>,
    /// Model size preset (depth 4 / 8 / 12 / 20).
    #[arg(long, value_parser = ["tiny", "small", "medium", "large"], conflicts_with = "depth")]
    model_size: Option<String>,
    /// Depth (n_layer); v1: n_embd = 64 * depth, 128-dim heads; head: --aspect-ratio * depth
    /// rounded up to whole --head-dim heads. Default: the tiny preset (4).
    #[arg(long, value_parser = super::depth)]
    depth: Option<usize>,
    /// head: model width per layer.
    #[arg(long, default_value_t = 64)]
    aspect_ratio: usize,
    /// head: attention head dimension.
    #[arg(long, default_value_t = 128)]
    head_dim: usize,
    /// head: sliding-window pattern tiled over the layers (L: full context, S: a quarter of
    /// it rounded up to 128); the last layer is always L.
    #[arg(long, default_value = "SSSL")]
    window_pattern: String,
    /// Rows per micro-batch (per device).
    #[arg(long, visible_alias = "device-batch-size", default_value_t = 4)]
    batch_size: usize,
    /// Tokens per optimizer step; gradients accumulate to it. Default: one micro-batch (head
    /// off the CPU: automatic). -1: head's automatic size.
    #[arg(long, allow_negative_numbers = true)]
    total_batch_size: Option<i64>,
    /// Optimizer steps (--num-iterations: nanochat's name; -1: disabled, the horizon then
    /// comes from --target-flops or --target-param-data-ratio). Default: 200 (head off the
    /// CPU: from --target-param-data-ratio 12).
    #[arg(long, visible_alias = "num-iterations", allow_negative_numbers = true)]
    total_steps: Option<i64>,
    /// head: train to this many FLOPs (-1: disabled).
    #[arg(long, allow_negative_numbers = true)]
    target_flops: Option<f64>,
    /// head: train on this many tokens per scaling parameter (-1: disabled; 12 where it
    /// applies).
    #[arg(long, allow_negative_numbers = true)]
    target_param_data_ratio: Option<f64>,
    /// v1: peak Muon learning rate; the AdamW rates scale by the same factor from their
    /// defaults.
    #[arg(long, default_value_t = 0.02)]
    lr: f32,
    /// head: AdamW rate of the token and value embeddings (times the batch scale).
    #[arg(long, default_value_t = 0.3)]
    embedding_lr: f64,
    /// head: AdamW rate of lm_head (times the batch scale).
    #[arg(long, default_value_t = 0.008)]
    unembedding_lr: f64,
    /// head: Muon's rate (times the batch scale).
    #[arg(long, default_value_t = 0.02)]
    matrix_lr: f64,
    /// head: rate of resid_lambdas and x0_lambdas (times the batch scale).
    #[arg(long, default_value_t = 0.5)]
    scalar_lr: f64,
    /// head: Muon's cautious weight decay, before its batch and horizon scaling.
    #[arg(long, default_value_t = 0.28)]
    weight_decay: f64,
    /// Sequence length (also the model's block_size; --max-seq-len: nanochat's name).
    #[arg(long, visible_alias = "max-seq-len", default_value_t = 256)]
    seq_len: usize,
    /// float32, or bfloat16: matmuls and activations in bf16 (f32 accumulation) over f32 master
    /// weights.
    #[arg(long, value_enum, default_value_t)]
    dtype: super::DTypeArg,
    #[command(flatten)]
    device: super::DeviceArg,
    /// Checkpoint folder name (default: d<depth>).
    #[arg(long, value_parser = super::model_tag)]
    model_tag: Option<String>,
    /// Measure validation bpb (and print samples) every N steps; 0 or -1: only at the end.
    #[arg(long, default_value_t = 50, allow_negative_numbers = true)]
    eval_every: i64,
    /// Validation tokens per evaluation.
    #[arg(long, default_value_t = 16384)]
    eval_tokens: usize,
    /// nanochat's CORE metric during training: -1 (disabled) is accepted; CORE is measured by
    /// base-eval after training, so another value is noted and ignored.
    #[arg(long, allow_negative_numbers = true)]
    core_metric_every: Option<i64>,
    /// nanochat's examples per task of that CORE metric (see --core-metric-every).
    #[arg(long, allow_negative_numbers = true)]
    core_metric_max_per_task: Option<i64>,
    /// nanochat's sampling interval: samples are printed at every evaluation here (see
    /// --eval-every), so this is noted and ignored.
    #[arg(long, allow_negative_numbers = true)]
    sample_every: Option<i64>,
    /// Save a checkpoint every N steps; 0 or -1: only at the end.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    save_every: i64,
    /// Continue the run saved at this step (-1: a fresh run).
    #[arg(long, allow_negative_numbers = true)]
    resume_from_step: Option<i64>,
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
    /// v1: warmup fraction of the steps.
    #[arg(long, default_value_t = 0.0)]
    warmup_ratio: f64,
    /// head: warmup steps (default 40).
    #[arg(long)]
    warmup_steps: Option<usize>,
    /// Warmdown fraction of the steps, linear to --final-lr-frac (default: v1 0.2, head 0.65).
    #[arg(long)]
    warmdown_ratio: Option<f64>,
    /// Learning-rate multiplier at the end of the warmdown (default: v1 0, head 0.05).
    #[arg(long)]
    final_lr_frac: Option<f64>,
    #[command(flatten)]
    nanochat: super::compat::NanochatFlags,
    /// No progress bar (logs a line per evaluation instead).
    #[arg(long)]
    quiet: bool,
}

impl Args {
    /// The core options of these flags (nanochat's `-1` sentinels resolved), after noting the
    /// nanochat flags that are accepted and ignored.
    fn options(self) -> anyhow::Result<BaseTrainOptions> {
        use super::compat::{interval, optional_count, optional_positive};
        self.nanochat.check("base-train")?;
        for (flag, v) in [
            ("--core-metric-every", self.core_metric_every),
            ("--sample-every", self.sample_every),
        ] {
            if v.is_some_and(|v| v != -1) {
                eprintln!("base-train: {flag} is noted and ignored (CORE comes from base-eval after training; samples print at each --eval-every)");
            }
        }
        let total_batch_size = optional_count("--total-batch-size", self.total_batch_size, 1)?;
        Ok(BaseTrainOptions {
            // clap accepts only these names.
            recipe: self
                .recipe
                .as_deref()
                .and_then(Architecture::parse)
                .unwrap_or_default(),
            model_size: self.model_size.as_deref().and_then(ModelSize::parse),
            depth: self.depth,
            batch_size: self.batch_size,
            total_batch_size: total_batch_size.map(|n| n as usize),
            auto_total_batch_size: self.total_batch_size == Some(-1),
            total_steps: optional_count("--total-steps", self.total_steps, 1)?,
            target_flops: optional_positive("--target-flops", self.target_flops)?,
            target_param_data_ratio: optional_positive(
                "--target-param-data-ratio",
                self.target_param_data_ratio,
            )?,
            lr: self.lr,
            seq_len: self.seq_len,
            dtype: self.dtype.into(),
            model_tag: self.model_tag,
            eval_every: interval("--eval-every", self.eval_every)?,
            eval_tokens: self.eval_tokens,
            save_every: interval("--save-every", self.save_every)?,
            resume_from_step: optional_count("--resume-from-step", self.resume_from_step, 0)?,
            inputs: self.input,
            tokenizer: self.tokenizer,
            seed: self.seed,
            warmup_ratio: self.warmup_ratio,
            warmup_steps: self.warmup_steps,
            warmdown_ratio: self.warmdown_ratio,
            final_lr_frac: self.final_lr_frac,
            head: HeadTrainOptions {
                aspect_ratio: self.aspect_ratio,
                head_dim: self.head_dim,
                window_pattern: self.window_pattern,
                embedding_lr: self.embedding_lr,
                unembedding_lr: self.unembedding_lr,
                matrix_lr: self.matrix_lr,
                scalar_lr: self.scalar_lr,
                weight_decay: self.weight_decay,
            },
        })
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let device = args.device.open()?;
    let quiet = args.quiet;
    let recipe_given = args.recipe.is_some();
    let mut opts = args.options()?;
    let paths = super::paths()?;
    if !recipe_given {
        opts.take_recipe_from_checkpoint(paths)?;
    }
    let mut run = BaseRun::prepare(&opts, paths, &device, &mut |l| eprintln!("{l}"))?;
    eprintln!("{}", run.describe());
    let outcome = super::progress::train(&mut run.trainer, quiet, started)?;
    let (settings, results) = run.report(&outcome);
    super::report_stage("base-train", settings, results);
    println!("{}", serde_json::to_string_pretty(&run.summary(&outcome))?);
    Ok(ExitCode::SUCCESS)
}
