//! Tasks: sources of conversations for training (and, later, evaluation), nanochat's task
//! framework. A [`Task`] has examples (conversations), an evaluation type, and a check of a
//! completion; tasks compose by slicing ([`TaskSlice`]), shuffled mixing ([`TaskMixture`], where
//! a task listed twice is oversampled) and concatenation ([`TaskSequence`]).
//!
//! Training tasks: chat conversations (chitchat, chatterbot), [`CustomJson`] (one conversation
//! per JSONL line, e.g. the identity set), [`SpellingBee`] and [`SimpleSpelling`] (synthetic from
//! a word list), and [`Arithmetic`] (synthetic word problems answered with the calculator tool).
//!
//! Every use finds tasks by name in one registry, [`task_by_name`] with a [`TaskUse`]
//! (training, reward, evaluation).

mod arithmetic;
mod conversations;
pub mod eval_data;
mod gsm8k;
mod humaneval;
mod multiple_choice;
mod registry;
mod spelling;

use std::sync::Arc;

pub use arithmetic::Arithmetic;
pub use conversations::{data_dir, CustomJson};
pub use eval_data::EvalData;
pub use gsm8k::{Gsm8k, Gsm8kItem};
pub use humaneval::{HumanEval, HumanEvalProblem};
pub use multiple_choice::{render_mc, McItem, MultipleChoice, LETTERS};
pub use registry::{task_by_name, training_task, TaskUse, CHAT_TASKS, SPELLING_BEE_SIZE};
pub use spelling::{SimpleSpelling, SpellingBee, Split};

use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::tokenizer::chat::{Content, Conversation, PartKind};
use crate::{CoreError, Result};

/// How a task's answers are judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalType {
    /// The model writes an answer that is checked.
    Generative,
    /// The model picks among given choices.
    Categorical,
}

/// A set of conversations a model trains on or is evaluated on (nanochat's `tasks/common.py`
/// `Task`): indexed examples, and a judge of completions.
pub trait Task: Send + Sync {
    /// The task's name, as reported (e.g. `GSM8K`).
    fn name(&self) -> String;
    /// Whether answers are generated or picked among choices. Generative unless overridden: a
    /// categorical task overrides it and [`Task::choice_letters`].
    fn eval_type(&self) -> EvalType {
        EvalType::Generative
    }
    /// Number of examples (`len(task)` in nanochat).
    fn num_examples(&self) -> usize;
    /// The `i`-th conversation (the last message is the reference answer).
    fn get_example(&self, i: usize) -> Result<Conversation>;
    /// Whether `completion` answers the example `conversation` correctly.
    fn evaluate(&self, conversation: &Conversation, completion: &str) -> bool;
    /// Whether `completion` answers example `i` (which is `conversation`) correctly: what
    /// evaluation calls, so that composite tasks can hand the check to the task the example
    /// came from.
    fn evaluate_example(&self, _i: usize, conversation: &Conversation, completion: &str) -> bool {
        self.evaluate(conversation, completion)
    }
    /// The reward of a completion of example `i`: [`Task::reward`], or for composite tasks the
    /// reward of the task the example came from.
    fn reward_example(&self, _i: usize, conversation: &Conversation, completion: &str) -> f64 {
        self.reward(conversation, completion)
    }
    /// The answer letters of example `i` of a categorical task (`A`, `B`, ...), whose logits
    /// are compared at the answer position; empty for a generative task.
    fn choice_letters(&self, _i: usize) -> Vec<String> {
        Vec::new()
    }
    /// The reinforcement-learning reward of a completion (1 when correct by default).
    fn reward(&self, conversation: &Conversation, completion: &str) -> f64 {
        if self.evaluate(conversation, completion) {
            1.0
        } else {
            0.0
        }
    }
}

/// Item `i` of a task's list, or [`CoreError::OutOfRange`] naming the task and its size.
pub(crate) fn example_item<'a, T>(items: &'a [T], i: usize, task: &str) -> Result<&'a T> {
    items
        .get(i)
        .ok_or_else(|| example_out_of_range(task, i, items.len()))
}

