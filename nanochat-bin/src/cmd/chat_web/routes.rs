//! The HTTP API of `chat-web`: nanochat's `/chat/completions` (SSE), `/health`, `/stats`, the
//! chat page at `/`, and `/v1/chat/completions` and `/v1/models` in the OpenAI wire format.
//! Requests are read and checked, and replies assembled, by `nanochat_core::engine::request`
//! and `nanochat_core::engine::openai`; this module only moves them over HTTP.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
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
use nanochat_core::engine::generation::{Generation, GenerationError};
use nanochat_core::engine::openai::{error_body, models_list, OpenAiRequest, Reply};
use nanochat_core::engine::request::{ChatRequest, RequestError, MAX_TOTAL_CHARS};
use nanochat_core::engine::{Engine, GenerateParams};
use nanochat_core::tokenizer::chat::Conversation;
use nanochat_core::tokenizer::Tokenizer;
use serde_json::json;

use nanochat_core::engine::pool::{Pool, WorkerEvent};

/// The chat page, one self-contained HTML file.
const PAGE: &str = include_str!("page.html");

pub struct AppState {
    pub pool: Pool,
    pub tokenizer: Tokenizer,
    pub block_size: usize,
    /// The sampling defaults of a request (flags -t, -k, -m).
    pub defaults: GenerateParams,
    /// The model's id in `/v1/models`.
    pub model_id: String,
    /// When the server started (Unix seconds).
    pub started: u64,
    pub next_id: AtomicU64,
}

impl AppState {
    /// Starts one pool worker per `(engine, device name)` (the first engine's tokenizer and
    /// context serve every request), with the request defaults; the id counter starts at 0.
    pub fn new(engines: Vec<(Engine, String)>, defaults: GenerateParams) -> AppState {
        let tokenizer = engines[0].0.tokenizer().clone();
        let block_size = engines[0].0.model().config().block_size;
        AppState {
            pool: Pool::start(engines),
            tokenizer,
            block_size,
            defaults,
            model_id: "nanochat".into(),
            started: unix_now(),
            next_id: AtomicU64::new(0),
        }
    }
}

/// Now, in Unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/health", get(health))
        .route("/stats", get(stats))
        .route("/chat/completions", post(chat_completions))
        .route("/v1/chat/completions", post(openai_completions))
        .route("/v1/models", get(models))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// A refused or failed request: its status and what went wrong.
struct Failure(StatusCode, String);

fn error(status: StatusCode, detail: impl Into<String>) -> Failure {
    Failure(status, detail.into())
}

impl Failure {
    /// nanochat's format: `{"detail": "..."}`.
    fn native(self) -> Response {
        (self.0, Json(json!({ "detail": self.1 }))).into_response()
    }

    /// OpenAI's format (`error.message` is what OpenAI clients show), `detail` beside it.
    fn openai(self) -> Response {
        (self.0, Json(error_body(&self.1, self.0.as_u16()))).into_response()
    }
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

/// Largest request body read (far above what the character limits allow: 32,000 characters
/// are at most 128 KB of UTF-8, plus the JSON around them).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Reads a body with `read`: a body over [`MAX_BODY_BYTES`] is a 400 naming the character
/// limit; malformed JSON or wrong kinds are 422, values out of their limits 400, with the
/// reader's detail.
fn parse<T>(
    body: Result<Bytes, BytesRejection>,
    read: impl FnOnce(&[u8]) -> Result<T, RequestError>,
) -> Result<T, Failure> {
    let body = body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(_) => error(
            StatusCode::BAD_REQUEST,
            format!("request body over {MAX_BODY_BYTES} bytes: messages exceed the limit of {MAX_TOTAL_CHARS} characters"),
        ),
        other => error(StatusCode::UNPROCESSABLE_ENTITY, format!("invalid request body: {other}")),
    })?;
    read(&body).map_err(|e| {
        let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        error(status, e.to_string())
    })
}

/// Starts the generation and waits for its first event; refusals and worker failures become
/// their HTTP status.
async fn start(
    s: &AppState,
    conversation: &Conversation,
    params: GenerateParams,
    stop: Vec<String>,
) -> Result<(Generation, WorkerEvent), Failure> {
    let fail = |e: GenerationError| {
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        error(status, e.to_string())
    };
    let mut g = (s.pool)
        .generate(&s.tokenizer, s.block_size, conversation, params, stop)
        .await
        .map_err(fail)?;
    let first = g.first_event().await.map_err(fail)?;
    Ok((g, first))
}

