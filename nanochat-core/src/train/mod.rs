//! The training loop shared by base training, mid-training and SFT: gradient accumulation to a
//! total batch size, nanochat's optimizers and schedules, validation bits per byte, greedy
//! samples, checkpoints (resumable to the bit on the CPU) and a `metrics.jsonl`. Rows and
//! micro-batches with no supervised token are counted and left out ([`accumulate_gradients`]);
//! a step made only of them is skipped. [`BaseRun`] and [`ChatRun`] set up the runs of
//! `nanochat base-train` and `mid-train` / `chat-sft` from their settings.

mod accumulate;
mod base;
mod bench;
mod bpb;
mod chat;
mod chat_head;
#[cfg(test)]
mod chat_head_tests;
mod config;
mod flops;
mod memory;
mod metrics;
mod nanochat_resume;
#[cfg(test)]
mod nanochat_resume_tests;
mod ranks;
#[cfg(test)]
pub(crate) mod run_tests;
mod source;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Instant;

pub use accumulate::{
    accumulate_gradients, accumulate_share, clip_grad_norm, has_supervised_target, masked_rows,
    step_loss, Accumulated, Share,
};
pub use base::{
    account_inputs, data_sources, BasePlan, BaseRun, BaseTrainOptions, HeadTrainOptions,
    DEFAULT_TOTAL_STEPS,
};
pub use bench::{bench_train, peak_host_bytes, BenchTrainOptions, TrainBench};
pub use bpb::{batch_nats_bytes, evaluate_bpb, evaluate_bpb_across};
pub use chat::{
    account_conversations, ChatRun, ChatSource, ChatTrainOptions, ConversationReads,
    HeadSftOptions, DEFAULT_CHAT_STEPS, DEFAULT_TASKS,
};
pub use chat_head::last_muon_weight_decay;
pub use config::TrainConfig;
pub use flops::{cpu_peak_flops, peak_flops};
pub use memory::{
    check_fits, estimate_training_bytes, exceeds_free, exceeds_host_free, free_bytes,
    host_free_bytes,
};
pub use metrics::{MetricsLog, RunTally, StepMetrics};
pub use nanochat_resume::{NanochatResume, NanochatRun, EMA_BETA};
pub(crate) use ranks::shard;
use ranks::shard_optimizer;
pub use ranks::{optimizer_ownership, SHARD_POLICY};
pub use source::BatchSource;

use crate::checkpoint::{load_checkpoint_model, load_optimizer_state, save_checkpoint, SaveInfo};
use crate::data::Batch;
// What the test modules (`use super::*`) take from here.
#[cfg(test)]
use crate::checkpoint::{checkpoint_dir, Phase};
#[cfg(test)]
use crate::data::{DataLoader, LoaderState};
use crate::dist::sync::{gather_optimizer_state, grad_norm, StepCollectives};
use crate::dist::{Dist, FolderLock, Ownership, ReduceOp};
use crate::model::{SamplingParams, GPT};
use crate::optim::TrainOptimizer;
#[cfg(test)]
use crate::optim::{OptimSettings, Schedules};
use crate::tokenizer::Tokenizer;
use crate::{CoreError, DType, Device, Result};

/// What one optimizer step did ([`Trainer::train_step`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepOutcome {
    /// The mean loss over the micro-batches that had a supervised target; `None` when none had
    /// one (the step was skipped).
    pub loss: Option<f64>,
    /// Rows of the step's micro-batches whose targets were all -1 (no loss, no gradient).
    pub masked_rows: usize,
    /// Micro-batches whose targets were all -1, left out of the step.
    pub empty_micro_batches: usize,
    /// Micro-batches read (`grad_accum_steps`).
    pub micro_batches: usize,
    /// The progress through the data the schedule read (before the step's batches).
    pub progress: f64,
    /// The L2 norm of the step's gradient (over all ranks, before any clipping); `None` when
    /// the step was skipped.
    pub grad_norm: Option<f64>,
}

impl StepOutcome {
    /// Whether the optimizer step was skipped: no micro-batch had a supervised target.
    pub fn skipped(&self) -> bool {
        self.loss.is_none()
    }
}

