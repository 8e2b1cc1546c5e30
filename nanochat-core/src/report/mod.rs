//! The report card (nanochat's `report.py`): each pipeline stage logs its settings and results,
//! and `nanochat report` assembles them into one markdown page.
//!
//! Layout of `<root>/report/` (root: [`crate::paths::Paths::model_root`] by default):
//!
//! - `<stage>.json`, written by [`log_stage`] when a stage finishes:
//!   `{"stage", "time" (RFC 3339, UTC), "settings", "results"}`. Stages: `tokenizer`,
//!   `tokenizer-eval`, `base-train`, `base-eval`, `mid-train`, `chat-sft`, `chat-rl`,
//!   `chat-eval-{base,mid,sft,rl}`, `speedrun` (see [`STAGE_ORDER`]); any other name is kept too.
//! - `report.md`, written by [`generate`]: a header (date, git commit/branch/dirty, hardware,
//!   software, the "bloat" of the Rust sources), one section per stage in pipeline order (unknown
//!   stages last, alphabetically) listing its settings and results, the summary table of
//!   [`summary_metrics`] by BASE / MID / SFT / RL, and the total wall-clock time of `speedrun`.
//! - `<stage>-loss.svg`, one per stage whose settings name a `checkpoint_dir`: the loss curve
//!   (and val bpb points) of that folder's `metrics.jsonl` ([`crate::train::StepMetrics`]),
//!   drawn by [`svg::line_chart`] and linked from the stage's section.
//!
//! `header.rs` gathers the header. [`reset`] removes all of these for a new run. A stage file
//! that cannot be read or parsed becomes an error line in the report (and a warning), never a
//! failed `generate`.

mod header;
pub mod svg;
#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::{CoreError, Result};

/// Known stages in pipeline order, with their section titles.
pub const STAGE_ORDER: &[(&str, &str)] = &[
    ("tokenizer", "Tokenizer training"),
    ("tokenizer-eval", "Tokenizer evaluation"),
    ("base-train", "Base model training"),
    ("base-eval", "Base model evaluation"),
    ("chat-eval-base", "Chat evaluation (base)"),
    ("mid-train", "Midtraining"),
    ("chat-eval-mid", "Chat evaluation (mid)"),
    ("chat-sft", "Chat SFT"),
    ("chat-eval-sft", "Chat evaluation (SFT)"),
    ("chat-rl", "Chat RL"),
    ("chat-eval-rl", "Chat evaluation (RL)"),
    ("speedrun", "Speedrun"),
];

/// The rows of the summary table, result keys of the evaluation stages: CORE, the chat tasks
/// of `chat-eval` ([`crate::eval::CHAT_TASKS`]), ChatCORE.
pub fn summary_metrics() -> impl Iterator<Item = &'static str> {
    std::iter::once("CORE")
        .chain(crate::eval::CHAT_TASKS)
        .chain(std::iter::once("ChatCORE"))
}

/// The columns of the summary table and the stages that fill them (the first holding a metric).
const SUMMARY_COLUMNS: &[(&str, &[&str])] = &[
    ("BASE", &["base-eval", "chat-eval-base"]),
    ("MID", &["chat-eval-mid"]),
    ("SFT", &["chat-eval-sft"]),
    ("RL", &["chat-eval-rl"]),
];

/// `root/report`: where the stage files and the report live.
pub fn report_dir(root: &Path) -> PathBuf {
    root.join("report")
}

