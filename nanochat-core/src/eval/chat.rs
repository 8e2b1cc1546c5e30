//! Chat evaluation: one task at a time ([`evaluate_task_with`]), the named tasks of
//! `nanochat chat-eval` ([`chat_task`]) and ChatCORE ([`chat_core`]).

use std::sync::Arc;

use serde::Serialize;

use super::{single_token, ChatModel};
use crate::engine::GenerateParams;
use crate::tasks::{task_by_name, EvalData, EvalType, Task, TaskUse};
use crate::tokenizer::Tokenizer;
use crate::{CoreError, Result};

pub use crate::tasks::{CHAT_TASKS, SPELLING_BEE_SIZE};

/// A task by its `chat-eval` name ([`CHAT_TASKS`]): [`task_by_name`] with [`TaskUse::Eval`].
/// Errors: [`CoreError::Unknown`] listing the names, or the data's loading error.
pub fn chat_task(name: &str, data: EvalData) -> Result<Arc<dyn Task>> {
    task_by_name(name, TaskUse::Eval(data))
}

/// How tasks are evaluated (nanochat's chat_eval defaults).
#[derive(Clone, Debug, Serialize)]
pub struct EvalOptions {
    /// Sampling temperature of generative tasks (0: greedy).
    pub temperature: f32,
    /// Sample only from the k most likely tokens (`None`: all).
    pub top_k: Option<usize>,
    /// Completions per generative problem; a problem passes when any does (pass@k).
    pub num_samples: usize,
    /// Most tokens per completion.
    pub max_new_tokens: usize,
    /// Prompts per forward in categorical tasks.
    pub batch_size: usize,
    /// Evaluate only the first N examples.
    pub max_problems: Option<usize>,
    /// Problem `i` samples with seed `seed + i`.
    pub seed: u64,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            temperature: 0.0,
            top_k: Some(50),
            num_samples: 1,
            max_new_tokens: 512,
            batch_size: 8,
            max_problems: None,
            seed: 42,
        }
    }
}

/// One task's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskResult {
    /// Task name as given (e.g. `GSM8K`).
    pub task: String,
    /// Problems passed.
    pub correct: usize,
    /// Problems evaluated.
    pub total: usize,
    /// `correct / total`, 0..=1.
    pub accuracy: f64,
    /// The accuracy of guessing: the mean 1 / (number of choices) of a categorical task's
    /// examples (0.25 for 4-way multiple choice), 0 for a generative one.
    pub baseline: f64,
}

impl TaskResult {
    /// (accuracy - baseline) / (1 - baseline): 0 at chance, 1 when all correct.
    pub fn centered(&self) -> f64 {
        if self.baseline >= 1.0 {
            return 0.0;
        }
        (self.accuracy - self.baseline) / (1.0 - self.baseline)
    }
}

/// ChatCORE: the mean centred accuracy of the results (nanochat's chat_eval summary).
pub fn chat_core(results: &[TaskResult]) -> f64 {
    if results.is_empty() {
        return 0.0;
    }
    results.iter().map(TaskResult::centered).sum::<f64>() / results.len() as f64
}

/// The accuracy of `model` on `task` with the default [`EvalOptions`].
pub fn evaluate_task(model: &dyn ChatModel, tokenizer: &Tokenizer, task: &dyn Task) -> Result<f64> {
    Ok(evaluate_task_with(
        model,
        tokenizer,
        task,
        &EvalOptions::default(),
        &mut |_, _, _| {},
    )?
    .accuracy)
}

/// Evaluates `task` (its first `max_problems` examples), calling `progress(done, total,
/// correct)` after each batch or problem.
pub fn evaluate_task_with(
    model: &dyn ChatModel,
    tokenizer: &Tokenizer,
    task: &dyn Task,
    opts: &EvalOptions,
    progress: &mut dyn FnMut(usize, usize, usize),
) -> Result<TaskResult> {
    let total = opts
        .max_problems
        .map_or(task.num_examples(), |m| m.min(task.num_examples()));
    if total == 0 {
        return Err(CoreError::no_data(
            "examples to evaluate",
            format!("task {}", task.name()),
        ));
    }
    let run = Run(model, tokenizer, task, total, opts);
    let (correct, baseline) = match task.eval_type() {
        EvalType::Categorical => categorical(run, progress)?,
        EvalType::Generative => (generative(run, progress)?, 0.0),
    };
    Ok(TaskResult {
        task: task.name(),
        correct,
        total,
        accuracy: correct as f64 / total as f64,
        baseline,
    })
}

