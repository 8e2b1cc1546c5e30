//! HEAD's optimizer file written from ours: `MuonAdamW.state_dict()` as nanochat 92d63d4 saves it
//! (`nanochat/optim.py`, one rank): `param_groups` in [`crate::optim::head_param_groups`]' order (six AdamW
//! groups, then one Muon group per matrix shape, sorted as `setup_optimizer` sorts them), each
//! with `kind`, `lr`, `initial_lr`, and `betas`/`eps`/`weight_decay` or
//! `momentum`/`ns_steps`/`beta2`/`weight_decay`, and `params` numbering the parameters of all
//! groups in order; `state`: per AdamW param `step` (an int), `exp_avg`, `exp_avg_sq`; per
//! Muon group, on its first param, `momentum_buffer` (K, r, c) and `second_momentum_buffer`
//! (K, r, 1) or (K, 1, c). [`super::nanochat_optim::read_nanochat_optimizer`] reads it back.
//!
//! `lr`, Muon's `momentum` and `weight_decay` are the values of the last step taken
//! ([`ScheduledValues`], as nanochat's file holds them after its loop set them), or, with none
//! given (an export), `initial_lr`, 0.95 and 0. nanochat's training loop sets all three before
//! every step; HEAD's SFT keeps the loaded `weight_decay`.

use std::path::Path;

use super::nanochat_optim::StateMap;
use crate::optim::{GroupKind, ParamGroup};
use crate::torchfile::{write_pt, PtWriteValue, TorchDType};
use crate::{CoreError, Result};

fn s(v: &str) -> PtWriteValue {
    PtWriteValue::str(v)
}

/// The schedules' values of the last step taken: every group's `lr` is `initial_lr` times
/// `lr_multiplier`; Muon's groups hold `muon_momentum` and `muon_weight_decay`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScheduledValues {
    /// nanochat's `lrm`.
    pub lr_multiplier: f64,
    /// Muon's momentum.
    pub muon_momentum: f64,
    /// Muon's (cautious) weight decay.
    pub muon_weight_decay: f64,
}

