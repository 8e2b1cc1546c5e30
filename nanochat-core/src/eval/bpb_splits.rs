//! base_eval's "bpb" evaluation (`scripts/base_eval.py` at 92d63d4, `--split-tokens`,
//! `--device-batch-size`): the base model's bits per byte on the first `split_tokens` tokens of
//! the training split and of the validation split of the data it was trained on. The splits are
//! base-train's (`crate::train::BaseTrainOptions::inputs`: the bundled corpus 95/5, or the
//! files with the last one for validation), read as base-train's validation stream is: one
//! contiguous stream of `<|bos|>`-prefixed documents, so the numbers compare with the
//! `val_bpb` of training. A model of nanochat's own reads nanochat's shards under the base dir
//! ([`SplitData::Nanochat`]) as nanochat's `base_eval` does: the training files and the last
//! (validation) file, through its generation's loader from the start (HEAD best-fit, v1
//! contiguous: [`crate::data::NanochatLoader`]).

use std::path::PathBuf;

use serde::Serialize;

use crate::data::{nanochat_data_dir, nanochat_shard_paths, Batch, DataLoader, NanochatLoader};
use crate::model::{Architecture, GPT};
use crate::tokenizer::Tokenizer;
use crate::train::evaluate_bpb_across;
use crate::{CoreError, Result};

/// Bits per byte on each split ([`split_bpb`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SplitBpb {
    /// On the training split.
    pub train_bpb: f64,
    /// On the validation split.
    pub val_bpb: f64,
    /// Tokens read per split: `--split-tokens` rounded down to whole batches, as HEAD does.
    pub split_tokens: usize,
    /// Rows per batch (`--device-batch-size`).
    pub device_batch_size: usize,
    /// Which data the splits are: `bundled corpus`, the input files, or nanochat's shards'
    /// folder.
    pub data: String,
}

/// The data [`split_bpb`] measures on.
#[derive(Clone, Debug, PartialEq)]
pub enum SplitData {
    /// base-train's inputs (the last file validation; empty: the bundled corpus 95/5).
    Inputs(Vec<PathBuf>),
    /// nanochat's shards under its base dir, read by `generation`'s loader.
    Nanochat {
        /// nanochat's base dir.
        base_dir: PathBuf,
        /// Whose folder and loader.
        generation: Architecture,
    },
}

/// Bits per byte of `model` on `split_tokens` tokens of each split of `data`, in batches of
/// `device_batch_size` rows of the model's block_size.
///
/// Errors: [`CoreError::InvalidArgument`] naming `--split-tokens` when it is less than one
/// batch, or `--device-batch-size` 0; the data's (a single input file, unreadable files,
/// nanochat's shard folder missing).
pub fn split_bpb(
    model: &GPT,
    tokenizer: &Tokenizer,
    data: &SplitData,
    device_batch_size: usize,
    split_tokens: usize,
) -> Result<SplitBpb> {
    let seq = model.config().block_size;
    if device_batch_size == 0 {
        return Err(CoreError::invalid("--device-batch-size", 0, "at least 1"));
    }
    let per_batch = device_batch_size * seq;
    let steps = split_tokens / per_batch;
    if steps == 0 {
        return Err(CoreError::invalid(
            "--split-tokens",
            split_tokens,
            format!("at least one batch: --device-batch-size x block_size = {per_batch} tokens"),
        ));
    }
    let take = |next: &mut dyn FnMut() -> Result<Batch>| -> Result<f64> {
        let batches = (0..steps).map(|_| next()).collect::<Result<Vec<_>>>()?;
        // Across ranks: the batches are shared out and summed in order (the one-process figure).
        evaluate_bpb_across(
            model,
            &batches,
            tokenizer.token_bytes(),
            &*crate::dist::world(),
        )
    };
    let b = device_batch_size;
    let (train_bpb, val_bpb, name) = match data {
        SplitData::Inputs(inputs) => {
            let (train, val, labels) = crate::train::data_sources(inputs)?;
            let bpb = |sources| -> Result<f64> {
                let mut loader = DataLoader::new(sources, tokenizer.clone(), b, seq)?;
                take(&mut || loader.next_batch())
            };
            let name = if inputs.is_empty() {
                "bundled corpus".to_string()
            } else {
                labels.join(", ")
            };
            (bpb(train)?, bpb(vec![val])?, name)
        }
        SplitData::Nanochat {
            base_dir,
            generation,
        } => {
            let (train, val) = nanochat_shard_paths(base_dir, *generation)?;
            let bpb = |paths| -> Result<f64> {
                let mut loader =
                    NanochatLoader::new(paths, *generation, tokenizer.clone(), b, seq, None)?;
                take(&mut || loader.next_batch())
            };
            let name = nanochat_data_dir(base_dir, *generation)
                .display()
                .to_string();
            (bpb(train)?, bpb(vec![val])?, name)
        }
    };
    Ok(SplitBpb {
        train_bpb,
        val_bpb,
        split_tokens: steps * per_batch,
        device_batch_size,
        data: name,
    })
}
