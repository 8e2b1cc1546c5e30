//! `nanochat tok-eval`: bytes per token of our tokenizer against GPT-2's and GPT-4's encodings
//! on prose, code, numbers, non-English text and the bundled corpus's held-out documents.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use nanochat_core::tokenizer::{TokEval, Tokenizer};

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
    let eval = TokEval::run(&tok, &dir)?;
    let (settings, summary) = (eval.settings(), eval.summary());
    super::report_stage_for(
        args.tokenizer.as_deref(),
        "tokenizer-eval",
        settings,
        summary,
    );
    if args.json {
        println!("{}", eval.to_json());
    } else {
        print!("{eval}");
    }
    Ok(ExitCode::SUCCESS)
}
