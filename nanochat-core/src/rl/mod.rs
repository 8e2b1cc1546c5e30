//! Reinforcement learning as nanochat's `chat_rl`: a simplified GRPO that is plain REINFORCE.
//! Each step takes `examples_per_step` prompts of a task with a reward; for each it samples
//! `num_samples` completions with the current model, scores them with the task's reward, and
//! uses advantage = reward - mean reward of that prompt's samples (no trust region, no KL, no
//! std normalisation). The objective is token-level: every sampled token's log-probability
//! weighted by its sequence's advantage, summed and divided by the number of sampled tokens
//! (prompt tokens and tokens the calculator forced are not trained). The learning rate decays
//! linearly to 0.
//!
//! [`RlTrainer::run`] is the whole `chat-rl` run (evaluation, metrics, checkpoint: see
//! [`RlRun`]); [`RlTrainer::train_step`] is one step of it.

mod run;
#[cfg(test)]
mod tests;

pub use run::{RlEvent, RlOutcome, RlResults, RlRun, RlTasks};

use std::sync::Arc;

use serde::Serialize;

use crate::engine::{Engine, GenerateParams};
use crate::model::Architecture;
use crate::model::ForwardOptions;
use crate::ops::{self, Reduction};
use crate::optim::{
    muon_momentum, MuonAdamW, MuonAdamWConfig, OptimConfig, Optimizer, TrainOptimizer,
};
use crate::tasks::Task;
use crate::{DType, Grads, Result, Tape, Tensor};

/// Settings of a run (nanochat's chat_rl defaults, scaled for small models).
#[derive(Clone, Debug, Serialize)]
pub struct RlConfig {
    /// Optimizer steps of the run.
    pub total_steps: u64,
    /// Prompts per optimizer step.
    pub examples_per_step: usize,
    /// Samples per prompt.
    pub num_samples: usize,
    /// Most tokens per sampled completion (and per greedy evaluation completion).
    pub max_new_tokens: usize,
    /// Sampling temperature of the training samples.
    pub temperature: f32,
    /// Sample among the k most likely tokens (`None`: all).
    pub top_k: Option<usize>,
    /// The optimizer's rates as a fraction of the pretraining defaults (nanochat: 0.05).
    pub init_lr_frac: f32,
    /// Prompt `n` (counted over the run) samples with seed `seed * 1_000_003 + n`; also the
    /// seed of the task mixtures' shuffle.
    pub seed: u64,
}

impl Default for RlConfig {
    fn default() -> Self {
        RlConfig {
            total_steps: 50,
            examples_per_step: 4,
            num_samples: 8,
            max_new_tokens: 128,
            temperature: 1.0,
            top_k: Some(50),
            init_lr_frac: 0.05,
            seed: 42,
        }
    }
}

/// One step's statistics.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RlStep {
    /// Optimizer steps done, this one included.
    pub step: u64,
    /// Mean reward of the step's samples (before the update).
    pub mean_reward: f64,
    /// Mean length of the sampled completions, in tokens.
    pub mean_tokens: f64,
    /// The learning-rate multiplier this step used (1 - steps before / total steps).
    pub lr_multiplier: f64,
}

/// The model (inside an engine, which samples with the current weights: the optimizer updates
/// them in place), its optimizer and the task.
pub struct RlTrainer {
    /// The model being trained and its tokenizer.
    pub engine: Engine,
    optim: TrainOptimizer,
    task: Arc<dyn Task>,
    /// The run's settings.
    pub cfg: RlConfig,
    /// Optimizer steps done.
    pub step: u64,
    /// The ranks training together ([`crate::dist::world`]): each samples and scores its share
    /// of a step's prompts.
    dist: crate::dist::Dist,
    /// Which rank updates which parameter, when more than one rank trains.
    own: Option<crate::dist::Ownership>,
    /// The step's collectives (NCCL's on CUDA).
    collectives: crate::dist::sync::StepCollectives,
}

