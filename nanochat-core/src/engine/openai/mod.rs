//! The OpenAI chat-completions wire format over the engine (`/v1/chat/completions` and
//! `/v1/models` of `chat-web`): a request read and checked into a [`ChatRequest`] plus its
//! choices, stop strings and seed ([`OpenAiRequest`]), and the JSON of replies and stream
//! chunks ([`Reply`]). The server only moves these over HTTP.
//!
//! Accepted: `messages` (content a string or a list of parts, whose `text` parts are joined
//! with a newline; roles `system`, `developer` (= `system`), `user`, `assistant`; leading
//! system messages are merged into the first user turn), `model` (echoed back),
//! `temperature`, `max_tokens` or its alias `max_completion_tokens`, `top_k` (an extension),
//! `n`, `stop` (at most 4 strings of at most 256 characters), `seed`, `stream`,
//! `stream_options.include_usage`. Accepted at their defaults only, else refused naming the
//! field: `top_p` (1), `presence_penalty` and `frequency_penalty` (0), `logprobs` (false),
//! `top_logprobs`, `tools` and `functions` (none), `tool_choice` and `function_call` (`none`
//! or `auto`), `logit_bias` (empty), `response_format` (`text`). Accepted without effect:
//! [`NO_EFFECT`]. Any other field is refused, as OpenAI refuses fields it does not know.

mod reply;
#[cfg(test)]
mod tests;

pub use reply::{error_body, finish_reason, models_list, usage, Reply};

use serde_json::{Map, Value};

use super::number::{Decimal, Limit};
use super::request::{
    fields, number, required, sampling_numbers, typed, ChatMessage, ChatRequest, Fields,
    RequestError, NUM_SAMPLES,
};
use super::GenerateParams;

/// Most stop strings of a request.
pub const MAX_STOP: usize = 4;
/// Most characters of one stop string (matching costs up to its length squared per token).
pub const MAX_STOP_CHARS: usize = 256;
/// `seed`: an integer in 0-18446744073709551615.
pub const SEED: Limit = Limit::integers(0, u64::MAX as i128);
/// `top_p`: a number in 0-1 (only 1 is supported).
pub const TOP_P: Limit = Limit::numbers(0, 1);
/// `presence_penalty`, `frequency_penalty`: a number in -2 to 2 (only 0 is supported).
pub const PENALTY: Limit = Limit::numbers(-2, 2);
/// Request fields accepted without effect: they identify the caller, ask OpenAI to store the
/// exchange, or (`parallel_tool_calls`) only matter with tools.
pub const NO_EFFECT: [&str; 7] = [
    "user",
    "store",
    "metadata",
    "service_tier",
    "safety_identifier",
    "prompt_cache_key",
    "parallel_tool_calls",
];
/// Every field this endpoint reads.
const KNOWN: [&str; 22] = [
    "messages",
    "model",
    "temperature",
    "top_k",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "stop",
    "seed",
    "stream",
    "stream_options",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "top_logprobs",
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "logit_bias",
    "response_format",
];

/// A checked OpenAI chat-completions request.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenAiRequest {
    /// The messages (roles mapped, contents joined, leading system messages merged) and the
    /// sampling numbers.
    pub chat: ChatRequest,
    /// The `model` sent (echoed back).
    pub model: Option<String>,
    /// Choices, sampled independently from one prefill (1-8).
    pub n: usize,
    /// Stop strings (at most [`MAX_STOP`], none empty).
    pub stop: Vec<String>,
    /// `seed`: the same seed gives the same choices (within [`SEED`]); `None` draws one.
    pub seed: Option<u64>,
    /// `stream`: reply as server-sent `chat.completion.chunk` events instead of one object.
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk with the usage.
    pub include_usage: bool,
}

/// One message as sent, its JSON kinds checked.
struct SentMessage {
    role: String,
    /// Text parts, or the type of a part that is not text.
    parts: Vec<Result<String, String>>,
    extra: Vec<(String, Value)>,
}