/// A stage name usable as a file name: 1 to 64 of `[A-Za-z0-9_-]`.
fn valid_stage(stage: &str) -> bool {
    !stage.is_empty()
        && stage.len() <= 64
        && stage
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Records a finished stage: writes `report/<stage>.json` atomically (replacing an earlier one)
/// and returns its path (nanochat's `Report.log`). Errors: [`CoreError::InvalidArgument`] for
/// a stage name that is not 1 to 64 letters, digits, `-` or `_`; [`CoreError::Io`].
pub fn log_stage(root: &Path, stage: &str, settings: Value, results: Value) -> Result<PathBuf> {
    if !valid_stage(stage) {
        return Err(CoreError::invalid(
            "report stage name",
            format!("`{stage}`"),
            "1 to 64 letters, digits, `-` or `_`",
        ));
    }
    let path = report_dir(root).join(format!("{stage}.json"));
    let record = json!({
        "stage": stage,
        "time": rfc3339_utc(SystemTime::now()),
        "settings": settings,
        "results": results,
    });
    let text = serde_json::to_string_pretty(&record).map_err(|e| CoreError::file(&path, e))?;
    crate::io::write_atomic(&path, format!("{text}\n").as_bytes())?;
    Ok(path)
}

/// Records a stage for the report card under `paths.model_root` ([`log_stage`]), unless
/// `output` (where the stage wrote its result: `--output`, `--tokenizer`, `-o`) is a path outside
/// the base dir and the model root: such a scratch run leaves the card alone (`Ok(None)`).
/// Returns the stage file's path. Errors: [`log_stage`]'s.
pub fn record_stage(
    paths: &crate::paths::Paths,
    output: Option<&Path>,
    stage: &str,
    settings: Value,
    results: Value,
) -> Result<Option<PathBuf>> {
    if output.is_some_and(|out| !paths.is_inside(out)) {
        return Ok(None);
    }
    log_stage(&paths.model_root, stage, settings, results).map(Some)
}

/// Removes the stage files, `report.md` and the loss curves (a missing folder is fine;
/// nanochat's `Report.reset`). Errors: [`CoreError::Io`] naming the folder or file.
pub fn reset(root: &Path) -> Result<()> {
    let dir = report_dir(root);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(CoreError::io(&dir, e)),
    };
    for entry in entries {
        let path = entry.map_err(|e| CoreError::io(&dir, e))?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if !path.is_file() || name.starts_with('.') {
            continue;
        }
        if name.ends_with(".json") || name == "report.md" || name.ends_with("-loss.svg") {
            std::fs::remove_file(&path).map_err(|e| CoreError::io(&path, e))?;
        }
    }
    Ok(())
}

/// `t` as RFC 3339 in UTC, to the second: `2025-10-13T08:05:09Z`.
pub fn rfc3339_utc(t: SystemTime) -> String {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs_f64().ceil() as i64),
    };
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// One stage file, read back.
struct Stage {
    name: String,
    time: String,
    settings: Value,
    results: Value,
}

/// A stage file that could not be read or parsed.
struct BadStage {
    name: String,
    path: PathBuf,
    why: String,
}

fn parse_stage(name: &str, text: &str) -> std::result::Result<Stage, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(mut m) = value else {
        return Err("not a JSON object".to_string());
    };
    Ok(Stage {
        name: name.to_string(),
        time: m
            .get("time")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string(),
        settings: m.remove("settings").unwrap_or(Value::Null),
        results: m.remove("results").unwrap_or(Value::Null),
    })
}

/// The stage files of `dir` in report order: known stages in pipeline order, then the others
/// alphabetically.
fn read_stages(dir: &Path) -> Result<Vec<std::result::Result<Stage, BadStage>>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(CoreError::io(dir, e)),
    };
    for entry in entries {
        let path = entry.map_err(|e| CoreError::io(dir, e))?.path();
        let file = path.file_name().unwrap_or_default().to_string_lossy();
        let Some(name) = file.strip_suffix(".json") else {
            continue;
        };
        if name.starts_with('.') || path.is_dir() {
            continue;
        }
        let name = name.to_string();
        let parsed = std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|text| parse_stage(&name, &text));
        out.push(parsed.map_err(|why| {
            tracing::warn!("report: skipping {}: {why}", path.display());
            BadStage { name, path, why }
        }));
    }
    let rank = |name: &str| {
        let pos = STAGE_ORDER.iter().position(|(s, _)| *s == name);
        (pos.unwrap_or(STAGE_ORDER.len()), name.to_string())
    };
    out.sort_by_key(|s| match s {
        Ok(s) => rank(&s.name),
        Err(b) => rank(&b.name),
    });
    Ok(out)
}

fn title(stage: &str) -> &str {
    STAGE_ORDER
        .iter()
        .find(|(s, _)| *s == stage)
        .map_or(stage, |(_, t)| t)
}

/// Writes `report/report.md` (and the loss curves) from the logged stages; the header names the
/// device the first stage's settings name (`"device"`), else `cpu`. Returns the report's path
/// (nanochat's `Report.generate`). Errors: [`CoreError::Io`] when the folder cannot be listed
/// or a file written.
pub fn generate(root: &Path) -> Result<PathBuf> {
    generate_with_device(root, None)
}

