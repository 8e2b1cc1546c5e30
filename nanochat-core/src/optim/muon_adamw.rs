//! nanochat HEAD's single optimizer, `MuonAdamW` (`nanochat/optim.py` and
//! `GPT.setup_optimizer` in `nanochat/gpt.py` at 92d63d4): six AdamW groups (lm_head, wte,
//! the value embeddings, resid_lambdas, x0_lambdas, and the smear/backout scalars) and one Muon
//! group per distinct matrix shape under `transformer.h` (the value-embedding gates included),
//! stepped by HEAD's Muon ([`nanochat_kernels::muon_head`]: MuonEq, Polar Express, Muon+,
//! NorMuon, cautious weight decay).
//!
//! Every group's rate is its `initial_lr` times the schedule's multiplier; Muon's momentum and
//! weight decay are scheduled too ([`crate::recipe::HeadSchedule`]).

use nanochat_kernels::muon_head::{
    muon_head_step_group, normuon_per_row, MuonHeadStep, MuonMatrix,
};

use super::adamw::{adamw_state, adamw_state_tensors, adamw_update, load_adamw_state, AdamWConfig};
use crate::model::GPT;
use crate::{CoreError, DType, Grads, Result, Tensor};

/// The rates of `setup_optimizer` (HEAD's defaults; base_train passes its CLI values times
/// `batch_lr_scale`, and `weight_decay_scaled`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MuonAdamWConfig {
    /// lm_head's AdamW rate before the `(n_embd / 768)^-0.5` scale (0.004).
    pub unembedding_lr: f64,
    /// wte's AdamW rate before that scale (0.2; the value embeddings get half).
    pub embedding_lr: f64,
    /// Muon's rate (0.02).
    pub matrix_lr: f64,
    /// x0_lambdas' rate (0.5; resid_lambdas get 0.01 of it).
    pub scalar_lr: f64,
    /// Muon's weight decay (0).
    pub weight_decay: f64,
}

impl Default for MuonAdamWConfig {
    fn default() -> Self {
        MuonAdamWConfig {
            unembedding_lr: 0.004,
            embedding_lr: 0.2,
            matrix_lr: 0.02,
            scalar_lr: 0.5,
            weight_decay: 0.0,
        }
    }
}

/// What a group does to its parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GroupKind {
    /// AdamW with these settings.
    AdamW {
        /// (beta1, beta2).
        betas: (f64, f64),
        /// Added to the root of the second moment.
        eps: f64,
        /// Decoupled weight decay (constant).
        weight_decay: f64,
    },
    /// HEAD's Muon over matrices of one shape.
    Muon {
        /// The matrices' (rows, cols).
        shape: (usize, usize),
        /// Polar Express iterations (5).
        ns_steps: usize,
        /// NorMuon's decay (0.9).
        beta2: f64,
    },
}

/// One parameter group, as HEAD builds it.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamGroup {
    /// AdamW or Muon, with its settings.
    pub kind: GroupKind,
    /// The parameters' state_dict names, in group order.
    pub params: Vec<String>,
    /// The rate the schedule multiplies (`initial_lr`).
    pub initial_lr: f64,
}

