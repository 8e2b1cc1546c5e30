//! Progress displays on stderr (stdout is for the JSON summary): [`bar`] and [`line`] for every
//! command, and the training display ([`TrainProgress`]): a bar with loss, tokens/s and MFU, and
//! a line per evaluation, sample and checkpoint.

use indicatif::{ProgressBar, ProgressStyle};
use nanochat_core::train::Event;

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

pub struct TrainProgress {
    bar: Option<ProgressBar>,
    tokens_per_s: Vec<f64>,
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
                if let Some(b) = &self.bar {
                    b.set_position(m.step);
                    b.set_message(format!(
                        "loss {:.4} | {:.0} tok/s | MFU {:.1}%",
                        m.loss,
                        m.tokens_per_s,
                        100.0 * m.mfu
                    ));
                }
            }
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

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish();
        }
    }

    pub fn mean_tokens_per_s(&self) -> Option<f64> {
        (!self.tokens_per_s.is_empty())
            .then(|| self.tokens_per_s.iter().sum::<f64>() / self.tokens_per_s.len() as f64)
    }
}
