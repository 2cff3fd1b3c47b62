//! Search: `GET /v1/logs/{log}/search`, answered from the log's index, with
//! every hit read back from the log so that it can be proven. An indexer
//! task keeps every log's index within a fraction of a second of the log.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use custos_auth::Identity;
use custos_event::doc::Node;
use custos_index::engine::{LogIndex, MAX_PAGE_HITS};
use custos_index::query::{self, Bound, Query as Q, Value_};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, Params};
use crate::gate::Gate;
use crate::state::AppState;

/// How often the indexer looks for new entries.
pub const INDEX_INTERVAL: Duration = Duration::from_millis(500);
/// Entries indexed per log per step, so that one busy log cannot starve
/// the others.
pub const INDEX_STEP_ENTRIES: u64 = 100_000;
/// Consecutive indexing failures of a log after which, if the disk has
/// space (`custos_index::engine::disk_low`), its index is deleted and
/// rebuilt from the log; before that, and on a full disk, the index is
/// kept as of its last commit and reopened.
pub const INDEX_FAILURES_BEFORE_REBUILD: u32 = 3;
/// The wait before indexing a log again after a failure, doubled at each
/// failure in a row up to [`INDEX_RETRY_MAX`].
pub const INDEX_RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between tries of a failing index.
pub const INDEX_RETRY_MAX: Duration = Duration::from_secs(30);
/// Hits per page by default.
pub const DEFAULT_PAGE_HITS: usize = 100;

/// The open indexes, by log.
#[derive(Default)]
pub struct Indexes {
    map: Mutex<HashMap<String, Arc<LogIndex>>>,
    /// Held while an index is opened, so that one log's index is never
    /// opened twice at once (the indexer and a search at start, say): the
    /// second writer would find the first one's lock.
    opening: Mutex<()>,
    /// Set to wake the indexer before its next tick.
    wake: (Mutex<bool>, std::sync::Condvar),
    /// Counts the indexer's passes over the logs: a waiter for an index to
    /// cover some entries looks again after each.
    passes: tokio::sync::watch::Sender<u64>,
}

impl Indexes {
    /// Closes every open index (waiting for merges, syncing its files and
    /// marking it clean), at shutdown, once the indexer has stopped.
    /// Blocking.
    pub fn close_all(&self) {
        let all: Vec<(String, Arc<LogIndex>)> = self.map.lock().unwrap_or_else(|e| e.into_inner()).drain().collect();
        for (name, ix) in all {
            if let Err(e) = ix.close() {
                tracing::warn!(log = name, error = %e, "closing the index failed; it is rebuilt if the machine goes down first");
            }
        }
    }

    /// Drops the open index of a log, so that the next use reopens it
    /// (and rebuilds it if it is damaged).
    pub fn forget(&self, name: &str) {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
    }

    /// Asks the indexer to look for new entries now rather than at its next
    /// tick.
    pub fn wake_indexer(&self) {
        *self.wake.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.wake.1.notify_one();
    }

    /// The indexer's pause between passes: `at_most`, or less if woken.
    fn pause(&self, at_most: Duration) {
        let woken = self.wake.0.lock().unwrap_or_else(|e| e.into_inner());
        let (mut woken, _) = self.wake.1.wait_timeout_while(woken, at_most, |w| !*w).unwrap_or_else(|e| e.into_inner());
        *woken = false;
    }

