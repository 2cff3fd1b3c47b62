//! State shared by all handlers.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use custos_log::store::StoreError;
use custos_log::{Log, LogStore};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;

use crate::config::{DEDUPE_WINDOW, ServerConfig};
use crate::error::ApiError;

/// A receipt: where an event was stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// Its index in the log.
    pub index: u64,
    /// Its leaf hash.
    pub leaf_hash: custos_tlog::Hash,
}

/// One slot per client `uid`: held locked while the first request with
/// that uid appends, so a concurrent retry waits and then finds the
/// receipt instead of storing the event twice.
pub type UidSlot = Arc<tokio::sync::Mutex<Option<Receipt>>>;

/// Remembered uids of one log, oldest first, at most [`DEDUPE_WINDOW`].
#[derive(Default)]
pub struct Dedupe {
    slots: HashMap<String, UidSlot>,
    order: VecDeque<String>,
}

impl Dedupe {
    /// The slot of a uid, created empty if new.
    pub fn slot(&mut self, uid: &str) -> UidSlot {
        if let Some(s) = self.slots.get(uid) {
            return s.clone();
        }
        let s: UidSlot = Arc::default();
        self.slots.insert(uid.to_string(), s.clone());
        self.order.push_back(uid.to_string());
        while self.order.len() > DEDUPE_WINDOW {
            if let Some(old) = self.order.pop_front() {
                self.slots.remove(&old);
            }
        }
        s
    }
}

/// What the server keeps per log besides the log itself.
pub struct LogExt {
    /// The log.
    pub log: Arc<Log>,
    /// Client uids seen recently.
    pub dedupe: Mutex<Dedupe>,
    /// The size of the latest signed checkpoint, for `?wait=checkpoint`.
    pub checkpoint_size: watch::Sender<u64>,
}

/// How callers are authenticated.
#[derive(Default)]
pub struct AuthConfig {
    /// The token store; `None` switches authentication off (development
    /// and benchmarks only, on loopback).
    pub tokens: Option<Arc<custos_auth::TokenStore>>,
    /// Checkpoints and hash tiles readable without credentials, for
    /// witnesses and monitors.
    pub public_hashes: bool,
    /// Client certificate subject (CN) to the logs it may append to.
    pub cert_identities: HashMap<String, custos_auth::Scope>,
    /// Single sign-on: OIDC JWTs from this issuer are accepted as bearer
    /// tokens.
    pub oidc: Option<custos_auth::oidc::OidcConfig>,
}

/// Everything handlers share.
pub struct AppState {
    /// Authentication settings.
    pub auth: AuthConfig,
    /// Token states last seen, to record changes made outside the server
    /// (`custos token` on the data directory): generation, and ID to
    /// revoked-or-not.
    pub known_tokens: Mutex<(u64, HashMap<String, bool>)>,
    /// Search indexes by log.
    pub indexes: crate::search::Indexes,
    /// Turns to search: `config.searches_at_once` at a time.
    pub search_turns: crate::search::Turns,
    /// Room for request bodies: `config.max_body_bytes_in_flight`.
    pub body_room: crate::ingest::BodyRoom,
    /// Places for answers of many entries: `MAX_BIG_READS_AT_ONCE`.
    pub big_reads: crate::gate::Gate,
    /// Health of every source.
    pub sources: crate::sources::Sources,
    /// Rate limiters by identity key.
    pub buckets: Mutex<HashMap<String, crate::authn::Bucket>>,
    /// The data directory.
    pub store: Arc<LogStore>,
    /// Settings and limits.
    pub config: ServerConfig,
    exts: Mutex<HashMap<String, Arc<LogExt>>>,
    /// Renders Prometheus metrics.
    pub metrics: Option<PrometheusHandle>,
    /// Asks the checkpointer to sign now rather than at its next tick.
    pub checkpoint_now: tokio::sync::Notify,
}

static METRICS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::BadName { .. } => ApiError::bad_request(e.to_string()),
        StoreError::NotFound(name) => crate::authn::not_found(&name),
        other => {
            tracing::error!(error = %other, "log store failed");
            ApiError::unavailable(other.to_string(), 30)
        }
    }
}

