//! The model workers of a chat server (`chat-web`; nanochat's `chat_web.py` `WorkerPool`): one
//! OS thread per worker, each owning an [`Engine`] on its device (`cuda:0`, `cuda:1`, ... or
//! the CPU). A job is one prompt and its `num_samples` choices, decoded together. A request
//! waits (asynchronously) for a free worker, hands it a job and reads its events from a
//! channel; the worker goes back to the pool when the job ends, fails, panics or its client
//! goes away (the next text it would send finds the channel closed).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, Semaphore};

use crate::engine::{Completion, Engine, GenerateParams};
use crate::CoreError;

/// Set when the server shuts down: every job stops at its next token, so open streams end and
/// the graceful shutdown does not wait for long replies.
pub static SHUTDOWN: AtomicBool = AtomicBool::new(false);

/// What a worker reports about its job.
#[derive(Debug)]
pub enum WorkerEvent {
    /// More text of choice `index`.
    Text {
        /// The choice, 0..`num_samples`.
        index: usize,
        /// The new text (whole characters, never part of a matched stop string).
        text: String,
    },
    /// Every choice, in order.
    Done(Vec<Completion>),
    /// The job failed or the worker panicked: the message for the client.
    Error(String),
}

/// One request's work: the prompt, how to sample, where to send the events.
pub struct Job {
    /// The prompt's token ids (ending with `<|assistant_start|>`).
    pub prompt: Vec<u32>,
    /// How to sample (`num_samples` choices, `max_tokens`, temperature, top-k, seed).
    pub params: GenerateParams,
    /// Stop strings: a choice ends at the first (not sent).
    pub stop: Vec<String>,
    /// Where the worker sends the job's [`WorkerEvent`]s.
    pub events: mpsc::UnboundedSender<WorkerEvent>,
    /// Set when the client is gone: the worker stops at its next token.
    pub cancel: Arc<AtomicBool>,
}

struct Shared {
    free: Mutex<Vec<usize>>,
    permits: Semaphore,
}

impl Shared {
    fn release(&self, id: usize) {
        self.free.lock().unwrap().push(id);
        self.permits.add_permits(1);
    }
}

/// The workers and which of them are free.
pub struct Pool {
    senders: Vec<std::sync::mpsc::Sender<Job>>,
    shared: Arc<Shared>,
    /// Each worker's device, as `/stats` shows it (`cpu`, `cuda:0`, ...).
    pub devices: Vec<String>,
}

/// A free worker, held until a job is given to it (or the lease is dropped).
pub struct Lease {
    id: Option<usize>,
    shared: Arc<Shared>,
    sender: std::sync::mpsc::Sender<Job>,
}

impl Lease {
    /// The index of the leased worker (its place in [`Pool::devices`]).
    pub fn id(&self) -> usize {
        self.id.expect("a lease holds a worker until it runs a job")
    }

    /// Gives the job to the worker, which returns itself to the pool when it is done.
    pub fn run(mut self, job: Job) {
        let id = self.id.take().expect("one job per lease");
        if let Err(std::sync::mpsc::SendError(job)) = self.sender.send(job) {
            let _ = job
                .events
                .send(WorkerEvent::Error(format!("worker {id} has stopped")));
            self.shared.release(id);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.shared.release(id);
        }
    }
}

impl Pool {
    /// Starts one worker thread per engine (with its device's name).
    pub fn start(engines: Vec<(Engine, String)>) -> Pool {
        let n = engines.len();
        let shared = Arc::new(Shared {
            free: Mutex::new((0..n).rev().collect()),
            permits: Semaphore::new(n),
        });
        let mut senders = Vec::new();
        let mut devices = Vec::new();
        for (id, (engine, device)) in engines.into_iter().enumerate() {
            let (tx, rx) = std::sync::mpsc::channel::<Job>();
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("chat-worker-{id}"))
                .spawn(move || {
                    for job in rx {
                        work(&engine, job);
                        shared.release(id);
                    }
                })
                .expect("spawn a worker thread");
            senders.push(tx);
            devices.push(device);
        }
        Pool {
            senders,
            shared,
            devices,
        }
    }

    /// Number of workers.
    pub fn total(&self) -> usize {
        self.senders.len()
    }

    /// Number of workers free now (not leased or running a job).
    pub fn available(&self) -> usize {
        self.shared.free.lock().unwrap().len()
    }

    /// Waits for a free worker.
    pub async fn acquire(&self) -> Lease {
        let permit = self
            .shared
            .permits
            .acquire()
            .await
            .expect("the pool's semaphore is never closed");
        permit.forget();
        let id = self
            .shared
            .free
            .lock()
            .unwrap()
            .pop()
            .expect("a permit means a free worker");
        Lease {
            id: Some(id),
            shared: self.shared.clone(),
            sender: self.senders[id].clone(),
        }
    }
}

