//! Hands audit events to the log and reports when they are durable.
//!
//! Sessions queue events; two worker threads take everything queued (up to
//! [`MAX_BATCH_EVENTS`]) and post it as one batch, so the events of all
//! sessions share each request and therefore each fsync of the log: group
//! commit across sessions. The gateway knows nothing of HTTP or of log
//! storage: the caller supplies the function that stores a batch durably
//! ([`PostBatch`], run on the workers), and, when the log is in the same
//! process, an async one ([`StoreNow`]) that a session awaits directly for
//! the events it must wait for anyway, saving two thread hops.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, oneshot};

/// Events queued and not yet durable, across all sessions, at most. In
/// async mode this is the spool: when it is full (this many events, or
/// [`MAX_SPOOL_BYTES`]), a statement waits up to [`SPOOL_WAIT`] for room
/// and is then refused; it is never run unrecorded.
pub const MAX_SPOOL_EVENTS: usize = 100_000;
/// The spool's events take at most about this much memory (their strings
/// and members, counted in [`SPOOL_UNIT_BYTES`]): an event can hold 32 KiB
/// of SQL and 64 parameters, so the event count alone would allow
/// gigabytes.
pub const MAX_SPOOL_BYTES: usize = 128 << 20;
/// What the spool counts in: each event takes at least one unit.
pub const SPOOL_UNIT_BYTES: usize = 256;
/// The room a statement's event may take at most (its sealed JSON stays
/// under 64 KiB): what [`Sink::wait_for_room`] looks for.
pub const EVENT_ROOM_BYTES: usize = 64 << 10;
/// Events in one posted batch.
pub const MAX_BATCH_EVENTS: usize = 2_000;
/// How long a statement waits for room in a full spool.
pub const SPOOL_WAIT: Duration = Duration::from_secs(5);
/// Worker threads posting batches: one can wait for an fsync while the
/// other collects the next batch.
pub const WORKERS: usize = 2;
/// How long a worker lets events that nobody waits for (async mode, and
/// outcomes) gather before posting them: fewer, larger batches cost the
/// gateway and the log far less CPU per event. Events someone waits for
/// go at once.
pub const LINGER: Duration = Duration::from_millis(20);

/// One audit event, as the session built it: a light JSON document
/// (vectors of members, no `BTreeMap`), cheap to build, seal and drop.
pub type Event = custos_event::doc::Node<'static>;

/// Why a batch was not stored.
#[derive(Debug, Clone)]
pub enum PostError {
    /// Worth retrying: the log is unreachable, busy or not authorised yet.
    Retry(String),
    /// The log refused the events themselves (a 400); retrying cannot help.
    Rejected(String),
}

/// Stores a batch of events durably, or says why not. Blocking.
pub type PostBatch = Arc<dyn Fn(&[Event]) -> Result<(), PostError> + Send + Sync>;

/// Stores events durably from an async task.
pub type StoreNow = Arc<
    dyn Fn(Vec<Event>) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>> + Send + Sync,
>;

struct Job {
    events: Vec<Event>,
    count: usize,
    /// Its room in the spool, in [`SPOOL_UNIT_BYTES`] (at least `count`).
    units: usize,
    done: Option<oneshot::Sender<Result<(), String>>>,
}

/// About how many bytes `n` holds: its strings and keys, plus a few per
/// value. Cheap: no encoding. Six times it bounds `n`'s JSON, escapes
/// included.
pub(crate) fn approx_bytes(n: &Event) -> usize {
    match n {
        custos_event::doc::Node::Str(s) => s.len() + 8,
        custos_event::doc::Node::Arr(items) => 16 + items.iter().map(approx_bytes).sum::<usize>(),
        custos_event::doc::Node::Obj(members) => {
            16 + members.iter().map(|(k, v)| k.len() + 8 + approx_bytes(v)).sum::<usize>()
        }
        _ => 8,
    }
}

/// The spool units `events` take: at least one each.
fn units(events: &[Event]) -> usize {
    events.iter().map(|e| approx_bytes(e).div_ceil(SPOOL_UNIT_BYTES).max(1)).sum()
}

