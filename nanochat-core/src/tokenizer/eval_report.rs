//! The whole `nanochat tok-eval` comparison (nanochat's `scripts/tok_eval.py`): our tokenizer
//! against GPT-2's and GPT-4's on the shipped texts and the bundled corpus's held-out
//! documents, as a typed result with its report entries, JSON form and table.

use std::fmt;
use std::path::Path;

use serde_json::{json, Value};

use super::eval::{compare, EvalRow, Reference, EVAL_TEXTS};
use super::Tokenizer;
use crate::data::{bundled_documents, split_train_val};
use crate::Result;

/// The texts `tok-eval` compares on: [`EVAL_TEXTS`] in order, then `corpus-val`, the held-out
/// 5% of the bundled corpus (the split `tok-train` holds out by default) joined without a
/// separator. Errors: those of [`bundled_documents`] (a corrupt bundled corpus).
pub fn eval_texts() -> Result<Vec<(String, String)>> {
    let mut texts: Vec<(String, String)> = EVAL_TEXTS
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    let (_, val) = split_train_val(bundled_documents()?, 0.95, 0.05)?;
    texts.push(("corpus-val".to_string(), val.concat()));
    Ok(texts)
}

/// Our tokenizer's token counts beside GPT-2's and GPT-4's on each text of [`eval_texts`].
#[derive(Clone, Debug)]
pub struct TokEval {
    /// Where our tokenizer was loaded from, as shown to the user.
    pub tokenizer: String,
    /// Our vocabulary size, special tokens included.
    pub vocab_size: usize,
    /// One row per text, in [`eval_texts`] order.
    pub rows: Vec<EvalRow>,
}

impl TokEval {
    /// Compares `tok` (loaded from `path`) with GPT-2 and GPT-4 on [`eval_texts`]. Errors:
    /// those of [`Reference::load`] and [`eval_texts`].
    pub fn run(tok: &Tokenizer, path: &Path) -> Result<TokEval> {
        let reference = Reference::load()?;
        let texts = eval_texts()?;
        Ok(TokEval {
            tokenizer: path.display().to_string(),
            vocab_size: tok.vocab_size(),
            rows: compare(tok, &reference, &texts),
        })
    }

    /// The report's settings of the stage: `tokenizer` (its path) and `vocab_size`.
    pub fn settings(&self) -> Value {
        json!({"tokenizer": self.tokenizer, "vocab_size": self.vocab_size})
    }

    /// The report's results of the stage: per text, `"2.35 bytes/token (GPT-2 4.20, GPT-4
    /// 4.27)"`.
    pub fn summary(&self) -> Value {
        Value::Object(
            self.rows
                .iter()
                .map(|r| {
                    let s = format!(
                        "{:.2} bytes/token (GPT-2 {:.2}, GPT-4 {:.2})",
                        r.bytes_per_token(r.ours),
                        r.bytes_per_token(r.gpt2),
                        r.bytes_per_token(r.gpt4)
                    );
                    (r.name.clone(), json!(s))
                })
                .collect(),
        )
    }

    /// The `--json` form: `tokenizer`, `vocab_size` and per text its bytes, the three token
    /// counts and their bytes per token.
    pub fn to_json(&self) -> Value {
        json!({
            "tokenizer": self.tokenizer,
            "vocab_size": self.vocab_size,
            "texts": self.rows.iter().map(|r| json!({
                "name": r.name, "bytes": r.bytes,
                "ours_tokens": r.ours, "gpt2_tokens": r.gpt2, "gpt4_tokens": r.gpt4,
                "ours_bytes_per_token": r.bytes_per_token(r.ours),
                "gpt2_bytes_per_token": r.bytes_per_token(r.gpt2),
                "gpt4_bytes_per_token": r.bytes_per_token(r.gpt4),
            })).collect::<Vec<_>>(),
        })
    }
}

impl EvalRow {
    /// How many fewer tokens ours takes than a reference taking `other` tokens, in percent of
    /// `other` (negative: ours takes more; `other` 0 counts as 1).
    pub fn fewer_tokens_percent(&self, other: usize) -> f64 {
        100.0 * (other as f64 - self.ours as f64) / other.max(1) as f64
    }
}

/// The table `tok-eval` prints: a heading line, the column names, one line per text and a
/// closing note, each line ending in `\n`.
impl fmt::Display for TokEval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "bytes per token (higher compresses better); ours: vocab {} at {}",
            self.vocab_size, self.tokenizer
        )?;
        writeln!(
            f,
            "{:<12} {:>9} {:>12} {:>12} {:>12} {:>10} {:>10}",
            "text", "bytes", "ours", "gpt2", "gpt4", "vs gpt2", "vs gpt4"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:<12} {:>9} {:>5} {:>6.2} {:>5} {:>6.2} {:>5} {:>6.2} {:>+9.1}% {:>+9.1}%",
                r.name,
                r.bytes,
                r.ours,
                r.bytes_per_token(r.ours),
                r.gpt2,
                r.bytes_per_token(r.gpt2),
                r.gpt4,
                r.bytes_per_token(r.gpt4),
                r.fewer_tokens_percent(r.gpt2),
                r.fewer_tokens_percent(r.gpt4)
            )?;
        }
        writeln!(
            f,
            "(vs: fewer tokens than the reference, in percent of its tokens)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> TokEval {
        TokEval {
            tokenizer: "/tmp/tok".into(),
            vocab_size: 700,
            rows: vec![EvalRow {
                name: "prose".into(),
                bytes: 8395,
                ours: 3575,
                gpt2: 1997,
                gpt4: 1966,
            }],
        }
    }

    #[test]
    fn fewer_tokens_percent_is_relative_to_the_reference() {
        let r = &report().rows[0];
        assert_eq!(r.fewer_tokens_percent(5000), 28.5);
        assert_eq!(r.fewer_tokens_percent(0), -357_500.0);
        assert_eq!(format!("{:.1}", r.fewer_tokens_percent(1997)), "-79.0");
    }

    #[test]
    fn the_table_lists_counts_ratios_and_percentages() {
        let want = "bytes per token (higher compresses better); ours: vocab 700 at /tmp/tok\n\
text             bytes         ours         gpt2         gpt4    vs gpt2    vs gpt4\n\
prose             8395  3575   2.35  1997   4.20  1966   4.27     -79.0%     -81.8%\n\
(vs: fewer tokens than the reference, in percent of its tokens)\n";
        assert_eq!(report().to_string(), want);
    }

    #[test]
    fn report_entries_and_json_carry_every_count() {
        let r = report();
        assert_eq!(
            r.summary(),
            json!({"prose": "2.35 bytes/token (GPT-2 4.20, GPT-4 4.27)"})
        );
        assert_eq!(
            r.settings(),
            json!({"tokenizer": "/tmp/tok", "vocab_size": 700})
        );
        let j = r.to_json();
        assert_eq!(j["texts"][0]["ours_tokens"], 3575);
        assert_eq!(j["texts"][0]["gpt4_tokens"], 1966);
        assert_eq!(j["texts"][0]["ours_bytes_per_token"], 8395.0 / 3575.0);
    }

    #[test]
    fn the_texts_end_with_the_held_out_corpus() {
        let names: Vec<String> = eval_texts().unwrap().into_iter().map(|t| t.0).collect();
        assert_eq!(
            names,
            ["prose", "code", "numbers", "non-english", "corpus-val"]
        );
    }
}
