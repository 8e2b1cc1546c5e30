//! The SFT loader of nanochat HEAD (`sft_data_generator_bos_bestfit` in `scripts/chat_sft.py` at
//! 92d63d4): the conversations of a task, rendered once (ids and loss mask), packed into (B, T)
//! rows by [`SftPacker`] (best fit, padding with BOS where nothing fits, never cropping), pass
//! after pass. It reports its progress through the data (conversations consumed over the
//! dataset's size), which sets HEAD's SFT learning rate and, with no `--num-iterations`, ends the
//! run after one pass.
//!
//! Its saved state: the position is [`LoaderState`] `{epoch: completed passes of the refills,
//! source: the next conversation to buffer, offset: conversations consumed}`, and the buffer is
//! its conversations' indices (`[0, index]`), so a resumed run packs the same rows.

use std::sync::Arc;

use super::bestfit::SftPacker;
use super::loader::{Batch, LoaderState};
use crate::tasks::Task;
use crate::tokenizer::Tokenizer;
use crate::{CoreError, Result};

/// Conversations the SFT buffer is topped up to (HEAD's `buffer_size`, 100).
pub const SFT_BUFFER_SIZE: usize = 100;

/// HEAD's SFT loader over a task's conversations.
#[derive(Clone)]
pub struct SftLoader {
    dataset: Arc<Vec<(Vec<u32>, Vec<u8>)>>,
    packer: SftPacker,
    batch: usize,
    seq: usize,
    bos: u32,
}

impl SftLoader {
    /// `batch` (B) rows of `seq` (T) tokens from `task`'s conversations, each rendered whole by
    /// `tokenizer`. Errors: [`CoreError::InvalidArgument`] for B or T 0, [`CoreError::NoData`]
    /// for a task without conversations, and rendering's.
    pub fn new(
        task: &dyn Task,
        tokenizer: &Tokenizer,
        batch: usize,
        seq: usize,
    ) -> Result<SftLoader> {
        if batch == 0 || seq == 0 {
            return Err(CoreError::invalid(
                "SFT rows x tokens",
                format!("{batch} x {seq}"),
                "at least 1 x 1",
            ));
        }
        let dataset = (0..task.num_examples())
            .map(|i| tokenizer.render_conversation(&task.get_example(i)?, usize::MAX))
            .collect::<Result<Vec<_>>>()?;
        if dataset.is_empty() {
            return Err(CoreError::no_data(
                "conversations",
                format!("task {}", task.name()),
            ));
        }
        Ok(SftLoader {
            dataset: Arc::new(dataset),
            packer: SftPacker::new(SFT_BUFFER_SIZE),
            batch,
            seq,
            bos: tokenizer.get_bos_token_id(),
        })
    }

    /// Conversations in one pass.
    pub fn len(&self) -> usize {
        self.dataset.len()
    }

    /// Whether there are no conversations (never: [`SftLoader::new`] refuses that).
    pub fn is_empty(&self) -> bool {
        self.dataset.is_empty()
    }

    /// Conversations longer than a row (T + 1 tokens): the packer never takes them (HEAD's
    /// neither crops nor packs them).
    pub fn too_long(&self) -> usize {
        let cap = self.seq + 1;
        self.dataset
            .iter()
            .filter(|(ids, _)| ids.len() > cap)
            .count()
    }

    /// The next (B, T) batch: targets -1 on the loss mask's zeros and on padding.
    pub fn next_batch(&mut self) -> Result<Batch> {
        let (rows, _) = self
            .packer
            .next_batch(self.batch, self.seq, &self.dataset, self.bos)?;
        Ok(Batch {
            inputs: rows.inputs,
            targets: rows.targets,
            batch: self.batch,
            seq: self.seq,
        })
    }

    /// Conversations consumed over the dataset's size (HEAD's `approx_progress`).
    pub fn progress(&self) -> f64 {
        self.packer.progress(self.dataset.len()).approx_progress
    }

    /// Optimizer steps of `micro_batches` batches each until one pass is consumed (HEAD's
    /// `last_step` rule), counted on a copy. Errors: the packer's (nothing fits a row).
    pub fn steps_per_epoch(&self, micro_batches: usize) -> Result<u64> {
        let mut probe = self.packer.clone();
        probe.consumed = 0;
        let mut steps = 0;
        while probe.consumed < self.dataset.len() {
            for _ in 0..micro_batches.max(1) {
                probe.next_batch(self.batch, self.seq, &self.dataset, self.bos)?;
            }
            steps += 1;
        }
        Ok(steps)
    }

    /// Where the loader is (see the module docs for the fields' meaning here).
    pub fn state(&self) -> LoaderState {
        LoaderState {
            epoch: self.packer.epoch as u64 - 1,
            source: self.packer.cursor,
            offset: self.packer.consumed,
        }
    }

    /// The buffered conversations, as `[0, index]`.
    pub fn buffered_ids(&self) -> Vec<[usize; 2]> {
        self.packer.buffer.iter().map(|&i| [0, i]).collect()
    }

    /// Moves to a saved position. Errors: [`CoreError::Mismatch`] when it names a conversation
    /// the task does not have.
    pub fn restore(&mut self, state: LoaderState) -> Result<()> {
        if state.source >= self.dataset.len() {
            return Err(self.mismatch(state.source));
        }
        self.packer.epoch = state.epoch as usize + 1;
        self.packer.cursor = state.source;
        self.packer.consumed = state.offset;
        Ok(())
    }

    /// Refills the buffer with these conversations (after [`SftLoader::restore`]).
    pub fn restore_buffer(&mut self, ids: &[[usize; 2]]) -> Result<()> {
        let cap = self.seq + 1;
        let mut buffer = Vec::with_capacity(ids.len());
        for &[_, i] in ids {
            if i >= self.dataset.len() {
                return Err(self.mismatch(i));
            }
            buffer.push(i);
        }
        self.packer.too_long = buffer
            .iter()
            .filter(|&&i| self.dataset[i].0.len() > cap)
            .count();
        self.packer.buffer = buffer;
        Ok(())
    }

    fn mismatch(&self, index: usize) -> CoreError {
        CoreError::Mismatch {
            op: "resume",
            why: format!(
                "the checkpoint's SFT loader names conversation {index}, but the task mixture has {} (resume with the same --tasks and --seed)",
                self.dataset.len()
            ),
        }
    }
}