/// The queue and what it holds.
#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Events in `jobs`.
    events: usize,
    /// Jobs in `jobs` that someone waits for.
    durable: usize,
    /// Workers letting events gather until a deadline: they take whatever
    /// is queued then, so a new job needs no wake-up of its own.
    lingering: usize,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    /// Events that may still be queued.
    space: Arc<Semaphore>,
    /// Spool units that may still be queued.
    room: Arc<Semaphore>,
    /// How long a submission waits for space or room.
    wait: Duration,
    post: PostBatch,
    now: Option<StoreNow>,
    /// Where events nobody waits for go instead of the queue, if on disk.
    disk: Option<crate::spool::DiskSpool>,
}

impl Shared {
    /// Gives back the space and room of jobs that left the queue.
    fn release(&self, count: usize, units: usize) {
        self.space.add_permits(count);
        self.room.add_permits(units);
    }
}

/// The queue of audit events on their way to the log.
#[derive(Clone)]
pub struct Sink {
    shared: Arc<Shared>,
}

impl Sink {
    /// Starts the worker threads.
    pub fn start(post: PostBatch) -> Sink {
        Sink::start_with(post, None)
    }

    /// Starts the worker threads; durable submissions use `now` directly.
    pub fn start_with(post: PostBatch, now: Option<StoreNow>) -> Sink {
        Sink::start_sized(post, now, None, MAX_SPOOL_EVENTS, MAX_SPOOL_BYTES, SPOOL_WAIT)
    }

    /// Starts the worker threads, for the events someone waits for; the
    /// others go to `disk`, which posts them itself.
    pub fn start_spooled(post: PostBatch, disk: crate::spool::DiskSpool) -> Sink {
        Sink::start_sized(post, None, Some(disk), MAX_SPOOL_EVENTS, MAX_SPOOL_BYTES, SPOOL_WAIT)
    }

