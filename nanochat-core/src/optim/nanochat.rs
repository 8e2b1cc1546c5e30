//! nanochat's `setup_optimizers`: AdamW for the embedding (lr 0.2), the unembedding `lm_head`
//! (lr 0.004) and any biases (the unembedding rate), each scaled by `(n_embd / 768)^-0.5`;
//! Muon (lr 0.02) for every matrix in the blocks. One [`Optimizer`] steps them all, with the
//! schedule's multiplier and Muon's current momentum.

use super::adamw::{adamw_state, adamw_state_tensors, adamw_update, load_adamw_state, AdamWConfig};
use super::muon::{muon_update, MuonConfig};
use crate::model::GPT;
use crate::{Grads, Result, Tensor};

/// Peak learning rates and hyper-parameters of the two optimizers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptimConfig {
    /// AdamW peak rate of `lm_head` and biases before the `(n_embd / 768)^-0.5` scale (0.004).
    pub unembedding_lr: f32,
    /// AdamW peak rate of `transformer.wte` before the `(n_embd / 768)^-0.5` scale (0.2).
    pub embedding_lr: f32,
    /// Muon peak rate of the blocks' matrices (0.02).
    pub matrix_lr: f32,
    /// AdamW's decoupled weight decay (0).
    pub weight_decay: f32,
    /// AdamW's (beta1, beta2) ((0.8, 0.95)).
    pub adam_betas: (f32, f32),
    /// AdamW's epsilon (1e-10).
    pub adam_eps: f32,
    /// Muon's Newton-Schulz iterations (5).
    pub ns_steps: usize,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            unembedding_lr: 0.004,
            embedding_lr: 0.2,
            matrix_lr: 0.02,
            weight_decay: 0.0,
            adam_betas: (0.8, 0.95),
            adam_eps: 1e-10,
            ns_steps: 5,
        }
    }
}

impl OptimConfig {
    /// `--lr`: the peak Muon rate; the AdamW rates scale by the same factor from their defaults.
    pub fn with_peak_lr(lr: f32) -> OptimConfig {
        let d = OptimConfig::default();
        let k = lr / d.matrix_lr;
        OptimConfig {
            matrix_lr: lr,
            unembedding_lr: d.unembedding_lr * k,
            embedding_lr: d.embedding_lr * k,
            ..d
        }
    }
}

/// How one parameter is updated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// AdamW at this peak learning rate.
    AdamW(f32),
    /// Muon at this peak learning rate.
    Muon(f32),
}

enum State {
    AdamW(Tensor, Tensor),
    Muon(Tensor),
}

struct Slot {
    name: String,
    param: Tensor,
    rule: Rule,
    state: Option<State>,
    /// Whether this process updates the parameter (all do but under a sharded optimizer:
    /// [`Optimizer::set_owned`]).
    owned: bool,
}

/// nanochat's optimizer pair over a model's parameters (`GPT.setup_optimizer` in
/// `nanochat/gpt.py`): each parameter gets a [`Rule`] from [`rule_for`]; state is created on
/// its first step.
pub struct Optimizer {
    slots: Vec<Slot>,
    adamw: AdamWConfig,
    muon: MuonConfig,
    step: u32,
}

/// The rule nanochat gives a parameter of this state_dict name in a model of width `n_embd`:
/// AdamW for `transformer.wte.weight` (embedding rate) and for `lm_head.weight` and every bias
/// (unembedding rate), both scaled by `(n_embd / 768)^-0.5`; Muon for the blocks' weights.
pub fn rule_for(name: &str, config: &OptimConfig, n_embd: usize) -> Rule {
    let scale = (n_embd as f32 / 768.0).powf(-0.5);
    if name == "transformer.wte.weight" {
        Rule::AdamW(config.embedding_lr * scale)
    } else if name.starts_with("transformer.h.") && name.ends_with(".weight") {
        Rule::Muon(config.matrix_lr)
    } else {
        // lm_head.weight and every bias.
        Rule::AdamW(config.unembedding_lr * scale)
    }
}

impl Optimizer {
    /// One slot per parameter of `model` (in `named_parameters` order), no state yet (step 0).
    pub fn new(model: &GPT, config: &OptimConfig) -> Optimizer {
        let n_embd = model.config().n_embd;
        let slots = model
            .named_parameters()
            .into_iter()
            .map(|(name, param)| Slot {
                rule: rule_for(&name, config, n_embd),
                name,
                param,
                state: None,
                owned: true,
            })
            .collect();
        Optimizer {
            slots,
            adamw: AdamWConfig {
                lr: 0.0,
                betas: config.adam_betas,
                eps: config.adam_eps,
                weight_decay: config.weight_decay,
            },
            muon: MuonConfig {
                ns_steps: config.ns_steps,
                ..MuonConfig::default()
            },
            step: 0,
        }
    }

