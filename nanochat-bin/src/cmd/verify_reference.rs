//! `nanochat verify-reference FILE.safetensors [--device cpu|cuda]`: runs a fixture made by
//! nanochat's PyTorch GPT (float64) through our model in f32 and prints one JSON object of
//! relative L2 errors (logits, loss, each gradient, `max_rel_err`, `muon_rel_err`). Exits
//! non-zero when any exceeds 1e-4.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use nanochat_core::verify::verify_reference;

#[derive(clap::Args)]
pub struct Args {
    /// A fixture in ../shared/reference's format (e.g. tests/fixtures/reference/gqa_tiny.safetensors).
    file: PathBuf,
    #[command(flatten)]
    device: super::DeviceArg,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let device = args.device.open()?;
    let report = verify_reference(&args.file, &device)
        .with_context(|| format!("verifying {}", args.file.display()))?;
    println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
