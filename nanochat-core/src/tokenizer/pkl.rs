//! nanochat's own tokenizer files: `tokenizer/tokenizer.pkl`, the pickled tiktoken `Encoding`
//! that `RustBPETokenizer.save` writes (`nanochat/tokenizer.py` at 16788ee and 92d63d4: name
//! `rustbpe`, `pat_str`, `mergeable_ranks` bytes -> rank with the rank being the id, and
//! `special_tokens` name -> id), and `token_bytes.pt` (`scripts/tok_train.py`).
//!
//! The pickle is read by [`crate::torchfile::pickle`] with one global allowed,
//! `tiktoken.core.Encoding`, and nothing executed. The encoding becomes the same byte-level BPE
//! our own tokenizers are ([`Tokenizer`] on HF `tokenizers`), with identical ids: the
//! vocabulary is `mergeable_ranks` (bytes spelled GPT-2's byte-level way), and the merges are
//! every split of a token into two tokens, ordered by the merged token's rank (the rule
//! tiktoken's `byte_pair_merge` applies; the same conversion as `transformers`'
//! `TikTokenConverter`). [`Tokenizer::fingerprint`] of the result equals
//! [`super::fingerprint_tiktoken`] of the pickle's parts.
//!
//! `token_bytes.pt` is recomputed, not trusted: v1's `tok_train.py` counted the bytes
//! 0x80-0xFF as 3 each (their UTF-8 length as code points), HEAD's counts raw bytes. We always
//! count raw bytes (what bits per byte means), and say so when the file disagrees.

use std::collections::HashMap;
use std::path::Path;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use super::{tok_err, Tokenizer};
use crate::torchfile::{pickle, TorchFile, Value};
use crate::{CoreError, Result};

/// The parts of a tiktoken `Encoding`, as nanochat pickles it.
#[derive(Clone, Debug, PartialEq)]
pub struct TiktokenParts {
    /// The encoding's name (`rustbpe`).
    pub name: String,
    /// The split pattern.
    pub pat_str: String,
    /// Token bytes and their rank (= id), in the pickle's order.
    pub mergeable_ranks: Vec<(Vec<u8>, u32)>,
    /// Special token names and their ids.
    pub special_tokens: Vec<(String, u32)>,
}

fn file_err(path: &Path, why: impl std::fmt::Display) -> CoreError {
    CoreError::file(path, why)
}

