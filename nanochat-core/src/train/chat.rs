//! Mid-training and SFT (nanochat's `scripts/mid_train.py` and `scripts/chat_sft.py`) set up
//! from their settings and the model they start from: a shuffled [`TaskMixture`] of the tasks
//! with its last 5% held out, rendered conversations packed into a stream (mid) or one per
//! padded row (SFT), what the run reads of them, and a [`Trainer`] fresh or resumed. The
//! `nanochat mid-train` / `chat-sft` commands fill [`ChatTrainOptions`] from their flags, load
//! the [`ChatSource`], run [`ChatRun::trainer`] with a progress display, and print
//! [`ChatRun::summary`].

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;

use super::{RunOutcome, TrainConfig, Trainer};
use crate::checkpoint::{checkpoint_dir, tokenizer_for, LoadedModel, Meta, Phase};
use crate::data::{conversation_usage, unused_warning, Batch, DataLoader, Packing};
use crate::model::Architecture;
use crate::optim::{LrSchedule, OptimConfig, OptimSettings, Schedules};
use crate::paths::Paths;
use crate::recipe::{check_recipe, SftSchedule};
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
    /// `--recipe`: must be the source model's (the recipe follows the checkpoint); `None`:
    /// not given.
    pub recipe: Option<Architecture>,
    /// Optimizer steps (`--total-steps`, `--num-iterations`). `None`: v1 [`DEFAULT_CHAT_STEPS`],
    /// HEAD one pass over the training conversations.
    pub total_steps: Option<u64>,
    /// v1: peak Muon learning rate (the AdamW rates scale with it).
    pub lr: f32,
    /// Rows per micro-batch (`None`: v1 4, HEAD the base run's).
    pub batch_size: Option<usize>,
    /// Tokens per row (`None`: v1 the model's block_size, HEAD the base run's; never more than
    /// the block_size).
    pub seq_len: Option<usize>,
    /// Tokens per optimizer step (`None`: v1 one micro-batch, HEAD the base run's).
    pub total_batch_size: Option<usize>,
    /// Compute dtype (bf16: mixed precision over f32 master weights).
    pub dtype: DType,
    /// Checkpoint folder name (`None`: the source model's tag).
    pub model_tag: Option<String>,
    /// Validation every N steps (and at the end); 0: only at the end.
    pub eval_every: u64,
    /// Validation tokens per evaluation, in whole batches (`None`: as many batches as the
    /// held-out conversations fill, at most 8).
    pub eval_tokens: Option<usize>,
    /// Checkpoint every N steps (and at the end); 0: only at the end.
    pub save_every: u64,
    /// Continue the run saved at this step.
    pub resume_from_step: Option<u64>,
    /// Shuffle seed of the task mixture.
    pub seed: u64,
    /// What only HEAD's SFT reads.
    pub head: HeadSftOptions,
}

/// Optimizer steps of a v1 fine-tuning run when none are given.
pub const DEFAULT_CHAT_STEPS: u64 = 100;

/// The settings only HEAD's SFT reads (`scripts/chat_sft.py` at 92d63d4; its defaults). The
/// rates default to the base run's (`None`: inherited).
#[derive(Clone, Debug, PartialEq)]
pub struct HeadSftOptions {
    /// `--embedding-lr` (inherited; HEAD's fallback 0.3).
    pub embedding_lr: Option<f64>,
    /// `--unembedding-lr` (inherited; fallback 0.004).
    pub unembedding_lr: Option<f64>,
    /// `--matrix-lr` (inherited; fallback 0.02).
    pub matrix_lr: Option<f64>,
    /// `--init-lr-frac`, `--warmup-ratio`, `--warmdown-ratio`, `--final-lr-frac` (0.8, 0, 0.5,
    /// 0).
    pub schedule: SftSchedule,
    /// `--load-optimizer`: warm-start the optimizer from the source checkpoint's state.
    pub load_optimizer: bool,
}

impl Default for HeadSftOptions {
    fn default() -> Self {
        HeadSftOptions {
            embedding_lr: None,
            unembedding_lr: None,
            matrix_lr: None,
            schedule: SftSchedule::default(),
            load_optimizer: true,
        }
    }
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
    /// That folder (HEAD's SFT warm-starts its optimizer from the state saved there).
    pub dir: PathBuf,
}