/// HEAD's parameter groups for `model` (`setup_optimizer`): the six AdamW groups in HEAD's
/// order (only those with parameters), then the Muon groups sorted by shape.
///
/// Errors: [`CoreError::Unsupported`] for a model that is not HEAD's architecture.
pub fn head_param_groups(model: &GPT, config: &MuonAdamWConfig) -> Result<Vec<ParamGroup>> {
    if model.config().architecture != crate::model::Architecture::Head {
        return Err(CoreError::Unsupported {
            op: "MuonAdamW",
            why: "HEAD's optimizer is for architecture head models (v1 uses AdamW + Muon)".into(),
        });
    }
    let names: Vec<(String, Vec<usize>)> = model
        .named_parameters()
        .into_iter()
        .map(|(n, t)| (n, t.shape().to_vec()))
        .collect();
    let s = (model.config().n_embd as f64 / 768.0).powf(-0.5);
    let adamw = |betas, weight_decay| GroupKind::AdamW {
        betas,
        eps: 1e-10,
        weight_decay,
    };
    let pick = |f: &dyn Fn(&str) -> bool| -> Vec<String> {
        names
            .iter()
            .filter(|(n, _)| f(n))
            .map(|(n, _)| n.clone())
            .collect()
    };
    let c = config;
    let mut groups = vec![
        ParamGroup {
            kind: adamw((0.8, 0.96), 0.01),
            params: pick(&|n| n == "lm_head.weight"),
            initial_lr: c.unembedding_lr * s,
        },
        ParamGroup {
            kind: adamw((0.8, 0.995), 0.001),
            params: pick(&|n| n == "transformer.wte.weight"),
            initial_lr: c.embedding_lr * s,
        },
        ParamGroup {
            kind: adamw((0.8, 0.995), 0.01),
            params: pick(&|n| n.starts_with("value_embeds.")),
            initial_lr: c.embedding_lr * s * 0.5,
        },
        ParamGroup {
            kind: adamw((0.8, 0.95), 0.05),
            params: pick(&|n| n == "resid_lambdas"),
            initial_lr: c.scalar_lr * 0.01,
        },
        ParamGroup {
            kind: adamw((0.96, 0.95), 0.0),
            params: pick(&|n| n == "x0_lambdas"),
            initial_lr: c.scalar_lr,
        },
        ParamGroup {
            kind: adamw((0.8, 0.95), 0.0),
            // HEAD's order: the gate, then the two scalars.
            params: ["smear_gate.weight", "smear_lambda", "backout_lambda"]
                .iter()
                .filter(|n| names.iter().any(|(m, _)| m == *n))
                .map(|n| n.to_string())
                .collect(),
            initial_lr: 0.2,
        },
    ];
    groups.retain(|g| !g.params.is_empty());
    let mut shapes: Vec<(usize, usize)> = names
        .iter()
        .filter(|(n, _)| n.starts_with("transformer.h."))
        .map(|(_, s)| (s[0], s[1]))
        .collect();
    shapes.sort_unstable();
    shapes.dedup();
    for shape in shapes {
        groups.push(ParamGroup {
            kind: GroupKind::Muon {
                shape,
                ns_steps: 5,
                beta2: 0.9,
            },
            params: pick(&|n| {
                n.starts_with("transformer.h.")
                    && names.iter().any(|(m, s)| m == n && (s[0], s[1]) == shape)
            }),
            initial_lr: c.matrix_lr,
        });
    }
    let grouped: usize = groups.iter().map(|g| g.params.len()).sum();
    if grouped != names.len() {
        let missing = names
            .iter()
            .find(|(n, _)| !groups.iter().any(|g| g.params.contains(n)))
            .map_or_else(String::new, |(n, _)| n.clone());
        return Err(CoreError::Unsupported {
            op: "MuonAdamW",
            why: format!("parameter {missing} belongs to no group"),
        });
    }
    Ok(groups)
}

enum State {
    AdamW(Tensor, Tensor),
    /// Momentum buffer and NorMuon's second moment ((rows) or (cols) values).
    Muon(Tensor, Vec<f64>),
}

struct Slot {
    name: String,
    param: Tensor,
    group: usize,
    state: Option<State>,
    /// Stored in bfloat16 (nanochat keeps `wte` and the value embeddings so on GPUs): the
    /// parameter and its moments are rounded to bf16 after each f32 update.
    bf16: bool,
    /// Whether this process updates the parameter ([`MuonAdamW::set_owned`]).
    owned: bool,
}

/// HEAD's `MuonAdamW` over a model's parameters; state is created on a parameter's first step.
pub struct MuonAdamW {
    groups: Vec<ParamGroup>,
    slots: Vec<Slot>,
    step: u32,
}

impl MuonAdamW {
    /// The optimizer of `model` with `config`'s rates ([`head_param_groups`]).
    ///
    /// Errors: a model that is not HEAD's architecture.
    pub fn new(model: &GPT, config: &MuonAdamWConfig) -> Result<MuonAdamW> {
        let groups = head_param_groups(model, config)?;
        let slots = model
            .named_parameters()
            .into_iter()
            .map(|(name, param)| Slot {
                group: groups
                    .iter()
                    .position(|g| g.params.contains(&name))
                    .expect("every parameter is grouped"),
                name,
                param,
                state: None,
                bf16: false,
                owned: true,
            })
            .collect();
        Ok(MuonAdamW {
            groups,
            slots,
            step: 0,
        })
    }

