//! The evaluation runs of `nanochat chat-eval` ([`ChatEval`], nanochat's `scripts/chat_eval.py`)
//! and `nanochat base-eval` ([`CoreEval`], nanochat's `scripts/base_eval.py`): their tasks
//! loaded before any model time is spent, evaluated in order on the device's runner thread,
//! reported as [`EvalEvent`]s, and summed up in typed results that serialize to the result file
//! (`serde_json::to_value` gives the file's JSON) and give the report card's stage.
//!
//! A runner owns the loop over tasks and, through [`evaluate_task_with`] and
//! [`evaluate_core_task`], the loop over problems: a distributed evaluation shards problems
//! inside it and sums the counts before the results are built.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Serialize, Serializer};
use serde_json::json;

use super::chat::{chat_core, chat_task, evaluate_task_with, EvalOptions, TaskResult, CHAT_TASKS};
use super::core::{
    core_score, evaluate_core_task, load_core_tasks, CoreResult, CoreTask, LmScorer,
};
use super::ChatModel;
use crate::checkpoint::Phase;
use crate::tasks::{EvalData, Task};
use crate::tokenizer::Tokenizer;
use crate::{CoreError, Device, Result};

/// What an evaluation run reports while it runs, in order: per task, `Started`, then
/// `Progress` after each batch or problem, then `Finished` with its result (`R`: [`TaskResult`]
/// or [`CoreResult`]).
#[derive(Debug)]
pub enum EvalEvent<'a, R> {
    /// A task starts.
    Started {
        /// Its name (`GSM8K`, a CORE label).
        task: &'a str,
    },
    /// A batch or problem of a task is evaluated.
    Progress {
        /// The task's name.
        task: &'a str,
        /// Problems evaluated so far.
        done: usize,
        /// Problems the task evaluates.
        total: usize,
        /// Of those done, the right ones (chat tasks; `None` for CORE, which reports no
        /// running accuracy).
        correct: Option<usize>,
    },
    /// The task's result.
    Finished(&'a R),
}

/// An evaluation run's result as it is recorded: the result file (its `Serialize` form, through
/// `serde_json::to_value`) and a stage of the report card (`nanochat report`).
pub trait EvalReport: Serialize {
    /// The report card's stage.
    fn stage(&self) -> String;
    /// The stage's settings, `result_file` among them.
    fn report_settings(&self, result_file: &Path) -> serde_json::Value;
    /// The stage's results (the report card's summary rows).
    fn report_summary(&self) -> serde_json::Value;
}

/// Writes an evaluation's result as pretty JSON at `path` (its folder created, the file written
/// atomically) and returns that JSON. Errors: [`CoreError::Io`] naming the folder or the file.
pub fn write_result(path: &Path, result: &impl EvalReport) -> Result<serde_json::Value> {
    let json = serde_json::to_value(result).map_err(|e| CoreError::file(path, e))?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| CoreError::io(parent, e))?;
    }
    let text = serde_json::to_string_pretty(&json).map_err(|e| CoreError::file(path, e))?;
    crate::io::write_atomic(path, text.as_bytes())?;
    Ok(json)
}

/// The evaluation tasks' data as the result files name it: `samples` or `fetched`.
pub fn data_name(data: EvalData) -> &'static str {
    match data {
        EvalData::Samples => "samples",
        EvalData::Fetched => "fetched",
    }
}

/// `chat-eval -a`: pipe-separated task names (blanks trimmed, empty ones dropped, a name given
/// twice kept once, in first-seen order); all of [`CHAT_TASKS`] when `None`. Errors:
/// [`CoreError::InvalidArgument`] (`--task-name`) when it names none.
pub fn parse_chat_tasks(spec: Option<&str>) -> Result<Vec<String>> {
    let mut names: Vec<String> = match spec {
        Some(s) => s
            .split('|')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect(),
        None => CHAT_TASKS.iter().map(|s| s.to_string()).collect(),
    };
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    if names.is_empty() {
        return Err(CoreError::InvalidArgument {
            name: "--task-name",
            value: format!("{:?}", spec.unwrap_or_default()),
            expected: "at least one task name (pipe-separated)".into(),
        });
    }
    Ok(names)
}

/// The checkpoint a chat evaluation scored, as its result file records it.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelOrigin {
    /// The phase of its checkpoints (`-i/--source`).
    pub source: Phase,
    /// Its step.
    pub step: u64,
    /// The tag asked for (`-g`; `None`: the newest was taken).
    pub model_tag: Option<String>,
}

/// A chat evaluation with its tasks loaded (nanochat's `scripts/chat_eval.py`).
pub struct ChatEval {
    names: Vec<String>,
    tasks: Vec<Arc<dyn Task>>,
    data: EvalData,
    opts: EvalOptions,
}

impl ChatEval {
    /// Loads every task of `names` ([`chat_task`]) before any model is: a missing data set
    /// fails first. Errors: [`CoreError::Task`] (`loading task`, the name) around the task's error
    /// (e.g. [`CoreError::Missing`] naming the fetch script, [`CoreError::Unknown`]).
    pub fn load(names: Vec<String>, data: EvalData, opts: EvalOptions) -> Result<ChatEval> {
        let tasks = names
            .iter()
            .map(|n| chat_task(n, data).map_err(|e| task_error("loading task", n, e)))
            .collect::<Result<Vec<_>>>()?;
        Ok(ChatEval {
            names,
            tasks,
            data,
            opts,
        })
    }

