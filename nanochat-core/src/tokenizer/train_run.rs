//! A whole `tok-train` run, as nanochat's `scripts/tok_train.py`: the documents of the inputs
//! (or the bundled corpus), the train / held-out split, the accounting of every character read
//! (trained on, held out, or left out by a cap, with a warning naming the setting), training,
//! saving, and the summary with the held-out bytes per token ([`TokTrainSummary`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::{train_chars, train_tokenizer, TrainOptions};
use crate::data::{bundled_documents, read_documents, split_train_val, unused_warning};
use crate::{CoreError, Result};

/// The sentence whose ids the summary reports, so another process can check it encodes the
/// same.
pub const PROBE: &str = "Call me Ishmael. The year 2026, 3.14159 and naïve café — 한국어 <|bos|>!";

/// Settings of [`tok_train`] (`nanochat tok-train`'s flags).
#[derive(Clone, Debug)]
pub struct TokTrainConfig {
    /// Text, JSONL or parquet files (optionally .gz, read with
    /// [`crate::data::read_documents`]); empty: the bundled corpus.
    pub inputs: Vec<PathBuf>,
    /// Vocabulary size, the nine special tokens included.
    pub vocab_size: usize,
    /// Fraction of the documents (from the start) trained on.
    pub train_ratio: f64,
    /// Fraction of the documents (from the end) held out for bytes per token.
    pub val_ratio: f64,
    /// Characters trained on at most.
    pub max_chars: usize,
    /// Characters of each document used at most.
    pub doc_cap: usize,
}

/// What [`tok_train`] reports as it goes (before training; training's own progress bars go to
/// stderr).
#[derive(Clone, Debug, PartialEq)]
pub enum TokTrainEvent {
    /// An input file was read.
    Read {
        /// The file.
        path: PathBuf,
        /// Its documents.
        documents: usize,
        /// Their characters.
        chars: usize,
    },
    /// Training starts on `train_documents` of the `documents` read.
    Training {
        /// The vocabulary size asked for.
        vocab_size: usize,
        /// Documents trained on.
        train_documents: usize,
        /// Documents read.
        documents: usize,
    },
    /// More than 1% of the characters read are left out by a setting: the warning, which names
    /// it and how to raise it.
    Unused(String),
}

impl std::fmt::Display for TokTrainEvent {
    /// The line a display shows for the event.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokTrainEvent::Read {
                path,
                documents,
                chars,
            } => write!(
                f,
                "read {}: {documents} documents, {chars} characters",
                path.display()
            ),
            TokTrainEvent::Training {
                vocab_size,
                train_documents,
                documents,
            } => write!(
                f,
                "training a {vocab_size}-token BPE on {train_documents} of {documents} documents"
            ),
            TokTrainEvent::Unused(warning) => f.write_str(warning),
        }
    }
}

/// Characters read but neither trained on nor held out, by the setting that left them out.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UnusedChars {
    /// Documents in neither share (`train_ratio + val_ratio < 1`).
    pub ratios: usize,
    /// Past `doc_cap` in their document.
    pub doc_cap: usize,
    /// Left out once `max_chars` were taken.
    pub max_chars: usize,
}

/// [`PROBE`] and its ids.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Probe {
    /// [`PROBE`].
    pub text: String,
    /// Its ids under the trained tokenizer.
    pub ids: Vec<u32>,
}

impl TokTrainSummary {
    /// The `tokenizer` report stage of the run of `config`, as `(settings, results)`; and a
    /// note when the text allowed fewer tokens than asked.
    pub fn report(&self, config: &TokTrainConfig) -> (serde_json::Value, serde_json::Value) {
        let inputs = if config.inputs.is_empty() {
            serde_json::json!("bundled corpus")
        } else {
            serde_json::json!(config.inputs)
        };
        (
            serde_json::json!({"vocab_size": config.vocab_size, "doc_cap": config.doc_cap,
                "max_chars": config.max_chars, "inputs": inputs}),
            serde_json::json!({"vocab_size": self.vocab_size, "train_documents": self.train_documents,
                "train_chars": self.train_chars, "val_bytes_per_token": self.val_bytes_per_token,
                "wall_s": self.seconds}),
        )
    }

