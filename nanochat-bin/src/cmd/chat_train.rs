//! `nanochat mid-train` and `nanochat chat-sft`: fine-tune a base (or mid) model on rendered
//! conversations from a TaskMixture, with the loss mask (targets of masked tokens become -1).
//! Mid-training packs conversations into a stream and teaches the special tokens and the
//! calculator tool's format; SFT pads one conversation per row. A row with no supervised token
//! (e.g. a user message longer than the row) adds no loss and no gradient: it is counted
//! (`masked_rows` in `metrics.jsonl` and the summary) with a warning, never an error. Checkpoints
//! go to `{mid,sft}_checkpoints/<model_tag>/` with a `metrics.jsonl`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
/// The tag a loaded model came from (chat-rl names its checkpoints with it).
pub use nanochat_core::checkpoint::root_tag;
use nanochat_core::checkpoint::{load_source, CheckpointQuery, LoadedModel, Phase};
use nanochat_core::data::{conversation_usage, unused_warning, Batch, DataLoader, Packing};
use nanochat_core::optim::{LrSchedule, OptimConfig};
use nanochat_core::tasks::{training_task, Task, TaskMixture, TaskSlice};
use nanochat_core::tokenizer::Tokenizer;
use nanochat_core::train::{TrainConfig, Trainer};
use serde_json::json;

use super::progress::TrainProgress;

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

const DEFAULT_TASKS: [&str; 7] = [
    "chitchat",
    "chatterbot",
    "identity",
    "identity",
    "spelling-bee",
    "simple-spelling",
    "arithmetic",
];

pub fn run(args: Args, phase: Phase) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let device = args.device.open()?;
    let paths = super::paths()?;
    let root = paths.model_root.clone();
    let query = CheckpointQuery {
        model_tag: args.base_model.as_deref(),
        step: args.base_step,
        force_tokenizer: args.force_tokenizer,
    };
    let src = args.source.as_deref().map(Phase::parse).transpose()?;
    let (loaded, src_tag) = load_source(paths, phase, src, &device, &query)
        .context("loading the model to fine-tune")?;
    let LoadedModel {
        phase: src_phase,
        model,
        tokenizer,
        meta,
        ..
    } = loaded;
    let source = (src_phase, src_tag);
    let tag = args.model_tag.clone().unwrap_or_else(|| source.1.clone());
    let names: Vec<String> = if args.tasks.is_empty() {
        DEFAULT_TASKS.iter().map(|s| s.to_string()).collect()
    } else {
        args.tasks.clone()
    };
    let tasks = names
        .iter()
        .map(|n| training_task(n))
        .collect::<nanochat_core::Result<Vec<Arc<dyn Task>>>>()?;
    let mixture: Arc<dyn Task> = Arc::new(TaskMixture::new(tasks, args.seed));
    // The last 5% of the shuffled mixture is held out for validation.
    let n = mixture.num_examples();
    let n_val = (n / 20).max(1);
    if n < 2 {
        bail!("the tasks {names:?} hold fewer than two conversations");
    }
    let train_task: Arc<dyn Task> =
        Arc::new(TaskSlice::new(mixture.clone(), 0, Some(n - n_val), 1)?);
    let val_task: Arc<dyn Task> = Arc::new(TaskSlice::new(mixture, n - n_val, None, 1)?);
    let t = args.seq_len.unwrap_or(model.config().block_size);
    if t > model.config().block_size {
        bail!(
            "--seq-len {t} exceeds the model's block_size {}",
            model.config().block_size
        );
    }
    let b = args.batch_size;
    let packing = if phase == Phase::Sft {
        Packing::Padded
    } else {
        Packing::Packed
    };
    let val_batches = n_val.div_ceil(b).clamp(1, 8);
    account_conversations(
        &args,
        &train_task,
        &val_task,
        &tokenizer,
        packing,
        t,
        val_batches,
    )?;
    let train = DataLoader::conversations(train_task, packing, tokenizer.clone(), b, t)?;
    let mut val_loader = DataLoader::conversations(val_task, packing, tokenizer.clone(), b, t)?;
    let val: Vec<Batch> = (0..val_batches)
        .map(|_| val_loader.next_batch())
        .collect::<nanochat_core::Result<_>>()?;
    let cfg = TrainConfig {
        phase,
        root,
        model_tag: tag.clone(),
        batch_size: b,
        seq_len: t,
        total_batch_size: args.total_batch_size.unwrap_or(b * t),
        total_steps: args.total_steps,
        optim: OptimConfig::with_peak_lr(args.lr),
        schedule: LrSchedule::new(args.total_steps as usize),
        eval_every: args.eval_every,
        save_every: args.save_every,
        sample_prompts: vec![],
        tokenizer_path: nanochat_core::checkpoint::tokenizer_for(paths, &meta),
        tokenizer_record: meta.tokenizer_path.clone(),
        compute_dtype: args.dtype.into(),
        run: json!({
            "command": phase_command(phase), "tasks": names, "source": {"phase": source.0.name(), "tag": source.1, "step": meta.step},
            "batch_size": b, "seq_len": t, "total_steps": args.total_steps, "lr": args.lr, "device": device.to_string(),
        }),
    };
    let mut trainer = match args.resume_from_step {
        Some(step) => Trainer::resume(step, &device, tokenizer, Box::new(train), val, cfg)
            .with_context(|| format!("resuming {} model `{tag}` from step {step}", phase.name()))?,
        None => {
            model.set_rng_state(0);
            Trainer::new(model, tokenizer, Box::new(train), val, cfg)?
        }
    };
    eprintln!(
        "{} {tag}: from {} model `{}` step {}, {} conversations ({} held out), {} steps of {} tokens on {device}",
        phase_command(phase),
        source.0.name(),
        source.1,
        meta.step,
        n - n_val,
        n_val,
        args.total_steps,
        trainer.cfg.total_batch_size
    );
    let mut progress = TrainProgress::new(args.total_steps, trainer.step, args.quiet);
    let val_bpb = trainer.run(&mut |e| progress.event(e))?;
    progress.finish();
    super::report_stage(
        phase_command(phase),
        json!({"checkpoint_dir": trainer.cfg.checkpoint_dir(), "model_tag": tag, "run": trainer.cfg.run}),
        json!({"steps": trainer.step, "val_bpb": val_bpb, "tokens_per_s": progress.mean_tokens_per_s(),
            "masked_rows": progress.masked_rows(), "wall_s": started.elapsed().as_secs_f64()}),
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "phase": phase.name(), "model_tag": tag, "step": trainer.step, "val_bpb": val_bpb,
            "checkpoint_dir": trainer.cfg.checkpoint_dir().display().to_string(),
            "mean_tokens_per_s": progress.mean_tokens_per_s(), "masked_rows": progress.masked_rows(),
        }))?
    );
    Ok(ExitCode::SUCCESS)
}

