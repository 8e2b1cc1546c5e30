//! Checkpoints: the model root ([`crate::paths::Paths::model_root`]: `$NANOCHAT_MODEL_DIR`, else
//! the base dir) /
//! `{base,mid,sft,rl}_checkpoints/<model_tag>/` holding, per step,
//! `model_<step:06>.safetensors`, `optim_<step:06>.bin` (bincode 2) and `meta_<step:06>.json`.
//!
//! Write protocol: each file goes to a temporary name, is fsynced and renamed; the meta file is
//! written last and is the commit marker — a step without its meta file does not exist. The
//! meta records the length and CRC-32 of the other two files, so a truncated or corrupt file is
//! an error naming it, never a silently wrong model.
//!
//! Which checkpoint a command means (the newest tag and step unless named, chat-sft's mid ->
//! base fallback, the tag a model came from, a model in any folder): [`load_model`],
//! [`load_phase`], [`load_source`], [`root_tag`], [`load_folder_model`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::LoaderState;
use crate::io::write_atomic;
use crate::model::{GPTConfig, GPT};
use crate::optim::OptimizerState;
use crate::paths::Paths;
use crate::tokenizer::Tokenizer;
use crate::{CoreError, DType, Device, Result, Tensor};

mod discover;
pub mod export;
pub mod nanochat;
pub mod nanochat_optim;
pub mod nanochat_optim_v1;
pub mod nanochat_optim_write;
pub mod nanochat_save;
pub use discover::{
    folder_model_file, list_steps, list_tags, load_folder_model, load_model, load_phase,
    load_source, root_tag, source_phases, CheckpointQuery, LoadedModel,
};

/// The training phase a checkpoint belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Pretraining (`base_checkpoints/`, nanochat's `scripts/base_train.py`).
    Base,
    /// Mid-training (`mid_checkpoints/`, `scripts/mid_train.py`).
    Mid,
    /// Supervised fine-tuning (`chatsft_checkpoints/` in nanochat, `sft_checkpoints/` here; `scripts/chat_sft.py`).
    Sft,
    /// Reinforcement learning (`rl_checkpoints/`; `scripts/chat_rl.py`).
    Rl,
}

impl Phase {
    /// The phase of a `-i/--source` value (`base`, `mid`, `sft`, `rl`); [`CoreError::Unknown`] otherwise.
    pub fn parse(s: &str) -> Result<Phase> {
        match s {
            "base" => Ok(Phase::Base),
            "mid" => Ok(Phase::Mid),
            "sft" => Ok(Phase::Sft),
            "rl" => Ok(Phase::Rl),
            _ => Err(CoreError::Unknown {
                kind: "source",
                name: s.to_string(),
                expected: "base, mid, sft or rl".into(),
            }),
        }
    }

    /// The `nanochat` command that trains this phase's models.
    pub fn command(self) -> &'static str {
        match self {
            Phase::Base => "base-train",
            Phase::Mid => "mid-train",
            Phase::Sft => "chat-sft",
            Phase::Rl => "chat-rl",
        }
    }

    /// The lower-case name, as in `-i/--source` and the folder `<name>_checkpoints`.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Base => "base",
            Phase::Mid => "mid",
            Phase::Sft => "sft",
            Phase::Rl => "rl",
        }
    }
}

impl Phase {
    /// The folders under the model root holding this phase's checkpoints: ours first, then
    /// nanochat's name where it differs (`chatsft_checkpoints`, `chatrl_checkpoints`).
    pub fn folders(self) -> &'static [&'static str] {
        match self {
            Phase::Base => &["base_checkpoints"],
            Phase::Mid => &["mid_checkpoints"],
            Phase::Sft => &["sft_checkpoints", "chatsft_checkpoints"],
            Phase::Rl => &["rl_checkpoints", "chatrl_checkpoints"],
        }
    }
}

/// The folder of one model's checkpoints: the first of [`Phase::folders`] that holds the tag
/// (so nanochat's `chatsft_checkpoints/<tag>` is found), else ours (where a new one is made).
pub fn checkpoint_dir(root: &Path, phase: Phase, tag: &str) -> PathBuf {
    phase
        .folders()
        .iter()
        .map(|f| root.join(f).join(tag))
        .find(|d| d.is_dir())
        .unwrap_or_else(|| root.join(phase.folders()[0]).join(tag))
}

