//! Receivers of outside sources (the Kubernetes audit webhook, syslog over
//! TCP and UDP) and the health of every source: when it was last seen, its
//! rate, gaps in its sequence numbers, and whether it fell silent.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use custos_auth::{Action, Identity};
use custos_event::ServerFields;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use crate::audit::{self, MetaEvent};
use crate::authn::authorize;
use crate::conn::Peer;
use crate::error::{ApiError, Problem};
use crate::ingest::{ingest_nodes, ingest_values};
use crate::state::AppState;

/// Sources tracked at most; beyond this the longest-silent are forgotten.
pub const MAX_SOURCES: usize = 10_000;
/// Messages per append from one syslog connection or socket.
pub const SYSLOG_BATCH_MESSAGES: usize = 1000;
/// Bytes read from a syslog stream at a time.
const SYSLOG_READ_BYTES: usize = 64 * 1024;

/// What is known about one source.
#[derive(Clone, Debug)]
pub struct SourceStats {
    first_seen: SystemTime,
    last_seen: SystemTime,
    last_seen_at: Instant,
    events: u64,
    /// The highest sequence number per stream: a source such as a syslog
    /// host may interleave several numbered streams (one per process).
    last_seq: HashMap<String, u64>,
    /// Missing sequence numbers seen so far.
    gap_count: u64,
    /// Silence already reported (cleared when the source speaks again).
    silence_reported: bool,
}

/// Health of all sources.
#[derive(Default)]
pub struct Sources {
    map: Mutex<HashMap<String, SourceStats>>,
    /// Gaps found and not yet recorded in `_custos`, per source: numbers
    /// missing, ranges, and the first range. Coalesced so that a source
    /// with many gaps yields one event per watch tick, not one per gap.
    pending_gaps: Mutex<HashMap<String, PendingGaps>>,
}

/// Gaps of one source not yet recorded: numbers missing, ranges, and the
/// first range.
type PendingGaps = (u64, u64, (u64, u64));

/// Numbered streams remembered per source, at most.
pub const MAX_STREAMS_PER_SOURCE: usize = 1024;

impl Sources {
    /// Notes events from `source`, each with its stream and `seq` number if
    /// any.
    pub fn seen(&self, source: &str, seqs: &[(String, Option<u64>)]) {
        let now = SystemTime::now();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_SOURCES
            && !map.contains_key(source)
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.last_seen_at).map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        let s = map.entry(source.to_string()).or_insert(SourceStats {
            first_seen: now,
            last_seen: now,
            last_seen_at: Instant::now(),
            events: 0,
            last_seq: HashMap::new(),
            gap_count: 0,
            silence_reported: false,
        });
        s.last_seen = now;
        s.last_seen_at = Instant::now();
        s.events += seqs.len() as u64;
        s.silence_reported = false;
        for (stream, seq) in seqs {
            let Some(seq) = *seq else { continue };
            if s.last_seq.len() >= MAX_STREAMS_PER_SOURCE && !s.last_seq.contains_key(stream) {
                s.last_seq.clear();
            }
            let last = s.last_seq.entry(stream.clone()).or_insert(seq);
            if seq > *last + 1 {
                s.gap_count += seq - *last - 1;
                let mut pending = self.pending_gaps.lock().unwrap_or_else(|e| e.into_inner());
                let p = pending.entry(source.to_string()).or_insert((0, 0, (*last + 1, seq - 1)));
                p.0 += seq - *last - 1;
                p.1 += 1;
            }
            *last = (*last).max(seq);
        }
    }

    /// A JSON report, silent ones flagged.
    pub fn report(&self, silent_after: Duration) -> Vec<Value> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Value> = map
            .iter()
            .map(|(name, s)| {
                let secs = s.last_seen.duration_since(s.first_seen).unwrap_or_default().as_secs_f64().max(1.0);
                let ts = |t: SystemTime| {
                    custos_event::time::format_rfc3339(
                        t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64),
                    )
                };
                json!({
                    "source": name,
                    "first_seen": ts(s.first_seen),
                    "last_seen": ts(s.last_seen),
                    "events": s.events,
                    "events_per_sec": s.events as f64 / secs,
                    "last_seq": s.last_seq.values().max(),
                    "streams": s.last_seq.len(),
                    "gaps": s.gap_count,
                    "silent": s.last_seen_at.elapsed() > silent_after,
                })
            })
            .collect();
        out.sort_by(|a, b| a["source"].as_str().cmp(&b["source"].as_str()));
        out
    }
}

