//! Reads: the list of logs, one log, entries with inclusion proofs, and
//! consistency proofs.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use custos_auth::{Action, Identity};
use custos_log::Log;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::authn::authorize;
use crate::config::MAX_RANGE_ENTRIES;
use crate::error::{ApiError, Params};
use crate::state::AppState;

fn b64s(hashes: &[custos_tlog::Hash]) -> Vec<String> {
    hashes.iter().map(|h| B64.encode(h.0)).collect()
}

/// `GET /v1/logs`.
pub async fn list_logs(
    State(state): State<Arc<AppState>>,
    id: Option<Extension<Identity>>,
) -> Result<Json<Value>, ApiError> {
    let id = id.map(|Extension(i)| i);
    authorize(&state, id.as_ref(), Action::ListLogs)?;
    let id = id.expect("authorized callers have an identity");
    let logs: Vec<Value> = state
        .store
        .list()
        .into_iter()
        .filter(|(name, _)| custos_auth::policy::may_see(&id, name))
        .map(|(name, log)| json!({"name": name, "size": log.size()}))
        .collect();
    Ok(Json(json!({ "logs": logs })))
}

/// A log the caller may read: invalid names get 400, and logs out of
/// scope get the same 404 as logs that do not exist.
pub(crate) async fn readable(
    state: &AppState,
    id: Option<Extension<Identity>>,
    name: &str,
) -> Result<Arc<crate::state::LogExt>, ApiError> {
    custos_log::store::validate_log_name(name, true).map_err(|e| ApiError::bad_request(e.to_string()))?;
    authorize(state, id.as_ref().map(|Extension(i)| i), Action::Read(name))?;
    state.existing(name).await
}

/// `GET /v1/logs/{log}`.
pub async fn log_info(
    State(state): State<Arc<AppState>>,
    id: Option<Extension<Identity>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let ext = readable(&state, id, &name).await?;
    let log = &ext.log;
    let cp = log
        .checkpoint()
        .map(|c| json!({"size": c.checkpoint.size, "root": B64.encode(c.checkpoint.root.0), "note": c.note}));
    Ok(Json(json!({
        "name": name,
        "origin": log.origin(),
        "size": log.size(),
        "verifier_key": log.verifier().to_key_string(),
        "checkpoint": cp,
    })))
}

/// Query of entry reads.
#[derive(Deserialize)]
pub struct EntryQuery {
    tree_size: Option<u64>,
}

/// The tree size to prove against: the one asked for, or the latest
/// checkpoint's. `None` when no checkpoint covers `index` yet.
fn proof_size(log: &Log, asked: Option<u64>, index: u64) -> Result<Option<(u64, Option<String>)>, ApiError> {
    match asked {
        Some(n) if n <= index => Err(ApiError::bad_request(format!("tree_size {n} does not include entry {index}"))),
        Some(n) if n > log.size() => {
            Err(ApiError::bad_request(format!("tree_size {n} is beyond the log's {} entries", log.size())))
        }
        Some(n) => Ok(Some((n, log.checkpoint().filter(|c| c.checkpoint.size == n).map(|c| c.note)))),
        None => Ok(log.checkpoint().filter(|c| c.checkpoint.size > index).map(|c| (c.checkpoint.size, Some(c.note)))),
    }
}

/// An entry as the event it holds, in an answer: the canonical JSON it is,
/// checked but not rebuilt; `null` if it is not JSON text.
pub(crate) fn stored_event(text: Option<String>) -> Box<serde_json::value::RawValue> {
    use serde_json::value::RawValue;
    text.and_then(|t| RawValue::from_string(t).ok())
        .unwrap_or_else(|| RawValue::from_string("null".into()).expect("valid JSON"))
}

fn entry_json(index: u64, entry: &[u8]) -> Value {
    let text = String::from_utf8_lossy(entry).to_string();
    let event: Value = serde_json::from_slice(entry).unwrap_or(Value::Null);
    json!({
        "index": index,
        "leaf_hash": B64.encode(custos_tlog::leaf_hash(entry).0),
        "entry": text,
        "event": event,
    })
}

/// `GET /v1/logs/{log}/entries/{index}[?tree_size=N]`: the entry and its
/// inclusion proof against the latest checkpoint or the given size.
pub async fn one_entry(
    State(state): State<Arc<AppState>>,
    id: Option<Extension<Identity>>,
    read: Option<Extension<Arc<crate::audit::EarlyRead>>>,
    Path((name, index)): Path<(String, String)>,
    Params(q): Params<EntryQuery>,
) -> Result<Json<Value>, ApiError> {
    let ext = readable(&state, id, &name).await?;
    let index: u64 = index.parse().map_err(|_| ApiError::bad_request(format!("index {index:?} is not a number")))?;
    let log = ext.log.clone();
    let size = log.size();
    if index >= size {
        return Err(ApiError::not_found(format!("entry {index} does not exist; the log has {size} entries")));
    }
    let proof = proof_size(&log, q.tree_size, index)?;
    let work = tokio::task::spawn_blocking(move || -> Result<Value, ApiError> {
        let entry = log.entry(index)?;
        let mut v = entry_json(index, &entry);
        v["log"] = json!(name);
        match proof {
            Some((n, note)) => {
                v["tree_size"] = json!(n);
                v["inclusion_proof"] = json!(b64s(&log.inclusion_proof(index, n)?));
                v["root"] = json!(B64.encode(log.root_at(n)?.0));
                v["checkpoint"] = json!(note);
            }
            None => {
                v["inclusion_proof"] = Value::Null;
                v["note"] = json!("no checkpoint covers this entry yet; retry within a second");
            }
        }
        Ok(v)
    });
    // Valid and allowed: the read's record is made durable while the entry
    // and its proof are read (see audit::EarlyRead).
    let v = match &read {
        Some(Extension(read)) => tokio::join!(read.record(&state), work).1,
        None => work.await,
    }
    .map_err(|e| ApiError::unavailable(e.to_string(), 1))??;
    Ok(Json(v))
}

