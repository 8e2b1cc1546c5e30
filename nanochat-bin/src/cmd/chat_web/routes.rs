//! The HTTP API of `chat-web`: nanochat's `/chat/completions` (SSE), `/health`, `/stats`, the
//! chat page at `/`, and `/v1/chat/completions` in the OpenAI wire format.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream};
use futures_util::StreamExt;
use nanochat_core::engine::request::{ChatMessage, ChatRequest, MAX_TOTAL_CHARS};
use nanochat_core::engine::{completion_prompt, Completion, FinishReason, GenerateParams};
use nanochat_core::tokenizer::Tokenizer;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;

use super::pool::{Job, Pool, WorkerEvent};

/// The chat page, one self-contained HTML file.
const PAGE: &str = include_str!("page.html");

pub struct AppState {
    pub pool: Pool,
    pub tokenizer: Tokenizer,
    pub block_size: usize,
    pub temperature: f32,
    pub top_k: usize,
    pub max_tokens: usize,
    pub next_id: AtomicU64,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/health", get(health))
        .route("/stats", get(stats))
        .route("/chat/completions", post(chat_completions))
        .route("/v1/chat/completions", post(openai_completions))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

fn error(status: StatusCode, detail: impl Into<String>) -> Response {
    (status, Json(json!({ "detail": detail.into() }))).into_response()
}

async fn health(State(s): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "ready": true,
        "num_gpus": s.pool.total(),
        "available_workers": s.pool.available(),
    }))
}

async fn stats(State(s): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let (total, free) = (s.pool.total(), s.pool.available());
    let workers: Vec<_> = s
        .pool
        .devices
        .iter()
        .enumerate()
        .map(|(i, d)| json!({ "gpu_id": i, "device": d }))
        .collect();
    Json(json!({
        "total_workers": total,
        "available_workers": free,
        "busy_workers": total - free,
        "workers": workers,
    }))
}

/// Sets the job's cancel flag when the response (or the handler) is dropped: a client that
/// goes away frees its worker at the worker's next token.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A started generation: the worker's id, its events, the cancel guard, the prompt's length.
struct Started {
    gpu: usize,
    events: UnboundedReceiver<WorkerEvent>,
    guard: CancelOnDrop,
    prompt_tokens: usize,
}

/// Largest request body read (far above what the character limits allow: 32,000 characters
/// are at most 128 KB of UTF-8, plus the JSON around them).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Parses a body as `T`: a body over [`MAX_BODY_BYTES`] is a 400 naming the character limit;
/// malformed JSON or wrong types are 422 with the parser's detail.
fn parse<T: for<'de> Deserialize<'de>>(body: Result<Bytes, BytesRejection>) -> Result<T, Response> {
    let body = body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(_) => error(
            StatusCode::BAD_REQUEST,
            format!("request body over {MAX_BODY_BYTES} bytes: messages exceed the limit of {MAX_TOTAL_CHARS} characters"),
        ),
        other => error(StatusCode::UNPROCESSABLE_ENTITY, format!("invalid request body: {other}")),
    })?;
    serde_json::from_slice(&body).map_err(|e| {
        error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("invalid request body: {e}"),
        )
    })
}

/// Validates, renders the prompt, waits for a worker and starts the job.
async fn start(s: &AppState, req: &ChatRequest, allow_system: bool) -> Result<Started, Response> {
    req.validate(allow_system)
        .map_err(|d| error(StatusCode::BAD_REQUEST, d))?;
    let prompt = completion_prompt(&s.tokenizer, &req.conversation())
        .map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))?;
    if prompt.len() >= s.block_size {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!(
                "the conversation is {} tokens: no room left in the model's context of {} tokens",
                prompt.len(),
                s.block_size
            ),
        ));
    }
    let params = GenerateParams {
        num_samples: 1,
        max_tokens: req.max_tokens.unwrap_or(s.max_tokens),
        temperature: req.temperature.unwrap_or(s.temperature),
        top_k: Some(req.top_k.unwrap_or(s.top_k)),
        seed: None,
    };
    let lease = s.pool.acquire().await;
    let gpu = lease.id();
    let (tx, events) = tokio::sync::mpsc::unbounded_channel();
    let cancel = Arc::new(AtomicBool::new(false));
    let prompt_tokens = prompt.len();
    lease.run(Job {
        prompt,
        params,
        events: tx,
        cancel: cancel.clone(),
    });
    Ok(Started {
        gpu,
        events,
        guard: CancelOnDrop(cancel),
        prompt_tokens,
    })
}