/// `GET /v1/sources`: auditors and admins.
pub async fn list_sources(
    State(state): State<Arc<AppState>>,
    id: Option<Extension<Identity>>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, id.as_ref().map(|Extension(i)| i), Action::Metrics)?;
    Ok(Json(json!({ "sources": state.sources.report(state.config.source_silence) })))
}

/// Reports silent sources and sequence gaps in `_custos`, every few
/// seconds, once per silence.
pub async fn watch(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(
        Duration::from_secs(1).min(state.config.source_silence / 2).max(Duration::from_millis(100)),
    );
    loop {
        tick.tick().await;
        let silent: Vec<(String, String)> = {
            let mut map = state.sources.map.lock().unwrap_or_else(|e| e.into_inner());
            map.iter_mut()
                .filter(|(_, s)| !s.silence_reported && s.last_seen_at.elapsed() > state.config.source_silence)
                .map(|(name, s)| {
                    s.silence_reported = true;
                    (name.clone(), format!("silent for {} s", s.last_seen_at.elapsed().as_secs()))
                })
                .collect()
        };
        let gaps = std::mem::take(&mut *state.sources.pending_gaps.lock().unwrap_or_else(|e| e.into_inner()));
        let events = silent.into_iter().map(|(src, d)| ("custos.source.silent", src, d)).chain(gaps.into_iter().map(
            |(src, (missing, ranges, (a, b)))| {
                (
                    "custos.source.gap",
                    src,
                    format!("{missing} sequence numbers missing in {ranges} gaps, the first {a} to {b}"),
                )
            },
        ));
        for (activity, source, detail) in events {
            let e = MetaEvent {
                activity,
                actor: &source,
                ip: None,
                log: None,
                success: false,
                detail,
                message: activity.into(),
            };
            if let Err(e) = audit::record(&state, e).await {
                tracing::error!(error = %e.message, "recording source health failed");
            }
        }
    }
}

/// `POST /v1/k8s/{log}/audit`: the Kubernetes audit webhook backend. It
/// sends `EventList`s in batch mode and retries on any error, so events
/// carry `auditID/stage` as their uid and retries are deduplicated.
pub async fn k8s_audit(
    State(state): State<Arc<AppState>>,
    id: Option<Extension<Identity>>,
    Extension(peer): Extension<Peer>,
    Path(log): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    custos_log::store::validate_log_name(&log, false).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let id = id.map(|Extension(i)| i);
    authorize(&state, id.as_ref(), Action::Append(&log))?;
    // The same size limit, body timeout and decompression as event ingest.
    let (raw, _room) = crate::ingest::read_body(body, &headers, &state).await?;
    let v: Value = serde_json::from_slice(&raw).map_err(|e| {
        ApiError::bad_request(format!("malformed JSON at line {} column {}: {e}", e.line(), e.column()))
    })?;
    let items = custos_sources::k8s::items(&v).map_err(ApiError::bad_request)?;
    let mut problems = Vec::new();
    let mut events = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match custos_sources::k8s::map_event(item) {
            Ok(e) => events.push(e),
            Err(error) => problems.push(Problem { line: None, index: Some(i), field: "items".into(), error }),
        }
    }
    if !problems.is_empty() {
        return Err(ApiError {
            problems,
            ..ApiError::bad_request("the EventList was rejected and nothing was stored; see problems")
        });
    }
    let n = events.len();
    let server = ServerFields {
        log: log.clone(),
        received_at: custos_event::time::format_rfc3339(custos_event::time::now_nanos()),
        submitter: id.map_or_else(|| "anonymous".into(), |i| i.name),
        via: "k8s".into(),
        address: peer.addr.map(|a| a.ip().to_string()),
    };
    let receipts = ingest_values(&state, &log, server, events).await?;
    let duplicates = receipts.iter().filter(|(_, d)| *d).count();
    Ok(Json(json!({"accepted": n - duplicates, "duplicates": duplicates})))
}

fn syslog_server(log: &str, peer: &SocketAddr) -> ServerFields {
    ServerFields {
        log: log.into(),
        received_at: custos_event::time::format_rfc3339(custos_event::time::now_nanos()),
        submitter: format!("syslog:{}", peer.ip()),
        via: "syslog".into(),
        address: Some(peer.ip().to_string()),
    }
}

