//! `nanochat selftest`: every kernel check of nanochat-kernels on one device, each kernel
//! against its plain-Rust reference over odd shapes, in f32 and (where the runtime has it) bf16;
//! then the reference fixtures of nanochat's PyTorch GPT (embedded in the binary, so a GPU
//! machine needs nothing else) through the whole model, forward and backward. Exits non-zero
//! when any comparison fails.

use std::io::Write;
use std::process::ExitCode;

use nanochat_core::verify::verify_reference_bytes;
use nanochat_kernels::check::{all_checks, run_check};
use serde_json::json;

/// The fixtures of tests/fixtures/reference, built into the binary.
const FIXTURES: [(&str, &[u8]); 2] = [
    (
        "gqa_tiny.safetensors",
        include_bytes!("../../../tests/fixtures/reference/gqa_tiny.safetensors"),
    ),
    (
        "mha_small.safetensors",
        include_bytes!("../../../tests/fixtures/reference/mha_small.safetensors"),
    ),
];

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
    let checks: Vec<_> = all_checks()
        .into_iter()
        .filter(|c| args.filter.as_deref().is_none_or(|f| c.name.contains(f)))
        .collect();
    let mut reports = Vec::new();
    let (mut passed, mut failed) = (0, 0);
    for (i, check) in checks.iter().enumerate() {
        let started = std::time::Instant::now();
        let rs = run_check(device.client(), check);
        let bad = rs.iter().filter(|r| !r.passed).count();
        passed += rs.len() - bad;
        failed += bad;
        if !args.json {
            let worst = rs
                .iter()
                .map(|r| r.rel_err / r.tolerance.max(f64::MIN_POSITIVE))
                .fold(0.0, f64::max);
            eprintln!(
                "[{:>2}/{}] {:<28} {:>4} comparisons  {}  worst err/tol {:.2}  ({:.1}s)",
                i + 1,
                checks.len(),
                check.name,
                rs.len(),
                if bad == 0 { "ok  " } else { "FAIL" },
                worst,
                started.elapsed().as_secs_f64()
            );
            for r in rs.iter().filter(|r| !r.passed) {
                eprintln!(
                    "      {} {} [{}]: rel_err {:.3e} > tol {:.1e}",
                    r.name, r.dtype, r.case, r.rel_err, r.tolerance
                );
            }
        }
        reports.extend(rs);
    }
    let mut fixtures = Vec::new();
    if args
        .filter
        .as_deref()
        .is_none_or(|f| "reference".contains(f))
    {
        for (name, bytes) in FIXTURES {
            let r = verify_reference_bytes(bytes, name, &device)?;
            if r.passed() {
                passed += 1;
            } else {
                failed += 1;
            }
            if !args.json {
                eprintln!(
                    "[reference] {name:<24} max_rel_err {:.2e}  muon_rel_err {:.2e}  {}",
                    r.max_rel_err,
                    r.muon_rel_err.unwrap_or(0.0),
                    if r.passed() { "ok" } else { "FAIL (> 1e-4)" }
                );
            }
            fixtures.push(r.to_json());
        }
    }
    if args.json {
        let out = json!({
            "device": device.to_string(),
            "passed": passed,
            "failed": failed,
            "comparisons": reports.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
            "reference_fixtures": fixtures,
        });
        writeln!(std::io::stdout(), "{out}")?;
    } else {
        println!("selftest on {device}: {passed} comparisons passed, {failed} failed");
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
