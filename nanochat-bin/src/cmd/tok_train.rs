//! `nanochat tok-train`: trains the byte-level BPE tokenizer on text, JSONL or parquet files
//! (the bundled corpus when none is given) and writes `tokenizer.json` and `token_bytes.json`.
//! Prints one JSON summary on stdout (characters read, trained on and held out); progress bars,
//! the documents and characters of each input file, and a warning naming the flag whenever
//! `--doc-cap`, `--max-chars` or the ratios leave more than 1% of what was read unused go to
//! stderr.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use nanochat_core::data::{bundled_documents, read_documents, split_train_val, unused_warning};
use nanochat_core::tokenizer::{train_chars, train_tokenizer, TrainOptions};
use serde_json::json;

/// The sentence whose ids the summary reports, so another process can check it encodes the same.
pub const PROBE: &str = "Call me Ishmael. The year 2026, 3.14159 and naïve café — 한국어 <|bos|>!";

#[derive(clap::Args)]
pub struct Args {
    /// Text (.txt: documents of whole paragraphs, cut at blank lines), JSONL (`text` field) or
    /// parquet (`text` column) files, optionally .gz; default: the bundled corpus.
    #[arg(short, long, num_args = 1..)]
    input: Vec<PathBuf>,
    /// Where to write tokenizer.json (default: $NANOCHAT_TOKENIZER_PATH, else
    /// $NANOCHAT_BASE_DIR/tokenizer, else ~/.cache/nanochat/tokenizer).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Vocabulary size, the nine special tokens included.
    #[arg(long, default_value_t = 32768)]
    vocab_size: usize,
    /// Fraction of the documents (from the start) to train on.
    #[arg(long, default_value_t = 0.95)]
    train_ratio: f64,
    /// Fraction of the documents (from the end) held out to report bytes per token.
    #[arg(long, default_value_t = 0.05)]
    val_ratio: f64,
    /// Characters to train on at most.
    #[arg(long, default_value_t = 1_000_000_000)]
    max_chars: usize,
    /// Characters of each document used at most.
    #[arg(long, default_value_t = 10_000)]
    doc_cap: usize,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let docs = if args.input.is_empty() {
        bundled_documents()?
    } else {
        let mut docs = Vec::new();
        for p in &args.input {
            let file_docs = read_documents(p)?;
            let chars: usize = file_docs.iter().map(|d| d.chars().count()).sum();
            eprintln!(
                "read {}: {} documents, {chars} characters",
                p.display(),
                file_docs.len()
            );
            docs.extend(file_docs);
        }
        docs
    };
    if docs.is_empty() {
        bail!("no documents in the input");
    }
    let n_docs = docs.len();
    let read_chars: usize = docs.iter().map(|d| d.chars().count()).sum();
    let (train, val) = split_train_val(docs, args.train_ratio, args.val_ratio)?;
    let val_chars: usize = val.iter().map(|d| d.chars().count()).sum();
    eprintln!(
        "training a {}-token BPE on {} of {n_docs} documents",
        args.vocab_size,
        train.len()
    );
    let opts = TrainOptions {
        vocab_size: args.vocab_size,
        doc_cap: args.doc_cap,
        max_chars: args.max_chars,
        progress: true,
    };
    // Every character read is trained on, held out, or left out by a flag: say which and how much.
    let chars = train_chars(&train, &opts);
    let ratios = format!(
        "--train-ratio {} and --val-ratio {}",
        args.train_ratio, args.val_ratio
    );
    let doc_cap = format!("--doc-cap {}", args.doc_cap);
    let max_chars = format!("--max-chars {}", args.max_chars);
    let warnings = [
        (
            read_chars - chars.read - val_chars,
            &ratios,
            "raise them to a sum of 1 to use every document",
        ),
        (
            chars.over_doc_cap,
            &doc_cap,
            "raise --doc-cap to train on the rest of long documents",
        ),
        (
            chars.over_max_chars,
            &max_chars,
            "raise --max-chars to train on more",
        ),
    ];
    for (unused, cause, remedy) in warnings {
        if let Some(w) = unused_warning(read_chars, unused, "characters read", cause, remedy) {
            eprintln!("{w}");
        }
    }
    let (tok, chars) = train_tokenizer(&train, &opts)?;
    let out = super::paths()?.tokenizer_dir_or(args.output.as_deref());
    tok.save(&out)
        .with_context(|| format!("writing the tokenizer to {}", out.display()))?;
    let val_bytes: usize = val.iter().map(|d| d.len()).sum();
    let val_tokens: usize = tok
        .encode_batch(&val.iter().map(String::as_str).collect::<Vec<_>>())
        .iter()
        .map(Vec::len)
        .sum();
    let summary = json!({
        "output": out.display().to_string(),
        "vocab_size": tok.vocab_size(),
        "requested_vocab_size": args.vocab_size,
        "train_documents": train.len(),
        "read_documents": n_docs,
        "read_chars": read_chars,
        "train_chars": chars.used,
        "val_chars": val_chars,
        "unused_chars": {"ratios": read_chars - chars.read - val_chars,
            "doc_cap": chars.over_doc_cap, "max_chars": chars.over_max_chars},
        "val_documents": val.len(),
        "val_bytes_per_token": if val_tokens > 0 { json!(val_bytes as f64 / val_tokens as f64) } else { json!(null) },
        "seconds": started.elapsed().as_secs_f64(),
        "probe": { "text": PROBE, "ids": tok.encode(PROBE) },
    });
    if tok.vocab_size() < args.vocab_size {
        eprintln!(
            "note: the text allowed only {} tokens of the {} asked for (no pair left to merge)",
            tok.vocab_size(),
            args.vocab_size
        );
    }
    super::report_stage_for(
        args.output.as_deref(),
        "tokenizer",
        json!({"vocab_size": args.vocab_size, "doc_cap": args.doc_cap, "max_chars": args.max_chars,
            "inputs": if args.input.is_empty() { json!("bundled corpus") } else { json!(args.input) }}),
        json!({"vocab_size": summary["vocab_size"], "train_documents": summary["train_documents"],
            "train_chars": summary["train_chars"], "val_bytes_per_token": summary["val_bytes_per_token"],
            "wall_s": summary["seconds"]}),
    );
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(ExitCode::SUCCESS)
}
