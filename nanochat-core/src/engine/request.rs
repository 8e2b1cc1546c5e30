//! A chat request as the web server takes it, and its limits (nanochat's `chat_web.py`):
//! each violation is an error whose message names the field and the limit.
//!
//! A body is read in two passes. First the JSON kinds: malformed JSON or a field of the wrong
//! kind (a string for `max_tokens`) is [`RequestError::Malformed`] (HTTP 422). Then the values:
//! every number is checked as written, before any conversion ([`super::Limit`]), so a
//! negative, fractional, too large or astronomically large number is
//! [`RequestError::OutOfRange`] (HTTP 400) naming the field and its range, like every other
//! limit ([`RequestError::Invalid`]).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;
use thiserror::Error;

use super::number::Limit;
use super::GenerateParams;
use crate::tokenizer::chat::{Content, Conversation, Message};

/// Most messages in one request.
pub const MAX_MESSAGES: usize = 500;
/// Most characters in one message.
pub const MAX_MESSAGE_CHARS: usize = 8000;
/// Most characters over all messages.
pub const MAX_TOTAL_CHARS: usize = 32000;
/// `temperature`: a number in 0-2.
pub const TEMPERATURE: Limit = Limit::numbers(0, 2);
/// `top_k`: an integer in 1-200.
pub const TOP_K: Limit = Limit::integers(1, 200);
/// `max_tokens`: an integer in 1-4096.
pub const MAX_TOKENS: Limit = Limit::integers(1, 4096);
/// Samples of one prompt (OpenAI's `n`, the `-n` of chat-eval and chat-rl): an integer in 1-8.
pub const NUM_SAMPLES: Limit = Limit::integers(1, 8);

/// Why a request is refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum RequestError {
    /// Not JSON, or a field of the wrong JSON kind or shape (HTTP 422).
    #[error("invalid request body: {0}")]
    Malformed(String),
    /// A number outside its field's range, fractional where an integer is meant, or not a
    /// finite number (HTTP 400).
    #[error("{field}: {value} is not {expected}")]
    OutOfRange {
        /// The field (`temperature`, `top_k`, `max_tokens`, `n`) or flag.
        field: String,
        /// The value as written (shortened when very long).
        value: String,
        /// `an integer in 1-4096`, `a number in 0-2`.
        expected: String,
    },
    /// Any other limit, or a value this server does not support (HTTP 400): the field
    /// (`messages[2].role`, `stop`) and why.
    #[error("{field}: {why}")]
    Invalid {
        /// The field at fault, with its index (`messages[2].role`).
        field: String,
        /// What is wrong with it.
        why: String,
    },
}

impl RequestError {
    /// The HTTP status the server answers with: 422 for [`RequestError::Malformed`], else 400.
    pub fn http_status(&self) -> u16 {
        match self {
            RequestError::Malformed(_) => 422,
            _ => 400,
        }
    }
}

/// The top-level fields of a JSON object body, each as written.
pub(crate) type Fields = BTreeMap<String, Box<RawValue>>;

/// Reads a body as a JSON object; anything else is [`RequestError::Malformed`].
pub(crate) fn fields(body: &[u8]) -> Result<Fields, RequestError> {
    serde_json::from_slice(body).map_err(|e| RequestError::Malformed(e.to_string()))
}

/// The JSON kind of a value's text, for an error message.
fn kind(text: &str) -> &'static str {
    match text.trim_start().as_bytes().first() {
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'[') => "an array",
        Some(b'{') => "an object",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// The text of a numeric field, unconverted; `None` when absent or null. Another JSON kind is
/// [`RequestError::Malformed`] naming the field.
pub(crate) fn number<'a>(f: &'a Fields, field: &str) -> Result<Option<&'a str>, RequestError> {
    let Some(raw) = f.get(field) else {
        return Ok(None);
    };
    let text = raw.get().trim();
    match kind(text) {
        "a number" => Ok(Some(text)),
        "null" => Ok(None),
        other => Err(RequestError::Malformed(format!(
            "{field}: expected a number, found {other}"
        ))),
    }
}

/// A field read as `T`; `None` when absent or null. The wrong kind is
/// [`RequestError::Malformed`] naming the field.
pub(crate) fn typed<T: DeserializeOwned>(
    f: &Fields,
    field: &str,
) -> Result<Option<T>, RequestError> {
    match f.get(field) {
        None => Ok(None),
        Some(raw) if raw.get().trim() == "null" => Ok(None),
        Some(raw) => serde_json::from_str(raw.get())
            .map(Some)
            .map_err(|e| RequestError::Malformed(format!("{field}: {e}"))),
    }
}

/// `messages`, which must be present.
pub(crate) fn required<T: DeserializeOwned>(f: &Fields, field: &str) -> Result<T, RequestError> {
    typed(f, field)?.ok_or_else(|| RequestError::Malformed(format!("missing field `{field}`")))
}

