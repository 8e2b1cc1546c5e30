//! The training data loader: a stream of segments — documents tokenized with `<|bos|>` in
//! front (pretraining), or conversations rendered in the chat format with their training mask
//! (mid-training, SFT) — concatenated and cut into batches of B rows of T + 1 consecutive
//! tokens (inputs = first T, targets = last T; a target whose mask is 0 becomes -1). SFT can
//! instead pad: one conversation per row. Segments are tokenized lazily, one source at a time
//! (in parallel within a source); the stream cycles over them (epochs). Its position — (epoch,
//! segment, token offset) — goes into checkpoints, so a resumed run reads exactly the batches it
//! would have read.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use std::sync::Arc;

use super::documents::read_documents;
use super::usage::SourceUsage;
use crate::tasks::Task;
use crate::tokenizer::Tokenizer;
use crate::{CoreError, Result};

/// Where documents come from.
#[derive(Clone, Debug)]
pub enum Source {
    /// Documents in memory (e.g. a split of the bundled corpus).
    Docs(std::sync::Arc<Vec<String>>),
    /// A file read when the loader reaches it (`.txt`, `.jsonl`, `.parquet`, optionally `.gz`).
    File(PathBuf),
}

/// A loader's position: the next batch starts at token `offset` of source `source` in pass
/// `epoch` over the sources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoaderState {
    /// Completed passes over all sources (0 during the first).
    pub epoch: u64,
    /// Index of the current segment: a source (text) or a conversation (task example).
    pub source: usize,
    /// Token offset of the next batch's first token within that segment.
    pub offset: usize,
}

/// One batch: `inputs` and `targets`, each B * T ids, row-major (B, T).
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Input token ids, B * T, row-major (B, T).
    pub inputs: Vec<u32>,
    /// Next-token targets, B * T, row-major (B, T); -1 where the loss ignores the position
    /// (masked by the chat format, or padding).
    pub targets: Vec<i32>,
    /// Rows, B.
    pub batch: usize,
    /// Tokens per row, T.
    pub seq: usize,
}

/// What the stream is made of.
enum Segments {
    /// Pretraining text: each source's documents, `<|bos|>` first, all trained on.
    Text(Vec<Source>),
    /// Conversations of a task, rendered with their masks (truncated to `max_tokens`).
    Conversations {
        task: Arc<dyn Task>,
        max_tokens: usize,
    },
}

/// How conversations fill rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packing {
    /// One continuous stream cut every B * T tokens (pretraining, mid-training).
    Packed,
    /// One conversation per row, truncated to T + 1 tokens and padded with ignored targets (SFT).
    Padded,
}

/// Cuts a token stream into (B, T) batches and records its position ([`LoaderState`]) for
/// checkpoints; the counterpart of nanochat's `tokenizing_distributed_data_loader*`
/// (`nanochat/dataloader.py`) and of the SFT loop's conversation batches
/// (`scripts/chat_sft.py`), on one process.
pub struct DataLoader {
    segments: Segments,
    packing: Packing,
    tokenizer: Tokenizer,
    batch: usize,
    seq: usize,
    state: LoaderState,
    /// Tokens (and mask, for conversations) of segment `.0`, when loaded.
    cache: Option<(usize, Vec<u32>, Option<Vec<u8>>)>,
}

/// Tokens a conversation keeps in a packed stream of `seq`-token rows: 4 (T + 1).
pub(crate) fn conversation_max_tokens(seq: usize) -> usize {
    4 * (seq + 1)
}

/// Tokens of documents, each preceded by `<|bos|>`.
pub fn tokenize_documents(tokenizer: &Tokenizer, docs: &[String]) -> Vec<u32> {
    let bos = tokenizer.get_bos_token_id();
    let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    for ids in tokenizer.encode_batch(&refs) {
        out.push(bos);
        out.extend(ids);
    }
    out
}

impl DataLoader {
    /// A packed stream of documents (pretraining), `batch` (B) rows of `seq` (T) tokens.
    /// Errors: [`CoreError::NoData`] for no sources; [`CoreError::InvalidArgument`] for B or T 0.
    pub fn new(
        sources: Vec<Source>,
        tokenizer: Tokenizer,
        batch: usize,
        seq: usize,
    ) -> Result<DataLoader> {
        if sources.is_empty() {
            return Err(CoreError::no_data("sources", "the data loader"));
        }
        DataLoader::with(
            Segments::Text(sources),
            Packing::Packed,
            tokenizer,
            batch,
            seq,
        )
    }