    /// Waits until searches of `log` see its first `size` entries; false if
    /// that took longer than `within`.
    pub async fn wait_searchable(&self, log: &str, size: u64, within: Duration) -> bool {
        let mut passes = self.passes.subscribe();
        self.wake_indexer();
        let covered = || self.get_open(log).is_some_and(|ix| ix.indexed().is_ok_and(|n| n >= size));
        tokio::time::timeout(within, async {
            while !covered() {
                if passes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await
        .is_ok()
    }

    /// The index of a log, if it is open already. Never blocks.
    pub fn get_open(&self, name: &str) -> Option<Arc<LogIndex>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    /// The index of a log, opened (and, if needed, rebuilt) on first use.
    /// Blocking.
    pub fn get(&self, state: &AppState, name: &str) -> Result<Arc<LogIndex>, ApiError> {
        if let Some(ix) = self.get_open(name) {
            return Ok(ix);
        }
        let _opening = self.opening.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ix) = self.get_open(name) {
            return Ok(ix);
        }
        let log = state.store.get(name).ok_or_else(|| crate::authn::not_found(name))?;
        let dir = state.store.dir().join("index").join(name);
        let ix = Arc::new(LogIndex::open(&dir, log.size()).map_err(|e| ApiError::unavailable(e.to_string(), 5))?);
        self.map.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_string(), ix.clone());
        Ok(ix)
    }
}

/// Keeps every index caught up with its log, on its own thread at the
/// lowest CPU priority: under full load, acknowledging events comes first
/// and the index catches up when there is CPU to spare. tantivy's worker
/// threads, created from this thread, inherit the priority. Runs until
/// `stop` is set.
pub fn spawn_indexer(
    state: Arc<AppState>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("custos-indexer".into()).spawn(move || {
        // SAFETY: setpriority on the calling thread (who = 0 is this thread
        // under Linux's per-thread nice values); no memory is touched.
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, 0, 19);
        }
        let mut behind = false;
        // Logs whose indexing failed: consecutive failures, and when to
        // try again.
        let mut trouble: HashMap<String, (u32, std::time::Instant)> = HashMap::new();
        let mut last_pass = std::time::Instant::now();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            // A log more than a step behind (a rebuild, a burst) is indexed
            // on without pausing; otherwise passes start every interval
            // (counted from the start of the last, so that a long pass
            // under heavy ingest does not add a whole interval to how long
            // new events wait to be searchable).
            if !behind {
                state.indexes.pause(INDEX_INTERVAL.saturating_sub(last_pass.elapsed()));
            }
            last_pass = std::time::Instant::now();
            behind = false;
            for (name, log) in state.store.list() {
                if trouble.get(&name).is_some_and(|t| std::time::Instant::now() < t.1) {
                    continue;
                }
                let ix = match state.indexes.get(&state, &name) {
                    Ok(ix) => ix,
                    Err(e) => {
                        index_failed(&mut trouble, name, None, &e.message);
                        continue;
                    }
                };
                match ix.catch_up(&log, INDEX_STEP_ENTRIES) {
                    Ok(n) => {
                        behind |= n == INDEX_STEP_ENTRIES;
                        trouble.remove(&name);
                    }
                    Err(e) => {
                        // Searches go on from the last commit; the index is
                        // opened again from it at the next try.
                        ix.release_writer();
                        state.indexes.forget(&name);
                        index_failed(&mut trouble, name, Some(ix.dir()), &e.to_string());
                    }
                }
            }
            state.indexes.passes.send_modify(|n| *n += 1);
        }
    })
}

/// Counts a failure to open (`dir` None) or to update (`dir` the index's)
/// the index of `log`, and sets when to try again. Indexing that fails
/// again and again with space to spare deletes the index, to be rebuilt
/// from the log: it is derived data.
fn index_failed(
    trouble: &mut HashMap<String, (u32, std::time::Instant)>,
    log: String,
    dir: Option<&std::path::Path>,
    error: &str,
) {
    let failures = trouble.get(&log).map_or(0, |t| t.0) + 1;
    let wait = INDEX_RETRY_FIRST.saturating_mul(1 << (failures - 1).min(16)).min(INDEX_RETRY_MAX);
    match dir {
        Some(dir) if failures >= INDEX_FAILURES_BEFORE_REBUILD && !custos_index::engine::disk_low(dir) => {
            tracing::error!(log, error, failures, "indexing failed; rebuilding the index from the log");
            let _ = std::fs::remove_dir_all(dir);
        }
        Some(_) => tracing::error!(
            log,
            error,
            failures,
            retry_secs = wait.as_secs(),
            "indexing failed; keeping the index as of its last commit and trying again later"
        ),
        None => tracing::error!(log, error, failures, retry_secs = wait.as_secs(), "opening search index failed"),
    }
    trouble.insert(log, (failures, std::time::Instant::now() + wait));
}