    /// The note when the text allowed fewer tokens than asked (no pair was left to merge).
    pub fn short_vocab_note(&self) -> Option<String> {
        (self.vocab_size < self.requested_vocab_size).then(|| {
            format!(
                "note: the text allowed only {} tokens of the {} asked for (no pair left to merge)",
                self.vocab_size, self.requested_vocab_size
            )
        })
    }
}

/// The summary `tok-train` prints (keys in this order once serialized through
/// `serde_json::Value`, which sorts them).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TokTrainSummary {
    /// The folder written (`tokenizer.json`, `token_bytes.json`).
    pub output: String,
    /// The trained vocabulary's size (less than asked when no pair was left to merge).
    pub vocab_size: usize,
    /// [`TokTrainConfig::vocab_size`].
    pub requested_vocab_size: usize,
    /// Documents in the training share.
    pub train_documents: usize,
    /// Documents read.
    pub read_documents: usize,
    /// Characters read.
    pub read_chars: usize,
    /// Characters trained on.
    pub train_chars: usize,
    /// Characters held out.
    pub val_chars: usize,
    /// Characters left out, by setting.
    pub unused_chars: UnusedChars,
    /// Documents held out.
    pub val_documents: usize,
    /// UTF-8 bytes per token of the held-out documents (`None` when none are held out).
    pub val_bytes_per_token: Option<f64>,
    /// Seconds the run took.
    pub seconds: f64,
    /// The probe sentence and its ids.
    pub probe: Probe,
}

