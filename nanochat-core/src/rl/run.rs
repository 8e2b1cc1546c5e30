//! A whole `chat-rl` run, as nanochat's `scripts/chat_rl.py` main loop: the train and test
//! mixtures of the tasks with a reward ([`RlTasks`]), greedy pass@1 on the test mixture before
//! training and on schedule, the `metrics.jsonl` of rewards, the checkpoint in
//! `rl_checkpoints/<tag>/` and the run's summary ([`RlResults`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::json;

use super::{mean_reward, RlStep, RlTrainer};
use crate::checkpoint::{checkpoint_dir, save_checkpoint, Phase, SaveInfo};
use crate::engine::GenerateParams;
use crate::tasks::{task_by_name, Split, Task, TaskMixture, TaskUse};
use crate::train::MetricsLog;
use crate::Result;

/// Examples of each task in the training mixture.
const TRAIN_SIZE: usize = 2000;
/// Examples of each task in the test mixture.
const TEST_SIZE: usize = 1000;

/// The training and test mixtures of the tasks with a reward that a run names.
pub struct RlTasks {
    /// 2,000 examples of each task's train split, shuffled together.
    pub train: Arc<dyn Task>,
    /// 1,000 examples of each task's test split, shuffled together (pass@1 is measured
    /// on its first examples).
    pub test: Arc<dyn Task>,
}

impl RlTasks {
    /// The mixtures of the tasks `names` (`arithmetic`, `spelling-bee`; a name listed twice is
    /// oversampled), shuffled with `seed`: 2000 train-split examples of each for training,
    /// 1000 test-split examples of each for evaluation.
    ///
    /// Errors: [`crate::CoreError::Unknown`] (kind `reward task`) for a task without a reward,
    /// or the task's loading error (the SpellingBee word list).
    pub fn new(names: &[String], seed: u64) -> Result<RlTasks> {
        let mixture = |split, size| -> Result<Arc<dyn Task>> {
            let tasks = names
                .iter()
                .map(|n| task_by_name(n, TaskUse::Reward { split, size }))
                .collect::<Result<Vec<_>>>()?;
            Ok(Arc::new(TaskMixture::new(tasks, seed)))
        };
        Ok(RlTasks {
            train: mixture(Split::Train, TRAIN_SIZE)?,
            test: mixture(Split::Test, TEST_SIZE)?,
        })
    }
}

/// What [`RlTrainer::run`] does around the training steps: where it evaluates, what it records
/// and where it saves.
pub struct RlRun {
    /// The mixture greedy pass@1 is measured on ([`RlTasks::test`]).
    pub test: Arc<dyn Task>,
    /// The task names as given (`--tasks`), recorded in the run's JSON.
    pub tasks: Vec<String>,
    /// Greedy pass@1 every this many steps (and at the start and the end); 0: only at the
    /// start and the end.
    pub eval_every: u64,
    /// Test problems per evaluation (the first ones of [`RlRun::test`]).
    pub eval_examples: usize,
    /// The model root: the checkpoint and `metrics.jsonl` go to
    /// `root/rl_checkpoints/<model_tag>/`.
    pub root: PathBuf,
    /// The run's tag (also recorded as the source model's tag).
    pub model_tag: String,
    /// The phase of the model trained from (`sft` by default).
    pub source_phase: Phase,
    /// The step of the model trained from.
    pub source_step: u64,
    /// The tokenizer as the source checkpoint records it ([`SaveInfo::tokenizer_path`]).
    pub tokenizer_path: Option<String>,
    /// When the command started: [`RlResults::wall_s`] counts from here (model loading
    /// included).
    pub started: Instant,
}

/// What [`RlTrainer::run`] reports as it goes.
#[derive(Clone, Debug, PartialEq)]
pub enum RlEvent {
    /// Greedy pass@1 on the test mixture (step 0: before training).
    Eval {
        /// Optimizer steps done.
        step: u64,
        /// Mean reward of the greedy completions, in [0, 1].
        pass_at_1: f64,
    },
    /// An optimizer step was taken (after its evaluation, if any, and its metrics line).
    Step(RlStep),
    /// The checkpoint of the last step was saved in `dir`.
    Saved {
        /// The step saved.
        step: u64,
        /// `root/rl_checkpoints/<tag>/`.
        dir: PathBuf,
    },
}

impl RlEvent {
    /// The line a display shows for an evaluation (`None` for a step or the checkpoint);
    /// `start` (the run's description) begins the first one.
    pub fn line(&self, start: &str) -> Option<String> {
        match self {
            RlEvent::Eval { step: 0, pass_at_1 } => {
                Some(format!("{start}, test pass@1 {pass_at_1:.4}"))
            }
            RlEvent::Eval { step, pass_at_1 } => {
                Some(format!("step {step}: test pass@1 {pass_at_1:.4}"))
            }
            _ => None,
        }
    }
}

impl RlOutcome {
    /// What `chat-rl` prints (phase, tag, checkpoint folder, results) and its report stage
    /// (settings, results), as `(printed, settings, results)`.
    pub fn summary(&self, tag: &str) -> (serde_json::Value, serde_json::Value, serde_json::Value) {
        let (dir, results) = (&self.checkpoint_dir, serde_json::json!(self.results));
        (
            serde_json::json!({"phase": "rl", "model_tag": tag, "checkpoint_dir": dir, "results": results}),
            serde_json::json!({"checkpoint_dir": dir, "run": self.run}),
            results,
        )
    }
}

