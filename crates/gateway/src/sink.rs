//! Hands audit events to the log and reports when they are durable.
//!
//! Sessions queue events; two worker threads take everything queued (up to
//! [`MAX_BATCH_EVENTS`]) and post it as one batch, so the events of all
//! sessions share each request and therefore each fsync of the log: group
//! commit across sessions. The gateway knows nothing of HTTP: the caller
//! supplies the function that stores a batch durably.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, oneshot};

/// Events queued and not yet durable, across all sessions. In async mode
/// this is the spool: when it is full, a statement waits up to
/// [`SPOOL_WAIT`] for room and is then refused; it is never run unrecorded.
pub const MAX_SPOOL_EVENTS: usize = 100_000;
/// Events in one posted batch.
pub const MAX_BATCH_EVENTS: usize = 2_000;
/// How long a statement waits for room in a full spool.
pub const SPOOL_WAIT: Duration = Duration::from_secs(5);
/// Worker threads posting batches: one can wait for an fsync while the
/// other collects the next batch.
pub const WORKERS: usize = 2;

/// Why a batch was not stored.
#[derive(Debug, Clone)]
pub enum PostError {
    /// Worth retrying: the log is unreachable, busy or not authorised yet.
    Retry(String),
    /// The log refused the events themselves (a 400); retrying cannot help.
    Rejected(String),
}

/// Stores a batch of NDJSON events durably, or says why not.
pub type PostBatch = Arc<dyn Fn(&[u8]) -> Result<(), PostError> + Send + Sync>;

struct Job {
    lines: Vec<u8>,
    count: usize,
    done: Option<oneshot::Sender<Result<(), String>>>,
}

struct Shared {
    queue: Mutex<VecDeque<Job>>,
    ready: Condvar,
    space: Arc<Semaphore>,
    post: PostBatch,
}

/// The queue of audit events on their way to the log.
#[derive(Clone)]
pub struct Sink {
    shared: Arc<Shared>,
}

impl Sink {
    /// Starts the worker threads.
    pub fn start(post: PostBatch) -> Sink {
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            space: Arc::new(Semaphore::new(MAX_SPOOL_EVENTS)),
            post,
        });
        for i in 0..WORKERS {
            let s = shared.clone();
            std::thread::Builder::new()
                .name(format!("custos-gw-sink-{i}"))
                .spawn(move || worker(&s))
                .expect("spawning a sink thread");
        }
        Sink { shared }
    }

    /// Queues events. With `durable`, returns once they are stored, or an
    /// error saying why they are not; else returns once they are queued.
    pub async fn submit(&self, events: &[serde_json::Value], durable: bool) -> Result<(), String> {
        if events.is_empty() {
            return Ok(());
        }
        let count = events.len().min(MAX_SPOOL_EVENTS);
        let permit = tokio::time::timeout(SPOOL_WAIT, self.shared.space.clone().acquire_many_owned(count as u32))
            .await
            .map_err(|_| format!("the audit spool is full ({MAX_SPOOL_EVENTS} events wait for the log)"))?
            .map_err(|_| "the audit sink is closed".to_string())?;
        permit.forget();
        let mut lines = Vec::with_capacity(256 * events.len());
        for e in events {
            serde_json::to_writer(&mut lines, e).expect("a Value serialises");
            lines.push(b'\n');
        }
        let (tx, rx) = if durable {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        self.shared.queue.lock().expect("sink lock").push_back(Job { lines, count, done: tx });
        self.shared.ready.notify_one();
        match rx {
            Some(rx) => rx.await.map_err(|_| "the audit sink stopped".to_string())?,
            None => Ok(()),
        }
    }
}

fn worker(s: &Shared) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut jobs = Vec::new();
        {
            let mut q = s.queue.lock().expect("sink lock");
            while q.is_empty() {
                q = s.ready.wait(q).expect("sink lock");
            }
            let mut n = 0;
            while let Some(j) = q.front() {
                if n > 0 && n + j.count > MAX_BATCH_EVENTS {
                    break;
                }
                n += j.count;
                jobs.push(q.pop_front().expect("front exists"));
            }
        }
        let body: Vec<u8> = if jobs.len() == 1 { std::mem::take(&mut jobs[0].lines) } else { jobs.iter().flat_map(|j| j.lines.iter().copied()).collect() };
        let result = (s.post)(&body);
        let count: usize = jobs.iter().map(|j| j.count).sum();
        match result {
            Ok(()) => {
                backoff = Duration::from_millis(50);
                for j in jobs {
                    if let Some(d) = j.done {
                        let _ = d.send(Ok(()));
                    }
                }
                s.space.add_permits(count);
            }
            Err(PostError::Rejected(e)) => {
                // Events the gateway built were refused: a bug or a
                // mismatched server. Loud, and the statements waiting on
                // them are refused.
                tracing::error!(error = %e, events = count, "the log rejected audit events");
                for j in jobs {
                    if let Some(d) = j.done {
                        let _ = d.send(Err(format!("the log rejected the audit event: {e}")));
                    }
                }
                s.space.add_permits(count);
            }
            Err(PostError::Retry(e)) => {
                tracing::warn!(error = %e, events = count, "audit log unavailable");
                // Fail-closed statements are refused now; spooled events
                // go back to the front and are retried.
                let mut retry = Vec::new();
                let mut released = 0;
                for mut j in jobs {
                    match j.done.take() {
                        Some(d) => {
                            let _ = d.send(Err(format!("the audit log is unavailable: {e}")));
                            released += j.count;
                        }
                        None => {
                            if j.lines.is_empty() {
                                j.lines = body.clone();
                            }
                            retry.push(j)
                        }
                    }
                }
                s.space.add_permits(released);
                if !retry.is_empty() {
                    let mut q = s.queue.lock().expect("sink lock");
                    for j in retry.into_iter().rev() {
                        q.push_front(j);
                    }
                    drop(q);
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