    /// The conversations of `task`, in order, rendered in the chat format with their masks.
    /// Errors: [`CoreError::NoData`] for a task without examples;
    /// [`CoreError::InvalidArgument`] for B or T 0.
    pub fn conversations(
        task: Arc<dyn Task>,
        packing: Packing,
        tokenizer: Tokenizer,
        batch: usize,
        seq: usize,
    ) -> Result<DataLoader> {
        if task.num_examples() == 0 {
            return Err(CoreError::no_data(
                "examples",
                format!("task {}", task.name()),
            ));
        }
        let max_tokens = conversation_max_tokens(seq);
        DataLoader::with(
            Segments::Conversations { task, max_tokens },
            packing,
            tokenizer,
            batch,
            seq,
        )
    }

    fn with(
        segments: Segments,
        packing: Packing,
        tokenizer: Tokenizer,
        batch: usize,
        seq: usize,
    ) -> Result<DataLoader> {
        if batch == 0 {
            return Err(CoreError::invalid("batch size", batch, "at least 1"));
        }
        if seq == 0 {
            return Err(CoreError::invalid("sequence length", seq, "at least 1"));
        }
        Ok(DataLoader {
            segments,
            packing,
            tokenizer,
            batch,
            seq,
            state: LoaderState::default(),
            cache: None,
        })
    }

    fn n_segments(&self) -> usize {
        match &self.segments {
            Segments::Text(s) => s.len(),
            Segments::Conversations { task, .. } => task.num_examples(),
        }
    }

    /// Its position: where the next [`next_batch`](Self::next_batch) starts (saved in
    /// checkpoints).
    pub fn state(&self) -> LoaderState {
        self.state
    }

    /// Continues from a saved position. Errors: [`CoreError::OutOfRange`] when `state.source`
    /// is past the segments this loader has (its inputs changed since the checkpoint).
    pub fn restore(&mut self, state: LoaderState) -> Result<()> {
        if state.source >= self.n_segments() {
            return Err(CoreError::OutOfRange {
                what: "the data segments a saved position names (the inputs changed since the checkpoint)".into(),
                index: state.source,
                len: self.n_segments(),
            });
        }
        self.state = state;
        Ok(())
    }

    /// What a run reading the first `stream_tokens` tokens of this text stream (from its start,
    /// cycling as [`next_batch`](Self::next_batch) does) uses of each source, in order. Every
    /// source is read (its documents and characters counted); those the run reaches are
    /// tokenized, as the loader will (the last one stays cached). A run that reads B x T-token
    /// micro-batches reads `n * B * T + 1` tokens in `n` of them. Errors: a source that cannot
    /// be read; [`CoreError::Unsupported`] for a conversation stream.
    pub fn source_usage(&mut self, stream_tokens: usize) -> Result<Vec<SourceUsage>> {
        let Segments::Text(sources) = &self.segments else {
            return Err(CoreError::Unsupported {
                op: "source_usage",
                why: "source usage is counted for text sources only".into(),
            });
        };
        let sources = sources.clone();
        let mut left = stream_tokens;
        let mut out = Vec::with_capacity(sources.len());
        for (i, source) in sources.iter().enumerate() {
            let read;
            let docs: &[String] = match source {
                Source::Docs(docs) => docs,
                Source::File(path) => {
                    read = read_documents(path)?;
                    &read
                }
            };
            let mut usage = SourceUsage {
                documents: docs.len(),
                chars: docs.iter().map(|d| d.chars().count()).sum(),
                tokens: None,
                used_tokens: 0,
            };
            if left > 0 {
                let tokens = tokenize_documents(&self.tokenizer, docs);
                usage.tokens = Some(tokens.len());
                usage.used_tokens = tokens.len().min(left);
                left -= usage.used_tokens;
                self.cache = Some((i, tokens, None));
            }
            out.push(usage);
        }
        Ok(out)
    }

    /// Tokens and mask (None: all trained on) of segment `i`.
    fn segment(&mut self, i: usize) -> Result<(&[u32], Option<&[u8]>)> {
        if self.cache.as_ref().map(|(j, _, _)| *j) != Some(i) {
            let (tokens, mask) = match &self.segments {
                Segments::Text(sources) => match &sources[i] {
                    Source::Docs(docs) => (tokenize_documents(&self.tokenizer, docs), None),
                    Source::File(path) => (
                        tokenize_documents(&self.tokenizer, &read_documents(path)?),
                        None,
                    ),
                },
                Segments::Conversations { task, max_tokens } => {
                    let conv = task.get_example(i)?;
                    let (ids, mask) = self.tokenizer.render_conversation(&conv, *max_tokens)?;
                    (ids, Some(mask))
                }
            };
            self.cache = Some((i, tokens, mask));
        }
        let (_, t, m) = self.cache.as_ref().expect("loaded above");
        Ok((t, m.as_deref()))
    }

    fn tokens_of(&mut self, i: usize) -> Result<&[u32]> {
        Ok(self.segment(i)?.0)
    }