/// A query the index cannot run is the caller's 400; anything else is the
/// index's trouble, 503.
fn index_error(e: custos_index::engine::IndexError) -> ApiError {
    match e {
        custos_index::engine::IndexError::Query(m) => ApiError::bad_request(m),
        other => ApiError::unavailable(other.to_string(), 1),
    }
}

/// Turns to search: at most so many searches, aggregations and export
/// pages run at once (which bounds their memory: each aggregation may use
/// up to [`custos_index::engine::MAX_AGG_MEMORY_BYTES`]), in the order they
/// asked, each within a time limit.
pub struct Turns {
    turns: Gate,
    timeout: Duration,
    /// Exports streaming, at most [`crate::config::MAX_EXPORTS_AT_ONCE`].
    exports: Gate,
}

/// One search's turn, held while it runs.
pub struct Turn {
    _permit: tokio::sync::OwnedSemaphorePermit,
    /// When the search gives up.
    pub deadline: std::time::Instant,
}

impl Turns {
    /// `at_once` turns (at least one), each of at most `timeout`.
    pub fn new(at_once: usize, timeout: Duration) -> Turns {
        Turns {
            turns: Gate::new(at_once, "search turns (searches_at_once)"),
            timeout,
            exports: Gate::new(crate::config::MAX_EXPORTS_AT_ONCE, "export places (MAX_EXPORTS_AT_ONCE)"),
        }
    }

    /// A place for one more export, held while it streams; 503 if
    /// [`crate::config::MAX_EXPORTS_AT_ONCE`] are streaming already.
    pub fn export_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        self.exports.try_enter(5)
    }

    /// Turns taken now, and exports streaming now.
    pub fn in_use(&self) -> (usize, usize) {
        (self.turns.in_use(), self.exports.in_use())
    }

    /// Waits for a turn, up to `wait`; 503 if none came.
    pub async fn take_within(&self, wait: Duration) -> Result<Turn, ApiError> {
        let permit = self.turns.enter(wait).await?;
        Ok(Turn { _permit: permit, deadline: std::time::Instant::now() + self.timeout })
    }

    /// Waits for a turn, up to [`crate::config::SEARCH_QUEUE_WAIT`].
    pub async fn take(&self) -> Result<Turn, ApiError> {
        self.take_within(crate::config::SEARCH_QUEUE_WAIT).await
    }

    /// A turn for the next page of an export, from its blocking thread:
    /// waited for up to [`crate::config::EXPORT_TURN_WAIT`], longer than a
    /// search waits, since an export that gives up fails part way through.
    pub fn take_for_export(&self) -> Result<Turn, ApiError> {
        tokio::runtime::Handle::current().block_on(self.take_within(crate::config::EXPORT_TURN_WAIT))
    }

    /// The answer to a failed search: [`index_error`], and 400 naming the
    /// limit for one that ran out of time.
    pub fn error(&self, e: custos_index::engine::IndexError) -> ApiError {
        match e {
            custos_index::engine::IndexError::TimedOut => ApiError::bad_request(format!(
                "the search ran longer than its limit of {} ms (search_timeout); narrow it, for example with \
                 start and end, or with fewer wildcards",
                self.timeout.as_millis()
            )),
            other => index_error(other),
        }
    }
}

/// Query of a search.
#[derive(Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
    /// Lower time bound (RFC 3339 or `now-24h`), on `time`.
    start: Option<String>,
    /// Upper time bound, exclusive.
    end: Option<String>,
    limit: Option<usize>,
    /// The last index of the previous page.
    cursor: Option<u64>,
    /// `desc` (newest first, the default) or `asc`.
    order: Option<String>,
    /// `json` (a page, the default), or `ndjson` / `csv` / `bundle`: every
    /// hit, streamed; a bundle with inclusion proofs.
    format: Option<String>,
}

