//! `nanochat base-train`: pretrains a GPT on the bundled corpus (default) or given text, JSONL or
//! parquet files, with nanochat's optimizers and schedule; a progress bar with loss, tokens/s and
//! MFU; validation bits per byte and greedy samples at intervals; checkpoints and
//! `metrics.jsonl` under `$NANOCHAT_MODEL_DIR/base_checkpoints/<model_tag>/`. Each input's
//! documents, characters and share used go to stderr and the summary, with a warning naming
//! `--total-steps` or `--eval-tokens` when the run leaves more than 1% of its text unused.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use nanochat_core::checkpoint::Phase;
use nanochat_core::data::{
    bundled_documents, split_train_val, unused_warning, Batch, DataLoader, Source, SourceUsage,
};
use nanochat_core::model::{GPTConfig, ModelSize, GPT};
use nanochat_core::optim::{LrSchedule, OptimConfig};
use nanochat_core::tokenizer::Tokenizer;
use nanochat_core::train::{TrainConfig, Trainer};
use nanochat_core::DType;
use serde_json::json;

use super::progress::TrainProgress;

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

/// The base model's config for the arguments and tokenizer.
fn model_config(args: &Args, vocab_size: usize) -> anyhow::Result<GPTConfig> {
    let depth = match (&args.model_size, args.depth) {
        (Some(s), _) => ModelSize::parse(s).expect("validated by clap").depth(),
        (None, Some(d)) => d,
        (None, None) => ModelSize::Tiny.depth(),
    };
    let c = GPTConfig::from_depth(depth, vocab_size, args.seq_len);
    c.validate()?;
    Ok(c)
}

