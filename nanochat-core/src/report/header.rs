//! The report's header: when it was generated, the git state of the current folder (branch,
//! commit, dirty, message; "unknown" without git), the hardware (platform, CPU, cores, memory and
//! the device), the software (nanochat-rs, rustc) and the "bloat" of the code (lines, characters
//! and files of the repository's tracked `*.rs` files, Cargo.lock packages).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::SystemTime;

use super::{group, one_line, rfc3339_utc};

/// The output of `git args...` run in the current folder, trimmed; `None` without git or repo.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub(super) fn header(md: &mut String, device: &str) {
    let _ = writeln!(md, "# nanochat training report\n");
    let _ = writeln!(md, "Generated: {}\n", rfc3339_utc(SystemTime::now()));
    md.push_str("## Environment\n\n### Git\n\n");
    let unknown = || "unknown".to_string();
    let dirty = git(&["status", "--porcelain"]).map(|s| if s.is_empty() { "no" } else { "yes" });
    let _ = writeln!(
        md,
        "- Branch: {}\n- Commit: {}\n- Dirty: {}\n- Message: {}\n",
        git(&["rev-parse", "--abbrev-ref", "HEAD"]).unwrap_or_else(unknown),
        git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(unknown),
        dirty.unwrap_or("unknown"),
        git(&["log", "-1", "--pretty=%s"])
            .map(|m| one_line(&m))
            .unwrap_or_else(unknown),
    );
    let mut sys = sysinfo::System::new();
    sys.refresh_memory();
    sys.refresh_cpu_list(sysinfo::CpuRefreshKind::nothing());
    let brand = sys.cpus().first().map(|c| c.brand().trim().to_string());
    let physical = sysinfo::System::physical_core_count().map_or_else(unknown, |n| n.to_string());
    let _ = writeln!(
        md,
        "### Hardware\n\n- Platform: {} ({})\n- CPU: {}\n- Cores: {} physical, {} logical\n\
         - Memory: {:.1} GiB\n- Device: {}\n",
        sysinfo::System::long_os_version().unwrap_or_else(unknown),
        sysinfo::System::cpu_arch(),
        brand.filter(|b| !b.is_empty()).unwrap_or_else(unknown),
        physical,
        sys.cpus().len(),
        sys.total_memory() as f64 / (1u64 << 30) as f64,
        device,
    );
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let _ = writeln!(
        md,
        "### Software\n\n- nanochat-rs: {}\n- rustc: {}\n",
        env!("CARGO_PKG_VERSION"),
        rustc.unwrap_or_else(unknown)
    );
    md.push_str("### Bloat\n\n");
    bloat(md);
}

/// Lines, characters and files of the repository's tracked `*.rs` files, and the packages of
/// its `Cargo.lock`.
fn bloat(md: &mut String) {
    let Some(top) = git(&["rev-parse", "--show-toplevel"]) else {
        md.push_str("- (not in a git repository: not counted)\n\n");
        return;
    };
    let top = PathBuf::from(top);
    let files = git(&["-C", &top.to_string_lossy(), "ls-files"]).unwrap_or_default();
    let (mut n, mut lines, mut chars) = (0u64, 0u64, 0u64);
    for file in files.lines().filter(|f| f.ends_with(".rs")) {
        if let Ok(text) = std::fs::read_to_string(top.join(file)) {
            n += 1;
            lines += text.lines().count() as u64;
            chars += text.chars().count() as u64;
        }
    }
    let deps = std::fs::read_to_string(top.join("Cargo.lock"))
        .map(|t| t.lines().filter(|l| l.trim() == "[[package]]").count() as i64);
    let _ = writeln!(
        md,
        "- Characters: {}\n- Lines: {}\n- Files: {}\n- Tokens (approx.): {}\n- Dependencies (Cargo.lock packages): {}\n",
        group(chars as i64),
        group(lines as i64),
        group(n as i64),
        group((chars / 4) as i64),
        deps.map_or_else(|_| "unknown".to_string(), group),
    );
}
