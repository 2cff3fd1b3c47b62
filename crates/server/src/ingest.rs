//! `POST /v1/logs/{log}/events`: validate a batch, store it durably, answer
//! with one receipt per event.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use custos_event::doc::{self, Node};
use custos_event::schema::FieldError;
use custos_event::{EventError, ServerFields, View};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{MAX_EVENTS_PER_REQUEST, SEARCHABLE_WAIT};
use crate::error::{ApiError, Params, Problem};
use crate::state::{AppState, LogExt, Receipt};

/// Query parameters of an ingest request.
#[derive(Deserialize, Default)]
pub struct IngestQuery {
    /// `checkpoint`: wait for a signed checkpoint and return proofs.
    /// `searchable`: answer once searches find the events.
    wait: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Ndjson,
}

fn content_format(headers: &HeaderMap) -> Result<Format, ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => Ok(Format::Json),
        "application/x-ndjson" | "application/jsonl" | "application/ndjson" => Ok(Format::Ndjson),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type {ct:?} is not accepted: send application/json or application/x-ndjson"),
        )),
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body is over the limit of {limit} bytes (max_body_bytes), after decompression"),
    )
}

/// How much of a body over the limit is read and thrown away before the
/// 413 answer, so that a client still sending it gets that answer rather
/// than a broken connection. A larger body is cut off.
pub const MAX_DRAINED_BODY_BYTES: usize = 16 << 20;

/// The body, up to `limit` bytes, within `timeout` (408 otherwise). Over
/// the limit: the rest is drained (up to [`MAX_DRAINED_BODY_BYTES`], within
/// the same time) and the answer is 413, also if the time runs out first.
async fn collect_body(mut body: Body, limit: usize, timeout: std::time::Duration) -> Result<Vec<u8>, ApiError> {
    use http_body_util::BodyExt;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut out = Vec::new();
    let mut seen = 0usize;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            // Over the limit and still arriving when the time is up: the
            // size is what the client must fix.
            Err(_) if seen > limit => return Err(too_large(limit)),
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("request body did not arrive within {} s", timeout.as_secs()),
                ));
            }
        };
        let frame = frame.map_err(|e| ApiError::bad_request(format!("reading the request body failed: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        seen = seen.saturating_add(data.len());
        if seen > limit {
            if seen > limit.saturating_add(MAX_DRAINED_BODY_BYTES) {
                break;
            }
            out = Vec::new();
            continue;
        }
        out.extend_from_slice(&data);
    }
    if seen > limit {
        return Err(too_large(limit));
    }
    Ok(out)
}

/// Room for the request bodies the server holds at once (read,
/// decompressed, parsed, being stored), counted in KiB: a request takes
/// room for its body before reading it and keeps it until its events are
/// stored, so that ingest's memory is bounded whatever the number of
/// connections.
pub struct BodyRoom {
    kib: Arc<tokio::sync::Semaphore>,
    total_kib: usize,
}

impl BodyRoom {
    /// Room for `bytes` of bodies at once (at least 1 KiB).
    pub fn new(bytes: usize) -> BodyRoom {
        let total_kib = bytes.div_ceil(1024).clamp(1, u32::MAX as usize);
        BodyRoom { kib: Arc::new(tokio::sync::Semaphore::new(total_kib)), total_kib }
    }

    /// Room for `bytes` (all of it, if that is more), waiting up to `wait`
    /// for others to give theirs back; 503 otherwise.
    pub async fn take_within(
        &self,
        bytes: usize,
        wait: std::time::Duration,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        let kib = bytes.div_ceil(1024).clamp(1, self.total_kib) as u32;
        match tokio::time::timeout(wait, self.kib.clone().acquire_many_owned(kib)).await {
            Ok(Ok(room)) => Ok(room),
            _ => Err(ApiError::unavailable(
                format!(
                    "the server holds {} MiB of request bodies already (max_body_bytes_in_flight) and no \
                     room came free within {} s; try again",
                    self.total_kib / 1024,
                    wait.as_secs()
                ),
                1,
            )),
        }
    }

    /// Bytes of room taken now.
    pub fn used_bytes(&self) -> usize {
        (self.total_kib - self.kib.available_permits()) * 1024
    }

    /// Gives back what `room` holds beyond `bytes`.
    pub(crate) fn keep(room: &mut tokio::sync::OwnedSemaphorePermit, bytes: usize) {
        let keep = bytes.div_ceil(1024).max(1);
        if room.num_permits() > keep {
            drop(room.split(room.num_permits() - keep));
        }
    }
}

/// The body's `Content-Length`, if it has one of at most `limit` bytes.
pub(crate) fn declared_len(headers: &HeaderMap, limit: usize) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<usize>().ok())
        .filter(|n| *n <= limit)
}

