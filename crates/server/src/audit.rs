//! The audit trail of the audit log: reads, exports, token changes,
//! rejected credentials and server starts and stops are themselves
//! recorded as events in the `_custos` system log.

use custos_event::ServerFields;
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

/// The system log of meta-audit events.
pub const SYSTEM_LOG: &str = "_custos";

/// One meta-audit event.
pub struct MetaEvent<'a> {
    /// `custos.read`, `custos.auth.failure`, `custos.token.create`, …
    pub activity: &'a str,
    /// Who: the identity name, or `anonymous`.
    pub actor: &'a str,
    /// From where.
    pub ip: Option<String>,
    /// The log concerned, if any.
    pub log: Option<&'a str>,
    /// Whether the action succeeded.
    pub success: bool,
    /// Why, or the HTTP status.
    pub detail: String,
    /// The request line, such as `GET /v1/logs/a/entries/5`.
    pub message: String,
}

/// Appends a meta-audit event and waits until it is durable.
pub async fn record(state: &AppState, e: MetaEvent<'_>) -> Result<(), ApiError> {
    let mut v = json!({
        "time": custos_event::time::now_nanos() / 1_000_000,
        "activity": e.activity,
        "class_uid": 6003,
        "actor": {"user": {"name": e.actor}},
        "status": if e.success { "success" } else { "failure" },
        "status_detail": e.detail,
        "message": e.message,
    });
    if let Some(ip) = &e.ip {
        v["src_endpoint"] = json!({ "ip": ip });
    }
    if let Some(log) = e.log {
        v["resource"] = json!({"type": "log", "name": log});
    }
    let sealed = custos_event::validate(v)
        .map_err(|errs| ApiError::unavailable(format!("meta-audit event invalid: {errs:?}"), 1))
        .and_then(|ev| {
            let server = ServerFields {
                log: SYSTEM_LOG.into(),
                received_at: custos_event::time::format_rfc3339(custos_event::time::now_nanos()),
                submitter: "custos".into(),
                via: "system".into(),
                address: None,
            };
            custos_event::seal(ev, &server).map_err(|err| ApiError::unavailable(err.to_string(), 1))
        })?;
    let log = match state.store.get(SYSTEM_LOG) {
        Some(l) => l,
        None => {
            let store = state.store.clone();
            tokio::task::spawn_blocking(move || store.create(SYSTEM_LOG, true))
                .await
                .map_err(|e| ApiError::unavailable(e.to_string(), 1))?
                .map_err(|e| ApiError::unavailable(e.to_string(), 5))?
        }
    };
    log.append(&[sealed]).await.map_err(|e| {
        tracing::error!(error = %e, "recording a meta-audit event failed");
        ApiError::unavailable(format!("the audit trail cannot be written, so the request is refused: {e}"), 5)
    })?;
    Ok(())
}

/// The record of one read, which its handler may make while it works, once
/// nothing about the request can fail but the server itself.
///
/// The authentication middleware hands one to every recorded read. A
/// handler that awaits [`EarlyRead::record`] beside its own work (with
/// `tokio::join!`) has its `custos.read` record (success, `HTTP 200`) made
/// durable while it computes the answer, so the fsync overlaps the work.
/// The answer is still sent only once the record is durable, and a read that
/// fails after all gets a second record, of the failure. A handler that does
/// not is recorded after it answers, with its status, as before.
pub struct EarlyRead {
    actor: String,
    ip: Option<String>,
    log: Option<String>,
    message: String,
    /// How the record made by the handler went, and how long it took.
    done: std::sync::Mutex<Option<Result<std::time::Duration, ApiError>>>,
}

impl EarlyRead {
    pub(crate) fn new(actor: String, ip: Option<String>, log: Option<String>, message: String) -> EarlyRead {
        EarlyRead { actor, ip, log, message, done: std::sync::Mutex::new(None) }
    }

    /// The meta-audit event of this read.
    pub(crate) fn event(&self, success: bool, detail: String) -> MetaEvent<'_> {
        MetaEvent {
            activity: match self.message.split_once(' ') {
                Some((_, path)) if path.starts_with("/v1/tokens") => "custos.token.list",
                _ => "custos.read",
            },
            actor: &self.actor,
            ip: self.ip.clone(),
            log: self.log.as_deref(),
            success,
            detail,
            message: self.message.clone(),
        }
    }

    /// Records this read as a success and keeps the outcome for the
    /// middleware. Await it once the request is known to be valid and
    /// allowed; a second call does nothing.
    pub async fn record(&self, state: &AppState) {
        if self.done.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
            return;
        }
        let started = std::time::Instant::now();
        let outcome = record(state, self.event(true, "HTTP 200".into())).await.map(|()| started.elapsed());
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
    }

    /// The outcome of [`EarlyRead::record`], if it was made.
    pub(crate) fn take(&self) -> Option<Result<std::time::Duration, ApiError>> {
        self.done.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}
