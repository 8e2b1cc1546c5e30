//! Base training (nanochat's `scripts/base_train.py`) set up from its settings: the tokenizer,
//! the model config, the data (the bundled corpus split 95/5, or files with the last one for
//! validation), what the run reads of each input, and a [`Trainer`] fresh or resumed. The
//! `nanochat base-train` command fills [`BaseTrainOptions`] from its flags, runs
//! [`BaseRun::trainer`] with a progress display, and prints [`BaseRun::summary`].

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;

use super::{RunOutcome, TrainConfig, Trainer};
use crate::checkpoint::Phase;
use crate::data::{
    bundled_documents, split_train_val, unused_warning, Batch, DataLoader, Source, SourceUsage,
};
use crate::model::{GPTConfig, ModelSize, GPT};
use crate::optim::{LrSchedule, OptimConfig};
use crate::paths::Paths;
use crate::tokenizer::Tokenizer;
use crate::{CoreError, DType, Device, Result};

/// The settings of a base-training run (the flags of `nanochat base-train`, nanochat's
/// `scripts/base_train.py` arguments).
#[derive(Clone, Debug, PartialEq)]
pub struct BaseTrainOptions {
    /// Model size preset; wins over `depth`.
    pub model_size: Option<ModelSize>,
    /// Depth (n_layer); n_embd = 64 x depth. Neither this nor `model_size`: the tiny preset.
    pub depth: Option<usize>,
    /// Rows per micro-batch.
    pub batch_size: usize,
    /// Tokens per optimizer step (`None`: one micro-batch, `batch_size` x `seq_len`).
    pub total_batch_size: Option<usize>,
    /// Optimizer steps.
    pub total_steps: u64,
    /// Peak Muon learning rate (the AdamW rates scale by the same factor).
    pub lr: f32,
    /// Tokens per row, also the model's block_size.
    pub seq_len: usize,
    /// Compute dtype (bf16: mixed precision over f32 master weights).
    pub dtype: DType,
    /// Checkpoint folder name (`None`: `d<depth>`).
    pub model_tag: Option<String>,
    /// Validation every N steps (and at the end); 0: only at the end.
    pub eval_every: u64,
    /// Validation tokens per evaluation (rounded up to whole batches).
    pub eval_tokens: usize,
    /// Checkpoint every N steps (and at the end); 0: only at the end.
    pub save_every: u64,
    /// Continue the run saved at this step.
    pub resume_from_step: Option<u64>,
    /// Training files, the last one for validation; empty: the bundled corpus.
    pub inputs: Vec<PathBuf>,
    /// Tokenizer directory (`None`: [`Paths::tokenizer_dir`]).
    pub tokenizer: Option<PathBuf>,
    /// Seed of the initial weights.
    pub seed: u64,
    /// Warmup fraction of the steps.
    pub warmup_ratio: f64,
    /// Warmdown fraction of the steps (linear to `final_lr_frac`).
    pub warmdown_ratio: f64,
    /// Learning-rate multiplier at the end of the warmdown.
    pub final_lr_frac: f64,
}

impl BaseTrainOptions {
    /// The model's depth: the preset's, else `depth`, else the tiny preset's.
    pub fn resolved_depth(&self) -> usize {
        match (self.model_size, self.depth) {
            (Some(s), _) => s.depth(),
            (None, Some(d)) => d,
            (None, None) => ModelSize::Tiny.depth(),
        }
    }

    /// The base model's config for a tokenizer of `vocab_size` tokens
    /// ([`GPTConfig::from_depth`] at `seq_len`). Errors: [`CoreError::InvalidArgument`] naming
    /// the config field out of range.
    pub fn model_config(&self, vocab_size: usize) -> Result<GPTConfig> {
        let c = GPTConfig::from_depth(self.resolved_depth(), vocab_size, self.seq_len);
        c.validate()?;
        Ok(c)
    }

    /// Tokens per optimizer step: `total_batch_size`, else one micro-batch.
    pub fn tokens_per_step(&self) -> usize {
        self.total_batch_size
            .unwrap_or(self.batch_size * self.seq_len)
    }
}

/// A base-training run ready to train ([`BaseRun::prepare`]).
pub struct BaseRun {
    /// The trainer, at step 0 or at the resumed step.
    pub trainer: Trainer,
    /// The checkpoint folder's name.
    pub tag: String,
    /// Per input, what the run reads of it (`input`, `role`, `documents`, `chars`,
    /// `used_chars`, `share_used`), training inputs first ([`account_inputs`]).
    pub inputs: serde_json::Value,
}

