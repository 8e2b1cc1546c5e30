//! `nanochat export --to nanochat`: a model written as a nanochat base dir
//! ([`nanochat_core::checkpoint::export`]).

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use nanochat_core::checkpoint::{export::export_nanochat, root_tag, Phase};

#[derive(Parser, Debug)]
pub struct Args {
    /// The format to write: `nanochat` (nanochat's own files: model_<step>.pt,
    /// meta_<step>.json, tokenizer/tokenizer.pkl and token_bytes.pt).
    #[arg(long, value_parser = ["nanochat"])]
    to: String,
    /// Which checkpoints: base, mid, sft or rl.
    #[arg(short = 'i', long, value_parser = ["base", "mid", "sft", "rl"])]
    source: String,
    #[command(flatten)]
    checkpoint: super::CheckpointArgs,
    /// The folder to make a nanochat base dir of (created; point NANOCHAT_BASE_DIR at it).
    #[arg(long)]
    output: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<std::process::ExitCode> {
    let device = nanochat_core::Device::cpu()?;
    let phase = Phase::parse(&args.source)?;
    let loaded = args.checkpoint.load(phase, &device)?;
    let tag = root_tag(
        &loaded.root,
        phase,
        args.checkpoint.model_tag.as_deref(),
        &loaded.meta,
    );
    let report = export_nanochat(&loaded, &tag, &args.output)
        .with_context(|| format!("exporting to {}", args.output.display()))?;
    for o in &report.optim {
        eprintln!("wrote {}", o.display());
    }
    if let Some(why) = &report.optim_note {
        eprintln!("note: no optimizer file written: {why}");
    }
    eprintln!(
        "wrote {}, {}, {} and {} (a nanochat base dir: NANOCHAT_BASE_DIR={})",
        report.model.display(),
        report.meta.display(),
        report.tokenizer.display(),
        report.token_bytes.display(),
        args.output.display()
    );
    Ok(std::process::ExitCode::SUCCESS)
}