/// What one task's evaluation runs on: the model, its tokenizer, the task, how many of its
/// examples (from the first) and the options.
#[derive(Clone, Copy)]
struct Run<'a>(
    &'a dyn ChatModel,
    &'a Tokenizer,
    &'a dyn Task,
    usize,
    &'a EvalOptions,
);

/// Argmax over the letters' logits at the answer position, checked by the task. Returns the
/// number correct and the mean chance accuracy.
fn categorical(
    run: Run<'_>,
    progress: &mut dyn FnMut(usize, usize, usize),
) -> Result<(usize, f64)> {
    let Run(model, tokenizer, task, total, opts) = run;
    let (mut correct, mut chance) = (0, 0.0);
    let batch = opts.batch_size.max(1);
    // Across ranks, whole batches are shared out (batch b to rank b % world), so every batch is
    // the one-process batch and its answers the same; the counts are summed after.
    let dist = crate::dist::world();
    let (rank, world) = (dist.rank(), dist.world_size());
    for (b, start) in (0..total).step_by(batch).enumerate() {
        let end = (start + batch).min(total);
        if b % world != rank {
            // The chance accuracy is every problem's: counted here, on every rank.
            for i in start..end {
                let n = task.choice_letters(i).len();
                chance += 1.0 / n.max(1) as f64;
            }
            continue;
        }
        let mut convs = Vec::new();
        let mut prompts = Vec::new();
        let mut letters = Vec::new();
        let mut candidates = Vec::new();
        for i in start..end {
            let conv = task.get_example(i)?;
            let ls = task.choice_letters(i);
            if ls.is_empty() {
                return Err(CoreError::no_data(
                    "answer letters",
                    format!("example {i} of categorical task {}", task.name()),
                ));
            }
            candidates.push(
                ls.iter()
                    .map(|l| single_token(tokenizer, l))
                    .collect::<Result<Vec<u32>>>()?,
            );
            prompts.push(tokenizer.render_for_completion(&conv)?);
            chance += 1.0 / ls.len() as f64;
            letters.push(ls);
            convs.push(conv);
        }
        let logits = model.candidate_logits(&prompts, &candidates)?;
        for (((conv, ls), row), i) in convs.iter().zip(&letters).zip(&logits).zip(start..end) {
            let best = super::argmax(row).ok_or_else(|| CoreError::Internal {
                op: "categorical evaluation",
                why: "the model returned no candidate logits".into(),
            })?;
            correct += task.evaluate_example(i, conv, &ls[best]) as usize;
        }
        progress(end, total, correct);
    }
    let correct = sum_counts(&dist, &[correct])?[0];
    Ok((correct, chance / total as f64))
}

/// `counts` summed over the ranks of `dist` (exact: integers in f64); themselves in one process.
pub(crate) fn sum_counts(dist: &crate::dist::Dist, counts: &[usize]) -> Result<Vec<usize>> {
    if !dist.is_distributed() {
        return Ok(counts.to_vec());
    }
    let mut v: Vec<f64> = counts.iter().map(|&c| c as f64).collect();
    dist.all_reduce_f64(&mut v, crate::dist::ReduceOp::Sum)?;
    Ok(v.iter().map(|&c| c as usize).collect())
}

/// `num_samples` completions per problem; a problem is solved when any of them is correct.
fn generative(run: Run<'_>, progress: &mut dyn FnMut(usize, usize, usize)) -> Result<usize> {
    let Run(model, tokenizer, task, total, opts) = run;
    let mut correct = 0;
    // Across ranks, problem i goes to rank i % world (its samples are seeded by i, so its
    // answers do not depend on who computes them); the counts are summed after.
    let dist = crate::dist::world();
    let (rank, world) = (dist.rank(), dist.world_size());
    for i in (0..total).filter(|i| i % world == rank) {
        let conv = task.get_example(i)?;
        let prompt = tokenizer.render_for_completion(&conv)?;
        let params = GenerateParams {
            num_samples: opts.num_samples.max(1),
            max_tokens: opts.max_new_tokens,
            temperature: opts.temperature,
            top_k: opts.top_k,
            seed: Some(opts.seed.wrapping_add(i as u64)),
        };
        let completions = model.complete(&prompt, &params)?;
        correct += completions
            .iter()
            .any(|c| task.evaluate_example(i, &conv, c)) as usize;
        progress(i + 1, total, correct);
    }
    Ok(sum_counts(&dist, &[correct])?[0])
}
