//! The pretraining loader of `--recipe head`: the documents of the training sources, tokenized
//! with BOS first in chunks of [`TOKENIZER_BATCH`] documents, packed into (B, T) rows by HEAD's
//! best-fit rule ([`BestFitPacker`]; `tokenizing_distributed_data_loader_with_state_bos_bestfit`
//! in `nanochat/dataloader.py` at 92d63d4), epoch after epoch.
//!
//! Its saved state is the stream's position (source, next document, epoch) and the buffered
//! documents' (source, document) indices, so a resumed run packs the same rows as an
//! uninterrupted one: the buffer is re-tokenized from its indices.

use std::sync::Arc;

use super::bestfit::{BestFitPacker, BufferedDoc, Chunk, StreamPosition};
use super::documents::read_documents;
use super::loader::{Batch, LoaderState, Source};
use crate::tokenizer::Tokenizer;
use crate::{CoreError, Result};

/// Documents tokenized per chunk (HEAD's `tokenizer_batch_size`, 128).
pub const TOKENIZER_BATCH: usize = 128;

/// Documents the packer's buffer is topped up to (HEAD's `buffer_size`, 1000).
pub const BUFFER_SIZE: usize = 1000;

/// The document stream: sources in order, each read whole when the stream reaches it.
struct DocStream {
    sources: Vec<Source>,
    tokenizer: Tokenizer,
    /// Where the next chunk starts: `pq_idx` the source, `rg_idx` its next document, `epoch`
    /// the pass (from 1).
    next: StreamPosition,
    /// The documents of the source last read.
    cache: Option<(usize, Arc<Vec<String>>)>,
}

impl DocStream {
    fn documents(&mut self, source: usize) -> Result<Arc<Vec<String>>> {
        if let Some((i, docs)) = &self.cache {
            if *i == source {
                return Ok(docs.clone());
            }
        }
        let docs = match &self.sources[source] {
            Source::Docs(d) => d.clone(),
            Source::File(p) => Arc::new(read_documents(p)?),
        };
        self.cache = Some((source, docs.clone()));
        Ok(docs)
    }

    fn tokenize(&self, source: usize, first: usize, docs: &[String]) -> Vec<BufferedDoc> {
        let bos = self.tokenizer.get_bos_token_id();
        let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
        self.tokenizer
            .encode_batch(&refs)
            .into_iter()
            .enumerate()
            .map(|(k, ids)| {
                let mut tokens = Vec::with_capacity(ids.len() + 1);
                tokens.push(bos);
                tokens.extend(ids);
                BufferedDoc {
                    id: [source, first + k],
                    tokens,
                }
            })
            .collect()
    }

    /// The next chunk of documents; passes over the sources forever, `None` only when no
    /// source has a document.
    fn next_chunk(&mut self) -> Result<Chunk> {
        let mut empty_sources = 0;
        loop {
            let s = self.next.pq_idx;
            let docs = self.documents(s)?;
            let start = self.next.rg_idx;
            if start < docs.len() {
                let end = (start + TOKENIZER_BATCH).min(docs.len());
                let chunk = self.tokenize(s, start, &docs[start..end]);
                self.next.rg_idx = end;
                return Ok(Some((chunk, self.next)));
            }
            if docs.is_empty() {
                empty_sources += 1;
                if empty_sources > self.sources.len() {
                    return Ok(None);
                }
            }
            self.next.rg_idx = 0;
            self.next.pq_idx += 1;
            if self.next.pq_idx == self.sources.len() {
                self.next.pq_idx = 0;
                self.next.epoch += 1;
            }
        }
    }
}

/// HEAD's best-fit pretraining loader over `sources` ([`crate::train::BatchSource`]).
pub struct BestFitLoader {
    stream: DocStream,
    packer: BestFitPacker,
    batch: usize,
    seq: usize,
}

impl BestFitLoader {
    /// `batch` (B) rows of `seq` (T) tokens from `sources`, buffering [`BUFFER_SIZE`]
    /// documents. Errors: [`CoreError::NoData`] for no sources; [`CoreError::InvalidArgument`]
    /// for B or T 0.
    pub fn new(
        sources: Vec<Source>,
        tokenizer: Tokenizer,
        batch: usize,
        seq: usize,
    ) -> Result<BestFitLoader> {
        BestFitLoader::with_buffer(sources, tokenizer, batch, seq, BUFFER_SIZE)
    }

    /// As [`BestFitLoader::new`] with a buffer of `buffer_size` documents (at least 1).
    pub fn with_buffer(
        sources: Vec<Source>,
        tokenizer: Tokenizer,
        batch: usize,
        seq: usize,
        buffer_size: usize,
    ) -> Result<BestFitLoader> {
        if sources.is_empty() {
            return Err(CoreError::no_data("sources", "the best-fit loader"));
        }
        for (name, v) in [("batch size", batch), ("sequence length", seq)] {
            if v == 0 {
                return Err(CoreError::invalid(name, v, "at least 1"));
            }
        }
        if buffer_size == 0 {
            return Err(CoreError::invalid("buffer size", buffer_size, "at least 1"));
        }
        Ok(BestFitLoader {
            stream: DocStream {
                sources,
                tokenizer,
                next: StreamPosition {
                    epoch: 1,
                    ..StreamPosition::default()
                },
                cache: None,
            },
            packer: BestFitPacker::new(buffer_size),
            batch,
            seq,
        })
    }

