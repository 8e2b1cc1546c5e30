//! One chat-server request's generation on the worker [`Pool`]: render the conversation, check
//! that it leaves room in the context, wait for a free worker, start the job, and read its
//! events (nanochat's `chat_web.py` `generate_stream` with its worker acquisition). The HTTP
//! layer only frames the events (SSE, JSON) and maps [`GenerationError::http_status`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc::{self, UnboundedReceiver};

use super::completion_prompt;
use super::pool::{Job, Pool, WorkerEvent};
use crate::engine::GenerateParams;
use crate::tokenizer::chat::Conversation;
use crate::tokenizer::Tokenizer;

/// Why a generation did not start or gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    /// The conversation cannot be rendered, or leaves no room in the context (HTTP 400).
    #[error("{0}")]
    Prompt(String),
    /// The worker failed or stopped before any text (HTTP 500).
    #[error("{0}")]
    Worker(String),
}

impl GenerationError {
    /// The HTTP status a server answers with: 400 for the request's fault, 500 for the worker's.
    pub fn http_status(&self) -> u16 {
        match self {
            GenerationError::Prompt(_) => 400,
            GenerationError::Worker(_) => 500,
        }
    }
}

/// Sets the job's cancel flag when dropped: a client that goes away (its response stream is
/// dropped) frees the worker at the worker's next token.
pub struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A started generation: which worker runs it, its events, and the prompt's length.
pub struct Generation {
    /// The worker's index (`gpu` in nanochat's stream).
    pub worker: usize,
    /// The job's events, ending with [`WorkerEvent::Done`] or [`WorkerEvent::Error`].
    pub events: UnboundedReceiver<WorkerEvent>,
    /// Tokens of the rendered prompt (OpenAI's `usage.prompt_tokens`).
    pub prompt_tokens: usize,
    /// Cancels the job when the generation (or the stream that took it) is dropped.
    pub guard: CancelOnDrop,
}

impl Pool {
    /// Renders `conversation` for completion, refuses it when it fills the context of
    /// `block_size` tokens, waits for a free worker and starts the job with `params` and the
    /// `stop` strings. Errors: [`GenerationError::Prompt`] naming the token count and the
    /// context size.
    pub async fn generate(
        &self,
        tokenizer: &Tokenizer,
        block_size: usize,
        conversation: &Conversation,
        params: GenerateParams,
        stop: Vec<String>,
    ) -> Result<Generation, GenerationError> {
        let prompt = completion_prompt(tokenizer, conversation)
            .map_err(|e| GenerationError::Prompt(e.to_string()))?;
        if prompt.len() >= block_size {
            return Err(GenerationError::Prompt(format!(
                "the conversation is {} tokens: no room left in the model's context of {block_size} tokens",
                prompt.len()
            )));
        }
        let lease = self.acquire().await;
        let worker = lease.id();
        let (tx, events) = mpsc::unbounded_channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let prompt_tokens = prompt.len();
        lease.run(Job {
            prompt,
            params,
            stop,
            events: tx,
            cancel: cancel.clone(),
        });
        Ok(Generation {
            worker,
            events,
            prompt_tokens,
            guard: CancelOnDrop(cancel),
        })
    }
}

impl Generation {
    /// Waits for the job's first event; an error before any text, or a worker that stops
    /// without one, is [`GenerationError::Worker`].
    pub async fn first_event(&mut self) -> Result<WorkerEvent, GenerationError> {
        match self.events.recv().await {
            Some(WorkerEvent::Error(e)) => Err(GenerationError::Worker(e)),
            Some(ev) => Ok(ev),
            None => Err(GenerationError::Worker(format!(
                "worker {} stopped without an answer",
                self.worker
            ))),
        }
    }
}