/// Reads the body, at most `max_body_bytes` before and after
/// decompression, within `body_timeout`. The room it takes among the
/// bodies in flight (see [`BodyRoom`]) is returned with it: keep it until
/// the request's events are stored.
pub(crate) async fn read_body(
    body: Body,
    headers: &HeaderMap,
    state: &AppState,
) -> Result<(Vec<u8>, tokio::sync::OwnedSemaphorePermit), ApiError> {
    let (limit, timeout) = (state.config.max_body_bytes, state.config.body_timeout);
    let enc = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("identity").trim();
    let encoded = !matches!(enc.to_ascii_lowercase().as_str(), "identity" | "");
    // Room for the body as declared (or as large as allowed), and for its
    // decompressed form; what is not used is given back once it is read.
    let need = declared_len(headers, limit).unwrap_or(limit).saturating_add(if encoded { limit } else { 0 });
    let mut room = state.body_room.take_within(need, crate::config::BODY_ROOM_WAIT).await?;
    let body = decode_body(collect_body(body, limit, timeout).await?, enc, limit)?;
    BodyRoom::keep(&mut room, body.len());
    Ok((body, room))
}

/// The body as sent, decompressed by its `Content-Encoding`, at most
/// `limit` bytes.
fn decode_body(raw: Vec<u8>, enc: &str, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut reader: Box<dyn Read> = match enc.to_ascii_lowercase().as_str() {
        "identity" | "" => return Ok(raw),
        "gzip" | "x-gzip" => Box::new(flate2::read::GzDecoder::new(&raw[..])),
        "zstd" => Box::new(
            zstd::stream::read::Decoder::new(&raw[..]).map_err(|e| ApiError::bad_request(format!("zstd body: {e}")))?,
        ),
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Encoding {other:?} is not accepted: send gzip, zstd or none"),
            ));
        }
    };
    let mut out = Vec::new();
    reader
        .by_ref()
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::bad_request(format!("body is not valid {enc}: {e}")))?;
    if out.len() > limit {
        return Err(too_large(limit));
    }
    Ok(out)
}

/// One event of the batch and where it came from.
struct Item<V> {
    line: Option<usize>,
    index: Option<usize>,
    value: V,
}

fn problem(item: (Option<usize>, Option<usize>), field: &str, error: impl Into<String>) -> Problem {
    Problem { line: item.0, index: item.1, field: field.into(), error: error.into() }
}

