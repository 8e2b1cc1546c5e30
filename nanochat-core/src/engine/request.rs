//! A chat request as the web server takes it, and its limits (nanochat's `chat_web.py`):
//! each violation is an error whose message names the limit.

use serde::Deserialize;

use crate::tokenizer::chat::{Content, Conversation, Message};

/// Most messages in one request.
pub const MAX_MESSAGES: usize = 500;
/// Most characters in one message.
pub const MAX_MESSAGE_CHARS: usize = 8000;
/// Most characters over all messages.
pub const MAX_TOTAL_CHARS: usize = 32000;
/// Temperature range.
pub const TEMPERATURE_RANGE: (f32, f32) = (0.0, 2.0);
/// top_k range.
pub const TOP_K_RANGE: (usize, usize) = (1, 200);
/// max_tokens range.
pub const MAX_TOKENS_RANGE: (usize, usize) = (1, 4096);

/// One message of a request: a role and its text.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// `{"messages": [...], "temperature"?, "max_tokens"?, "top_k"?}`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<usize>,
    pub top_k: Option<usize>,
}

impl ChatRequest {
    /// Checks every limit; `allow_system` accepts `system` messages (the OpenAI endpoint; they
    /// are merged into the first user turn by the chat format). The error names the limit.
    pub fn validate(&self, allow_system: bool) -> Result<(), String> {
        if self.messages.is_empty() {
            return Err("messages: at least one message is required".into());
        }
        if self.messages.len() > MAX_MESSAGES {
            return Err(format!(
                "messages: {} messages exceed the limit of {MAX_MESSAGES}",
                self.messages.len()
            ));
        }
        let mut total = 0;
        for (i, m) in self.messages.iter().enumerate() {
            let ok_role =
                m.role == "user" || m.role == "assistant" || (allow_system && m.role == "system");
            if !ok_role {
                let allowed = if allow_system {
                    "user, assistant or system"
                } else {
                    "user or assistant"
                };
                return Err(format!("messages[{i}].role: `{}` is not {allowed}", m.role));
            }
            let chars = m.content.chars().count();
            if chars > MAX_MESSAGE_CHARS {
                return Err(format!(
                    "messages[{i}].content: {chars} characters exceed the limit of {MAX_MESSAGE_CHARS} per message"
                ));
            }
            total += chars;
        }
        if total > MAX_TOTAL_CHARS {
            return Err(format!(
                "messages: {total} characters in all exceed the limit of {MAX_TOTAL_CHARS}"
            ));
        }
        if let Some(t) = self.temperature {
            let (lo, hi) = TEMPERATURE_RANGE;
            if !(lo..=hi).contains(&t) {
                return Err(format!("temperature: {t} is outside {lo}-{hi}"));
            }
        }
        if let Some(k) = self.top_k {
            let (lo, hi) = TOP_K_RANGE;
            if !(lo..=hi).contains(&k) {
                return Err(format!("top_k: {k} is outside {lo}-{hi}"));
            }
        }
        if let Some(n) = self.max_tokens {
            let (lo, hi) = MAX_TOKENS_RANGE;
            if !(lo..=hi).contains(&n) {
                return Err(format!("max_tokens: {n} is outside {lo}-{hi}"));
            }
        }
        Ok(())
    }

    /// The conversation to answer (assistant turns with tool use become their parts, as
    /// [`Message::assistant_from_reply`] reads them).
    pub fn conversation(&self) -> Conversation {
        Conversation::new(
            self.messages
                .iter()
                .map(|m| match &m.role[..] {
                    "assistant" => Message::assistant_from_reply(&m.content),
                    _ => Message {
                        role: m.role.clone(),
                        content: Content::Text(m.content.clone()),
                    },
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(messages: Vec<(&str, String)>) -> ChatRequest {
        ChatRequest {
            messages: messages
                .into_iter()
                .map(|(role, content)| ChatMessage {
                    role: role.into(),
                    content,
                })
                .collect(),
            temperature: None,
            max_tokens: None,
            top_k: None,
        }
    }

    #[test]
    fn every_limit_is_enforced_and_named() {
        let ok = req(vec![("user", "hi".into())]);
        assert_eq!(ok.validate(false), Ok(()));
        let cases: Vec<(ChatRequest, &str)> = vec![
            (req(vec![]), "at least one message"),
            (req(vec![("user", "x".into()); 501]), "limit of 500"),
            (req(vec![("user", "x".repeat(8001))]), "limit of 8000"),
            (req(vec![("user", "x".repeat(8000)); 5]), "limit of 32000"),
            (req(vec![("system", "x".into())]), "messages[0].role"),
            (req(vec![("tool", "x".into())]), "messages[0].role"),
            (
                ChatRequest {
                    temperature: Some(2.5),
                    ..ok.clone()
                },
                "temperature",
            ),
            (
                ChatRequest {
                    temperature: Some(-0.1),
                    ..ok.clone()
                },
                "temperature",
            ),
            (
                ChatRequest {
                    top_k: Some(0),
                    ..ok.clone()
                },
                "top_k",
            ),
            (
                ChatRequest {
                    top_k: Some(201),
                    ..ok.clone()
                },
                "top_k",
            ),
            (
                ChatRequest {
                    max_tokens: Some(0),
                    ..ok.clone()
                },
                "max_tokens",
            ),
            (
                ChatRequest {
                    max_tokens: Some(4097),
                    ..ok.clone()
                },
                "max_tokens",
            ),
        ];
        for (r, needle) in cases {
            let err = r.validate(false).unwrap_err();
            assert!(err.contains(needle), "{err} should name {needle}");
        }
        // Limits are inclusive; characters, not bytes, count.
        let edge = ChatRequest {
            temperature: Some(2.0),
            top_k: Some(200),
            max_tokens: Some(4096),
            ..req(vec![("user", "\u{e9}".repeat(8000)); 4])
        };
        assert_eq!(edge.validate(false), Ok(()));
        assert_eq!(
            req(vec![("system", "be brief".into()), ("user", "hi".into())]).validate(true),
            Ok(())
        );
    }
}