/// The state dict of a HEAD `MuonAdamW` with `groups`, `step` AdamW steps taken and `state`
/// (our names: [`StateMap`]), its groups' scheduled values from `last` (see the module docs).
/// Moments of the params named in `bf16` are stored in bfloat16 (as nanochat stores those of
/// bf16 parameters). Errors: a state tensor missing for a param that has others, or a Muon
/// buffer of another shape than its group's.
pub fn head_optimizer_value(
    groups: &[ParamGroup],
    step: u32,
    state: &StateMap,
    bf16: &[String],
    last: Option<ScheduledValues>,
) -> Result<PtWriteValue> {
    let lrm = last.map_or(1.0, |l| l.lr_multiplier);
    let momentum = last.map_or(0.95, |l| l.muon_momentum);
    let muon_wd = last.map_or(0.0, |l| l.muon_weight_decay);
    let missing = |k: &str| CoreError::Internal {
        op: "head_optimizer_value",
        why: format!("optimizer state `{k}` is missing"),
    };
    let tensor = |key: &str, dtype: TorchDType| -> Result<PtWriteValue> {
        let (shape, v) = state.get(key).ok_or_else(|| missing(key))?;
        let v: Vec<f64> = v.iter().map(|&x| x as f64).collect();
        Ok(PtWriteValue::tensor(dtype, shape, &v))
    };
    let mut id = 0i64;
    let mut pg = Vec::new();
    let mut st = Vec::new();
    for g in groups {
        let ids: Vec<i64> = (id..id + g.params.len() as i64).collect();
        id += g.params.len() as i64;
        let mut d = vec![];
        match g.kind {
            GroupKind::AdamW {
                betas,
                eps,
                weight_decay,
            } => {
                d.push((s("kind"), s("adamw")));
                d.push((s("lr"), PtWriteValue::Float(g.initial_lr * lrm)));
                d.push((
                    s("betas"),
                    PtWriteValue::Tuple(vec![
                        PtWriteValue::Float(betas.0),
                        PtWriteValue::Float(betas.1),
                    ]),
                ));
                d.push((s("eps"), PtWriteValue::Float(eps)));
                d.push((s("weight_decay"), PtWriteValue::Float(weight_decay)));
                for (pid, name) in ids.iter().zip(&g.params) {
                    let m = format!("{name}.exp_avg");
                    if !state.contains_key(&m) {
                        continue;
                    }
                    let dt = if bf16.contains(name) {
                        TorchDType::BF16
                    } else {
                        TorchDType::F32
                    };
                    st.push((
                        PtWriteValue::Int(*pid),
                        PtWriteValue::Dict(vec![
                            (s("step"), PtWriteValue::Int(step as i64)),
                            (s("exp_avg"), tensor(&m, dt)?),
                            (s("exp_avg_sq"), tensor(&format!("{name}.exp_avg_sq"), dt)?),
                        ]),
                    ));
                }
            }
            GroupKind::Muon {
                shape: (rows, cols),
                ns_steps,
                beta2,
            } => {
                d.push((s("kind"), s("muon")));
                d.push((s("lr"), PtWriteValue::Float(g.initial_lr * lrm)));
                d.push((s("momentum"), PtWriteValue::Float(momentum)));
                d.push((s("ns_steps"), PtWriteValue::Int(ns_steps as i64)));
                d.push((s("beta2"), PtWriteValue::Float(beta2)));
                d.push((s("weight_decay"), PtWriteValue::Float(muon_wd)));
                let first = format!("{}.momentum_buffer", g.params[0]);
                if state.contains_key(&first) {
                    let k = g.params.len();
                    let mut b = Vec::with_capacity(k * rows * cols);
                    let mut sm = Vec::new();
                    let mut sshape = vec![k];
                    for name in &g.params {
                        let (bs, bv) = state
                            .get(&format!("{name}.momentum_buffer"))
                            .ok_or_else(|| missing(name))?;
                        let (ss, sv) = state
                            .get(&format!("{name}.second_momentum_buffer"))
                            .ok_or_else(|| missing(name))?;
                        if bs != &[rows, cols] {
                            return Err(CoreError::Internal {
                                op: "head_optimizer_value",
                                why: format!(
                                    "`{name}` momentum of shape {bs:?} in a [{rows}, {cols}] group"
                                ),
                            });
                        }
                        b.extend(bv.iter().map(|&x| x as f64));
                        sm.extend(sv.iter().map(|&x| x as f64));
                        sshape.truncate(1);
                        sshape.extend(ss);
                    }
                    st.push((
                        PtWriteValue::Int(ids[0]),
                        PtWriteValue::Dict(vec![
                            (
                                s("momentum_buffer"),
                                PtWriteValue::tensor(TorchDType::F32, &[k, rows, cols], &b),
                            ),
                            (
                                s("second_momentum_buffer"),
                                PtWriteValue::tensor(TorchDType::F32, &sshape, &sm),
                            ),
                        ]),
                    ));
                }
            }
        }
        d.push((s("initial_lr"), PtWriteValue::Float(g.initial_lr)));
        d.push((
            s("params"),
            PtWriteValue::List(ids.into_iter().map(PtWriteValue::Int).collect()),
        ));
        pg.push(PtWriteValue::Dict(d));
    }
    Ok(PtWriteValue::Dict(vec![
        (s("state"), PtWriteValue::Dict(st)),
        (s("param_groups"), PtWriteValue::List(pg)),
    ]))
}

/// Writes [`head_optimizer_value`] to `path` atomically (`optim_<step>_rank0.pt`).
pub fn write_head_optimizer(
    path: &Path,
    groups: &[ParamGroup],
    step: u32,
    state: &StateMap,
    bf16: &[String],
    last: Option<ScheduledValues>,
) -> Result<()> {
    write_pt(
        path,
        &head_optimizer_value(groups, step, state, bf16, last)?,
    )
}
