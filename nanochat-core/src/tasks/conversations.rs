//! Conversation files as tasks: nanochat's CustomJSON (one conversation per line: a bare array
//! of `{"role", "content"}` messages as nanochat writes it, or `{"messages": [...]}`), the chat
//! sets fetched by scripts/fetch_data.sh (or their committed samples), the identity set.

use std::path::{Path, PathBuf};

use super::{content_text, Task};
use crate::tokenizer::chat::Conversation;
use crate::{CoreError, Result};

static IDENTITY: &str = include_str!("../../../data/identity.jsonl");
static CHITCHAT_SAMPLE: &str = include_str!("../../../data/samples/chitchat.jsonl");
static CHATTERBOT_SAMPLE: &str = include_str!("../../../data/samples/chatterbot.jsonl");

/// The data folder of this process: `$NANOCHAT_DATA_DIR`, else `<base dir>/data` (where
/// scripts/fetch_data.sh writes), as [`crate::paths::installed`] gives it.
pub fn data_dir() -> Result<PathBuf> {
    Ok(crate::paths::installed()?.data_dir.clone())
}

/// A task over a conversation file (nanochat's `tasks/customjson.py` `CustomJSON`): every line
/// one conversation, served in file order.
pub struct CustomJson {
    name: String,
    conversations: Vec<Conversation>,
}

/// One conversation per non-empty line, in either shape: nanochat's CustomJSON line (a bare
/// array of messages, as its `identity_conversations.jsonl`) or `{"messages": [...]}` (the chat
/// sets and identity set here). Errors name the file and line.
fn parse(text: &str, source: &str) -> Result<Vec<Conversation>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let bad = |e: serde_json::Error| CoreError::File {
                path: source.to_string(),
                why: format!("line {}: not a conversation: {e}", i + 1),
            };
            let c: Conversation = if l.trim_start().starts_with('[') {
                Conversation::new(serde_json::from_str(l).map_err(bad)?)
            } else {
                serde_json::from_str(l).map_err(bad)?
            };
            if c.messages.is_empty() {
                return Err(CoreError::File {
                    path: source.to_string(),
                    why: format!("line {}: no messages", i + 1),
                });
            }
            Ok(c)
        })
        .collect()
}

impl CustomJson {
    /// A JSONL file of conversations, one per line: nanochat's bare array of messages or
    /// `{"messages": [...]}`. Errors: the file cannot be read; a line is not a conversation or
    /// has no messages (file and line named).
    pub fn from_file(path: &Path) -> Result<CustomJson> {
        let text = std::fs::read_to_string(path).map_err(|e| CoreError::io(path, e))?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "custom".into());
        Ok(CustomJson {
            conversations: parse(&text, &path.display().to_string())?,
            name,
        })
    }

    /// The identity conversations shipped with the project (data/identity.jsonl).
    pub fn identity() -> Result<CustomJson> {
        Ok(CustomJson {
            name: "identity".into(),
            conversations: parse(IDENTITY, "data/identity.jsonl")?,
        })
    }

    /// A chat set: `$NANOCHAT_DATA_DIR/chat/<name>.jsonl` when fetched, else its committed sample.
    pub fn chat_set(name: &str) -> Result<CustomJson> {
        let fetched = data_dir()?.join("chat").join(format!("{name}.jsonl"));
        if fetched.exists() {
            let mut t = CustomJson::from_file(&fetched)?;
            t.name = name.to_string();
            return Ok(t);
        }
        let sample = match name {
            "chitchat" => CHITCHAT_SAMPLE,
            "chatterbot" => CHATTERBOT_SAMPLE,
            _ => {
                return Err(CoreError::Unknown {
                    kind: "chat set",
                    name: name.to_string(),
                    expected: "chitchat or chatterbot".into(),
                })
            }
        };
        Ok(CustomJson {
            name: name.to_string(),
            conversations: parse(sample, &format!("data/samples/{name}.jsonl"))?,
        })
    }
}

impl Task for CustomJson {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn num_examples(&self) -> usize {
        self.conversations.len()
    }
    fn get_example(&self, i: usize) -> Result<Conversation> {
        super::example_item(&self.conversations, i, &self.name).cloned()
    }
    /// Whether the completion is the reference reply (whitespace-trimmed).
    fn evaluate(&self, conversation: &Conversation, completion: &str) -> bool {
        conversation
            .messages
            .last()
            .is_some_and(|m| content_text(&m.content).trim() == completion.trim())
    }
}