impl AppState {
    /// Wraps an open store.
    pub fn new(store: Arc<LogStore>, config: ServerConfig, auth: AuthConfig) -> AppState {
        let metrics = METRICS
            .get_or_init(|| {
                let recorder = PrometheusBuilder::new().build_recorder();
                let handle = recorder.handle();
                metrics::set_global_recorder(recorder).ok().map(|_| handle)
            })
            .clone();
        AppState {
            known_tokens: Mutex::new((
                0,
                auth.tokens
                    .as_ref()
                    .and_then(|t| t.records().ok())
                    .map(|r| r.into_iter().map(|r| (r.id, r.revoked_at.is_some())).collect())
                    .unwrap_or_default(),
            )),
            auth,
            sources: crate::sources::Sources::default(),
            indexes: crate::search::Indexes::default(),
            search_turns: crate::search::Turns::new(config.searches_at_once, config.search_timeout),
            body_room: crate::ingest::BodyRoom::new(config.max_body_bytes_in_flight),
            big_reads: crate::gate::Gate::new(
                crate::config::MAX_BIG_READS_AT_ONCE,
                "places for reads of many entries (MAX_BIG_READS_AT_ONCE)",
            ),
            buckets: Mutex::new(HashMap::new()),
            store,
            config,
            exts: Mutex::new(HashMap::new()),
            metrics,
            checkpoint_now: tokio::sync::Notify::new(),
        }
    }

    /// An existing log, or 404 naming it. Log names are validated first, so
    /// a path-like name gets 400.
    pub async fn existing(&self, name: &str) -> Result<Arc<LogExt>, ApiError> {
        custos_log::store::validate_log_name(name, true).map_err(store_error)?;
        let log = self.store.get(name).ok_or_else(|| crate::authn::not_found(name))?;
        self.ext(name, log).await
    }

    /// A log to write to, created on first write when the store allows it.
    pub async fn for_write(&self, name: &str) -> Result<Arc<LogExt>, ApiError> {
        custos_log::store::validate_log_name(name, false).map_err(store_error)?;
        let log = match self.store.get(name) {
            Some(l) => l,
            None => {
                let (store, n) = (self.store.clone(), name.to_string());
                tokio::task::spawn_blocking(move || store.get_or_create(&n))
                    .await
                    .map_err(|e| ApiError::unavailable(e.to_string(), 5))?
                    .map_err(store_error)?
            }
        };
        self.ext(name, log).await
    }

    /// The extension of a log, built on first use: its uid window is
    /// refilled from the newest entries so that retries across a restart are
    /// still recognised.
    async fn ext(&self, name: &str, log: Arc<Log>) -> Result<Arc<LogExt>, ApiError> {
        if let Some(e) = self.exts.lock().unwrap_or_else(|e| e.into_inner()).get(name) {
            return Ok(e.clone());
        }
        let l = log.clone();
        let dedupe = tokio::task::spawn_blocking(move || recent_uids(&l))
            .await
            .map_err(|e| ApiError::unavailable(e.to_string(), 5))??;
        let size = log.checkpoint().map_or(0, |c| c.checkpoint.size);
        let ext = Arc::new(LogExt { log, dedupe: Mutex::new(dedupe), checkpoint_size: watch::Sender::new(size) });
        let mut exts = self.exts.lock().unwrap_or_else(|e| e.into_inner());
        Ok(exts.entry(name.to_string()).or_insert(ext).clone())
    }

    /// Waits until a signed checkpoint of `ext`'s log covers its first
    /// `size` entries, asking the checkpointer to sign now rather than at
    /// its next tick; false if none did within `CHECKPOINT_WAIT`.
    pub async fn wait_checkpoint(&self, ext: &LogExt, size: u64) -> bool {
        let mut rx = ext.checkpoint_size.subscribe();
        self.checkpoint_now.notify_one();
        let waited = tokio::time::timeout(crate::config::CHECKPOINT_WAIT, rx.wait_for(|s| *s >= size)).await;
        matches!(waited, Ok(Ok(_)))
    }

    /// The extensions built so far.
    pub fn exts(&self) -> Vec<(String, Arc<LogExt>)> {
        self.exts.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// Reads the uids of the newest [`DEDUPE_WINDOW`] entries.
fn recent_uids(log: &Log) -> Result<Dedupe, ApiError> {
    let mut d = Dedupe::default();
    let size = log.size();
    let mut start = size.saturating_sub(DEDUPE_WINDOW as u64);
    while start < size {
        let end = (start + 4096).min(size);
        for (i, e) in log.entries(start, end)?.into_iter().enumerate() {
            #[derive(serde::Deserialize)]
            struct Uid {
                uid: Option<String>,
            }
            if let Ok(Uid { uid: Some(uid) }) = serde_json::from_slice::<Uid>(&e) {
                let slot = d.slot(&uid);
                let mut first = slot.try_lock().expect("no request runs yet");
                if first.is_none() {
                    let index = start + i as u64;
                    *first = Some(Receipt { index, leaf_hash: custos_tlog::leaf_hash(&e) });
                }
            }
        }
        start = end;
    }
    Ok(d)
}