/// What the loop reports as it goes.
#[derive(Clone, Debug)]
pub enum Event {
    /// An optimizer step finished (the line appended to `metrics.jsonl`).
    Step(StepMetrics),
    /// Validation bits per byte was measured after `step`.
    Eval {
        /// The step just taken.
        step: u64,
        /// Validation bits per byte.
        val_bpb: f64,
    },
    /// A sample prompt was continued greedily after `step`.
    Sample {
        /// The step just taken.
        step: u64,
        /// The prompt.
        prompt: String,
        /// The model's greedy continuation.
        completion: String,
    },
    /// A checkpoint of `step` was written into `dir`.
    Saved {
        /// The step saved.
        step: u64,
        /// The checkpoint folder.
        dir: PathBuf,
    },
}

impl Event {
    /// The line a display shows for an evaluation, a sample or a checkpoint (`None` for a step,
    /// which a display shows on its bar).
    pub fn line(&self) -> Option<String> {
        Some(match self {
            Event::Step(_) => return None,
            Event::Eval { step, val_bpb } if val_bpb.is_nan() => format!(
                "warning: step {step}: no val bpb: no validation row has a supervised token of text"
            ),
            Event::Eval { step, val_bpb } => format!("step {step}: val bpb {val_bpb:.4}"),
            Event::Sample {
                prompt, completion, ..
            } => format!("  {prompt:?} -> {completion:?}"),
            Event::Saved { step, dir } => {
                format!("step {step}: checkpoint saved in {}", dir.display())
            }
        })
    }
}

/// What a finished run measured, for its summary and its report stage ([`BaseRun::summary`],
/// [`ChatRun::report`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RunOutcome {
    /// The last validation bits per byte ([`Trainer::run`]).
    pub val_bpb: Option<f64>,
    /// Mean tokens per second of the steps after the first (`None`: one step or none).
    pub mean_tokens_per_s: Option<f64>,
    /// Rows without a supervised token over the run (left out of training).
    pub masked_rows: u64,
    /// Wall-clock seconds of the whole command.
    pub wall_s: f64,
}

/// The training loop of base-train, mid-train and chat-sft (nanochat's `scripts/base_train.py`
/// loop: gradient accumulation, schedules, evaluation, sampling, checkpoints).
pub struct Trainer {
    /// The model being trained (f32 master weights).
    pub model: GPT,
    /// Its optimizer and state.
    pub optim: TrainOptimizer,
    /// The tokenizer (decodes samples, recorded in checkpoints).
    pub tokenizer: Tokenizer,
    /// The run's settings.
    pub cfg: TrainConfig,
    train: Box<dyn BatchSource>,
    val: Vec<Batch>,
    /// Optimizer steps completed.
    pub step: u64,
    /// Progress through the data after the steps taken, never decreasing (HEAD's SFT schedule
    /// follows it).
    progress: f64,
    /// Rank 0's metrics log (`None` on the other ranks, which write nothing).
    metrics: Option<MetricsLog>,
    last_val_bpb: Option<f64>,
    /// The tokenizer's fingerprint, recorded in every checkpoint (computed once).
    tokenizer_sha256: String,
    /// A resumed nanochat run: saved in nanochat's format, with its loop state.
    nanochat: Option<NanochatRun>,
    /// The ranks training together ([`crate::dist::world`]).
    dist: Dist,
    /// Which rank updates which parameter, when more than one rank trains.
    own: Option<Ownership>,
    /// Rank 0's lock on the checkpoint folder, held for the run.
    _lock: Option<FolderLock>,
    /// The step's collectives: NCCL's on CUDA (gradients never visit the host), else the
    /// host communicator's.
    collectives: StepCollectives,
}

impl Trainer {
    /// A fresh run from `model` (step 0).
    pub fn new(
        model: GPT,
        tokenizer: Tokenizer,
        train: Box<dyn BatchSource>,
        val: Vec<Batch>,
        cfg: TrainConfig,
    ) -> Result<Trainer> {
        Trainer::warm_started(model, tokenizer, train, val, cfg, None)
    }

