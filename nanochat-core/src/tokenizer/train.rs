//! Training the byte-level BPE (nanochat's HuggingFace variant): split pattern, then byte-level
//! mapping, BPE merges up to `vocab_size - 9`, then the nine special tokens appended.

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use super::{tok_err, Tokenizer, SPECIAL_TOKENS, SPLIT_PATTERN};
use crate::Result;

/// Options of [`train_tokenizer`].
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Final vocabulary size, the nine special tokens included.
    pub vocab_size: usize,
    /// Characters of each document used (nanochat's `doc_cap`).
    pub doc_cap: usize,
    /// Characters used in all.
    pub max_chars: usize,
    /// Progress bars on stderr.
    pub progress: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            vocab_size: 32768,
            doc_cap: 10_000,
            max_chars: 1_000_000_000,
            progress: false,
        }
    }
}

/// The first `cap` characters of `s`.
fn prefix_chars(s: &str, cap: usize) -> &str {
    match s.char_indices().nth(cap) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Trains a tokenizer on `docs`, each cut to `doc_cap` characters, up to `max_chars` in all.
/// Returns it with the number of characters trained on.
pub fn train_tokenizer(docs: &[String], opts: &TrainOptions) -> Result<(Tokenizer, usize)> {
    let n_special = SPECIAL_TOKENS.len();
    if opts.vocab_size < 256 + n_special {
        return Err(tok_err(format!(
            "vocab size {} is too small: 256 byte tokens + {n_special} special tokens at least",
            opts.vocab_size
        )));
    }
    let mut texts: Vec<&str> = Vec::new();
    let mut chars = 0usize;
    for d in docs {
        if chars >= opts.max_chars {
            break;
        }
        let t = prefix_chars(d, opts.doc_cap.min(opts.max_chars - chars));
        chars += t.chars().count();
        texts.push(t);
    }
    if chars == 0 {
        return Err(tok_err("no text to train on"));
    }
    let bpe = BPE::builder()
        .byte_fallback(true)
        .build()
        .map_err(tok_err)?;
    let mut tok = tokenizers::Tokenizer::new(bpe);
    let split = Split::new(
        SplitPattern::Regex(SPLIT_PATTERN.into()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(tok_err)?;
    tok.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(Sequence::new(vec![
        split.into(),
        ByteLevel::new(false, true, false).into(),
    ]))));
    tok.with_decoder(Some(ByteLevelDecoder::default()));
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(opts.vocab_size - n_special)
        .min_frequency(0)
        .show_progress(opts.progress)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    tok.train(&mut trainer, texts.into_iter())
        .map_err(tok_err)?;
    let specials: Vec<AddedToken> = SPECIAL_TOKENS
        .iter()
        .map(|s| AddedToken::from(*s, true))
        .collect();
    tok.add_special_tokens(&specials);
    Ok((Tokenizer::from_hf(tok)?, chars))
}
