//! Mid-training and SFT (nanochat's `scripts/mid_train.py` and `scripts/chat_sft.py`) set up
//! from their settings and the model they start from: a shuffled [`TaskMixture`] of the tasks
//! with its last 5% held out, rendered conversations packed into a stream (mid) or one per
//! padded row (SFT), what the run reads of them, and a [`Trainer`] fresh or resumed. The
//! `nanochat mid-train` / `chat-sft` commands fill [`ChatTrainOptions`] from their flags, load
//! the [`ChatSource`], run [`ChatRun::trainer`] with a progress display, and print
//! [`ChatRun::summary`].

use std::sync::Arc;

use serde_json::json;

use super::{RunOutcome, TrainConfig, Trainer};
use crate::checkpoint::{tokenizer_for, Meta, Phase};
use crate::data::{conversation_usage, unused_warning, Batch, DataLoader, Packing};
use crate::optim::{LrSchedule, OptimConfig, OptimSettings, Schedules};
use crate::paths::Paths;
use crate::tasks::{training_task, Task, TaskMixture, TaskSlice};
use crate::tokenizer::Tokenizer;
use crate::{CoreError, DType, Device, Result, GPT};

/// The training tasks when none are given: every conversation set, identity twice
/// (oversampled).
pub const DEFAULT_TASKS: [&str; 7] = [
    "chitchat",
    "chatterbot",
    "identity",
    "identity",
    "spelling-bee",
    "simple-spelling",
    "arithmetic",
];

/// The settings of a mid-training or SFT run (the flags of `nanochat mid-train` / `chat-sft`).
#[derive(Clone, Debug, PartialEq)]
pub struct ChatTrainOptions {
    /// Training task names ([`training_task`]: a set's name or a `.jsonl` file); a name given
    /// twice is oversampled. Empty: [`DEFAULT_TASKS`].
    pub tasks: Vec<String>,
    /// Optimizer steps.
    pub total_steps: u64,
    /// Peak Muon learning rate (the AdamW rates scale with it).
    pub lr: f32,
    /// Rows per micro-batch.
    pub batch_size: usize,
    /// Tokens per row (`None`: the model's block_size; never more).
    pub seq_len: Option<usize>,
    /// Tokens per optimizer step (`None`: one micro-batch).
    pub total_batch_size: Option<usize>,
    /// Compute dtype (bf16: mixed precision over f32 master weights).
    pub dtype: DType,
    /// Checkpoint folder name (`None`: the source model's tag).
    pub model_tag: Option<String>,
    /// Validation every N steps (and at the end); 0: only at the end.
    pub eval_every: u64,
    /// Checkpoint every N steps (and at the end); 0: only at the end.
    pub save_every: u64,
    /// Continue the run saved at this step.
    pub resume_from_step: Option<u64>,
    /// Shuffle seed of the task mixture.
    pub seed: u64,
}

/// The model a fine-tuning run starts from, as loaded from its checkpoint.
pub struct ChatSource {
    /// The loaded model.
    pub model: GPT,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// Its checkpoint's meta.
    pub meta: Meta,
    /// The phase it was trained in (base, mid, sft).
    pub phase: Phase,
    /// Its tag (the folder its checkpoint was found in).
    pub tag: String,
}

/// A mid-training or SFT run ready to train ([`ChatRun::prepare`]).
pub struct ChatRun {
    /// The trainer, at step 0 or at the resumed step.
    pub trainer: Trainer,
    /// The checkpoint folder's name.
    pub tag: String,
    /// The phase trained (mid or sft).
    pub phase: Phase,
    /// Where the run started: the source's phase, tag and step.
    pub source: (Phase, String, u64),
    /// Conversations trained on.
    pub train_conversations: usize,
    /// Conversations held out for validation (the last 5% of the mixture, at least one).
    pub val_conversations: usize,
}