/// Splits a request body into events, borrowing from it.
fn parse(body: &[u8], format: Format, max_event_bytes: usize) -> Result<Vec<Item<Node<'_>>>, ApiError> {
    let reject = |problems: Vec<Problem>| ApiError {
        problems,
        ..ApiError::bad_request("the batch was rejected and nothing was stored; see problems")
    };
    let mut items = Vec::new();
    match format {
        Format::Json => {
            let v = doc::parse(body).map_err(|e| {
                let (line, column) = e.line_column(body);
                ApiError::bad_request(format!("malformed JSON at line {line} column {column}: {}", e.what))
            })?;
            match v {
                Node::Arr(a) => {
                    items.extend(a.into_iter().enumerate().map(|(i, value)| Item { line: None, index: Some(i), value }))
                }
                Node::Obj(_) => items.push(Item { line: None, index: Some(0), value: v }),
                _ => return Err(ApiError::bad_request("body must be a JSON object or an array of objects")),
            }
        }
        Format::Ndjson => {
            let mut problems = Vec::new();
            for (n, line) in body.split(|&b| b == b'\n').enumerate() {
                let line_no = n + 1;
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if line.len() > max_event_bytes {
                    problems.push(problem(
                        (Some(line_no), None),
                        "$",
                        format!("event is {} bytes, over the limit of {max_event_bytes} bytes", line.len()),
                    ));
                    continue;
                }
                match doc::parse(line) {
                    Ok(value) => items.push(Item { line: Some(line_no), index: None, value }),
                    Err(e) => problems.push(problem(
                        (Some(line_no), None),
                        "$",
                        format!("malformed JSON at column {}: {}", e.offset + 1, e.what),
                    )),
                }
            }
            if !problems.is_empty() {
                return Err(reject(problems));
            }
        }
    }
    if items.is_empty() {
        return Err(ApiError::bad_request("the body holds no events"));
    }
    if items.len() > MAX_EVENTS_PER_REQUEST {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{} events in one request, over the limit of {MAX_EVENTS_PER_REQUEST}", items.len()),
        ));
    }
    Ok(items)
}

/// A validated, sealed event.
struct Sealed {
    uid: Option<String>,
    seq: Option<u64>,
    entry: Vec<u8>,
}

fn seal_all<V: View, B: std::borrow::Borrow<V>>(
    items: &[Item<B>],
    server: &ServerFields,
    max_event_bytes: usize,
) -> Result<Vec<Sealed>, ApiError> {
    let mut problems = Vec::new();
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let at = (item.line, item.index);
        let value: &V = item.value.borrow();
        match custos_event::seal_event(value, server) {
            Ok(entry) if entry.len() > max_event_bytes => problems.push(problem(
                at,
                "$",
                format!("event is {} bytes once sealed, over the limit of {max_event_bytes} bytes", entry.len()),
            )),
            Ok(entry) => out.push(Sealed {
                uid: value.get("uid").and_then(View::as_str).map(str::to_string),
                seq: value.get("seq").and_then(View::as_u64),
                entry,
            }),
            Err(EventError::TooLarge { size_bytes }) => problems.push(problem(
                at,
                "$",
                format!("event is {size_bytes} bytes once sealed, over the limit of 65535 bytes"),
            )),
            Err(EventError::Fields(errs)) => {
                problems.extend(errs.into_iter().map(|FieldError { field, error }| problem(at, &field, error)))
            }
        }
    }
    if !problems.is_empty() {
        return Err(ApiError {
            problems,
            ..ApiError::bad_request("the batch was rejected and nothing was stored; see problems")
        });
    }
    Ok(out)
}

/// Stores the events that are not retries of earlier ones and returns one
/// receipt per event, with `true` for duplicates.
async fn store(ext: &LogExt, events: Vec<Sealed>) -> Result<Vec<(Receipt, bool)>, ApiError> {
    let mut uids: Vec<String> = events.iter().filter_map(|e| e.uid.clone()).collect();
    uids.sort();
    uids.dedup();
    let slots: Vec<_> = {
        let mut d = ext.dedupe.lock().unwrap_or_else(|e| e.into_inner());
        uids.iter().map(|u| (u.clone(), d.slot(u))).collect()
    };
    // Locking in sorted order cannot deadlock with another batch.
    let mut guards = HashMap::new();
    for (uid, slot) in slots {
        guards.insert(uid, slot.lock_owned().await);
    }
    enum Plan {
        Known(Receipt),
        New(usize),
        SameAs(String),
    }
    let mut plans = Vec::with_capacity(events.len());
    let mut fresh: Vec<&[u8]> = Vec::new();
    let mut first_new: HashMap<&str, usize> = HashMap::new();
    for e in &events {
        let plan = match &e.uid {
            Some(u) if guards[u].is_some() => Plan::Known(guards[u].clone().expect("checked")),
            Some(u) if first_new.contains_key(u.as_str()) => Plan::SameAs(u.clone()),
            uid => {
                if let Some(u) = uid {
                    first_new.insert(u, fresh.len());
                }
                fresh.push(&e.entry);
                Plan::New(fresh.len() - 1)
            }
        };
        plans.push(plan);
    }
    let (start, leaves) = if fresh.is_empty() {
        (0, Vec::new())
    } else {
        let (range, leaves) = ext.log.append_hashed(&fresh).await?;
        (range.start, leaves)
    };
    let new_receipt = |k: usize| Receipt { index: start + k as u64, leaf_hash: leaves[k] };
    for (uid, k) in &first_new {
        **guards.get_mut(*uid).expect("locked") = Some(new_receipt(*k));
    }
    Ok(plans
        .into_iter()
        .map(|p| match p {
            Plan::Known(r) => (r, true),
            Plan::New(k) => (new_receipt(k), false),
            Plan::SameAs(u) => (new_receipt(first_new[u.as_str()]), true),
        })
        .collect())
}

