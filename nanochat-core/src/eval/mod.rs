//! Evaluation, as nanochat's `chat_eval` and `base_eval`:
//! - [`evaluate_task`]: any [`Task`](crate::tasks::Task) against a [`ChatModel`]: categorical
//!   tasks compare the logits of the answer letters at the answer position, generative ones
//!   sample completions and check them (pass@k over `num_samples`); [`chat_core`] centres each
//!   accuracy by its baseline (ChatCORE).
//! - [`core`]: the base model's CORE score over few-shot tasks (lowest mean continuation loss
//!   among choices, or greedy exact match), centred by each task's random baseline.
//! - [`bpb_splits`]: base_eval's bits per byte on the train and validation splits.
//! - [`runner`]: the runs of `chat-eval` ([`ChatEval`]) and `base-eval` ([`CoreEval`]): tasks
//!   loaded first, evaluated in order with progress events, typed results that are the result
//!   files' JSON.
//!
//! The model is a trait so the scoring is tested with fakes ([`fake`]) that answer right or at
//! random; [`Engine`] and [`GPT`](crate::model::GPT) are the real implementations.
//!
//! A custom task is one small impl of [`Task`](crate::tasks::Task); evaluating it:
//!
//! ```
//! use nanochat_core::eval::{evaluate_task, fake::OracleModel};
//! use nanochat_core::tasks::{EvalType, Task};
//! use nanochat_core::tokenizer::chat::{Conversation, Message};
//!
//! /// "What is n + 1?" answered with `#### n+1`.
//! struct Successor;
//! impl Task for Successor {
//!     fn name(&self) -> String { "successor".into() }
//!     fn eval_type(&self) -> EvalType { EvalType::Generative }
//!     fn num_examples(&self) -> usize { 5 }
//!     fn get_example(&self, i: usize) -> nanochat_core::Result<Conversation> {
//!         Ok(Conversation::new(vec![
//!             Message::user(&format!("What is {i} + 1?")),
//!             Message::assistant(&format!("#### {}", i + 1)),
//!         ]))
//!     }
//!     fn evaluate(&self, c: &Conversation, completion: &str) -> bool {
//!         nanochat_core::tasks::final_answers_match(c, completion)
//!     }
//! }
//!
//! # use nanochat_core::tokenizer::{train_tokenizer, TrainOptions};
//! # let docs = vec!["What is 1 + 1? #### 2".to_string(); 4];
//! # let opts = TrainOptions { vocab_size: 300, doc_cap: 1000, max_chars: 10_000, progress: false };
//! # let (tokenizer, _) = train_tokenizer(&docs, &opts).unwrap();
//! // A real run passes an `Engine` (a trained model and its tokenizer) instead of the oracle.
//! let model = OracleModel::new(&tokenizer, &[&Successor]).unwrap();
//! assert_eq!(evaluate_task(&model, &tokenizer, &Successor).unwrap(), 1.0);
//! ```

pub mod bpb_splits;
pub mod bundle;
pub mod chat;
pub mod core;
pub mod fake;
pub mod runner;

pub use bpb_splits::{split_bpb, SplitBpb, SplitData};
pub use chat::{
    chat_core, chat_task, evaluate_task, evaluate_task_with, EvalOptions, TaskResult, CHAT_TASKS,
};
pub use runner::{
    chat_eval_path, core_eval_path, data_name, parse_chat_tasks, write_result, ChatEval,
    ChatEvalResult, CoreEval, CoreEvalResult, CoreModelSource, EvalEvent, EvalReport, ModelOrigin,
};

use crate::engine::{Engine, GenerateParams};
use crate::model::{ForwardOptions, LogitPositions};
use crate::tokenizer::Tokenizer;
use crate::{CoreError, Result};

/// What chat evaluation asks of a model.
pub trait ChatModel {
    /// For each prompt, the logits of its candidate tokens at the position after it.
    fn candidate_logits(
        &self,
        prompts: &[Vec<u32>],
        candidates: &[Vec<u32>],
    ) -> Result<Vec<Vec<f32>>>;
    /// `params.num_samples` completions of `prompt`, as text (special tokens by name, the
    /// terminal token excluded).
    fn complete(&self, prompt: &[u32], params: &GenerateParams) -> Result<Vec<String>>;
}