/// Prints each input's documents, characters and the share of them the run reads (training:
/// `--total-steps` x the tokens per step; validation: `--eval-tokens`, rounded up to whole
/// batches), warns naming the flag when either leaves more than 1% of its text unused, and
/// returns the same per input for the summary. `labels`: the training inputs, then validation.
fn account_inputs(
    args: &Args,
    labels: &[String],
    train: &mut DataLoader,
    val: &mut DataLoader,
    n_val_batches: usize,
) -> anyhow::Result<serde_json::Value> {
    let (b, t) = (args.batch_size, args.seq_len);
    let per_step = args.total_batch_size.unwrap_or(b * t);
    let train_tokens = (args.total_steps as usize).saturating_mul(per_step);
    let train_use = train.source_usage(train_tokens.saturating_add(1))?;
    let val_use = val.source_usage(n_val_batches * b * t + 1)?;
    let mut rows = Vec::new();
    for (role, usage, labels) in [
        ("training", &train_use, &labels[..labels.len() - 1]),
        ("validation", &val_use, &labels[labels.len() - 1..]),
    ] {
        for (u, label) in usage.iter().zip(labels) {
            eprintln!(
                "base-train {role} input {label}: {} documents, {} characters, {:.1}% used",
                u.documents,
                u.chars,
                100.0 * u.share_used()
            );
            rows.push(
                json!({"input": label, "role": role, "documents": u.documents,
                "chars": u.chars, "used_chars": u.used_chars(), "share_used": u.share_used()}),
            );
        }
    }
    let total = |u: &[SourceUsage]| -> (usize, usize) {
        let chars = u.iter().map(|s| s.chars).sum::<usize>();
        (
            chars,
            chars - u.iter().map(SourceUsage::used_chars).sum::<usize>(),
        )
    };
    let (chars, unused) = total(&train_use);
    let cause = format!("--total-steps {} of {per_step} tokens", args.total_steps);
    let remedy = "raise --total-steps to train on all of it";
    let warn_train = unused_warning(chars, unused, "training characters", &cause, remedy);
    let (chars, unused) = total(&val_use);
    let cause = format!("--eval-tokens {}", args.eval_tokens);
    let remedy = "raise --eval-tokens to measure on all of it";
    let warn_val = unused_warning(chars, unused, "validation characters", &cause, remedy);
    for w in [warn_train, warn_val].into_iter().flatten() {
        eprintln!("{w}");
    }
    Ok(json!(rows))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let device = args.device.open()?;
    let dtype = DType::from(args.dtype);
    let paths = super::paths()?;
    let tok_dir = paths.tokenizer_dir_or(args.tokenizer.as_deref());
    let tokenizer = Tokenizer::from_pretrained(&tok_dir)
        .with_context(|| format!("loading the tokenizer from {}", tok_dir.display()))?;
    let config = model_config(&args, tokenizer.vocab_size())?;
    let tag = args
        .model_tag
        .clone()
        .unwrap_or_else(|| format!("d{}", config.n_layer));

    // Data: the bundled corpus split 95/5, or the files with the last one as validation.
    let (train_sources, val_docs_source, labels) = if args.input.is_empty() {
        let (train, val) = split_train_val(bundled_documents()?, 0.95, 0.05)?;
        (
            vec![Source::Docs(Arc::new(train))],
            Source::Docs(Arc::new(val)),
            vec![
                "bundled corpus (its first 95%)".to_string(),
                "bundled corpus (its last 5%)".into(),
            ],
        )
    } else if args.input.len() == 1 {
        bail!("give at least two --input files: the last one is the validation split");
    } else {
        let (val, train) = args.input.split_last().expect("two or more");
        (
            train.iter().cloned().map(Source::File).collect(),
            Source::File(val.clone()),
            args.input.iter().map(|p| p.display().to_string()).collect(),
        )
    };
    let (b, t) = (args.batch_size, args.seq_len);
    let mut train = DataLoader::new(train_sources, tokenizer.clone(), b, t)?;
    let mut val_loader = DataLoader::new(vec![val_docs_source], tokenizer.clone(), b, t)?;
    let n_val = args.eval_tokens.div_ceil(b * t).max(1);
    let inputs = account_inputs(&args, &labels, &mut train, &mut val_loader, n_val)?;
    let val: Vec<Batch> = (0..n_val)
        .map(|_| val_loader.next_batch())
        .collect::<nanochat_core::Result<_>>()?;

    let cfg = TrainConfig {
        phase: Phase::Base,
        root: paths.model_root.clone(),
        model_tag: tag.clone(),
        batch_size: b,
        seq_len: t,
        total_batch_size: args.total_batch_size.unwrap_or(b * t),
        total_steps: args.total_steps,
        optim: OptimConfig::with_peak_lr(args.lr),
        schedule: LrSchedule {
            total_steps: args.total_steps as usize,
            warmup_ratio: args.warmup_ratio,
            warmdown_ratio: args.warmdown_ratio,
            final_lr_frac: args.final_lr_frac,
        },
        eval_every: args.eval_every,
        save_every: args.save_every,
        sample_prompts: vec![
            "Call me".into(),
            "To be, or not to be".into(),
            "The whale".into(),
        ],
        tokenizer_record: paths.record_tokenizer(&tok_dir),
        tokenizer_path: tok_dir.clone(),
        compute_dtype: dtype,
        run: json!({
            "command": "base-train", "depth": config.n_layer, "batch_size": b, "seq_len": t,
            "total_batch_size": args.total_batch_size.unwrap_or(b * t), "total_steps": args.total_steps,
            "lr": args.lr, "dtype": dtype.name(), "device": device.to_string(), "seed": args.seed,
            "inputs": args.input.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        }),
    };
    let mut trainer = match args.resume_from_step {
        Some(step) => Trainer::resume(step, &device, tokenizer, Box::new(train), val, cfg)
            .with_context(|| format!("resuming base model `{tag}` from step {step}"))?,
        // Master weights are f32; --dtype bfloat16 computes in bf16 over them.
        None => Trainer::new(
            GPT::new(config, &device, DType::F32, args.seed)?,
            tokenizer,
            Box::new(train),
            val,
            cfg,
        )?,
    };
    eprintln!(
        "base-train {tag}: {} parameters, {} layers x {} wide, vocab {}, {} steps of {} tokens on {device} -> {}",
        trainer.model.num_params(),
        trainer.model.config().n_layer,
        trainer.model.config().n_embd,
        trainer.model.config().vocab_size,
        args.total_steps,
        trainer.cfg.total_batch_size,
        trainer.cfg.checkpoint_dir().display()
    );
    let mut progress = TrainProgress::new(args.total_steps, trainer.step, args.quiet);
    let val_bpb = trainer.run(&mut |e| progress.event(e))?;
    progress.finish();
    let summary = json!({
        "model_tag": tag,
        "step": trainer.step,
        "val_bpb": val_bpb,
        "checkpoint_dir": trainer.cfg.checkpoint_dir().display().to_string(),
        "metrics": trainer.cfg.checkpoint_dir().join("metrics.jsonl").display().to_string(),
        "mean_tokens_per_s": progress.mean_tokens_per_s(),
        "inputs": inputs,
    });
    super::report_stage(
        "base-train",
        json!({"checkpoint_dir": summary["checkpoint_dir"], "model_tag": tag, "parameters": trainer.model.num_params(),
            "run": trainer.cfg.run}),
        json!({"steps": trainer.step, "val_bpb": val_bpb, "tokens_per_s": progress.mean_tokens_per_s(),
            "wall_s": started.elapsed().as_secs_f64()}),
    );
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(ExitCode::SUCCESS)
}