fn malformed(s: String) -> RequestError {
    RequestError::Malformed(s)
}

fn invalid<T>(field: impl Into<String>, why: impl Into<String>) -> Result<T, RequestError> {
    Err(RequestError::Invalid {
        field: field.into(),
        why: why.into(),
    })
}

/// Reads one message's JSON kinds (a wrong kind is [`RequestError::Malformed`]).
fn read_message(i: usize, m: &Map<String, Value>) -> Result<SentMessage, RequestError> {
    let role = match m.get("role") {
        Some(Value::String(r)) => r.clone(),
        Some(_) => return Err(malformed(format!("messages[{i}].role: expected a string"))),
        None => return Err(malformed(format!("messages[{i}]: missing field `role`"))),
    };
    let parts = match m.get("content") {
        Some(Value::String(s)) => vec![Ok(s.clone())],
        Some(Value::Array(parts)) => parts
            .iter()
            .enumerate()
            .map(|(j, p)| {
                let at = format!("messages[{i}].content[{j}]");
                let kind = p.get("type").and_then(Value::as_str).ok_or_else(|| {
                    malformed(format!("{at}: a content part needs a string `type`"))
                })?;
                if kind != "text" {
                    return Ok(Err(kind.to_string()));
                }
                match p.get("text") {
                    Some(Value::String(t)) => Ok(Ok(t.clone())),
                    _ => Err(malformed(format!("{at}.text: expected a string"))),
                }
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(malformed(format!(
                "messages[{i}].content: expected a string or a list of content parts"
            )))
        }
    };
    let extra = m
        .iter()
        .filter(|(k, _)| *k != "role" && *k != "content")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(SentMessage { role, parts, extra })
}

/// A message's values: its role mapped, its text parts joined; what cannot be honoured is
/// refused naming it.
fn map_message(i: usize, m: SentMessage) -> Result<ChatMessage, RequestError> {
    let role = match &m.role[..] {
        "user" | "assistant" | "system" => m.role.clone(),
        "developer" => "system".into(),
        other => {
            return invalid(
                format!("messages[{i}].role"),
                format!("`{other}` is not user, assistant, system or developer"),
            )
        }
    };
    let mut texts = Vec::new();
    for (j, part) in m.parts.into_iter().enumerate() {
        match part {
            Ok(t) => texts.push(t),
            Err(kind) => {
                return invalid(
                    format!("messages[{i}].content[{j}]"),
                    format!("content parts of type `{kind}` are not supported (only `text`)"),
                )
            }
        }
    }
    for (k, v) in &m.extra {
        let empty = v.is_null() || v.as_array().is_some_and(|a| a.is_empty());
        match &k[..] {
            // A participant's name has no place in nanochat's chat format.
            "name" => {}
            "tool_calls" | "function_call" | "tool_call_id" | "audio" | "refusal" if empty => {}
            "tool_calls" | "function_call" | "tool_call_id" | "audio" | "refusal" => {
                return invalid(format!("messages[{i}].{k}"), "not supported")
            }
            _ => return invalid(format!("messages[{i}].{k}"), "not a message field"),
        }
    }
    Ok(ChatMessage {
        role,
        content: texts.join("\n"),
    })
}

/// `stop`: a string or a list of strings.
fn read_stop(f: &Fields) -> Result<Vec<String>, RequestError> {
    let bad = || malformed("stop: expected a string or a list of strings".into());
    match typed::<Value>(f, "stop")? {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s]),
        Some(Value::Array(a)) => a
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(bad()),
            })
            .collect(),
        Some(_) => Err(bad()),
    }
}

