//! nanochat's tokenizer on the HF `tokenizers` crate: byte-level BPE with nanochat's split
//! pattern (GPT-4's, digits in groups of at most two), nine special tokens at the end of the
//! vocabulary, the chat format ([`chat`]), and bytes-per-token evaluation against GPT-2 and
//! GPT-4's encodings ([`eval`]).
//!
//! Files: `tokenizer.json` (a standard HF tokenizer, loadable by Python's `tokenizers`) and
//! `token_bytes.json` (the UTF-8 length of each token, 0 for specials: bits-per-byte metrics).

pub mod chat;
pub mod eval;
mod eval_report;
mod fingerprint;
pub mod pkl;
mod train;
mod train_run;

use std::path::{Path, PathBuf};

pub use eval_report::{eval_texts, TokEval};
pub use fingerprint::{fingerprint, fingerprint_tiktoken, TokenEntry};
pub use train::{train_chars, train_tokenizer, TrainChars, TrainOptions};
pub use train_run::{
    tok_train, Probe, TokTrainConfig, TokTrainEvent, TokTrainSummary, UnusedChars, PROBE,
};

use crate::{CoreError, Result};

/// nanochat's pre-tokenizer split pattern.
pub const SPLIT_PATTERN: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+";

/// The special tokens, in id order; they take the last nine ids of the vocabulary.
pub const SPECIAL_TOKENS: [&str; 9] = [
    "<|bos|>",
    "<|user_start|>",
    "<|user_end|>",
    "<|assistant_start|>",
    "<|assistant_end|>",
    "<|python_start|>",
    "<|python_end|>",
    "<|output_start|>",
    "<|output_end|>",
];

/// [`CoreError::Tokenizer`] of `op` (`train`, `load`, `chat format`...).
pub(crate) fn tok_err(op: &'static str, why: impl std::fmt::Display) -> CoreError {
    CoreError::Tokenizer {
        op,
        why: why.to_string(),
    }
}

/// A trained tokenizer: the counterpart of nanochat's `RustBPETokenizer`
/// (`nanochat/tokenizer.py`), on HF `tokenizers`, with the UTF-8 byte length of every token
/// for bits-per-byte.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos: u32,
    token_bytes: Vec<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokenizer(vocab {})", self.vocab_size())
    }
}

impl Tokenizer {
    /// Wraps an HF tokenizer that has nanochat's special tokens as its last ids.
    pub(crate) fn from_hf(mut inner: tokenizers::Tokenizer) -> Result<Tokenizer> {
        // Text that spells a special token is plain text: specials come from the chat format.
        inner.set_encode_special_tokens(true);
        let vocab = inner.get_vocab_size(true);
        for (i, name) in SPECIAL_TOKENS.iter().enumerate() {
            let want = (vocab - SPECIAL_TOKENS.len() + i) as u32;
            match inner.token_to_id(name) {
                Some(id) if id == want => {}
                Some(id) => {
                    return Err(tok_err(
                        "load",
                        format!(
                            "special token {name} has id {id}, expected {want} (the last nine ids)"
                        ),
                    ))
                }
                None => return Err(tok_err("load", format!("special token {name} is missing"))),
            }
        }
        let first_special = (vocab - SPECIAL_TOKENS.len()) as u32;
        let token_bytes = (0..vocab as u32)
            .map(|id| {
                if id >= first_special {
                    0
                } else {
                    // Byte-level tokens spell each byte as one character.
                    inner
                        .id_to_token(id)
                        .map_or(0, |t| t.chars().count() as u32)
                }
            })
            .collect();
        let bos = first_special;
        Ok(Tokenizer {
            inner,
            bos,
            token_bytes,
        })
    }