/// [`CoreError::OutOfRange`]: example `i` of a task of `len` examples.
pub(crate) fn example_out_of_range(task: &str, i: usize, len: usize) -> CoreError {
    CoreError::OutOfRange {
        what: format!("examples of {task}"),
        index: i,
        len,
    }
}

/// The text of a message's content: the string, or its parts' texts concatenated.
pub fn content_text(content: &Content) -> String {
    match content {
        Content::Text(t) => t.clone(),
        Content::Parts(parts) => parts
            .iter()
            .filter(|p| p.kind != PartKind::PythonOutput)
            .map(|p| p.text.as_str())
            .collect(),
    }
}

/// The answer after `####` in a text (commas removed), as GSM8K-style tasks write it.
pub fn final_answer(text: &str) -> Option<String> {
    let after = text.rsplit_once("####")?.1;
    let ans: String = after
        .split_whitespace()
        .next()?
        .chars()
        .filter(|&c| c != ',')
        .collect();
    let ans = ans.trim_end_matches('.').to_string();
    (!ans.is_empty()).then_some(ans)
}

/// Whether `completion`'s answer after `####` equals that of the conversation's last message
/// (the reference answer): the check of every GSM8K-style task.
pub fn final_answers_match(conversation: &Conversation, completion: &str) -> bool {
    let reference = conversation
        .messages
        .last()
        .and_then(|m| final_answer(&content_text(&m.content)));
    reference.is_some() && reference == final_answer(completion)
}

/// Examples `start..stop` (or to the end) of a task, every `step`.
pub struct TaskSlice {
    inner: Arc<dyn Task>,
    start: usize,
    stop: usize,
    step: usize,
}

impl TaskSlice {
    /// Examples `start..stop` of `inner` every `step` (nanochat's `Task(start, stop, step)`);
    /// `stop` is clamped to the task's length. [`CoreError::InvalidArgument`] for a zero `step`
    /// or `start` past `stop`.
    pub fn new(
        inner: Arc<dyn Task>,
        start: usize,
        stop: Option<usize>,
        step: usize,
    ) -> Result<TaskSlice> {
        let stop = stop
            .unwrap_or(inner.num_examples())
            .min(inner.num_examples());
        if step == 0 || start > stop {
            return Err(CoreError::invalid(
                "task slice",
                format!("{start}..{stop} step {step} of task {}", inner.name()),
                "a step of at least 1 and a start at most the stop",
            ));
        }
        Ok(TaskSlice {
            inner,
            start,
            stop,
            step,
        })
    }
}

impl Task for TaskSlice {
    fn name(&self) -> String {
        format!(
            "{}[{}:{}:{}]",
            self.inner.name(),
            self.start,
            self.stop,
            self.step
        )
    }
    fn eval_type(&self) -> EvalType {
        self.inner.eval_type()
    }
    fn num_examples(&self) -> usize {
        (self.stop - self.start).div_ceil(self.step)
    }
    fn get_example(&self, i: usize) -> Result<Conversation> {
        if i >= self.num_examples() {
            return Err(example_out_of_range(&self.name(), i, self.num_examples()));
        }
        self.inner.get_example(self.start + i * self.step)
    }
    fn evaluate(&self, conversation: &Conversation, completion: &str) -> bool {
        self.inner.evaluate(conversation, completion)
    }
    fn choice_letters(&self, i: usize) -> Vec<String> {
        self.inner.choice_letters(self.start + i * self.step)
    }
    fn evaluate_example(&self, i: usize, conversation: &Conversation, completion: &str) -> bool {
        self.inner
            .evaluate_example(self.start + i * self.step, conversation, completion)
    }
    fn reward_example(&self, i: usize, conversation: &Conversation, completion: &str) -> f64 {
        self.inner
            .reward_example(self.start + i * self.step, conversation, completion)
    }
    fn reward(&self, conversation: &Conversation, completion: &str) -> f64 {
        self.inner.reward(conversation, completion)
    }
}