impl ChatRun {
    /// Builds the task mixture (shuffled by `seed`, the last 5% held out), the conversation
    /// loaders (packed for [`Phase::Mid`], padded rows for [`Phase::Sft`]), accounts for the
    /// conversations (each line, warnings included, goes to `notes`; [`account_conversations`]),
    /// reads at most 8 validation batches and sets up the [`Trainer`] of `phase`: resumed from
    /// `resume_from_step`, else fresh from the source model (its dropout RNG reset to 0).
    /// Checkpoints go under `paths.model_root`. Errors: the tasks' ([`training_task`]),
    /// [`CoreError::InvalidArgument`] (fewer than two conversations, `seq_len` above the
    /// model's block_size, the total batch size), the data's and [`Trainer`]'s.
    pub fn prepare(
        opts: &ChatTrainOptions,
        phase: Phase,
        source: ChatSource,
        paths: &Paths,
        device: &Device,
        notes: &mut dyn FnMut(String),
    ) -> Result<ChatRun> {
        let ChatSource {
            model,
            tokenizer,
            meta,
            phase: source_phase,
            tag: source_tag,
        } = source;
        refuse_head(&model, phase)?;
        let tag = opts.model_tag.clone().unwrap_or_else(|| source_tag.clone());
        let names: Vec<String> = if opts.tasks.is_empty() {
            DEFAULT_TASKS.iter().map(|s| s.to_string()).collect()
        } else {
            opts.tasks.clone()
        };
        let tasks = names
            .iter()
            .map(|n| training_task(n))
            .collect::<Result<Vec<Arc<dyn Task>>>>()?;
        let mixture: Arc<dyn Task> = Arc::new(TaskMixture::new(tasks, opts.seed));
        // The last 5% of the shuffled mixture is held out for validation.
        let n = mixture.num_examples();
        let n_val = (n / 20).max(1);
        if n < 2 {
            return Err(CoreError::invalid(
                "tasks",
                format!("{names:?} ({n} conversations)"),
                "at least two conversations",
            ));
        }
        let train_task: Arc<dyn Task> =
            Arc::new(TaskSlice::new(mixture.clone(), 0, Some(n - n_val), 1)?);
        let val_task: Arc<dyn Task> = Arc::new(TaskSlice::new(mixture, n - n_val, None, 1)?);
        let block_size = model.config().block_size;
        let t = opts.seq_len.unwrap_or(block_size);
        if t > block_size {
            return Err(CoreError::invalid(
                "--seq-len",
                t,
                format!("at most the model's block_size {block_size}"),
            ));
        }
        let b = opts.batch_size;
        let packing = if phase == Phase::Sft {
            Packing::Padded
        } else {
            Packing::Packed
        };
        let val_batches = n_val.div_ceil(b).clamp(1, 8);
        let reads = ConversationReads {
            batch_size: b,
            seq_len: t,
            total_batch_size: opts.total_batch_size,
            total_steps: opts.total_steps,
            val_batches,
        };
        account_conversations(&reads, &train_task, &val_task, &tokenizer, packing, notes)?;
        let train = DataLoader::conversations(train_task, packing, tokenizer.clone(), b, t)?;
        let mut val_loader = DataLoader::conversations(val_task, packing, tokenizer.clone(), b, t)?;
        let val: Vec<Batch> = (0..val_batches)
            .map(|_| val_loader.next_batch())
            .collect::<Result<_>>()?;
        let cfg = TrainConfig {
            phase,
            root: paths.model_root.clone(),
            model_tag: tag.clone(),
            batch_size: b,
            seq_len: t,
            total_batch_size: opts.total_batch_size.unwrap_or(b * t),
            total_steps: opts.total_steps,
            optim: OptimSettings::V1(OptimConfig::with_peak_lr(opts.lr)),
            schedule: Schedules::V1(LrSchedule::new(opts.total_steps as usize)),
            eval_every: opts.eval_every,
            save_every: opts.save_every,
            sample_prompts: vec![],
            tokenizer_path: tokenizer_for(paths, &meta),
            tokenizer_record: meta.tokenizer_path.clone(),
            compute_dtype: opts.dtype,
            run: json!({
                "command": phase.command(), "tasks": names,
                "source": {"phase": source_phase.name(), "tag": source_tag, "step": meta.step},
                "batch_size": b, "seq_len": t, "total_steps": opts.total_steps, "lr": opts.lr,
                "device": device.to_string(),
            }),
        };
        let trainer = match opts.resume_from_step {
            Some(step) => Trainer::resume(step, device, tokenizer, Box::new(train), val, cfg)?,
            None => {
                model.set_rng_state(0);
                Trainer::new(model, tokenizer, Box::new(train), val, cfg)?
            }
        };
        Ok(ChatRun {
            trainer,
            tag,
            phase,
            source: (source_phase, source_tag, meta.step),
            train_conversations: n - n_val,
            val_conversations: n_val,
        })
    }

    /// The line the command prints before training: source model, conversations, steps and
    /// device.
    pub fn describe(&self) -> String {
        let cfg = &self.trainer.cfg;
        format!(
            "{} {}: from {} model `{}` step {}, {} conversations ({} held out), {} steps of {} tokens on {}",
            self.phase.command(),
            self.tag,
            self.source.0.name(),
            self.source.1,
            self.source.2,
            self.train_conversations,
            self.val_conversations,
            cfg.total_steps,
            cfg.total_batch_size,
            self.trainer.model.get_device()
        )
    }