    /// The next batch. Packed: consecutive batches overlap by one token (the last target of one
    /// is the first input of the next), as the stream is cut every B * T tokens.
    /// Errors: a source that cannot be read or a conversation that cannot be rendered;
    /// [`CoreError::NoData`] when no source holds any token.
    pub fn next_batch(&mut self) -> Result<Batch> {
        if self.packing == Packing::Padded {
            return self.next_padded();
        }
        let need = self.batch * self.seq + 1;
        let mut window = Vec::with_capacity(need);
        let mut window_mask = Vec::with_capacity(need);
        let start = self.state;
        let mut pos = self.state;
        let mut empty_sources = 0;
        while window.len() < need {
            let n_sources = self.n_segments();
            let have = window.len();
            let (tokens, mask) = self.segment(pos.source)?;
            let take = (need - have).min(tokens.len().saturating_sub(pos.offset));
            window.extend_from_slice(&tokens[pos.offset..pos.offset + take]);
            match mask {
                Some(m) => window_mask.extend_from_slice(&m[pos.offset..pos.offset + take]),
                None => window_mask.extend(std::iter::repeat_n(1u8, take)),
            }
            pos.offset += take;
            if window.len() < need {
                empty_sources = if take == 0 { empty_sources + 1 } else { 0 };
                if empty_sources > n_sources {
                    return Err(CoreError::no_data("tokens", "the data sources"));
                }
                pos.source += 1;
                pos.offset = 0;
                if pos.source == n_sources {
                    pos.source = 0;
                    pos.epoch += 1;
                }
            }
        }
        // The next batch starts B * T tokens after this one.
        self.state = self.advance(start, self.batch * self.seq)?;
        let inputs = window[..need - 1].to_vec();
        let targets = window[1..]
            .iter()
            .zip(&window_mask[1..])
            .map(|(&t, &m)| if m == 0 { -1 } else { t as i32 })
            .collect();
        Ok(Batch {
            inputs,
            targets,
            batch: self.batch,
            seq: self.seq,
        })
    }

    /// One conversation per row: its first T + 1 tokens, targets -1 where masked and past its end.
    fn next_padded(&mut self) -> Result<Batch> {
        let (b, t) = (self.batch, self.seq);
        let pad = self.tokenizer.encode_special("<|assistant_end|>")?;
        let mut inputs = vec![pad; b * t];
        let mut targets = vec![-1i32; b * t];
        for row in 0..b {
            let i = self.state.source;
            let (tokens, mask) = self.segment(i)?;
            let n = tokens.len().min(t + 1);
            for j in 0..n.saturating_sub(1) {
                inputs[row * t + j] = tokens[j];
                let keep = mask.is_none_or(|m| m[j + 1] == 1);
                targets[row * t + j] = if keep { tokens[j + 1] as i32 } else { -1 };
            }
            self.state.source += 1;
            if self.state.source == self.n_segments() {
                self.state.source = 0;
                self.state.epoch += 1;
            }
        }
        Ok(Batch {
            inputs,
            targets,
            batch: b,
            seq: t,
        })
    }

