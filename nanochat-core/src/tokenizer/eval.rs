//! Bytes per token of our tokenizer against GPT-2's and GPT-4's (cl100k) encodings from
//! `tiktoken-rs`, on several kinds of text (nanochat's `scripts/tok_eval.py`): prose, code,
//! numbers, non-English, and held-out text of the training corpus.

use serde::Serialize;

use super::Tokenizer;
use crate::Result;

/// The evaluation texts shipped in data/eval (see its README).
pub const EVAL_TEXTS: [(&str, &str); 4] = [
    ("prose", include_str!("../../../data/eval/prose.txt")),
    ("code", include_str!("../../../data/eval/code.txt")),
    ("numbers", include_str!("../../../data/eval/numbers.txt")),
    (
        "non-english",
        include_str!("../../../data/eval/non_english.txt"),
    ),
];

/// Token counts of one text.
#[derive(Clone, Debug, Serialize)]
pub struct EvalRow {
    /// The text's name (`prose`, `code`, `corpus-val`...).
    pub name: String,
    /// Its length in UTF-8 bytes.
    pub bytes: usize,
    /// Tokens with our tokenizer.
    pub ours: usize,
    /// Tokens with GPT-2's encoding (`r50k_base`).
    pub gpt2: usize,
    /// Tokens with GPT-4's encoding (`cl100k_base`).
    pub gpt4: usize,
}

impl EvalRow {
    /// The compression ratio for a count of `tokens` (one of the row's): bytes / tokens
    /// (bytes when `tokens` is 0).
    pub fn bytes_per_token(&self, tokens: usize) -> f64 {
        self.bytes as f64 / tokens.max(1) as f64
    }
}

/// GPT-2's and GPT-4's encodings.
pub struct Reference {
    /// GPT-2's `r50k_base`.
    pub gpt2: tiktoken_rs::CoreBPE,
    /// GPT-4's `cl100k_base`.
    pub gpt4: tiktoken_rs::CoreBPE,
}

impl Reference {
    /// Builds both encodings from the vocabularies compiled into `tiktoken-rs` (no download).
    /// Errors: [`CoreError::Tokenizer`](crate::CoreError::Tokenizer) (`eval`) naming the one
    /// that fails.
    pub fn load() -> Result<Reference> {
        Ok(Reference {
            gpt2: tiktoken_rs::r50k_base()
                .map_err(|e| super::tok_err("eval", format!("GPT-2 (r50k_base): {e}")))?,
            gpt4: tiktoken_rs::cl100k_base()
                .map_err(|e| super::tok_err("eval", format!("GPT-4 (cl100k_base): {e}")))?,
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

/// Encoding speed in MB/s (10^6 bytes of text per second).
#[derive(Clone, Debug, Serialize)]
pub struct EncodeSpeed {
    /// Size of the timed text, MB (10^6 bytes).
    pub megabytes: f64,
    /// Ours, one document after another on one thread.
    pub ours_mb_s: f64,
    /// Ours, [`Tokenizer::encode_batch`] (parallel).
    pub ours_batch_mb_s: f64,
    /// GPT-2's encoding (`encode_ordinary`, one document after another).
    pub gpt2_mb_s: f64,
    /// GPT-4's encoding (`encode_ordinary`, one document after another).
    pub gpt4_mb_s: f64,
}

/// Times encoding `docs` with ours and the references (best of `reps` runs each).
pub fn encode_speed(
    tok: &Tokenizer,
    reference: &Reference,
    docs: &[String],
    reps: usize,
) -> EncodeSpeed {
    let bytes: usize = docs.iter().map(String::len).sum();
    let best = |f: &mut dyn FnMut() -> usize| -> f64 {
        let mut t = f64::INFINITY;
        for _ in 0..reps.max(1) {
            let start = std::time::Instant::now();
            std::hint::black_box(f());
            t = t.min(start.elapsed().as_secs_f64());
        }
        bytes as f64 / t / 1e6
    };
    let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
    EncodeSpeed {
        megabytes: bytes as f64 / 1e6,
        ours_mb_s: best(&mut || docs.iter().map(|d| tok.encode(d).len()).sum()),
        ours_batch_mb_s: best(&mut || tok.encode_batch(&refs).iter().map(Vec::len).sum()),
        gpt2_mb_s: best(&mut || {
            docs.iter()
                .map(|d| reference.gpt2.encode_ordinary(d).len())
                .sum()
        }),
        gpt4_mb_s: best(&mut || {
            docs.iter()
                .map(|d| reference.gpt4.encode_ordinary(d).len())
                .sum()
        }),
    }
}