/// Checks that `tag` names a checkpoint folder: one non-empty path component, neither `.` nor
/// `..`, without `/`, `\\` or NUL. A tag is a folder name under `<phase>_checkpoints/`, never a
/// path: `--model-tag ../tokenizer` (or an absolute path) would otherwise write outside the
/// model root, and a fresh run would move that folder aside. Errors:
/// [`CoreError::InvalidArgument`] naming `--model-tag`.
pub fn validate_tag(tag: &str) -> Result<()> {
    if tag.is_empty() || tag == "." || tag == ".." || tag.contains(['/', '\\', '\0']) {
        return Err(CoreError::invalid(
            "--model-tag",
            format!("{tag:?}"),
            "a folder name: not empty, not `.` or `..`, without `/` or `\\`",
        ));
    }
    Ok(())
}

/// Length and CRC-32 of a file's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCheck {
    /// File length in bytes.
    pub bytes: u64,
    /// CRC-32 (IEEE) of the file's bytes.
    pub crc32: u32,
}

impl FileCheck {
    fn of(bytes: &[u8]) -> FileCheck {
        FileCheck {
            bytes: bytes.len() as u64,
            crc32: crc32fast::hash(bytes),
        }
    }

    fn verify(&self, bytes: &[u8], path: &Path) -> Result<()> {
        let got = FileCheck::of(bytes);
        if got.bytes != self.bytes {
            return Err(CoreError::file(
                path,
                format!(
                    "truncated or extended: {} bytes, the checkpoint recorded {}",
                    got.bytes, self.bytes
                ),
            ));
        }
        if got.crc32 != self.crc32 {
            return Err(CoreError::file(
                path,
                "corrupt: its checksum differs from the one the checkpoint recorded",
            ));
        }
        Ok(())
    }
}

/// Everything but the tensors: written last, the commit marker of a step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Format marker of this project's checkpoints (`nanochat-rs/1`).
    pub format: String,
    /// The training phase that wrote the checkpoint.
    pub phase: Phase,
    /// The optimizer step the weights are after.
    pub step: u64,
    /// The model's configuration (nanochat's `model_config`).
    pub config: GPTConfig,
    /// Validation bits per byte at this step, when measured.
    pub val_bpb: Option<f64>,
    /// The tokenizer the model was trained with: relative to the model root when inside it
    /// (so the folder can move: [`crate::paths::Paths::record`]), else absolute.
    pub tokenizer_path: Option<String>,
    /// The trained-with tokenizer's fingerprint ([`Tokenizer::fingerprint`]), compared at every
    /// load; absent in older checkpoints (then vocabulary size and BOS id are checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer_sha256: Option<String>,
    /// The data loader's position after this step.
    pub data_position: Option<LoaderState>,
    /// The documents a best-fit packer (`--recipe head`) holds in its buffer after this step,
    /// as (source, document) indices: with `data_position`, what a resume needs to continue
    /// the same rows. Absent for v1's contiguous stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_buffer: Option<Vec<[usize; 2]>>,
    /// The training RNG state (dropout masks) after this step.
    pub rng_state: u64,
    /// Length and checksum of `model_<step>.safetensors`, checked at load.
    pub model_file: FileCheck,
    /// Length and checksum of `optim_<step>.bin`, when the optimizer state was saved.
    pub optim_file: Option<FileCheck>,
    /// The run's settings (free-form, for the report).
    pub run: serde_json::Value,
    /// The number of ranks that trained to this step (1 when absent, as in older
    /// checkpoints). Informational: a checkpoint resumes on any number of ranks.
    #[serde(default = "one_rank")]
    pub world_size: usize,
}

fn one_rank() -> usize {
    1
}

const FORMAT: &str = "nanochat-rs/1";

fn model_path(dir: &Path, step: u64) -> PathBuf {
    dir.join(format!("model_{step:06}.safetensors"))
}
fn optim_path(dir: &Path, step: u64) -> PathBuf {
    dir.join(format!("optim_{step:06}.bin"))
}
fn meta_path(dir: &Path, step: u64) -> PathBuf {
    dir.join(format!("meta_{step:06}.json"))
}

/// The optimizer file: bincode 2 of this.
#[derive(Serialize, Deserialize)]
struct OptimFile {
    step: u32,
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
}

/// What a training run adds to a checkpoint besides the weights (`Default`: nothing, one
/// rank).
#[derive(Clone, Debug)]
pub struct SaveInfo {
    /// Validation bits per byte at this step, when measured.
    pub val_bpb: Option<f64>,
    /// As recorded ([`crate::paths::record_under`] the model root).
    pub tokenizer_path: Option<String>,
    /// [`Tokenizer::fingerprint`] of the tokenizer trained with.
    pub tokenizer_sha256: Option<String>,
    /// The data loader's position after this step, for resuming.
    pub data_position: Option<LoaderState>,
    /// A best-fit packer's buffered documents after this step ([`Meta::data_buffer`]).
    pub data_buffer: Option<Vec<[usize; 2]>>,
    /// The training RNG state (dropout masks) after this step.
    pub rng_state: u64,
    /// The run's settings (free-form JSON, for the report).
    pub run: serde_json::Value,
    /// The number of ranks that trained this step (recorded in the meta's `world_size`).
    pub world_size: usize,
}

