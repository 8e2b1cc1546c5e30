//! `nanochat mid-train` and `nanochat chat-sft`: fine-tune a base (or mid) model on rendered
//! conversations from a TaskMixture, with the loss mask (targets of masked tokens become -1).
//! Mid-training packs conversations into a stream and teaches the special tokens and the
//! calculator tool's format; SFT pads one conversation per row. A row with no supervised token
//! (e.g. a user message longer than the row) adds no loss and no gradient: it is counted
//! (`masked_rows` in `metrics.jsonl` and the summary) with a warning, never an error. Checkpoints
//! go to `{mid,sft}_checkpoints/<model_tag>/` with a `metrics.jsonl`. The run is set up by
//! `nanochat_core::train::ChatRun`; this command loads the source model, maps its flags and
//! shows the progress.

use std::process::ExitCode;

use anyhow::Context;
use nanochat_core::checkpoint::{load_source, CheckpointQuery, Phase};
use nanochat_core::model::Architecture;
use nanochat_core::recipe::SftSchedule;
use nanochat_core::train::{ChatRun, ChatSource, ChatTrainOptions, HeadSftOptions};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Training tasks, comma-separated (chitchat, chatterbot, identity, spelling-bee,
    /// simple-spelling, arithmetic, or a .jsonl file of conversations); a task named twice is
    /// oversampled. Default: all of them, identity twice.
    #[arg(long, value_delimiter = ',')]
    tasks: Vec<String>,
    /// The recipe, which follows the source model: naming the other one is an error.
    #[arg(long, value_parser = ["v1", "head"])]
    recipe: Option<String>,
    /// Tag of the model to start from (default: the newest).
    #[arg(long, value_parser = super::model_tag)]
    base_model: Option<String>,
    /// Step of that model (default: its newest).
    #[arg(long, visible_alias = "model-step")]
    base_step: Option<u64>,
    /// Use the tokenizer found even when its fingerprint differs from the model's.
    #[arg(long)]
    force_tokenizer: bool,
    /// Phase to start from (chat-sft: mid by default, falling back to base when there is no mid
    /// model; mid-train: base).
    #[arg(long, value_parser = ["base", "mid", "sft"])]
    source: Option<String>,
    /// Optimizer steps; -1 or none: v1 100, head one pass over the conversations.
    #[arg(long, visible_alias = "num-iterations", allow_negative_numbers = true)]
    total_steps: Option<i64>,
    /// v1: peak Muon learning rate (the AdamW rates scale with it).
    #[arg(long, default_value_t = 0.02)]
    lr: f32,
    /// Rows per micro-batch (default: v1 4, head the base run's).
    #[arg(
        long,
        visible_alias = "device-batch-size",
        allow_negative_numbers = true
    )]
    batch_size: Option<usize>,
    /// Tokens per row (default: v1 the model's block_size, head the base run's).
    #[arg(long, visible_alias = "max-seq-len")]
    seq_len: Option<usize>,
    /// Tokens per optimizer step (default: v1 one micro-batch, head the base run's).
    #[arg(long, allow_negative_numbers = true)]
    total_batch_size: Option<usize>,
    #[command(flatten)]
    head: HeadArgs,
    #[command(flatten)]
    device: super::DeviceArg,
    /// float32, or bfloat16: matmuls and activations in bf16 over f32 master weights.
    #[arg(long, value_enum, default_value_t)]
    dtype: super::DTypeArg,
    /// Checkpoint folder name (default: the source model's tag).
    #[arg(long, value_parser = super::model_tag)]
    model_tag: Option<String>,
    /// Validation every N steps and at the end (0 or -1: only at the end).
    #[arg(long, default_value_t = 50, allow_negative_numbers = true)]
    eval_every: i64,
    /// Validation tokens, in whole batches (default: the held-out set, at most 8 batches).
    #[arg(long, allow_negative_numbers = true)]
    eval_tokens: Option<usize>,
    /// Save a checkpoint every N steps (and at the end); 0: only at the end.
    #[arg(long, default_value_t = 0)]
    save_every: u64,
    /// Continue the run saved at this step (-1: a fresh run, nanochat's "disabled").
    #[arg(long, allow_negative_numbers = true)]
    resume_from_step: Option<i64>,
    /// Shuffle seed of the task mixture.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[command(flatten)]
    nanochat: super::compat::NanochatFlags,
    #[arg(long)]
    quiet: bool,
}

/// HEAD's SFT settings (`scripts/chat_sft.py`); the rates default to the base run's.
#[derive(clap::Args, Clone, Debug)]
struct HeadArgs {
    #[arg(long, allow_negative_numbers = true)]
    embedding_lr: Option<f64>,
    #[arg(long, allow_negative_numbers = true)]
    unembedding_lr: Option<f64>,
    #[arg(long, allow_negative_numbers = true)]
    matrix_lr: Option<f64>,
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    init_lr_frac: f64,
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    warmup_ratio: f64,
    #[arg(long, default_value_t = 0.5, allow_negative_numbers = true)]
    warmdown_ratio: f64,
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    final_lr_frac: f64,
    /// Warm-start the optimizer from the base checkpoint's state (1) or not (0).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    load_optimizer: u8,
}

impl Args {
    fn options(&self) -> anyhow::Result<ChatTrainOptions> {
        let h = &self.head;
        Ok(ChatTrainOptions {
            tasks: self.tasks.clone(),
            recipe: self.recipe.as_deref().and_then(Architecture::parse),
            total_steps: super::compat::optional_count("--total-steps", self.total_steps, 1)?,
            lr: self.lr,
            batch_size: self.batch_size,
            seq_len: self.seq_len,
            total_batch_size: self.total_batch_size,
            dtype: self.dtype.into(),
            model_tag: self.model_tag.clone(),
            eval_every: super::compat::interval("--eval-every", self.eval_every)?,
            eval_tokens: self.eval_tokens,
            save_every: self.save_every,
            resume_from_step: super::compat::optional_count(
                "--resume-from-step",
                self.resume_from_step,
                0,
            )?,
            seed: self.seed,
            head: HeadSftOptions {
                embedding_lr: h.embedding_lr,
                unembedding_lr: h.unembedding_lr,
                matrix_lr: h.matrix_lr,
                schedule: SftSchedule {
                    init_lr_frac: h.init_lr_frac,
                    warmup_ratio: h.warmup_ratio,
                    warmdown_ratio: h.warmdown_ratio,
                    final_lr_frac: h.final_lr_frac,
                },
                load_optimizer: h.load_optimizer == 1,
            },
        })
    }
}

pub fn run(args: Args, phase: Phase) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    args.nanochat.check(phase.command())?;
    let opts = args.options()?;
    let device = args.device.open()?;
    let paths = super::paths()?;
    let query = CheckpointQuery {
        model_tag: args.base_model.as_deref(),
        step: args.base_step,
        force_tokenizer: args.force_tokenizer,
    };
    let src = args.source.as_deref().map(Phase::parse).transpose()?;
    let (l, tag) = load_source(paths, phase, src, &device, &query)
        .context("loading the model to fine-tune")?;
    let source = ChatSource::from_loaded(l, tag);
    let mut notes = |l: String| eprintln!("{l}");
    let mut run = ChatRun::prepare(&opts, phase, source, paths, &device, &mut notes)?;
    eprintln!("{}", run.describe());
    let outcome = super::progress::train(&mut run.trainer, args.quiet, started)?;
    let (settings, results) = run.report(&outcome);
    super::report_stage(phase.command(), settings, results);
    println!("{}", serde_json::to_string_pretty(&run.summary(&outcome))?);
    Ok(ExitCode::SUCCESS)
}
