//! nanochat's own checkpoint format, read in place: per step, `model_<step:06>.pt` (a torch
//! state dict), `meta_<step:06>.json` (Python's JSON, which may hold `NaN` and `Infinity`) and
//! `optim_<step:06>_rank<r>.pt`, in `base_checkpoints/`, `mid_checkpoints/`,
//! `chatsft_checkpoints/` and `chatrl_checkpoints/` (`nanochat/checkpoint_manager.py`,
//! `save_checkpoint` / `build_model`, at 16788ee and 92d63d4).
//!
//! Our folders share nanochat's `base_`/`mid_` names and both write `meta_<step>.json`, so the
//! format is decided per step ([`is_nanochat_step`]): a `.pt` beside the meta, or a meta
//! without our `format` key, is nanochat's.
//!
//! The architecture comes from the meta's `model_config` (HEAD's has `window_pattern`, v1's
//! does not) and is then held to the state dict's keys: a key the architecture lacks, one it
//! needs that is missing, or a shape that contradicts `model_config` is an error naming the
//! file and the key. That refuses the checkpoints of the months between v1 and HEAD, which
//! carry only some of HEAD's tensors, instead of running them wrongly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Value};

use super::{FileCheck, Meta, Phase};
use crate::io::HostTensor;
use crate::model::{Architecture, GPTConfig, GPT};
use crate::torchfile::TorchFile;
use crate::{CoreError, DType, Device, Result};

/// [`Meta::format`] of a checkpoint read from nanochat's files.
pub const NANOCHAT_FORMAT: &str = "nanochat";

/// nanochat's model file of a step.
pub fn pt_model_path(dir: &Path, step: u64) -> PathBuf {
    dir.join(format!("model_{step:06}.pt"))
}

/// nanochat's optimizer file of a step and rank.
pub fn pt_optim_path(dir: &Path, step: u64, rank: usize) -> PathBuf {
    dir.join(format!("optim_{step:06}_rank{rank}.pt"))
}

/// Deepest nesting of lists and objects a nanochat meta may have (nanochat writes 3).
const MAX_JSON_DEPTH: usize = 64;

/// Refuses JSON (or JSON5) nested deeper than `max`, before a recursive parser sees it.
fn json_depth_within(text: &str, max: usize) -> std::result::Result<(), String> {
    let (mut depth, mut quote, mut escaped) = (0usize, None::<char>, false);
    for c in text.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' => quote = Some(c),
                '[' | '{' => {
                    depth += 1;
                    if depth > max {
                        return Err(format!("nested more than {max} deep"));
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
    }
    Ok(())
}

/// Whether step `step` of `dir` is in nanochat's format: its `.pt` model exists, or its meta
/// (already read: `meta`) has no `format` key.
pub fn is_nanochat_step(dir: &Path, step: u64, meta: &[u8]) -> bool {
    if pt_model_path(dir, step).exists() {
        return true;
    }
    let text = String::from_utf8_lossy(meta);
    if json_depth_within(&text, MAX_JSON_DEPTH).is_err() {
        // Not ours either (serde_json stops at 128): read_nanochat_meta names the problem.
        return true;
    }
    match json5::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => !m.contains_key("format"),
        _ => false,
    }
}

/// The phase of a nanochat checkpoint folder, from its parent's name.
fn phase_of(dir: &Path) -> Phase {
    let parent = dir
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    match parent.as_str() {
        "mid_checkpoints" => Phase::Mid,
        "chatsft_checkpoints" | "sft_checkpoints" => Phase::Sft,
        "chatrl_checkpoints" | "rl_checkpoints" => Phase::Rl,
        _ => Phase::Base,
    }
}

/// `model_config` as nanochat writes it: exactly GPTConfig's fields (six in v1, seven with
/// `window_pattern` in HEAD).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelConfig {
    sequence_len: usize,
    vocab_size: usize,
    n_layer: usize,
    n_head: usize,
    n_kv_head: usize,
    n_embd: usize,
    window_pattern: Option<String>,
}

