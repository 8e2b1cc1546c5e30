//! The optimizer of a training run under either recipe ([`crate::recipe::Recipe`]): v1's
//! AdamW + Muon pair ([`Optimizer`]) with its learning-rate schedule and momentum warmup, or
//! HEAD's [`MuonAdamW`] with [`HeadSchedule`]'s learning rate, momentum and weight decay
//! (`scripts/base_train.py` at 16788ee and at 92d63d4). [`OptimizerState`] is what a checkpoint
//! saves and restores of either.

use super::{muon_momentum, LrSchedule, MuonAdamW, MuonAdamWConfig, OptimConfig, Optimizer};
use crate::model::GPT;
use crate::recipe::{HeadSchedule, SftSchedule};
use crate::{Grads, Result, Tensor};

/// What a checkpoint keeps of an optimizer: its step count and its state as named tensors.
pub trait OptimizerState {
    /// Steps taken.
    fn steps(&self) -> u32;
    /// The state as named f32 tensors (names as PyTorch's optimizer state: `<param>.exp_avg`,
    /// `<param>.momentum_buffer`, ...).
    fn state_tensors(&self) -> Result<Vec<(String, Tensor)>>;
    /// Restores the step count and the state; `get(name, like)` returns the named tensor
    /// shaped like `like` (or an error naming it).
    fn load_state(
        &mut self,
        step: u32,
        get: &mut dyn FnMut(&str, &Tensor) -> Result<Tensor>,
    ) -> Result<()>;
}

impl OptimizerState for Optimizer {
    fn steps(&self) -> u32 {
        Optimizer::steps(self)
    }
    fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(Optimizer::state_tensors(self))
    }
    fn load_state(
        &mut self,
        step: u32,
        get: &mut dyn FnMut(&str, &Tensor) -> Result<Tensor>,
    ) -> Result<()> {
        Optimizer::load_state(self, step, get)
    }
}

impl OptimizerState for MuonAdamW {
    fn steps(&self) -> u32 {
        MuonAdamW::steps(self)
    }
    fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        MuonAdamW::state_tensors(self)
    }
    fn load_state(
        &mut self,
        step: u32,
        get: &mut dyn FnMut(&str, &Tensor) -> Result<Tensor>,
    ) -> Result<()> {
        MuonAdamW::load_state(self, step, get)
    }
}

/// The optimizer settings of a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimSettings {
    /// v1: AdamW for the embedding and lm_head, Muon for the blocks' matrices.
    V1(OptimConfig),
    /// HEAD: `MuonAdamW` with these base rates (already times `batch_lr_scale`).
    Head(MuonAdamWConfig),
}

/// HEAD's SFT schedules as a run applies them (`scripts/chat_sft.py` at 92d63d4): the
/// learning rate follows the progress through the data before the step (or `step /
/// num_iterations` when the steps are given), Muon's momentum the step, and Muon's weight
/// decay stays what the warm-started optimizer last used.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SftSchedules {
    /// The multiplier functions and `init_lr_frac`.
    pub schedule: SftSchedule,
    /// `--num-iterations`: the progress at 0-based step `it` is `it / num_iterations`;
    /// `None`: the loader's (conversations consumed before the step over the dataset's size).
    pub num_iterations: Option<usize>,
    /// Optimizer steps of the run.
    pub total_steps: usize,
    /// Muon's weight decay, constant (the pretraining optimizer's last value when warm-started,
    /// else 0).
    pub weight_decay: f64,
}

/// The schedules of a run, as functions of the 0-based optimizer step (and, for SFT, of the
/// progress through the data).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedules {
    /// v1: [`LrSchedule`] and [`muon_momentum`] (0.85 to 0.95 over 300 steps), no weight
    /// decay schedule.
    V1(LrSchedule),
    /// HEAD: [`HeadSchedule`] (warmup steps, warmdown to a final fraction, Muon's momentum and
    /// weight decay).
    Head(HeadSchedule),
    /// HEAD's SFT ([`SftSchedules`]).
    Sft(SftSchedules),
}

impl Schedules {
    /// The learning-rate multiplier at step `it` with `progress` in [0, 1] through the data
    /// (nanochat's `lrm`; SFT's includes `init_lr_frac`, which HEAD folds into every group's
    /// `initial_lr`). Only SFT reads `progress`.
    pub fn lr_multiplier(&self, it: usize, progress: f64) -> f64 {
        match self {
            Schedules::V1(s) => s.multiplier(it),
            Schedules::Head(s) => s.lr_multiplier(it),
            Schedules::Sft(s) => {
                // Clamped to 1 (HEAD lets the multiplier go below `final_lr_frac` when the
                // last batches consume past the pass).
                let p = s
                    .num_iterations
                    .map_or(progress, |n| it as f64 / n.max(1) as f64)
                    .min(1.0);
                s.schedule.init_lr_frac * s.schedule.lr_multiplier(p)
            }
        }
    }

