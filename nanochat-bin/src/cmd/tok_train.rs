//! `nanochat tok-train`: trains the byte-level BPE tokenizer on text, JSONL or parquet files
//! (the bundled corpus when none is given) and writes `tokenizer.json` and `token_bytes.json`.
//! Prints one JSON summary on stdout (characters read, trained on and held out); progress bars,
//! the documents and characters of each input file, and a warning naming the flag whenever
//! `--doc-cap`, `--max-chars` or the ratios leave more than 1% of what was read unused go to
//! stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use nanochat_core::tokenizer::{tok_train, TokTrainConfig, TokTrainEvent};
use serde_json::json;

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

impl Args {
    /// The run's settings.
    fn config(&self) -> TokTrainConfig {
        TokTrainConfig {
            inputs: self.input.clone(),
            vocab_size: self.vocab_size,
            train_ratio: self.train_ratio,
            val_ratio: self.val_ratio,
            max_chars: self.max_chars,
            doc_cap: self.doc_cap,
        }
    }
}

/// Shows an event of the run on stderr.
fn show(e: &TokTrainEvent) {
    match e {
        TokTrainEvent::Read {
            path,
            documents,
            chars,
        } => eprintln!(
            "read {}: {documents} documents, {chars} characters",
            path.display()
        ),
        TokTrainEvent::Training {
            vocab_size,
            train_documents,
            documents,
        } => eprintln!(
            "training a {vocab_size}-token BPE on {train_documents} of {documents} documents"
        ),
        TokTrainEvent::Unused(warning) => eprintln!("{warning}"),
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let out = super::paths()?.tokenizer_dir_or(args.output.as_deref());
    let summary = tok_train(&args.config(), &out, &mut show)?;
    if summary.vocab_size < args.vocab_size {
        eprintln!(
            "note: the text allowed only {} tokens of the {} asked for (no pair left to merge)",
            summary.vocab_size, args.vocab_size
        );
    }
    let inputs = if args.input.is_empty() {
        json!("bundled corpus")
    } else {
        json!(args.input)
    };
    super::report_stage_for(
        args.output.as_deref(),
        "tokenizer",
        json!({"vocab_size": args.vocab_size, "doc_cap": args.doc_cap, "max_chars": args.max_chars,
            "inputs": inputs}),
        json!({"vocab_size": summary.vocab_size, "train_documents": summary.train_documents,
            "train_chars": summary.train_chars, "val_bytes_per_token": summary.val_bytes_per_token,
            "wall_s": summary.seconds}),
    );
    let summary = serde_json::to_value(&summary)?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(ExitCode::SUCCESS)
}
