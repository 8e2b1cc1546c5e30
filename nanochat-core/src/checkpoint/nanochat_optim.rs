//! nanochat's optimizer files, `optim_<step:06>_rank<r>.pt`, read into the names our optimizers
//! save their state under (`<param>.exp_avg`, `<param>.exp_avg_sq`, `<param>.momentum_buffer`,
//! `<param>.second_momentum_buffer`):
//!
//! - **v1** (16788ee, `GPT.setup_optimizers` in `nanochat/gpt.py`): a list
//!   `[adamw.state_dict(), muon.state_dict()]`. AdamW's groups are `[lm_head]`, `[wte]`, each
//!   param with `step` (a float tensor), `exp_avg`, `exp_avg_sq`. Muon's groups gather the
//!   block matrices of one element count (in `transformer.h`'s parameter order), each param
//!   with its own `momentum_buffer`. A multi-GPU run (`DistAdamW`, `DistMuon` in
//!   `nanochat/adamw.py`, `nanochat/muon.py`) writes one file per rank: every AdamW moment split
//!   by rows (rank r holds rows `r*R/N..(r+1)*R/N`), Muon groups by shape (sorted, each with a
//!   `zero_buffer` of that shape), a param's `momentum_buffer` only in the file of its owner,
//!   rank `i % N` for the group's i-th param.
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

/// A tensor's shape and row-major values.
pub type Shaped = (Vec<usize>, Vec<f32>);

/// Optimizer state by our names: shape and values.
pub type StateMap = HashMap<String, Shaped>;

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
        let v = match t.tensor.data {
            HostData::F32(v) => v,
            HostData::Float(v) => v.into_iter().map(|x| x as f32).collect(),
            HostData::Int(_) => return Err(self.err(&name, "holds integers")),
        };
        Ok((t.tensor.shape, v))
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
                    HostData::F32(v) if v.len() == 1 => v[0] as f64,
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

/// The optimizer files of a nanochat step: `optim_<step>_rank0.pt`, `rank1`... (contiguous).
fn rank_files(dir: &Path, step: u64) -> Vec<std::path::PathBuf> {
    (0..)
        .map(|r| pt_optim_path(dir, step, r))
        .take_while(|p| p.exists())
        .collect()
}

/// The optimizer state of a nanochat step for `model`: the step count and the tensors by our
/// names. A multi-GPU HEAD run's shards (`rank0` .. `rank<N-1>`) are reassembled by the rule
/// `MuonAdamW` shards by (`nanochat/optim.py` at 92d63d4): AdamW parameters of 1024 elements
/// or more are split by rows (rank r holds rows r·R/N..(r+1)·R/N; smaller ones are replicated),
/// and each Muon group's K matrices in chunks of ⌈K/N⌉ (rank r holds matrices r·⌈K/N⌉ on,
/// its buffer padded to the chunk size). v1's shards are refused. Errors: [`TorchFile`]'s,
/// and a layout that does not fit `model` (naming the file and key).
pub fn read_nanochat_optimizer(dir: &Path, step: u64, model: &GPT) -> Result<(u32, StateMap)> {
    let files = rank_files(dir, step);
    let first = pt_optim_path(dir, step, 0);
    if files.is_empty() {
        return Err(CoreError::file(
            &first,
            "missing: this checkpoint has no optimizer state",
        ));
    }
    let n = files.len();
    let names: Vec<(String, Vec<usize>)> = model
        .named_parameters()
        .into_iter()
        .map(|(n, t)| (n, t.shape().to_vec()))
        .collect();
    let (steps, out) = match model.config().architecture {
        Architecture::V1 => {
            let mut steps = Vec::new();
            let mut parts = Vec::new();
            for path in &files {
                let file = TorchFile::open(path)?;
                let (s, m) = read_v1(&Reader { file: &file }, &names)?;
                steps.extend(s);
                parts.push((path.clone(), m));
            }
            // DistAdamW shards every moment by rows; DistMuon keeps each buffer on its owner.
            let merged = merge_ranks(parts, &names, 0)?;
            let matrices = names
                .iter()
                .filter(|(n, _)| n.starts_with("transformer.h."))
                .count();
            let buffers = merged
                .keys()
                .filter(|k| k.ends_with(".momentum_buffer"))
                .count();
            if buffers != 0 && buffers != matrices {
                return Err(CoreError::file(
                    &first,
                    format!("Muon momentum buffers for {buffers} of the model's {matrices} matrices over {n} rank files"),
                ));
            }
            (steps, merged)
        }
        Architecture::Head => {
            let mut steps = Vec::new();
            let mut parts = Vec::new();
            for (rank, path) in files.iter().enumerate() {
                let file = TorchFile::open(path)?;
                let (s, m) = read_head_rank(&Reader { file: &file }, model, rank, n)?;
                steps.extend(s);
                parts.push((path.clone(), m));
            }
            (steps, merge_ranks(parts, &names, 1024)?)
        }
    };
    let step = steps.iter().copied().max().unwrap_or(0);
    if steps.iter().any(|&s| s != step) {
        return Err(CoreError::file(
            &first,
            format!("AdamW step counts differ between params: {steps:?}"),
        ));
    }
    Ok((step, out))
}

