//! Which checkpoint a command means: the committed steps and tags under the model root, the
//! newest of them when none is named ([`load_model`], nanochat's `checkpoint_manager.load_model`),
//! the model a fine-tuning starts from with chat-sft's mid -> base fallback ([`load_source`]),
//! the tag a loaded model came from ([`root_tag`]), and a model saved in any folder
//! (`base-eval --hf-path`: [`folder_model_file`], [`load_folder_model`]).
//!
//! Errors are [`CoreError::CheckpointNotFound`] (no model of a phase, or no such tag: the tags
//! that exist are listed), [`CoreError::StepNotFound`] (the committed steps listed),
//! [`CoreError::NoData`] / [`CoreError::File`] for a folder without a single model file, and
//! those of loading the files themselves.

use std::path::{Path, PathBuf};

use super::{
    check_tokenizer, checkpoint_dir, find_tokenizer, load_checkpoint_model, meta_path, Meta, Phase,
};
use crate::model::GPT;
use crate::paths::Paths;
use crate::tokenizer::Tokenizer;
use crate::{CoreError, DType, Device, Result};

/// Steps of `dir` that are committed (have a meta file), ascending.
pub fn list_steps(dir: &Path) -> Vec<u64> {
    let mut steps: Vec<u64> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.strip_prefix("meta_")?
                .strip_suffix(".json")?
                .parse()
                .ok()
        })
        .collect();
    steps.sort_unstable();
    steps
}

/// Model tags under a phase ([`Phase::folders`]: ours and nanochat's), sorted by name.
pub fn list_tags(root: &Path, phase: Phase) -> Vec<String> {
    let mut tags: Vec<String> = phase
        .folders()
        .iter()
        .flat_map(|f| {
            std::fs::read_dir(root.join(f))
                .into_iter()
                .flatten()
                .flatten()
        })
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    tags.sort();
    tags.dedup();
    tags
}

/// nanochat's `load_model`: the model, tokenizer and meta of `phase`'s checkpoints under the
/// model root, taking the newest (largest) step of the given or only/last tag when not given.
///
/// The tokenizer is `$NANOCHAT_TOKENIZER_PATH` when set; else, of `<base dir>/tokenizer`
/// (nanochat's rule) and the folder the checkpoint recorded (a training `--tokenizer`, resolved
/// under the model root), the first whose fingerprint is the checkpoint's, else the first that
/// exists ([`tokenizer_for`](super::tokenizer_for)); [`check_tokenizer`] then compares it with the checkpoint's,
/// unless `force_tokenizer`.
pub fn load_model(
    paths: &Paths,
    phase: Phase,
    device: &Device,
    model_tag: Option<&str>,
    step: Option<u64>,
    force_tokenizer: bool,
) -> Result<(GPT, Tokenizer, Meta)> {
    let root = paths.model_root.as_path();
    let tags = list_tags(root, phase);
    let not_found = |tag: Option<&str>, tags: &[String]| CoreError::CheckpointNotFound {
        phase,
        // The folder the user has: nanochat's (`chatsft_checkpoints`) when only it exists.
        dir: phase
            .folders()
            .iter()
            .map(|f| root.join(f))
            .find(|d| d.is_dir())
            .unwrap_or_else(|| root.join(phase.folders()[0])),
        tag: tag.map(str::to_string),
        tags: tags.to_vec(),
    };
    let tag = match model_tag {
        Some(t) if tags.iter().any(|x| x == t) => t.to_string(),
        Some(t) => return Err(not_found(Some(t), &tags)),
        None => newest_tag(root, phase, &tags).ok_or_else(|| not_found(None, &tags))?,
    };
    let dir = checkpoint_dir(root, phase, &tag);
    let steps = list_steps(&dir);
    let step = match step {
        Some(s) if steps.contains(&s) => s,
        None if !steps.is_empty() => steps[steps.len() - 1],
        _ => return Err(CoreError::StepNotFound { dir, step, steps }),
    };
    let (model, meta) = load_checkpoint_model(&dir, step, device, DType::F32)?;
    let (tok_path, tokenizer) = find_tokenizer(paths, &meta)?;
    check_tokenizer(
        &meta,
        &meta_path(&dir, step),
        &tokenizer,
        &tok_path,
        force_tokenizer,
    )?;
    Ok((model, tokenizer, meta))
}

/// The tag whose newest committed step was written last (by the meta file's time), if any.
fn newest_tag(root: &Path, phase: Phase, tags: &[String]) -> Option<String> {
    tags.iter()
        .filter_map(|t| {
            let dir = checkpoint_dir(root, phase, t);
            let step = *list_steps(&dir).last()?;
            let time = std::fs::metadata(meta_path(&dir, step))
                .and_then(|m| m.modified())
                .ok()?;
            Some((time, t.clone()))
        })
        .max()
        .map(|(_, t)| t)
}