/// [`generate`] with the header's device given (`None`: as [`generate`] finds it).
pub fn generate_with_device(root: &Path, device: Option<&str>) -> Result<PathBuf> {
    let dir = report_dir(root);
    let stages = read_stages(&dir)?;
    let device = device
        .map(str::to_string)
        .or_else(|| {
            stages.iter().flatten().find_map(|s| {
                let d = s.settings.get("device")?.as_str()?;
                Some(d.to_string())
            })
        })
        .unwrap_or_else(|| "cpu".to_string());
    let mut md = String::new();
    header::header(&mut md, &device);
    if stages.is_empty() {
        let _ = writeln!(md, "_No stage has logged to `{}` yet._\n", dir.display());
    }
    for stage in &stages {
        match stage {
            Ok(stage) => section(&mut md, root, &dir, stage)?,
            Err(bad) => {
                let _ = writeln!(
                    md,
                    "## {}\n\n**Error:** could not read stage file `{}`: {}\n",
                    title(&bad.name),
                    bad.path.display(),
                    bad.why
                );
            }
        }
    }
    summary(&mut md, &stages);
    let path = dir.join("report.md");
    crate::io::write_atomic(&path, md.as_bytes())?;
    Ok(path)
}

fn section(md: &mut String, root: &Path, dir: &Path, stage: &Stage) -> Result<()> {
    let _ = writeln!(md, "## {}\n", title(&stage.name));
    let _ = writeln!(md, "Stage `{}`, logged {}.\n", stage.name, stage.time);
    md.push_str("### Settings\n\n");
    bullets(md, &stage.settings, 0);
    md.push_str("\n### Results\n\n");
    bullets(md, &stage.results, 0);
    md.push('\n');
    let ckpt = stage.settings.get("checkpoint_dir").and_then(Value::as_str);
    if let (Some(ckpt), true) = (ckpt, valid_stage(&stage.name)) {
        loss_curve(md, root, dir, stage, Path::new(ckpt))?;
    }
    Ok(())
}

/// Draws `<stage>-loss.svg` from `ckpt/metrics.jsonl` (relative folders: from the current
/// folder, else from `root`) and links it.
fn loss_curve(md: &mut String, root: &Path, dir: &Path, stage: &Stage, ckpt: &Path) -> Result<()> {
    let ckpt = if ckpt.is_relative() && !ckpt.exists() {
        root.join(ckpt)
    } else {
        ckpt.to_path_buf()
    };
    let metrics = ckpt.join("metrics.jsonl");
    let text = match std::fs::read_to_string(&metrics) {
        Ok(text) => text,
        Err(e) => {
            tracing::warn!(
                "report: no loss curve for {}: {}: {e}",
                stage.name,
                metrics.display()
            );
            let _ = writeln!(md, "_No loss curve: `{}`: {e}._\n", metrics.display());
            return Ok(());
        }
    };
    // Training stages log `loss` (and `val_bpb`); chat-rl logs `mean_reward` (and `pass_at_1`).
    let rl = !text.contains("\"loss\"") && text.contains("\"mean_reward\"");
    let (key, key2) = if rl {
        ("mean_reward", "pass_at_1")
    } else {
        ("loss", "val_bpb")
    };
    let (mut loss, mut val, mut bad) = (Vec::new(), Vec::new(), 0usize);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            bad += 1;
            continue;
        };
        let Some(step) = v.get("step").and_then(Value::as_f64) else {
            bad += 1;
            continue;
        };
        if let Some(l) = v.get(key).and_then(Value::as_f64) {
            loss.push((step, l));
        }
        if let Some(b) = v.get(key2).and_then(Value::as_f64) {
            val.push((step, b));
        }
    }
    if bad > 0 {
        tracing::warn!(
            "report: {}: {bad} unreadable lines skipped",
            metrics.display()
        );
    }
    let (what, label, label2) = if rl {
        ("reward", "mean reward", "test pass@1")
    } else {
        ("loss", "train loss", "val bpb")
    };
    let svg = svg::line_chart(
        &format!("{}: {what}", title(&stage.name)),
        "step",
        &format!("{label} / {label2}"),
        &[
            svg::Series {
                label,
                points: &loss,
                color: "#1f77b4",
                line: true,
            },
            svg::Series {
                label: label2,
                points: &val,
                color: "#d62728",
                line: false,
            },
        ],
    );
    let file = format!("{}-loss.svg", stage.name);
    crate::io::write_atomic(&dir.join(&file), svg.as_bytes())?;
    let _ = writeln!(md, "![{} {what}]({file})\n", title(&stage.name));
    let finite = |pts: &[(f64, f64)]| {
        pts.iter()
            .map(|p| p.1)
            .filter(|y| y.is_finite())
            .collect::<Vec<_>>()
    };
    let mut note = format!("{} steps logged in `{}`", loss.len(), metrics.display());
    if let Some(last) = finite(&loss).last() {
        let _ = write!(note, "; last {label} {}", fmt_float(*last));
    }
    let best = if rl { f64::max } else { f64::min };
    if let Some(b) = finite(&val).into_iter().reduce(best) {
        let _ = write!(note, "; best {label2} {}", fmt_float(b));
    }
    if bad > 0 {
        let _ = write!(note, "; {bad} unreadable lines skipped");
    }
    let _ = writeln!(md, "{note}.\n");
    Ok(())
}

