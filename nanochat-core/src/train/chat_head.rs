//! nanochat HEAD's SFT run (`scripts/chat_sft.py` at 92d63d4), the `chat-sft` of a HEAD model:
//!
//! - **Inherited settings.** Rows per micro-batch, tokens per row and tokens per step come from
//!   the base run (HEAD's fallbacks 32, 2048 and 524288 when its checkpoint does not record
//!   them), and so do the embedding, unembedding and matrix rates: the base run's flag values
//!   before its batch scaling (fallbacks 0.3, 0.004, 0.02). The scalar rate stays 0.5. A flag
//!   overrides each, with a note.
//! - **Optimizer.** HEAD's `MuonAdamW` at those rates, every group's rate times `init_lr_frac`
//!   (0.8), warm-started from the source checkpoint's optimizer state (moments and step count;
//!   `--load-optimizer 0` starts fresh, as does a checkpoint without one, with a warning).
//!   Loading HEAD's state also restores the pretraining run's last Muon weight decay, which SFT
//!   then keeps; here it is recomputed from the base run's recorded schedule.
//! - **Schedules** ([`SftSchedules`]): the rate follows the progress through the training
//!   conversations before each step (1 until half-way, then linearly towards 0), or `step /
//!   --num-iterations`; Muon's momentum rises from 0.85 to 0.95 over 300 steps.
//! - **Data** ([`SftLoader`]): best-fit rows padded with BOS, never cropped; a conversation
//!   longer than a row is counted and warned about, never trained on. Without
//!   `--num-iterations` the run is one pass over the training conversations. Validation packs
//!   the held-out conversations the same way.
//!
//! Where this differs from HEAD (documented choices): HEAD stops one step early (it ends when
//! the batch it prefetched completes the pass, and `--num-iterations N` gives N - 1 steps) and
//! reads the progress after the prefetched batch, so its last step runs at rate 0; here one
//! pass trains through the batch that completes it, N steps are N, and each step's rate is that
//! of the progress before it, so every step updates.

use serde_json::{json, Value};

use super::chat::{row_tokens, ChatSource, ChatTrainOptions, SplitTasks};
use super::{TrainConfig, Trainer};
use crate::checkpoint::{tokenizer_for, Meta, Phase};
use crate::data::{Batch, SftLoader};
use crate::optim::{MuonAdamWConfig, OptimSettings, Schedules, SftSchedules};
use crate::paths::Paths;
use crate::recipe::HeadSchedule;
use crate::{CoreError, Device, Result};

/// A setting SFT inherits: `given` (noted when it overrides the base run's), else the base
/// run's `key` in its recorded run, else HEAD's `fallback`.
fn inherit<T>(
    given: Option<T>,
    recorded: Option<T>,
    fallback: T,
    name: &str,
    notes: &mut dyn FnMut(String),
) -> T
where
    T: Copy + PartialEq + std::fmt::Display,
{
    match (given, recorded) {
        (Some(g), Some(r)) if g != r => {
            notes(format!(
                "chat-sft: --{} {g} overrides the base run's {r}",
                name.replace('_', "-")
            ));
            g
        }
        (Some(g), _) => g,
        (None, Some(r)) => {
            notes(format!("chat-sft: inherited {name}={r} from the base run"));
            r
        }
        (None, None) => {
            notes(format!(
                "chat-sft: the base run records no {name}: using nanochat's {fallback}"
            ));
            fallback
        }
    }
}

/// The Muon weight decay the checkpoint's optimizer last used: the base run's HEAD schedule at
/// its last step, or an SFT run's constant one. `None`: not recorded.
pub fn last_muon_weight_decay(meta: &Meta) -> Option<f64> {
    if let Ok(s) = serde_json::from_value::<HeadSchedule>(meta.run["schedule"].clone()) {
        return Some(s.muon_weight_decay(meta.step.saturating_sub(1) as usize));
    }
    meta.run["muon_weight_decay"].as_f64()
}