    /// [`Sink::start_with`] with a spool of `events` and `bytes`, waited
    /// for up to `wait`.
    fn start_sized(
        post: PostBatch,
        now: Option<StoreNow>,
        disk: Option<crate::spool::DiskSpool>,
        events: usize,
        bytes: usize,
        wait: Duration,
    ) -> Sink {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            space: Arc::new(Semaphore::new(events)),
            room: Arc::new(Semaphore::new(bytes / SPOOL_UNIT_BYTES)),
            wait,
            post,
            now,
            disk,
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
    pub async fn submit(&self, events: Vec<Event>, durable: bool) -> Result<(), String> {
        let count = events.len();
        let r = self.submit_inner(events, durable).await;
        if let Err(e) = &r
            && !durable
        {
            // Nobody waits for these: this line is all that is left of them.
            tracing::error!(error = %e, events = count, "audit events dropped");
        }
        r
    }

    async fn submit_inner(&self, events: Vec<Event>, durable: bool) -> Result<(), String> {
        if events.is_empty() {
            return Ok(());
        }
        if durable && let Some(now) = &self.shared.now {
            return self.store_now(now, events).await;
        }
        if !durable && let Some(disk) = &self.shared.disk {
            return disk.append(&events).await;
        }
        let count = events.len();
        let units = units(&events);
        if count > MAX_SPOOL_EVENTS || units * SPOOL_UNIT_BYTES > MAX_SPOOL_BYTES {
            return Err(format!("{count} events at once are over the spool's size"));
        }
        let taken = self.take_room(count, units).await?;
        taken.0.forget();
        taken.1.forget();
        let (tx, rx) = if durable {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let wake = {
            let mut q = self.shared.queue.lock().expect("sink lock");
            // A worker that lingers takes this job at its deadline. Waking it
            // for every statement's outcome (the queue is often empty: the
            // fail-closed statements take it along) cost a thread switch each.
            let wake = durable || (q.jobs.is_empty() && q.lingering == 0) || q.events + count >= MAX_BATCH_EVENTS;
            q.events += count;
            q.durable += usize::from(durable);
            q.jobs.push_back(Job { events, count, units, done: tx });
            wake
        };
        if wake {
            self.shared.ready.notify_one();
        }
        match rx {
            Some(rx) => rx.await.map_err(|_| "the audit sink stopped".to_string())?,
            None => Ok(()),
        }
    }

    /// Waits up to [`SPOOL_WAIT`] until the spool has room for a
    /// statement's event (about the largest one), without taking it: in
    /// async mode a statement runs before its event exists, so a full
    /// spool must refuse statements rather than drop their events later.
    pub async fn wait_for_room(&self) -> Result<(), String> {
        if let Some(disk) = &self.shared.disk {
            return disk.wait_for_room().await;
        }
        let s = &self.shared;
        let units = EVENT_ROOM_BYTES / SPOOL_UNIT_BYTES;
        if s.space.available_permits() > 0 && s.room.available_permits() >= units {
            return Ok(());
        }
        self.take_room(1, units).await.map(drop)
    }

    /// Takes room for `count` events of `units`, waiting up to the
    /// sink's wait for it.
    async fn take_room(
        &self,
        count: usize,
        units: usize,
    ) -> Result<(tokio::sync::OwnedSemaphorePermit, tokio::sync::OwnedSemaphorePermit), String> {
        let s = &self.shared;
        tokio::time::timeout(s.wait, async {
            let space = s.space.clone().acquire_many_owned(count as u32).await?;
            let room = s.room.clone().acquire_many_owned(units as u32).await?;
            Ok::<_, tokio::sync::AcquireError>((space, room))
        })
        .await
        .map_err(|_| {
            format!(
                "the audit spool is full (at most {MAX_SPOOL_EVENTS} events or {} MiB wait for the log)",
                MAX_SPOOL_BYTES >> 20
            )
        })?
        .map_err(|_| "the audit sink is closed".to_string())
    }

    /// Stores events someone waits for directly, with every spooled event
    /// riding along: they share the append and its fsync instead of
    /// costing one of their own.
    async fn store_now(&self, now: &StoreNow, events: Vec<Event>) -> Result<(), String> {
        let riders: Vec<Job> = {
            let mut q = self.shared.queue.lock().expect("sink lock");
            q.events = 0;
            q.jobs.drain(..).collect()
        };
        let ride_count: usize = riders.iter().map(|j| j.count).sum();
        let ride_units: usize = riders.iter().map(|j| j.units).sum();
        // The riders are copied, not moved: if the append fails they go
        // back to the queue for the workers to retry.
        let mut all = Vec::with_capacity(ride_count + events.len());
        for j in &riders {
            all.extend(j.events.iter().cloned());
        }
        all.extend(events);
        match now(all).await {
            Ok(()) => {
                self.shared.release(ride_count, ride_units);
                Ok(())
            }
            Err(e) => {
                // The riders go back to wait for the workers' retries.
                let mut q = self.shared.queue.lock().expect("sink lock");
                for j in riders.into_iter().rev() {
                    q.events += j.count;
                    q.jobs.push_front(j);
                }
                drop(q);
                self.shared.ready.notify_one();
                Err(e)
            }
        }
    }
}

fn worker(s: &Shared) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut jobs = Vec::new();
        {
            let mut q = s.queue.lock().expect("sink lock");
            while q.jobs.is_empty() {
                q = s.ready.wait(q).expect("sink lock");
            }
            // Let spooled events gather, unless someone waits.
            let deadline = std::time::Instant::now() + LINGER;
            q.lingering += 1;
            while q.durable == 0 && q.events < MAX_BATCH_EVENTS {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                q = s.ready.wait_timeout(q, left).expect("sink lock").0;
            }
            q.lingering -= 1;
            let mut n = 0;
            while let Some(j) = q.jobs.front() {
                if n > 0 && n + j.count > MAX_BATCH_EVENTS {
                    break;
                }
                n += j.count;
                let j = q.jobs.pop_front().expect("front exists");
                q.events -= j.count;
                q.durable -= usize::from(j.done.is_some());
                jobs.push(j);
            }
        }
        // A durable submission may have taken everything while we lingered.
        if jobs.is_empty() {
            continue;
        }
        let batch: Vec<Event> = if jobs.len() == 1 {
            std::mem::take(&mut jobs[0].events)
        } else {
            jobs.iter_mut().flat_map(|j| std::mem::take(&mut j.events)).collect()
        };
        let result = (s.post)(&batch);
        let count: usize = jobs.iter().map(|j| j.count).sum();
        let units: usize = jobs.iter().map(|j| j.units).sum();
        match result {
            Ok(()) => {
                backoff = Duration::from_millis(50);
                for j in jobs {
                    if let Some(d) = j.done {
                        let _ = d.send(Ok(()));
                    }
                }
                s.release(count, units);
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
                s.release(count, units);
            }
            Err(PostError::Retry(e)) => {
                tracing::warn!(error = %e, events = count, "audit log unavailable");
                // Fail-closed statements are refused now; spooled events
                // go back to the front and are retried.
                let mut retry = Vec::new();
                let (mut released, mut released_units) = (0, 0);
                let mut rest = batch.into_iter();
                for mut j in jobs {
                    // Each job gets its own events back, in order.
                    j.events = rest.by_ref().take(j.count).collect();
                    match j.done.take() {
                        Some(d) => {
                            let _ = d.send(Err(format!("the audit log is unavailable: {e}")));
                            released += j.count;
                            released_units += j.units;
                        }
                        None => retry.push(j),
                    }
                }
                s.release(released, released_units);
                if !retry.is_empty() {
                    let mut q = s.queue.lock().expect("sink lock");
                    for j in retry.into_iter().rev() {
                        q.events += j.count;
                        q.jobs.push_front(j);
                    }
                    drop(q);
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custos_event::doc::Node;

    fn ev(n: u64) -> Event {
        Node::obj([("n", n.into())])
    }

    fn numbers(events: &[Event]) -> Vec<u64> {
        events.iter().map(|e| e.get("n").and_then(Node::as_u64).expect("numbered")).collect()
    }

    /// The spool is bounded in bytes as well as events: large statements
    /// fill it sooner; a submission that finds no room within the wait is
    /// refused; room comes back once the log takes the events.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_spool_is_bounded_in_bytes() {
        let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let posted = Arc::new(Mutex::new(0usize));
        let (u, p) = (up.clone(), posted.clone());
        let post: PostBatch = Arc::new(move |events: &[Event]| {
            if !u.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(PostError::Retry("the log is down".into()));
            }
            *p.lock().unwrap() += events.len();
            Ok(())
        });
        let sink = Sink::start_sized(post, None, None, 1000, 64 << 10, Duration::from_millis(50));
        let big = |n: u64| Node::obj([("n", n.into()), ("sql", Node::string("x".repeat(10_000)))]);
        // Room for a statement's largest event: statements may run.
        sink.wait_for_room().await.unwrap();
        // 64 KiB holds six events of about 10 KB, though 1,000 are allowed.
        for n in 0..6 {
            sink.submit(vec![big(n)], false).await.unwrap();
        }
        let e = sink.submit(vec![big(6)], false).await.unwrap_err();
        assert!(e.contains("the audit spool is full"), "{e}");
        // No room for another large event: statements would be refused.
        let e = sink.wait_for_room().await.unwrap_err();
        assert!(e.contains("the audit spool is full"), "{e}");
        // Small events still fit in what is left.
        sink.submit(vec![ev(7)], false).await.unwrap();
        up.store(true, std::sync::atomic::Ordering::SeqCst);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while *posted.lock().unwrap() < 7 {
            assert!(std::time::Instant::now() < deadline, "the spool never drained");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sink.submit(vec![big(8)], false).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while *posted.lock().unwrap() < 8 {
            assert!(std::time::Instant::now() < deadline, "the spool never drained");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sink.wait_for_room().await.unwrap();
    }

    /// Events nobody waits for reach the log within a linger or so, also
    /// when a durable submission took the queue along while a worker
    /// lingered (and so no worker was woken for the events after it).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spooled_events_are_posted_without_a_wake_up_each() {
        let posted = Arc::new(Mutex::new(Vec::new()));
        let stored = Arc::new(Mutex::new(Vec::new()));
        let p = posted.clone();
        let post: PostBatch = Arc::new(move |events: &[Event]| {
            p.lock().unwrap().extend(numbers(events));
            Ok(())
        });
        let s = stored.clone();
        let now: StoreNow = Arc::new(move |events: Vec<Event>| {
            s.lock().unwrap().extend(numbers(&events));
            Box::pin(async { Ok(()) })
        });
        let sink = Sink::start_with(post, Some(now));
        for round in 0..20u64 {
            // An outcome (spooled), then a fail-closed statement that takes it along.
            sink.submit(vec![ev(round * 3)], false).await.unwrap();
            sink.submit(vec![ev(round * 3 + 1)], true).await.unwrap();
            // An outcome that only a lingering worker can post.
            sink.submit(vec![ev(round * 3 + 2)], false).await.unwrap();
            tokio::time::sleep(Duration::from_millis(round % 3)).await;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let mut all: Vec<u64> =
                posted.lock().unwrap().iter().chain(stored.lock().unwrap().iter()).copied().collect();
            all.sort_unstable();
            if all == (0..60).collect::<Vec<_>>() {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "events lost or stuck: {all:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Nothing was posted twice and nothing is left queued.
        assert_eq!(posted.lock().unwrap().len() + stored.lock().unwrap().len(), 60);
        assert_eq!(sink.shared.queue.lock().unwrap().events, 0);
    }
}