/// A value as markdown bullets: objects one key a line (nested objects indented).
fn bullets(md: &mut String, v: &Value, depth: usize) {
    let pad = "  ".repeat(depth);
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                match x {
                    Value::Object(inner) if !inner.is_empty() => {
                        let _ = writeln!(md, "{pad}- {}:", one_line(k));
                        bullets(md, x, depth + 1);
                    }
                    _ => {
                        let _ = writeln!(md, "{pad}- {}: {}", one_line(k), scalar(x));
                    }
                }
            }
        }
        Value::Object(_) | Value::Null => {
            let _ = writeln!(md, "{pad}- (none)");
        }
        other => {
            let _ = writeln!(md, "{pad}- {}", scalar(other));
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => group(i),
            (None, Some(u)) => u.to_string(),
            _ => fmt_float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => one_line(s),
        Value::Array(a) => format!("[{}]", a.iter().map(scalar).collect::<Vec<_>>().join(", ")),
        Value::Object(_) => v.to_string(),
    }
}

/// An integer, with thousands separators from 10,000 on (as nanochat's report).
pub(crate) fn group(i: i64) -> String {
    let digits = i.unsigned_abs().to_string();
    if i.unsigned_abs() < 10_000 {
        return i.to_string();
    }
    let mut out = String::new();
    for (k, c) in digits.chars().enumerate() {
        if k > 0 && (digits.len() - k).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if i < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// A float with 4 decimals (scientific notation below 1e-3 and from 1e9 on).
pub(crate) fn fmt_float(f: f64) -> String {
    let a = f.abs();
    if !f.is_finite() {
        f.to_string()
    } else if a != 0.0 && !(1e-3..1e9).contains(&a) {
        format!("{f:.4e}")
    } else {
        format!("{f:.4}")
    }
}

/// A metric of a stage's results: a number, or an object's `"accuracy"`.
fn metric(results: &Value, key: &str) -> Option<f64> {
    let v = results.get(key)?;
    v.as_f64().or_else(|| v.get("accuracy")?.as_f64())
}

fn summary(md: &mut String, stages: &[std::result::Result<Stage, BadStage>]) {
    let find = |name: &str| stages.iter().flatten().find(|s| s.name == name);
    md.push_str("## Summary\n\n| Metric        |");
    for (col, _) in SUMMARY_COLUMNS {
        let _ = write!(md, " {col:<8} |");
    }
    md.push_str("\n|---------------|");
    md.push_str(&"----------|".repeat(SUMMARY_COLUMNS.len()));
    md.push('\n');
    for key in summary_metrics() {
        let _ = write!(md, "| {key:<13} |");
        for (_, sources) in SUMMARY_COLUMNS {
            let value = sources
                .iter()
                .find_map(|s| metric(&find(s)?.results, key))
                .map_or_else(|| "-".to_string(), fmt_float);
            let _ = write!(md, " {value:<8} |");
        }
        md.push('\n');
    }
    md.push('\n');
    let wall = find("speedrun").and_then(|s| {
        let w = |v: &Value| v.get("wall_s").and_then(Value::as_f64);
        w(&s.results).or_else(|| w(&s.settings))
    });
    if let Some(wall) = wall.filter(|w| w.is_finite() && *w >= 0.0) {
        let secs = wall.round() as u64;
        let _ = writeln!(
            md,
            "Total wall clock time: {}h{:02}m{:02}s\n",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        );
    }
}