/// Reads `tokenizer.pkl`. Errors ([`CoreError::File`] naming the file and the key): a refused
/// pickle (any global but `tiktoken.core.Encoding`), a missing or mistyped key, a rank or id
/// outside 32 bits.
pub fn read_tiktoken_pkl(path: &Path) -> Result<TiktokenParts> {
    let bytes = std::fs::read(path).map_err(|e| CoreError::io(path, e))?;
    let root = pickle::Pickle::parse(&bytes, &["tiktoken.core.Encoding"])
        .and_then(|p| p.to_value())
        .map_err(|e| file_err(path, e))?;
    let Value::Object { class, state } = root else {
        return Err(file_err(path, "not a pickled tiktoken Encoding"));
    };
    let Value::Dict(state) = *state else {
        return Err(file_err(
            path,
            format!(
                "{class} without its state dict (name, pat_str, mergeable_ranks, special_tokens)"
            ),
        ));
    };
    let get = |key: &str| {
        state
            .iter()
            .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
            .map(|(_, v)| v)
            .ok_or_else(|| file_err(path, format!("key `{key}` is missing")))
    };
    let string = |key: &str| match get(key)? {
        Value::Str(s) => Ok(s.clone()),
        _ => Err(file_err(path, format!("key `{key}` is not a string"))),
    };
    let id = |key: &str, v: &Value| match v {
        Value::Int(i) => u32::try_from(*i)
            .map_err(|_| file_err(path, format!("`{key}`: id {i} is outside 0..2^32"))),
        _ => Err(file_err(path, format!("`{key}`: an id that is not an int"))),
    };
    let Value::Dict(ranks) = get("mergeable_ranks")? else {
        return Err(file_err(path, "key `mergeable_ranks` is not a dict"));
    };
    let mergeable_ranks = ranks
        .iter()
        .map(|(k, v)| match k {
            Value::Bytes(b) => Ok((b.clone(), id("mergeable_ranks", v)?)),
            _ => Err(file_err(path, "`mergeable_ranks`: a key that is not bytes")),
        })
        .collect::<Result<Vec<_>>>()?;
    let Value::Dict(specials) = get("special_tokens")? else {
        return Err(file_err(path, "key `special_tokens` is not a dict"));
    };
    let special_tokens = specials
        .iter()
        .map(|(k, v)| match k {
            Value::Str(s) => Ok((s.clone(), id("special_tokens", v)?)),
            _ => Err(file_err(
                path,
                "`special_tokens`: a key that is not a string",
            )),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(TiktokenParts {
        name: string("name")?,
        pat_str: string("pat_str")?,
        mergeable_ranks,
        special_tokens,
    })
}

/// GPT-2's byte-to-character map of byte-level BPE (the inverse of the fingerprint's).
fn byte_to_char() -> [char; 256] {
    let mut map = ['\0'; 256];
    let mut extra = 0u32;
    for b in 0..=255u8 {
        let printable = (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
        map[b as usize] = if printable {
            char::from(b)
        } else {
            extra += 1;
            char::from_u32(255 + extra).expect("valid code point")
        };
    }
    map
}

impl TiktokenParts {
    /// The byte-level BPE tokenizer of these parts, ids unchanged. Errors
    /// ([`CoreError::Tokenizer`], `load`): a byte missing from the single-byte tokens, ids
    /// that do not cover 0..n once, the special tokens not nanochat's nine at the last ids,
    /// or a split pattern `tokenizers` cannot compile.
    pub fn to_tokenizer(&self) -> Result<Tokenizer> {
        let n = self.mergeable_ranks.len() + self.special_tokens.len();
        // The same check as the fingerprint's: ids cover 0..n exactly once.
        super::fingerprint_tiktoken(&self.mergeable_ranks, &self.special_tokens, &self.pat_str)?;
        let chars = byte_to_char();
        let spell = |b: &[u8]| b.iter().map(|&x| chars[x as usize]).collect::<String>();
        let rank: HashMap<&[u8], u32> = self
            .mergeable_ranks
            .iter()
            .map(|(b, r)| (b.as_slice(), *r))
            .collect();
        if let Some(b) = (0..=255u8).find(|b| !rank.contains_key([*b].as_slice())) {
            return Err(tok_err(
                "load",
                format!("byte 0x{b:02x} has no token of its own: not a byte-level BPE"),
            ));
        }
        let vocab: tokenizers::models::bpe::Vocab = self
            .mergeable_ranks
            .iter()
            .map(|(b, r)| (spell(b), *r))
            .collect();
        // Every split of a token into two tokens merges into it, at its rank; among the
        // splits of one token, the lower-ranked pieces first (transformers' converter).
        // (merged rank, left rank, right rank, left bytes, right bytes)
        type Merge<'a> = (u32, u32, u32, &'a [u8], &'a [u8]);
        let mut merges: Vec<Merge> = Vec::new();
        for (b, r) in &self.mergeable_ranks {
            for i in 1..b.len() {
                let (l, rt) = b.split_at(i);
                if let (Some(&rl), Some(&rr)) = (rank.get(l), rank.get(rt)) {
                    merges.push((*r, rl, rr, l, rt));
                }
            }
        }
        merges.sort_unstable();
        let merges: Vec<(String, String)> = merges
            .into_iter()
            .map(|(_, _, _, l, r)| (spell(l), spell(r)))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| tok_err("load", e))?;
        let mut tok = tokenizers::Tokenizer::new(bpe);
        let split = Split::new(
            SplitPattern::Regex(self.pat_str.clone()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| tok_err("load", format!("split pattern: {e}")))?;
        tok.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(Sequence::new(vec![
            split.into(),
            ByteLevel::new(false, true, false).into(),
        ]))));
        tok.with_decoder(Some(ByteLevelDecoder::default()));
        let mut specials = self.special_tokens.clone();
        // (sorted by id: the order nanochat's pickle lists them in)
        specials.sort_by_key(|(_, id)| *id);
        if specials
            .first()
            .is_some_and(|(_, id)| *id as usize != self.mergeable_ranks.len())
        {
            return Err(tok_err(
                "load",
                format!(
                    "the special tokens start at id {}, not after the {} regular tokens",
                    specials[0].1,
                    self.mergeable_ranks.len()
                ),
            ));
        }
        let added: Vec<AddedToken> = specials
            .iter()
            .map(|(s, _)| AddedToken::from(s.clone(), true))
            .collect();
        tok.add_special_tokens(&added);
        if tok.get_vocab_size(true) != n {
            return Err(tok_err(
                "load",
                format!(
                    "{} ids after conversion, the encoding has {n}",
                    tok.get_vocab_size(true)
                ),
            ));
        }
        Tokenizer::from_hf(tok)
    }
}

impl TiktokenParts {
    /// The parts of one of our tokenizers (name `rustbpe`, as nanochat names its encodings):
    /// each regular id's bytes as its rank, the specials by name. Errors: a token that is not
    /// byte-level ([`Tokenizer::entries`]).
    pub fn from_tokenizer(tok: &Tokenizer) -> Result<TiktokenParts> {
        let mut mergeable_ranks = Vec::new();
        let mut special_tokens = Vec::new();
        for (id, e) in tok.entries()?.into_iter().enumerate() {
            match e {
                super::TokenEntry::Bytes(b) => mergeable_ranks.push((b, id as u32)),
                super::TokenEntry::Special(s) => special_tokens.push((s, id as u32)),
            }
        }
        Ok(TiktokenParts {
            name: "rustbpe".into(),
            pat_str: tok.split_pattern()?,
            mergeable_ranks,
            special_tokens,
        })
    }

    /// The bytes of `tokenizer.pkl` as `RustBPETokenizer.save` writes it: a protocol-4 pickle
    /// of `tiktoken.core.Encoding` (`NEWOBJ` then `BUILD` with the state dict `name`,
    /// `pat_str`, `mergeable_ranks`, `special_tokens`), read by tiktoken's `__setstate__`.
    pub fn to_pkl_bytes(&self) -> Vec<u8> {
        fn s(out: &mut Vec<u8>, v: &str) {
            out.push(0x8d);
            out.extend((v.len() as u64).to_le_bytes());
            out.extend(v.as_bytes());
        }
        fn int(out: &mut Vec<u8>, v: u32) {
            out.push(b'J');
            out.extend((v as i32).to_le_bytes());
        }
        let mut out = vec![0x80, 4];
        s(&mut out, "tiktoken.core");
        s(&mut out, "Encoding");
        out.extend([0x93, b')', 0x81, b'}', b'(']);
        s(&mut out, "name");
        s(&mut out, &self.name);
        s(&mut out, "pat_str");
        s(&mut out, &self.pat_str);
        s(&mut out, "mergeable_ranks");
        out.push(b'}');
        for chunk in self.mergeable_ranks.chunks(1000) {
            out.push(b'(');
            for (b, r) in chunk {
                out.push(0x8e);
                out.extend((b.len() as u64).to_le_bytes());
                out.extend(b);
                int(&mut out, *r);
            }
            out.push(b'u');
        }
        s(&mut out, "special_tokens");
        out.extend([b'}', b'(']);
        for (name, id) in &self.special_tokens {
            s(&mut out, name);
            int(&mut out, *id);
        }
        out.extend([b'u', b'u', b'b', b'.']);
        out
    }
}

/// `token_bytes.pt`'s counts as each generation's `tok_train.py` computes them: HEAD counts a
/// token's raw bytes; v1 (`v1_quirk`) counts the UTF-8 length of the token decoded with
/// replacement characters, so a byte of an incomplete sequence counts 3 (U+FFFD). Specials
/// count 0.
pub fn token_bytes_counts(tok: &Tokenizer, v1_quirk: bool) -> Result<Vec<i64>> {
    Ok(tok
        .entries()?
        .iter()
        .map(|e| match e {
            super::TokenEntry::Special(_) => 0,
            super::TokenEntry::Bytes(b) if v1_quirk => String::from_utf8_lossy(b).len() as i64,
            super::TokenEntry::Bytes(b) => b.len() as i64,
        })
        .collect())
}

/// `tokenizer.pkl` (in a folder, or the file itself) as a [`Tokenizer`], with `token_bytes.pt`
/// beside it checked against the recomputed byte counts: a file of another length is an error
/// (it belongs to another tokenizer); different counts (v1's quirk) are noted and ignored.
pub fn load_tokenizer_pkl(path: &Path) -> Result<Tokenizer> {
    let file = if path.is_dir() {
        path.join("tokenizer.pkl")
    } else {
        path.to_path_buf()
    };
    let parts = read_tiktoken_pkl(&file)?;
    let tok = parts.to_tokenizer().map_err(|e| file_err(&file, e))?;
    let tb = file.with_file_name("token_bytes.pt");
    if tb.exists() {
        let counts = read_token_bytes_pt(&tb)?;
        if counts.len() != tok.vocab_size() {
            return Err(file_err(
                &tb,
                format!(
                    "{} entries for a vocabulary of {} ({})",
                    counts.len(),
                    tok.vocab_size(),
                    file.display()
                ),
            ));
        }
        let differ = counts
            .iter()
            .zip(tok.token_bytes())
            .filter(|(a, b)| **a != **b as i64)
            .count();
        if differ > 0 {
            tracing::info!(
                "{}: {differ} tokens' byte counts differ from their raw byte length (nanochat v1 counted bytes 0x80-0xFF as 3); using the raw byte lengths",
                tb.display()
            );
        }
    }
    Ok(tok)
}

/// The counts of `token_bytes.pt` (a 1-D integer tensor). Errors: not a torch file, or not a
/// 1-D integer tensor.
pub fn read_token_bytes_pt(path: &Path) -> Result<Vec<i64>> {
    let f = TorchFile::open(path)?;
    let Value::Tensor(t) = &f.root else {
        return Err(file_err(path, "not a tensor"));
    };
    let t = f.tensor(t, "token_bytes")?;
    if t.tensor.shape.len() != 1 {
        return Err(file_err(
            path,
            format!("shape {:?}, expected one dimension", t.tensor.shape),
        ));
    }
    Ok(t.tensor.ints(f.path(), "token_bytes")?.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::torchfile::tests::native;

    fn expected(gen: &str) -> serde_json::Value {
        let p = native(&format!("{gen}/expected.json"));
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    }

    #[test]
    fn nanochats_tokenizer_pkl_gives_identical_ids_for_both_generations() {
        for gen in ["native_head", "native_v1"] {
            let e = expected(gen);
            let tok = load_tokenizer_pkl(&native(&format!("{gen}/tokenizer"))).unwrap();
            assert_eq!(tok.get_bos_token_id() as u64, e["bos_id"].as_u64().unwrap());
            let enc = e["encodings"].as_object().unwrap();
            assert_eq!(enc.len(), 7);
            for (text, ids) in enc {
                let want: Vec<u32> = ids
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as u32)
                    .collect();
                assert_eq!(tok.encode(text), want, "{gen}: {text:?}");
                assert_eq!(&tok.decode(&want).unwrap(), text);
            }
            let tb: Vec<u32> = e["token_bytes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            if gen == "native_head" {
                assert_eq!(tok.token_bytes(), tb.as_slice());
            }
        }
    }

    #[test]
    fn the_fingerprint_of_the_pkl_equals_that_of_its_tokenizer_json() {
        let dir = tempfile::tempdir().unwrap();
        for gen in ["native_head", "native_v1"] {
            let file = native(&format!("{gen}/tokenizer/tokenizer.pkl"));
            let parts = read_tiktoken_pkl(&file).unwrap();
            let tok = parts.to_tokenizer().unwrap();
            let want = crate::tokenizer::fingerprint_tiktoken(
                &parts.mergeable_ranks,
                &parts.special_tokens,
                &parts.pat_str,
            )
            .unwrap();
            assert_eq!(tok.fingerprint().unwrap(), want);
            // ... and of the same tokenizer saved as tokenizer.json and read back.
            let out = dir.path().join(gen);
            tok.save(&out).unwrap();
            let back = Tokenizer::from_pretrained(&out).unwrap();
            assert_eq!(back.fingerprint().unwrap(), want);
        }
    }

    /// tiktoken's own algorithm (tiktoken-rs, over the same ranks) and the converted BPE agree
    /// on text full of repeats, digits, spaces and multi-byte characters.
    #[test]
    fn the_converted_bpe_encodes_as_tiktoken_does() {
        for gen in ["native_head", "native_v1"] {
            let parts =
                read_tiktoken_pkl(&native(&format!("{gen}/tokenizer/tokenizer.pkl"))).unwrap();
            let tok = parts.to_tokenizer().unwrap();
            let encoder: rustc_hash::FxHashMap<Vec<u8>, u32> =
                parts.mergeable_ranks.iter().cloned().collect();
            let core = tiktoken_rs::CoreBPE::new(
                encoder,
                rustc_hash::FxHashMap::default(),
                &parts.pat_str,
            )
            .unwrap();
            let corpus = std::fs::read_to_string(native(&format!("{gen}/train_log.txt")))
                .unwrap_or_default();
            let mut texts: Vec<String> = corpus.lines().map(str::to_string).collect();
            texts.extend([
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_string(),
                "the the the thethethe licensee licenses".to_string(),
                "1234567890 00 000 0000 éàü 日本語 🙂🙂 \n\n\t  x".to_string(),
                "Copyright (C) 2007 Free Software Foundation, Inc. <https://fsf.org/>".to_string(),
            ]);
            // Random strings over the letters the vocabulary merges most.
            use rand::{Rng, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(7);
            let alphabet: Vec<char> = "aeilnrst .,\n\u{e9}0".chars().collect();
            for _ in 0..3000 {
                let n = rng.random_range(1..40);
                texts.push(
                    (0..n)
                        .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                        .collect(),
                );
            }
            for t in &texts {
                let want: Vec<u32> = core.encode_ordinary(t);
                assert_eq!(tok.encode(t), want, "{gen}: {t:?}");
            }
        }
    }

    #[test]
    fn written_pkl_reads_back_identically_and_v1s_token_bytes_quirk_is_reproduced() {
        for gen in ["native_head", "native_v1"] {
            let file = native(&format!("{gen}/tokenizer/tokenizer.pkl"));
            let parts = read_tiktoken_pkl(&file).unwrap();
            let tok = parts.to_tokenizer().unwrap();
            let mine = TiktokenParts::from_tokenizer(&tok).unwrap();
            let mut want = parts.clone();
            want.mergeable_ranks.sort_by_key(|(_, r)| *r);
            assert_eq!(mine, want, "{gen}");
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("tokenizer.pkl");
            std::fs::write(&p, mine.to_pkl_bytes()).unwrap();
            assert_eq!(read_tiktoken_pkl(&p).unwrap(), mine);
            // token_bytes.pt as that generation's tok_train.py wrote it.
            let stored =
                read_token_bytes_pt(&native(&format!("{gen}/tokenizer/token_bytes.pt"))).unwrap();
            assert_eq!(
                token_bytes_counts(&tok, gen == "native_v1").unwrap(),
                stored,
                "{gen}"
            );
        }
    }

    #[test]
    fn a_pickle_naming_another_global_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokenizer.pkl");
        std::fs::write(&p, b"\x80\x04\x8c\x02os\x8c\x06system\x93)\x81.").unwrap();
        let e = load_tokenizer_pkl(&p).unwrap_err().to_string();
        assert!(
            e.contains("tokenizer.pkl") && e.contains("os.system"),
            "{e}"
        );
    }
}