    /// Keeps the named AdamW parameters in bfloat16 storage from now on, as nanochat does for
    /// parameters it holds in bf16 (`wte` and `value_embeds.*` of a HEAD checkpoint saved on a
    /// GPU, which a resume keeps bf16): after each f32 update the parameter and both moments
    /// are rounded to bf16 (their values are made bf16 now too). The bf16 gradient of such a
    /// table is the model's ([`crate::model::GPT::keep_in_bf16`]), not rounded again here. Errors:
    /// [`CoreError::InvalidArgument`] for a name that is not one of the optimizer's AdamW
    /// parameters.
    pub fn keep_in_bf16(&mut self, names: &[String]) -> Result<()> {
        for name in names {
            let Some(slot) = self.slots.iter_mut().find(|s| &s.name == name) else {
                return Err(CoreError::invalid(
                    "bf16 parameter",
                    name,
                    "a parameter of the model",
                ));
            };
            if !matches!(self.groups[slot.group].kind, GroupKind::AdamW { .. }) {
                return Err(CoreError::invalid(
                    "bf16 parameter",
                    name,
                    "an AdamW parameter (Muon's matrices stay f32)",
                ));
            }
            slot.bf16 = true;
            crate::ops::round_bf16_in_place(&slot.param)?;
            if let Some(State::AdamW(m, v)) = &slot.state {
                crate::ops::round_bf16_in_place(m)?;
                crate::ops::round_bf16_in_place(v)?;
            }
        }
        Ok(())
    }

    /// The names of the parameters kept in bf16 storage ([`MuonAdamW::keep_in_bf16`]).
    pub fn bf16_params(&self) -> Vec<String> {
        self.slots
            .iter()
            .filter(|s| s.bf16)
            .map(|s| s.name.clone())
            .collect()
    }

    /// Shards the optimizer: only the parameters whose `owned` entry is true (in
    /// `named_parameters` order) are updated and keep state; the others' state is dropped
    /// (HEAD's `DistMuonAdamW` at the granularity of whole parameters:
    /// [`crate::dist::Ownership`]). Errors: [`CoreError::Mismatch`] for a mask of another
    /// length.
    pub fn set_owned(&mut self, owned: &[bool]) -> Result<()> {
        super::nanochat::set_owned(
            self.slots.iter_mut().map(|s| (&mut s.owned, &mut s.state)),
            owned,
        )
    }

    /// Whether each parameter (in `named_parameters` order) is in a Muon group.
    pub fn muon_mask(&self) -> Vec<bool> {
        self.slots
            .iter()
            .map(|s| matches!(self.groups[s.group].kind, GroupKind::Muon { .. }))
            .collect()
    }

    /// The parameter groups.
    pub fn groups(&self) -> &[ParamGroup] {
        &self.groups
    }

    /// Steps taken.
    pub fn steps(&self) -> u32 {
        self.step
    }

    /// Updates every parameter in place (every owned one, under [`MuonAdamW::set_owned`]):
    /// each group at `initial_lr * lr_multiplier`, Muon at
    /// `muon_momentum` with cautious weight decay `muon_weight_decay`. Every parameter must
    /// have a gradient ([`CoreError::NoGradient`] naming it otherwise); a gradient of another
    /// shape or dtype is [`CoreError::Mismatch`].
    pub fn step(
        &mut self,
        grads: &Grads,
        lr_multiplier: f64,
        muon_momentum: f64,
        muon_weight_decay: f64,
    ) -> Result<()> {
        self.step += 1;
        for slot in self.slots.iter_mut().filter(|s| s.owned) {
            let group = &self.groups[slot.group];
            let GroupKind::AdamW {
                betas,
                eps,
                weight_decay,
            } = group.kind
            else {
                continue;
            };
            let grad = grads.require(&slot.param, &slot.name)?;
            let lr = group.initial_lr * lr_multiplier;
            if slot.state.is_none() {
                let (m, v) = adamw_state(&slot.param)?;
                slot.state = Some(State::AdamW(m, v));
            }
            let Some(State::AdamW(m, v)) = &slot.state else {
                unreachable!("AdamW state")
            };
            let config = AdamWConfig {
                lr: lr as f32,
                betas: (betas.0 as f32, betas.1 as f32),
                eps: eps as f32,
                weight_decay: weight_decay as f32,
            };
            adamw_update(&slot.param, grad, (m, v), &config, lr as f32, self.step)?;
            if slot.bf16 {
                // nanochat's AdamW computes in f32 and writes back into the bf16
                // parameter and moments.
                for t in [&slot.param, m, v] {
                    crate::ops::round_bf16_in_place(t)?;
                }
            }
        }
        for gi in 0..self.groups.len() {
            self.step_muon_group(gi, grads, lr_multiplier, muon_momentum, muon_weight_decay)?;
        }
        Ok(())
    }