/// The keys of nanochat's meta this reads; the others are kept in [`Meta::run`].
#[derive(Deserialize)]
struct NanochatMeta {
    step: Option<u64>,
    val_bpb: Option<f64>,
    model_config: ModelConfig,
}

/// Reads nanochat's `meta_<step>.json` into a [`Meta`]:
/// - `model_config` becomes [`Meta::config`] (HEAD when it has `window_pattern`);
/// - `step` and `val_bpb` map to theirs (a `NaN` or infinite `val_bpb` to none);
/// - [`Meta::run`] keeps the rest as nanochat names it (`user_config`, `device_batch_size`,
///   `max_seq_len`, `total_batch_size`, `dataloader_state_dict`, `loop_state`), plus our
///   names for what HEAD's SFT inherits (`batch_size`, `seq_len`);
/// - [`Meta::optim_file`] is set when `optim_<step>_rank0.pt` exists.
///
/// chat_sft's and chat_rl's metas lack most keys, and chat_rl writes no optimizer file: both
/// read. Errors ([`CoreError::File`] naming the file and the key): not JSON, a missing or
/// unknown `model_config` key, a `step` that contradicts the file name.
pub fn read_nanochat_meta(dir: &Path, step: u64, path: &Path, bytes: &[u8]) -> Result<Meta> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| CoreError::file(path, "nanochat meta that is not UTF-8"))?;
    json_depth_within(text, MAX_JSON_DEPTH).map_err(|why| CoreError::file(path, why))?;
    let raw: NanochatMeta =
        json5::from_str(text).map_err(|e| CoreError::file(path, format!("nanochat meta: {e}")))?;
    // The free-form part (`NaN`/`Infinity` become null there).
    let rest: Value = json5::from_str(text).unwrap_or(Value::Null);
    if let Some(s) = raw.step {
        if s != step {
            return Err(CoreError::file(
                path,
                format!("key `step` is {s}, the file name says {step}"),
            ));
        }
    }
    if rest
        .get("model_config")
        .and_then(|m| m.get("window_pattern"))
        .is_some_and(Value::is_null)
    {
        // Neither generation writes it so (v1 has no key; HEAD a pattern such as "SSSL").
        return Err(CoreError::file(
            path,
            "key `model_config.window_pattern` is null: expected a pattern such as \"SSSL\" (HEAD) or no key (v1)",
        ));
    }
    let mc = raw.model_config;
    let architecture = match &mc.window_pattern {
        Some(_) => Architecture::Head,
        None => Architecture::V1,
    };
    let config = GPTConfig {
        architecture,
        window_pattern: mc.window_pattern.unwrap_or_else(|| "L".into()),
        vocab_size: mc.vocab_size,
        n_layer: mc.n_layer,
        n_head: mc.n_head,
        n_kv_head: mc.n_kv_head,
        n_embd: mc.n_embd,
        block_size: mc.sequence_len,
        dropout: 0.0,
        bias: false,
        rope_base: architecture.rope_base(),
    };
    config
        .validate()
        .map_err(|e| CoreError::file(path, format!("key `model_config`: {e}")))?;
    let model = pt_model_path(dir, step);
    let model_bytes = std::fs::metadata(&model)
        .map_err(|e| CoreError::io(&model, e))?
        .len();
    let optim = pt_optim_path(dir, step, 0);
    let optim_file = std::fs::metadata(&optim).ok().map(|m| FileCheck {
        bytes: m.len(),
        crc32: 0,
    });
    let mut run = json!({"nanochat": true});
    for key in [
        "user_config",
        "device_batch_size",
        "max_seq_len",
        "total_batch_size",
        "dataloader_state_dict",
        "loop_state",
    ] {
        if let Some(v) = rest.get(key) {
            run[key] = v.clone();
        }
    }
    if let Some(v) = rest.get("device_batch_size") {
        run["batch_size"] = v.clone();
    }
    if let Some(v) = rest.get("max_seq_len") {
        run["seq_len"] = v.clone();
    }
    Ok(Meta {
        format: NANOCHAT_FORMAT.into(),
        phase: phase_of(dir),
        step,
        config,
        val_bpb: raw.val_bpb.filter(|v| v.is_finite()),
        tokenizer_path: None,
        tokenizer_sha256: None,
        data_position: None,
        data_buffer: None,
        rng_state: 0,
        // nanochat records no checksums: the length is the file's as found.
        model_file: FileCheck {
            bytes: model_bytes,
            crc32: 0,
        },
        optim_file,
        run,
        // A multi-GPU run leaves one optimizer shard per rank.
        world_size: (1..)
            .take_while(|&r| pt_optim_path(dir, step, r).exists())
            .count()
            + 1,
    })
}

