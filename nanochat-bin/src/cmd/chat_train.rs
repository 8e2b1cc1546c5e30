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
use nanochat_core::checkpoint::{load_source, CheckpointQuery, LoadedModel, Phase};
use nanochat_core::train::{ChatRun, ChatSource, ChatTrainOptions};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Training tasks, comma-separated (chitchat, chatterbot, identity, spelling-bee,
    /// simple-spelling, arithmetic, or a .jsonl file of conversations); a task named twice is
    /// oversampled. Default: all of them, identity twice.
    #[arg(long, value_delimiter = ',')]
    tasks: Vec<String>,
    /// Tag of the model to start from (default: the newest).
    #[arg(long)]
    base_model: Option<String>,
    /// Step of that model (default: its newest).
    #[arg(long)]
    base_step: Option<u64>,
    /// Use the tokenizer found even when its fingerprint differs from the model's.
    #[arg(long)]
    force_tokenizer: bool,
    /// Phase to start from (chat-sft: mid by default, falling back to base when there is no mid
    /// model; mid-train: base).
    #[arg(long, value_parser = ["base", "mid", "sft"])]
    source: Option<String>,
    #[arg(long, default_value_t = 100)]
    total_steps: u64,
    /// Peak Muon learning rate (the AdamW rates scale with it).
    #[arg(long, default_value_t = 0.02)]
    lr: f32,
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    /// Tokens per row (default: the model's block_size).
    #[arg(long)]
    seq_len: Option<usize>,
    /// Tokens per optimizer step (default: one micro-batch).
    #[arg(long)]
    total_batch_size: Option<usize>,
    #[command(flatten)]
    device: super::DeviceArg,
    /// float32, or bfloat16: matmuls and activations in bf16 over f32 master weights.
    #[arg(long, value_enum, default_value_t)]
    dtype: super::DTypeArg,
    /// Checkpoint folder name (default: the source model's tag).
    #[arg(long)]
    model_tag: Option<String>,
    #[arg(long, default_value_t = 50)]
    eval_every: u64,
    #[arg(long, default_value_t = 0)]
    save_every: u64,
    #[arg(long)]
    resume_from_step: Option<u64>,
    /// Shuffle seed of the task mixture.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long)]
    quiet: bool,
}

impl Args {
    fn options(&self) -> ChatTrainOptions {
        ChatTrainOptions {
            tasks: self.tasks.clone(),
            total_steps: self.total_steps,
            lr: self.lr,
            batch_size: self.batch_size,
            seq_len: self.seq_len,
            total_batch_size: self.total_batch_size,
            dtype: self.dtype.into(),
            model_tag: self.model_tag.clone(),
            eval_every: self.eval_every,
            save_every: self.save_every,
            resume_from_step: self.resume_from_step,
            seed: self.seed,
        }
    }
}

pub fn run(args: Args, phase: Phase) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let device = args.device.open()?;
    let paths = super::paths()?;
    let query = CheckpointQuery {
        model_tag: args.base_model.as_deref(),
        step: args.base_step,
        force_tokenizer: args.force_tokenizer,
    };
    let src = args.source.as_deref().map(Phase::parse).transpose()?;
    let (loaded, tag) = load_source(paths, phase, src, &device, &query)
        .context("loading the model to fine-tune")?;
    let LoadedModel {
        phase: source_phase,
        model,
        tokenizer,
        meta,
        ..
    } = loaded;
    let source = ChatSource {
        model,
        tokenizer,
        meta,
        phase: source_phase,
        tag,
    };
    let mut notes = |l: String| eprintln!("{l}");
    let mut run = ChatRun::prepare(&args.options(), phase, source, paths, &device, &mut notes)?;
    eprintln!("{}", run.describe());
    let outcome = super::progress::train(&mut run.trainer, args.quiet, started)?;
    let (settings, results) = run.report(&outcome);
    super::report_stage(phase.command(), settings, results);
    println!("{}", serde_json::to_string_pretty(&run.summary(&outcome))?);
    Ok(ExitCode::SUCCESS)
}
