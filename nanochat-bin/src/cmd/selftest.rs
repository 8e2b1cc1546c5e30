//! `nanochat selftest`: every kernel check of nanochat-kernels on one device, each kernel
//! against its plain-Rust reference over odd shapes, in f32 and (where the runtime has it) bf16;
//! then the reference fixtures of nanochat's PyTorch GPT (embedded in the binary, so a GPU
//! machine needs nothing else) through the whole model, forward and backward. Exits non-zero
//! when any comparison fails.

use std::io::Write;
use std::process::ExitCode;

use nanochat_core::selftest::{selftest, SelftestEvent};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    device: super::DeviceArg,
    /// Print one JSON object (every comparison) instead of a table.
    #[arg(long)]
    json: bool,
    /// Only checks whose name contains this (`reference` selects the model fixtures).
    #[arg(long)]
    filter: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let device = args.device.open()?;
    let r = selftest(&device, args.filter.as_deref(), &mut |e: SelftestEvent<
        '_,
    >| {
        if !args.json {
            eprintln!("{e}")
        }
    })?;
    if args.json {
        writeln!(std::io::stdout(), "{}", r.to_json())?;
    } else {
        println!(
            "selftest on {device}: {} comparisons passed, {} failed",
            r.passed, r.failed
        );
    }
    Ok(if r.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