/// A range of entries, as answered (fields in the order `json!` gives
/// them elsewhere: sorted). The proof fields are there only when asked for.
#[derive(serde::Serialize)]
pub struct RangePage {
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint: Option<Option<String>>,
    end: u64,
    entries: Vec<RangeEntry>,
    log: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    root: Option<String>,
    start: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    tree_size: Option<u64>,
}

/// One entry of a [`RangePage`].
#[derive(serde::Serialize)]
struct RangeEntry {
    entry: String,
    event: Box<serde_json::value::RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inclusion_proof: Option<Vec<String>>,
    index: u64,
    leaf_hash: String,
}

/// Query of range reads.
#[derive(Deserialize)]
pub struct RangeQuery {
    start: Option<u64>,
    end: Option<u64>,
    /// Include an inclusion proof per entry against this tree size.
    tree_size: Option<u64>,
    /// `true`: include proofs against the latest checkpoint.
    proofs: Option<bool>,
}

/// `GET /v1/logs/{log}/entries?start=&end=`: at most
/// [`MAX_RANGE_ENTRIES`] entries `[start, end)`.
pub async fn entry_range(
    State(state): State<Arc<AppState>>,
    id: Option<Extension<Identity>>,
    Path(name): Path<String>,
    Params(q): Params<RangeQuery>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let ext = readable(&state, id, &name).await?;
    let log = ext.log.clone();
    let size = log.size();
    let start = q.start.unwrap_or(0);
    let end = q.end.unwrap_or_else(|| size.min(start.saturating_add(MAX_RANGE_ENTRIES)));
    if start > end || end > size {
        return Err(ApiError::bad_request(format!(
            "range start={start} end={end} is out of bounds: the log has {size} entries"
        )));
    }
    if end - start > MAX_RANGE_ENTRIES {
        return Err(ApiError::bad_request(format!(
            "range of {} entries is over the limit of {MAX_RANGE_ENTRIES} per request",
            end - start
        )));
    }
    // Up to 1,000 entries of up to 64 KiB: the place is kept until the
    // answer is sent.
    let place = state.big_reads.enter(crate::config::SEARCH_QUEUE_WAIT).await?;
    let v = tokio::task::spawn_blocking(move || -> Result<RangePage, ApiError> {
        let proof_at = match (q.tree_size, q.proofs) {
            (Some(n), _) => Some(n),
            (None, Some(true)) => log.checkpoint().map(|c| c.checkpoint.size),
            _ => None,
        };
        if let Some(n) = proof_at
            && (n < end || n > size)
        {
            return Err(ApiError::bad_request(format!("tree_size {n} must cover the range and be at most {size}")));
        }
        let mut proofs = proof_at.map(|n| log.inclusion_proofs(start..end, n)).transpose()?.map(Vec::into_iter);
        let mut entries = Vec::with_capacity((end - start) as usize);
        for (i, e) in log.entries(start, end)?.into_iter().enumerate() {
            let leaf_hash = B64.encode(custos_tlog::leaf_hash(&e).0);
            let entry = String::from_utf8_lossy(&e).into_owned();
            let event = stored_event(Some(entry.clone()));
            let inclusion_proof = proofs.as_mut().map(|p| b64s(&p.next().expect("one proof per entry")));
            entries.push(RangeEntry { entry, event, inclusion_proof, index: start + i as u64, leaf_hash });
        }
        let (root, checkpoint) = match proof_at {
            Some(n) => (
                Some(B64.encode(log.root_at(n)?.0)),
                Some(log.checkpoint().filter(|c| c.checkpoint.size == n).map(|c| c.note)),
            ),
            None => (None, None),
        };
        Ok(RangePage { checkpoint, end, entries, log: name, root, start, tree_size: proof_at })
    })
    .await
    .map_err(|e| ApiError::unavailable(e.to_string(), 1))??;
    Ok(crate::gate::hold(Json(v).into_response(), place))
}

/// Query of consistency proofs.
#[derive(Deserialize)]
pub struct ConsistencyQuery {
    from: u64,
    to: Option<u64>,
}

/// `GET /v1/logs/{log}/consistency?from=&to=`.
pub async fn consistency(
    State(state): State<Arc<AppState>>,
    id: Option<Extension<Identity>>,
    Path(name): Path<String>,
    Params(q): Params<ConsistencyQuery>,
) -> Result<Json<Value>, ApiError> {
    let ext = readable(&state, id, &name).await?;
    let log = &ext.log;
    let to = q.to.or_else(|| log.checkpoint().map(|c| c.checkpoint.size)).unwrap_or(0);
    if q.from > to || to > log.size() {
        return Err(ApiError::bad_request(format!(
            "from={} to={to} is out of bounds: need from <= to <= {}",
            q.from,
            log.size()
        )));
    }
    let proof = log.consistency_proof(q.from, to)?;
    Ok(Json(json!({
        "from": q.from,
        "to": to,
        "from_root": B64.encode(log.root_at(q.from)?.0),
        "to_root": B64.encode(log.root_at(to)?.0),
        "proof": b64s(&proof),
    })))
}
