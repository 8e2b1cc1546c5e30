//! nanochat's optimizer files, `optim_<step:06>_rank<r>.pt`, read into the names our optimizers
//! save their state under (`<param>.exp_avg`, `<param>.exp_avg_sq`, `<param>.momentum_buffer`,
//! `<param>.second_momentum_buffer`):
//!
//! - **v1** (16788ee, `GPT.setup_optimizers` in `nanochat/gpt.py`): a list
//!   `[adamw.state_dict(), muon.state_dict()]`. AdamW's groups are `[lm_head]`, `[wte]`, each
//!   param with `step` (a float tensor), `exp_avg`, `exp_avg_sq`. Muon's groups gather the
//!   block matrices of one element count (in `transformer.h`'s parameter order), each param
//!   with its own `momentum_buffer`.
//! - **HEAD** (92d63d4, `MuonAdamW` in `nanochat/optim.py`): one state dict whose groups carry
//!   `kind`: six AdamW groups (lm_head, wte, value embeddings, resid_lambdas, x0_lambdas,
//!   smear/backout), each param with `step` (an int), `exp_avg`, `exp_avg_sq` (bf16 for bf16
//!   parameters: widened exactly here), then one Muon group per matrix shape whose state sits
//!   on its first param only: `momentum_buffer` (K, r, c) and `second_momentum_buffer`
//!   (K, r, 1) or (K, 1, c), slice k belonging to the group's k-th param.
//!
//! Param ids number the params of all groups in order, as `torch.optim.Optimizer.state_dict`
//! does. A layout that does not fit the model (group sizes, shapes, a missing key) is an
//! error naming the file and the key.

use std::collections::HashMap;
use std::path::Path;

use super::nanochat::pt_optim_path;
use crate::io::HostData;
use crate::model::{Architecture, GPT};
use crate::optim::{head_param_groups, GroupKind, MuonAdamWConfig};
use crate::torchfile::{TorchFile, Value};
use crate::{CoreError, Result};

/// Optimizer state by our names: shape and values.
pub type StateMap = HashMap<String, (Vec<usize>, Vec<f32>)>;

fn get<'a>(d: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
    d.iter()
        .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
        .map(|(_, v)| v)
}

struct Reader<'a> {
    file: &'a TorchFile,
}

impl Reader<'_> {
    fn err(&self, key: &str, why: impl std::fmt::Display) -> CoreError {
        crate::io::format_err(self.file.path(), key, why.to_string())
    }

    fn dict<'v>(&self, v: &'v Value, key: &str) -> Result<&'v [(Value, Value)]> {
        match v {
            Value::Dict(d) => Ok(d),
            _ => Err(self.err(key, "not a dict")),
        }
    }

    fn list<'v>(&self, v: &'v Value, key: &str) -> Result<&'v [Value]> {
        match v {
            Value::List(l) => Ok(l),
            _ => Err(self.err(key, "not a list")),
        }
    }

    fn field<'v>(&self, d: &'v [(Value, Value)], key: &str, ctx: &str) -> Result<&'v Value> {
        get(d, key).ok_or_else(|| self.err(&format!("{ctx}.{key}"), "missing"))
    }

    /// The groups' param ids, and the state by id.
    #[allow(clippy::type_complexity)]
    fn groups_and_state<'v>(
        &self,
        sd: &'v Value,
        ctx: &str,
    ) -> Result<(
        Vec<(&'v [(Value, Value)], Vec<i64>)>,
        HashMap<i64, &'v [(Value, Value)]>,
    )> {
        let sd = self.dict(sd, ctx)?;
        let groups = self.list(self.field(sd, "param_groups", ctx)?, "param_groups")?;
        let mut out = Vec::new();
        for (i, g) in groups.iter().enumerate() {
            let key = format!("{ctx}.param_groups[{i}]");
            let g = self.dict(g, &key)?;
            let ids = self
                .list(self.field(g, "params", &key)?, &key)?
                .iter()
                .map(|v| match v {
                    Value::Int(i) => Ok(*i),
                    _ => Err(self.err(&key, "a param id that is not an int")),
                })
                .collect::<Result<Vec<_>>>()?;
            out.push((g, ids));
        }
        let state = self.dict(self.field(sd, "state", ctx)?, &format!("{ctx}.state"))?;
        let mut by_id = HashMap::new();
        for (k, v) in state {
            let Value::Int(id) = k else {
                return Err(self.err(&format!("{ctx}.state"), "a key that is not a param id"));
            };
            by_id.insert(*id, self.dict(v, &format!("{ctx}.state[{id}]"))?);
        }
        Ok((out, by_id))
    }

    fn tensor(
        &self,
        st: &[(Value, Value)],
        key: &str,
        ctx: &str,
    ) -> Result<(Vec<usize>, Vec<f32>)> {
        let name = format!("{ctx}.{key}");
        let Value::Tensor(t) = self.field(st, key, ctx)? else {
            return Err(self.err(&name, "not a tensor"));
        };
        let t = self.file.tensor(t, &name)?;
        let HostData::Float(v) = t.tensor.data else {
            return Err(self.err(&name, "holds integers"));
        };
        Ok((t.tensor.shape, v.into_iter().map(|x| x as f32).collect()))
    }

    fn step(&self, st: &[(Value, Value)], ctx: &str) -> Result<u32> {
        let v = self.field(st, "step", ctx)?;
        let s = match v {
            Value::Int(i) => *i as f64,
            Value::Float(f) => *f,
            Value::Tensor(t) => {
                let t = self.file.tensor(t, &format!("{ctx}.step"))?;
                match t.tensor.data {
                    HostData::Float(v) if v.len() == 1 => v[0],
                    HostData::Int(v) if v.len() == 1 => v[0] as f64,
                    _ => return Err(self.err(&format!("{ctx}.step"), "not a scalar")),
                }
            }
            _ => return Err(self.err(&format!("{ctx}.step"), "not a number")),
        };
        if !(0.0..=u32::MAX as f64).contains(&s) || s.fract() != 0.0 {
            return Err(self.err(&format!("{ctx}.step"), format!("{s} is not a step count")));
        }
        Ok(s as u32)
    }

    fn adamw(
        &self,
        st: &[(Value, Value)],
        name: &str,
        ctx: &str,
        out: &mut StateMap,
    ) -> Result<u32> {
        out.insert(format!("{name}.exp_avg"), self.tensor(st, "exp_avg", ctx)?);
        out.insert(
            format!("{name}.exp_avg_sq"),
            self.tensor(st, "exp_avg_sq", ctx)?,
        );
        self.step(st, ctx)
    }
}

