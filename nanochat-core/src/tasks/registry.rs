//! The one registry of tasks known by name. Each use looks names up here with what it needs
//! ([`TaskUse`]): the training mixtures of `mid-train` / `chat-sft` (nanochat's
//! `scripts/mid_train.py` and `chat_sft.py` task lists), the tasks with a reward of `chat-rl`
//! (`scripts/chat_rl.py`) and the benchmarks of `chat-eval` (`scripts/chat_eval.py`). A use
//! accepts its own names and aliases; any other name is [`CoreError::Unknown`] listing the
//! names that use accepts.

use std::sync::Arc;

use super::{
    Arithmetic, CustomJson, EvalData, Gsm8k, HumanEval, MultipleChoice, SimpleSpelling,
    SpellingBee, Split, Task,
};
use crate::{CoreError, Result};

/// The tasks of `nanochat chat-eval`, in its order (nanochat's `chat_eval.py` task list).
pub const CHAT_TASKS: [&str; 6] = [
    "ARC-Easy",
    "ARC-Challenge",
    "MMLU",
    "GSM8K",
    "HumanEval",
    "SpellingBee",
];

/// Examples of the SpellingBee test split that `chat-eval` scores (nanochat's size).
pub const SPELLING_BEE_SIZE: usize = 256;

/// What a task is looked up for: each use accepts its own names and builds its own split and
/// size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskUse {
    /// A training mixture of `mid-train` / `chat-sft`: `chitchat`, `chatterbot`, `identity`,
    /// `spelling-bee` (2000 examples), `simple-spelling` (1000), `arithmetic` (2000), all of
    /// the train split, or a path ending in `.jsonl` (one conversation per line). `gsm8k` is
    /// refused: it exists here only as a test split.
    Training,
    /// A task with a reward for `chat-rl`: `arithmetic` or `spelling-bee`, with `size`
    /// examples of `split`.
    Reward {
        /// Which examples: training prompts or held-out test problems.
        split: Split,
        /// Examples in the task.
        size: usize,
    },
    /// A benchmark of `chat-eval` ([`CHAT_TASKS`]), read from `data` (SpellingBee: the
    /// [`SPELLING_BEE_SIZE`] synthetic test examples).
    Eval(EvalData),
}

/// A task known by name (whatever alias was used).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TaskName {
    Chitchat,
    Chatterbot,
    Identity,
    SpellingBee,
    SimpleSpelling,
    Arithmetic,
    Gsm8k,
    ArcEasy,
    ArcChallenge,
    Mmlu,
    HumanEval,
}

/// The names each use accepts for a task (empty: that use does not offer it).
struct Entry {
    task: TaskName,
    training: &'static [&'static str],
    reward: &'static [&'static str],
    eval: &'static [&'static str],
}

const fn entry(
    task: TaskName,
    training: &'static [&'static str],
    reward: &'static [&'static str],
    eval: &'static [&'static str],
) -> Entry {
    Entry {
        task,
        training,
        reward,
        eval,
    }
}

/// Every task and its names, per use.
const REGISTRY: &[Entry] = &[
    entry(TaskName::Chitchat, &["chitchat"], &[], &[]),
    entry(TaskName::Chatterbot, &["chatterbot"], &[], &[]),
    entry(TaskName::Identity, &["identity"], &[], &[]),
    entry(
        TaskName::SpellingBee,
        &["spelling-bee", "spellingbee"],
        &["spelling-bee", "spellingbee", "SpellingBee"],
        &["SpellingBee"],
    ),
    entry(
        TaskName::SimpleSpelling,
        &["simple-spelling", "simplespelling"],
        &[],
        &[],
    ),
    entry(TaskName::Arithmetic, &["arithmetic"], &["arithmetic"], &[]),
    // Named for training only to be refused with the reason.
    entry(TaskName::Gsm8k, &["gsm8k", "GSM8K"], &[], &["GSM8K"]),
    entry(TaskName::ArcEasy, &[], &[], &["ARC-Easy"]),
    entry(TaskName::ArcChallenge, &[], &[], &["ARC-Challenge"]),
    entry(TaskName::Mmlu, &[], &[], &["MMLU"]),
    entry(TaskName::HumanEval, &[], &[], &["HumanEval"]),
];