/// Counts what the run reads of the training and validation conversations (rendered whole):
/// the tokens `--seq-len` truncates, and those `--total-steps` (training) or the at most 8
/// validation batches of `--batch-size` rows never reach; prints them and warns, naming the
/// flag, when either leaves more than 1% of the tokens unused.
fn account_conversations(
    args: &Args,
    train: &Arc<dyn Task>,
    val: &Arc<dyn Task>,
    tokenizer: &Tokenizer,
    packing: Packing,
    t: usize,
    val_batches: usize,
) -> anyhow::Result<()> {
    let b = args.batch_size;
    let accum = (args.total_batch_size.unwrap_or(b * t) / (b * t)).max(1);
    let steps = args.total_steps as usize;
    for (role, task, micro_batches, reach, remedy) in [
        (
            "training",
            train,
            steps.saturating_mul(accum),
            format!("--total-steps {steps}"),
            "raise --total-steps to train on all of them",
        ),
        (
            "validation",
            val,
            val_batches,
            format!("--batch-size {b} (validation reads at most 8 batches)"),
            "raise --batch-size to measure on more",
        ),
    ] {
        let u = conversation_usage(task.as_ref(), tokenizer, packing, b, t, micro_batches)?;
        eprintln!(
            "{role} conversations: {}, {} tokens; {} read, {} cut by --seq-len {t}, {} not reached",
            u.conversations,
            u.tokens,
            u.used_tokens,
            u.truncated_tokens,
            u.unread_tokens()
        );
        let unit = format!("{role} tokens");
        let cut = format!("--seq-len {t}");
        let warnings = [
            (
                u.truncated_tokens,
                cut.as_str(),
                "raise --seq-len (up to the model's block_size) to keep long conversations whole",
            ),
            (u.unread_tokens(), reach.as_str(), remedy),
        ];
        for (unused, cause, remedy) in warnings {
            if let Some(w) = unused_warning(u.tokens, unused, &unit, cause, remedy) {
                eprintln!("{w}");
            }
        }
    }
    Ok(())
}

fn phase_command(phase: Phase) -> &'static str {
    match phase {
        Phase::Mid => "mid-train",
        Phase::Sft => "chat-sft",
        Phase::Base => "base-train",
        Phase::Rl => "chat-rl",
    }
}