    /// One Muon step of every owned matrix of group `gi` (no-op for an AdamW group), as one
    /// stack ([`muon_head_step_group`]): HEAD stacks the matrices of one shape.
    fn step_muon_group(
        &mut self,
        gi: usize,
        grads: &Grads,
        lr_multiplier: f64,
        muon_momentum: f64,
        muon_weight_decay: f64,
    ) -> Result<()> {
        let group = &self.groups[gi];
        let GroupKind::Muon {
            shape: (rows, cols),
            ns_steps,
            beta2,
        } = group.kind
        else {
            return Ok(());
        };
        let h = MuonHeadStep {
            lr: (group.initial_lr * lr_multiplier) as f32,
            momentum: muon_momentum as f32,
            beta2: beta2 as f32,
            weight_decay: muon_weight_decay as f32,
            ns_steps,
        };
        let mut like: Option<&Tensor> = None;
        let mut mats = Vec::new();
        for slot in self.slots.iter_mut().filter(|s| s.owned && s.group == gi) {
            let grad = grads.require(&slot.param, &slot.name)?;
            let param = &slot.param;
            if grad.shape() != param.shape() || grad.dtype() != param.dtype() {
                return Err(CoreError::Mismatch {
                    op: "muon",
                    why: format!("gradient {grad:?} for parameter {param:?}"),
                });
            }
            if let Some(first) = like {
                if first.dtype() != param.dtype() || first.shape() != param.shape() {
                    return Err(CoreError::Mismatch {
                        op: "muon",
                        why: format!("{} is {param:?} in a group of {first:?}", slot.name),
                    });
                }
            }
            if slot.state.is_none() {
                let n = if normuon_per_row(rows, cols) {
                    rows
                } else {
                    cols
                };
                slot.state = Some(State::Muon(param.full_like(0.0)?, vec![0.0; n]));
            }
            let Some(State::Muon(buf, second)) = &mut slot.state else {
                unreachable!("Muon state")
            };
            like.get_or_insert(param);
            mats.push(MuonMatrix {
                param: param.handle(),
                grad: grad.handle(),
                momentum: buf.handle(),
                second: second.as_mut_slice(),
            });
        }
        let Some(p) = like else {
            return Ok(());
        };
        crate::ops::launch!(p, F, c => muon_head_step_group::<F>(c, &mut mats, rows, cols, &h))?;
        // HEAD keeps this buffer in the parameters' dtype (f32 master weights), and a
        // checkpoint saves it as f32: rounding here makes a resume bit-identical.
        for m in &mut mats {
            for x in m.second.iter_mut() {
                *x = *x as f32 as f64;
            }
        }
        Ok(())
    }

    /// The optimizer state as named tensors (`<param>.exp_avg`, `<param>.exp_avg_sq`,
    /// `<param>.momentum_buffer`, `<param>.second_momentum_buffer` (rows, 1) or (1, cols), f32),
    /// for checkpoints.
    pub fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for s in &self.slots {
            match &s.state {
                Some(State::AdamW(m, v)) => out.extend(adamw_state_tensors(&s.name, m, v)),
                Some(State::Muon(b, second)) => {
                    out.push((format!("{}.momentum_buffer", s.name), b.clone()));
                    let (rows, cols) = s.param.dims2()?;
                    let shape = if normuon_per_row(rows, cols) {
                        [rows, 1]
                    } else {
                        [1, cols]
                    };
                    let v: Vec<f32> = second.iter().map(|&x| x as f32).collect();
                    let t = Tensor::from_f32(s.param.device(), &v, &shape, DType::F32)?;
                    out.push((format!("{}.second_momentum_buffer", s.name), t));
                }
                None => {}
            }
        }
        Ok(out)
    }

    /// Restores the step count and the state of [`MuonAdamW::state_tensors`]; `get(name,
    /// like)` returns the named tensor (or an error naming it), `like` giving its expected
    /// shape.
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
            s.state = Some(match self.groups[s.group].kind {
                GroupKind::AdamW { .. } => {
                    let (m, v) = load_adamw_state(&s.name, &s.param, &mut get)?;
                    State::AdamW(m, v)
                }
                GroupKind::Muon {
                    shape: (rows, cols),
                    ..
                } => {
                    let shape = if normuon_per_row(rows, cols) {
                        [rows, 1]
                    } else {
                        [1, cols]
                    };
                    let like = Tensor::zeros(s.param.device(), &shape, DType::F32)?;
                    let second = get(&format!("{}.second_momentum_buffer", s.name), &like)?;
                    State::Muon(
                        get(&format!("{}.momentum_buffer", s.name), &s.param)?,
                        second.to_vec_f32()?.iter().map(|&x| x as f64).collect(),
                    )
                }
            });
        }
        Ok(())
    }
}
