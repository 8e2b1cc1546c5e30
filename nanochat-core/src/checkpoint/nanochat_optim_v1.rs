//! nanochat v1's optimizer file written back: `[adamw.state_dict(), muon.state_dict()]` as
//! `GPT.setup_optimizers` at 16788ee lays it out. v1's Muon groups follow the iteration order of
//! a Python `set` of element counts, which no rule reproduces, so the layout is taken from the
//! file being continued ([`V1OptimLayout::from_file`]): its groups, their settings and param ids
//! stay as they were, and the state (AdamW `step`, `exp_avg`, `exp_avg_sq`; Muon
//! `momentum_buffer`) is replaced by the optimizer's current one ([`write_v1_optimizer`]).
//! [`super::nanochat_optim::read_nanochat_optimizer`] reads it back, and so does nanochat's
//! `load_state_dict` (positions and shapes unchanged).

use std::path::Path;

use super::nanochat_optim::StateMap;
use super::nanochat_optim_write::ScheduledValues;
use crate::model::GPT;
use crate::torchfile::{write_pt, PtWriteValue, TorchDType, TorchFile, Value};
use crate::{CoreError, Result};

/// The layout of a v1 optimizer file: its pickled structure with every state tensor taken
/// out, and which of the model's parameters each param id is.
#[derive(Clone, Debug, PartialEq)]
pub struct V1OptimLayout {
    skeleton: PtWriteValue,
    /// (optimizer 0 or 1, param id, parameter name).
    ids: Vec<(usize, i64, String)>,
}

fn key(d: &[(Value, Value)], k: &str) -> Option<Value> {
    d.iter()
        .find(|(kk, _)| matches!(kk, Value::Str(s) if s == k))
        .map(|(_, v)| v.clone())
}

impl V1OptimLayout {
    /// The layout of `path` (a v1 `optim_<step>_rank0.pt`) for `model`: AdamW's groups are
    /// `[lm_head]`, `[wte]`; each Muon group holds the block matrices of one element count in
    /// `transformer.h`'s order. Errors: [`CoreError::File`] naming the key of a file that is not
    /// that layout, or has no state yet.
    pub fn from_file(path: &Path, model: &GPT) -> Result<V1OptimLayout> {
        let file = TorchFile::open(path)?;
        let bad = |why: &str| CoreError::file(path, format!("not v1's optimizer layout: {why}"));
        let Value::List(parts) = &file.root else {
            return Err(bad("the root is not [adamw, muon]"));
        };
        if parts.len() != 2 {
            return Err(bad("the root is not [adamw, muon]"));
        }
        let matrices: Vec<(String, usize)> = model
            .named_parameters()
            .into_iter()
            .filter(|(n, _)| n.starts_with("transformer.h."))
            .map(|(n, t)| (n, t.len()))
            .collect();
        let mut ids = Vec::new();
        for (which, part) in parts.iter().enumerate() {
            let Value::Dict(sd) = part else {
                return Err(bad("a state dict that is not a dict"));
            };
            let (Some(Value::List(groups)), Some(Value::Dict(state))) =
                (key(sd, "param_groups"), key(sd, "state"))
            else {
                return Err(bad("`param_groups` or `state` missing"));
            };
            if state.is_empty() {
                return Err(CoreError::file(
                    path,
                    "the optimizer has no state yet (step 0): nothing to continue",
                ));
            }
            for (gi, g) in groups.iter().enumerate() {
                let Value::Dict(g) = g else {
                    return Err(bad("a param group that is not a dict"));
                };
                if which == 1 && key(g, "zero_buffer").is_some() {
                    return Err(CoreError::file(
                        path,
                        format!("key `[1].param_groups[{gi}].zero_buffer`: a multi-GPU run's DistMuon layout (its buffers spread over the ranks' files), which one process cannot write back; continue the run with nanochat on its GPUs"),
                    ));
                }
                let Some(Value::List(params)) = key(g, "params") else {
                    return Err(bad("a param group without `params`"));
                };
                let params: Vec<i64> = params
                    .iter()
                    .map(|p| match p {
                        Value::Int(i) => Ok(*i),
                        _ => Err(bad("a param id that is not an int")),
                    })
                    .collect::<Result<_>>()?;
                let names: Vec<String> = if which == 0 {
                    let name = match gi {
                        0 => "lm_head.weight",
                        1 => "transformer.wte.weight",
                        _ => return Err(bad("more than two AdamW groups")),
                    };
                    vec![name.to_string()]
                } else {
                    let first = params.first().ok_or_else(|| bad("an empty Muon group"))?;
                    let numel = state
                        .iter()
                        .find(|(k, _)| matches!(k, Value::Int(i) if i == first))
                        .and_then(|(_, st)| match st {
                            Value::Dict(st) => key(st, "momentum_buffer"),
                            _ => None,
                        })
                        .and_then(|t| match t {
                            Value::Tensor(t) => Some(t.size.iter().product::<u64>() as usize),
                            _ => None,
                        })
                        .ok_or_else(|| bad("a Muon param without `momentum_buffer`"))?;
                    matrices
                        .iter()
                        .filter(|(_, n)| *n == numel)
                        .map(|(name, _)| name.clone())
                        .collect()
                };
                if names.len() != params.len() {
                    return Err(bad(&format!(
                        "group {gi} of optimizer {which} has {} params, the model {}",
                        params.len(),
                        names.len()
                    )));
                }
                ids.extend(params.into_iter().zip(names).map(|(i, n)| (which, i, n)));
            }
        }
        let skeleton = strip_tensors(&file, &file.root)?;
        Ok(V1OptimLayout { skeleton, ids })
    }
}