/// The job's events as a stream, starting with `first`, ending after `Done` or `Error`; `map`
/// turns each into SSE events. The stream owns the cancel guard.
/// Parses a request with `read` and starts its generation: `setup` gives the parsed request's
/// sampling settings (from the server's defaults), conversation and stop strings.
async fn accept<T>(
    s: &AppState,
    body: Result<Bytes, BytesRejection>,
    read: impl FnOnce(&[u8]) -> Result<T, RequestError>,
    setup: impl FnOnce(&T, &GenerateParams) -> (GenerateParams, Conversation, Vec<String>),
) -> Result<(T, Generation, WorkerEvent), Failure> {
    let req = parse(body, read)?;
    let (params, conversation, stop) = setup(&req, &s.defaults);
    let (st, first) = start(s, &conversation, params, stop).await?;
    Ok((req, st, first))
}

fn events<F>(
    first: WorkerEvent,
    st: Generation,
    map: F,
) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: Fn(WorkerEvent) -> Vec<Event> + Send + 'static,
{
    let Generation { events, guard, .. } = st;
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
    let setup = |r: &ChatRequest, d: &GenerateParams| (r.params(d), r.conversation(), Vec::new());
    let (_, st, first) = match accept(&s, body, ChatRequest::from_json, setup).await {
        Ok(started) => started,
        Err(f) => return f.native(),
    };
    let gpu = st.worker;
    let stream = events(first, st, move |ev| {
        let data = match ev {
            WorkerEvent::Text { text, .. } => json!({ "token": text, "gpu": gpu }),
            WorkerEvent::Done(_) => json!({ "done": true }),
            WorkerEvent::Error(e) => json!({ "error": e, "gpu": gpu }),
        };
        vec![Event::default().data(data.to_string())]
    });
    Sse::new(stream).into_response()
}

async fn models(State(s): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(models_list(&s.model_id, s.started))
}

fn data(v: serde_json::Value) -> Event {
    Event::default().data(v.to_string())
}

async fn openai_completions(
    State(s): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let setup = |r: &OpenAiRequest, d: &GenerateParams| {
        (r.params(d), r.chat.conversation(), r.stop.clone())
    };
    let (req, mut st, first) = match accept(&s, body, OpenAiRequest::from_json, setup).await {
        Ok(started) => started,
        Err(f) => return f.openai(),
    };
    let reply = Reply {
        id: format!("chatcmpl-{}", s.next_id.fetch_add(1, Ordering::Relaxed)),
        created: unix_now(),
        model: req.model.clone().unwrap_or_else(|| s.model_id.clone()),
        include_usage: req.include_usage,
    };
    let prompt_tokens = st.prompt_tokens;
    if !req.stream {
        let mut ev = first;
        loop {
            match ev {
                WorkerEvent::Text { .. } => {}
                WorkerEvent::Done(choices) => {
                    return Json(reply.completion(prompt_tokens, &choices)).into_response()
                }
                WorkerEvent::Error(e) => {
                    return error(StatusCode::INTERNAL_SERVER_ERROR, e).openai()
                }
            }
            ev = match st.events.recv().await {
                Some(e) => e,
                None => {
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the worker stopped mid-answer",
                    )
                    .openai()
                }
            };
        }
    }
    let openings: Vec<Result<Event, Infallible>> =
        (0..req.n).map(|i| Ok(data(reply.opening(i)))).collect();
    let stream = events(first, st, move |ev| match ev {
        WorkerEvent::Text { index, text } => vec![data(reply.text(index, &text))],
        WorkerEvent::Done(choices) => {
            let mut out: Vec<Event> = choices
                .iter()
                .enumerate()
                .map(|(i, c)| data(reply.finish(i, c.finish)))
                .collect();
            out.extend(reply.usage_chunk(prompt_tokens, &choices).map(data));
            out.push(Event::default().data("[DONE]"));
            out
        }
        WorkerEvent::Error(e) => {
            vec![data(
                json!({ "error": {"message": e, "type": "server_error"} }),
            )]
        }
    });
    Sse::new(stream::iter(openings).chain(stream)).into_response()
}