/// Stores a batch of raw syslog messages from one peer, waiting until they
/// are durable. Retries while the log refuses (full disk, say): the sender
/// is held back rather than its messages dropped.
async fn store_syslog(state: &AppState, log: &str, peer: &SocketAddr, raw: Vec<Vec<u8>>) {
    let ip = peer.ip().to_string();
    let now = custos_event::time::now_nanos();
    let build = || raw.iter().map(|m| custos_sources::syslog::to_node(m, Some(&ip), now)).collect();
    loop {
        // Built anew for each attempt rather than cloned: retries are rare,
        // and a clone of every batch cost more than the mapping.
        match ingest_nodes(state, log, syslog_server(log, peer), build()).await {
            Ok(_) => return,
            Err(e) if e.status != StatusCode::SERVICE_UNAVAILABLE => {
                // Cannot happen for events built by the syslog mapper; if it
                // does, say so loudly rather than retry forever.
                tracing::error!(log, peer = %peer, error = %e.message, "syslog batch rejected");
                metrics::counter!("custos_syslog_rejected_total").increment(raw.len() as u64);
                return;
            }
            Err(e) => {
                tracing::warn!(log, peer = %peer, error = %e.message, "syslog batch not stored yet; holding the sender back");
                metrics::counter!("custos_syslog_retries_total").increment(1);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Open connections of one syslog TCP listener, at most; more are closed
/// as they arrive (senders such as rsyslog queue and reconnect). Each holds
/// at most a read buffer, a partial message and one read's batch.
pub const MAX_SYSLOG_CONNECTIONS: usize = 1024;

/// Receives syslog over TCP on `listener` into `log`, with at most
/// `max_connections` open at once. Framing (octet counting or newlines) is
/// detected per connection. A connection is read only as fast as its
/// messages become durable: backpressure is TCP's own.
pub async fn syslog_tcp(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    log: String,
    tls: Option<tokio_rustls::TlsAcceptor>,
    max_connections: usize,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors, say: wait a little, go on.
                tracing::warn!(log, error = %e, "syslog accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(log, peer = %peer, max_connections, "syslog connection refused: too many open");
            metrics::counter!("custos_syslog_connections_refused_total", "log" => log.clone()).increment(1);
            continue; // dropping the stream closes it
        };
        let (state, log, tls) = (state.clone(), log.clone(), tls.clone());
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                None => read_syslog_stream(&state, &log, &peer, stream).await,
                // RFC 5425: syslog over TLS, framed as on plain TCP.
                Some(acceptor) => {
                    match tokio::time::timeout(crate::conn::HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => read_syslog_stream(&state, &log, &peer, s).await,
                        Ok(Err(e)) => tracing::info!(peer = %peer, error = %e, "syslog TLS handshake failed"),
                        Err(_) => tracing::info!(peer = %peer, "syslog TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// Frames and stores one syslog stream until it ends.
async fn read_syslog_stream<S: tokio::io::AsyncRead + Unpin>(
    state: &AppState,
    log: &str,
    peer: &SocketAddr,
    mut stream: S,
) {
    let mut framer = custos_sources::syslog::Framer::default();
    let mut buf = vec![0u8; SYSLOG_READ_BYTES];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => 0,
            Ok(n) => n,
        };
        if n > 0 {
            framer.push(&buf[..n]);
        }
        let mut batch = Vec::new();
        for f in framer.by_ref() {
            batch.push(match f {
                custos_sources::syslog::Frame::Message(m) | custos_sources::syslog::Frame::Broken(m) => m,
            });
            if batch.len() >= SYSLOG_BATCH_MESSAGES {
                store_syslog(state, log, peer, std::mem::take(&mut batch)).await;
            }
        }
        if n == 0 {
            batch.extend(framer.finish());
        }
        if !batch.is_empty() {
            store_syslog(state, log, peer, batch).await;
        }
        if n == 0 {
            return;
        }
    }
}

/// How often the kernel's drop count of a UDP listener is read.
const UDP_DROPS_INTERVAL: Duration = Duration::from_secs(1);

/// The kernel's count of datagrams dropped on the UDP socket bound to
/// `addr` (its receive buffer was full): the last column of
/// `/proc/net/udp` or `/proc/net/udp6`.
pub fn udp_drops(addr: SocketAddr) -> Option<u64> {
    let (file, local) = match addr {
        SocketAddr::V4(a) => ("/proc/net/udp", format!("{:08X}:{:04X}", u32::from_le_bytes(a.ip().octets()), a.port())),
        SocketAddr::V6(a) => {
            let o = a.ip().octets();
            let words: String =
                o.chunks(4).map(|w| format!("{:08X}", u32::from_le_bytes([w[0], w[1], w[2], w[3]]))).collect();
            ("/proc/net/udp6", format!("{words}:{:04X}", a.port()))
        }
    };
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().skip(1).find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        (cols.get(1) == Some(&local.as_str())).then(|| cols.last()?.parse().ok()).flatten()
    })
}

/// Publishes a UDP listener's kernel drops as `custos_syslog_udp_dropped_total`:
/// UDP loss cannot be prevented, but it is never silent.
async fn count_udp_drops(addr: SocketAddr, log: String) {
    let counter = metrics::counter!("custos_syslog_udp_dropped_total", "listener" => addr.to_string(), "log" => log);
    loop {
        if let Some(n) = udp_drops(addr) {
            counter.absolute(n);
        }
        tokio::time::sleep(UDP_DROPS_INTERVAL).await;
    }
}

/// Receives syslog over UDP; what arrives is stored in batches. Datagrams
/// the kernel drops before we read them cannot be recovered, but they are
/// counted (`custos_syslog_udp_dropped_total`).
pub async fn syslog_udp(state: Arc<AppState>, socket: tokio::net::UdpSocket, log: String) {
    if let Ok(addr) = socket.local_addr() {
        tokio::spawn(count_udp_drops(addr, log.clone()));
    }
    let mut buf = vec![0u8; custos_sources::syslog::MAX_MESSAGE_BYTES];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else { continue };
        let mut by_peer: HashMap<SocketAddr, Vec<Vec<u8>>> = HashMap::new();
        by_peer.entry(peer).or_default().push(buf[..n].to_vec());
        // Take whatever else is already queued, up to one batch.
        for _ in 1..SYSLOG_BATCH_MESSAGES {
            match socket.try_recv_from(&mut buf) {
                Ok((n, p)) => by_peer.entry(p).or_default().push(buf[..n].to_vec()),
                Err(_) => break,
            }
        }
        metrics::counter!("custos_syslog_udp_received_total")
            .increment(by_peer.values().map(Vec::len).sum::<usize>() as u64);
        for (peer, msgs) in by_peer {
            store_syslog(&state, &log, &peer, msgs).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Whether the server closed `s` (EOF) rather than keeping it open for
    /// `within`.
    async fn closed(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
        let mut b = [0u8; 1];
        matches!(tokio::time::timeout(within, s.read(&mut b)).await, Ok(Ok(0)) | Ok(Err(_)))
    }

    /// Past its connection limit a syslog listener closes new connections;
    /// once one closes, a new one is taken again, and messages still go in.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn syslog_connections_past_the_limit_are_closed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(custos_log::LogStore::open(custos_log::StoreConfig::new(dir.path())).unwrap());
        let state = Arc::new(AppState::new(store.clone(), Default::default(), Default::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(syslog_tcp(state, listener, "sys".into(), None, 2));
        let wait = Duration::from_millis(300);
        let mut a = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut b = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(closed(&mut c, Duration::from_secs(5)).await, "a third connection was kept");
        assert!(!closed(&mut a, wait).await && !closed(&mut b, wait).await);
        drop(a);
        // The slot comes back once the server sees the end of `a`.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut d = loop {
            assert!(std::time::Instant::now() < deadline, "no slot came back");
            let mut d = tokio::net::TcpStream::connect(addr).await.unwrap();
            if !closed(&mut d, wait).await {
                break d;
            }
        };
        d.write_all(b"<38>Nov 28 07:00:00 host sshd[1]: Accepted password for alice from 10.0.0.9 port 22 ssh2\n")
            .await
            .unwrap();
        drop(d);
        let log = loop {
            assert!(std::time::Instant::now() < deadline, "the message was not stored");
            if let Some(log) = store.get("sys").filter(|l| l.size() == 1) {
                break log;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(String::from_utf8(log.entry(0).unwrap()).unwrap().contains("alice"));
        drop(b);
    }
}