/// The file's value with every tensor replaced by `None` (the state is written anew).
fn strip_tensors(file: &TorchFile, v: &Value) -> Result<PtWriteValue> {
    Ok(match v {
        Value::Tensor(_) => PtWriteValue::None,
        Value::List(items) => PtWriteValue::List(
            items
                .iter()
                .map(|x| strip_tensors(file, x))
                .collect::<Result<_>>()?,
        ),
        Value::Dict(items) => PtWriteValue::Dict(
            items
                .iter()
                .map(|(k, x)| {
                    let v = match (k, strip_tensors(file, x)?) {
                        // torch's `betas` is a tuple (the reader does not tell them apart).
                        (Value::Str(name), PtWriteValue::List(b)) if name == "betas" => {
                            PtWriteValue::Tuple(b)
                        }
                        (_, v) => v,
                    };
                    Ok((strip_tensors(file, k)?, v))
                })
                .collect::<Result<_>>()?,
        ),
        other => file.to_write_value(other)?,
    })
}

fn dict_get<'a>(d: &'a mut PtWriteValue, k: &PtWriteValue) -> Option<&'a mut PtWriteValue> {
    match d {
        PtWriteValue::Dict(items) => items.iter_mut().find(|(kk, _)| kk == k).map(|(_, v)| v),
        _ => None,
    }
}

/// Writes v1's optimizer file to `path` (atomically) in `layout`, with `step` AdamW steps taken
/// and `state` (our names). Errors: a state tensor missing, [`CoreError::Io`].
pub fn write_v1_optimizer(
    path: &Path,
    layout: &V1OptimLayout,
    step: u32,
    state: &StateMap,
    last: Option<ScheduledValues>,
) -> Result<()> {
    let mut root = layout.skeleton.clone();
    if let (Some(l), PtWriteValue::List(parts)) = (last, &mut root) {
        // Each group's `lr` (and Muon's `momentum`) as the last step set them.
        for (which, part) in parts.iter_mut().enumerate() {
            let Some(PtWriteValue::List(groups)) =
                dict_get(part, &PtWriteValue::str("param_groups"))
            else {
                continue;
            };
            for g in groups {
                let initial = match dict_get(g, &PtWriteValue::str("initial_lr")) {
                    Some(PtWriteValue::Float(x)) => *x,
                    _ => continue,
                };
                if let Some(lr) = dict_get(g, &PtWriteValue::str("lr")) {
                    *lr = PtWriteValue::Float(initial * l.lr_multiplier);
                }
                if which == 1 {
                    if let Some(m) = dict_get(g, &PtWriteValue::str("momentum")) {
                        *m = PtWriteValue::Float(l.muon_momentum);
                    }
                }
            }
        }
    }
    let tensor = |name: &str| -> Result<PtWriteValue> {
        let (shape, v) = state.get(name).ok_or_else(|| CoreError::Internal {
            op: "write_v1_optimizer",
            why: format!("optimizer state `{name}` is missing"),
        })?;
        let v: Vec<f64> = v.iter().map(|&x| x as f64).collect();
        Ok(PtWriteValue::tensor(TorchDType::F32, shape, &v))
    };
    for (which, id, name) in &layout.ids {
        let PtWriteValue::List(parts) = &mut root else {
            unreachable!("checked by from_file")
        };
        let st = dict_get(&mut parts[*which], &PtWriteValue::str("state"))
            .and_then(|s| dict_get(s, &PtWriteValue::Int(*id)))
            .ok_or_else(|| CoreError::Internal {
                op: "write_v1_optimizer",
                why: format!("param id {id} has no state in the layout"),
            })?;
        let fill = if *which == 0 {
            vec![
                (
                    "step",
                    PtWriteValue::tensor(TorchDType::F32, &[], &[step as f64]),
                ),
                ("exp_avg", tensor(&format!("{name}.exp_avg"))?),
                ("exp_avg_sq", tensor(&format!("{name}.exp_avg_sq"))?),
            ]
        } else {
            vec![(
                "momentum_buffer",
                tensor(&format!("{name}.momentum_buffer"))?,
            )]
        };
        for (k, v) in fill {
            *dict_get(st, &PtWriteValue::str(k)).ok_or_else(|| CoreError::Internal {
                op: "write_v1_optimizer",
                why: format!("param id {id} has no `{k}` in the layout"),
            })? = v;
        }
    }
    write_pt(path, &root)
}
