//! CORE (the DCLM paper's metric, as nanochat's `core_eval`): few-shot tasks scored on the
//! base model's continuation losses, no generation. Three kinds of item:
//! - multiple choice: one context, several continuations; the choice with the lowest mean loss
//!   over its continuation tokens is the answer;
//! - schema: several contexts, one continuation (Winogrande); the context under which the
//!   continuation has the lowest mean loss is the answer;
//! - language modelling: correct when greedy decoding reproduces the continuation exactly.
//!
//! Few-shot examples are other items of the same task, drawn with a seed per item; prompts
//! longer than the context are cropped from the left. Each task's accuracy is centred by its
//! random baseline, (acc - b) / (1 - b), and CORE is their mean.
//!
//! Data: `core/tasks.json` (one `{"label", "file", "task_type", "num_fewshot",
//! "continuation_delimiter", "random_baseline" (percent)}` per task) and `core/<label>.jsonl`
//! (`{"context", "continuations", "gold"}`, `{"contexts", "continuation", "gold"}` or
//! `{"context", "continuation"}`).

use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::eval::pad_right;
use crate::model::{ForwardOptions, LogitPositions};
use crate::ops::Reduction;
use crate::tasks::eval_data::{parse_jsonl, read_eval_file, EvalData};
use crate::tokenizer::Tokenizer;
use crate::{CoreError, Result, GPT};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
/// How a CORE task is scored (the `task_type` of DCLM's eval bundle, as nanochat's
/// `nanochat/core_eval.py`).
pub enum CoreTaskType {
    /// One context, several continuations: the option with the lowest mean loss wins.
    MultipleChoice,
    /// Several contexts, one continuation: the context under which it has the lowest mean loss wins.
    Schema,
    /// One context and continuation: right when the argmax prediction at every continuation position
    /// (teacher-forced) is its token.
    LanguageModeling,
}

/// One row of `core/tasks.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CoreTaskMeta {
    /// Task name (e.g. `hellaswag_zeroshot`).
    pub label: String,
    /// The task's `.jsonl` file, relative to the CORE data folder.
    pub file: String,
    /// How it is scored.
    pub task_type: CoreTaskType,
    /// Examples of the same task put before each item's context.
    pub num_fewshot: usize,
    /// Text between a context and its continuation (often a space).
    pub continuation_delimiter: String,
    /// Percent accuracy of guessing.
    pub random_baseline: f64,
}

/// One line of a task file (which fields are set depends on the task type).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CoreItem {
    /// The context (multiple choice, language modelling); `query` in nanochat's eval bundle.
    #[serde(alias = "query")]
    pub context: Option<String>,
    /// The contexts (schema); `context_options` in nanochat's eval bundle.
    #[serde(alias = "context_options")]
    pub contexts: Option<Vec<String>>,
    /// The continuation (schema, language modelling).
    pub continuation: Option<String>,
    /// The continuations (multiple choice); `choices` in nanochat's eval bundle.
    #[serde(alias = "choices")]
    pub continuations: Option<Vec<String>>,
    /// Index of the right option (multiple choice and schema).
    pub gold: Option<usize>,
}

/// `field`'s value, or the error `bad` makes of "field `NAME` is missing" (NAME: `name`).
fn present<'a, T>(
    field: &'a Option<T>,
    name: &str,
    bad: &dyn Fn(&str) -> CoreError,
) -> Result<&'a T> {
    field
        .as_ref()
        .ok_or_else(|| bad(&format!("field `{name}` is missing")))
}

/// A CORE task: its row of `tasks.json` and its items.
pub struct CoreTask {
    /// The task's settings.
    pub meta: CoreTaskMeta,
    /// Its items, in file order.
    pub items: Vec<CoreItem>,
}