impl TaskUse {
    /// The names this use accepts for `entry`.
    fn names(&self, entry: &Entry) -> &'static [&'static str] {
        match self {
            TaskUse::Training => entry.training,
            TaskUse::Reward { .. } => entry.reward,
            TaskUse::Eval(_) => entry.eval,
        }
    }

    /// [`CoreError::Unknown`] for `name`, listing what this use accepts.
    fn unknown(&self, name: &str) -> CoreError {
        let (kind, expected) = match self {
            TaskUse::Training => (
                "task",
                "chitchat, chatterbot, identity, spelling-bee, simple-spelling, arithmetic or a .jsonl file"
                    .to_string(),
            ),
            TaskUse::Reward { .. } => ("reward task", "arithmetic or spelling-bee".to_string()),
            TaskUse::Eval(_) => ("task", format!("one of {}", CHAT_TASKS.join("|"))),
        };
        CoreError::Unknown {
            kind,
            name: name.to_string(),
            expected,
        }
    }
}

/// The task called `name` for `for_use`, built with that use's split, size or data.
///
/// Errors: [`CoreError::Unknown`] for a name the use does not accept (kind `task`, or `reward
/// task` for [`TaskUse::Reward`], with the accepted names); [`CoreError::Unsupported`] for
/// `gsm8k` as a training task; and whatever loading the task's data gives (a missing fetched
/// file names `scripts/fetch_data.sh`, a bad `.jsonl` line is named).
pub fn task_by_name(name: &str, for_use: TaskUse) -> Result<Arc<dyn Task>> {
    let found = REGISTRY
        .iter()
        .find(|e| for_use.names(e).contains(&name))
        .map(|e| e.task);
    let Some(task) = found else {
        return match for_use {
            TaskUse::Training if name.ends_with(".jsonl") => {
                Ok(Arc::new(CustomJson::from_file(std::path::Path::new(name))?))
            }
            _ => Err(for_use.unknown(name)),
        };
    };
    build(task, for_use, name)
}

/// Builds `task` as `for_use` wants it (only combinations [`REGISTRY`] lists reach here).
fn build(task: TaskName, for_use: TaskUse, name: &str) -> Result<Arc<dyn Task>> {
    use TaskName as N;
    Ok(match (for_use, task) {
        (TaskUse::Training, N::Chitchat) => Arc::new(CustomJson::chat_set("chitchat")?),
        (TaskUse::Training, N::Chatterbot) => Arc::new(CustomJson::chat_set("chatterbot")?),
        (TaskUse::Training, N::Identity) => Arc::new(CustomJson::identity()?),
        (TaskUse::Training, N::SpellingBee) => Arc::new(SpellingBee::new(2000, Split::Train)?),
        (TaskUse::Training, N::SimpleSpelling) => {
            Arc::new(SimpleSpelling::new(1000, Split::Train)?)
        }
        (TaskUse::Training, N::Arithmetic) => Arc::new(Arithmetic::new(2000, Split::Train)),
        (TaskUse::Training, N::Gsm8k) => {
            return Err(CoreError::Unsupported {
                op: "training task",
                why: "GSM8K exists here only as a test split: it is never trained on".into(),
            })
        }
        (TaskUse::Reward { split, size }, N::Arithmetic) => Arc::new(Arithmetic::new(size, split)),
        (TaskUse::Reward { split, size }, N::SpellingBee) => {
            Arc::new(SpellingBee::new(size, split)?)
        }
        (TaskUse::Eval(data), N::ArcEasy) => Arc::new(MultipleChoice::arc_easy(data)?),
        (TaskUse::Eval(data), N::ArcChallenge) => Arc::new(MultipleChoice::arc_challenge(data)?),
        (TaskUse::Eval(data), N::Mmlu) => Arc::new(MultipleChoice::mmlu(data)?),
        (TaskUse::Eval(data), N::Gsm8k) => Arc::new(Gsm8k::load(data)?),
        (TaskUse::Eval(data), N::HumanEval) => Arc::new(HumanEval::load(data)?),
        (TaskUse::Eval(_), N::SpellingBee) => {
            Arc::new(SpellingBee::new(SPELLING_BEE_SIZE, Split::Test)?)
        }
        _ => return Err(for_use.unknown(name)),
    })
}

/// Builds the training tasks named on a command line (`chitchat`, `chatterbot`, `identity`,
/// `spelling-bee`, `simple-spelling`, `arithmetic`, or a path to a JSONL file of
/// conversations): [`task_by_name`] with [`TaskUse::Training`]. A name listed twice is
/// oversampled.
pub fn training_task(name: &str) -> Result<Arc<dyn Task>> {
    task_by_name(name, TaskUse::Training)
}
