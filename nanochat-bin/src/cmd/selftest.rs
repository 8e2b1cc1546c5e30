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
    let r = selftest(&device, args.filter.as_deref(), &mut |e| {
        if !args.json {
            print_event(e)
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

/// One table line per check (and per failed comparison) and per fixture, on stderr.
fn print_event(e: SelftestEvent<'_>) {
    match e {
        SelftestEvent::Check {
            index,
            of,
            name,
            reports,
            seconds,
        } => {
            let bad = reports.iter().filter(|r| !r.passed).count();
            let worst = reports
                .iter()
                .map(|r| r.rel_err / r.tolerance.max(f64::MIN_POSITIVE))
                .fold(0.0, f64::max);
            let verdict = if bad == 0 { "ok  " } else { "FAIL" };
            eprintln!(
                "[{:>2}/{of}] {name:<28} {:>4} comparisons  {verdict}  worst err/tol {worst:.2}  ({seconds:.1}s)",
                index + 1,
                reports.len(),
            );
            for r in reports.iter().filter(|r| !r.passed) {
                eprintln!(
                    "      {} {} [{}]: rel_err {:.3e} > tol {:.1e}",
                    r.name, r.dtype, r.case, r.rel_err, r.tolerance
                );
            }
        }
        SelftestEvent::Fixture { name, report: r } => eprintln!(
            "[reference] {name:<24} max_rel_err {:.2e}  muon_rel_err {:.2e}  {}",
            r.max_rel_err,
            r.muon_rel_err.unwrap_or(0.0),
            if r.passed() { "ok" } else { "FAIL (> 1e-4)" }
        ),
    }
}
