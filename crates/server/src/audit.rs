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
