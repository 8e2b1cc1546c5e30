//! GSM8K (test split only: it is never trained on): grade-school word problems, answered
//! generatively and checked on the number after `####`. As in nanochat, the reference
//! solution's calculator marks `<<48/2=24>>` become tool calls: the expression a python part,
//! its result a python-output part.
//!
//! Data: `eval/gsm8k.jsonl`, one `{"question", "answer"}` per line (the original solution text).

use serde::Deserialize;

use super::eval_data::{parse_jsonl, read_eval_file, EvalData};
use super::{final_answer, final_answers_match, Task};
use crate::tokenizer::chat::{Content, Conversation, Message, Part, PartKind};
use crate::{CoreError, Result};

#[derive(Clone, Debug, Deserialize)]
/// One line of `gsm8k.jsonl` (GSM8K's own format).
pub struct Gsm8kItem {
    /// The word problem.
    pub question: String,
    /// The worked solution with `<<expr=result>>` calculator calls, ending in `#### n`.
    pub answer: String,
}

/// GSM8K grade-school maths (nanochat's `tasks/gsm8k.py`): the solution's calculator calls become
/// tool parts, and a completion is right when its `#### n` matches the reference's.
pub struct Gsm8k {
    items: Vec<Gsm8kItem>,
}

/// The solution's parts: text, and for each `<<expr=result>>` a python part (expr) and a
/// python-output part (result).
pub fn solution_parts(answer: &str) -> Vec<Part> {
    let part = |kind, text: &str| Part {
        kind,
        text: text.to_string(),
    };
    let mut parts = Vec::new();
    let mut rest = answer;
    while let Some(open) = rest.find("<<") {
        let Some(close) = rest[open..].find(">>").map(|c| open + c) else {
            break;
        };
        let inner = &rest[open + 2..close];
        let Some((expr, result)) = inner.rsplit_once('=') else {
            break;
        };
        if open > 0 {
            parts.push(part(PartKind::Text, &rest[..open]));
        }
        parts.push(part(PartKind::Python, expr));
        parts.push(part(PartKind::PythonOutput, result));
        rest = &rest[close + 2..];
    }
    if !rest.is_empty() {
        parts.push(part(PartKind::Text, rest));
    }
    parts
}

impl Gsm8k {
    /// Loads `eval/gsm8k.jsonl` from the fetched data or the committed samples ([`EvalData`]);
    /// errors name the file and the line that does not parse.
    pub fn load(data: EvalData) -> Result<Gsm8k> {
        let (text, source) = read_eval_file("eval", "gsm8k.jsonl", data)?;
        Gsm8k::new(parse_jsonl(&text, &source)?, &source)
    }

    /// Every item must have a final `#### answer`.
    pub fn new(items: Vec<Gsm8kItem>, source: &str) -> Result<Gsm8k> {
        if let Some(i) = items
            .iter()
            .position(|it| final_answer(&it.answer).is_none())
        {
            return Err(CoreError::File {
                path: source.to_string(),
                why: format!("item {}: field `answer` has no `#### <number>` line", i + 1),
            });
        }
        Ok(Gsm8k { items })
    }
}

impl Task for Gsm8k {
    fn name(&self) -> String {
        "GSM8K".into()
    }
    fn num_examples(&self) -> usize {
        self.items.len()
    }
    fn get_example(&self, i: usize) -> Result<Conversation> {
        let item = super::example_item(&self.items, i, "GSM8K")?;
        let mut answer = Message::assistant("");
        answer.content = Content::Parts(solution_parts(&item.answer));
        Ok(Conversation::new(vec![
            Message::user(&item.question),
            answer,
        ]))
    }
    fn evaluate(&self, conversation: &Conversation, completion: &str) -> bool {
        final_answers_match(conversation, completion)
    }
}