/// Refuses to continue a nanochat run where only pretraining can: `base-train
/// --resume-from-step` continues nanochat's base runs in nanochat's format
/// ([`crate::train::Trainer::resume_nanochat`]); the other training commands (mid-train,
/// chat-sft) would save our format beside nanochat's files, where nanochat's loader would not
/// see it, so they are refused before anything is written.
pub fn refuse_resume(meta: &Meta, dir: &Path) -> Result<()> {
    if meta.format != NANOCHAT_FORMAT {
        return Ok(());
    }
    let step = meta.step;
    Err(CoreError::Unsupported {
        op: "--resume-from-step",
        why: format!(
            "{} holds nanochat's own checkpoint (model_{step:06}.pt); only base-train continues nanochat runs (in nanochat's format). Serve or evaluate it in place (chat-cli, chat-web, chat-eval, base-eval), or start a new run from it (without --resume-from-step)",
            dir.display()
        ),
    })
}

/// The state dict of nanochat's `model_<step>.pt`: names (without `_orig_mod.`) to tensors,
/// with the dtype each was stored in. Errors: [`TorchFile`]'s.
pub fn read_state_dict(
    dir: &Path,
    step: u64,
) -> Result<BTreeMap<String, crate::torchfile::PtTensor>> {
    TorchFile::open(&pt_model_path(dir, step))?.state_dict()
}

/// The model of a nanochat step, in `dtype` on `device`: [`read_state_dict`] held to
/// `meta.config` by [`GPT::from_state_dict`] (every key, every shape). A refusal names the
/// file and the key, and says which generations this version reads.
pub fn load_nanochat_model(
    dir: &Path,
    step: u64,
    meta: &Meta,
    device: &Device,
    dtype: DType,
) -> Result<GPT> {
    nanochat_model_from(dir, step, meta, read_state_dict(dir, step)?, device, dtype)
}

/// [`load_nanochat_model`] from a state dict already read ([`read_state_dict`] of the same
/// step), for a caller that also needs the stored dtypes.
pub fn nanochat_model_from(
    dir: &Path,
    step: u64,
    meta: &Meta,
    sd: BTreeMap<String, crate::torchfile::PtTensor>,
    device: &Device,
    dtype: DType,
) -> Result<GPT> {
    let path = pt_model_path(dir, step);
    let tensors: BTreeMap<String, HostTensor> =
        sd.into_iter().map(|(k, v)| (k, v.tensor)).collect();
    let p = path.display().to_string();
    GPT::from_state_dict(meta.config.clone(), &tensors, "", &p, device, dtype).map_err(|e| match e {
        CoreError::Format { path, tensor, why } => CoreError::Format {
            path,
            tensor,
            why: format!(
                "{why}; model_config says {} (this version reads nanochat v1, 16788ee, and HEAD, 92d63d4; checkpoints from the months between carry only some of HEAD's tensors and are refused)",
                match meta.config.architecture {
                    Architecture::Head => "HEAD (it has window_pattern)",
                    Architecture::V1 => "v1 (no window_pattern)",
                }
            ),
        },
        other => other,
    })
}

#[cfg(test)]
#[path = "nanochat_tests.rs"]
pub(crate) mod tests;