impl ChatSource {
    /// The source of a model loaded from its phase's folder `tag`
    /// ([`crate::checkpoint::load_source`]).
    pub fn from_loaded(l: LoadedModel, tag: String) -> ChatSource {
        ChatSource {
            dir: checkpoint_dir(&l.root, l.phase, &tag),
            model: l.model,
            tokenizer: l.tokenizer,
            meta: l.meta,
            phase: l.phase,
            tag,
        }
    }
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
    /// Builds the task mixture (shuffled by `seed`, the last 5% held out) and the run of the
    /// source model's recipe, which `--recipe` may name but not change:
    ///
    /// - v1: the conversation loaders (packed for [`Phase::Mid`], padded rows for
    ///   [`Phase::Sft`]), the conversations accounted for ([`account_conversations`]), at most 8
    ///   validation batches, AdamW + Muon at `lr` with [`LrSchedule`];
    /// - HEAD ([`Phase::Sft`] only): `scripts/chat_sft.py`'s run (inherited batch and rates,
    ///   `MuonAdamW` warm-started from the source's state, [`crate::data::SftLoader`]; the
    ///   README's "Fine-tuning a HEAD model").
    ///
    /// The [`Trainer`] is resumed from `resume_from_step`, else fresh from the source model (its
    /// dropout RNG reset to 0). Checkpoints go under `paths.model_root`; each line of accounting
    /// and every warning goes to `notes`. Errors: the tasks' ([`training_task`]),
    /// [`CoreError::InvalidArgument`] (a contradicting `--recipe`, fewer than two
    /// conversations, `seq_len` above the model's block_size, the total batch size),
    /// [`CoreError::Unsupported`] (mid-training a HEAD model), the data's and [`Trainer`]'s.
    pub fn prepare(
        opts: &ChatTrainOptions,
        phase: Phase,
        source: ChatSource,
        paths: &Paths,
        device: &Device,
        notes: &mut dyn FnMut(String),
    ) -> Result<ChatRun> {
        let arch = source.model.config().architecture;
        let what = format!(
            "{} model `{}` step {}",
            source.phase.name(),
            source.tag,
            source.meta.step
        );
        check_recipe(phase.command(), opts.recipe, arch, &what)?;
        refuse_head(&source.model, phase)?;
        let tag = opts.model_tag.clone().unwrap_or_else(|| source.tag.clone());
        if let Some(step) = opts.resume_from_step {
            // A missing step is named (with the steps there are), and a nanochat run refused,
            // before any data is read.
            let dir = checkpoint_dir(&paths.model_root, phase, &tag);
            let meta = crate::checkpoint::read_meta(&dir, step)?;
            crate::checkpoint::nanochat::refuse_resume(&meta, &dir)?;
        }
        let split = SplitTasks::new(opts)?;
        let from = (source.phase, source.tag.clone(), source.meta.step);
        let trainer = match arch {
            Architecture::V1 => {
                prepare_v1(opts, phase, source, &split, &tag, paths, device, notes)?
            }
            Architecture::Head => {
                super::chat_head::prepare(opts, source, &split, &tag, paths, device, notes)?
            }
        };
        Ok(ChatRun {
            trainer,
            tag,
            phase,
            source: from,
            train_conversations: split.n_train,
            val_conversations: split.n_val,
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

/// The task mixture of a fine-tuning run, shuffled by its seed, with the last 5% (at least one
/// conversation) held out for validation.
pub(crate) struct SplitTasks {
    /// The task names (each occurrence; a repeat oversamples).
    pub names: Vec<String>,
    /// The training conversations.
    pub train: Arc<dyn Task>,
    /// The held-out conversations.
    pub val: Arc<dyn Task>,
    /// How many train on.
    pub n_train: usize,
    /// How many are held out.
    pub n_val: usize,
}

impl SplitTasks {
    /// The mixture of `opts.tasks` ([`DEFAULT_TASKS`] when empty). Errors: the tasks'
    /// ([`training_task`]), [`CoreError::InvalidArgument`] for fewer than two conversations.
    fn new(opts: &ChatTrainOptions) -> Result<SplitTasks> {
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
        let n = mixture.num_examples();
        let n_val = (n / 20).max(1);
        if n < 2 {
            return Err(CoreError::invalid(
                "tasks",
                format!("{names:?} ({n} conversations)"),
                "at least two conversations",
            ));
        }
        Ok(SplitTasks {
            names,
            train: Arc::new(TaskSlice::new(mixture.clone(), 0, Some(n - n_val), 1)?),
            val: Arc::new(TaskSlice::new(mixture, n - n_val, None, 1)?),
            n_train: n - n_val,
            n_val,
        })
    }
}

/// `seq_len`, or the model's block_size, checked against it. Errors:
/// [`CoreError::InvalidArgument`] naming `--seq-len`.
pub(crate) fn row_tokens(seq_len: Option<usize>, model: &GPT) -> Result<usize> {
    let block_size = model.config().block_size;
    let t = seq_len.unwrap_or(block_size);
    if t > block_size || t == 0 {
        return Err(CoreError::invalid(
            "--seq-len",
            t,
            format!("at least 1 and at most the model's block_size {block_size}"),
        ));
    }
    Ok(t)
}

/// v1's mid-training or SFT trainer (see [`ChatRun::prepare`]).
#[allow(clippy::too_many_arguments)]
fn prepare_v1(
    opts: &ChatTrainOptions,
    phase: Phase,
    source: ChatSource,
    split: &SplitTasks,
    tag: &str,
    paths: &Paths,
    device: &Device,
    notes: &mut dyn FnMut(String),
) -> Result<Trainer> {
    let ChatSource {
        model,
        tokenizer,
        meta,
        phase: source_phase,
        tag: source_tag,
        ..
    } = source;
    let t = row_tokens(opts.seq_len, &model)?;
    let b = opts.batch_size.unwrap_or(4);
    let total_steps = opts.total_steps.unwrap_or(DEFAULT_CHAT_STEPS);
    let packing = if phase == Phase::Sft {
        Packing::Padded
    } else {
        Packing::Packed
    };
    let val_batches = match opts.eval_tokens {
        Some(tokens) => (tokens / (b * t)).max(1),
        None => split.n_val.div_ceil(b).clamp(1, 8),
    };
    let reads = ConversationReads {
        batch_size: b,
        seq_len: t,
        total_batch_size: opts.total_batch_size,
        total_steps,
        val_batches,
    };
    account_conversations(&reads, &split.train, &split.val, &tokenizer, packing, notes)?;
    let train = DataLoader::conversations(split.train.clone(), packing, tokenizer.clone(), b, t)?;
    let mut val_loader =
        DataLoader::conversations(split.val.clone(), packing, tokenizer.clone(), b, t)?;
    let val: Vec<Batch> = (0..val_batches)
        .map(|_| val_loader.next_batch())
        .collect::<Result<_>>()?;
    let cfg = TrainConfig {
        phase,
        root: paths.model_root.clone(),
        model_tag: tag.to_string(),
        batch_size: b,
        seq_len: t,
        total_batch_size: opts.total_batch_size.unwrap_or(b * t),
        total_steps,
        optim: OptimSettings::V1(OptimConfig::with_peak_lr(opts.lr)),
        schedule: Schedules::V1(LrSchedule::new(total_steps as usize)),
        eval_every: opts.eval_every,
        save_every: opts.save_every,
        sample_prompts: vec![],
        tokenizer_path: tokenizer_for(paths, &meta),
        tokenizer_record: meta.tokenizer_path.clone(),
        compute_dtype: opts.dtype,
        run: json!({
            "command": phase.command(), "recipe": "v1", "tasks": split.names,
            "source": {"phase": source_phase.name(), "tag": source_tag, "step": meta.step},
            "batch_size": b, "seq_len": t, "total_steps": total_steps, "lr": opts.lr,
            "device": device.to_string(),
        }),
    };
    match opts.resume_from_step {
        Some(step) => Trainer::resume(step, device, tokenizer, Box::new(train), val, cfg),
        None => {
            model.set_rng_state(0);
            Trainer::new(model, tokenizer, Box::new(train), val, cfg)
        }
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

/// nanochat HEAD has no mid-training (its `scripts/chat_sft.py` fine-tunes the base model
/// directly), so mid-training a HEAD model is refused. Errors: [`CoreError::Unsupported`] for
/// [`Phase::Mid`] on a HEAD model.
pub fn refuse_head(model: &GPT, phase: Phase) -> Result<()> {
    if model.config().architecture != Architecture::Head || phase != Phase::Mid {
        return Ok(());
    }
    Err(CoreError::Unsupported {
        op: "mid-train",
        why: "this is a nanochat HEAD model, and HEAD has no mid-training: its chat_sft.py fine-tunes the base model directly (run chat-sft)".into(),
    })
}