    /// Muon's momentum at step `it`.
    pub fn muon_momentum(&self, it: usize) -> f64 {
        match self {
            Schedules::V1(_) => muon_momentum(it) as f64,
            Schedules::Head(s) => s.muon_momentum(it),
            Schedules::Sft(s) => s.schedule.muon_momentum(it),
        }
    }

    /// Muon's (cautious) weight decay at step `it`; 0 under v1.
    pub fn muon_weight_decay(&self, it: usize) -> f64 {
        match self {
            Schedules::V1(_) => 0.0,
            Schedules::Head(s) => s.muon_weight_decay(it),
            Schedules::Sft(s) => s.weight_decay,
        }
    }

    /// The optimizer steps the schedule spans.
    pub fn total_steps(&self) -> usize {
        match self {
            Schedules::V1(s) => s.total_steps,
            Schedules::Head(s) => s.num_iterations,
            Schedules::Sft(s) => s.total_steps,
        }
    }
}

/// A run's optimizer: v1's pair or HEAD's `MuonAdamW`.
pub enum TrainOptimizer {
    /// nanochat v1's AdamW + Muon.
    V1(Optimizer),
    /// nanochat HEAD's MuonAdamW.
    Head(MuonAdamW),
}

impl TrainOptimizer {
    /// The optimizer of `settings` over `model`'s parameters, step 0.
    ///
    /// Errors: HEAD's settings over a v1 model ([`MuonAdamW::new`]).
    pub fn new(model: &GPT, settings: &OptimSettings) -> Result<TrainOptimizer> {
        Ok(match settings {
            OptimSettings::V1(c) => TrainOptimizer::V1(Optimizer::new(model, c)),
            OptimSettings::Head(c) => TrainOptimizer::Head(MuonAdamW::new(model, c)?),
        })
    }

    /// One update of every parameter at 0-based step `it` of `schedules`, `progress` through
    /// the data. Errors: the optimizers' (a missing gradient, a mismatched one).
    pub fn step(
        &mut self,
        grads: &Grads,
        schedules: &Schedules,
        it: usize,
        progress: f64,
    ) -> Result<()> {
        let lrm = schedules.lr_multiplier(it, progress);
        let momentum = schedules.muon_momentum(it);
        self.step_with(grads, lrm, momentum, schedules.muon_weight_decay(it))
    }

    /// One update with these settings: every group's rate times `lrm`, Muon's `momentum` and
    /// (HEAD) weight decay. Errors: as [`TrainOptimizer::step`].
    pub fn step_with(&mut self, grads: &Grads, lrm: f64, momentum: f64, wd: f64) -> Result<()> {
        match self {
            TrainOptimizer::V1(o) => o.step(grads, lrm as f32, momentum as f32),
            TrainOptimizer::Head(o) => o.step(grads, lrm, momentum, wd),
        }
    }

    /// Shards the optimizer ([`Optimizer::set_owned`], [`MuonAdamW::set_owned`]): only the
    /// parameters whose `owned` entry is true are updated and keep state.
    pub fn set_owned(&mut self, owned: &[bool]) -> Result<()> {
        match self {
            TrainOptimizer::V1(o) => o.set_owned(owned),
            TrainOptimizer::Head(o) => o.set_owned(owned),
        }
    }

    /// Whether each parameter (in `named_parameters` order) is updated by Muon (a matrix whose
    /// update is orthogonalised) rather than AdamW.
    pub fn muon_mask(&self) -> Vec<bool> {
        match self {
            TrainOptimizer::V1(o) => o
                .rules()
                .iter()
                .map(|(_, r)| matches!(r, super::Rule::Muon(_)))
                .collect(),
            TrainOptimizer::Head(o) => o.muon_mask(),
        }
    }

    fn state(&self) -> &dyn OptimizerState {
        match self {
            TrainOptimizer::V1(o) => o,
            TrainOptimizer::Head(o) => o,
        }
    }

    fn state_mut(&mut self) -> &mut dyn OptimizerState {
        match self {
            TrainOptimizer::V1(o) => o,
            TrainOptimizer::Head(o) => o,
        }
    }
}

impl OptimizerState for TrainOptimizer {
    fn steps(&self) -> u32 {
        self.state().steps()
    }
    fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        self.state().state_tensors()
    }
    fn load_state(
        &mut self,
        step: u32,
        get: &mut dyn FnMut(&str, &Tensor) -> Result<Tensor>,
    ) -> Result<()> {
        self.state_mut().load_state(step, get)
    }
}