fn expect_len(r: &Reader, key: &str, got: usize, want: usize, what: &str) -> Result<()> {
    if got != want {
        return Err(r.err(
            key,
            format!("{got} params where the model has {want} ({what})"),
        ));
    }
    Ok(())
}

/// The optimizer state of a nanochat step for `model`: the step count and the tensors by our
/// names. One rank's file (`optim_<step>_rank0.pt`, a single-GPU run) is read; a multi-GPU
/// run's shards are refused with an error naming them. Errors: [`TorchFile`]'s, and a layout
/// that does not fit `model` (naming the file and key).
pub fn read_nanochat_optimizer(dir: &Path, step: u64, model: &GPT) -> Result<(u32, StateMap)> {
    let path = pt_optim_path(dir, step, 0);
    if pt_optim_path(dir, step, 1).exists() {
        return Err(CoreError::file(
            &path,
            "a multi-GPU run's optimizer shards (rank0, rank1, ...): reassembling them is not supported by this version",
        ));
    }
    let file = TorchFile::open(&path)?;
    let r = Reader { file: &file };
    let mut out = StateMap::new();
    let names: Vec<(String, Vec<usize>)> = model
        .named_parameters()
        .into_iter()
        .map(|(n, t)| (n, t.shape().to_vec()))
        .collect();
    let steps = match model.config().architecture {
        Architecture::V1 => {
            let Value::List(parts) = &file.root else {
                return Err(CoreError::file(
                    &path,
                    "not v1's optimizer layout ([adamw.state_dict(), muon.state_dict()]): the model's meta says v1",
                ));
            };
            if parts.len() != 2 {
                return Err(CoreError::file(
                    &path,
                    format!(
                        "{} optimizer state dicts, v1 saves 2 (AdamW, Muon)",
                        parts.len()
                    ),
                ));
            }
            let mut steps = Vec::new();
            // AdamW: [lm_head], [wte].
            let (groups, state) = r.groups_and_state(&parts[0], "[0]")?;
            expect_len(&r, "[0].param_groups", groups.len(), 2, "lm_head, wte")?;
            for ((_, ids), name) in groups
                .iter()
                .zip(["lm_head.weight", "transformer.wte.weight"])
            {
                expect_len(&r, "[0].param_groups", ids.len(), 1, name)?;
                if let Some(st) = state.get(&ids[0]) {
                    steps.push(r.adamw(st, name, &format!("[0].state[{}]", ids[0]), &mut out)?);
                }
            }
            // Muon: one group per element count, in transformer.h's order.
            let matrices: Vec<&(String, Vec<usize>)> = names
                .iter()
                .filter(|(n, _)| n.starts_with("transformer.h."))
                .collect();
            let (groups, state) = r.groups_and_state(&parts[1], "[1]")?;
            let mut seen = 0;
            for (gi, (_, ids)) in groups.iter().enumerate() {
                let key = format!("[1].param_groups[{gi}]");
                let first = ids.first().ok_or_else(|| r.err(&key, "an empty group"))?;
                let Some(st) = state.get(first) else { continue };
                let (shape, _) = r.tensor(st, "momentum_buffer", &format!("[1].state[{first}]"))?;
                let numel: usize = shape.iter().product();
                let members: Vec<_> = matrices
                    .iter()
                    .filter(|(_, s)| s.iter().product::<usize>() == numel)
                    .collect();
                expect_len(
                    &r,
                    &key,
                    ids.len(),
                    members.len(),
                    &format!("matrices of {numel} elements"),
                )?;
                for (id, (name, _)) in ids.iter().zip(members) {
                    let ctx = format!("[1].state[{id}]");
                    let st = state.get(id).ok_or_else(|| r.err(&ctx, "missing"))?;
                    out.insert(
                        format!("{name}.momentum_buffer"),
                        r.tensor(st, "momentum_buffer", &ctx)?,
                    );
                    seen += 1;
                }
            }
            if seen != 0 && seen != matrices.len() {
                return Err(r.err(
                    "[1].state",
                    format!("{seen} of the model's {} matrices", matrices.len()),
                ));
            }
            steps
        }
        Architecture::Head => {
            let (groups, state) = r.groups_and_state(&file.root, "")?;
            let ours = head_param_groups(model, &MuonAdamWConfig::default())?;
            expect_len(&r, "param_groups", groups.len(), ours.len(), "groups")?;
            let mut steps = Vec::new();
            for (gi, ((g, ids), our)) in groups.iter().zip(&ours).enumerate() {
                let key = format!("param_groups[{gi}]");
                let kind = match get(g, "kind") {
                    Some(Value::Str(k)) => k.as_str(),
                    _ => {
                        return Err(r.err(
                            &format!("{key}.kind"),
                            "missing: not HEAD's MuonAdamW layout",
                        ))
                    }
                };
                expect_len(&r, &key, ids.len(), our.params.len(), kind)?;
                match (kind, our.kind) {
                    ("adamw", GroupKind::AdamW { .. }) => {
                        for (id, name) in ids.iter().zip(&our.params) {
                            if let Some(st) = state.get(id) {
                                steps.push(r.adamw(st, name, &format!("state[{id}]"), &mut out)?);
                            }
                        }
                    }
                    (
                        "muon",
                        GroupKind::Muon {
                            shape: (rows, cols),
                            ..
                        },
                    ) => {
                        let Some(st) = state.get(&ids[0]) else {
                            continue;
                        };
                        let ctx = format!("state[{}]", ids[0]);
                        let (bs, b) = r.tensor(st, "momentum_buffer", &ctx)?;
                        let (ss, s) = r.tensor(st, "second_momentum_buffer", &ctx)?;
                        let k = ids.len();
                        if bs != [k, rows, cols] {
                            return Err(r.err(
                                &format!("{ctx}.momentum_buffer"),
                                format!(
                                    "shape {bs:?}, the model's group needs [{k}, {rows}, {cols}]"
                                ),
                            ));
                        }
                        let per = ss.iter().skip(1).product::<usize>();
                        if ss.len() != 3
                            || ss[0] != k
                            || !(ss[1..] == [rows, 1] || ss[1..] == [1, cols])
                        {
                            return Err(r.err(
                                &format!("{ctx}.second_momentum_buffer"),
                                format!(
                                    "shape {ss:?} for a group of {k} [{rows}, {cols}] matrices"
                                ),
                            ));
                        }
                        for (j, name) in our.params.iter().enumerate() {
                            let n = rows * cols;
                            out.insert(
                                format!("{name}.momentum_buffer"),
                                (vec![rows, cols], b[j * n..(j + 1) * n].to_vec()),
                            );
                            out.insert(
                                format!("{name}.second_momentum_buffer"),
                                (ss[1..].to_vec(), s[j * per..(j + 1) * per].to_vec()),
                            );
                        }
                    }
                    (k, _) => {
                        return Err(r.err(
                            &format!("{key}.kind"),
                            format!(
                                "`{k}` where the model's group {gi} is {}",
                                match our.kind {
                                    GroupKind::AdamW { .. } => "adamw",
                                    GroupKind::Muon { .. } => "muon",
                                }
                            ),
                        ));
                    }
                }
            }
            steps
        }
    };
    let step = steps.iter().copied().max().unwrap_or(0);
    if steps.iter().any(|&s| s != step) {
        return Err(CoreError::file(
            &path,
            format!("AdamW step counts differ between params: {steps:?}"),
        ));
    }
    Ok((step, out))
}
