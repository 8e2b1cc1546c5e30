//! The JSON of OpenAI replies: a whole completion, stream chunks, usage, the model list.

use serde_json::{json, Value};

use crate::engine::{Completion, FinishReason};

/// A choice's `finish_reason`: `stop` (its end token or a stop string), else `length` (also
/// when the model's context is full).
pub fn finish_reason(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop => "stop",
        FinishReason::Length | FinishReason::ContextFull => "length",
    }
}

/// `usage`: the prompt once (one prefill serves every choice) and the tokens of all choices.
pub fn usage(prompt_tokens: usize, choices: &[Completion]) -> Value {
    let completion: usize = choices.iter().map(|c| c.tokens).sum();
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
    })
}

/// The body of an error answer in OpenAI's format (`error.message` is what OpenAI clients
/// show; `param` is the field the message starts with, if any), with nanochat's `detail`
/// beside it.
pub fn error_body(message: &str, status: u16) -> Value {
    let param = message
        .split_once(": ")
        .map(|(p, _)| p)
        .filter(|p| !p.is_empty() && !p.contains(' '));
    let kind = if status >= 500 {
        "server_error"
    } else {
        "invalid_request_error"
    };
    json!({
        "detail": message,
        "error": {"message": message, "type": kind, "param": param, "code": null},
    })
}

/// `GET /v1/models`: the one model served.
pub fn models_list(id: &str, created: u64) -> Value {
    json!({
        "object": "list",
        "data": [{"id": id, "object": "model", "created": created, "owned_by": "nanochat"}],
    })
}

/// What every response to one request shares.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    /// `chatcmpl-...`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The model named in the request (or the served one).
    pub model: String,
    /// Whether the stream ends with a usage chunk (and every chunk has `"usage": null`).
    pub include_usage: bool,
}

impl Reply {
    /// A whole `chat.completion`: the choices in order, with `index` 0..n-1, and the usage.
    pub fn completion(&self, prompt_tokens: usize, choices: &[Completion]) -> Value {
        let list: Vec<Value> = choices
            .iter()
            .enumerate()
            .map(|(i, c)| {
                json!({
                    "index": i,
                    "message": {"role": "assistant", "content": c.text},
                    "logprobs": null,
                    "finish_reason": finish_reason(c.finish),
                })
            })
            .collect();
        json!({
            "id": self.id, "object": "chat.completion", "created": self.created,
            "model": self.model, "choices": list, "usage": usage(prompt_tokens, choices),
        })
    }

    fn chunk(&self, index: usize, delta: Value, finish: Option<FinishReason>) -> Value {
        let mut c = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model,
            "choices": [{
                "index": index, "delta": delta, "logprobs": null,
                "finish_reason": finish.map(finish_reason),
            }],
        });
        if self.include_usage {
            c["usage"] = Value::Null;
        }
        c
    }

    /// The first chunk of choice `index`: its role.
    pub fn opening(&self, index: usize) -> Value {
        self.chunk(index, json!({"role": "assistant", "content": ""}), None)
    }

    /// A piece of choice `index`'s text.
    pub fn text(&self, index: usize, text: &str) -> Value {
        self.chunk(index, json!({ "content": text }), None)
    }

    /// The last chunk of choice `index`: why it ended.
    pub fn finish(&self, index: usize, reason: FinishReason) -> Value {
        self.chunk(index, json!({}), Some(reason))
    }

    /// The usage chunk that ends the stream (no choices), when asked for.
    pub fn usage_chunk(&self, prompt_tokens: usize, choices: &[Completion]) -> Option<Value> {
        self.include_usage.then(|| {
            json!({
                "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [], "usage": usage(prompt_tokens, choices),
            })
        })
    }
}
