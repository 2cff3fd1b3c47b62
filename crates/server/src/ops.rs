//! Health, readiness and metrics.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// `GET /healthz`: the process is up.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: every log accepts writes.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let failed: Vec<String> = state
        .store
        .list()
        .into_iter()
        .filter_map(|(name, log)| log.failure().map(|f| format!("{name}: {f}")))
        .collect();
    if failed.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready:\n{}\n", failed.join("\n"))).into_response()
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(
    State(state): State<Arc<AppState>>,
    id: Option<axum::Extension<custos_auth::Identity>>,
) -> Response {
    if let Err(e) =
        crate::authn::authorize(&state, id.as_ref().map(|axum::Extension(i)| i), custos_auth::Action::Metrics)
    {
        return e.into_response();
    }
    for (name, log) in state.store.list() {
        let st = log.stats();
        metrics::gauge!("custos_log_size", "log" => name.clone()).set(log.size() as f64);
        metrics::gauge!("custos_log_commits", "log" => name.clone()).set(st.commits as f64);
        metrics::gauge!("custos_log_fsync_seconds_sum", "log" => name.clone()).set(st.fsync_ns as f64 / 1e9);
        metrics::gauge!("custos_log_checkpoints", "log" => name.clone()).set(log.checkpoint_count() as f64);
        metrics::gauge!("custos_log_failed", "log" => name).set(if log.failure().is_some() { 1.0 } else { 0.0 });
    }
    metrics::gauge!("custos_body_room_used_bytes").set(state.body_room.used_bytes() as f64);
    let (turns, exports) = state.search_turns.in_use();
    metrics::gauge!("custos_search_turns_used").set(turns as f64);
    metrics::gauge!("custos_exports_streaming").set(exports as f64);
    metrics::gauge!("custos_big_reads").set(state.big_reads.in_use() as f64);
    let text = state.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