/// Parses `q`, adding `start`/`end` as a time range.
pub fn build_query(q: Option<&str>, start: Option<&str>, end: Option<&str>) -> Result<Q, ApiError> {
    let parsed = query::parse(q.unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("{e}")).with_problem(e.position, "q", &e.message))?;
    if start.is_none() && end.is_none() {
        return Ok(parsed);
    }
    let b = |s: Option<&str>, included: bool| match s {
        None => Bound::Unbounded,
        Some(s) if included => Bound::Included(s.into()),
        Some(s) => Bound::Excluded(s.into()),
    };
    let range = Q::Field("time".into(), Value_::Range(b(start, true), b(end, false)));
    Ok(match parsed {
        Q::All => range,
        other => Q::And(vec![other, range]),
    })
}

/// The opening of a bundle export: a checkpoint that covers the log as it
/// was when the export was asked for (one is signed now if need be, waiting
/// up to `CHECKPOINT_WAIT`; failing that, the latest one, and newer hits
/// are left out), and the search; with the checkpoint's size, up to which
/// hits are exported.
async fn bundle_head(
    state: &AppState,
    ext: &crate::state::LogExt,
    name: &str,
    p: &SearchQuery,
) -> Result<(Export, u64), ApiError> {
    state.wait_checkpoint(ext, ext.log.size()).await;
    let cp = ext.log.checkpoint().ok_or_else(|| ApiError::unavailable("the log has no signed checkpoint yet", 1))?;
    // Every entry the checkpoint covers is searched, once the index has it.
    state.indexes.wait_searchable(name, cp.checkpoint.size, crate::config::SEARCHABLE_WAIT).await;
    let indexed = state.indexes.get_open(name).and_then(|ix| ix.indexed().ok()).unwrap_or(0);
    let search = json!({
        "q": p.q, "start": p.start, "end": p.end, "order": p.order.as_deref().unwrap_or("desc"),
        // How many entries of the checkpoint the index covered: all of
        // them unless it lagged for longer than the wait.
        "searched": indexed.min(cp.checkpoint.size),
    });
    let head = format!(
        "{{\"format\":\"custos-bundle-v1\",\"log\":{},\"checkpoint\":{},\"search\":{search},\"entries\":[",
        json!(name),
        json!(cp.note)
    );
    Ok((Export::Bundle { head: head.into_bytes() }, cp.checkpoint.size))
}

/// The log's size now, once searches see all of it (waiting up to
/// `SEARCHABLE_WAIT`): "every hit" of an NDJSON or CSV export is every hit
/// among these entries.
async fn searchable_now(state: &AppState, ext: &crate::state::LogExt, name: &str) -> u64 {
    let now = ext.log.size();
    state.indexes.wait_searchable(name, now, crate::config::SEARCHABLE_WAIT).await;
    now
}

/// Whether a query has a wildcard term anywhere.
fn has_wildcard(q: &Q) -> bool {
    match q {
        Q::And(qs) | Q::Or(qs) => qs.iter().any(has_wildcard),
        Q::Not(q) => has_wildcard(q),
        Q::Field(_, v) | Q::Text(v) => matches!(v, Value_::Wildcard(_)),
        Q::All => false,
    }
}