    /// The tasks, in the order they are evaluated.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Evaluates every task in order with `model` (each on `device`'s runner thread, to itself),
    /// reporting [`EvalEvent`]s; ChatCORE only when all six [`CHAT_TASKS`] were evaluated (as
    /// nanochat). Errors: [`CoreError::Task`] (`evaluating`, the name) around the first task's
    /// error, or [`CoreError::WorkerPanicked`].
    pub fn run(
        &self,
        model: &(dyn ChatModel + Sync),
        tokenizer: &Tokenizer,
        device: &Device,
        origin: ModelOrigin,
        on_event: &mut (dyn FnMut(EvalEvent<'_, TaskResult>) + Send),
    ) -> Result<ChatEvalResult> {
        let mut results = Vec::with_capacity(self.tasks.len());
        for (name, task) in self.names.iter().zip(&self.tasks) {
            on_event(EvalEvent::Started { task: name });
            let mut r = device
                .exclusive(|| {
                    evaluate_task_with(
                        model,
                        tokenizer,
                        task.as_ref(),
                        &self.opts,
                        &mut |done, total, correct| {
                            on_event(EvalEvent::Progress {
                                task: name,
                                done,
                                total,
                                correct: Some(correct),
                            })
                        },
                    )
                })?
                .map_err(|e| task_error("evaluating", name, e))?;
            r.task = name.clone();
            on_event(EvalEvent::Finished(&r));
            results.push(r);
        }
        let all = CHAT_TASKS.iter().all(|t| self.names.iter().any(|n| n == t));
        Ok(ChatEvalResult {
            source: origin.source,
            step: origin.step,
            model_tag: origin.model_tag,
            data: data_name(self.data),
            options: self.opts.clone(),
            chat_core: all.then(|| chat_core(&results)),
            tasks: results,
        })
    }
}

/// A chat evaluation's result: its file's JSON (`serde_json::to_value`), with `tasks` an
/// object of task name -> `{accuracy, correct, total, baseline, centered}` in evaluation order.
#[derive(Clone, Debug, Serialize)]
pub struct ChatEvalResult {
    /// The phase of the evaluated checkpoints.
    pub source: Phase,
    /// The evaluated step.
    pub step: u64,
    /// The tag asked for (`null`: the newest).
    pub model_tag: Option<String>,
    /// `samples` or `fetched` ([`data_name`]).
    pub data: &'static str,
    /// The evaluation settings.
    pub options: EvalOptions,
    /// Each task's result, in evaluation order.
    #[serde(serialize_with = "task_scores")]
    pub tasks: Vec<TaskResult>,
    /// ChatCORE ([`chat_core`]) when all six [`CHAT_TASKS`] were evaluated, else `null`.
    #[serde(rename = "ChatCORE")]
    pub chat_core: Option<f64>,
}

/// Where `chat-eval` writes its result without `-o`: `<root>/eval/chat-eval-<source>.json`.
pub fn chat_eval_path(root: &Path, source: Phase) -> PathBuf {
    root.join("eval")
        .join(format!("chat-eval-{}.json", source.name()))
}

impl EvalReport for ChatEvalResult {
    /// `chat-eval-<source>`.
    fn stage(&self) -> String {
        format!("chat-eval-{}", self.source.name())
    }

    /// Source, step, data, options and the result file.
    fn report_settings(&self, result_file: &Path) -> serde_json::Value {
        json!({"source": self.source.name(), "step": self.step, "data": self.data,
            "options": self.options, "result_file": result_file})
    }

    /// Each task's accuracy, and ChatCORE when computed.
    fn report_summary(&self) -> serde_json::Value {
        let mut summary = scores(self.tasks.iter().map(|r| (&r.task, r.accuracy)));
        if let Some(c) = self.chat_core {
            summary.insert("ChatCORE".into(), json!(c));
        }
        serde_json::Value::Object(summary)
    }
}

/// One task's entry in a chat result file.
#[derive(Serialize)]
struct TaskScore {
    accuracy: f64,
    correct: usize,
    total: usize,
    baseline: f64,
    centered: f64,
}

fn task_scores<S: Serializer>(tasks: &[TaskResult], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_map(tasks.iter().map(|r| {
        let score = TaskScore {
            accuracy: r.accuracy,
            correct: r.correct,
            total: r.total,
            baseline: r.baseline,
            centered: r.centered(),
        };
        (&r.task, score)
    }))
}

/// A report summary's `{name: score}` object, in the tasks' order.
fn scores<'a>(
    rows: impl Iterator<Item = (&'a String, f64)>,
) -> serde_json::Map<String, serde_json::Value> {
    rows.map(|(name, score)| (name.clone(), json!(score)))
        .collect()
}

fn task_error(op: &'static str, task: &str, error: CoreError) -> CoreError {
    CoreError::Task {
        op,
        task: task.to_string(),
        error: Box::new(error),
    }
}

/// The model a CORE evaluation scored, as its result file records it (`model`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum CoreModelSource {
    /// A base checkpoint.
    Checkpoint {
        /// The tag asked for (`null`: the newest).
        model_tag: Option<String>,
        /// The step evaluated.
        step: u64,
    },
    /// A model in a folder.
    Folder {
        /// The folder (`--hf-path`).
        hf_path: PathBuf,
    },
}

/// A CORE evaluation with its tasks loaded (nanochat's `scripts/base_eval.py`).
pub struct CoreEval {
    tasks: Vec<CoreTask>,
    /// Where the tasks came from, as results name it (`fetched`, `samples`, `eval_bundle`).
    data: &'static str,
    max_per_task: Option<usize>,
}

impl CoreEval {
    /// Loads the CORE tasks ([`load_core_tasks`]) before any model is; each is evaluated on at
    /// most `max_per_task` items (all when `None`). Errors: [`load_core_tasks`]'.
    pub fn load(data: EvalData, max_per_task: Option<usize>) -> Result<CoreEval> {
        Ok(CoreEval {
            tasks: load_core_tasks(data)?,
            data: data_name(data),
            max_per_task,
        })
    }

