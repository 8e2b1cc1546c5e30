//! The stream of training batches a run reads ([`BatchSource`]), and its three loaders.

use crate::data::{Batch, BestFitLoader, DataLoader, LoaderState, SftLoader};
use crate::{CoreError, Result};

/// A stream of training batches whose position can be saved and restored.
pub trait BatchSource: Send {
    /// The next micro-batch, (B, T) inputs and targets.
    fn next_batch(&mut self) -> Result<Batch>;
    /// Where the stream is, to save in a checkpoint.
    fn position(&self) -> LoaderState;
    /// Moves the stream to a saved position; errors when the state does not fit the data.
    fn restore(&mut self, state: LoaderState) -> Result<()>;
    /// The documents a packer holds back between batches, as (source, document) indices
    /// (HEAD's best-fit buffer); `None` for a stream without one. Saved with the position.
    fn buffered(&self) -> Option<Vec<[usize; 2]>> {
        None
    }
    /// Progress in [0, 1] through the data, for schedules that follow it (HEAD's SFT); `None`
    /// for a stream that has no end.
    fn progress(&self) -> Option<f64> {
        None
    }
    /// Refills the packer's buffer with these documents (after [`BatchSource::restore`]).
    /// Errors: [`CoreError::Mismatch`] for a stream without a buffer, or the stream's when an
    /// index names no document.
    fn restore_buffered(&mut self, docs: Vec<[usize; 2]>) -> Result<()> {
        Err(CoreError::Mismatch {
            op: "resume",
            why: format!(
                "the checkpoint holds a best-fit packer's buffer ({} documents: a `--recipe head` run) but this run's loader has none",
                docs.len()
            ),
        })
    }
}

impl BatchSource for DataLoader {
    fn next_batch(&mut self) -> Result<Batch> {
        DataLoader::next_batch(self)
    }
    fn position(&self) -> LoaderState {
        self.state()
    }
    fn restore(&mut self, state: LoaderState) -> Result<()> {
        DataLoader::restore(self, state)
    }
}

impl BatchSource for BestFitLoader {
    fn next_batch(&mut self) -> Result<Batch> {
        BestFitLoader::next_batch(self)
    }
    fn position(&self) -> LoaderState {
        self.state()
    }
    fn restore(&mut self, state: LoaderState) -> Result<()> {
        BestFitLoader::restore(self, state)
    }
    fn buffered(&self) -> Option<Vec<[usize; 2]>> {
        Some(self.buffered_ids())
    }
    fn restore_buffered(&mut self, docs: Vec<[usize; 2]>) -> Result<()> {
        self.restore_buffer(&docs)
    }
}

impl BatchSource for SftLoader {
    fn next_batch(&mut self) -> Result<Batch> {
        SftLoader::next_batch(self)
    }
    fn position(&self) -> LoaderState {
        self.state()
    }
    fn restore(&mut self, state: LoaderState) -> Result<()> {
        SftLoader::restore(self, state)
    }
    fn buffered(&self) -> Option<Vec<[usize; 2]>> {
        Some(self.buffered_ids())
    }
    fn progress(&self) -> Option<f64> {
        Some(SftLoader::progress(self))
    }
    fn restore_buffered(&mut self, docs: Vec<[usize; 2]>) -> Result<()> {
        self.restore_buffer(&docs)
    }
}