/// `GET /v1/logs/{log}/search`.
pub async fn search(
    State(state): State<Arc<AppState>>,
    id: Option<Extension<Identity>>,
    read: Option<Extension<Arc<crate::audit::EarlyRead>>>,
    Path(name): Path<String>,
    Params(p): Params<SearchQuery>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let ext = crate::read::readable(&state, id, &name).await?;
    let q = build_query(p.q.as_deref(), p.start.as_deref(), p.end.as_deref())?;
    let limit = p.limit.unwrap_or(DEFAULT_PAGE_HITS);
    if limit == 0 || limit > MAX_PAGE_HITS {
        return Err(ApiError::bad_request(format!("limit must be 1 to {MAX_PAGE_HITS}")));
    }
    let newest_first = match p.order.as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(o) => return Err(ApiError::bad_request(format!("order {o:?} is not asc or desc"))),
    };
    match p.format.as_deref() {
        None | Some("json") => {}
        Some(f @ ("ndjson" | "csv" | "bundle")) => {
            let slot = state.search_turns.export_slot()?;
            let what = match f {
                "ndjson" => (Export::Ndjson, searchable_now(&state, &ext, &name).await),
                "csv" => (Export::Csv, searchable_now(&state, &ext, &name).await),
                _ => bundle_head(&state, &ext, &name, &p).await?,
            };
            return Ok(export(state, (name, ext.log.clone()), q, newest_first, what, slot));
        }
        Some(f) => return Err(ApiError::bad_request(format!("format {f:?} is not json, ndjson, csv or bundle"))),
    }
    let log = ext.log.clone();
    // A page holds up to 1,000 entries until it is sent: a place among the
    // big reads for that, and a turn among the searches while it is made.
    let place = state.big_reads.enter(crate::config::SEARCH_QUEUE_WAIT).await?;
    let turn = state.search_turns.take().await?;
    let ix = match state.indexes.get_open(&name) {
        Some(ix) => ix,
        None => {
            let (s, name) = (state.clone(), name.clone());
            tokio::task::spawn_blocking(move || s.indexes.get(&s, &name))
                .await
                .map_err(|e| ApiError::unavailable(e.to_string(), 1))??
        }
    };
    // Translating compiles wildcards into automata, which a long pattern
    // can make slow: that happens off the runtime's threads.
    let now = custos_event::time::now_nanos();
    let prepared = if has_wildcard(&q) {
        let (ix, q) = (ix.clone(), q.clone());
        tokio::task::spawn_blocking(move || ix.prepare(&q, now))
            .await
            .map_err(|e| ApiError::unavailable(e.to_string(), 1))?
    } else {
        ix.prepare(&q, now)
    }
    .map_err(index_error)?
    .until(turn.deadline);
    let s = state.clone();
    let search = tokio::task::spawn_blocking(move || -> Result<(Vec<u8>, std::time::Duration), ApiError> {
        // Held until the search ends, even if the client goes away.
        let _turn = turn;
        let started = std::time::Instant::now();
        // Read before the search, which sees at least these entries.
        let indexed = ix.indexed().unwrap_or(0);
        let (hits, total) =
            ix.search_prepared(&prepared, limit, p.cursor, newest_first).map_err(|e| s.search_turns.error(e))?;
        let mut out = Vec::with_capacity(hits.len());
        for (&index, entry) in hits.iter().zip(log.entries_at(&hits)?) {
            let leaf_hash = B64.encode(custos_tlog::leaf_hash(&entry).0);
            let event = crate::read::stored_event(String::from_utf8(entry).ok());
            out.push(Hit { event, index, leaf_hash });
        }
        let page = Page {
            hits: out,
            indexed,
            log: name,
            log_size: log.size(),
            next_cursor: (hits.len() == limit).then(|| hits.last().copied()).flatten(),
            total,
        };
        let body = serde_json::to_vec(&page).map_err(|e| ApiError::unavailable(e.to_string(), 1))?;
        Ok((body, started.elapsed()))
    });
    // Valid and allowed: from here only the server can fail, so the read's
    // record is made durable on this task while the search runs on another
    // thread.
    let (body, took) = match &read {
        Some(Extension(read)) => tokio::join!(read.record(&state), search).1,
        None => search.await,
    }
    .map_err(|e| ApiError::unavailable(e.to_string(), 1))??;
    let timing = crate::authn::server_timing("search", took);
    let resp = ([(axum::http::header::CONTENT_TYPE, "application/json")], [timing], body).into_response();
    Ok(crate::gate::hold(resp, place))
}

