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
//! `torch.load(weights_only=True)` allows. The optimizer state goes along where it can
//! (`export_optimizer`: a nanochat source's files, or a HEAD model's `MuonAdamW` state).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::nanochat_save::{nanochat_model_config, write_nanochat_model};
use super::{LoadedModel, Phase};
use crate::io::write_atomic;
use crate::model::Architecture;
use crate::tokenizer::pkl::{token_bytes_counts, TiktokenParts};
use crate::torchfile::{write_pt, PtWriteValue, TorchDType};
use crate::{CoreError, Result};

/// The optimizer files of an export: a nanochat source's own files copied as they are; a HEAD
/// model of ours written in `MuonAdamW`'s layout
/// ([`super::nanochat_optim_write::write_head_optimizer`], its groups' `initial_lr` from the
/// rates the run recorded as `optim_rates`, else the defaults); none for a v1 model of ours
/// (v1's Muon groups follow the iteration order of a Python set, which nanochat's
/// `load_state_dict` matches by position) or a checkpoint without optimizer state.
fn export_optimizer(
    loaded: &LoadedModel,
    tag: &str,
    dir: &Path,
) -> Result<(Vec<PathBuf>, Option<String>)> {
    let meta = &loaded.meta;
    let step = meta.step;
    let src = super::checkpoint_dir(&loaded.root, loaded.phase, tag);
    if meta.optim_file.is_none() {
        return Ok((vec![], Some("the checkpoint has no optimizer state".into())));
    }
    if meta.format == super::nanochat::NANOCHAT_FORMAT {
        // Read first: a damaged file is an error here, not a copy.
        super::nanochat_optim::read_nanochat_optimizer(&src, step, &loaded.model)?;
        let mut out = Vec::new();
        for r in 0.. {
            let from = super::nanochat::pt_optim_path(&src, step, r);
            if !from.exists() {
                break;
            }
            let to = super::nanochat::pt_optim_path(dir, step, r);
            let bytes = std::fs::read(&from).map_err(|e| CoreError::io(&from, e))?;
            write_atomic(&to, &bytes)?;
            out.push(to);
        }
        return Ok((out, None));
    }
    if loaded.model.config().architecture != Architecture::Head {
        return Ok((vec![], Some("a v1 model's optimizer state is not exported (v1's Muon groups follow a Python set's order)".into())));
    }
    let (_, steps, state) = super::read_optimizer_state(&src, meta, &loaded.model)?;
    let rates = &meta.run["optim_rates"];
    let d = crate::optim::MuonAdamWConfig::default();
    let rate = |k: &str, dflt: f64| rates[k].as_f64().unwrap_or(dflt);
    let config = crate::optim::MuonAdamWConfig {
        unembedding_lr: rate("unembedding_lr", d.unembedding_lr),
        embedding_lr: rate("embedding_lr", d.embedding_lr),
        matrix_lr: rate("matrix_lr", d.matrix_lr),
        scalar_lr: rate("scalar_lr", d.scalar_lr),
        weight_decay: rate("weight_decay", d.weight_decay),
    };
    let groups = crate::optim::head_param_groups(&loaded.model, &config)?;
    let to = super::nanochat::pt_optim_path(dir, step, 0);
    super::nanochat_optim_write::write_head_optimizer(&to, &groups, steps, &state, &[], None)?;
    let note = rates.is_null().then(|| {
        "the run recorded no optim_rates: the groups' initial_lr are HEAD's defaults".to_string()
    });
    Ok((vec![to], note))
}

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
    /// The optimizer files (`optim_<step>_rank<r>.pt`), when the source has optimizer state
    /// that can be written (see the module docs).
    pub optim: Vec<PathBuf>,
    /// Why no optimizer file was written, when none was.
    pub optim_note: Option<String>,
    /// `model_<step>.pt`.
    pub model: PathBuf,
    /// `meta_<step>.json`.
    pub meta: PathBuf,
    /// `tokenizer/tokenizer.pkl`.
    pub tokenizer: PathBuf,
    /// `tokenizer/token_bytes.pt`.
    pub token_bytes: PathBuf,
}

/// Writes `loaded` (found under the tag `tag`) as step `meta.step` of
/// `<out>/<nanochat folder>/<tag>/`, with its optimizer state where it can
/// (`export_optimizer`), and its tokenizer, each file atomically. Nothing is overwritten: a
/// target model folder that holds files, or a target tokenizer of another tokenizer, is an
/// error before anything is written. Errors: [`CoreError::Unsupported`] for a model nanochat cannot
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
    // Never overwrite: a model folder with files in it (the source itself, another run) or
    // another tokenizer in the target would lose data or pair a model with the wrong one.
    if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(CoreError::file(
            &dir,
            "already holds files: export into a new folder (nothing was written)",
        ));
    }
    let pkl_bytes = parts.to_pkl_bytes();
    let tok_dir = out.join("tokenizer");
    for name in ["tokenizer.pkl", "tokenizer.json"] {
        let existing = tok_dir.join(name);
        if existing.exists() {
            let same = match name {
                "tokenizer.pkl" => std::fs::read(&existing).is_ok_and(|b| b == pkl_bytes),
                _ => crate::tokenizer::Tokenizer::from_pretrained(&existing)
                    .and_then(|t| t.fingerprint())
                    .is_ok_and(|f| Some(f) == loaded.tokenizer.fingerprint().ok()),
            };
            if !same {
                return Err(CoreError::file(
                    &existing,
                    "another tokenizer is already there: export into a new folder (nothing was written)",
                ));
            }
        }
    }
    std::fs::create_dir_all(&dir).map_err(|e| CoreError::io(&dir, e))?;
    let step = loaded.meta.step;
    // The optimizer first: a damaged source file fails before the model is written.
    let (optim, optim_note) = export_optimizer(loaded, tag, &dir)?;
    let model = super::nanochat::pt_model_path(&dir, step);
    write_nanochat_model(&model, &loaded.model, &[])?;
    // The meta: nanochat's keys, written after the model (the commit marker here too).
    let model_config = nanochat_model_config(c);
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
    std::fs::create_dir_all(&tok_dir).map_err(|e| CoreError::io(&tok_dir, e))?;
    let tokenizer = tok_dir.join("tokenizer.pkl");
    write_atomic(&tokenizer, &pkl_bytes)?;
    let counts = token_bytes_counts(&loaded.tokenizer, c.architecture == Architecture::V1)?;
    let counts: Vec<f64> = counts.into_iter().map(|v| v as f64).collect();
    let token_bytes = tok_dir.join("token_bytes.pt");
    write_pt(
        &token_bytes,
        &PtWriteValue::tensor(TorchDType::I32, &[counts.len()], &counts),
    )?;
    Ok(ExportReport {
        optim,
        optim_note,
        model,
        meta: meta_path,
        tokenizer,
        token_bytes,
    })
}