/// The numbers of a run, as `chat-rl` prints them and records them in the report (keys in
/// this order once serialized through `serde_json::Value`, which sorts them).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RlResults {
    /// Optimizer steps done.
    pub steps: u64,
    /// Greedy pass@1 on the test mixture before training.
    pub pass_at_1_start: f64,
    /// Greedy pass@1 at the last evaluation (the end).
    pub pass_at_1_end: f64,
    /// Mean training reward of the first (up to) 5 steps.
    pub mean_reward_first: f64,
    /// Mean training reward of the last (up to) 5 steps.
    pub mean_reward_last: f64,
    /// Seconds since [`RlRun::started`].
    pub wall_s: f64,
}

/// What [`RlTrainer::run`] returns.
#[derive(Clone, Debug)]
pub struct RlOutcome {
    /// The run's numbers.
    pub results: RlResults,
    /// Where the checkpoint and `metrics.jsonl` are: `root/rl_checkpoints/<tag>/`.
    pub checkpoint_dir: PathBuf,
    /// The run as the checkpoint's meta records it: `command`, `source` (phase, tag, step),
    /// `tasks` and `config` (the [`super::RlConfig`]).
    pub run: serde_json::Value,
}

/// One line of `metrics.jsonl`: the step's statistics and, when measured, pass@1.
#[derive(Serialize)]
struct MetricsLine<'a> {
    #[serde(flatten)]
    step: &'a RlStep,
    #[serde(skip_serializing_if = "Option::is_none")]
    pass_at_1: Option<f64>,
}

impl RlTrainer {
    /// Greedy pass@1 on the first `run.eval_examples` problems of `run.test` (one sample each,
    /// temperature 0, seed `i` for problem `i`), holding the device.
    fn pass_at_1(&self, run: &RlRun) -> Result<f64> {
        let greedy = GenerateParams {
            num_samples: 1,
            max_tokens: self.cfg.max_new_tokens,
            temperature: 0.0,
            top_k: None,
            seed: Some(0),
        };
        let device = self.engine.model().get_device().clone();
        device.exclusive(|| {
            mean_reward(&self.engine, run.test.as_ref(), run.eval_examples, &greedy)
        })?
    }

    /// Trains to `total_steps` as `chat_rl.py` does: greedy pass@1 on the test mixture first,
    /// then each step, pass@1 again every `eval_every` steps and after the last, one
    /// `metrics.jsonl` line per step (`step`, `mean_reward`, `mean_tokens`, `lr_multiplier`,
    /// and `pass_at_1` when measured), and the checkpoint of the last step (no optimizer
    /// state). Reports through `on_event`.
    ///
    /// Errors: a failed step, evaluation, metrics write or save.
    pub fn run(&mut self, run: &RlRun, on_event: &mut dyn FnMut(&RlEvent)) -> Result<RlOutcome> {
        let pass_start = self.pass_at_1(run)?;
        on_event(&RlEvent::Eval {
            step: self.step,
            pass_at_1: pass_start,
        });
        crate::checkpoint::validate_tag(&run.model_tag)?;
        let dir = checkpoint_dir(&run.root, Phase::Rl, &run.model_tag);
        // Rank 0 writes (the folder locked first: one writer); the others only compute.
        let main = crate::dist::world().is_main();
        let (_lock, metrics) = if main {
            (
                Some(crate::dist::lock::acquire_fresh_noting(&dir)?.lock),
                Some(MetricsLog::open(&dir, 0)?),
            )
        } else {
            (None, None)
        };
        let mut pass_end = pass_start;
        let mut rewards = Vec::new();
        let total = self.cfg.total_steps;
        while self.step < total {
            let s = self.train_step()?;
            rewards.push(s.mean_reward);
            let mut line = MetricsLine {
                step: &s,
                pass_at_1: None,
            };
            if self.step == total
                || (run.eval_every > 0 && self.step.is_multiple_of(run.eval_every))
            {
                pass_end = self.pass_at_1(run)?;
                line.pass_at_1 = Some(pass_end);
                on_event(&RlEvent::Eval {
                    step: self.step,
                    pass_at_1: pass_end,
                });
            }
            if let Some(m) = &metrics {
                m.append_json(&serde_json::to_value(&line).expect("metrics serialise"))?;
            }
            on_event(&RlEvent::Step(s.clone()));
        }
        let run_json = json!({
            "command": "chat-rl",
            "source": {"phase": run.source_phase.name(), "tag": run.model_tag, "step": run.source_step},
            "tasks": run.tasks,
            "config": self.cfg,
        });
        if main {
            save_checkpoint(
                &dir,
                Phase::Rl,
                self.step,
                self.engine.model(),
                None,
                SaveInfo {
                    tokenizer_path: run.tokenizer_path.clone(),
                    tokenizer_sha256: Some(self.engine.tokenizer().fingerprint()?),
                    run: run_json.clone(),
                    world_size: crate::dist::world().world_size(),
                    ..SaveInfo::default()
                },
            )?;
            on_event(&RlEvent::Saved {
                step: self.step,
                dir: dir.clone(),
            });
        }
        let k = rewards.len().clamp(1, 5);
        Ok(RlOutcome {
            results: RlResults {
                steps: self.step,
                pass_at_1_start: pass_start,
                pass_at_1_end: pass_end,
                mean_reward_first: rewards.iter().take(k).sum::<f64>() / k as f64,
                mean_reward_last: rewards.iter().rev().take(k).sum::<f64>() / k as f64,
                wall_s: run.started.elapsed().as_secs_f64(),
            },
            checkpoint_dir: dir,
            run: run_json,
        })
    }
}