impl Default for SaveInfo {
    fn default() -> Self {
        SaveInfo {
            val_bpb: None,
            tokenizer_path: None,
            tokenizer_sha256: None,
            data_position: None,
            data_buffer: None,
            rng_state: 0,
            run: serde_json::Value::Null,
            world_size: 1,
        }
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Saves step `step` of a model (and its optimizer) into `dir` with the write protocol above.
pub fn save_checkpoint(
    dir: &Path,
    phase: Phase,
    step: u64,
    model: &GPT,
    optim: Option<&dyn OptimizerState>,
    info: SaveInfo,
) -> Result<Meta> {
    std::fs::create_dir_all(dir).map_err(|e| CoreError::io(dir, e))?;
    let mp = model_path(dir, step);
    model.save(&mp)?;
    let model_file = FileCheck::of(&std::fs::read(&mp).map_err(|e| CoreError::io(&mp, e))?);
    let optim_file = match optim {
        None => None,
        Some(o) => {
            let tensors = o
                .state_tensors()?
                .into_iter()
                .map(|(n, t)| Ok((n, t.shape().to_vec(), t.to_vec_f32()?)))
                .collect::<Result<Vec<_>>>()?;
            let bytes = bincode::serde::encode_to_vec(
                OptimFile {
                    step: o.steps(),
                    tensors,
                },
                bincode::config::standard(),
            )
            .map_err(|e| CoreError::file(optim_path(dir, step), e))?;
            write_atomic(&optim_path(dir, step), &bytes)?;
            Some(FileCheck::of(&bytes))
        }
    };
    let meta = Meta {
        format: FORMAT.into(),
        phase,
        step,
        config: model.config().clone(),
        val_bpb: info.val_bpb,
        tokenizer_path: info.tokenizer_path,
        tokenizer_sha256: info.tokenizer_sha256,
        data_position: info.data_position,
        data_buffer: info.data_buffer,
        rng_state: info.rng_state,
        model_file,
        optim_file,
        run: info.run,
        world_size: info.world_size,
    };
    sync_dir(dir);
    let json = serde_json::to_vec_pretty(&meta).expect("meta serialises");
    write_atomic(&meta_path(dir, step), &json)?;
    sync_dir(dir);
    Ok(meta)
}

/// Reads and checks the meta file of a step, ours or nanochat's
/// ([`nanochat::read_nanochat_meta`], decided per step by [`nanochat::is_nanochat_step`]). Errors: [`CoreError::StepNotFound`] (with the
/// committed steps) when the step has no meta file, [`CoreError::Io`], or [`CoreError::File`]
/// for a corrupt meta or another format.
pub fn read_meta(dir: &Path, step: u64) -> Result<Meta> {
    let path = meta_path(dir, step);
    let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => CoreError::StepNotFound {
            dir: dir.to_path_buf(),
            step: Some(step),
            steps: list_steps(dir),
        },
        _ => CoreError::io(&path, e),
    })?;
    if nanochat::is_nanochat_step(dir, step, &bytes) {
        return nanochat::read_nanochat_meta(dir, step, &path, &bytes);
    }
    let meta: Meta = serde_json::from_slice(&bytes)
        .map_err(|e| CoreError::file(&path, format!("corrupt meta file: {e}")))?;
    if meta.format != FORMAT {
        return Err(CoreError::file(
            &path,
            format!("format `{}`, expected `{FORMAT}`", meta.format),
        ));
    }
    Ok(meta)
}

/// Host bytes that reading a checkpoint of `num_params` parameters from a `file_bytes` file
/// holds at its peak: the file's bytes, the values as read ([`crate::io::HostData`]: f32 for
/// f32, bf16 and f16 tensors, 4 bytes a parameter; as large as the file for f64 ones), and on
/// the CPU the model's own copy in `dtype` (on a GPU that copy is the device's, checked when
/// the model is built).
pub fn load_peak_bytes(num_params: u64, file_bytes: u64, device: &Device, dtype: DType) -> u64 {
    let values = num_params.saturating_mul(4).max(file_bytes);
    let model_copy = if device.backend().is_cpu() {
        num_params.saturating_mul(dtype.size() as u64)
    } else {
        0
    };
    file_bytes.saturating_add(values).saturating_add(model_copy)
}