/// The per-example methods of a composite task (one with `locate(i) -> (task, j)`): each
/// example is checked, rewarded and lettered by the task it came from.
macro_rules! delegate_by_index {
    () => {
        fn evaluate_example(
            &self,
            i: usize,
            conversation: &Conversation,
            completion: &str,
        ) -> bool {
            self.locate(i)
                .is_some_and(|(t, j)| t.evaluate_example(j, conversation, completion))
        }
        fn reward_example(&self, i: usize, conversation: &Conversation, completion: &str) -> f64 {
            self.locate(i)
                .map_or(0.0, |(t, j)| t.reward_example(j, conversation, completion))
        }
        fn choice_letters(&self, i: usize) -> Vec<String> {
            self.locate(i)
                .map_or_else(Vec::new, |(t, j)| t.choice_letters(j))
        }
    };
}

/// Every example of every task, in one deterministically shuffled order (seeded). A task
/// listed twice contributes its examples twice.
pub struct TaskMixture {
    tasks: Vec<Arc<dyn Task>>,
    index: Vec<(usize, usize)>,
}

impl TaskMixture {
    /// All examples of `tasks`, shuffled once with a generator seeded by `seed`
    /// (nanochat's `TaskMixture`).
    pub fn new(tasks: Vec<Arc<dyn Task>>, seed: u64) -> TaskMixture {
        let mut index: Vec<(usize, usize)> = tasks
            .iter()
            .enumerate()
            .flat_map(|(t, task)| (0..task.num_examples()).map(move |i| (t, i)))
            .collect();
        index.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        TaskMixture { tasks, index }
    }

    /// The task and its example index behind mixture example `i`.
    pub fn locate(&self, i: usize) -> Option<(&Arc<dyn Task>, usize)> {
        self.index.get(i).map(|&(t, j)| (&self.tasks[t], j))
    }
}

impl Task for TaskMixture {
    fn name(&self) -> String {
        joined_name("mixture", &self.tasks)
    }
    fn num_examples(&self) -> usize {
        self.index.len()
    }
    fn get_example(&self, i: usize) -> Result<Conversation> {
        let (task, j) = self
            .locate(i)
            .ok_or_else(|| example_out_of_range(&self.name(), i, self.index.len()))?;
        task.get_example(j)
    }
    /// A mixture cannot tell which task an arbitrary conversation came from: evaluation goes
    /// through [`Task::evaluate_example`] (by index) instead. Always false.
    fn evaluate(&self, _: &Conversation, _: &str) -> bool {
        false
    }
    delegate_by_index!();
}

/// `kind(a, b, ...)`: the name of a task made of `tasks`.
fn joined_name(kind: &str, tasks: &[Arc<dyn Task>]) -> String {
    let names: Vec<String> = tasks.iter().map(|t| t.name()).collect();
    format!("{kind}({})", names.join(", "))
}

/// Tasks one after another, in order.
pub struct TaskSequence {
    tasks: Vec<Arc<dyn Task>>,
}

impl TaskSequence {
    /// `tasks`' examples in order, task after task (nanochat's `TaskSequence`).
    pub fn new(tasks: Vec<Arc<dyn Task>>) -> TaskSequence {
        TaskSequence { tasks }
    }
}

impl TaskSequence {
    /// The task and its example index behind sequence example `i`.
    pub fn locate(&self, mut i: usize) -> Option<(&Arc<dyn Task>, usize)> {
        for t in &self.tasks {
            if i < t.num_examples() {
                return Some((t, i));
            }
            i -= t.num_examples();
        }
        None
    }
}

impl Task for TaskSequence {
    fn name(&self) -> String {
        joined_name("sequence", &self.tasks)
    }
    fn num_examples(&self) -> usize {
        self.tasks.iter().map(|t| t.num_examples()).sum()
    }
    fn get_example(&self, i: usize) -> Result<Conversation> {
        let (task, j) = self
            .locate(i)
            .ok_or_else(|| example_out_of_range(&self.name(), i, self.num_examples()))?;
        task.get_example(j)
    }
    fn evaluate(&self, _: &Conversation, _: &str) -> bool {
        false
    }
    delegate_by_index!();
}

#[cfg(test)]
mod tests;