    /// A fresh run from `model` (step 0) whose optimizer starts, with `from = Some((dir,
    /// meta))`, from the state saved with that checkpoint: moments and step count, the rates
    /// staying this run's (HEAD's SFT warm start, `load_optimizer_state` in
    /// `scripts/chat_sft.py` at 92d63d4); `None`: [`Trainer::new`]. Errors: the total batch
    /// size, the memory check, and [`load_optimizer_state`]'s (no optimizer file, one of another
    /// optimizer or model).
    pub fn warm_started(
        model: GPT,
        tokenizer: Tokenizer,
        train: Box<dyn BatchSource>,
        val: Vec<Batch>,
        cfg: TrainConfig,
        from: Option<(&std::path::Path, &crate::checkpoint::Meta)>,
    ) -> Result<Trainer> {
        let dist = crate::dist::world();
        cfg.rank_grad_accum_steps(dist.world_size())?;
        check_fits(&model, cfg.batch_size, cfg.seq_len)?;
        let mut optim = TrainOptimizer::new(&model, &cfg.optim)?;
        let own = shard_optimizer(&model, &mut optim, &dist)?;
        if let Some((dir, meta)) = from {
            load_optimizer_state(dir, meta, &model, &mut optim, model.get_device())?;
        }
        let mut t = Trainer::assemble(model, optim, tokenizer, train, val, cfg, 0, None)?;
        t.own = own;
        Ok(t)
    }

    /// The trainer of `new` and `resume`: the model in training mode at the run's compute
    /// dtype, the metrics log opened at `step`, the tokenizer's fingerprint computed once.
    #[allow(clippy::too_many_arguments)]
    fn assemble(
        mut model: GPT,
        optim: TrainOptimizer,
        tokenizer: Tokenizer,
        train: Box<dyn BatchSource>,
        val: Vec<Batch>,
        mut cfg: TrainConfig,
        step: u64,
        last_val_bpb: Option<f64>,
    ) -> Result<Trainer> {
        model.set_compute_dtype(cfg.compute_dtype)?;
        model.train();
        let dist = crate::dist::world();
        // Rank 0 writes (and locks the folder first: one writer of any kind); the other ranks
        // write nothing.
        let collectives = StepCollectives::new(dist.clone(), model.get_device())?;
        let (lock, metrics) = if dist.is_main() {
            crate::checkpoint::validate_tag(&cfg.model_tag)?;
            let dir = cfg.checkpoint_dir();
            let lock = if step == 0 {
                let fresh = crate::dist::lock::acquire_fresh_noting(&dir)?;
                if let Some(to) = &fresh.earlier {
                    follow_moved_source(&mut cfg.run, cfg.phase, &cfg.model_tag, to);
                }
                fresh.lock
            } else {
                FolderLock::acquire(&dir)?
            };
            (
                Some(lock),
                Some(MetricsLog::open(&cfg.checkpoint_dir(), step)?),
            )
        } else {
            (None, None)
        };
        let tokenizer_sha256 = tokenizer.fingerprint()?;
        let train_progress = train.progress().unwrap_or(0.0);
        Ok(Trainer {
            model,
            optim,
            tokenizer,
            cfg,
            train,
            val,
            step,
            // A resumed loader reports where it is (the schedule of a resumed SFT run).
            progress: train_progress,
            metrics,
            last_val_bpb,
            tokenizer_sha256,
            nanochat: None,
            dist,
            own: None,
            _lock: lock,
            collectives,
        })
    }

    /// Continues the run saved at `step` in the config's checkpoint folder: weights, optimizer
    /// state, data position and RNG state.
    pub fn resume(
        step: u64,
        device: &Device,
        tokenizer: Tokenizer,
        mut train: Box<dyn BatchSource>,
        val: Vec<Batch>,
        cfg: TrainConfig,
    ) -> Result<Trainer> {
        let dir = cfg.checkpoint_dir();
        crate::checkpoint::nanochat::refuse_resume(
            &crate::checkpoint::read_meta(&dir, step)?,
            &dir,
        )?;
        let dist = crate::dist::world();
        cfg.rank_grad_accum_steps(dist.world_size())?;
        if step >= cfg.total_steps {
            // Nothing to train: refused before anything (metrics.jsonl included) is touched.
            return Err(CoreError::invalid(
                "--total-steps (--num-iterations)",
                cfg.total_steps,
                format!("more than the step resumed from, {step}"),
            ));
        }
        let (model, meta) = load_checkpoint_model(&dir, step, device, DType::F32)?;
        crate::checkpoint::check_tokenizer(
            &meta,
            &dir.join(format!("meta_{step:06}.json")),
            &tokenizer,
            &cfg.tokenizer_path,
            false,
        )?;
        let mut optim = TrainOptimizer::new(&model, &cfg.optim)?;
        let own = shard_optimizer(&model, &mut optim, &dist)?;
        load_optimizer_state(&dir, &meta, &model, &mut optim, device)?;
        if let Some(pos) = meta.data_position {
            train.restore(pos)?;
        }
        match (meta.data_buffer, train.buffered()) {
            (Some(docs), _) => train.restore_buffered(docs)?,
            (None, Some(_)) => {
                return Err(CoreError::Mismatch {
                    op: "resume",
                    why: format!(
                        "{} has no best-fit packer buffer (a v1 run's checkpoint) but this run packs with one (`--recipe head`)",
                        dir.join(format!("meta_{step:06}.json")).display()
                    ),
                })
            }
            (None, None) => {}
        }
        model.set_rng_state(meta.rng_state);
        let mut t =
            Trainer::assemble(model, optim, tokenizer, train, val, cfg, step, meta.val_bpb)?;
        t.own = own;
        Ok(t)
    }