/// Loads the model of a committed step (checking its file against the meta), in `dtype`; a
/// nanochat step through [`nanochat::load_nanochat_model`].
pub fn load_checkpoint_model(
    dir: &Path,
    step: u64,
    device: &Device,
    dtype: DType,
) -> Result<(GPT, Meta)> {
    let meta = read_meta(dir, step)?;
    // The config comes from the meta: an invalid one is the meta's fault, named as such.
    meta.config
        .validate()
        .map_err(|e| CoreError::file(meta_path(dir, step), format!("model config: {e}")))?;
    // Before the file is read: a meta claiming a model too large for the machine is refused
    // here rather than by an OOM kill while its weights are read.
    let file = if meta.format == nanochat::NANOCHAT_FORMAT {
        nanochat::pt_model_path(dir, step)
    } else {
        model_path(dir, step)
    };
    let file_bytes = std::fs::metadata(&file).map_or(0, |m| m.len());
    let need = load_peak_bytes(meta.config.num_params(), file_bytes, device, dtype);
    if let Some(free) = crate::train::exceeds_host_free(need) {
        let stage = "to load its checkpoint";
        let place = "host memory".to_string();
        return Err(crate::model::model_too_large(
            &meta.config,
            stage,
            place,
            need,
            free,
        ));
    }
    if meta.format == nanochat::NANOCHAT_FORMAT {
        let model = nanochat::load_nanochat_model(dir, step, &meta, device, dtype)?;
        return Ok((model, meta));
    }
    let path = model_path(dir, step);
    let bytes = std::fs::read(&path).map_err(|e| CoreError::io(&path, e))?;
    meta.model_file.verify(&bytes, &path)?;
    let p = path.display().to_string();
    let file = crate::io::parse_safetensors(&bytes, &p)?;
    let model = GPT::from_state_dict(meta.config.clone(), &file.tensors, "", &p, device, dtype)?;
    Ok((model, meta))
}

/// The optimizer state saved with a committed step, by our names, with its file and step
/// count: ours (`optim_<step>.bin`, checked against the meta) or nanochat's
/// ([`nanochat_optim::read_nanochat_optimizer`]). Errors: no optimizer state, a corrupt file,
/// a layout that does not fit `model`.
pub fn read_optimizer_state(
    dir: &Path,
    meta: &Meta,
    model: &GPT,
) -> Result<(PathBuf, u32, nanochat_optim::StateMap)> {
    Ok(if meta.format == nanochat::NANOCHAT_FORMAT {
        let path = nanochat::pt_optim_path(dir, meta.step, 0);
        if meta.optim_file.is_none() {
            return Err(CoreError::file(
                &path,
                "this checkpoint has no optimizer state",
            ));
        }
        let (step, map) = nanochat_optim::read_nanochat_optimizer(dir, meta.step, model)?;
        (path, step, map)
    } else {
        let path = optim_path(dir, meta.step);
        let check = meta
            .optim_file
            .ok_or_else(|| CoreError::file(&path, "this checkpoint has no optimizer state"))?;
        let bytes = std::fs::read(&path).map_err(|e| CoreError::io(&path, e))?;
        check.verify(&bytes, &path)?;
        let (file, _): (OptimFile, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard())
                .map_err(|e| CoreError::file(&path, format!("corrupt optimizer state: {e}")))?;
        let map: std::collections::HashMap<String, (Vec<usize>, Vec<f32>)> = file
            .tensors
            .into_iter()
            .map(|(n, s, d)| (n, (s, d)))
            .collect();
        (path, file.step, map)
    })
}

/// Restores the state of `model`'s optimizer from a committed step: ours (`optim_<step>.bin`,
/// checked against the meta) or nanochat's (`optim_<step>_rank0.pt`:
/// [`nanochat_optim::read_nanochat_optimizer`]).
pub fn load_optimizer_state(
    dir: &Path,
    meta: &Meta,
    model: &GPT,
    optim: &mut dyn OptimizerState,
    device: &Device,
) -> Result<()> {
    let (path, step, map) = read_optimizer_state(dir, meta, model)?;
    optim.load_state(step, &mut |name, param| {
        let (shape, data) = map.get(name).ok_or_else(|| {
            CoreError::file(&path, format!("optimizer state `{name}` is missing"))
        })?;
        if shape.as_slice() != param.shape() {
            return Err(CoreError::file(
                &path,
                format!(
                    "optimizer state `{name}`: shape {shape:?} vs parameter {:?}",
                    param.shape()
                ),
            ));
        }
        Tensor::from_f32(
            device,
            data,
            shape,
            if name.ends_with(".momentum_buffer") {
                param.dtype()
            } else {
                DType::F32
            },
        )
    })
}