/// One search hit, as answered.
#[derive(serde::Serialize)]
struct Hit {
    event: Box<serde_json::value::RawValue>,
    index: u64,
    leaf_hash: String,
}

/// A page of search hits, as answered (fields in the order `json!` gives
/// them elsewhere: sorted).
#[derive(serde::Serialize)]
struct Page {
    hits: Vec<Hit>,
    indexed: u64,
    log: String,
    log_size: u64,
    next_cursor: Option<u64>,
    total: usize,
}

/// Chunks of an export in flight, at most: with 64 KiB chunks, an export
/// holds well under a few MiB whatever its size.
const EXPORT_CHUNKS_IN_FLIGHT: usize = 8;
/// Bytes per export chunk.
const EXPORT_CHUNK_BYTES: usize = 64 * 1024;
/// Hits of an export whose entries are read at once: with entries of at
/// most 64 KiB, an export holds at most 6.4 MiB of them.
const EXPORT_READ_HITS: usize = 100;
/// CSV columns of an export.
const CSV_COLUMNS: [&str; 8] =
    ["index", "time", "actor.user.name", "activity", "status", "src_endpoint.ip", "resource.name", "leaf_hash"];

fn csv_field(v: Option<&Node<'_>>) -> String {
    let s = match v {
        None | Some(Node::Null) => String::new(),
        Some(Node::Str(s)) => s.to_string(),
        Some(other) => other.to_value().to_string(),
    };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

/// One CSV row of an export, without its line end.
fn csv_row(out: &mut Vec<u8>, index: u64, leaf: &str, entry: &[u8]) {
    let event = custos_event::doc::parse(entry).ok();
    let row: Vec<String> = CSV_COLUMNS
        .iter()
        .map(|c| match *c {
            "index" => index.to_string(),
            "leaf_hash" => leaf.to_string(),
            path => csv_field(path.split('.').fold(event.as_ref(), |v, k| v.and_then(|v| v.get(k)))),
        })
        .collect();
    out.extend_from_slice(row.join(",").as_bytes());
}

/// What an export streams.
enum Export {
    Ndjson,
    Csv,
    /// A `custos-bundle-v1` bundle (as `custos export` writes and
    /// `custos verify --bundle` checks): every hit with its inclusion
    /// proof against the checkpoint the export stops at. `head` is the
    /// bundle's opening, up to and including `"entries":[`.
    Bundle {
        head: Vec<u8>,
    },
}

/// Streams every hit of `q`, page by page, in constant memory: those among
/// the first `size_at_start` entries (the log when the export was asked
/// for; for a bundle, what its checkpoint covers). `slot` is its place
/// among the exports, held until it ends.
fn export(
    state: Arc<AppState>,
    (name, log): (String, Arc<custos_log::Log>),
    q: Q,
    newest_first: bool,
    (kind, size_at_start): (Export, u64),
    slot: tokio::sync::OwnedSemaphorePermit,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(EXPORT_CHUNKS_IN_FLIGHT);
    let content_type = match kind {
        Export::Ndjson => "application/x-ndjson",
        Export::Csv => "text/csv; charset=utf-8",
        Export::Bundle { .. } => "application/json",
    };
    tokio::task::spawn_blocking(move || {
        // Given back when the export ends, however it ends.
        let _slot = slot;
        let run = || -> Result<(), String> {
            let ix = state.indexes.get(&state, &name).map_err(|e| e.message)?;
            let now = custos_event::time::now_nanos();
            let mut chunk = Vec::with_capacity(EXPORT_CHUNK_BYTES);
            match &kind {
                Export::Csv => {
                    chunk.extend_from_slice(CSV_COLUMNS.join(",").as_bytes());
                    chunk.push(b'\n');
                }
                Export::Bundle { head, .. } => chunk.extend_from_slice(head),
                Export::Ndjson => {}
            }
            let (mut cursor, mut first) = (None, true);
            // Translated once (wildcards compile to automata); each page
            // gets its own deadline.
            let mut page = ix.prepare(&q, now).map_err(|e| e.to_string())?;
            loop {
                // Each page takes a turn among the searches (not the whole
                // export, which lasts as long as its client reads), let go
                // before the page is sent.
                let turn = state.search_turns.take_for_export().map_err(|e| e.message)?;
                page.set_deadline(turn.deadline);
                let (hits, _) = ix
                    .search_prepared(&page, MAX_PAGE_HITS, cursor, newest_first)
                    .map_err(|e| state.search_turns.error(e).message)?;
                let Some(last) = hits.last().copied() else { break };
                cursor = Some(last);
                let kept: Vec<u64> = hits.into_iter().filter(|i| *i < size_at_start).collect();
                drop(turn);
                for part in kept.chunks(EXPORT_READ_HITS) {
                    // A part's entries read together: each compressed frame
                    // they fall in is decompressed once, not once per hit.
                    let entries = log.entries_at(part).map_err(|e| e.to_string())?;
                    let mut proofs = match &kind {
                        // The part's proofs together: hits in one tile share
                        // the hashing of its lower levels.
                        Export::Bundle { .. } => {
                            log.inclusion_proofs_at(part, size_at_start).map_err(|e| e.to_string())?.into_iter()
                        }
                        _ => Vec::new().into_iter(),
                    };
                    for (&i, entry) in part.iter().zip(entries) {
                        match &kind {
                            Export::Csv => {
                                csv_row(&mut chunk, i, &B64.encode(custos_tlog::leaf_hash(&entry).0), &entry);
                                chunk.push(b'\n');
                            }
                            Export::Ndjson => {
                                // Keys in the order `json!` sorts them.
                                let leaf = B64.encode(custos_tlog::leaf_hash(&entry).0);
                                let event = crate::read::stored_event(String::from_utf8(entry).ok());
                                write!(chunk, r#"{{"event":{},"index":{i},"leaf_hash":"{leaf}"}}"#, event.get())
                                    .expect("writing to a Vec");
                                chunk.push(b'\n');
                            }
                            Export::Bundle { .. } => {
                                let proof = proofs.next().ok_or("a proof for every hit")?;
                                if !std::mem::take(&mut first) {
                                    chunk.push(b',');
                                }
                                write!(chunk, "\n{{\"index\":{i},\"entry\":").expect("writing to a Vec");
                                serde_json::to_writer(&mut chunk, &String::from_utf8_lossy(&entry))
                                    .expect("writing to a Vec");
                                chunk.extend_from_slice(b",\"inclusion_proof\":[");
                                for (k, h) in proof.iter().enumerate() {
                                    write!(chunk, "{}\"{}\"", if k == 0 { "" } else { "," }, B64.encode(h.0))
                                        .expect("writing to a Vec");
                                }
                                chunk.extend_from_slice(b"]}");
                            }
                        }
                        if chunk.len() >= EXPORT_CHUNK_BYTES {
                            // A closed channel means the client went away.
                            tx.blocking_send(Ok(std::mem::take(&mut chunk))).map_err(|_| "client gone".to_string())?;
                        }
                    }
                }
            }
            if let Export::Bundle { .. } = kind {
                chunk.extend_from_slice(b"\n]}\n");
            }
            if !chunk.is_empty() {
                tx.blocking_send(Ok(chunk)).map_err(|_| "client gone".to_string())?;
            }
            Ok(())
        };
        if let Err(e) = run() {
            tracing::warn!(error = e, "export stopped");
            let _ = tx.blocking_send(Err(std::io::Error::other(e)));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    ([(axum::http::header::CONTENT_TYPE, content_type)], axum::body::Body::from_stream(stream)).into_response()
}

/// Query of an aggregation.
#[derive(Deserialize)]
pub struct AggregateQuery {
    q: Option<String>,
    start: Option<String>,
    end: Option<String>,
    /// Count the most frequent values of this field.
    by: Option<String>,
    /// How many values (default 10).
    top: Option<u32>,
    /// Or: a date histogram of `time` with this interval, such as `1h`.
    interval: Option<String>,
}

/// `GET /v1/logs/{log}/aggregate?q=&by=FIELD&top=N` or `?q=&interval=1h`.
pub async fn aggregate(
    State(state): State<Arc<AppState>>,
    id: Option<Extension<Identity>>,
    Path(name): Path<String>,
    Params(p): Params<AggregateQuery>,
) -> Result<Json<Value>, ApiError> {
    crate::read::readable(&state, id, &name).await?;
    let q = build_query(p.q.as_deref(), p.start.as_deref(), p.end.as_deref())?;
    let s = state.clone();
    let turn = state.search_turns.take().await?;
    let out = tokio::task::spawn_blocking(move || -> Result<Value, ApiError> {
        let ix = s.indexes.get(&s, &name)?;
        let prepared = ix.prepare(&q, custos_event::time::now_nanos()).map_err(index_error)?.until(turn.deadline);
        let buckets = ix
            .aggregate_prepared(&prepared, p.by.as_deref(), p.top.unwrap_or(10), p.interval.as_deref())
            .map_err(|e| s.search_turns.error(e))?;
        drop(turn);
        let buckets: Vec<Value> = buckets.into_iter().map(|(k, c)| json!({"key": k, "count": c})).collect();
        Ok(json!({"log": name, "by": p.by, "interval": p.interval, "buckets": buckets}))
    })
    .await
    .map_err(|e| ApiError::unavailable(e.to_string(), 1))??;
    Ok(Json(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exports past `MAX_EXPORTS_AT_ONCE` are refused at once (they last as
    /// long as their clients read), with a `Retry-After`.
    #[test]
    fn exports_past_their_limit_get_503() {
        let turns = Turns::new(4, Duration::from_secs(5));
        let mut slots: Vec<_> = (0..crate::config::MAX_EXPORTS_AT_ONCE).map(|_| turns.export_slot().unwrap()).collect();
        let refused = turns.export_slot().unwrap_err();
        assert_eq!((refused.status.as_u16(), refused.retry_after_secs), (503, Some(5)));
        assert!(refused.message.contains("all 8 export places (MAX_EXPORTS_AT_ONCE) are taken"), "{}", refused.message);
        slots.pop();
        slots.push(turns.export_slot().unwrap());
    }

    /// With every turn taken, a search waits; past its wait it gets 503
    /// with `Retry-After`; a turn given back goes to the next one waiting.
    #[tokio::test]
    async fn searches_wait_for_a_turn_and_get_503_when_none_comes() {
        let turns = Turns::new(1, Duration::from_secs(5));
        let first = turns.take().await.unwrap();
        assert!(first.deadline > std::time::Instant::now() + Duration::from_secs(4));
        let refused = turns.take_within(Duration::from_millis(30)).await.err().unwrap();
        assert_eq!(refused.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.retry_after_secs, Some(1));
        assert!(refused.message.contains("all 1 search turns (searches_at_once) are taken"), "{}", refused.message);
        let waiting = tokio::spawn(async move { turns.take_within(Duration::from_secs(5)).await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!waiting.is_finished());
        drop(first);
        waiting.await.unwrap().unwrap();
    }

    /// The indexer and searches at start ask for the same index at once:
    /// it is opened once, and every caller gets it.
    #[test]
    fn an_index_asked_for_by_many_threads_at_once_is_opened_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(custos_log::LogStore::open(custos_log::StoreConfig::new(dir.path())).unwrap());
        store.create("a", false).unwrap();
        let state = AppState::new(store, Default::default(), Default::default());
        let got: Vec<Result<Arc<LogIndex>, ApiError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| state.indexes.get(&state, "a"))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let first = got[0].as_ref().map_err(|e| e.message.clone()).unwrap().clone();
        for g in &got {
            let ix = g.as_ref().map_err(|e| e.message.clone()).unwrap();
            assert!(Arc::ptr_eq(ix, &first), "two indexes for one log");
        }
    }
}