/// The `initial_lr` of every param group of the rank-0 optimizer file of a nanochat step, in
/// file order (v1: AdamW's groups, then Muon's; HEAD: `MuonAdamW`'s). nanochat's resume takes
/// its rates from here (`Optimizer.load_state_dict` restores the groups), so a resume checks
/// them against its own. Errors: [`TorchFile`]'s, a group without `initial_lr`.
pub fn read_nanochat_initial_lrs(dir: &Path, step: u64) -> Result<Vec<f64>> {
    let path = pt_optim_path(dir, step, 0);
    let file = TorchFile::open(&path)?;
    let r = Reader { file: &file };
    let parts: Vec<(&Value, String)> = match &file.root {
        Value::List(parts) => parts
            .iter()
            .enumerate()
            .map(|(i, p)| (p, format!("[{i}]")))
            .collect(),
        root => vec![(root, String::new())],
    };
    let mut out = Vec::new();
    for (sd, ctx) in parts {
        let (groups, _) = r.groups_and_state(sd, &ctx)?;
        for (gi, (g, _)) in groups.iter().enumerate() {
            let key = format!("{ctx}.param_groups[{gi}]");
            out.push(match r.field(g, "initial_lr", &key)? {
                Value::Float(x) => *x,
                Value::Int(i) => *i as f64,
                _ => return Err(r.err(&format!("{key}.initial_lr"), "not a number")),
            });
        }
    }
    Ok(out)
}

fn read_v1(r: &Reader, names: &[(String, Vec<usize>)]) -> Result<(Vec<u32>, StateMap)> {
    let path = r.file.path();
    let Value::List(parts) = &r.file.root else {
        return Err(CoreError::file(
            path,
            "not v1's optimizer layout ([adamw.state_dict(), muon.state_dict()]): the model's meta says v1",
        ));
    };
    if parts.len() != 2 {
        return Err(CoreError::file(
            path,
            format!(
                "{} optimizer state dicts, v1 saves 2 (AdamW, Muon)",
                parts.len()
            ),
        ));
    }
    let mut out = StateMap::new();
    let mut steps = Vec::new();
    // AdamW: [lm_head], [wte].
    let (groups, state) = r.groups_and_state(&parts[0], "[0]")?;
    expect_len(r, "[0].param_groups", groups.len(), 2, "lm_head, wte")?;
    for ((_, ids), name) in groups
        .iter()
        .zip(["lm_head.weight", "transformer.wte.weight"])
    {
        expect_len(r, "[0].param_groups", ids.len(), 1, name)?;
        if let Some(st) = state.get(&ids[0]) {
            steps.push(r.adamw(st, name, &format!("[0].state[{}]", ids[0]), &mut out)?);
        }
    }
    // Muon: one group per element count (in a Python set's order), or, from a multi-GPU run's
    // DistMuon, one per shape (sorted) with a `zero_buffer` of that shape; members in
    // transformer.h's order. A DistMuon rank holds the buffers of the params it owns.
    let matrices: Vec<&(String, Vec<usize>)> = names
        .iter()
        .filter(|(n, _)| n.starts_with("transformer.h."))
        .collect();
    let (groups, state) = r.groups_and_state(&parts[1], "[1]")?;
    for (gi, (g, ids)) in groups.iter().enumerate() {
        let key = format!("[1].param_groups[{gi}]");
        let members: Vec<_> = match get(g, "zero_buffer") {
            Some(Value::Tensor(t)) => {
                let shape: Vec<usize> = t.size.iter().map(|&x| x as usize).collect();
                matrices.iter().filter(|(_, s)| *s == shape).collect()
            }
            _ => {
                let Some((first, st)) = ids.iter().find_map(|id| state.get(id).map(|st| (id, st)))
                else {
                    continue;
                };
                let (shape, _) = r.tensor(st, "momentum_buffer", &format!("[1].state[{first}]"))?;
                let numel: usize = shape.iter().product();
                matrices
                    .iter()
                    .filter(|(_, s)| s.iter().product::<usize>() == numel)
                    .collect()
            }
        };
        expect_len(r, &key, ids.len(), members.len(), "matrices of its size")?;
        for (id, (name, want)) in ids.iter().zip(members) {
            let ctx = format!("[1].state[{id}]");
            // Another rank's (DistMuon), or no step taken yet.
            let Some(st) = state.get(id) else { continue };
            let (shape, v) = r.tensor(st, "momentum_buffer", &ctx)?;
            if &shape != want {
                return Err(r.err(
                    &format!("{ctx}.momentum_buffer"),
                    format!("shape {shape:?}, `{name}` is {want:?}"),
                ));
            }
            out.insert(format!("{name}.momentum_buffer"), (shape, v));
        }
    }
    Ok((steps, out))
}