/// The tokenizer of a checkpoint and its folder, loaded once (the rule is [`load_model`]'s): a
/// base dir that moved finds its own `tokenizer/` even when a stale one sits at the recorded
/// path, and a model trained with a tokenizer of its own finds that one even when the base dir
/// has another. Errors: the chosen folder has no readable tokenizer.
pub fn find_tokenizer(paths: &Paths, meta: &Meta) -> Result<(PathBuf, Tokenizer)> {
    let load = |p: PathBuf| Tokenizer::from_pretrained(&p).map(|t| (p, t));
    if let Some(p) = &paths.tokenizer_override {
        return load(p.clone());
    }
    let default = paths.base_dir.join("tokenizer");
    let mut candidates = vec![default.clone()];
    if let Some(recorded) = &meta.tokenizer_path {
        let p = paths.resolve(recorded);
        if p != default {
            candidates.push(p);
        }
    }
    let mut first = None;
    for p in candidates.into_iter().filter(|p| p.exists()) {
        let loaded = load(p);
        if let (Ok((_, t)), Some(want)) = (&loaded, &meta.tokenizer_sha256) {
            if t.fingerprint().is_ok_and(|have| &have == want) {
                return loaded;
            }
        }
        first.get_or_insert(loaded);
    }
    first.unwrap_or_else(|| load(default))
}

/// The folder [`find_tokenizer`] chooses ([`Paths::tokenizer_dir`] when none can be read).
pub fn tokenizer_for(paths: &Paths, meta: &Meta) -> PathBuf {
    find_tokenizer(paths, meta).map_or_else(|_| paths.tokenizer_dir(), |(p, _)| p)
}

/// Refuses a tokenizer the model was not trained with: with a recorded fingerprint, the two
/// must be equal; without one (older checkpoints, nanochat's), the vocabulary sizes must match
/// (equal, or the model's padded to a multiple of 64) and the BOS id must be inside the model's
/// vocabulary, and a warning says the check was partial. `force` turns a refusal into a warning
/// (`--force-tokenizer`). The error names both files and both fingerprints.
pub fn check_tokenizer(
    meta: &Meta,
    meta_file: &Path,
    tokenizer: &Tokenizer,
    tokenizer_file: &Path,
    force: bool,
) -> Result<()> {
    let model_vocab = meta.config.vocab_size;
    let refuse = |why: String| -> Result<()> {
        if force {
            let why = why.replace(" (pass --force-tokenizer to use it anyway)", "");
            eprintln!("warning: --force-tokenizer: {why}");
            Ok(())
        } else {
            Err(CoreError::TokenizerMismatch {
                model: meta_file.display().to_string(),
                tokenizer: tokenizer_file.display().to_string(),
                why,
            })
        }
    };
    match &meta.tokenizer_sha256 {
        Some(want) => {
            let have = tokenizer.fingerprint()?;
            if &have != want {
                return refuse(format!(
                    "the model was trained with tokenizer sha256 {want}, this tokenizer is sha256 {have} (pass --force-tokenizer to use it anyway)"
                ));
            }
            Ok(())
        }
        None => {
            let v = tokenizer.vocab_size();
            let padded = v.div_ceil(64) * 64;
            if model_vocab != v && model_vocab != padded {
                return refuse(format!(
                    "the model's vocabulary is {model_vocab} tokens, the tokenizer's {v} (padded {padded}) (pass --force-tokenizer to use it anyway)"
                ));
            }
            let bos = tokenizer.get_bos_token_id() as usize;
            if bos >= model_vocab {
                return refuse(format!(
                    "the tokenizer's BOS id {bos} is outside the model's vocabulary of {model_vocab}"
                ));
            }
            if meta.format == nanochat::NANOCHAT_FORMAT {
                // nanochat's checkpoints never record one: nothing to warn about.
                tracing::info!(
                    "{}: a nanochat checkpoint; checked the vocabulary size ({v}) and the BOS id ({bos}) of {}",
                    meta_file.display(),
                    tokenizer_file.display()
                );
            } else {
                tracing::warn!(
                    "{}: no tokenizer fingerprint recorded; checked only the vocabulary size ({v}) and the BOS id ({bos}) of {}",
                    meta_file.display(),
                    tokenizer_file.display()
                );
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests;
