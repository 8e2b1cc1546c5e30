//! Progress displays on stderr (stdout is for the JSON summary): [`bar`] and [`line()`] for every
//! command, and the training display ([`TrainProgress`]): a bar with loss, tokens/s and MFU, and
//! a line per evaluation, sample and checkpoint, and warnings about rows without a supervised
//! token (the first step that has some, every skipped step, and the total at the end).

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use nanochat_core::eval::EvalEvent;
use nanochat_core::train::{Event, RunOutcome, StepMetrics, Trainer};

/// The bar of a long-running command (`None` with `--quiet`): `template` is indicatif's
/// (e.g. `"[{elapsed_precise}] {bar:30} {pos}/{len} {msg}"`), `prefix` fills `{prefix}`.
pub fn bar(quiet: bool, total: u64, template: &str, prefix: &str) -> Option<ProgressBar> {
    (!quiet).then(|| {
        let bar = ProgressBar::new(total);
        bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
        bar.set_prefix(prefix.to_string());
        bar
    })
}

/// The display of an evaluation run fed by its events: a bar per task (none with `quiet`) with
/// `template` (`{prefix}`: the task; `{msg}`: the running accuracy, when the task reports one),
/// cleared when the task finishes and replaced by `line(result)` on stderr.
pub fn eval_bars<R>(
    quiet: bool,
    template: &'static str,
    line: impl Fn(&R) -> String + Send,
) -> impl FnMut(EvalEvent<'_, R>) + Send {
    let mut current: Option<ProgressBar> = None;
    move |e: EvalEvent<'_, R>| match e {
        EvalEvent::Started { task } => current = bar(quiet, 0, template, task),
        EvalEvent::Progress {
            done,
            total,
            correct,
            ..
        } => {
            if let Some(b) = &current {
                b.set_length(total as u64);
                b.set_position(done as u64);
                if let Some(c) = correct {
                    b.set_message(format!("{:.2}%", 100.0 * c as f64 / done.max(1) as f64));
                }
            }
        }
        EvalEvent::Finished(r) => {
            if let Some(b) = current.take() {
                b.finish_and_clear();
            }
            eprintln!("{}", line(r));
        }
    }
}

/// A line above the bar. A hidden bar (stderr is not a terminal) drops `println`: the line is
/// written directly then.
pub fn line(bar: &Option<ProgressBar>, s: String) {
    match bar {
        Some(b) if !b.is_hidden() => b.println(s),
        _ => eprintln!("{s}"),
    }
}

/// The training bar's template.
pub const STEPS: &str = "[{elapsed_precise}] {bar:30} {pos}/{len} {msg}";

/// Runs `trainer` to its last step behind the training display ([`TrainProgress`]) and returns
/// what it measured; `wall_s` counts from `started` (the command's start).
pub fn train(trainer: &mut Trainer, quiet: bool, started: Instant) -> anyhow::Result<RunOutcome> {
    let mut progress = TrainProgress::new(trainer.cfg.total_steps, trainer.step, quiet);
    let val_bpb = trainer.run(&mut |e| progress.event(e))?;
    progress.finish();
    Ok(RunOutcome {
        val_bpb,
        mean_tokens_per_s: progress.mean_tokens_per_s(),
        masked_rows: progress.masked_rows(),
        wall_s: started.elapsed().as_secs_f64(),
    })
}

pub struct TrainProgress {
    bar: Option<ProgressBar>,
    tokens_per_s: Vec<f64>,
    /// Rows without a supervised token, and the steps that had any, so far.
    masked_rows: u64,
    masked_steps: u64,
}

impl TrainProgress {
    pub fn new(total: u64, start: u64, quiet: bool) -> TrainProgress {
        let bar = bar(quiet, total, STEPS, "");
        if let Some(b) = &bar {
            b.set_position(start);
        }
        TrainProgress {
            bar,
            tokens_per_s: Vec::new(),
            masked_rows: 0,
            masked_steps: 0,
        }
    }

    fn line(&self, s: String) {
        line(&self.bar, s)
    }

    pub fn event(&mut self, e: &Event) {
        match e {
            Event::Step(m) => {
                // The first step includes JIT compilation: leave it out of the mean.
                if m.step > 1 {
                    self.tokens_per_s.push(m.tokens_per_s);
                }
                self.masked(m);
                if let Some(b) = &self.bar {
                    b.set_position(m.step);
                    let loss = m.loss.map_or("-".into(), |l| format!("{l:.4}"));
                    b.set_message(format!(
                        "loss {loss} | {:.0} tok/s | MFU {:.1}%",
                        m.tokens_per_s,
                        100.0 * m.mfu
                    ));
                }
            }
            Event::Eval { step, val_bpb } if val_bpb.is_nan() => self.line(format!(
                "warning: step {step}: no val bpb: no validation row has a supervised token of text"
            )),
            Event::Eval { step, val_bpb } => {
                self.line(format!("step {step}: val bpb {val_bpb:.4}"))
            }
            Event::Sample {
                prompt, completion, ..
            } => self.line(format!("  {prompt:?} -> {completion:?}")),
            Event::Saved { step, dir } => self.line(format!(
                "step {step}: checkpoint saved in {}",
                dir.display()
            )),
        }
    }

    /// Warns about a step's rows without a supervised token: the first step that has some,
    /// and every skipped step (the rest are summed up by [`TrainProgress::finish`]).
    fn masked(&mut self, m: &StepMetrics) {
        if m.masked_rows == 0 {
            return;
        }
        if m.skipped {
            self.line(format!(
                "warning: step {}: skipped: no supervised token in its {} row(s) (all targets masked)",
                m.step, m.masked_rows
            ));
        } else if self.masked_steps == 0 {
            self.line(format!(
                "warning: step {}: {} row(s) without a supervised token (all targets masked: a prompt longer than the row, or no assistant tokens); they add no loss and no gradient (`masked_rows` in metrics.jsonl)",
                m.step, m.masked_rows
            ));
        }
        self.masked_rows += m.masked_rows;
        self.masked_steps += 1;
    }

    /// Ends the bar; warns with the total of rows without a supervised token.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish();
        }
        if self.masked_rows > 0 {
            self.line(format!(
                "warning: {} row(s) in {} step(s) had no supervised token and were left out of training",
                self.masked_rows, self.masked_steps
            ));
        }
    }

    /// Rows without a supervised token seen so far.
    pub fn masked_rows(&self) -> u64 {
        self.masked_rows
    }

    pub fn mean_tokens_per_s(&self) -> Option<f64> {
        (!self.tokens_per_s.is_empty())
            .then(|| self.tokens_per_s.iter().sum::<f64>() / self.tokens_per_s.len() as f64)
    }
}