impl BaseRun {
    /// Loads the tokenizer, builds the model config and the data loaders, accounts for the
    /// inputs (each line of that account, warnings included, goes to `notes`), reads the
    /// validation batches and sets up the [`Trainer`]: resumed from `resume_from_step`, else
    /// fresh with f32 master weights seeded by `seed`. Checkpoints go under
    /// `paths.model_root`. Errors: the tokenizer's, [`CoreError::InvalidArgument`] (one input
    /// file only, a config field, the total batch size), the data's and [`Trainer`]'s.
    pub fn prepare(
        opts: &BaseTrainOptions,
        paths: &Paths,
        device: &Device,
        notes: &mut dyn FnMut(String),
    ) -> Result<BaseRun> {
        let tok_dir = paths.tokenizer_dir_or(opts.tokenizer.as_deref());
        let tokenizer = Tokenizer::from_pretrained(&tok_dir)?;
        let config = opts.model_config(tokenizer.vocab_size())?;
        let tag = opts
            .model_tag
            .clone()
            .unwrap_or_else(|| format!("d{}", config.n_layer));
        let (train_sources, val_source, labels) = sources(&opts.inputs)?;
        let (b, t) = (opts.batch_size, opts.seq_len);
        let mut train = DataLoader::new(train_sources, tokenizer.clone(), b, t)?;
        let mut val_loader = DataLoader::new(vec![val_source], tokenizer.clone(), b, t)?;
        let n_val = opts.eval_tokens.div_ceil(b * t).max(1);
        let inputs = account_inputs(opts, &labels, &mut train, &mut val_loader, n_val, notes)?;
        let val: Vec<Batch> = (0..n_val)
            .map(|_| val_loader.next_batch())
            .collect::<Result<_>>()?;
        let cfg = TrainConfig {
            phase: Phase::Base,
            root: paths.model_root.clone(),
            model_tag: tag.clone(),
            batch_size: b,
            seq_len: t,
            total_batch_size: opts.tokens_per_step(),
            total_steps: opts.total_steps,
            optim: OptimConfig::with_peak_lr(opts.lr),
            schedule: LrSchedule {
                total_steps: opts.total_steps as usize,
                warmup_ratio: opts.warmup_ratio,
                warmdown_ratio: opts.warmdown_ratio,
                final_lr_frac: opts.final_lr_frac,
            },
            eval_every: opts.eval_every,
            save_every: opts.save_every,
            sample_prompts: vec![
                "Call me".into(),
                "To be, or not to be".into(),
                "The whale".into(),
            ],
            tokenizer_record: paths.record_tokenizer(&tok_dir),
            tokenizer_path: tok_dir.clone(),
            compute_dtype: opts.dtype,
            run: json!({
                "command": "base-train", "depth": config.n_layer, "batch_size": b, "seq_len": t,
                "total_batch_size": opts.tokens_per_step(), "total_steps": opts.total_steps,
                "lr": opts.lr, "dtype": opts.dtype.name(), "device": device.to_string(), "seed": opts.seed,
                "inputs": opts.inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            }),
        };
        let trainer = match opts.resume_from_step {
            Some(step) => Trainer::resume(step, device, tokenizer, Box::new(train), val, cfg)?,
            // Master weights are f32; a bf16 compute dtype computes in bf16 over them.
            None => Trainer::new(
                GPT::new(config, device, DType::F32, opts.seed)?,
                tokenizer,
                Box::new(train),
                val,
                cfg,
            )?,
        };
        Ok(BaseRun {
            trainer,
            tag,
            inputs,
        })
    }

    /// The line `nanochat base-train` prints before training: parameters, shape, steps,
    /// device and checkpoint folder.
    pub fn describe(&self) -> String {
        let (m, cfg) = (&self.trainer.model, &self.trainer.cfg);
        format!(
            "base-train {}: {} parameters, {} layers x {} wide, vocab {}, {} steps of {} tokens on {} -> {}",
            self.tag,
            m.num_params(),
            m.config().n_layer,
            m.config().n_embd,
            m.config().vocab_size,
            cfg.total_steps,
            cfg.total_batch_size,
            m.get_device(),
            cfg.checkpoint_dir().display()
        )
    }