impl CoreTask {
    /// Checks every item has the fields of the task type, with `gold` in range.
    pub fn new(meta: CoreTaskMeta, items: Vec<CoreItem>, source: &str) -> Result<CoreTask> {
        for (i, it) in items.iter().enumerate() {
            let bad = |why: &str| CoreError::File {
                path: source.to_string(),
                why: format!(
                    "item {}: {why} ({:?} task `{}`)",
                    i + 1,
                    meta.task_type,
                    meta.label
                ),
            };
            let n = match meta.task_type {
                CoreTaskType::MultipleChoice => {
                    present(&it.context, "context", &bad)?;
                    present(&it.continuations, "continuations", &bad)?.len()
                }
                CoreTaskType::Schema => {
                    present(&it.continuation, "continuation", &bad)?;
                    present(&it.contexts, "contexts", &bad)?.len()
                }
                CoreTaskType::LanguageModeling => {
                    present(&it.context, "context", &bad)?;
                    let c = present(&it.continuation, "continuation", &bad)?;
                    if c.trim().is_empty() {
                        return Err(bad("field `continuation` is empty"));
                    }
                    continue;
                }
            };
            if n < 2 {
                return Err(bad(&format!("{n} options, expected at least 2")));
            }
            match it.gold {
                Some(g) if g < n => {}
                Some(g) => {
                    return Err(bad(&format!(
                        "field `gold` is {g} but there are {n} options"
                    )))
                }
                None => return Err(bad("field `gold` is missing")),
            }
        }
        if !(0.0..100.0).contains(&meta.random_baseline) {
            return Err(CoreError::File {
                path: source.to_string(),
                why: format!(
                    "task `{}`: random_baseline {} is not a percentage below 100",
                    meta.label, meta.random_baseline
                ),
            });
        }
        if items.len() <= meta.num_fewshot {
            return Err(CoreError::File {
                path: source.to_string(),
                why: format!(
                    "{} items cannot give {} few-shot examples plus the item",
                    items.len(),
                    meta.num_fewshot
                ),
            });
        }
        Ok(CoreTask { meta, items })
    }
}

/// Every task of `core/tasks.json`.
pub fn load_core_tasks(data: EvalData) -> Result<Vec<CoreTask>> {
    let (text, source) = read_eval_file("core", "tasks.json", data)?;
    let metas: Vec<CoreTaskMeta> = serde_json::from_str(&text).map_err(|e| CoreError::File {
        path: source.clone(),
        why: format!("not a list of CORE tasks: {e}"),
    })?;
    if metas.is_empty() {
        return Err(CoreError::File {
            path: source,
            why: "lists no task".into(),
        });
    }
    metas
        .into_iter()
        .map(|meta| {
            let (text, source) = read_eval_file("core", &meta.file, data)?;
            let items = parse_jsonl(&text, &source)?;
            CoreTask::new(meta, items, &source)
        })
        .collect()
}

/// An item as token sequences: one per option, each scored over `spans[o]` (the continuation's
/// token range); `gold` is the right option (0 for language modelling).
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    /// One token sequence per option (BOS, few-shot examples, context, continuation).
    pub seqs: Vec<Vec<u32>>,
    /// Per option, the token range `[start, end)` of the continuation that is scored.
    pub spans: Vec<(usize, usize)>,
    /// Index of the right option.
    pub gold: usize,
}

fn text(o: &Option<String>) -> &str {
    o.as_deref().unwrap_or_default()
}

/// The prompts of item `i` as nanochat's templates render them: the few-shot examples, each
/// followed by a blank line, then the item with each option.
fn prompts(task: &CoreTask, i: usize) -> (Vec<String>, Option<String>) {
    let m = &task.meta;
    let d = &m.continuation_delimiter;
    let available = task.items.len() - 1;
    let mut rng = StdRng::seed_from_u64(1234 + i as u64);
    let shots: Vec<&CoreItem> = sample(&mut rng, available, m.num_fewshot.min(available))
        .into_iter()
        .map(|j| &task.items[if j >= i { j + 1 } else { j }])
        .collect();
    let it = &task.items[i];
    let mut prefix = String::new();
    for ex in shots {
        let g = ex.gold.unwrap_or(0);
        let shot = match m.task_type {
            CoreTaskType::MultipleChoice => format!(
                "{}{d}{}",
                text(&ex.context),
                ex.continuations.as_ref().map_or("", |c| &c[g])
            ),
            CoreTaskType::Schema => format!(
                "{}{d}{}",
                ex.contexts.as_ref().map_or("", |c| &c[g]),
                text(&ex.continuation)
            ),
            CoreTaskType::LanguageModeling => {
                format!("{}{d}{}", text(&ex.context).trim(), text(&ex.continuation))
            }
        };
        prefix.push_str(&shot);
        prefix.push_str("\n\n");
    }
    // Each option is `{context}{delimiter}{continuation}` after the prefix.
    let ctx = text(&it.context);
    let cont = text(&it.continuation);
    let (options, without): (Vec<(&str, &str)>, _) = match m.task_type {
        CoreTaskType::MultipleChoice => {
            let conts = it.continuations.as_deref().unwrap_or_default();
            (conts.iter().map(|c| (ctx, c.as_str())).collect(), None)
        }
        CoreTaskType::Schema => {
            let ctxs = it.contexts.as_deref().unwrap_or_default();
            (ctxs.iter().map(|c| (c.as_str(), cont)).collect(), None)
        }
        CoreTaskType::LanguageModeling => {
            let ctx = ctx.trim();
            let without = format!("{prefix}{ctx}{d}").trim_end().to_string();
            (vec![(ctx, cont)], Some(without))
        }
    };
    let texts = options
        .iter()
        .map(|(c, x)| format!("{prefix}{c}{d}{x}"))
        .collect();
    (texts, without)
}