/// Runs one job, reporting text as it comes, then `Done` or `Error` (nothing when cancelled).
fn work(engine: &Engine, job: Job) {
    let Job {
        prompt,
        params,
        stop,
        events,
        cancel,
    } = job;
    let started = std::time::Instant::now();
    let run = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let gone = || {
            cancel.load(Ordering::Relaxed) || events.is_closed() || SHUTDOWN.load(Ordering::Relaxed)
        };
        engine.stream_choices_until(&prompt, &params, &stop, gone, |index, text| {
            if cancel.load(Ordering::Relaxed) {
                return Err(CoreError::Cancelled);
            }
            let text = text.to_string();
            events
                .send(WorkerEvent::Text { index, text })
                .map_err(|_| CoreError::Cancelled)
        })
    }));
    let outcome = match &run {
        Ok(Ok(choices)) => {
            let finish: Vec<&str> = choices.iter().map(|c| c.finish.as_str()).collect();
            let tokens: usize = choices.iter().map(|c| c.tokens).sum();
            format!("{tokens} tokens, {}", finish.join(" "))
        }
        Ok(Err(CoreError::Cancelled)) => "cancelled: the client left".into(),
        Ok(Err(e)) => format!("failed: {e}"),
        Err(_) => "panicked".into(),
    };
    tracing::info!(seconds = started.elapsed().as_secs_f64(), %outcome, "chat job");
    let event = match run {
        Ok(Ok(done)) => WorkerEvent::Done(done),
        Ok(Err(CoreError::Cancelled)) => return,
        Ok(Err(e)) => WorkerEvent::Error(e.to_string()),
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            WorkerEvent::Error(format!("internal error in the model worker: {why}"))
        }
    };
    let _ = events.send(event);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::{train_tokenizer, TrainOptions};
    use crate::{DType, Device, GPTConfig, GPT};

    fn engine() -> Engine {
        let docs = vec!["the quick brown fox jumps over the lazy dog. ".repeat(50)];
        let opts = TrainOptions {
            vocab_size: 300,
            doc_cap: 10_000,
            max_chars: 10_000,
            progress: false,
        };
        let tok = train_tokenizer(&docs, &opts).unwrap().0;
        let config = GPTConfig {
            vocab_size: 300,
            n_layer: 1,
            n_head: 2,
            n_kv_head: 2,
            n_embd: 32,
            block_size: 64,
            ..GPTConfig::default()
        };
        let model = GPT::new(config, &Device::cpu().unwrap(), DType::F32, 0).unwrap();
        Engine::new(model, tok).unwrap()
    }

    fn job(prompt: Vec<u32>) -> (Job, mpsc::UnboundedReceiver<WorkerEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let params = GenerateParams {
            max_tokens: 4,
            temperature: 0.0,
            num_samples: 2,
            ..Default::default()
        };
        (
            Job {
                prompt,
                params,
                stop: Vec::new(),
                events: tx,
                cancel: Arc::new(AtomicBool::new(false)),
            },
            rx,
        )
    }

    /// A failing job reports an error and its worker goes back to the pool; so does a lease
    /// dropped without a job; a good job ends with Done.
    #[test]
    fn workers_return_to_the_pool_after_failures() {
        let pool = Pool::start(vec![(engine(), "cpu".into())]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // A token id outside the vocabulary: the model refuses it.
            let lease = pool.acquire().await;
            assert_eq!(pool.available(), 0);
            let (j, mut rx) = job(vec![1, 99_999]);
            lease.run(j);
            match rx.recv().await {
                Some(WorkerEvent::Error(e)) => assert!(e.contains("99999"), "{e}"),
                other => panic!("expected an error, got {other:?}"),
            }
            let lease = pool.acquire().await;
            drop(lease);
            assert_eq!(pool.available(), 1);
            let lease = pool.acquire().await;
            let (j, mut rx) = job(vec![1, 2, 3]);
            lease.run(j);
            let mut texts = [String::new(), String::new()];
            loop {
                match rx.recv().await {
                    Some(WorkerEvent::Text { index, text }) => texts[index].push_str(&text),
                    Some(WorkerEvent::Done(choices)) => {
                        assert_eq!(choices.len(), 2);
                        for (c, t) in choices.iter().zip(&texts) {
                            assert!(c.tokens <= 4);
                            assert_eq!(&c.text, t);
                        }
                        break;
                    }
                    other => panic!("expected text then done, got {other:?}"),
                }
            }
        });
        // The worker releases itself just after its last event.
        for _ in 0..200 {
            if pool.available() == 1 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("the worker did not return to the pool");
    }
}