    /// Steps taken.
    pub fn steps(&self) -> u32 {
        self.step
    }

    /// (name, rule) of every parameter.
    pub fn rules(&self) -> Vec<(String, Rule)> {
        self.slots
            .iter()
            .map(|s| (s.name.clone(), s.rule))
            .collect()
    }

    /// Shards the optimizer: only the parameters whose `owned` entry is true (in
    /// `named_parameters` order) are updated, and only they keep state
    /// ([`crate::dist::Ownership::mask`]); the others' state is dropped. Errors:
    /// [`CoreError::Mismatch`](crate::CoreError::Mismatch) for a mask of another length.
    pub fn set_owned(&mut self, owned: &[bool]) -> Result<()> {
        set_owned(
            self.slots.iter_mut().map(|s| (&mut s.owned, &mut s.state)),
            owned,
        )
    }

    /// Updates every parameter in place (every owned one, under [`Optimizer::set_owned`]):
    /// learning rates times `lr_multiplier`, Muon at `muon_momentum`. Every parameter must have
    /// a gradient
    /// ([`NoGradient`](crate::CoreError::NoGradient) naming it otherwise); a gradient of
    /// another shape or dtype is [`Mismatch`](crate::CoreError::Mismatch).
    pub fn step(&mut self, grads: &Grads, lr_multiplier: f32, muon_momentum: f32) -> Result<()> {
        self.step += 1;
        for slot in self.slots.iter_mut().filter(|s| s.owned) {
            let grad = grads.require(&slot.param, &slot.name)?;
            match slot.rule {
                Rule::AdamW(lr) => {
                    if slot.state.is_none() {
                        let (m, v) = adamw_state(&slot.param)?;
                        slot.state = Some(State::AdamW(m, v));
                    }
                    let Some(State::AdamW(m, v)) = &slot.state else {
                        unreachable!("AdamW state")
                    };
                    adamw_update(
                        &slot.param,
                        grad,
                        (m, v),
                        &self.adamw,
                        lr * lr_multiplier,
                        self.step,
                    )?;
                }
                Rule::Muon(lr) => {
                    if slot.state.is_none() {
                        slot.state = Some(State::Muon(slot.param.full_like(0.0)?));
                    }
                    let Some(State::Muon(buf)) = &slot.state else {
                        unreachable!("Muon state")
                    };
                    let m = &self.muon;
                    muon_update(
                        &slot.param,
                        grad,
                        buf,
                        lr * lr_multiplier,
                        muon_momentum,
                        m.nesterov,
                        m.ns_steps,
                    )?;
                }
            }
        }
        Ok(())
    }

    /// The optimizer state as named tensors (`<param>.exp_avg`, `<param>.exp_avg_sq`,
    /// `<param>.momentum_buffer`), for checkpoints.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for s in &self.slots {
            match &s.state {
                Some(State::AdamW(m, v)) => out.extend(adamw_state_tensors(&s.name, m, v)),
                Some(State::Muon(b)) => {
                    out.push((format!("{}.momentum_buffer", s.name), b.clone()))
                }
                None => {}
            }
        }
        out
    }

    /// Restores the step count and the state saved by [`Optimizer::state_tensors`]; `get`
    /// returns a named tensor (or an error naming it).
    pub fn load_state(
        &mut self,
        step: u32,
        mut get: impl FnMut(&str, &Tensor) -> Result<Tensor>,
    ) -> Result<()> {
        self.step = step;
        if step == 0 {
            return Ok(());
        }
        for s in self.slots.iter_mut().filter(|s| s.owned) {
            s.state = Some(match s.rule {
                Rule::AdamW(_) => {
                    let (m, v) = load_adamw_state(&s.name, &s.param, &mut get)?;
                    State::AdamW(m, v)
                }
                Rule::Muon(_) => {
                    State::Muon(get(&format!("{}.momentum_buffer", s.name), &s.param)?)
                }
            });
        }
        Ok(())
    }
}

/// Sets the `owned` flag of each slot from `mask`, dropping the state of those no longer owned.
pub(crate) fn set_owned<'a, S: 'a>(
    slots: impl ExactSizeIterator<Item = (&'a mut bool, &'a mut Option<S>)>,
    mask: &[bool],
) -> Result<()> {
    if slots.len() != mask.len() {
        return Err(crate::CoreError::Mismatch {
            op: "optimizer shard",
            why: format!(
                "a mask of {} parameters for {} parameters",
                mask.len(),
                slots.len()
            ),
        });
    }
    for ((owned, state), &m) in slots.zip(mask) {
        *owned = m;
        if !m {
            *state = None;
        }
    }
    Ok(())
}