/// Renders item `i` of `task` into tokens (BOS first), cropped from the left to `max_len`;
/// `None` when even the continuation does not fit.
pub fn render_item(
    task: &CoreTask,
    i: usize,
    tokenizer: &Tokenizer,
    max_len: usize,
) -> Option<Rendered> {
    let (texts, without) = prompts(task, i);
    let bos = tokenizer.get_bos_token_id();
    let encode = |t: &str| {
        let mut ids = vec![bos];
        ids.extend(tokenizer.encode(t));
        ids
    };
    let seqs: Vec<Vec<u32>> = texts.iter().map(|t| encode(t)).collect();
    let spans: Vec<(usize, usize)> = match task.meta.task_type {
        CoreTaskType::MultipleChoice => {
            // The continuations start where the options' tokens first differ.
            let common = (0..seqs.iter().map(Vec::len).min().unwrap_or(0))
                .take_while(|&k| seqs.iter().all(|s| s[k] == seqs[0][k]))
                .count();
            // One start for every option (a choice may be a token prefix of another).
            let min_len = seqs.iter().map(Vec::len).min().unwrap_or(1);
            let start = common.min(min_len - 1);
            seqs.iter().map(|s| (start, s.len())).collect()
        }
        CoreTaskType::Schema => {
            let common = (1..=seqs.iter().map(Vec::len).min().unwrap_or(0))
                .take_while(|&k| {
                    seqs.iter()
                        .all(|s| s[s.len() - k] == seqs[0][seqs[0].len() - k])
                })
                .count();
            seqs.iter()
                .map(|s| (s.len() - common.max(1), s.len()))
                .collect()
        }
        CoreTaskType::LanguageModeling => {
            // The continuation starts where the prompt without it ends, or where the two
            // tokenizations first differ if merging across the boundary changed them.
            let without = encode(without.as_deref().unwrap_or_default());
            let start = without
                .iter()
                .zip(&seqs[0])
                .take_while(|(a, b)| a == b)
                .count();
            vec![(start.min(seqs[0].len() - 1), seqs[0].len())]
        }
    };
    let mut out = Rendered {
        seqs: Vec::new(),
        spans: Vec::new(),
        gold: task.items[i].gold.unwrap_or(0),
    };
    for (s, (start, end)) in seqs.into_iter().zip(spans) {
        let crop = s.len().saturating_sub(max_len);
        if start.max(1) <= crop {
            return None;
        }
        out.spans.push((start.max(1) - crop, end - crop));
        out.seqs.push(s[crop..].to_vec());
    }
    Some(out)
}

/// What CORE asks of a model.
pub trait LmScorer {
    /// For each sequence, the mean cross-entropy of its tokens `start..end` given those before.
    fn mean_losses(&self, seqs: &[Vec<u32>], spans: &[(usize, usize)]) -> Result<Vec<f64>>;
    /// Whether greedy prediction gives every token `start..end` of `seq` from those before.
    fn greedy_matches(&self, seq: &[u32], span: (usize, usize)) -> Result<bool>;
}