/// Trains the tokenizer on `cfg.inputs` (the bundled corpus when empty) and saves it in
/// `output`, reporting through `on_event`.
///
/// Errors: an unreadable input, [`CoreError::NoData`] naming the inputs when they hold no
/// document, bad ratios ([`crate::data::split_train_val`]), a training failure or an
/// unwritable `output`.
pub fn tok_train(
    cfg: &TokTrainConfig,
    output: &Path,
    on_event: &mut dyn FnMut(&TokTrainEvent),
) -> Result<TokTrainSummary> {
    let started = Instant::now();
    let docs = if cfg.inputs.is_empty() {
        bundled_documents()?
    } else {
        let mut docs = Vec::new();
        for p in &cfg.inputs {
            let file_docs = read_documents(p)?;
            on_event(&TokTrainEvent::Read {
                path: p.clone(),
                documents: file_docs.len(),
                chars: file_docs.iter().map(|d| d.chars().count()).sum(),
            });
            docs.extend(file_docs);
        }
        docs
    };
    if docs.is_empty() {
        let inputs: Vec<String> = cfg.inputs.iter().map(|p| p.display().to_string()).collect();
        return Err(CoreError::no_data("documents", inputs.join(", ")));
    }
    let n_docs = docs.len();
    let read_chars: usize = docs.iter().map(|d| d.chars().count()).sum();
    let (train, val) = split_train_val(docs, cfg.train_ratio, cfg.val_ratio)?;
    let val_chars: usize = val.iter().map(|d| d.chars().count()).sum();
    on_event(&TokTrainEvent::Training {
        vocab_size: cfg.vocab_size,
        train_documents: train.len(),
        documents: n_docs,
    });
    let opts = TrainOptions {
        vocab_size: cfg.vocab_size,
        doc_cap: cfg.doc_cap,
        max_chars: cfg.max_chars,
        progress: true,
    };
    // Every character read is trained on, held out, or left out by a setting: say which.
    let chars = train_chars(&train, &opts);
    let unused = UnusedChars {
        ratios: read_chars - chars.read - val_chars,
        doc_cap: chars.over_doc_cap,
        max_chars: chars.over_max_chars,
    };
    let ratios = format!(
        "--train-ratio {} and --val-ratio {}",
        cfg.train_ratio, cfg.val_ratio
    );
    let doc_cap = format!("--doc-cap {}", cfg.doc_cap);
    let max_chars = format!("--max-chars {}", cfg.max_chars);
    let warnings = [
        (
            unused.ratios,
            &ratios,
            "raise them to a sum of 1 to use every document",
        ),
        (
            unused.doc_cap,
            &doc_cap,
            "raise --doc-cap to train on the rest of long documents",
        ),
        (
            unused.max_chars,
            &max_chars,
            "raise --max-chars to train on more",
        ),
    ];
    for (n, cause, remedy) in warnings {
        if let Some(w) = unused_warning(read_chars, n, "characters read", cause, remedy) {
            on_event(&TokTrainEvent::Unused(w));
        }
    }
    // The summary counts what training itself reports having used.
    let (tok, chars) = train_tokenizer(&train, &opts)?;
    let unused = UnusedChars {
        ratios: read_chars - chars.read - val_chars,
        doc_cap: chars.over_doc_cap,
        max_chars: chars.over_max_chars,
    };
    tok.save(output)?;
    let val_bytes: usize = val.iter().map(|d| d.len()).sum();
    let val_tokens: usize = tok
        .encode_batch(&val.iter().map(String::as_str).collect::<Vec<_>>())
        .iter()
        .map(Vec::len)
        .sum();
    Ok(TokTrainSummary {
        output: output.display().to_string(),
        vocab_size: tok.vocab_size(),
        requested_vocab_size: cfg.vocab_size,
        train_documents: train.len(),
        read_documents: n_docs,
        read_chars,
        train_chars: chars.used,
        val_chars,
        unused_chars: unused,
        val_documents: val.len(),
        val_bytes_per_token: (val_tokens > 0).then(|| val_bytes as f64 / val_tokens as f64),
        seconds: started.elapsed().as_secs_f64(),
        probe: Probe {
            text: PROBE.to_string(),
            ids: tok.encode(PROBE),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run on one text file: its read is reported, the summary counts its documents and
    /// characters, the saved tokenizer encodes the probe as reported; a file with no document
    /// is `NoData` naming it.
    #[test]
    fn tok_train_reads_trains_saves_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.jsonl");
        let para = "the quick brown fox jumps over the lazy dog again and again. ";
        let lines: Vec<String> = (1..=4)
            .map(|n| serde_json::json!({ "text": para.repeat(n * 5) }).to_string())
            .collect();
        std::fs::write(&input, lines.join("\n")).unwrap();
        let cfg = TokTrainConfig {
            inputs: vec![input.clone()],
            vocab_size: 300,
            train_ratio: 0.5,
            val_ratio: 0.5,
            max_chars: 1_000_000,
            doc_cap: 10_000,
        };
        let out = dir.path().join("tok");
        let mut events = Vec::new();
        let s = tok_train(&cfg, &out, &mut |e| events.push(e.clone())).unwrap();
        let chars = 50 * para.chars().count();
        assert_eq!(
            events[0],
            TokTrainEvent::Read {
                path: input.clone(),
                documents: 4,
                chars
            }
        );
        assert_eq!(
            events[1],
            TokTrainEvent::Training {
                vocab_size: 300,
                train_documents: 2,
                documents: 4
            }
        );
        assert_eq!(
            (s.read_documents, s.train_documents, s.val_documents),
            (4, 2, 2)
        );
        assert_eq!(s.read_chars, chars);
        assert_eq!(s.read_chars, s.train_chars + s.val_chars);
        assert_eq!(
            s.unused_chars,
            UnusedChars {
                ratios: 0,
                doc_cap: 0,
                max_chars: 0
            }
        );
        let tok = super::super::Tokenizer::from_pretrained(&out).unwrap();
        assert_eq!(s.probe.ids, tok.encode(PROBE));
        assert_eq!(s.vocab_size, tok.vocab_size());
        assert!(s.val_bytes_per_token.unwrap() > 1.0);
        let empty = dir.path().join("empty.jsonl");
        std::fs::write(&empty, "").unwrap();
        let cfg = TokTrainConfig {
            inputs: vec![empty.clone()],
            ..cfg
        };
        match tok_train(&cfg, &out, &mut |_| {}).err() {
            Some(CoreError::NoData {
                what: "documents",
                within,
            }) => {
                assert_eq!(within, empty.display().to_string())
            }
            other => panic!("{other:?}"),
        }
    }
}
