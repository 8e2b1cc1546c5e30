//! `nanochat selftest` as a library call: every kernel check of nanochat-kernels on one device
//! (each kernel against its plain-Rust f64 reference over odd shapes, in f32 and, where the
//! runtime has it, bf16), then the reference fixtures of nanochat's PyTorch GPT (embedded, so a
//! GPU machine needs no files) through the whole model, forward and backward, within
//! [`crate::verify::TOLERANCE`].

use std::time::Instant;

use nanochat_kernels::check::{all_checks, run_check, CheckReport};
use serde_json::{json, Value};

use crate::verify::{verify_reference_bytes, VerifyReport};
use crate::{Device, Result};

/// The fixtures of `tests/fixtures/reference` (nanochat v1's float64 numbers) and
/// `tests/fixtures/reference/head` (nanochat HEAD's), built in.
pub const FIXTURES: [(&str, &[u8]); 4] = [
    (
        "gqa_tiny.safetensors",
        include_bytes!("../../tests/fixtures/reference/gqa_tiny.safetensors"),
    ),
    (
        "mha_small.safetensors",
        include_bytes!("../../tests/fixtures/reference/mha_small.safetensors"),
    ),
    (
        "head/head_tiny.safetensors",
        include_bytes!("../../tests/fixtures/reference/head/head_tiny.safetensors"),
    ),
    (
        "head/head_small.safetensors",
        include_bytes!("../../tests/fixtures/reference/head/head_small.safetensors"),
    ),
];

/// What [`selftest`] reports as it goes, for a progress display.
pub enum SelftestEvent<'a> {
    /// One kernel check finished: its 0-based `index` of `of`, its comparisons and wall time.
    Check {
        /// Position of the check in the selection (0-based).
        index: usize,
        /// Number of checks selected.
        of: usize,
        /// The check's name (e.g. `rmsnorm`).
        name: &'static str,
        /// Its comparisons (one per dtype and case).
        reports: &'a [CheckReport],
        /// Wall time of the check, in seconds.
        seconds: f64,
    },
    /// One reference fixture was verified.
    Fixture {
        /// The fixture's file name.
        name: &'static str,
        /// Its errors.
        report: &'a VerifyReport,
    },
}

impl std::fmt::Display for SelftestEvent<'_> {
    /// The table line of a check (and one more per failed comparison) or of a fixture.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
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
                write!(
                    f,
                    "[{:>2}/{of}] {name:<28} {:>4} comparisons  {verdict}  worst err/tol {worst:.2}  ({seconds:.1}s)",
                    index + 1,
                    reports.len(),
                )?;
                for r in reports.iter().filter(|r| !r.passed) {
                    write!(
                        f,
                        "\n      {} {} [{}]: rel_err {:.3e} > tol {:.1e}",
                        r.name, r.dtype, r.case, r.rel_err, r.tolerance
                    )?;
                }
                Ok(())
            }
            SelftestEvent::Fixture { name, report: r } => write!(
                f,
                "[reference] {name:<24} max_rel_err {:.2e}  muon_rel_err {:.2e}  {}",
                r.max_rel_err,
                r.muon_rel_err.unwrap_or(0.0),
                if r.passed() { "ok" } else { "FAIL (> 1e-4)" }
            ),
        }
    }
}

/// The outcome of [`selftest`].
pub struct SelftestReport {
    /// The device, as `cpu` or `cuda:N`.
    pub device: String,
    /// Comparisons (and fixtures) within tolerance.
    pub passed: usize,
    /// Comparisons (and fixtures) outside it.
    pub failed: usize,
    /// Every kernel comparison, in check order.
    pub comparisons: Vec<CheckReport>,
    /// Every fixture's report, in [`FIXTURES`] order.
    pub reference_fixtures: Vec<VerifyReport>,
}

impl SelftestReport {
    /// What `nanochat selftest --json` prints: `device`, `passed`, `failed`, `comparisons`,
    /// `reference_fixtures`.
    pub fn to_json(&self) -> Value {
        json!({
            "device": self.device,
            "passed": self.passed,
            "failed": self.failed,
            "comparisons": self.comparisons.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
            "reference_fixtures": self.reference_fixtures.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
        })
    }
}

/// Runs the kernel checks whose name contains `filter` (all when `None`), then, when `filter`
/// is `None` or a part of the word `reference`, the embedded fixtures. A failed comparison is
/// counted, not an error; errors are those of loading or running a fixture
/// ([`verify_reference_bytes`]).
pub fn selftest(
    device: &Device,
    filter: Option<&str>,
    on_event: &mut dyn FnMut(SelftestEvent<'_>),
) -> Result<SelftestReport> {
    let checks: Vec<_> = all_checks()
        .into_iter()
        .filter(|c| filter.is_none_or(|f| c.name.contains(f)))
        .collect();
    let mut out = SelftestReport {
        device: device.to_string(),
        passed: 0,
        failed: 0,
        comparisons: Vec::new(),
        reference_fixtures: Vec::new(),
    };
    for (index, check) in checks.iter().enumerate() {
        let started = Instant::now();
        let reports = run_check(device.client(), check);
        let bad = reports.iter().filter(|r| !r.passed).count();
        out.passed += reports.len() - bad;
        out.failed += bad;
        on_event(SelftestEvent::Check {
            index,
            of: checks.len(),
            name: check.name,
            reports: &reports,
            seconds: started.elapsed().as_secs_f64(),
        });
        out.comparisons.extend(reports);
    }
    if filter.is_none_or(|f| "reference".contains(f)) {
        for (name, bytes) in FIXTURES {
            let report = verify_reference_bytes(bytes, name, device)?;
            if report.passed() {
                out.passed += 1;
            } else {
                out.failed += 1;
            }
            on_event(SelftestEvent::Fixture {
                name,
                report: &report,
            });
            out.reference_fixtures.push(report);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One cheap kernel check and no fixture: the counts add up, events come in order, and the
    /// JSON has the keys `selftest --json` prints.
    #[test]
    fn a_filtered_selftest_counts_and_reports_each_check() {
        let device = Device::cpu().unwrap();
        let mut seen = Vec::new();
        let r = selftest(&device, Some("rmsnorm"), &mut |e| match e {
            SelftestEvent::Check {
                index, of, name, ..
            } => seen.push(format!("{index}/{of} {name}")),
            SelftestEvent::Fixture { name, .. } => seen.push(name.to_string()),
        })
        .unwrap();
        assert_eq!(seen, vec!["0/1 rmsnorm"]);
        assert!(r.passed > 0);
        assert_eq!(r.failed, 0);
        assert_eq!(r.passed, r.comparisons.len());
        assert!(r.reference_fixtures.is_empty());
        let j = r.to_json();
        assert_eq!(j["device"], "cpu");
        assert_eq!(j["passed"], r.passed);
        assert_eq!(
            j["comparisons"].as_array().unwrap().len(),
            r.comparisons.len()
        );
    }
}