/// One rank's HEAD optimizer file: AdamW moments as stored (a row slice when sharded), and
/// the Muon matrices this rank owns.
fn read_head_rank(
    r: &Reader,
    model: &GPT,
    rank: usize,
    world: usize,
) -> Result<(Vec<u32>, StateMap)> {
    let (groups, state) = r.groups_and_state(&r.file.root, "")?;
    let ours = head_param_groups(model, &MuonAdamWConfig::default())?;
    expect_len(r, "param_groups", groups.len(), ours.len(), "groups")?;
    let mut out = StateMap::new();
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
        expect_len(r, &key, ids.len(), our.params.len(), kind)?;
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
                let chunk = if world == 1 { k } else { k.div_ceil(world) };
                if bs != [chunk, rows, cols] {
                    return Err(r.err(&format!("{ctx}.momentum_buffer"), format!("shape {bs:?}, the model's group of {k} on {world} ranks needs [{chunk}, {rows}, {cols}]")));
                }
                let per = ss.iter().skip(1).product::<usize>();
                if ss.len() != 3
                    || ss[0] != chunk
                    || !(ss[1..] == [rows, 1] || ss[1..] == [1, cols])
                {
                    return Err(r.err(
                        &format!("{ctx}.second_momentum_buffer"),
                        format!("shape {ss:?} for a chunk of {chunk} [{rows}, {cols}] matrices"),
                    ));
                }
                let m = rows * cols;
                for j in 0..chunk {
                    let Some(name) = our.params.get(rank * chunk + j) else {
                        break;
                    };
                    out.insert(
                        format!("{name}.momentum_buffer"),
                        (vec![rows, cols], b[j * m..(j + 1) * m].to_vec()),
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
    Ok((steps, out))
}

/// The ranks' states as one: Muon matrices from their owner, AdamW moments of parameters of
/// 1024 elements or more concatenated by rows in rank order, smaller ones from rank 0.
fn merge_ranks(
    parts: Vec<(std::path::PathBuf, StateMap)>,
    names: &[(String, Vec<usize>)],
    shard_from: usize,
) -> Result<StateMap> {
    let world = parts.len();
    let shapes: HashMap<&str, &Vec<usize>> = names.iter().map(|(n, s)| (n.as_str(), s)).collect();
    let mut out = StateMap::new();
    let mut sliced: HashMap<String, Vec<Shaped>> = HashMap::new();
    for (path, part) in &parts {
        for (key, (shape, v)) in part {
            let param = key.rsplit_once('.').map_or(key.as_str(), |(p, _)| p);
            let full = shapes.get(param).ok_or_else(|| {
                crate::io::format_err(
                    &path.display().to_string(),
                    key,
                    "not a parameter of the model",
                )
            })?;
            let numel: usize = full.iter().product();
            let adamw = key.ends_with(".exp_avg") || key.ends_with(".exp_avg_sq");
            if !adamw || world == 1 || numel < shard_from {
                if adamw && world > 1 && &shape != full {
                    return Err(crate::io::format_err(
                        &path.display().to_string(),
                        key,
                        format!("shape {shape:?}, the replicated parameter is {full:?}"),
                    ));
                }
                out.entry(key.clone()).or_insert((shape.clone(), v.clone()));
            } else {
                let want_rows = full[0] / world;
                if full[0] % world != 0
                    || shape.first() != Some(&want_rows)
                    || shape[1..] != full[1..]
                {
                    return Err(crate::io::format_err(&path.display().to_string(), key, format!("shape {shape:?}: rank slices of {full:?} over {world} ranks are [{want_rows}, ...]")));
                }
                sliced
                    .entry(key.clone())
                    .or_default()
                    .push((shape.clone(), v.clone()));
            }
        }
    }
    for (key, slices) in sliced {
        if slices.len() != world {
            return Err(CoreError::file(
                &parts[0].0,
                format!("`{key}`: {} of {world} ranks hold a slice", slices.len()),
            ));
        }
        let mut shape = slices[0].0.clone();
        shape[0] *= world;
        let v: Vec<f32> = slices.into_iter().flat_map(|(_, v)| v).collect();
        out.insert(key, (shape, v));
    }
    Ok(out)
}