/// Right-pads token rows to one length with `pad`: the ids (B * T) and T.
pub fn pad_right(rows: &[Vec<u32>], pad: u32) -> (Vec<u32>, usize) {
    let t = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut idx = Vec::with_capacity(rows.len() * t);
    for r in rows {
        idx.extend_from_slice(r);
        idx.extend(std::iter::repeat_n(pad, t - r.len()));
    }
    (idx, t)
}

/// The last `max` tokens of `tokens` (nanochat crops evaluation prompts from the left).
pub fn crop_left(tokens: &[u32], max: usize) -> &[u32] {
    &tokens[tokens.len().saturating_sub(max)..]
}

impl ChatModel for Engine {
    fn candidate_logits(
        &self,
        prompts: &[Vec<u32>],
        candidates: &[Vec<u32>],
    ) -> Result<Vec<Vec<f32>>> {
        if prompts.is_empty() {
            return Ok(Vec::new());
        }
        let model = self.model();
        let block = model.config().block_size;
        let vocab = model.config().vocab_size;
        // Prompts longer than the context keep their end: the choices and the instruction.
        let rows: Vec<Vec<u32>> = prompts
            .iter()
            .map(|p| crop_left(p, block).to_vec())
            .collect();
        if let Some(i) = rows.iter().position(Vec::is_empty) {
            return Err(CoreError::no_data(
                "tokens",
                format!("candidate_logits prompt {i}"),
            ));
        }
        let positions: Vec<usize> = rows.iter().map(|r| r.len() - 1).collect();
        let (idx, t) = pad_right(&rows, self.tokenizer().get_bos_token_id());
        let logits = model
            .forward(
                &idx,
                (rows.len(), t),
                ForwardOptions::new().positions(LogitPositions::PerRow(&positions)),
            )?
            .to_vec_f32()?;
        candidates
            .iter()
            .enumerate()
            .map(|(b, cands)| {
                cands
                    .iter()
                    .map(|&c| {
                        if c as usize >= vocab {
                            return Err(CoreError::OutOfRange {
                                what: "candidate tokens in the model's vocabulary".into(),
                                index: c as usize,
                                len: vocab,
                            });
                        }
                        Ok(logits[b * vocab + c as usize])
                    })
                    .collect()
            })
            .collect()
    }

    /// A prompt that fills the context leaves no room to answer: its completions are empty
    /// (so the problem counts as wrong) and a warning says so.
    fn complete(&self, prompt: &[u32], params: &GenerateParams) -> Result<Vec<String>> {
        let block = self.model().config().block_size;
        if prompt.len() >= block {
            tracing::warn!(
                "a prompt of {} tokens fills the model's context of {block}: counted as unanswered",
                prompt.len()
            );
            return Ok(vec![String::new(); params.num_samples.max(1)]);
        }
        let (rows, _) = self.generate_batch(prompt, params)?;
        rows.iter()
            .map(|r| self.tokenizer().decode(&r[prompt.len()..]))
            .collect()
    }
}

/// The index of the largest value, the first among equals (as `torch.argmax`); `None` when
/// empty.
pub fn argmax<T: PartialOrd + Copy>(values: &[T]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, &v) in values.iter().enumerate() {
        if best.is_none_or(|b| v > values[b]) {
            best = Some(i);
        }
    }
    best
}

/// The index of the smallest value, the first among equals.
pub fn argmin<T: PartialOrd + Copy>(values: &[T]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, &v) in values.iter().enumerate() {
        if best.is_none_or(|b| v < values[b]) {
            best = Some(i);
        }
    }
    best
}

/// The single token of a candidate answer (a letter), or [`CoreError::InvalidArgument`]
/// naming it and its token count.
pub fn single_token(tokenizer: &Tokenizer, text: &str) -> Result<u32> {
    match tokenizer.encode(text).as_slice() {
        [t] => Ok(*t),
        ids => Err(CoreError::invalid(
            "answer",
            format!("`{text}` ({} tokens)", ids.len()),
            "exactly one token",
        )),
    }
}

#[cfg(test)]
mod tests;
