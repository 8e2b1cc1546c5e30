//! nanochat's chat format: conversations (`{"messages": [{"role", "content"}]}`) rendered to
//! token ids with a training mask (1 where the assistant's tokens are to be learned).
//!
//! ```text
//! <|bos|> <|user_start|> user text <|user_end|> <|assistant_start|> reply <|assistant_end|> ...
//!   0          0            0          0               0             1           1
//! ```
//! Assistant content is a string or a list of parts: `text` (mask 1), `python` (tool call:
//! `<|python_start|> code <|python_end|>`, mask 1) and `python_output` (the tool's answer:
//! `<|output_start|> text <|output_end|>`, mask 0, since the tool, not the model, writes it).

use serde::{Deserialize, Serialize};

use super::{tok_err, Tokenizer};
use crate::Result;

/// One conversation, as nanochat's tasks yield them (`{"messages": [...]}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// The messages in order: an optional system message, then user and assistant turns.
    pub messages: Vec<Message>,
}

/// One message of a [`Conversation`]: `{"role", "content"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `system` (first message only), `user` or `assistant`.
    pub role: String,
    /// Its text, or (assistant only) its parts.
    pub content: Content,
}

/// A message's content: plain text, or (assistant only) a list of parts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// A JSON string.
    Text(String),
    /// A JSON list of `{"type", "text"}` parts, rendered in order.
    Parts(Vec<Part>),
}

/// One part of an assistant message: `{"type": "text" | "python" | "python_output", "text"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Part {
    /// The JSON `type`.
    #[serde(rename = "type")]
    pub kind: PartKind,
    /// The part's text (prose, Python code or the tool's output).
    pub text: String,
}

/// What a [`Part`] holds, and so how it is rendered and masked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartKind {
    /// Prose, rendered as is (mask 1).
    Text,
    /// A tool call: `<|python_start|> code <|python_end|>` (mask 1).
    Python,
    /// The tool's answer: `<|output_start|> text <|output_end|>` (mask 0).
    PythonOutput,
}

impl Message {
    /// A `user` message of plain text.
    pub fn user(text: &str) -> Message {
        Message {
            role: "user".into(),
            content: Content::Text(text.into()),
        }
    }

    /// An `assistant` message of plain text.
    pub fn assistant(text: &str) -> Message {
        Message {
            role: "assistant".into(),
            content: Content::Text(text.into()),
        }
    }

    /// An assistant message from a generated reply's text, where tool use appears as the
    /// special tokens' names (`<|python_start|>code<|python_end|><|output_start|>result<|output_end|>`):
    /// split into `text`, `python` and `python_output` parts, so the reply renders back to the
    /// same special tokens (plain text when there is no tool use).
    pub fn assistant_from_reply(reply: &str) -> Message {
        const MARKS: [(&str, &str, PartKind); 2] = [
            ("<|python_start|>", "<|python_end|>", PartKind::Python),
            ("<|output_start|>", "<|output_end|>", PartKind::PythonOutput),
        ];
        let mut parts = Vec::new();
        let mut rest = reply;
        let push = |parts: &mut Vec<Part>, kind, text: &str| {
            if !text.is_empty() {
                parts.push(Part {
                    kind,
                    text: text.to_string(),
                });
            }
        };
        loop {
            let next = MARKS
                .iter()
                .filter_map(|(open, close, kind)| {
                    rest.find(open).map(|i| (i, *open, *close, *kind))
                })
                .min_by_key(|m| m.0);
            let Some((i, open, close, kind)) = next else {
                break;
            };
            push(&mut parts, PartKind::Text, &rest[..i]);
            let inner = &rest[i + open.len()..];
            // An unclosed block (a reply cut short) runs to the end.
            let end = inner.find(close).unwrap_or(inner.len());
            push(&mut parts, kind, &inner[..end]);
            rest = inner.get(end + close.len()..).unwrap_or("");
        }
        if parts.is_empty() || parts.iter().all(|p| p.kind == PartKind::Text) {
            return Message::assistant(reply);
        }
        push(&mut parts, PartKind::Text, rest);
        Message {
            role: "assistant".into(),
            content: Content::Parts(parts),
        }
    }

    /// A `system` message of plain text (merged into the first user turn when rendered).
    pub fn system(text: &str) -> Message {
        Message {
            role: "system".into(),
            content: Content::Text(text.into()),
        }
    }
}

impl Conversation {
    /// A conversation of these messages.
    pub fn new(messages: Vec<Message>) -> Conversation {
        Conversation { messages }
    }

    /// Parses `{"messages": [...]}`.
    pub fn from_json(s: &str) -> Result<Conversation> {
        serde_json::from_str(s)
            .map_err(|e| tok_err("chat format", format!("conversation JSON: {e}")))
    }
}

