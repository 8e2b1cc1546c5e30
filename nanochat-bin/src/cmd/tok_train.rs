//! `nanochat tok-train`: trains the byte-level BPE tokenizer on text, JSONL or parquet files
//! (the bundled corpus when none is given) and writes `tokenizer.json` and `token_bytes.json`.
//! Prints one JSON summary on stdout (characters read, trained on and held out); progress bars,
//! the documents and characters of each input file, and a warning naming the flag whenever
//! `--doc-cap`, `--max-chars` or the ratios leave more than 1% of what was read unused go to
//! stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use nanochat_core::tokenizer::{tok_train, TokTrainConfig};

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

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let out = super::paths()?.tokenizer_dir_or(args.output.as_deref());
    let config = args.config();
    let summary = tok_train(&config, &out, &mut |e| eprintln!("{e}"))?;
    if let Some(note) = summary.short_vocab_note() {
        eprintln!("{note}");
    }
    let (settings, results) = summary.report(&config);
    super::report_stage_for(args.output.as_deref(), "tokenizer", settings, results);
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::to_value(&summary)?)?
    );
    Ok(ExitCode::SUCCESS)
}
