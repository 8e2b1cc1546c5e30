//! base_eval's "bpb" evaluation (`scripts/base_eval.py` at 92d63d4, `--split-tokens`,
//! `--device-batch-size`): the base model's bits per byte on the first `split_tokens` tokens of
//! the training split and of the validation split of the data it was trained on. The splits are
//! base-train's (`crate::train::BaseTrainOptions::inputs`: the bundled corpus 95/5, or the
//! files with the last one for validation), read as base-train's validation stream is: one
//! contiguous stream of `<|bos|>`-prefixed documents, so the numbers compare with the
//! `val_bpb` of training.

use std::path::PathBuf;

use serde::Serialize;

use crate::data::DataLoader;
use crate::model::GPT;
use crate::tokenizer::Tokenizer;
use crate::train::evaluate_bpb;
use crate::{CoreError, Result};

/// Bits per byte on each split ([`split_bpb`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SplitBpb {
    /// On the training split.
    pub train_bpb: f64,
    /// On the validation split.
    pub val_bpb: f64,
    /// Tokens read per split: `--split-tokens` rounded down to whole batches, as HEAD does.
    pub split_tokens: usize,
    /// Rows per batch (`--device-batch-size`).
    pub device_batch_size: usize,
}

/// Bits per byte of `model` on `split_tokens` tokens of each split of `inputs` (empty: the
/// bundled corpus), in batches of `device_batch_size` rows of the model's block_size.
///
/// Errors: [`CoreError::InvalidArgument`] naming `--split-tokens` when it is less than one
/// batch, or `--device-batch-size` 0; the data's (a single input file, unreadable files).
pub fn split_bpb(
    model: &GPT,
    tokenizer: &Tokenizer,
    inputs: &[PathBuf],
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
    let (train, val, _) = crate::train::data_sources(inputs)?;
    let bpb = |sources| -> Result<f64> {
        let mut loader = DataLoader::new(sources, tokenizer.clone(), device_batch_size, seq)?;
        let batches = (0..steps)
            .map(|_| loader.next_batch())
            .collect::<Result<Vec<_>>>()?;
        evaluate_bpb(model, &batches, tokenizer.token_bytes())
    };
    Ok(SplitBpb {
        train_bpb: bpb(train)?,
        val_bpb: bpb(vec![val])?,
        split_tokens: steps * per_batch,
        device_batch_size,
    })
}
