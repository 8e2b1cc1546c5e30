//! Writing a step in nanochat's own format (`save_checkpoint` in `nanochat/checkpoint_manager.py`
//! at 92d63d4 and 16788ee): `model_<step:06>.pt` (the state dict, each tensor in the dtype
//! nanochat keeps it in), `optim_<step:06>_rank0.pt` and `meta_<step:06>.json`. Used by
//! `export --to nanochat` (the model and meta) and by a resumed nanochat run, which keeps
//! writing into its folder so that nanochat's own loader finds the latest step.
//!
//! Order: the optimizer, the model, then the meta, each file atomically. The meta is the commit
//! marker this project reads steps by; nanochat's `find_last_step` looks at the model files, so
//! a crash between the model and the meta leaves a step nanochat would pick but not load, as a
//! crash inside nanochat's own save does.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::nanochat::{pt_model_path, pt_optim_path};
use super::nanochat_optim::StateMap;
use super::nanochat_optim_v1::{write_v1_optimizer, V1OptimLayout};
use super::nanochat_optim_write::{write_head_optimizer, ScheduledValues};
use crate::io::write_atomic;
use crate::model::{Architecture, GPTConfig, GPT};
use crate::optim::{OptimizerState, TrainOptimizer};
use crate::torchfile::{write_pt, PtWriteValue, TorchDType};
use crate::{CoreError, Result};

/// nanochat's `model_config` of a config: the six v1 keys, and HEAD's `window_pattern`.
pub fn nanochat_model_config(c: &GPTConfig) -> Value {
    let mut model_config = json!({
        "sequence_len": c.block_size, "vocab_size": c.vocab_size, "n_layer": c.n_layer,
        "n_head": c.n_head, "n_kv_head": c.n_kv_head, "n_embd": c.n_embd,
    });
    if c.architecture == Architecture::Head {
        model_config["window_pattern"] = json!(c.window_pattern);
    }
    model_config
}

/// A Python float for a nanochat meta: a JSON number when finite, else a marker that
/// [`save_nanochat_step`] writes as Python's `Infinity`, `-Infinity` or `NaN` (nanochat starts
/// `min_val_bpb` at `float("inf")`, and its `json.load` reads those back).
pub fn py_float(x: f64) -> Value {
    match serde_json::Number::from_f64(x) {
        Some(n) => Value::Number(n),
        None => Value::String(format!("{PY_FLOAT}{x}")),
    }
}

const PY_FLOAT: &str = "\u{1}py-float:";

/// `meta` as Python's `json.dump` writes it: [`py_float`] markers become bare `Infinity`,
/// `-Infinity` or `NaN`.
pub fn python_json(meta: &Value) -> String {
    let mut text = serde_json::to_string_pretty(meta).expect("meta serialises");
    for (rust, py) in [("inf", "Infinity"), ("-inf", "-Infinity"), ("NaN", "NaN")] {
        let marker = serde_json::to_string(&format!("{PY_FLOAT}{rust}")).expect("a string");
        text = text.replace(&marker, py);
    }
    text
}

/// Writes `model`'s state dict to `path` (a torch zip, atomically): every tensor in float32,
/// except those named in `bf16`, stored in bfloat16 (their values are bf16 already when kept
/// so, [`crate::optim::MuonAdamW::keep_in_bf16`]; others are rounded to nearest even).
pub fn write_nanochat_model(path: &Path, model: &GPT, bf16: &[String]) -> Result<()> {
    let mut items = Vec::new();
    for (name, t) in model.named_parameters() {
        let v: Vec<f64> = t.to_vec_f32()?.into_iter().map(f64::from).collect();
        let dtype = if bf16.contains(&name) {
            TorchDType::BF16
        } else {
            TorchDType::F32
        };
        items.push((name, PtWriteValue::tensor(dtype, t.shape(), &v)));
    }
    write_pt(path, &PtWriteValue::OrderedDict(items))
}

/// The optimizer state a step saves ([`save_nanochat_step`]).
#[derive(Clone, Copy)]
pub struct OptimToSave<'a> {
    /// The optimizer.
    pub optim: &'a TrainOptimizer,
    /// v1: the layout of the file the run continued (its groups' order).
    pub v1_layout: Option<&'a V1OptimLayout>,
    /// The schedules' values of the step just taken, which the groups hold.
    pub last: Option<ScheduledValues>,
}

/// Writes step `step` of a run into `dir` in nanochat's format: the optimizer state (HEAD's
/// `MuonAdamW` layout, moments of the `bf16` params in bf16; v1's in `v1_layout`, the layout of
/// the file the run continued), the model ([`write_nanochat_model`]) and `meta` (nanochat's
/// keys, built by the caller), in that order; the optimizer's groups hold `last`, the schedules'
/// values of the step just taken. Returns the meta's path. Errors:
/// [`CoreError::Unsupported`] for a v1 optimizer without a layout, [`CoreError::Io`].
pub fn save_nanochat_step(
    dir: &Path,
    step: u64,
    model: &GPT,
    bf16: &[String],
    optim: Option<OptimToSave<'_>>,
    meta: &Value,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| CoreError::io(dir, e))?;
    if let Some(OptimToSave {
        optim: o,
        v1_layout,
        last,
    }) = optim
    {
        let mut state = StateMap::new();
        for (name, t) in OptimizerState::state_tensors(o)? {
            state.insert(name, (t.shape().to_vec(), t.to_vec_f32()?));
        }
        let (path, steps) = (pt_optim_path(dir, step, 0), OptimizerState::steps(o));
        match (o, v1_layout) {
            (TrainOptimizer::Head(h), _) => {
                write_head_optimizer(&path, h.groups(), steps, &state, bf16, last)?
            }
            (TrainOptimizer::V1(_), Some(layout)) => {
                write_v1_optimizer(&path, layout, steps, &state, last)?
            }
            (TrainOptimizer::V1(_), None) => {
                return Err(CoreError::Unsupported {
                    op: "saving a nanochat v1 step",
                    why: "v1's optimizer file is written in the layout of the file a run continues, and this run continued none".into(),
                })
            }
        }
    }
    write_nanochat_model(&pt_model_path(dir, step), model, bf16)?;
    let meta_path = dir.join(format!("meta_{step:06}.json"));
    write_atomic(&meta_path, python_json(meta).as_bytes())?;
    Ok(meta_path)
}