/// HEAD's SFT trainer (see the module docs). Errors: [`CoreError::InvalidArgument`] for a
/// row longer than the model's block_size or a total batch that is not a multiple of a
/// micro-batch, the loaders' ([`SftLoader`]: nothing fits a row) and [`Trainer`]'s.
pub(crate) fn prepare(
    opts: &ChatTrainOptions,
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
        dir,
    } = source;
    check_settings(opts)?;
    let run = &meta.run;
    let count = |k: &str| run[k].as_u64().map(|v| v as usize);
    let block = model.config().block_size;
    let t = inherit(opts.seq_len, count("seq_len"), block, "max_seq_len", notes);
    let t = row_tokens(Some(t), &model)?;
    let b = inherit(
        opts.batch_size,
        count("batch_size"),
        32,
        "device_batch_size",
        notes,
    );
    let total = inherit(
        opts.total_batch_size,
        count("total_batch_size"),
        524288,
        "total_batch_size",
        notes,
    );
    let micro = b * t;
    if micro == 0 || total < micro || !total.is_multiple_of(micro) {
        return Err(CoreError::invalid(
            "--total-batch-size",
            total,
            format!("a positive multiple of --device-batch-size x --max-seq-len = {micro}"),
        ));
    }
    let rate = |k: &str| run["user_config"][k].as_f64();
    let h = &opts.head;
    let optim = MuonAdamWConfig {
        embedding_lr: inherit(
            h.embedding_lr,
            rate("embedding_lr"),
            0.3,
            "embedding_lr",
            notes,
        ),
        unembedding_lr: inherit(
            h.unembedding_lr,
            rate("unembedding_lr"),
            0.004,
            "unembedding_lr",
            notes,
        ),
        matrix_lr: inherit(h.matrix_lr, rate("matrix_lr"), 0.02, "matrix_lr", notes),
        scalar_lr: 0.5,
        weight_decay: 0.0,
    };
    // A resumed run recomputes the same weight decay from the same source.
    let warm = h.load_optimizer && meta.optim_file.is_some();
    let src = dir.join(format!("meta_{:06}.json", meta.step));
    if h.load_optimizer && meta.optim_file.is_none() {
        notes(format!(
            "chat-sft: warning: {} has no optimizer state: starting with a fresh optimizer (nanochat: slightly worse)",
            src.display()
        ));
    }
    let weight_decay = match (warm, last_muon_weight_decay(&meta)) {
        (true, Some(wd)) => {
            notes(format!("chat-sft: optimizer warm-started from {} (its moments and {} steps; Muon weight decay {wd:.3e}, the base optimizer's last)", src.display(), meta.step));
            wd
        }
        (true, None) => {
            notes(format!(
                "chat-sft: {} records no Muon weight-decay schedule: Muon's weight decay is 0",
                src.display()
            ));
            0.0
        }
        (false, _) => 0.0,
    };

    let train = SftLoader::new(split.train.as_ref(), &tokenizer, b, t)?;
    let too_long = train.too_long();
    notes(format!(
        "training conversations: {}, {} longer than a row of {} tokens",
        train.len(),
        too_long,
        t + 1
    ));
    if too_long > 0 {
        notes(format!(
            "warning: --max-seq-len {t} leaves {too_long} of the {} training conversations untrained: each is longer than a row, and HEAD's SFT packer neither crops nor packs them; raise --max-seq-len (up to the model's block_size {block}) to train on them",
            train.len()
        ));
    }
    let accum = total / micro;
    let total_steps = match opts.total_steps {
        Some(n) => n,
        None => train.steps_per_epoch(accum)?,
    };
    let mut val_loader = SftLoader::new(split.val.as_ref(), &tokenizer, b, t)?;
    let val_batches = match opts.eval_tokens {
        Some(tokens) => (tokens / micro).max(1),
        None => (val_loader.steps_per_epoch(1)? as usize).clamp(1, 8),
    };
    let val: Vec<Batch> = (0..val_batches)
        .map(|_| val_loader.next_batch())
        .collect::<Result<_>>()?;
    let schedule = SftSchedules {
        schedule: h.schedule,
        num_iterations: opts.total_steps.map(|n| n as usize),
        total_steps: total_steps as usize,
        weight_decay,
    };
    let cfg = TrainConfig {
        phase: Phase::Sft,
        root: paths.model_root.clone(),
        model_tag: tag.to_string(),
        batch_size: b,
        seq_len: t,
        total_batch_size: total,
        total_steps,
        optim: OptimSettings::Head(optim),
        schedule: Schedules::Sft(schedule),
        eval_every: opts.eval_every,
        save_every: opts.save_every,
        sample_prompts: vec![],
        tokenizer_path: tokenizer_for(paths, &meta),
        tokenizer_record: meta.tokenizer_path.clone(),
        compute_dtype: opts.dtype,
        run: json!({
            "command": "chat-sft", "recipe": "head", "tasks": split.names,
            "source": {"phase": source_phase.name(), "tag": source_tag, "step": meta.step},
            "batch_size": b, "seq_len": t, "total_batch_size": total,
            "total_steps": total_steps, "num_iterations": opts.total_steps,
            "user_config": user_config(&optim, h),
            "muon_weight_decay": weight_decay, "warm_start": warm,
            "device": device.to_string(),
        }),
    };
    let train = Box::new(train);
    match opts.resume_from_step {
        Some(step) => Trainer::resume(step, device, tokenizer, train, val, cfg),
        None => {
            model.set_rng_state(0);
            let from = warm.then_some((dir.as_path(), &meta));
            Trainer::warm_started(model, tokenizer, train, val, cfg, from)
        }
    }
}

