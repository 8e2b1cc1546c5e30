//! The pretraining data loader: documents tokenized with `<|bos|>` in front, concatenated, and
//! cut into batches of B rows of T + 1 consecutive tokens (inputs = first T, targets = last T).
//! Sources are tokenized lazily, one at a time, in parallel within a source; the stream cycles
//! over them (epochs). Its position — (epoch, source, token offset) — goes into checkpoints, so
//! a resumed run reads exactly the batches it would have read.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::documents::read_documents;
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
    pub epoch: u64,
    pub source: usize,
    pub offset: usize,
}

/// One batch: `inputs` and `targets`, each B * T ids, row-major (B, T).
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub inputs: Vec<u32>,
    pub targets: Vec<i32>,
    pub batch: usize,
    pub seq: usize,
}

pub struct DataLoader {
    sources: Vec<Source>,
    tokenizer: Tokenizer,
    batch: usize,
    seq: usize,
    state: LoaderState,
    /// Tokens of `sources[loaded]`, when loaded.
    cache: Option<(usize, Vec<u32>)>,
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
    pub fn new(sources: Vec<Source>, tokenizer: Tokenizer, batch: usize, seq: usize) -> Result<DataLoader> {
        if sources.is_empty() {
            return Err(CoreError::Config("the data loader has no source".into()));
        }
        if batch == 0 || seq == 0 {
            return Err(CoreError::Config(format!("batch size {batch} and sequence length {seq} must be positive")));
        }
        Ok(DataLoader { sources, tokenizer, batch, seq, state: LoaderState::default(), cache: None })
    }

    pub fn state(&self) -> LoaderState {
        self.state
    }

    /// Continues from a saved position.
    pub fn restore(&mut self, state: LoaderState) -> Result<()> {
        if state.source >= self.sources.len() {
            return Err(CoreError::Config(format!(
                "saved data position names source {} of {}: the inputs changed since the checkpoint",
                state.source,
                self.sources.len()
            )));
        }
        self.state = state;
        Ok(())
    }

    fn tokens_of(&mut self, i: usize) -> Result<&[u32]> {
        if self.cache.as_ref().map(|(j, _)| *j) != Some(i) {
            let tokens = match &self.sources[i] {
                Source::Docs(docs) => tokenize_documents(&self.tokenizer, docs),
                Source::File(path) => tokenize_documents(&self.tokenizer, &read_documents(path)?),
            };
            self.cache = Some((i, tokens));
        }
        Ok(&self.cache.as_ref().expect("loaded above").1)
    }

    /// The next batch. Consecutive batches overlap by one token (the last target of one is the
    /// first input of the next), as the stream is cut every B * T tokens.
    pub fn next_batch(&mut self) -> Result<Batch> {
        let need = self.batch * self.seq + 1;
        let mut window = Vec::with_capacity(need);
        let start = self.state;
        let mut pos = self.state;
        let mut empty_sources = 0;
        while window.len() < need {
            let n_sources = self.sources.len();
            let tokens = self.tokens_of(pos.source)?;
            let take = (need - window.len()).min(tokens.len().saturating_sub(pos.offset));
            window.extend_from_slice(&tokens[pos.offset..pos.offset + take]);
            pos.offset += take;
            if window.len() < need {
                empty_sources = if take == 0 { empty_sources + 1 } else { 0 };
                if empty_sources > n_sources {
                    return Err(CoreError::Config("the data sources hold no tokens".into()));
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
        let targets = window[1..].iter().map(|&t| t as i32).collect();
        Ok(Batch { inputs, targets, batch: self.batch, seq: self.seq })
    }

    fn advance(&mut self, mut pos: LoaderState, mut n: usize) -> Result<LoaderState> {
        loop {
            let n_sources = self.sources.len();
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
        let docs: Vec<String> = (0..40).map(|i| format!("document number {i} says hello {}", "x ".repeat(i % 7))).collect();
        let half = docs.len() / 2;
        let sources = vec![Source::Docs(docs[..half].to_vec().into()), Source::Docs(docs[half..].to_vec().into())];
        let all: Vec<u32> = [tokenize_documents(&tok, &docs[..half]), tokenize_documents(&tok, &docs[half..])].concat();
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
            assert_eq!(batch.targets, want[1..].iter().map(|&x| x as i32).collect::<Vec<_>>());
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
        assert!(resumed.restore(LoaderState { source: 5, ..saved }).is_err());
    }
}