    /// Validation bits per byte (in eval mode).
    pub fn evaluate(&mut self) -> Result<f64> {
        self.model.eval();
        let device = self.model.get_device().clone();
        let (model, val, dist) = (&self.model, &self.val, &self.dist);
        let r = device
            .exclusive(|| evaluate_bpb_across(model, val, self.tokenizer.token_bytes(), &**dist));
        self.model.train();
        r?
    }

    /// Greedy continuations of the configured prompts.
    pub fn samples(&mut self, max_tokens: usize) -> Result<Vec<(String, String)>> {
        self.model.eval();
        let device = self.model.get_device().clone();
        let (model, tokenizer, prompts) = (&self.model, &self.tokenizer, &self.cfg.sample_prompts);
        let r = device.exclusive(|| greedy_samples(model, tokenizer, prompts, max_tokens));
        self.model.train();
        r?
    }

    /// One optimizer step over `grad_accum_steps` micro-batches ([`accumulate_gradients`]:
    /// micro-batches without a supervised target are left out; when all are, the optimizer step
    /// is skipped but the step still counts). Runs on the device's thread
    /// ([`Device::exclusive`]).
    pub fn train_step(&mut self) -> Result<StepOutcome> {
        let device = self.model.get_device().clone();
        device.exclusive(|| self.train_step_inner())?
    }

    fn train_step_inner(&mut self) -> Result<StepOutcome> {
        let accum = self.cfg.grad_accum_steps()?;
        // Every rank reads the step's micro-batches in one global order and computes its own
        // contiguous share: the tokens of a step, and the loader's position, do not depend on
        // the world size.
        let batches = (0..accum)
            .map(|_| self.train.next_batch())
            .collect::<Result<Vec<_>>>()?;
        let mut acc = match &self.own {
            None => accumulate_gradients(&self.model, &batches)?,
            Some(own) => {
                let (rank, per) = (
                    self.dist.rank(),
                    self.cfg.rank_grad_accum_steps(self.dist.world_size())?,
                );
                let share = accumulate_share(&self.model, &batches, rank * per..(rank + 1) * per)?;
                let mut losses = share.losses;
                self.dist.all_reduce_f64(&mut losses, ReduceOp::Sum)?;
                let mut acc = share.acc;
                acc.loss = (share.used > 0).then(|| step_loss(&losses, share.used));
                if share.used > 0 {
                    let params = self.model.parameters();
                    self.collectives
                        .reduce_grads(own, &params, &mut acc.grads)?;
                }
                acc
            }
        };
        let grad_norm = if acc.is_empty() {
            None
        } else {
            Some(grad_norm(
                &*self.dist,
                self.own.as_ref(),
                &self.model.parameters(),
                &acc.grads,
            )?)
        };
        if let Some(clip) = self.nanochat.as_ref().and_then(|n| n.grad_clip) {
            clip_grad_norm(&mut acc.grads, &self.model.parameters(), clip)?;
        }
        // The schedule reads the progress before this step's batches (as the step index is
        // before the step), so the last step still updates.
        let (it, p) = (self.step as usize, self.progress);
        self.progress = self.progress.max(self.train.progress().unwrap_or(0.0));
        if !acc.is_empty() {
            self.optim.step(&acc.grads, &self.cfg.schedule, it, p)?;
            if let Some(own) = &self.own {
                self.collectives
                    .gather_params(own, &self.model.parameters())?;
            }
        }
        self.step += 1;
        Ok(StepOutcome {
            loss: acc.loss,
            masked_rows: acc.masked_rows,
            empty_micro_batches: acc.empty_micro_batches,
            micro_batches: accum,
            progress: p,
            grad_norm,
        })
    }