/// Waits for the job's first event: an error before any text is a 500.
async fn first_event(st: &mut Started) -> Result<WorkerEvent, Response> {
    match st.events.recv().await {
        Some(WorkerEvent::Error(e)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e)),
        Some(ev) => Ok(ev),
        None => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("worker {} stopped without an answer", st.gpu),
        )),
    }
}

/// The job's events as a stream, starting with `first`, ending after `Done` or `Error`; `map`
/// turns each into SSE events. The stream owns the cancel guard.
fn events<F>(
    first: WorkerEvent,
    st: Started,
    map: F,
) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: Fn(WorkerEvent) -> Vec<Event> + Send + 'static,
{
    let Started { events, guard, .. } = st;
    let state = (Some(first), events, guard, false);
    stream::unfold(state, move |(pending, mut rx, guard, finished)| {
        let out = async move {
            if finished {
                return None;
            }
            let ev = match pending {
                Some(e) => e,
                None => rx.recv().await?,
            };
            let last = matches!(ev, WorkerEvent::Done(_) | WorkerEvent::Error(_));
            Some((ev, (None, rx, guard, last)))
        };
        out
    })
    .flat_map(move |ev| stream::iter(map(ev).into_iter().map(Ok)))
}

async fn chat_completions(
    State(s): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let req: ChatRequest = match parse(body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let mut st = match start(&s, &req, false).await {
        Ok(st) => st,
        Err(r) => return r,
    };
    let first = match first_event(&mut st).await {
        Ok(e) => e,
        Err(r) => return r,
    };
    let gpu = st.gpu;
    let stream = events(first, st, move |ev| {
        let data = match ev {
            WorkerEvent::Text(t) => json!({ "token": t, "gpu": gpu }),
            WorkerEvent::Done(_) => json!({ "done": true }),
            WorkerEvent::Error(e) => json!({ "error": e, "gpu": gpu }),
        };
        vec![Event::default().data(data.to_string())]
    });
    Sse::new(stream).into_response()
}

/// The OpenAI request: `messages`, `temperature`, `max_tokens` (or `max_completion_tokens`),
/// `top_k` (an extension), `stream`; `model` and other fields are accepted and ignored.
#[derive(Deserialize)]
struct OpenAiRequest {
    messages: Vec<ChatMessage>,
    temperature: Option<f32>,
    #[serde(alias = "max_completion_tokens")]
    max_tokens: Option<usize>,
    top_k: Option<usize>,
    #[serde(default)]
    stream: bool,
}

fn finish_name(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop => "stop",
        FinishReason::Length | FinishReason::ContextFull => "length",
    }
}

async fn openai_completions(
    State(s): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let req: OpenAiRequest = match parse(body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let chat = ChatRequest {
        messages: req.messages,
        temperature: req.temperature,
        max_tokens: req.max_tokens,
        top_k: req.top_k,
    };
    let mut st = match start(&s, &chat, true).await {
        Ok(st) => st,
        Err(r) => return r,
    };
    let first = match first_event(&mut st).await {
        Ok(e) => e,
        Err(r) => return r,
    };
    let id = format!("chatcmpl-{}", s.next_id.fetch_add(1, Ordering::Relaxed));
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let prompt_tokens = st.prompt_tokens;
    if !req.stream {
        let mut text = String::new();
        let mut ev = first;
        let done: Completion = loop {
            match ev {
                WorkerEvent::Text(t) => text.push_str(&t),
                WorkerEvent::Done(c) => break c,
                WorkerEvent::Error(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
            }
            ev = match st.events.recv().await {
                Some(e) => e,
                None => {
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the worker stopped mid-answer",
                    )
                }
            };
        };
        return Json(json!({
            "id": id, "object": "chat.completion", "created": created, "model": "nanochat",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_name(done.finish)}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": done.tokens, "total_tokens": prompt_tokens + done.tokens},
        }))
        .into_response();
    }
    let chunk = move |delta: serde_json::Value, finish: Option<&str>| {
        Event::default().data(
            json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": "nanochat",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            })
            .to_string(),
        )
    };
    let opening = chunk(json!({"role": "assistant", "content": ""}), None);
    let stream = events(first, st, move |ev| match ev {
        WorkerEvent::Text(t) => vec![chunk(json!({ "content": t }), None)],
        WorkerEvent::Done(c) => vec![
            chunk(json!({}), Some(finish_name(c.finish))),
            Event::default().data("[DONE]"),
        ],
        WorkerEvent::Error(e) => vec![Event::default()
            .data(json!({ "error": {"message": e, "type": "server_error"} }).to_string())],
    });
    Sse::new(stream::once(async move { Ok(opening) }).chain(stream)).into_response()
}
