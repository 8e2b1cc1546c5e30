//! `nanochat export --to nanochat`: a model of ours (or one read from nanochat's files) written
//! as a nanochat base dir, in the layout of the model's generation
//! (`nanochat/checkpoint_manager.py` `save_checkpoint`, `nanochat/tokenizer.py`
//! `RustBPETokenizer.save` and `scripts/tok_train.py`, at 16788ee for v1 and 92d63d4 for HEAD):
//!
//! ```text
//! <DIR>/{base,mid,chatsft,chatrl}_checkpoints/<TAG>/model_<step:06>.pt   torch state dict
//! <DIR>/{base,mid,chatsft,chatrl}_checkpoints/<TAG>/meta_<step:06>.json  nanochat's meta keys
//! <DIR>/tokenizer/tokenizer.pkl                                          tiktoken Encoding
//! <DIR>/tokenizer/token_bytes.pt                                         int32 bytes per token
//! ```
//!
//! Every tensor is written in float32 (exact for a model read from bf16; nanochat's loaders
//! take float32 on every device). `token_bytes.pt` is written as the generation's
//! `tok_train.py` writes it: raw byte counts for HEAD, v1's replacement-character counts for
//! v1 ([`crate::tokenizer::pkl::token_bytes_counts`]). The pickles name only globals that
//! `torch.load(weights_only=True)` allows. The optimizer state is not exported: nanochat's
//! optimizer files are not written by this version.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::{LoadedModel, Phase};
use crate::io::write_atomic;
use crate::model::Architecture;
use crate::tokenizer::pkl::{token_bytes_counts, TiktokenParts};
use crate::torchfile::{write_pt, PtWriteValue, TorchDType};
use crate::{CoreError, Result};

/// nanochat's folder of a phase's checkpoints.
pub fn nanochat_folder(phase: Phase) -> &'static str {
    match phase {
        Phase::Base => "base_checkpoints",
        Phase::Mid => "mid_checkpoints",
        Phase::Sft => "chatsft_checkpoints",
        Phase::Rl => "chatrl_checkpoints",
    }
}

/// What [`export_nanochat`] wrote.
#[derive(Clone, Debug)]
pub struct ExportReport {
    /// `model_<step>.pt`.
    pub model: PathBuf,
    /// `meta_<step>.json`.
    pub meta: PathBuf,
    /// `tokenizer/tokenizer.pkl`.
    pub tokenizer: PathBuf,
    /// `tokenizer/token_bytes.pt`.
    pub token_bytes: PathBuf,
}

/// Writes `loaded` as step `meta.step` of `<out>/<nanochat folder>/<tag>/`, and its tokenizer,
/// each file atomically. Errors: [`CoreError::Unsupported`] for a model nanochat cannot
/// represent (linear biases, dropout), [`CoreError::Io`], and the tokenizer's (a token that is
/// not byte-level).
pub fn export_nanochat(loaded: &LoadedModel, tag: &str, out: &Path) -> Result<ExportReport> {
    let c = loaded.model.config();
    if c.bias {
        return Err(CoreError::Unsupported {
            op: "export --to nanochat",
            why: "the model has linear biases; nanochat's GPT has none (bias=False everywhere)"
                .into(),
        });
    }
    if c.dropout != 0.0 {
        return Err(CoreError::Unsupported {
            op: "export --to nanochat",
            why: format!(
                "the model was configured with dropout {}; nanochat's GPT has no dropout",
                c.dropout
            ),
        });
    }
    let parts = TiktokenParts::from_tokenizer(&loaded.tokenizer)?;
    let dir = out.join(nanochat_folder(loaded.phase)).join(tag);
    std::fs::create_dir_all(&dir).map_err(|e| CoreError::io(&dir, e))?;
    let step = loaded.meta.step;
    let mut items = Vec::new();
    for (name, t) in loaded.model.named_parameters() {
        let v: Vec<f64> = t.to_vec_f32()?.into_iter().map(f64::from).collect();
        items.push((name, PtWriteValue::tensor(TorchDType::F32, t.shape(), &v)));
    }
    let model = dir.join(format!("model_{step:06}.pt"));
    write_pt(&model, &PtWriteValue::OrderedDict(items))?;
    // The meta: nanochat's keys, written after the model (the commit marker here too).
    let mut model_config = json!({
        "sequence_len": c.block_size, "vocab_size": c.vocab_size, "n_layer": c.n_layer,
        "n_head": c.n_head, "n_kv_head": c.n_kv_head, "n_embd": c.n_embd,
    });
    if c.architecture == Architecture::Head {
        model_config["window_pattern"] = json!(c.window_pattern);
    }
    let run = &loaded.meta.run;
    let mut meta = json!({
        "step": step,
        "val_bpb": loaded.meta.val_bpb,
        "model_config": model_config,
        "user_config": run.get("user_config").cloned().unwrap_or(json!({})),
    });
    for (key, ours) in [
        ("device_batch_size", "batch_size"),
        ("max_seq_len", "seq_len"),
        ("total_batch_size", "total_batch_size"),
    ] {
        if let Some(v) = run
            .get(key)
            .or_else(|| run.get(ours))
            .filter(|v| !v.is_null())
        {
            meta[key] = v.clone();
        }
    }
    if loaded.phase == Phase::Base && meta.get("max_seq_len").is_none() {
        meta["max_seq_len"] = json!(c.block_size);
    }
    for key in ["dataloader_state_dict", "loop_state"] {
        if let Some(v) = run.get(key).filter(|v: &&Value| !v.is_null()) {
            meta[key] = v.clone();
        }
    }
    let meta_path = dir.join(format!("meta_{step:06}.json"));
    write_atomic(
        &meta_path,
        serde_json::to_string_pretty(&meta)
            .expect("meta serialises")
            .as_bytes(),
    )?;
    let tok_dir = out.join("tokenizer");
    std::fs::create_dir_all(&tok_dir).map_err(|e| CoreError::io(&tok_dir, e))?;
    let tokenizer = tok_dir.join("tokenizer.pkl");
    write_atomic(&tokenizer, &parts.to_pkl_bytes())?;
    let counts = token_bytes_counts(&loaded.tokenizer, c.architecture == Architecture::V1)?;
    let counts: Vec<f64> = counts.into_iter().map(|v| v as f64).collect();
    let token_bytes = tok_dir.join("token_bytes.pt");
    write_pt(
        &token_bytes,
        &PtWriteValue::tensor(TorchDType::I32, &[counts.len()], &counts),
    )?;
    Ok(ExportReport {
        model,
        meta: meta_path,
        tokenizer,
        token_bytes,
    })
}
