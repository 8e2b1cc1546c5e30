//! Bytes per token of our tokenizer against GPT-2's and GPT-4's (cl100k) encodings from
//! `tiktoken-rs`, on several kinds of text (nanochat's `tok_eval`): prose, code, numbers,
//! non-English, and held-out text of the training corpus.

use serde::Serialize;

use super::Tokenizer;
use crate::{CoreError, Result};

/// The evaluation texts shipped in data/eval (see its README).
pub const EVAL_TEXTS: [(&str, &str); 4] = [
    ("prose", include_str!("../../../data/eval/prose.txt")),
    ("code", include_str!("../../../data/eval/code.txt")),
    ("numbers", include_str!("../../../data/eval/numbers.txt")),
    ("non-english", include_str!("../../../data/eval/non_english.txt")),
];

/// Token counts of one text.
#[derive(Clone, Debug, Serialize)]
pub struct EvalRow {
    pub name: String,
    pub bytes: usize,
    pub ours: usize,
    pub gpt2: usize,
    pub gpt4: usize,
}

impl EvalRow {
    pub fn bytes_per_token(&self, tokens: usize) -> f64 {
        self.bytes as f64 / tokens.max(1) as f64
    }
}

/// GPT-2's and GPT-4's encodings.
pub struct Reference {
    pub gpt2: tiktoken_rs::CoreBPE,
    pub gpt4: tiktoken_rs::CoreBPE,
}

impl Reference {
    pub fn load() -> Result<Reference> {
        Ok(Reference {
            gpt2: tiktoken_rs::r50k_base().map_err(|e| CoreError::Tokenizer(format!("GPT-2 (r50k_base): {e}")))?,
            gpt4: tiktoken_rs::cl100k_base().map_err(|e| CoreError::Tokenizer(format!("GPT-4 (cl100k_base): {e}")))?,
        })
    }
}

/// Counts tokens of each `(name, text)` with ours, GPT-2 and GPT-4.
pub fn compare(tok: &Tokenizer, reference: &Reference, texts: &[(String, String)]) -> Vec<EvalRow> {
    texts
        .iter()
        .map(|(name, text)| EvalRow {
            name: name.clone(),
            bytes: text.len(),
            ours: tok.encode(text).len(),
            gpt2: reference.gpt2.encode_ordinary(text).len(),
            gpt4: reference.gpt4.encode_ordinary(text).len(),
        })
        .collect()
}
