//! `nanochat tok-eval`: bytes per token of our tokenizer against GPT-2's and GPT-4's encodings
//! on prose, code, numbers, non-English text and the bundled corpus's held-out documents.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use nanochat_core::data::{bundled_documents, split_train_val};
use nanochat_core::tokenizer::eval::{compare, Reference, EVAL_TEXTS};
use nanochat_core::tokenizer::Tokenizer;
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    /// Directory (or file) of the tokenizer (default: as `tok-train` writes it).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = super::paths()?.tokenizer_dir_or(args.tokenizer.as_deref());
    let tok = Tokenizer::from_pretrained(&dir)
        .with_context(|| format!("loading the tokenizer from {}", dir.display()))?;
    let reference = Reference::load()?;
    let mut texts: Vec<(String, String)> = EVAL_TEXTS
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    let (_, val) = split_train_val(bundled_documents()?, 0.95, 0.05)?;
    texts.push(("corpus-val".to_string(), val.concat()));
    let rows = compare(&tok, &reference, &texts);
    super::report_stage_for(
        args.tokenizer.as_deref(),
        "tokenizer-eval",
        json!({"tokenizer": dir.display().to_string(), "vocab_size": tok.vocab_size()}),
        serde_json::Value::Object(
            rows.iter()
                .map(|r| {
                    (
                        r.name.clone(),
                        json!(format!(
                            "{:.2} bytes/token (GPT-2 {:.2}, GPT-4 {:.2})",
                            r.bytes_per_token(r.ours),
                            r.bytes_per_token(r.gpt2),
                            r.bytes_per_token(r.gpt4)
                        )),
                    )
                })
                .collect(),
        ),
    );
    if args.json {
        let out = json!({
            "tokenizer": dir.display().to_string(),
            "vocab_size": tok.vocab_size(),
            "texts": rows.iter().map(|r| json!({
                "name": r.name, "bytes": r.bytes,
                "ours_tokens": r.ours, "gpt2_tokens": r.gpt2, "gpt4_tokens": r.gpt4,
                "ours_bytes_per_token": r.bytes_per_token(r.ours),
                "gpt2_bytes_per_token": r.bytes_per_token(r.gpt2),
                "gpt4_bytes_per_token": r.bytes_per_token(r.gpt4),
            })).collect::<Vec<_>>(),
        });
        println!("{out}");
    } else {
        println!(
            "bytes per token (higher compresses better); ours: vocab {} at {}",
            tok.vocab_size(),
            dir.display()
        );
        println!(
            "{:<12} {:>9} {:>12} {:>12} {:>12} {:>10} {:>10}",
            "text", "bytes", "ours", "gpt2", "gpt4", "vs gpt2", "vs gpt4"
        );
        for r in &rows {
            let rel = |other: usize| 100.0 * (other as f64 - r.ours as f64) / other.max(1) as f64;
            println!(
                "{:<12} {:>9} {:>5} {:>6.2} {:>5} {:>6.2} {:>5} {:>6.2} {:>+9.1}% {:>+9.1}%",
                r.name,
                r.bytes,
                r.ours,
                r.bytes_per_token(r.ours),
                r.gpt2,
                r.bytes_per_token(r.gpt2),
                r.gpt4,
                r.bytes_per_token(r.gpt4),
                rel(r.gpt2),
                rel(r.gpt4)
            );
        }
        println!("(vs: fewer tokens than the reference, in percent of its tokens)");
    }
    Ok(ExitCode::SUCCESS)
}