/// Validates, seals and stores events that a source produced (values
/// already parsed), for the source receivers. Returns one receipt per
/// event; an invalid event rejects the whole batch.
pub async fn ingest_values(
    state: &AppState,
    log: &str,
    server: ServerFields,
    values: Vec<Value>,
) -> Result<Vec<(Receipt, bool)>, ApiError> {
    ingest_sealing(state, log, server, values, false).await
}

/// Events sealed on the calling task rather than a blocking thread, when
/// there are at most this many: a few small events seal in microseconds,
/// less than the hop to another thread costs.
const INLINE_SEAL_EVENTS_MAX: usize = 16;

/// Request bodies up to this size are parsed and sealed on the async
/// task that received them rather than on a blocking thread.
const INLINE_SEAL_BODY_BYTES: usize = 8 * 1024;

/// Like [`ingest_values`], for sources inside the server that wait for
/// every event (the gateway in fail-closed mode): small batches are sealed
/// on the calling task, saving a thread hop on a path bound by fsync.
pub async fn ingest_local<V: View + Send + 'static>(
    state: &AppState,
    log: &str,
    server: ServerFields,
    values: Vec<V>,
) -> Result<Vec<(Receipt, bool)>, ApiError> {
    let inline = values.len() <= INLINE_SEAL_EVENTS_MAX;
    ingest_sealing(state, log, server, values, inline).await
}

/// Like [`ingest_values`], for events built as [`Node`]s (syslog): no
/// `serde_json::Value` tree is built for them.
pub async fn ingest_nodes(
    state: &AppState,
    log: &str,
    server: ServerFields,
    values: Vec<Node<'static>>,
) -> Result<Vec<(Receipt, bool)>, ApiError> {
    ingest_sealing(state, log, server, values, false).await
}

/// Like [`ingest_values`], sealing on the calling thread from borrowed
/// events: for callers on a thread of their own that keep the events (the
/// gateway's sink, which retries them if the log is busy). Saves a copy of
/// every event and a hop to a blocking thread.
pub async fn ingest_borrowed<V: View>(
    state: &AppState,
    log: &str,
    server: ServerFields,
    values: &[V],
) -> Result<Vec<(Receipt, bool)>, ApiError> {
    let seqs = source_seqs(values);
    let submitter = server.submitter.clone();
    let items: Vec<Item<&V>> =
        values.iter().enumerate().map(|(i, value)| Item { line: None, index: Some(i), value }).collect();
    let sealed = seal_all::<V, _>(&items, &server, state.config.max_event_bytes)?;
    store_sealed(state, log, &submitter, &seqs, sealed).await
}

/// The stream and sequence number of each event, for gap detection. A
/// syslog host numbers each process's messages separately.
fn source_seqs<V: View>(values: &[V]) -> Vec<(String, Option<u64>)> {
    values
        .iter()
        .map(|v| {
            let sys = v.get("metadata").and_then(|m| m.get("syslog"));
            let stream = match sys {
                Some(sys) if sys.is_object() => {
                    let f = |k| sys.get(k).and_then(View::as_str).unwrap_or("");
                    format!("{}/{}/{}", f("hostname"), f("app_name"), f("procid"))
                }
                _ => String::new(),
            };
            (stream, v.get("seq").and_then(View::as_u64))
        })
        .collect()
}