    /// The CORE tasks of nanochat's eval bundle folder ([`super::bundle::load_eval_bundle`];
    /// base-eval uses `<base dir>/eval_bundle/` when it exists). Errors: that function's.
    pub fn load_bundle(dir: &std::path::Path, max_per_task: Option<usize>) -> Result<CoreEval> {
        Ok(CoreEval {
            tasks: super::bundle::load_eval_bundle(dir)?,
            data: "eval_bundle",
            max_per_task,
        })
    }

    /// Scores every task in order with `model` (prompts cropped to `max_len` tokens, the
    /// model's `block_size`; each task on `device`'s runner thread, to itself), reporting
    /// [`EvalEvent`]s, and CORE, the mean centred accuracy. Errors: [`CoreError::Task`]
    /// (`evaluating`, the label) around the first task's error, or
    /// [`CoreError::WorkerPanicked`].
    pub fn run(
        &self,
        model: &(dyn LmScorer + Sync),
        tokenizer: &Tokenizer,
        max_len: usize,
        device: &Device,
        source: CoreModelSource,
        on_event: &mut (dyn FnMut(EvalEvent<'_, CoreResult>) + Send),
    ) -> Result<CoreEvalResult> {
        let mut results = Vec::with_capacity(self.tasks.len());
        for task in &self.tasks {
            let label = task.meta.label.as_str();
            on_event(EvalEvent::Started { task: label });
            let r = device
                .exclusive(|| {
                    evaluate_core_task(
                        model,
                        tokenizer,
                        task,
                        self.max_per_task,
                        max_len,
                        &mut |done, total| {
                            on_event(EvalEvent::Progress {
                                task: label,
                                done,
                                total,
                                correct: None,
                            })
                        },
                    )
                })?
                .map_err(|e| task_error("evaluating", label, e))?;
            on_event(EvalEvent::Finished(&r));
            results.push(r);
        }
        Ok(CoreEvalResult {
            model: source,
            data: self.data,
            max_per_task: self.max_per_task,
            core: core_score(&results),
            tasks: results,
            bpb: None,
        })
    }
}

/// A CORE evaluation's result: its file's JSON (`serde_json::to_value`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CoreEvalResult {
    /// The evaluated model.
    pub model: CoreModelSource,
    /// `samples` or `fetched` ([`data_name`]).
    pub data: &'static str,
    /// Items per task (`null`: all).
    pub max_per_task: Option<usize>,
    /// Each task's result, in evaluation order.
    pub tasks: Vec<CoreResult>,
    /// CORE ([`core_score`]).
    #[serde(rename = "CORE")]
    pub core: f64,
    /// Bits per byte on the train and validation splits, when asked for (`--split-tokens`;
    /// [`crate::eval::split_bpb`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bpb: Option<crate::eval::SplitBpb>,
}

/// Where `base-eval` writes its result without `-o`: `<root>/eval/base-eval.json`.
pub fn core_eval_path(root: &Path) -> PathBuf {
    root.join("eval").join("base-eval.json")
}

impl EvalReport for CoreEvalResult {
    /// `base-eval`.
    fn stage(&self) -> String {
        "base-eval".into()
    }

    /// Model, data, items per task and the result file.
    fn report_settings(&self, result_file: &Path) -> serde_json::Value {
        json!({"model": self.model, "data": self.data, "max_per_task": self.max_per_task,
            "result_file": result_file})
    }

    /// Each task's centred accuracy, and CORE.
    fn report_summary(&self) -> serde_json::Value {
        let mut summary = scores(self.tasks.iter().map(|r| (&r.label, r.centered)));
        summary.insert("CORE".into(), json!(self.core));
        if let Some(b) = &self.bpb {
            summary.insert("train_bpb".into(), json!(b.train_bpb));
            summary.insert("val_bpb".into(), json!(b.val_bpb));
        }
        serde_json::Value::Object(summary)
    }
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
