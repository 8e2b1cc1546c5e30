//! Progress displays on stderr (stdout is for the JSON summary): [`bar`] and [`line()`] for every
//! command, the evaluation bars ([`eval_bars`]) and the training display ([`train`]).

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use nanochat_core::eval::EvalEvent;
use nanochat_core::train::{Event, RunOutcome, RunTally, Trainer};

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

/// Runs `trainer` to its last step behind the training display (a bar with loss, tokens/s and
/// MFU; [`Event::line`]s and [`RunTally`]'s warnings above it) and returns what it measured;
/// `wall_s` counts from `started` (the command's start).
pub fn train(trainer: &mut Trainer, quiet: bool, started: Instant) -> anyhow::Result<RunOutcome> {
    let bar = bar(quiet, trainer.cfg.total_steps, STEPS, "");
    if let Some(b) = &bar {
        b.set_position(trainer.step);
    }
    let mut tally = RunTally::default();
    let val_bpb = trainer.run(&mut |e| {
        if let Event::Step(m) = e {
            if let Some(w) = tally.observe(m) {
                line(&bar, w);
            }
            if let Some(b) = &bar {
                b.set_position(m.step);
                let loss = m.loss.map_or("-".into(), |l| format!("{l:.4}"));
                let mfu = 100.0 * m.mfu;
                b.set_message(format!(
                    "loss {loss} | {:.0} tok/s | MFU {mfu:.1}%",
                    m.tokens_per_s
                ));
            }
        }
        if let Some(l) = e.line() {
            line(&bar, l);
        }
    })?;
    if let Some(b) = &bar {
        b.finish();
    }
    if let Some(w) = tally.final_warning() {
        line(&bar, w);
    }
    Ok(tally.outcome(val_bpb, started.elapsed().as_secs_f64()))
}