impl RlTrainer {
    /// A trainer of `engine`'s model on the prompts of `task`, with the optimizer of the
    /// model's recipe at `cfg.init_lr_frac` of its default rates: v1's AdamW + Muon, or HEAD's
    /// `MuonAdamW` (`setup_optimizer`'s defaults, no Muon weight decay, momentum 0.95, as
    /// `scripts/chat_rl.py` at 92d63d4).
    ///
    /// Errors: [`crate::CoreError::InvalidArgument`] for no steps, no prompts per step or
    /// fewer than 2 samples per prompt; [`crate::CoreError::NoData`] for a task without
    /// examples.
    pub fn new(engine: Engine, task: Arc<dyn Task>, cfg: RlConfig) -> Result<RlTrainer> {
        let d = OptimConfig::default();
        let f = cfg.init_lr_frac;
        let mut optim = match engine.model().config().architecture {
            Architecture::V1 => TrainOptimizer::V1(Optimizer::new(
                engine.model(),
                &OptimConfig {
                    matrix_lr: d.matrix_lr * f,
                    embedding_lr: d.embedding_lr * f,
                    unembedding_lr: d.unembedding_lr * f,
                    ..d
                },
            )),
            Architecture::Head => {
                TrainOptimizer::Head(MuonAdamW::new(engine.model(), &MuonAdamWConfig::default())?)
            }
        };
        if !(cfg.init_lr_frac.is_finite() && cfg.init_lr_frac >= 0.0) {
            return Err(crate::CoreError::invalid(
                "--init-lr-frac",
                cfg.init_lr_frac,
                "a finite number, at least 0",
            ));
        }
        if cfg.examples_per_step == 0 || cfg.num_samples < 2 || cfg.total_steps == 0 {
            return Err(crate::CoreError::invalid(
                "chat-rl steps, prompts per step, samples per prompt",
                format!(
                    "{}, {}, {}",
                    cfg.total_steps, cfg.examples_per_step, cfg.num_samples
                ),
                "at least 1 step, 1 prompt per step and 2 samples per prompt (advantages are relative to the prompt's mean reward)",
            ));
        }
        if task.num_examples() == 0 {
            return Err(crate::CoreError::no_data(
                "examples",
                format!("task {}", task.name()),
            ));
        }
        let dist = crate::dist::world();
        let own = crate::train::shard(
            engine.model(),
            &mut optim,
            &dist,
            crate::train::SHARD_POLICY,
        )?;
        let collectives =
            crate::dist::sync::StepCollectives::new(dist.clone(), engine.model().get_device())?;
        Ok(RlTrainer {
            engine,
            optim,
            task,
            cfg,
            step: 0,
            dist,
            own,
            collectives,
        })
    }

    /// nanochat's schedule: 1 - step / total_steps.
    pub fn lr_multiplier(&self) -> f64 {
        1.0 - self.step as f64 / self.cfg.total_steps.max(1) as f64
    }

    /// Samples, scores and updates once.
    pub fn train_step(&mut self) -> Result<RlStep> {
        let device = self.engine.model().get_device().clone();
        device.exclusive(|| self.train_step_inner())?
    }

    fn train_step_inner(&mut self) -> Result<RlStep> {
        let cfg = self.cfg.clone();
        let tok = self.engine.tokenizer();
        let mut rollouts = Vec::new();
        let (mut reward_sum, mut token_sum, mut count) = (0.0, 0usize, 0usize);
        // Across ranks, prompt e of the step goes to rank e % world (its samples are seeded by
        // its index, so they do not depend on who draws them); the sums are added after.
        let (rank, world) = (self.dist.rank(), self.dist.world_size());
        for e in (0..cfg.examples_per_step).filter(|e| e % world == rank) {
            let n = self.step as usize * cfg.examples_per_step + e;
            let index = n % self.task.num_examples();
            let conv = self.task.get_example(index)?;
            let prompt = tok.render_for_completion(&conv)?;
            let params = GenerateParams {
                num_samples: cfg.num_samples,
                max_tokens: cfg.max_new_tokens,
                temperature: cfg.temperature,
                top_k: cfg.top_k,
                seed: Some(cfg.seed.wrapping_mul(1_000_003).wrapping_add(n as u64)),
            };
            let (rows, probs) = self.engine.generate_batch(&prompt, &params)?;
            let rewards: Vec<f64> = rows
                .iter()
                .map(|r| {
                    let text = tok.decode(&r[prompt.len()..])?;
                    Ok(self.task.reward_example(index, &conv, &text))
                })
                .collect::<Result<_>>()?;
            let mean = rewards.iter().sum::<f64>() / rewards.len() as f64;
            reward_sum += rewards.iter().sum::<f64>();
            count += rewards.len();
            token_sum += rows.iter().map(|r| r.len() - prompt.len()).sum::<usize>();
            for ((row, p), r) in rows.into_iter().zip(probs).zip(rewards) {
                // Trained: sampled tokens only (a forced calculator token has no probability).
                let mask: Vec<bool> = std::iter::repeat_n(false, prompt.len())
                    .chain(p.iter().map(Option::is_some))
                    .collect();
                rollouts.push((row, mask, r - mean));
            }
        }
        let valid: usize = rollouts
            .iter()
            .map(|(_, m, _)| m.iter().skip(1).filter(|&&b| b).count())
            .sum();
        let mut sums = [reward_sum, token_sum as f64, count as f64, valid as f64];
        if self.dist.is_distributed() {
            self.dist
                .all_reduce_f64(&mut sums, crate::dist::ReduceOp::Sum)?;
        }
        let [reward_sum, token_sum, count, valid] = sums;
        let (token_sum, count) = (token_sum as usize, count as usize);
        let mut grads = self.policy_gradient(&rollouts, valid as usize)?;
        let params = self.engine.model().parameters();
        if let Some(own) = &self.own {
            self.collectives.reduce_grads(own, &params, &mut grads)?;
        }
        let lrm = self.lr_multiplier();
        match &mut self.optim {
            TrainOptimizer::V1(o) => {
                o.step(&grads, lrm as f32, muon_momentum(self.step as usize))?
            }
            // HEAD folds init_lr_frac into every group's rate (the smear group's fixed 0.2
            // included) and leaves Muon's momentum at setup_optimizer's 0.95.
            o => o.step_with(&grads, self.cfg.init_lr_frac as f64 * lrm, 0.95, 0.0)?,
        }
        if let Some(own) = &self.own {
            self.collectives.gather_params(own, &params)?;
        }
        self.step += 1;
        Ok(RlStep {
            step: self.step,
            mean_reward: reward_sum / count.max(1) as f64,
            mean_tokens: token_sum as f64 / count.max(1) as f64,
            lr_multiplier: lrm,
        })
    }