    /// The schedules' values of the last step taken (`None` before any), which nanochat's
    /// optimizer file holds in its groups.
    fn last_scheduled(&self) -> Option<crate::checkpoint::nanochat_optim_write::ScheduledValues> {
        let it = (self.step as usize).checked_sub(1)?;
        let s = &self.cfg.schedule;
        Some(crate::checkpoint::nanochat_optim_write::ScheduledValues {
            lr_multiplier: s.lr_multiplier(it, self.progress),
            muon_momentum: s.muon_momentum(it),
            muon_weight_decay: s.muon_weight_decay(it),
        })
    }

    /// The loop state of a resumed nanochat run ([`Trainer::resume_nanochat`]); `None` for
    /// a run of ours.
    pub fn nanochat_run(&self) -> Option<&NanochatRun> {
        self.nanochat.as_ref()
    }

    /// Saves the current step: in our format, or in nanochat's for a resumed nanochat run
    /// ([`crate::checkpoint::nanochat_save::save_nanochat_step`]).
    pub fn save(&self) -> Result<PathBuf> {
        let dir = self.cfg.checkpoint_dir();
        if let Some(n) = &self.nanochat {
            let meta = n.meta(
                self.step,
                self.last_val_bpb,
                self.model.config(),
                self.train.position(),
            );
            crate::checkpoint::nanochat_save::save_nanochat_step(
                &dir,
                self.step,
                &self.model,
                &n.bf16_params,
                Some(crate::checkpoint::nanochat_save::OptimToSave {
                    optim: &self.optim,
                    v1_layout: n.v1_layout.as_ref(),
                    last: self.last_scheduled(),
                }),
                &meta,
            )?;
            return Ok(dir);
        }
        // Under several ranks, rank 0 gathers the optimizer's shards (a collective: every rank
        // takes part) and writes the checkpoint in the one-process layout; the others write
        // nothing.
        let gathered = match &self.own {
            None => None,
            Some(own) => {
                let names: Vec<String> = self
                    .model
                    .named_parameters()
                    .into_iter()
                    .map(|(n, _)| n)
                    .collect();
                let g = gather_optimizer_state(
                    &*self.dist,
                    own,
                    &self.optim,
                    &names,
                    self.model.get_device(),
                )?;
                if g.is_none() {
                    return Ok(dir);
                }
                g
            }
        };
        let optim: &dyn crate::optim::OptimizerState = match &gathered {
            Some(g) => g,
            None => &self.optim,
        };
        let info = SaveInfo {
            val_bpb: self.last_val_bpb,
            tokenizer_path: self.cfg.tokenizer_record.clone(),
            tokenizer_sha256: Some(self.tokenizer_sha256.clone()),
            data_position: Some(self.train.position()),
            data_buffer: self.train.buffered(),
            rng_state: self.model.rng_state(),
            run: self.cfg.run.clone(),
            world_size: self.dist.world_size(),
        };
        save_checkpoint(
            &dir,
            self.cfg.phase,
            self.step,
            &self.model,
            Some(optim),
            info,
        )?;
        Ok(dir)
    }