/// Refuses a number other than `default` (after checking its range).
fn only_default(
    f: &Fields,
    field: &str,
    limit: Limit,
    default: i128,
    why: &str,
) -> Result<(), RequestError> {
    if let Some(text) = number(f, field)? {
        if limit.check(field, text)? != Decimal::from_i128(default) {
            return invalid(
                field,
                format!("only {default} is supported ({why}); got {text}"),
            );
        }
    }
    Ok(())
}

impl OpenAiRequest {
    /// Reads and checks a body of `/v1/chat/completions`: first every JSON kind
    /// ([`RequestError::Malformed`]), then every value ([`RequestError::OutOfRange`],
    /// [`RequestError::Invalid`], each naming the field).
    pub fn from_json(body: &[u8]) -> Result<OpenAiRequest, RequestError> {
        let f = fields(body)?;
        // The JSON kinds.
        let sent: Vec<Map<String, Value>> = required(&f, "messages")?;
        let sent = sent
            .iter()
            .enumerate()
            .map(|(i, m)| read_message(i, m))
            .collect::<Result<Vec<_>, _>>()?;
        let model: Option<String> = typed(&f, "model")?;
        let stream = typed::<bool>(&f, "stream")?.unwrap_or(false);
        let stream_options: Option<Map<String, Value>> = typed(&f, "stream_options")?;
        let include_usage = match stream_options.as_ref().and_then(|o| o.get("include_usage")) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(malformed(
                    "stream_options.include_usage: expected a boolean".into(),
                ))
            }
        };
        let stop = read_stop(&f)?;
        let logprobs = typed::<bool>(&f, "logprobs")?.unwrap_or(false);
        let tools = typed::<Vec<Value>>(&f, "tools")?.unwrap_or_default();
        let functions = typed::<Vec<Value>>(&f, "functions")?.unwrap_or_default();
        let logit_bias = typed::<Map<String, Value>>(&f, "logit_bias")?.unwrap_or_default();
        let response_format: Option<Map<String, Value>> = typed(&f, "response_format")?;
        let (tool_choice, function_call) = (
            typed::<Value>(&f, "tool_choice")?,
            typed::<Value>(&f, "function_call")?,
        );
        let numbers = [
            "temperature",
            "top_k",
            "max_tokens",
            "max_completion_tokens",
            "n",
            "seed",
            "top_p",
            "presence_penalty",
            "frequency_penalty",
            "top_logprobs",
        ];
        for field in numbers {
            number(&f, field)?;
        }

        // The values.
        if let Some(k) = f
            .keys()
            .find(|k| !KNOWN.contains(&k.as_str()) && !NO_EFFECT.contains(&k.as_str()))
        {
            return invalid(k, "not a supported request field");
        }
        let (mt, mct) = (
            number(&f, "max_tokens")?,
            number(&f, "max_completion_tokens")?,
        );
        let max = match (mt, mct) {
            (Some(a), Some(b)) if Decimal::parse(a) != Decimal::parse(b) => {
                return invalid(
                    "max_completion_tokens",
                    format!("{b} differs from max_tokens ({a}): give one"),
                )
            }
            (Some(a), _) => ("max_tokens", Some(a)),
            (None, b) => ("max_completion_tokens", b),
        };
        let (temperature, max_tokens, top_k) =
            sampling_numbers(number(&f, "temperature")?, max, number(&f, "top_k")?)?;
        let n = match number(&f, "n")? {
            Some(t) => NUM_SAMPLES.int("n", t)? as usize,
            None => 1,
        };
        let seed = number(&f, "seed")?
            .map(|t| SEED.int("seed", t))
            .transpose()?;
        only_default(&f, "top_p", TOP_P, 1, "nucleus sampling is not implemented")?;
        for penalty in ["presence_penalty", "frequency_penalty"] {
            only_default(&f, penalty, PENALTY, 0, "penalties are not implemented")?;
        }
        if logprobs {
            return invalid(
                "logprobs",
                "only false is supported (log probabilities are not returned)",
            );
        }
        if number(&f, "top_logprobs")?.is_some() {
            return invalid(
                "top_logprobs",
                "not supported (log probabilities are not returned)",
            );
        }
        if !tools.is_empty() || !functions.is_empty() {
            let field = if tools.is_empty() {
                "functions"
            } else {
                "tools"
            };
            return invalid(field, "tool calling is not supported");
        }
        for (field, v) in [
            ("tool_choice", tool_choice),
            ("function_call", function_call),
        ] {
            if v.is_some_and(|v| v != "none" && v != "auto") {
                return invalid(
                    field,
                    "only `none` or `auto` is supported (tool calling is not)",
                );
            }
        }
        if !logit_bias.is_empty() {
            return invalid("logit_bias", "not supported (only an empty map)");
        }
        if response_format
            .is_some_and(|r| r.len() != 1 || r.get("type") != Some(&Value::from("text")))
        {
            return invalid("response_format", "only {\"type\": \"text\"} is supported");
        }
        if let Some(o) = &stream_options {
            if !stream {
                return invalid("stream_options", "only allowed when stream is true");
            }
            if let Some(k) = o
                .keys()
                .find(|k| *k != "include_usage" && *k != "include_obfuscation")
            {
                return invalid(format!("stream_options.{k}"), "not supported");
            }
        }
        if stop.len() > MAX_STOP {
            return invalid(
                "stop",
                format!("{} strings exceed the limit of {MAX_STOP}", stop.len()),
            );
        }
        if let Some(i) = stop.iter().position(|s| s.is_empty()) {
            return invalid(format!("stop[{i}]"), "an empty string cannot be matched");
        }
        if let Some(i) = stop.iter().position(|s| s.chars().count() > MAX_STOP_CHARS) {
            return invalid(
                format!("stop[{i}]"),
                format!(
                    "{} characters exceed the limit of {MAX_STOP_CHARS}",
                    stop[i].chars().count()
                ),
            );
        }
        let messages = sent
            .into_iter()
            .enumerate()
            .map(|(i, m)| map_message(i, m))
            .collect::<Result<Vec<_>, _>>()?;
        let mut chat = ChatRequest {
            messages,
            temperature,
            max_tokens,
            top_k,
        };
        chat.validate(true)?;
        merge_leading_system(&mut chat.messages);
        merge_same_roles(&mut chat.messages);
        Ok(OpenAiRequest {
            chat,
            model,
            n,
            stop,
            seed,
            stream,
            include_usage,
        })
    }

    /// The sampling parameters: this request's values, else `defaults`'; `n` samples.
    pub fn params(&self, defaults: &GenerateParams) -> GenerateParams {
        GenerateParams {
            num_samples: self.n,
            seed: self.seed.or(defaults.seed),
            ..self.chat.params(defaults)
        }
    }
}

/// What OpenAI clients send but nanochat's chat format cannot hold, made to fit: a system
/// message after the first turn becomes user text, and consecutive messages of one role
/// become one (joined by a blank line), since the format alternates user and assistant.
fn merge_same_roles(messages: &mut Vec<ChatMessage>) {
    let mut out: Vec<ChatMessage> = Vec::with_capacity(messages.len());
    for (i, mut m) in std::mem::take(messages).into_iter().enumerate() {
        if i > 0 && m.role == "system" {
            m.role = "user".into();
        }
        match out.last_mut() {
            Some(last) if last.role == m.role => {
                last.content.push_str("\n\n");
                last.content.push_str(&m.content);
            }
            _ => out.push(m),
        }
    }
    *messages = out;
}

/// Leading system messages become one (joined by a blank line): the chat format takes one.
fn merge_leading_system(messages: &mut Vec<ChatMessage>) {
    let k = messages.iter().take_while(|m| m.role == "system").count();
    if k > 1 {
        let text = messages[..k]
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n\n");
        messages.splice(
            ..k,
            [ChatMessage {
                role: "system".into(),
                content: text,
            }],
        );
    }
}