impl LmScorer for GPT {
    fn mean_losses(&self, seqs: &[Vec<u32>], spans: &[(usize, usize)]) -> Result<Vec<f64>> {
        let (idx, t) = pad_right(seqs, 0);
        let mut targets = vec![-1i32; idx.len()];
        for (b, (s, &(start, end))) in seqs.iter().zip(spans).enumerate() {
            for p in start..end {
                targets[b * t + p - 1] = s[p] as i32;
            }
        }
        let losses = self
            .forward(
                &idx,
                (seqs.len(), t),
                ForwardOptions::new().targets(&targets, Reduction::None),
            )?
            .to_vec_f32()?;
        Ok(spans
            .iter()
            .enumerate()
            .map(|(b, &(start, end))| {
                let sum: f64 = (start..end).map(|p| losses[b * t + p - 1] as f64).sum();
                sum / (end - start) as f64
            })
            .collect())
    }

    fn greedy_matches(&self, seq: &[u32], (start, end): (usize, usize)) -> Result<bool> {
        let flat: Vec<usize> = (start - 1..end - 1).collect();
        let logits = self
            .forward(
                &seq[..end - 1],
                (1, end - 1),
                ForwardOptions::new().positions(LogitPositions::Flat(&flat)),
            )?
            .to_vec_f32()?;
        let vocab = self.config().vocab_size;
        Ok(flat.iter().enumerate().all(|(i, &p)| {
            let row = &logits[i * vocab..(i + 1) * vocab];
            crate::eval::argmax(row) == Some(seq[p + 1] as usize)
        }))
    }
}

/// One task's CORE result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CoreResult {
    /// Task name.
    pub label: String,
    /// Items evaluated.
    pub total: usize,
    /// Items whose continuation did not fit the context (counted as wrong).
    pub too_long: usize,
    /// Fraction of items right, 0..=1.
    pub accuracy: f64,
    /// (accuracy - baseline) / (1 - baseline).
    pub centered: f64,
}

/// Scores `max_items` items of `task` (all when `None`) in a fixed shuffled order;
/// `progress(done, total)`.
pub fn evaluate_core_task(
    scorer: &dyn LmScorer,
    tokenizer: &Tokenizer,
    task: &CoreTask,
    max_items: Option<usize>,
    max_len: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<CoreResult> {
    let total = max_items.map_or(task.items.len(), |m| m.min(task.items.len()));
    if total == 0 {
        return Err(CoreError::no_data(
            "items to evaluate",
            format!("CORE task {}", task.meta.label),
        ));
    }
    // As nanochat: a fixed shuffle (seed 1337), so a subset is a fair sample, not the file's
    // first items.
    let mut order: Vec<usize> = (0..task.items.len()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(1337));
    let (mut correct, mut too_long) = (0, 0);
    // Across ranks, the n-th item of the order goes to rank n % world (items are scored one at
    // a time, so nothing depends on the split); the counts are summed after.
    let dist = crate::dist::world();
    let (rank, world) = (dist.rank(), dist.world_size());
    for (done, &i) in order[..total]
        .iter()
        .enumerate()
        .filter(|(n, _)| n % world == rank)
    {
        let Some(r) = render_item(task, i, tokenizer, max_len) else {
            // Counted as wrong, as a model with this context could not answer it either.
            too_long += 1;
            progress(done + 1, total);
            continue;
        };
        let right = match task.meta.task_type {
            CoreTaskType::LanguageModeling => scorer.greedy_matches(&r.seqs[0], r.spans[0])?,
            _ => {
                let losses = scorer.mean_losses(&r.seqs, &r.spans)?;
                crate::eval::argmin(&losses) == Some(r.gold)
            }
        };
        correct += right as usize;
        progress(done + 1, total);
    }
    let summed = crate::eval::chat::sum_counts(&dist, &[correct, too_long])?;
    let (correct, too_long) = (summed[0], summed[1]);
    if too_long > 0 {
        tracing::warn!(
            "{}: {too_long} of {total} items do not fit the context of {max_len} tokens (counted as wrong)",
            task.meta.label
        );
    }
    let accuracy = correct as f64 / total as f64;
    let b = task.meta.random_baseline / 100.0;
    Ok(CoreResult {
        label: task.meta.label.clone(),
        total,
        too_long,
        accuracy,
        centered: (accuracy - b) / (1.0 - b),
    })
}

/// CORE: the mean centred accuracy.
pub fn core_score(results: &[CoreResult]) -> f64 {
    if results.is_empty() {
        return 0.0;
    }
    results.iter().map(|r| r.centered).sum::<f64>() / results.len() as f64
}