    /// The run's summary (printed as JSON on stdout): phase, tag, step, validation bpb,
    /// checkpoint folder, mean tokens/s and rows without a supervised token.
    pub fn summary(&self, outcome: &RunOutcome) -> serde_json::Value {
        json!({
            "phase": self.phase.name(), "model_tag": self.tag, "step": self.trainer.step,
            "val_bpb": outcome.val_bpb,
            "checkpoint_dir": self.trainer.cfg.checkpoint_dir().display().to_string(),
            "mean_tokens_per_s": outcome.mean_tokens_per_s, "masked_rows": outcome.masked_rows,
        })
    }

    /// The report stage of the run (named [`Phase::command`]), as `(settings, results)`.
    pub fn report(&self, outcome: &RunOutcome) -> (serde_json::Value, serde_json::Value) {
        let t = &self.trainer;
        (
            json!({"checkpoint_dir": t.cfg.checkpoint_dir(), "model_tag": self.tag, "run": t.cfg.run}),
            json!({"steps": t.step, "val_bpb": outcome.val_bpb, "tokens_per_s": outcome.mean_tokens_per_s,
                "masked_rows": outcome.masked_rows, "wall_s": outcome.wall_s}),
        )
    }
}

/// How much of the conversations a fine-tuning run reads ([`account_conversations`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConversationReads {
    /// Rows per micro-batch.
    pub batch_size: usize,
    /// Tokens per row.
    pub seq_len: usize,
    /// Tokens per optimizer step (`None`: one micro-batch).
    pub total_batch_size: Option<usize>,
    /// Optimizer steps.
    pub total_steps: u64,
    /// Validation batches read (at most 8).
    pub val_batches: usize,
}

/// Counts what the run reads of the training and validation conversations (rendered whole):
/// the tokens `--seq-len` truncates, and those `--total-steps` (training) or the at most 8
/// validation batches of `--batch-size` rows never reach. A line per role goes to `notes`, and
/// a warning naming the flag ([`unused_warning`]) when either leaves more than 1% of the tokens
/// unused. Errors: rendering a conversation ([`conversation_usage`]).
pub fn account_conversations(
    reads: &ConversationReads,
    train: &Arc<dyn Task>,
    val: &Arc<dyn Task>,
    tokenizer: &Tokenizer,
    packing: Packing,
    notes: &mut dyn FnMut(String),
) -> Result<()> {
    let (b, t) = (reads.batch_size, reads.seq_len);
    let accum = (reads.total_batch_size.unwrap_or(b * t) / (b * t)).max(1);
    let steps = reads.total_steps as usize;
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
            reads.val_batches,
            format!("--batch-size {b} (validation reads at most 8 batches)"),
            "raise --batch-size to measure on more",
        ),
    ] {
        let u = conversation_usage(task.as_ref(), tokenizer, packing, b, t, micro_batches)?;
        notes(format!(
            "{role} conversations: {}, {} tokens; {} read, {} cut by --seq-len {t}, {} not reached",
            u.conversations,
            u.tokens,
            u.used_tokens,
            u.truncated_tokens,
            u.unread_tokens()
        ));
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
                notes(w);
            }
        }
    }
    Ok(())
}

/// HEAD models are not fine-tuned with v1's recipe: nanochat HEAD has no mid-training (its
/// `scripts/chat_sft.py` fine-tunes the base model directly), and HEAD's SFT recipe
/// (`MuonAdamW` warm-started from the base run's optimizer state, its schedule and best-fit
/// packing) is not wired into `chat-sft` yet. Errors: [`CoreError::Unsupported`] saying which.
pub fn refuse_head(model: &GPT, phase: Phase) -> Result<()> {
    if model.config().architecture != crate::model::Architecture::Head {
        return Ok(());
    }
    Err(match phase {
        Phase::Mid => CoreError::Unsupported {
            op: "mid-train",
            why: "this is a nanochat HEAD model, and HEAD has no mid-training: its chat_sft.py fine-tunes the base model directly".into(),
        },
        _ => CoreError::Unsupported {
            op: "chat-sft",
            why: "this is a nanochat HEAD model, whose SFT recipe (MuonAdamW warm-started from the base run's optimizer state) is not in nanochat-rs yet; fine-tuning it with v1's optimizer would be a different recipe".into(),
        },
    })
}