async fn ingest_sealing<V: View + Send + 'static>(
    state: &AppState,
    log: &str,
    server: ServerFields,
    values: Vec<V>,
    inline: bool,
) -> Result<Vec<(Receipt, bool)>, ApiError> {
    let max_event = state.config.max_event_bytes;
    let seqs = source_seqs(&values);
    let submitter = server.submitter.clone();
    let items: Vec<Item<V>> =
        values.into_iter().enumerate().map(|(i, value)| Item { line: None, index: Some(i), value }).collect();
    let sealed = if inline {
        seal_all::<V, _>(&items, &server, max_event)?
    } else {
        tokio::task::spawn_blocking(move || seal_all::<V, _>(&items, &server, max_event))
            .await
            .map_err(|e| ApiError::unavailable(e.to_string(), 1))??
    };
    store_sealed(state, log, &submitter, &seqs, sealed).await
}

/// Appends sealed events, counts them and notes their sources.
async fn store_sealed(
    state: &AppState,
    log: &str,
    submitter: &str,
    seqs: &[(String, Option<u64>)],
    sealed: Vec<Sealed>,
) -> Result<Vec<(Receipt, bool)>, ApiError> {
    let count = sealed.len();
    let ext = state.for_write(log).await?;
    let receipts = store(&ext, sealed).await?;
    metrics::counter!("custos_ingest_events_total", "log" => log.to_string()).increment(count as u64);
    state.sources.seen(submitter, seqs);
    Ok(receipts)
}

/// The ingest handler.
pub async fn post_events(
    State(state): State<Arc<AppState>>,
    Path(log): Path<String>,
    Params(q): Params<IngestQuery>,
    Extension(peer): Extension<crate::conn::Peer>,
    id: Option<Extension<custos_auth::Identity>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let (wait_checkpoint, wait_searchable) = match q.wait.as_deref() {
        None => (false, false),
        Some("checkpoint") => (true, false),
        Some("searchable") => (false, true),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "wait={other:?} is not known; use wait=checkpoint or wait=searchable"
            )));
        }
    };
    custos_log::store::validate_log_name(&log, false).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let id = id.map(|Extension(i)| i);
    crate::authn::authorize(&state, id.as_ref(), custos_auth::Action::Append(&log))?;
    let submitter = id.map_or_else(|| "anonymous".to_string(), |i| i.name);
    let submitter_name = submitter.clone();
    let format = content_format(&headers)?;
    // The room is held until the events are stored (not while waiting for
    // a checkpoint or the index, which holds only the receipts).
    let (body, room) = read_body(body, &headers, &state).await?;
    let body_len = body.len();
    let max_event = state.config.max_event_bytes;
    let server = ServerFields {
        log: log.clone(),
        received_at: custos_event::time::format_rfc3339(custos_event::time::now_nanos()),
        submitter,
        via: "http".into(),
        address: peer.addr.map(|a| a.ip().to_string()),
    };
    let seal_body = move || {
        let items = parse(&body, format, max_event)?;
        seal_all(&items, &server, max_event)
    };
    // Parsing and canonicalising is CPU work: keep it off the async threads,
    // unless the body is so small that the hop to a blocking thread would
    // cost more than the work (a single event seals in microseconds).
    let sealed = if body_len <= INLINE_SEAL_BODY_BYTES {
        seal_body()?
    } else {
        tokio::task::spawn_blocking(seal_body).await.map_err(|e| ApiError::unavailable(e.to_string(), 1))??
    };
    let count = sealed.len();
    let seqs: Vec<(String, Option<u64>)> = sealed.iter().map(|e| (String::new(), e.seq)).collect();
    let ext = state.for_write(&log).await?;
    let receipts = store(&ext, sealed).await?;
    drop(room);
    state.sources.seen(&submitter_name, &seqs);
    metrics::counter!("custos_ingest_events_total", "log" => log.clone()).increment(count as u64);
    metrics::counter!("custos_ingest_bytes_total", "log" => log.clone()).increment(body_len as u64);
    metrics::histogram!("custos_ingest_latency_seconds").record(started.elapsed().as_secs_f64());
    // The log's size once every receipt's entry is in it.
    let need = receipts.iter().map(|(r, _)| r.index + 1).max().unwrap_or(0);
    if wait_searchable && !state.indexes.wait_searchable(&log, need, SEARCHABLE_WAIT).await {
        return Err(ApiError::unavailable(
            "events are stored (receipts are valid) but the index did not cover them in time; \
             they will be searchable once it catches up",
            1,
        ));
    }
    if !wait_checkpoint {
        return Ok(receipts_body(&log, &receipts));
    }
    let mut out: Vec<Value> = receipts
        .iter()
        .map(|(r, dup)| {
            let mut v = json!({"log": log, "index": r.index, "leaf_hash": B64.encode(r.leaf_hash.0)});
            if *dup {
                v["duplicate"] = Value::Bool(true);
            }
            v
        })
        .collect();
    if !state.wait_checkpoint(&ext, need).await {
        return Err(ApiError::unavailable(
            "events are stored (receipts are valid) but no checkpoint covered them in time; retry with the same uids",
            1,
        ));
    }
    let cp = ext.log.checkpoint().ok_or_else(|| ApiError::unavailable("no checkpoint yet", 1))?;
    for (v, (r, _)) in out.iter_mut().zip(&receipts) {
        let proof = ext.log.inclusion_proof(r.index, cp.checkpoint.size)?;
        v["tree_size"] = json!(cp.checkpoint.size);
        v["inclusion_proof"] = json!(proof.iter().map(|h| B64.encode(h.0)).collect::<Vec<_>>());
        v["checkpoint"] = json!(cp.note);
    }
    Ok((StatusCode::OK, axum::Json(json!({ "receipts": out }))).into_response())
}