/// One message of a request: a role and its text.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ChatMessage {
    /// `user` or `assistant` (and `system` on the OpenAI endpoint).
    pub role: String,
    /// The message's text, at most [`MAX_MESSAGE_CHARS`] characters.
    pub content: String,
}

/// `{"messages": [...], "temperature"?, "max_tokens"?, "top_k"?}`, its numbers checked and
/// converted.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatRequest {
    /// The conversation so far, ending with the user's message (1 to [`MAX_MESSAGES`]).
    pub messages: Vec<ChatMessage>,
    /// Softmax temperature within [`TEMPERATURE`]; `None`: the server's default.
    pub temperature: Option<f32>,
    /// Most tokens to generate within [`MAX_TOKENS`]; `None`: the server's default.
    pub max_tokens: Option<usize>,
    /// Top-k sampling within [`TOP_K`]; `None`: the server's default.
    pub top_k: Option<usize>,
}

/// `temperature`, `max_tokens`, `top_k`, converted.
pub(crate) type Sampling = (Option<f32>, Option<usize>, Option<usize>);

/// `temperature`, `max_tokens` (sent as `max_field`) and `top_k` as written, checked against
/// their limits, then converted.
pub(crate) fn sampling_numbers(
    temperature: Option<&str>,
    (max_field, max_tokens): (&str, Option<&str>),
    top_k: Option<&str>,
) -> Result<Sampling, RequestError> {
    let t = temperature
        .map(|t| TEMPERATURE.float("temperature", t))
        .transpose()?;
    let m = max_tokens
        .map(|m| MAX_TOKENS.int(max_field, m))
        .transpose()?;
    let k = top_k.map(|k| TOP_K.int("top_k", k)).transpose()?;
    Ok((
        t.map(|t| t as f32),
        m.map(|m| m as usize),
        k.map(|k| k as usize),
    ))
}

impl ChatRequest {
    /// Reads and checks a body of nanochat's `/chat/completions` (other fields are ignored, as
    /// nanochat does). Errors: see the module doc.
    pub fn from_json(body: &[u8]) -> Result<ChatRequest, RequestError> {
        let f = fields(body)?;
        let messages: Vec<ChatMessage> = required(&f, "messages")?;
        let (t, m, k) = (
            number(&f, "temperature")?,
            number(&f, "max_tokens")?,
            number(&f, "top_k")?,
        );
        let (temperature, max_tokens, top_k) = sampling_numbers(t, ("max_tokens", m), k)?;
        let req = ChatRequest {
            messages,
            temperature,
            max_tokens,
            top_k,
        };
        req.validate(false)?;
        Ok(req)
    }

    /// Checks every limit; `allow_system` accepts `system` messages (the OpenAI endpoint; they
    /// are merged into the first user turn by the chat format). The error names the limit.
    pub fn validate(&self, allow_system: bool) -> Result<(), RequestError> {
        let invalid = |field: String, why: String| Err(RequestError::Invalid { field, why });
        if self.messages.is_empty() {
            return invalid("messages".into(), "at least one message is required".into());
        }
        if self.messages.len() > MAX_MESSAGES {
            return invalid(
                "messages".into(),
                format!(
                    "{} messages exceed the limit of {MAX_MESSAGES}",
                    self.messages.len()
                ),
            );
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
                return invalid(
                    format!("messages[{i}].role"),
                    format!("`{}` is not {allowed}", m.role),
                );
            }
            let chars = m.content.chars().count();
            if chars > MAX_MESSAGE_CHARS {
                return invalid(
                    format!("messages[{i}].content"),
                    format!(
                        "{chars} characters exceed the limit of {MAX_MESSAGE_CHARS} per message"
                    ),
                );
            }
            total += chars;
        }
        if total > MAX_TOTAL_CHARS {
            return invalid(
                "messages".into(),
                format!("{total} characters in all exceed the limit of {MAX_TOTAL_CHARS}"),
            );
        }
        // Values set in code obey the same limits as those read from JSON.
        if let Some(t) = self.temperature {
            TEMPERATURE.check("temperature", &t.to_string())?;
        }
        if let Some(k) = self.top_k {
            TOP_K.check("top_k", &k.to_string())?;
        }
        if let Some(n) = self.max_tokens {
            MAX_TOKENS.check("max_tokens", &n.to_string())?;
        }
        Ok(())
    }

    /// The sampling parameters: this request's values, else `defaults`' (one sample).
    pub fn params(&self, defaults: &GenerateParams) -> GenerateParams {
        GenerateParams {
            num_samples: 1,
            max_tokens: self.max_tokens.unwrap_or(defaults.max_tokens),
            temperature: self.temperature.unwrap_or(defaults.temperature),
            top_k: self.top_k.or(defaults.top_k),
            seed: defaults.seed,
        }
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
mod tests;