    /// Trains to `total_steps`, evaluating, sampling and saving on schedule; reports through
    /// `on_event`. Returns the last validation bpb.
    pub fn run(&mut self, on_event: &mut dyn FnMut(&Event)) -> Result<Option<f64>> {
        let cfg = self.cfg.clone();
        let flops_per_token = self.model.estimate_flops();
        // Every rank's device counts (tokens per second are the whole step's).
        let peak = peak_flops(self.model.get_device(), self.model.compute_dtype())
            * self.dist.world_size() as f64;
        if self.step == 0 && cfg.eval_every > 0 {
            let bpb = self.evaluate()?;
            self.last_val_bpb = Some(bpb);
            on_event(&Event::Eval {
                step: 0,
                val_bpb: bpb,
            });
        }
        let first_step = self.step;
        while self.step < cfg.total_steps {
            let t0 = Instant::now();
            let outcome = match self.train_step() {
                Ok(o) => o,
                // A continued nanochat v1 run whose shards ran out (v1's loader never wraps):
                // the data is read before the step updates anything, so the last completed
                // step is whole; it is saved rather than lost.
                Err(e @ CoreError::NoData { .. })
                    if self.nanochat.is_some() && self.step > first_step =>
                {
                    let dir = self.save()?;
                    on_event(&Event::Saved {
                        step: self.step,
                        dir: dir.clone(),
                    });
                    return Err(CoreError::Mismatch {
                        op: "training",
                        why: format!(
                            "{e}; the last completed step, {}, was saved in {}",
                            self.step,
                            dir.display()
                        ),
                    });
                }
                Err(e) => return Err(e),
            };
            if let Some(loss) = outcome.loss.filter(|l| !l.is_finite()) {
                // A diverged run is stopped before it saves (or evaluates) anything.
                return Err(CoreError::Mismatch {
                    op: "training",
                    why: format!(
                        "the loss of step {} is {loss}: the run diverged (check the learning rates); nothing was saved for this step",
                        self.step
                    ),
                });
            }
            self.model.get_device().sync()?;
            let secs = t0.elapsed().as_secs_f64();
            if let Some(n) = &mut self.nanochat {
                n.record_step(self.step - 1, outcome.loss, secs);
            }
            let tps = cfg.total_batch_size as f64 / secs;
            let last = self.step == cfg.total_steps;
            let mut m = StepMetrics {
                step: self.step,
                loss: outcome.loss,
                lr_multiplier: cfg
                    .schedule
                    .lr_multiplier(self.step as usize - 1, outcome.progress),
                tokens_per_s: tps,
                mfu: flops_per_token * tps / peak,
                val_bpb: None,
                masked_rows: outcome.masked_rows as u64,
                skipped: outcome.skipped(),
                grad_norm: outcome.grad_norm,
            };
            if last || (cfg.eval_every > 0 && self.step.is_multiple_of(cfg.eval_every)) {
                let bpb = self.evaluate()?;
                self.last_val_bpb = Some(bpb);
                m.val_bpb = Some(bpb);
                if let Some(n) = &mut self.nanochat {
                    n.record_val_bpb(bpb);
                }
                on_event(&Event::Eval {
                    step: self.step,
                    val_bpb: bpb,
                });
                // Samples are rank 0's (they write nothing and need no peer).
                let samples = if self.dist.is_main() {
                    self.samples(16)?
                } else {
                    Vec::new()
                };
                for (prompt, completion) in samples {
                    on_event(&Event::Sample {
                        step: self.step,
                        prompt,
                        completion,
                    });
                }
            }
            if let Some(log) = &self.metrics {
                log.append(&m)?;
            }
            on_event(&Event::Step(m));
            if last || (cfg.save_every > 0 && self.step.is_multiple_of(cfg.save_every)) {
                let dir = self.save()?;
                on_event(&Event::Saved {
                    step: self.step,
                    dir,
                });
            }
        }
        Ok(self.last_val_bpb)
    }
}

/// Greedy continuations (after `<|bos|>`) of each prompt.
fn greedy_samples(
    model: &GPT,
    tokenizer: &Tokenizer,
    prompts: &[String],
    max_tokens: usize,
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for p in prompts {
        let mut ids = vec![tokenizer.get_bos_token_id()];
        ids.extend(tokenizer.encode(p));
        let room = model.config().block_size.saturating_sub(ids.len());
        let gen: Vec<u32> = model
            .generate(
                &ids,
                max_tokens.min(room.max(1)),
                SamplingParams {
                    temperature: 0.0,
                    top_k: None,
                    seed: 0,
                },
            )?
            .collect::<Result<_>>()?;
        out.push((p.clone(), tokenizer.decode(&gen)?));
    }
    Ok(out)
}

/// A fresh run that starts from a checkpoint in the very folder it writes (`chat-sft --source
/// sft` into its own tag) read its source before that folder was moved aside
/// ([`crate::dist::lock::acquire_fresh_noting`]): its record `run.source.tag` then names the
/// folder the source went to (`<tag>.earlier-<UTC time>`), not the new run's.
pub(crate) fn follow_moved_source(
    run: &mut serde_json::Value,
    phase: crate::checkpoint::Phase,
    tag: &str,
    moved_to: &std::path::Path,
) {
    let Some(source) = run.get_mut("source") else {
        return;
    };
    let same_folder = source.get("phase").and_then(|p| p.as_str()) == Some(phase.name())
        && source.get("tag").and_then(|t| t.as_str()) == Some(tag);
    if let (true, Some(name)) = (same_folder, moved_to.file_name().and_then(|n| n.to_str())) {
        source["tag"] = serde_json::Value::from(name);
    }
}