    /// Gradients of -sum(advantage * log p(token)) / `valid` (the step's sampled tokens, over
    /// every rank) over the rollouts `(tokens, trained mask, advantage)`, one forward per
    /// prompt's group of samples.
    fn policy_gradient(
        &self,
        rollouts: &[(Vec<u32>, Vec<bool>, f64)],
        valid: usize,
    ) -> Result<Grads> {
        let model = self.engine.model();
        let params: Vec<Tensor> = model.parameters();
        let mut grads = Grads::default();
        for group in rollouts.chunks(self.cfg.num_samples.max(1)) {
            let t = group.iter().map(|(r, _, _)| r.len() - 1).max().unwrap_or(0);
            if t == 0 {
                continue;
            }
            let b = group.len();
            let mut idx = vec![0u32; b * t];
            let mut targets = vec![-1i32; b * t];
            let mut weights = vec![0f32; b * t];
            for (i, (row, mask, adv)) in group.iter().enumerate() {
                for p in 0..row.len() - 1 {
                    idx[i * t + p] = row[p];
                    if mask[p + 1] {
                        targets[i * t + p] = row[p + 1] as i32;
                        weights[i * t + p] = (*adv / valid.max(1) as f64) as f32;
                    }
                }
            }
            let tape = Tape::watching(&params);
            // Per-token cross-entropy is -log p; weighting by the advantage and summing gives
            // the negated policy-gradient objective.
            let ce = model.forward(
                &idx,
                (b, t),
                ForwardOptions::new()
                    .tape(&tape)
                    .targets(&targets, Reduction::None),
            )?;
            let w = Tensor::from_f32(model.get_device(), &weights, &[b, t], DType::F32)?;
            let loss = ops::sum(Some(&tape), &ops::mul(Some(&tape), &ce, &w)?)?;
            grads.merge(tape.backward(&loss)?)?;
        }
        Ok(grads)
    }
}

/// The mean reward of `num_samples` samples on each of the first `examples` prompts of `task`
/// (evaluation: no update).
pub fn mean_reward(
    engine: &Engine,
    task: &dyn Task,
    examples: usize,
    params: &GenerateParams,
) -> Result<f64> {
    let tok = engine.tokenizer();
    let (mut sum, mut count) = (0.0, 0usize);
    // Across ranks, prompt i goes to rank i % world (seeded by i); the sums are added after.
    let dist = crate::dist::world();
    let (rank, world) = (dist.rank(), dist.world_size());
    for i in (0..examples.min(task.num_examples())).filter(|i| i % world == rank) {
        let conv = task.get_example(i)?;
        let prompt = tok.render_for_completion(&conv)?;
        let params = GenerateParams {
            seed: params.seed.map(|s| s.wrapping_add(i as u64)),
            ..params.clone()
        };
        let (rows, _) = engine.generate_batch(&prompt, &params)?;
        for r in &rows {
            sum += task.reward_example(i, &conv, &tok.decode(&r[prompt.len()..])?);
            count += 1;
        }
    }
    let mut sums = [sum, count as f64];
    if dist.is_distributed() {
        dist.all_reduce_f64(&mut sums, crate::dist::ReduceOp::Sum)?;
    }
    Ok(sums[0] / (sums[1] as usize).max(1) as f64)
}