    fn advance(&mut self, mut pos: LoaderState, mut n: usize) -> Result<LoaderState> {
        loop {
            let n_sources = self.n_segments();
            let len = self.tokens_of(pos.source)?.len();
            if pos.offset + n < len {
                pos.offset += n;
                return Ok(pos);
            }
            n -= len - pos.offset;
            pos.offset = 0;
            pos.source += 1;
            if pos.source == n_sources {
                pos.source = 0;
                pos.epoch += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_consecutive_windows_and_resume_exactly() {
        let tok = crate::tokenizer::tests::small_tokenizer().clone();
        let docs: Vec<String> = (0..40)
            .map(|i| format!("document number {i} says hello {}", "x ".repeat(i % 7)))
            .collect();
        let half = docs.len() / 2;
        let sources = vec![
            Source::Docs(docs[..half].to_vec().into()),
            Source::Docs(docs[half..].to_vec().into()),
        ];
        let all: Vec<u32> = [
            tokenize_documents(&tok, &docs[..half]),
            tokenize_documents(&tok, &docs[half..]),
        ]
        .concat();
        let (b, t) = (3, 7);
        let mut loader = DataLoader::new(sources.clone(), tok.clone(), b, t).unwrap();
        let mut batches = Vec::new();
        let n_batches = all.len() * 3 / (2 * b * t) + 2;
        for k in 0..n_batches {
            let batch = loader.next_batch().unwrap();
            // Every batch is the next B*T+1 tokens of the (cycled) stream.
            let start = k * b * t;
            let want: Vec<u32> = (0..=b * t).map(|i| all[(start + i) % all.len()]).collect();
            assert_eq!(batch.inputs, want[..b * t]);
            assert_eq!(
                batch.targets,
                want[1..].iter().map(|&x| x as i32).collect::<Vec<_>>()
            );
            batches.push(batch);
        }
        assert!(loader.state().epoch >= 1, "the stream cycled");
        assert_eq!(tok.decode(&batches[0].inputs[..1]).unwrap(), "<|bos|>");
        // Resume from the position after batch 10 in a fresh loader.
        let mut again = DataLoader::new(sources.clone(), tok.clone(), b, t).unwrap();
        for _ in 0..10 {
            again.next_batch().unwrap();
        }
        let saved = again.state();
        let mut resumed = DataLoader::new(sources, tok, b, t).unwrap();
        resumed.restore(saved).unwrap();
        for batch in &batches[10..] {
            assert_eq!(&resumed.next_batch().unwrap(), batch);
        }
        assert!(matches!(
            resumed.restore(LoaderState { source: 5, ..saved }),
            Err(CoreError::OutOfRange {
                index: 5,
                len: 2,
                ..
            })
        ));
    }

    #[test]
    fn source_usage_follows_the_stream() {
        let tok = crate::tokenizer::tests::small_tokenizer().clone();
        let docs: Vec<String> = (0..10).map(|i| format!("document {i} says hi")).collect();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("more.txt");
        std::fs::write(&file, "first paragraph\n\nsecond paragraph \u{e9}\n").unwrap();
        let n_docs = tokenize_documents(&tok, &docs).len();
        let in_file = tokenize_documents(&tok, &read_documents(&file).unwrap()).len();
        let sources = vec![
            Source::Docs(docs.clone().into()),
            Source::File(file.clone()),
            Source::File(file),
        ];
        let mut loader = DataLoader::new(sources.clone(), tok.clone(), 2, 4).unwrap();
        let u = loader.source_usage(n_docs + 3).unwrap();
        let chars: usize = docs.iter().map(|d| d.chars().count()).sum();
        assert_eq!(
            u,
            vec![
                SourceUsage {
                    documents: 10,
                    chars,
                    tokens: Some(n_docs),
                    used_tokens: n_docs
                },
                // One document of 35 characters (15 + the blank line's 2 + 18).
                SourceUsage {
                    documents: 1,
                    chars: 35,
                    tokens: Some(in_file),
                    used_tokens: 3
                },
                SourceUsage {
                    documents: 1,
                    chars: 35,
                    tokens: None,
                    used_tokens: 0
                },
            ]
        );
        assert_eq!(
            u[1].used_chars(),
            (35.0 * 3.0 / in_file as f64).round() as usize
        );
        // A run longer than the stream reads every source whole.
        let u = loader.source_usage(5 * (n_docs + 2 * in_file)).unwrap();
        assert!(u
            .iter()
            .all(|s| s.share_used() == 1.0 && s.used_chars() == s.chars));
        // Counting leaves the batches as they were.
        let mut fresh = DataLoader::new(sources, tok, 2, 4).unwrap();
        for _ in 0..6 {
            assert_eq!(loader.next_batch().unwrap(), fresh.next_batch().unwrap());
        }
    }

    #[test]
    fn conversations_mask_their_targets() {
        use crate::tasks::{CustomJson, Task};
        let tok = crate::tokenizer::tests::small_tokenizer().clone();
        let task: Arc<dyn Task> = Arc::new(CustomJson::identity().unwrap());
        let conv = task.get_example(0).unwrap();
        let (ids, mask) = tok.render_conversation(&conv, 10_000).unwrap();
        // Packed: the stream is the rendered conversations; masked targets are -1.
        let mut packed =
            DataLoader::conversations(task.clone(), Packing::Packed, tok.clone(), 1, ids.len() - 1)
                .unwrap();
        let b = packed.next_batch().unwrap();
        assert_eq!(b.inputs, ids[..ids.len() - 1]);
        for j in 0..ids.len() - 1 {
            let want = if mask[j + 1] == 1 {
                ids[j + 1] as i32
            } else {
                -1
            };
            assert_eq!(b.targets[j], want, "position {j}");
        }
        assert!(b.targets.iter().any(|&t| t >= 0) && b.targets.contains(&-1));
        // Padded: one conversation per row, ignored past its end.
        let t = ids.len() + 5;
        let mut padded =
            DataLoader::conversations(task.clone(), Packing::Padded, tok.clone(), 2, t).unwrap();
        let b = padded.next_batch().unwrap();
        assert_eq!(b.inputs[..ids.len() - 1], ids[..ids.len() - 1]);
        assert!(b.targets[ids.len() - 1..t].iter().all(|&x| x == -1));
        let (ids1, _) = tok
            .render_conversation(&task.get_example(1).unwrap(), 10_000)
            .unwrap();
        let n1 = ids1.len().min(t + 1);
        assert_eq!(b.inputs[t..t + n1 - 1], ids1[..n1 - 1]);
        assert_eq!(padded.state().source, 2);
    }
}
