//! The training progress display: an indicatif bar with loss, tokens/s and MFU, and a line per
//! evaluation, sample and checkpoint (all on stderr; stdout is for the JSON summary).

use indicatif::{ProgressBar, ProgressStyle};
use nanochat_core::train::Event;

pub struct TrainProgress {
    bar: Option<ProgressBar>,
    tokens_per_s: Vec<f64>,
}

impl TrainProgress {
    pub fn new(total: u64, start: u64, quiet: bool) -> TrainProgress {
        let bar = (!quiet).then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template("[{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
                    .expect("valid template"),
            );
            bar.set_position(start);
            bar
        });
        TrainProgress {
            bar,
            tokens_per_s: Vec::new(),
        }
    }

    fn line(&self, s: String) {
        // A hidden bar (stderr is not a terminal) drops `println`: write the line directly then.
        match &self.bar {
            Some(b) if !b.is_hidden() => b.println(s),
            _ => eprintln!("{s}"),
        }
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