    /// Loads a tokenizer from a directory, or the file itself: our `tokenizer.json`, else
    /// nanochat's `tokenizer.pkl` ([`pkl::load_tokenizer_pkl`], ids unchanged). When a folder
    /// holds both, `tokenizer.json` wins when both are the same tokenizer (equal
    /// [`Tokenizer::fingerprint`]s); two different tokenizers are an error naming both. Errors:
    /// [`CoreError::Missing`] (hint: `nanochat tok-train`) when neither is there,
    /// [`CoreError::Io`], or [`CoreError::File`] when it is not a tokenizer with nanochat's
    /// nine special tokens as its last ids.
    pub fn from_pretrained(path: &Path) -> Result<Tokenizer> {
        let pkl = if path.is_dir() {
            path.join("tokenizer.pkl")
        } else {
            path.to_path_buf()
        };
        let is_pkl = pkl.extension().is_some_and(|e| e == "pkl");
        let json_beside = path.is_dir() && path.join("tokenizer.json").exists();
        if is_pkl && !json_beside && pkl.is_file() {
            return pkl::load_tokenizer_pkl(&pkl);
        }
        let file: PathBuf = if path.is_dir() {
            path.join("tokenizer.json")
        } else {
            path.to_path_buf()
        };
        let hint = if path.is_dir() {
            "neither tokenizer.json nor nanochat's tokenizer.pkl is there: train one with `nanochat tok-train`"
        } else {
            "train one with `nanochat tok-train`"
        };
        let bytes = std::fs::read(&file).map_err(|e| CoreError::io_or_missing(&file, e, hint))?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|e| CoreError::file(&file, format!("not a tokenizer.json: {e}")))?;
        let tok = Tokenizer::from_hf(inner).map_err(|e| CoreError::file(&file, e))?;
        if json_beside && pkl.is_file() {
            // Both: tokenizer.json wins, but only when it is the same tokenizer. nanochat's
            // checkpoints record no fingerprint, so a stray tokenizer.json of another
            // tokenizer with the same vocabulary size would otherwise run silently.
            let other = pkl::load_tokenizer_pkl(&pkl)?;
            let (a, b) = (tok.fingerprint()?, other.fingerprint()?);
            if a != b {
                return Err(CoreError::file(
                    &file,
                    format!(
                        "{} beside it is another tokenizer (sha256 {b}, this one {a}); remove the one the model was not trained with",
                        pkl.display()
                    ),
                ));
            }
        }
        Ok(tok)
    }

    /// Writes `tokenizer.json` and `token_bytes.json` into `dir` (created), each atomically.
    /// Errors: [`CoreError::Io`]; [`CoreError::Tokenizer`] if serialising fails.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let json = self
            .inner
            .to_string(false)
            .map_err(|e| tok_err("save", e))?;
        crate::io::write_atomic(&dir.join("tokenizer.json"), json.as_bytes())?;
        let tb = serde_json::to_vec(&self.token_bytes).expect("numbers serialise");
        crate::io::write_atomic(&dir.join("token_bytes.json"), &tb)
    }

    /// Token ids of plain text (special tokens are never produced).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        match self.inner.encode_fast(text, false) {
            Ok(e) => e.get_ids().to_vec(),
            // The byte-level pipeline accepts every string; keep a total function regardless.
            Err(_) => Vec::new(),
        }
    }

    /// [`Tokenizer::encode`] of many texts, in parallel.
    pub fn encode_batch(&self, texts: &[&str]) -> Vec<Vec<u32>> {
        match self.inner.encode_batch_fast(texts.to_vec(), false) {
            Ok(es) => es.iter().map(|e| e.get_ids().to_vec()).collect(),
            Err(_) => texts.iter().map(|t| self.encode(t)).collect(),
        }
    }

    /// Text of token ids (special tokens rendered by name). Invalid UTF-8 from a partial
    /// multi-byte sequence becomes U+FFFD; an id outside the vocabulary is
    /// [`CoreError::Tokenizer`] (`decode`).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= self.vocab_size()) {
            return Err(tok_err(
                "decode",
                format!(
                    "token id {bad} is outside the vocabulary of {}",
                    self.vocab_size()
                ),
            ));
        }
        self.inner
            .decode(ids, false)
            .map_err(|e| tok_err("decode", e))
    }

    /// The id of `<|bos|>`, which starts every document and conversation (nanochat's
    /// `get_bos_token_id`).
    pub fn get_bos_token_id(&self) -> u32 {
        self.bos
    }

    /// The id of a special token by name (e.g. `<|assistant_end|>`); [`CoreError::Tokenizer`]
    /// (`encode special`) for a name not in [`SPECIAL_TOKENS`] or missing from the vocabulary.
    pub fn encode_special(&self, name: &str) -> Result<u32> {
        if !SPECIAL_TOKENS.contains(&name) {
            return Err(tok_err(
                "encode special",
                format!("`{name}` is not one of the special tokens {SPECIAL_TOKENS:?}"),
            ));
        }
        self.inner
            .token_to_id(name)
            .ok_or_else(|| tok_err("encode special", format!("special token {name} is missing")))
    }

    /// Tokens in the vocabulary, specials included.
    pub fn vocab_size(&self) -> usize {
        self.token_bytes.len()
    }

    /// UTF-8 bytes of each token (0 for the special tokens).
    pub fn token_bytes(&self) -> &[u32] {
        &self.token_bytes
    }

    /// The underlying HF tokenizer.
    pub fn hf(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

#[cfg(test)]
pub(crate) mod tests;
