//! The model workers of `chat-web`: one OS thread per worker, each owning an [`Engine`] on its
//! device. A request waits (asynchronously) for a free worker, hands it a job and reads its
//! events from a channel; the worker goes back to the pool when the job ends, fails, panics
//! or its client goes away (the next text it would send finds the channel closed).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use nanochat_core::engine::{Completion, Engine, GenerateParams};
use nanochat_core::CoreError;
use tokio::sync::{mpsc, Semaphore};

/// What a worker reports about its job.
#[derive(Debug)]
pub enum WorkerEvent {
    Text(String),
    Done(Completion),
    Error(String),
}

pub struct Job {
    pub prompt: Vec<u32>,
    pub params: GenerateParams,
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

    pub fn total(&self) -> usize {
        self.senders.len()
    }

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
        events,
        cancel,
    } = job;
    let started = std::time::Instant::now();
    let run = std::panic::catch_unwind(AssertUnwindSafe(|| {
        engine.stream_text(&prompt, &params, |text| {
            if cancel.load(Ordering::Relaxed) {
                return Err(CoreError::Cancelled);
            }
            events
                .send(WorkerEvent::Text(text.to_string()))
                .map_err(|_| CoreError::Cancelled)
        })
    }));
    let outcome = match &run {
        Ok(Ok(c)) => format!("{} tokens, {}", c.tokens, c.finish.as_str()),
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
