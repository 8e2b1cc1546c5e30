//! The tokenizer fingerprint a checkpoint records (`tokenizer_sha256` in its meta), so that a
//! model never runs with a tokenizer it was not trained with.
//!
//! It is the SHA-256 (lower-case hex) of a canonical form of what decides the ids, and of
//! nothing else (not the file format, not the merge list's order of training):
//!
//! ```text
//! b"nanochat-tokenizer/1\n"
//! the split pattern (UTF-8), b"\n"
//! the vocabulary size n, u32 little-endian
//! for each id in 0..n:
//!     a regular token: b"\x00", its byte length (u32 LE), its raw bytes
//!     a special token: b"\x01", its name's byte length (u32 LE), its name (UTF-8)
//! ```
//!
//! The same tokenizer gives the same fingerprint from our `tokenizer.json` (byte-level tokens
//! mapped back to their bytes) and from nanochat's `tokenizer.pkl` (tiktoken's
//! `mergeable_ranks`, whose rank is the id, `special_tokens` and `pat_str`):
//! [`fingerprint_tiktoken`] computes it from the latter's parts.

use sha2::{Digest, Sha256};

use super::{tok_err, Tokenizer};
use crate::Result;

/// One id of a vocabulary, as the fingerprint sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenEntry {
    /// A regular token: the bytes it stands for.
    Bytes(Vec<u8>),
    /// A special token: its name (`<|bos|>`).
    Special(String),
}

/// The fingerprint of a vocabulary given id by id (index = id) and its split pattern.
pub fn fingerprint(pattern: &str, tokens: &[TokenEntry]) -> String {
    let mut h = Sha256::new();
    h.update(b"nanochat-tokenizer/1\n");
    h.update(pattern.as_bytes());
    h.update(b"\n");
    h.update((tokens.len() as u32).to_le_bytes());
    for t in tokens {
        let (kind, bytes): (u8, &[u8]) = match t {
            TokenEntry::Bytes(b) => (0, b),
            TokenEntry::Special(s) => (1, s.as_bytes()),
        };
        h.update([kind]);
        h.update((bytes.len() as u32).to_le_bytes());
        h.update(bytes);
    }
    let digest = h.finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The fingerprint of a tiktoken encoding's parts (nanochat's `tokenizer.pkl`):
/// `mergeable_ranks` (bytes -> rank, the rank being the id), `special_tokens` (name -> id) and
/// `pat_str`. Errors when the ids do not cover 0..n exactly once.
pub fn fingerprint_tiktoken(
    mergeable_ranks: &[(Vec<u8>, u32)],
    special_tokens: &[(String, u32)],
    pat_str: &str,
) -> Result<String> {
    let n = mergeable_ranks.len() + special_tokens.len();
    let mut tokens: Vec<Option<TokenEntry>> = vec![None; n];
    let entries = mergeable_ranks
        .iter()
        .map(|(b, id)| (*id, TokenEntry::Bytes(b.clone())))
        .chain(
            special_tokens
                .iter()
                .map(|(s, id)| (*id, TokenEntry::Special(s.clone()))),
        );
    for (id, entry) in entries {
        let slot = tokens.get_mut(id as usize).ok_or_else(|| {
            tok_err(
                "fingerprint",
                format!("token id {id} is outside the vocabulary of {n} (ranks plus specials)"),
            )
        })?;
        if slot.replace(entry).is_some() {
            return Err(tok_err(
                "fingerprint",
                format!("token id {id} is given twice"),
            ));
        }
    }
    let tokens: Vec<TokenEntry> = tokens.into_iter().map(|t| t.expect("all set")).collect();
    Ok(fingerprint(pat_str, &tokens))
}

