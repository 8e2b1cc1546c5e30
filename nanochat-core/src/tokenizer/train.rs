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

/// Characters of the documents given to [`train_tokenizer`] and what its caps left of them:
/// `read = used + over_doc_cap + over_max_chars`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrainChars {
    /// Characters of all the documents given.
    pub read: usize,
    /// Characters trained on.
    pub used: usize,
    /// Characters past `doc_cap` in their document.
    pub over_doc_cap: usize,
    /// Characters within `doc_cap` left out once `max_chars` were taken.
    pub over_max_chars: usize,
}

/// The texts trained on: each document's first `doc_cap` characters, in order, until
/// `max_chars` are taken (as nanochat's `text_iterator`); and the count of what was left.
fn capped_texts<'a>(docs: &'a [String], opts: &TrainOptions) -> (Vec<&'a str>, TrainChars) {
    let mut texts = Vec::new();
    let mut count = TrainChars::default();
    for d in docs {
        let n = d.chars().count();
        let within_cap = n.min(opts.doc_cap);
        let take = within_cap.min(opts.max_chars - count.used);
        count.read += n;
        count.over_doc_cap += n - within_cap;
        count.over_max_chars += within_cap - take;
        if take > 0 {
            count.used += take;
            texts.push(prefix_chars(d, take));
        }
    }
    (texts, count)
}

/// What [`train_tokenizer`] would read and train on of `docs` under `opts`'s caps, counted
/// without training (to warn before a long run).
pub fn train_chars(docs: &[String], opts: &TrainOptions) -> TrainChars {
    capped_texts(docs, opts).1
}

/// Trains a tokenizer on `docs`, each cut to `doc_cap` characters, up to `max_chars` in all.
/// Returns it with the count of characters read and trained on, and of those each cap left out.
/// Errors: a vocabulary under 256 + 9 tokens, no text within the caps.
pub fn train_tokenizer(docs: &[String], opts: &TrainOptions) -> Result<(Tokenizer, TrainChars)> {
    let n_special = SPECIAL_TOKENS.len();
    if opts.vocab_size < 256 + n_special {
        return Err(tok_err(
            "train",
            format!(
                "vocab size {} is too small: 256 byte tokens + {n_special} special tokens at least",
                opts.vocab_size
            ),
        ));
    }
    let (texts, chars) = capped_texts(docs, opts);
    if chars.used == 0 {
        return Err(tok_err("train", "no text to train on"));
    }
    let bpe = BPE::builder()
        .byte_fallback(true)
        .build()
        .map_err(|e| tok_err("train", e))?;
    let mut tok = tokenizers::Tokenizer::new(bpe);
    let split = Split::new(
        SplitPattern::Regex(SPLIT_PATTERN.into()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(|e| tok_err("train", e))?;
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
        .map_err(|e| tok_err("train", e))?;
    let specials: Vec<AddedToken> = SPECIAL_TOKENS
        .iter()
        .map(|s| AddedToken::from(*s, true))
        .collect();
    tok.add_special_tokens(&specials);
    Ok((Tokenizer::from_hf(tok)?, chars))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_are_counted() {
        let docs: Vec<String> = ["\u{e9}".repeat(50), "b".repeat(10), "c".repeat(30)]
            .into_iter()
            .collect();
        let opts = |doc_cap, max_chars| TrainOptions {
            doc_cap,
            max_chars,
            ..TrainOptions::default()
        };
        let (texts, c) = capped_texts(&docs, &opts(20, 35));
        assert_eq!(texts, ["\u{e9}".repeat(20), "b".repeat(10), "c".repeat(5)]);
        assert_eq!(
            c,
            TrainChars {
                read: 90,
                used: 35,
                over_doc_cap: 40,
                over_max_chars: 15
            }
        );
        let (texts, c) = capped_texts(&docs, &opts(100, 1000));
        assert_eq!(texts.len(), 3);
        assert_eq!(
            (c.read, c.used, c.over_doc_cap, c.over_max_chars),
            (90, 90, 0, 0)
        );
    }
}
