//! `metrics.jsonl` beside the checkpoints: one JSON object per optimizer step (step, loss,
//! learning-rate multiplier, tokens/s, MFU, rows without a supervised token, and val bpb when
//! measured), appended and flushed as training goes, for the report card's loss curves.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::{CoreError, Result};

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, Serialize)]
pub struct StepMetrics {
    /// Optimizer step this line reports (1-based: the step just taken).
    pub step: u64,
    /// Mean training loss (nats per supervised token) over the step's non-empty micro-batches;
    /// `null` when the step was skipped.
    pub loss: Option<f64>,
    /// Learning-rate multiplier of the schedule at this step (nanochat's `lrm`).
    pub lr_multiplier: f64,
    /// Training throughput of the step, in tokens per second of wall time.
    pub tokens_per_s: f64,
    /// Model FLOPs utilisation of the step, as a fraction of the device's peak (nanochat's `mfu`, in
    /// percent there).
    pub mfu: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Validation bits per byte, on the steps that evaluated it.
    pub val_bpb: Option<f64>,
    /// Rows of the step whose targets were all -1: they added no loss and no gradient.
    pub masked_rows: u64,
    /// Present (true) when no micro-batch of the step had a supervised target: no optimizer
    /// update was made.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
    /// The L2 norm of the step's gradient over all ranks, before clipping (nanochat v1's
    /// `grad_norm`); absent when the step was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
}

/// The `metrics.jsonl` file of a checkpoint folder: one JSON object per step, appended (the
/// same numbers nanochat logs to wandb in `scripts/base_train.py`).
pub struct MetricsLog {
    path: PathBuf,
}

impl MetricsLog {
    /// Opens `dir/metrics.jsonl`, dropping lines of steps after `keep_up_to` (a resumed run redoes
    /// them).
    pub fn open(dir: &Path, keep_up_to: u64) -> Result<MetricsLog> {
        let path = dir.join("metrics.jsonl");
        std::fs::create_dir_all(dir).map_err(|e| CoreError::io(dir, e))?;
        if let Ok(text) = std::fs::read_to_string(&path) {
            let kept: String = text
                .lines()
                .filter(|l| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .ok()
                        .and_then(|v| v["step"].as_u64())
                        .is_some_and(|s| s <= keep_up_to)
                })
                .map(|l| format!("{l}\n"))
                .collect();
            crate::io::write_atomic(&path, kept.as_bytes())?;
        }
        Ok(MetricsLog { path })
    }

    /// Appends one step's line; [`CoreError::Io`](crate::CoreError::Io) naming the file on failure.
    pub fn append(&self, m: &StepMetrics) -> Result<()> {
        self.append_json(&serde_json::to_value(m).expect("metrics serialise"))
    }

    /// Appends any JSON object with a `step` (e.g. chat-rl's rewards).
    pub fn append_json(&self, line: &serde_json::Value) -> Result<()> {
        let err = |e: std::io::Error| CoreError::io(&self.path, e);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(err)?;
        writeln!(f, "{line}").map_err(err)
    }

    /// The file's path (`<checkpoint dir>/metrics.jsonl`).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What a run's steps add up to ([`super::Trainer::run`]'s events, for its summary), and the
/// warnings a display shows about rows without a supervised token: every skipped step, the
/// first step that has some, and the total at the end.
#[derive(Clone, Debug, Default)]
pub struct RunTally {
    tokens_per_s: Vec<f64>,
    masked_rows: u64,
    masked_steps: u64,
}

impl RunTally {
    /// Counts step `m`; returns the warning to show about it, if any.
    pub fn observe(&mut self, m: &StepMetrics) -> Option<String> {
        // The first step includes JIT compilation: leave it out of the mean.
        if m.step > 1 {
            self.tokens_per_s.push(m.tokens_per_s);
        }
        if m.masked_rows == 0 {
            return None;
        }
        let warning = if m.skipped {
            Some(format!(
                "warning: step {}: skipped: no supervised token in its {} row(s) (all targets masked)",
                m.step, m.masked_rows
            ))
        } else {
            (self.masked_steps == 0).then(|| format!(
                "warning: step {}: {} row(s) without a supervised token (all targets masked: a prompt longer than the row, or no assistant tokens); they add no loss and no gradient (`masked_rows` in metrics.jsonl)",
                m.step, m.masked_rows
            ))
        };
        self.masked_rows += m.masked_rows;
        self.masked_steps += 1;
        warning
    }

    /// The warning at the end of a run with rows left out of training.
    pub fn final_warning(&self) -> Option<String> {
        (self.masked_rows > 0).then(|| {
            format!(
                "warning: {} row(s) in {} step(s) had no supervised token and were left out of training",
                self.masked_rows, self.masked_steps
            )
        })
    }

    /// The run's outcome: its last validation bpb, these counts and `wall_s` seconds.
    pub fn outcome(&self, val_bpb: Option<f64>, wall_s: f64) -> super::RunOutcome {
        super::RunOutcome {
            val_bpb,
            mean_tokens_per_s: (!self.tokens_per_s.is_empty())
                .then(|| self.tokens_per_s.iter().sum::<f64>() / self.tokens_per_s.len() as f64),
            masked_rows: self.masked_rows,
            wall_s,
        }
    }
}