/// The common answer, written directly: building a JSON value per receipt
/// showed in profiles of batched ingest.
fn receipts_body(log: &str, receipts: &[(Receipt, bool)]) -> Response {
    use std::fmt::Write;
    // The log name is validated to need no JSON escaping.
    let mut body = String::with_capacity(32 + receipts.len() * 96);
    body.push_str("{\"receipts\":[");
    for (i, (r, dup)) in receipts.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        let _ =
            write!(body, "{{\"index\":{},\"leaf_hash\":\"{}\",\"log\":\"{log}\"", r.index, B64.encode(r.leaf_hash.0));
        body.push_str(if *dup { ",\"duplicate\":true}" } else { "}" });
    }
    body.push_str("]}");
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Room is taken whole or waited for; past the wait, 503 with
    /// `Retry-After`; unused room is given back; a request larger than
    /// the whole room takes all of it rather than waiting for ever.
    #[tokio::test]
    async fn bodies_take_room_and_give_back_what_they_do_not_use() {
        let wait = std::time::Duration::from_millis(30);
        let room = BodyRoom::new(64 << 10);
        let mut a = room.take_within(48 << 10, wait).await.unwrap();
        assert_eq!(room.used_bytes(), 48 << 10);
        let refused = room.take_within(32 << 10, wait).await.unwrap_err();
        assert_eq!((refused.status.as_u16(), refused.retry_after_secs), (503, Some(1)));
        assert!(refused.message.contains("(max_body_bytes_in_flight)"), "{}", refused.message);
        BodyRoom::keep(&mut a, 1000);
        assert_eq!(room.used_bytes(), 1 << 10);
        let b = room.take_within(32 << 10, wait).await.unwrap();
        drop((a, b));
        assert_eq!(room.used_bytes(), 0);
        let all = room.take_within(1 << 30, wait).await.unwrap();
        assert_eq!(room.used_bytes(), 64 << 10);
        drop(all);
    }
}