/// GPT-2's byte-level alphabet, reversed: the character that spells each byte -> the byte.
fn unicode_to_byte() -> std::collections::HashMap<char, u8> {
    let mut map = std::collections::HashMap::new();
    let mut extra = 0u32;
    for b in 0..=255u8 {
        let printable = (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
        let c = if printable {
            char::from(b)
        } else {
            extra += 1;
            char::from_u32(255 + extra).expect("valid code point")
        };
        map.insert(c, b);
    }
    map
}

impl Tokenizer {
    /// The split pattern of this tokenizer's pre-tokenizer (the regex of its `Split` step).
    pub fn split_pattern(&self) -> Result<String> {
        let json: serde_json::Value = serde_json::from_str(
            &self
                .inner
                .to_string(false)
                .map_err(|e| tok_err("fingerprint", e))?,
        )
        .map_err(|e| tok_err("fingerprint", e))?;
        fn find(v: &serde_json::Value) -> Option<String> {
            if v.get("type").and_then(|t| t.as_str()) == Some("Split") {
                return v["pattern"]["Regex"].as_str().map(str::to_string);
            }
            v.get("pretokenizers")?.as_array()?.iter().find_map(find)
        }
        find(&json["pre_tokenizer"]).ok_or_else(|| {
            tok_err(
                "fingerprint",
                "the pre-tokenizer has no Split step with a regex",
            )
        })
    }

    /// The vocabulary id by id, as [`fingerprint`] reads it.
    pub fn entries(&self) -> Result<Vec<TokenEntry>> {
        let back = unicode_to_byte();
        let first_special = self.bos as usize;
        (0..self.vocab_size() as u32)
            .map(|id| {
                let tok = self
                    .inner
                    .id_to_token(id)
                    .ok_or_else(|| tok_err("fingerprint", format!("token id {id} has no token")))?;
                if id as usize >= first_special {
                    return Ok(TokenEntry::Special(tok));
                }
                tok.chars()
                    .map(|c| {
                        back.get(&c).copied().ok_or_else(|| {
                            tok_err(
                                "fingerprint",
                                format!(
                                    "token {id} ({tok:?}) is not byte-level: {c:?} spells no byte"
                                ),
                            )
                        })
                    })
                    .collect::<Result<Vec<u8>>>()
                    .map(TokenEntry::Bytes)
            })
            .collect()
    }

    /// This tokenizer's fingerprint (the module doc defines it).
    pub fn fingerprint(&self) -> Result<String> {
        Ok(fingerprint(&self.split_pattern()?, &self.entries()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::{train_tokenizer, TrainOptions, SPLIT_PATTERN};

    fn trained(text: &str, vocab: usize) -> Tokenizer {
        let opts = TrainOptions {
            vocab_size: vocab,
            doc_cap: 100_000,
            max_chars: 1_000_000,
            progress: false,
        };
        train_tokenizer(&[text.repeat(20)], &opts).unwrap().0
    }

    #[test]
    fn byte_level_alphabet_is_a_bijection() {
        let m = unicode_to_byte();
        assert_eq!(m.len(), 256);
        assert_eq!(m[&'Ġ'], b' ');
        assert_eq!(m[&'Ċ'], b'\n');
        assert_eq!(m[&'a'], b'a');
    }

    /// The same tokenizer has the same fingerprint whether read from `tokenizer.json` or given
    /// as tiktoken's parts (nanochat's `tokenizer.pkl`); a different one differs.
    #[test]
    fn equal_for_json_and_tiktoken_forms() {
        let tok = trained(
            "the quick brown fox jumps over the lazy dog, naïve café. ",
            300,
        );
        assert_eq!(tok.split_pattern().unwrap(), SPLIT_PATTERN);
        let fp = tok.fingerprint().unwrap();
        assert_eq!(fp.len(), 64);
        // Through a file round trip.
        let dir = tempfile::tempdir().unwrap();
        tok.save(dir.path()).unwrap();
        let back = Tokenizer::from_pretrained(dir.path()).unwrap();
        assert_eq!(back.fingerprint().unwrap(), fp);
        // As tiktoken's parts, in an arbitrary order.
        let mut ranks = Vec::new();
        let mut specials = Vec::new();
        for (id, e) in tok.entries().unwrap().into_iter().enumerate().rev() {
            match e {
                TokenEntry::Bytes(b) => ranks.push((b, id as u32)),
                TokenEntry::Special(s) => specials.push((s, id as u32)),
            }
        }
        assert_eq!(ranks.len(), 256 + (300 - 256 - 9));
        assert_eq!(
            fingerprint_tiktoken(&ranks, &specials, SPLIT_PATTERN).unwrap(),
            fp
        );
        // Another vocabulary, another pattern, a swapped pair of ids: all differ.
        let other = trained("a completely different text about 42 lazy cats. ", 290);
        assert_ne!(other.fingerprint().unwrap(), fp);
        assert_ne!(fingerprint_tiktoken(&ranks, &specials, r"\s+").unwrap(), fp);
        let mut swapped = ranks.clone();
        let (a, b) = (swapped[0].1, swapped[1].1);
        swapped[0].1 = b;
        swapped[1].1 = a;
        assert_ne!(
            fingerprint_tiktoken(&swapped, &specials, SPLIT_PATTERN).unwrap(),
            fp
        );
        // Ids that do not cover the vocabulary are an error naming the id.
        let mut bad = ranks.clone();
        bad[0].1 = 9999;
        let e = fingerprint_tiktoken(&bad, &specials, SPLIT_PATTERN).unwrap_err();
        assert!(e.to_string().contains("9999"), "{e}");
    }
}