    /// The run's summary (printed as JSON on stdout): tag, step, validation bpb, checkpoint
    /// folder and metrics file, mean tokens/s and the inputs' account.
    pub fn summary(&self, outcome: &RunOutcome) -> serde_json::Value {
        let dir = self.trainer.cfg.checkpoint_dir();
        json!({
            "model_tag": self.tag,
            "step": self.trainer.step,
            "val_bpb": outcome.val_bpb,
            "checkpoint_dir": dir.display().to_string(),
            "metrics": dir.join("metrics.jsonl").display().to_string(),
            "mean_tokens_per_s": outcome.mean_tokens_per_s,
            "inputs": self.inputs,
        })
    }

    /// The `base-train` stage of the report, as `(settings, results)`.
    pub fn report(&self, outcome: &RunOutcome) -> (serde_json::Value, serde_json::Value) {
        let t = &self.trainer;
        (
            json!({"checkpoint_dir": t.cfg.checkpoint_dir().display().to_string(), "model_tag": self.tag,
                "parameters": t.model.num_params(), "run": t.cfg.run}),
            json!({"steps": t.step, "val_bpb": outcome.val_bpb, "tokens_per_s": outcome.mean_tokens_per_s,
                "wall_s": outcome.wall_s}),
        )
    }
}

/// Training sources, the validation source and a label per input (training ones first): the
/// bundled corpus split 95/5 when `inputs` is empty, else the files with the last one for
/// validation. Errors: [`CoreError::InvalidArgument`] for a single file.
fn sources(inputs: &[PathBuf]) -> Result<(Vec<Source>, Source, Vec<String>)> {
    if inputs.is_empty() {
        let (train, val) = split_train_val(bundled_documents()?, 0.95, 0.05)?;
        return Ok((
            vec![Source::Docs(Arc::new(train))],
            Source::Docs(Arc::new(val)),
            vec![
                "bundled corpus (its first 95%)".to_string(),
                "bundled corpus (its last 5%)".into(),
            ],
        ));
    }
    let Some((val, train)) = inputs.split_last().filter(|(_, train)| !train.is_empty()) else {
        return Err(CoreError::invalid(
            "--input",
            "1 file",
            "at least two files: the last one is the validation split",
        ));
    };
    Ok((
        train.iter().cloned().map(Source::File).collect(),
        Source::File(val.clone()),
        inputs.iter().map(|p| p.display().to_string()).collect(),
    ))
}

/// What a base-training run reads of each input: documents, characters and the share used
/// (training: `total_steps` x the tokens per step; validation: `n_val_batches` batches, i.e.
/// `eval_tokens` rounded up to whole batches). Each input's line, and a warning naming the flag
/// when training or validation leaves more than 1% of its text unused
/// ([`unused_warning`]), go to `notes`. `labels`: the training inputs, then validation.
/// Returns a row per input for the summary.
pub fn account_inputs(
    opts: &BaseTrainOptions,
    labels: &[String],
    train: &mut DataLoader,
    val: &mut DataLoader,
    n_val_batches: usize,
    notes: &mut dyn FnMut(String),
) -> Result<serde_json::Value> {
    let (b, t) = (opts.batch_size, opts.seq_len);
    let per_step = opts.tokens_per_step();
    let train_tokens = (opts.total_steps as usize).saturating_mul(per_step);
    let train_use = train.source_usage(train_tokens.saturating_add(1))?;
    let val_use = val.source_usage(n_val_batches * b * t + 1)?;
    let mut rows = Vec::new();
    let split = labels.len().saturating_sub(1);
    for (role, usage, labels) in [
        ("training", &train_use, &labels[..split]),
        ("validation", &val_use, &labels[split..]),
    ] {
        for (u, label) in usage.iter().zip(labels) {
            notes(format!(
                "base-train {role} input {label}: {} documents, {} characters, {:.1}% used",
                u.documents,
                u.chars,
                100.0 * u.share_used()
            ));
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
    let cause = format!("--total-steps {} of {per_step} tokens", opts.total_steps);
    let remedy = "raise --total-steps to train on all of it";
    let warn_train = unused_warning(chars, unused, "training characters", &cause, remedy);
    let (chars, unused) = total(&val_use);
    let cause = format!("--eval-tokens {}", opts.eval_tokens);
    let remedy = "raise --eval-tokens to measure on all of it";
    let warn_val = unused_warning(chars, unused, "validation characters", &cause, remedy);
    for w in [warn_train, warn_val].into_iter().flatten() {
        notes(w);
    }
    Ok(json!(rows))
}