    /// The next (B, T) batch: every row starts with BOS and every target is a real token.
    /// Errors: the sources' (unreadable files), [`CoreError::NoData`] when no source has a
    /// document.
    pub fn next_batch(&mut self) -> Result<Batch> {
        let stream = &mut self.stream;
        let rows = self
            .packer
            .next_batch(self.batch, self.seq, &mut || stream.next_chunk())?;
        Ok(Batch {
            inputs: rows.inputs,
            targets: rows.targets,
            batch: self.batch,
            seq: self.seq,
        })
    }

    /// Where the stream stands: `source`, `offset` (the next document of it) and `epoch`
    /// (the pass, from 1).
    pub fn state(&self) -> LoaderState {
        let p = self.stream.next;
        LoaderState {
            epoch: p.epoch as u64,
            source: p.pq_idx,
            offset: p.rg_idx,
        }
    }

    /// The buffered documents' (source, document) indices, in buffer order.
    pub fn buffered_ids(&self) -> Vec<[usize; 2]> {
        self.packer.buffer.iter().map(|d| d.id).collect()
    }

    /// Moves the stream to a saved position and empties the buffer ([`Self::restore_buffer`]
    /// refills it). Errors: [`CoreError::OutOfRange`] for a source past the inputs.
    pub fn restore(&mut self, state: LoaderState) -> Result<()> {
        self.check_source(state.source)?;
        self.stream.next = StreamPosition {
            pq_idx: state.source,
            rg_idx: state.offset,
            epoch: (state.epoch as usize).max(1),
        };
        self.packer.buffer.clear();
        Ok(())
    }

    /// Refills the buffer with the documents of these (source, document) indices, tokenized
    /// again. Errors: [`CoreError::OutOfRange`] for an index past the inputs (they changed
    /// since the checkpoint).
    pub fn restore_buffer(&mut self, ids: &[[usize; 2]]) -> Result<()> {
        let mut buffer = Vec::with_capacity(ids.len());
        for &[s, d] in ids {
            self.check_source(s)?;
            let docs = self.stream.documents(s)?;
            let Some(doc) = docs.get(d) else {
                return Err(CoreError::OutOfRange {
                    what: format!("the documents of input {s} a saved loader buffer names (the inputs changed since the checkpoint)"),
                    index: d,
                    len: docs.len(),
                });
            };
            buffer.extend(self.stream.tokenize(s, d, std::slice::from_ref(doc)));
        }
        self.packer.buffer = buffer;
        Ok(())
    }

    fn check_source(&self, source: usize) -> Result<()> {
        let n = self.stream.sources.len();
        if source >= n {
            return Err(CoreError::OutOfRange {
                what: "the inputs a saved loader position names (the inputs changed since the checkpoint)".into(),
                index: source,
                len: n,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{bundled_documents, split_train_val};

    fn loader(buffer: usize) -> BestFitLoader {
        let tok = crate::tokenizer::tests::small_tokenizer().clone();
        let (train, _) = split_train_val(bundled_documents().unwrap(), 0.95, 0.05).unwrap();
        // 60 documents in two sources: a few hundred batches cross epochs.
        let sources = vec![
            Source::Docs(Arc::new(train[..30].to_vec())),
            Source::Docs(Arc::new(train[30..60].to_vec())),
        ];
        BestFitLoader::with_buffer(sources, tok, 3, 96, buffer).unwrap()
    }

    #[test]
    fn rows_start_with_bos_and_are_all_tokens() {
        let mut l = loader(16);
        let bos = crate::tokenizer::tests::small_tokenizer().get_bos_token_id();
        for _ in 0..5 {
            let b = l.next_batch().unwrap();
            assert_eq!(b.inputs.len(), 3 * 96);
            assert!(b.inputs.chunks(96).all(|r| r[0] == bos));
            assert!(b.targets.iter().all(|&t| t >= 0));
            // Targets are the inputs shifted by one within a row.
            for (i, t) in b.inputs.chunks(96).zip(b.targets.chunks(96)) {
                assert_eq!(
                    &i[1..],
                    &t[..95].iter().map(|&x| x as u32).collect::<Vec<_>>()[..]
                );
            }
        }
        // Topped up (by whole chunks) to at least 16 before the row's last choice, which took
        // one.
        assert!(l.buffered_ids().len() >= 15);
    }

    #[test]
    fn resume_from_position_and_buffer_is_identical() {
        let mut a = loader(24);
        for _ in 0..7 {
            a.next_batch().unwrap();
        }
        let (state, ids) = (a.state(), a.buffered_ids());
        let mut b = loader(24);
        b.restore(state).unwrap();
        b.restore_buffer(&ids).unwrap();
        for _ in 0..200 {
            // 200 batches cross both sources and an epoch.
            assert_eq!(a.next_batch().unwrap(), b.next_batch().unwrap());
        }
        assert!(
            a.state().epoch > 1,
            "the test crosses an epoch: {:?}",
            a.state()
        );
    }

    #[test]
    fn bad_saved_state_and_empty_data_are_errors() {
        let mut l = loader(8);
        let e = l.restore(LoaderState {
            epoch: 1,
            source: 5,
            offset: 0,
        });
        assert!(matches!(
            e,
            Err(CoreError::OutOfRange {
                index: 5,
                len: 2,
                ..
            })
        ));
        let e = l.restore_buffer(&[[1, 1_000_000]]);
        assert!(matches!(
            e,
            Err(CoreError::OutOfRange {
                index: 1_000_000,
                ..
            })
        ));
        let tok = crate::tokenizer::tests::small_tokenizer().clone();
        let empty = vec![Source::Docs(Arc::new(Vec::new()))];
        let mut l = BestFitLoader::with_buffer(empty, tok, 1, 8, 4).unwrap();
        assert!(matches!(l.next_batch(), Err(CoreError::NoData { .. })));
    }
}