/// Refuses settings no run can use: a rate or schedule fraction that is not a finite number
/// at least 0 (fractions at most 1), and 0 rows per micro-batch. Errors:
/// [`CoreError::InvalidArgument`] naming the flag.
fn check_settings(opts: &ChatTrainOptions) -> Result<()> {
    if opts.batch_size == Some(0) {
        return Err(CoreError::invalid("--device-batch-size", 0, "at least 1"));
    }
    let h = &opts.head;
    let s = &h.schedule;
    let values = [
        ("--embedding-lr", h.embedding_lr.unwrap_or(0.0), f64::MAX),
        (
            "--unembedding-lr",
            h.unembedding_lr.unwrap_or(0.0),
            f64::MAX,
        ),
        ("--matrix-lr", h.matrix_lr.unwrap_or(0.0), f64::MAX),
        ("--init-lr-frac", s.init_lr_frac, f64::MAX),
        ("--warmup-ratio", s.warmup_ratio, 1.0),
        ("--warmdown-ratio", s.warmdown_ratio, 1.0),
        ("--final-lr-frac", s.final_lr_frac, 1.0),
    ];
    for (flag, v, max) in values {
        if !(v.is_finite() && (0.0..=max).contains(&v)) {
            let range = if max == 1.0 {
                "from 0 to 1"
            } else {
                "a finite number, at least 0"
            };
            return Err(CoreError::invalid(flag, v, range));
        }
    }
    Ok(())
}

/// The SFT settings recorded as nanochat's `user_config` names.
fn user_config(optim: &MuonAdamWConfig, h: &super::chat::HeadSftOptions) -> Value {
    json!({
        "embedding_lr": optim.embedding_lr, "unembedding_lr": optim.unembedding_lr,
        "matrix_lr": optim.matrix_lr, "init_lr_frac": h.schedule.init_lr_frac,
        "warmup_ratio": h.schedule.warmup_ratio, "warmdown_ratio": h.schedule.warmdown_ratio,
        "final_lr_frac": h.schedule.final_lr_frac, "load_optimizer": h.load_optimizer,
    })
}
