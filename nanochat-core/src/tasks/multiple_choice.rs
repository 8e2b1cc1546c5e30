//! Multiple-choice tasks (ARC-Easy, ARC-Challenge, MMLU), rendered as nanochat's
//! `render_mc` prompt and scored categorically: the model's logits of the letter tokens at the
//! answer position are compared, so the model never has to generate ([`crate::eval`]).
//!
//! Data: `eval/{arc_easy,arc_challenge,mmlu}.jsonl`, one
//! `{"id", "question", "choices": [...], "answer": index, "subject"}` per line.

use serde::Deserialize;

use super::eval_data::{parse_jsonl, read_eval_file, EvalData};
use super::{content_text, EvalType, Task};
use crate::tokenizer::chat::{Conversation, Message};
use crate::{CoreError, Result};

/// The letters of up to 26 choices.
pub const LETTERS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// nanochat's multiple-choice prompt: the question, one `- choice=LETTER` line per choice, and
/// the instruction to answer with the letter only. (The letter after the choice, not before,
/// is what nanochat found small models learn best.)
pub fn render_mc(question: &str, letters: &[String], choices: &[String]) -> String {
    let mut query = format!("Multiple Choice question: {question}\n");
    for (letter, choice) in letters.iter().zip(choices) {
        query.push_str(&format!("- {choice}={letter}\n"));
    }
    query.push_str("\nRespond only with the letter of the correct answer.");
    query
}

/// One line of an `eval/*.jsonl` multiple-choice file.
#[derive(Clone, Debug, Deserialize)]
pub struct McItem {
    /// Item id (optional in the file).
    #[serde(default)]
    pub id: String,
    /// The question text.
    pub question: String,
    /// The answer options, in the order shown as A, B, C...
    pub choices: Vec<String>,
    /// Index of the right option in `choices` (0-based).
    pub answer: usize,
    /// MMLU's subject (empty for the ARC sets).
    #[serde(default)]
    pub subject: String,
}

/// A multiple-choice task over a list of items.
pub struct MultipleChoice {
    name: String,
    items: Vec<McItem>,
}

impl MultipleChoice {
    /// Validates every item (2 to 26 choices, the answer among them).
    pub fn new(name: &str, items: Vec<McItem>, source: &str) -> Result<MultipleChoice> {
        for (i, item) in items.iter().enumerate() {
            let n = item.choices.len();
            if !(2..=LETTERS.len()).contains(&n) {
                return Err(CoreError::File {
                    path: source.to_string(),
                    why: format!(
                        "item {} (`{}`): field `choices` has {n} entries, expected 2 to 26",
                        i + 1,
                        item.id
                    ),
                });
            }
            if item.answer >= n {
                return Err(CoreError::File {
                    path: source.to_string(),
                    why: format!(
                        "item {} (`{}`): field `answer` is {} but there are {n} choices",
                        i + 1,
                        item.id,
                        item.answer
                    ),
                });
            }
        }
        Ok(MultipleChoice {
            name: name.to_string(),
            items,
        })
    }

    /// ARC-Easy (test split).
    pub fn arc_easy(data: EvalData) -> Result<MultipleChoice> {
        Self::load("ARC-Easy", "arc_easy.jsonl", data)
    }

    /// ARC-Challenge (test split).
    pub fn arc_challenge(data: EvalData) -> Result<MultipleChoice> {
        Self::load("ARC-Challenge", "arc_challenge.jsonl", data)
    }

    /// MMLU (test split, all 57 subjects).
    pub fn mmlu(data: EvalData) -> Result<MultipleChoice> {
        Self::load("MMLU", "mmlu.jsonl", data)
    }

    fn load(name: &str, file: &str, data: EvalData) -> Result<MultipleChoice> {
        let (text, source) = read_eval_file("eval", file, data)?;
        Self::new(name, parse_jsonl(&text, &source)?, &source)
    }

    /// The items, in file order.
    pub fn items(&self) -> &[McItem] {
        &self.items
    }
}

fn letters(n: usize) -> Vec<String> {
    LETTERS.chars().take(n).map(String::from).collect()
}

impl Task for MultipleChoice {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn eval_type(&self) -> EvalType {
        EvalType::Categorical
    }
    fn num_examples(&self) -> usize {
        self.items.len()
    }
    fn get_example(&self, i: usize) -> Result<Conversation> {
        let item = super::example_item(&self.items, i, &self.name)?;
        let letters = letters(item.choices.len());
        Ok(Conversation::new(vec![
            Message::user(&render_mc(&item.question, &letters, &item.choices)),
            Message::assistant(&letters[item.answer]),
        ]))
    }
    fn choice_letters(&self, i: usize) -> Vec<String> {
        self.items
            .get(i)
            .map_or_else(Vec::new, |item| letters(item.choices.len()))
    }
    /// Whether the answer (whitespace-trimmed) is the reference letter.
    fn evaluate(&self, conversation: &Conversation, completion: &str) -> bool {
        conversation
            .messages
            .last()
            .is_some_and(|m| content_text(&m.content).trim() == completion.trim())
    }
}