/// The messages with a leading system message merged into the first user message.
fn merged_messages(conv: &Conversation) -> Result<Vec<Message>> {
    let msgs = &conv.messages;
    if msgs.is_empty() {
        return Err(tok_err(
            "chat format",
            "a conversation needs at least one message",
        ));
    }
    if msgs[0].role != "system" {
        return Ok(msgs.clone());
    }
    let (Content::Text(system), Some(first)) = (&msgs[0].content, msgs.get(1)) else {
        return Err(tok_err(
            "chat format",
            "a system message must be text and be followed by a user message",
        ));
    };
    match (&first.role[..], &first.content) {
        ("user", Content::Text(user)) => {
            let mut out = vec![Message::user(&format!("{system}\n\n{user}"))];
            out.extend(msgs[2..].iter().cloned());
            Ok(out)
        }
        _ => Err(tok_err(
            "chat format",
            "a system message must be followed by a user message with text content",
        )),
    }
}

impl Tokenizer {
    /// Token ids and training mask (1: trained on), of equal length, of a conversation,
    /// truncated to `max_tokens` (nanochat's default is 2048): `render_conversation` in
    /// nanochat's `tokenizer.py`. Errors: [`CoreError::Tokenizer`](crate::CoreError::Tokenizer)
    /// (`chat format`) for no messages, roles that do not alternate user/assistant, list content
    /// in a user message, or a misplaced system message.
    pub fn render_conversation(
        &self,
        conv: &Conversation,
        max_tokens: usize,
    ) -> Result<(Vec<u32>, Vec<u8>)> {
        let messages = merged_messages(conv)?;
        let special = |name: &str| self.encode_special(name);
        let (user_start, user_end) = (special("<|user_start|>")?, special("<|user_end|>")?);
        let (asst_start, asst_end) = (
            special("<|assistant_start|>")?,
            special("<|assistant_end|>")?,
        );
        let (py_start, py_end) = (special("<|python_start|>")?, special("<|python_end|>")?);
        let (out_start, out_end) = (special("<|output_start|>")?, special("<|output_end|>")?);
        let mut ids = vec![self.get_bos_token_id()];
        let mut mask = vec![0u8];
        let mut add = |tokens: &[u32], m: u8| {
            ids.extend_from_slice(tokens);
            mask.extend(std::iter::repeat_n(m, tokens.len()));
        };
        for (i, msg) in messages.iter().enumerate() {
            let expected = if i % 2 == 0 { "user" } else { "assistant" };
            if msg.role != expected {
                return Err(tok_err("chat format", format!(
                    "message {i} has role `{}` where `{expected}` was expected: roles must alternate user/assistant, starting with user",
                    msg.role
                )));
            }
            match (&msg.content, expected) {
                (Content::Text(t), "user") => {
                    add(&[user_start], 0);
                    add(&self.encode(t), 0);
                    add(&[user_end], 0);
                }
                (Content::Parts(_), "user") => {
                    return Err(tok_err(
                        "chat format",
                        format!("message {i}: user content must be a string"),
                    ))
                }
                (content, _) => {
                    add(&[asst_start], 0);
                    match content {
                        Content::Text(t) => add(&self.encode(t), 1),
                        Content::Parts(parts) => {
                            for p in parts {
                                let body = self.encode(&p.text);
                                match p.kind {
                                    PartKind::Text => add(&body, 1),
                                    PartKind::Python => {
                                        add(&[py_start], 1);
                                        add(&body, 1);
                                        add(&[py_end], 1);
                                    }
                                    PartKind::PythonOutput => {
                                        add(&[out_start], 0);
                                        add(&body, 0);
                                        add(&[out_end], 0);
                                    }
                                }
                            }
                        }
                    }
                    add(&[asst_end], 1);
                }
            }
        }
        ids.truncate(max_tokens);
        mask.truncate(max_tokens);
        Ok((ids, mask))
    }

    /// The prompt for the assistant's next reply: the conversation must end with an assistant
    /// message, which is dropped; the rest is rendered and `<|assistant_start|>` appended
    /// (nanochat's `render_for_completion`). Errors: as [`Tokenizer::render_conversation`], and
    /// a last message that is not the assistant's.
    pub fn render_for_completion(&self, conv: &Conversation) -> Result<Vec<u32>> {
        match conv.messages.last() {
            Some(m) if m.role == "assistant" => {}
            _ => {
                return Err(tok_err(
                    "chat format",
                    "render_for_completion: the last message must be from the assistant",
                ))
            }
        }
        let head = Conversation {
            messages: conv.messages[..conv.messages.len() - 1].to_vec(),
        };
        let (mut ids, _) = self.render_conversation(&head, usize::MAX)?;
        ids.push(self.encode_special("<|assistant_start|>")?);
        Ok(ids)
    }
}