/// Which checkpoint of a phase to load: nanochat's `--model-tag` and `--step` (the newest tag
/// and its newest step when `None`), and whether a tokenizer whose fingerprint differs from the
/// model's is used anyway (`--force-tokenizer`, a warning instead of
/// [`CoreError::TokenizerMismatch`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct CheckpointQuery<'a> {
    /// The tag (folder name under `<phase>_checkpoints/`), or the newest.
    pub model_tag: Option<&'a str>,
    /// The committed step, or the tag's newest.
    pub step: Option<u64>,
    /// Use the tokenizer found even when it is not the one the model was trained with.
    pub force_tokenizer: bool,
}

/// A model loaded from the model root, with where it came from.
pub struct LoadedModel {
    /// The phase whose checkpoints it came from.
    pub phase: Phase,
    /// The model root it was found under ([`Paths::model_root`]).
    pub root: PathBuf,
    /// The model, in f32.
    pub model: GPT,
    /// Its tokenizer ([`find_tokenizer`], checked by [`check_tokenizer`]).
    pub tokenizer: Tokenizer,
    /// The checkpoint's meta (step, config, training settings).
    pub meta: Meta,
}

/// The model of `query` among `phase`'s checkpoints under the model root, on `device`
/// ([`load_model`] with its root kept; the chat commands' `-i/-g/-s`). Errors: those of
/// [`load_model`].
pub fn load_phase(
    paths: &Paths,
    phase: Phase,
    device: &Device,
    query: &CheckpointQuery,
) -> Result<LoadedModel> {
    let (model, tokenizer, meta) = load_model(
        paths,
        phase,
        device,
        query.model_tag,
        query.step,
        query.force_tokenizer,
    )?;
    Ok(LoadedModel {
        phase,
        root: paths.model_root.clone(),
        model,
        tokenizer,
        meta,
    })
}

/// The phases a fine-tuning of `trained` starts from, tried in order: `source` when given,
/// else mid then base for SFT (nanochat's chat_sft.py starts from the mid model; a run without
/// mid-training falls back to base), else base.
pub fn source_phases(trained: Phase, source: Option<Phase>) -> Vec<Phase> {
    match (source, trained) {
        (Some(s), _) => vec![s],
        (None, Phase::Sft) => vec![Phase::Mid, Phase::Base],
        (None, _) => vec![Phase::Base],
    }
}

/// The model a fine-tuning of `trained` starts from ([`source_phases`], the first that has
/// the model of `query`), and its tag ([`root_tag`]). Errors: the last phase's error from
/// [`load_model`] when none has it.
pub fn load_source(
    paths: &Paths,
    trained: Phase,
    source: Option<Phase>,
    device: &Device,
    query: &CheckpointQuery,
) -> Result<(LoadedModel, String)> {
    let mut last_err = None;
    for phase in source_phases(trained, source) {
        match load_phase(paths, phase, device, query) {
            Ok(loaded) => {
                let tag = root_tag(&loaded.root, phase, query.model_tag, &loaded.meta);
                return Ok((loaded, tag));
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.expect("source_phases names at least one phase"))
}

/// The tag a loaded model came from: `given`, else the tag [`load_model`] chose (the newest of
/// those holding step `meta.step`), else `d<n_layer>` (nanochat's default tag) when no folder
/// holds that step.
pub fn root_tag(root: &Path, phase: Phase, given: Option<&str>, meta: &Meta) -> String {
    if let Some(t) = given {
        return t.to_string();
    }
    let holding: Vec<String> = list_tags(root, phase)
        .into_iter()
        .filter(|t| list_steps(&checkpoint_dir(root, phase, t)).contains(&meta.step))
        .collect();
    newest_tag(root, phase, &holding).unwrap_or_else(|| format!("d{}", meta.config.n_layer))
}

/// The model file of a folder (`base-eval --hf-path`): `model.safetensors`, else its only
/// `*.safetensors`. Errors: [`CoreError::Io`] when the folder cannot be read,
/// [`CoreError::NoData`] without a `.safetensors` file, [`CoreError::File`] (naming the folder)
/// with several and no `model.safetensors`.
pub fn folder_model_file(dir: &Path) -> Result<PathBuf> {
    let named = dir.join("model.safetensors");
    if named.exists() {
        return Ok(named);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| CoreError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(CoreError::no_data(
            ".safetensors file",
            dir.display().to_string(),
        )),
        _ => Err(CoreError::file(
            dir,
            "several .safetensors files and no model.safetensors",
        )),
    }
}

/// A model saved in our safetensors format (the config in its metadata) in any folder, in f32,
/// and its tokenizer: the folder's `tokenizer.json` when there is one, else
/// [`Paths::tokenizer_dir`] (`base-eval --hf-path`). Errors: [`folder_model_file`]'s, and
/// those of reading either file (naming it).
pub fn load_folder_model(paths: &Paths, dir: &Path, device: &Device) -> Result<(GPT, Tokenizer)> {
    let file = folder_model_file(dir)?;
    let model = GPT::load(&file, device, DType::F32)?;
    let tok_dir = if dir.join("tokenizer.json").exists() {
        dir.to_path_buf()
    } else {
        paths.tokenizer_dir()
    };
    Ok((model, Tokenizer::from_pretrained(&tok_dir)?))
}

#[cfg(test)]
#[path = "discover_tests.rs"]
mod tests;
