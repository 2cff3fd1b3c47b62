//! The Custos HTTP server.
//!
//! # Layout
//! - [`config`]: limits and settings, each a named field with a default.
//! - [`state`]: shared state: the log store and, per log, deduplication
//!   and checkpoint notifications.
//! - [`error`]: the JSON error answer, and which status each failure gets.
//! - [`ingest`]: `POST /v1/logs/{log}/events`.
//! - [`read`]: logs, entries with proofs, consistency proofs.
//! - [`tiles`]: the C2SP tlog-tiles API under `/tlog/{log}/`.
//! - [`ops`]: health, readiness and Prometheus metrics.
//! - [`checkpointer`]: signs checkpoints of grown logs on an interval.
//!
//! # Invariants
//! - An ingest answer is sent only after the log acknowledged the events as
//!   durable; a rejected request stores nothing.
//! - Only this crate knows HTTP and the JSON wire format of answers.

pub mod admin;
pub mod audit;
pub mod authn;
pub mod checkpointer;
pub mod compactor;
pub mod config;
pub mod conn;
pub mod error;
pub mod gate;
pub mod gateway;
pub mod ingest;
pub mod ops;
pub mod otlp;
pub mod read;
pub mod search;
pub mod sources;
pub mod state;
pub mod tiles;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

pub use config::ServerConfig;
pub use state::AppState;

/// The router of every endpoint.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/logs", get(read::list_logs))
        .route("/v1/logs/{log}", get(read::log_info))
        .route("/v1/logs/{log}/events", post(ingest::post_events))
        .route("/v1/logs/{log}/entries", get(read::entry_range))
        .route("/v1/logs/{log}/entries/{index}", get(read::one_entry))
        .route("/v1/logs/{log}/consistency", get(read::consistency))
        .route("/v1/logs/{log}/search", get(search::search))
        .route("/v1/logs/{log}/aggregate", get(search::aggregate))
        .route("/tlog/{log}/checkpoint", get(tiles::checkpoint))
        .route("/tlog/{log}/tile/{*path}", get(tiles::tile))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/v1/tokens", get(admin::list_tokens).post(admin::create_token))
        .route("/v1/whoami", get(admin::whoami))
        .route("/v1/sources", get(sources::list_sources))
        .route("/v1/k8s/{log}/audit", post(sources::k8s_audit))
        .route("/v1/otlp/{log}/v1/logs", post(otlp::logs))
        .route("/v1/tokens/{id}", axum::routing::delete(admin::revoke_token))
        .layer(axum::middleware::from_fn_with_state(state.clone(), authn::middleware))
        .layer(axum::middleware::from_fn(catch_panics))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

/// A handler that panics answers 500 rather than dropping the connection
/// with no answer. A panic is a bug: the fuzz targets hunt for them, and
/// this is the backstop for any they have not found.
async fn catch_panics(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use futures_util::FutureExt;
    // Cheap copies (the URI shares its bytes), formatted only on a panic.
    let (method, uri) = (req.method().clone(), req.uri().clone());
    match std::panic::AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(resp) => resp,
        Err(_) => {
            tracing::error!(%method, path = uri.path(), "a request handler panicked; answered 500");
            metrics::counter!("custos_handler_panics_total").increment(1);
            axum::response::IntoResponse::into_response(error::ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal error: the request failed and was logged",
            ))
        }
    }
}

/// Serves until `shutdown` resolves, then drains in-flight requests and
/// signs a final checkpoint of every grown log. Start and stop are
/// recorded in the `_custos` system log.
pub async fn serve(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let a = &state.auth;
    let settings = format!(
        "listening on {addr}; tls {}; tokens {}; oidc {}; mTLS identities {}; public hashes {}; {:?}",
        if tls.is_some() { "on" } else { "off" },
        if a.tokens.is_some() { "on" } else { "OFF" },
        a.oidc.as_ref().map_or("off".to_string(), |o| o.issuer.clone()),
        a.cert_identities.len(),
        a.public_hashes,
        state.config
    );
    // Settings change only with a restart, so the start event is where a
    // change of configuration is on record.
    lifecycle(&state, "custos.server.start", settings).await?;
    let checkpointer = tokio::spawn(checkpointer::run(state.clone()));
    let watcher = tokio::spawn(sources::watch(state.clone()));
    let stop_workers = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let indexer = search::spawn_indexer(state.clone(), stop_workers.clone())?;
    let compactor = compactor::spawn(state.clone(), stop_workers.clone())?;
    // A whole request (headers and body) must arrive within the body
    // timeout plus ten seconds for the headers.
    let request_timeout = state.config.body_timeout + std::time::Duration::from_secs(10);
    conn::accept_loop(listener, router(state.clone()), tls, state.config.idle_timeout, request_timeout, shutdown)
        .await?;
    checkpointer.abort();
    watcher.abort();
    stop_workers.store(true, std::sync::atomic::Ordering::Relaxed);
    let s = state.clone();
    let _ = tokio::task::spawn_blocking(move || {
        let joined = (indexer.join(), compactor.join());
        s.indexes.close_all();
        joined
    })
    .await;
    lifecycle(&state, "custos.server.stop", "drained in-flight requests".into()).await?;
    let s = state.clone();
    tokio::task::spawn_blocking(move || checkpointer::sign_all(&s)).await?;
    Ok(())
}

async fn lifecycle(state: &AppState, activity: &str, detail: String) -> anyhow::Result<()> {
    let e = audit::MetaEvent {
        activity,
        actor: "custos",
        ip: None,
        log: None,
        success: true,
        detail,
        message: activity.into(),
    };
    audit::record(state, e).await.map_err(|e| anyhow::anyhow!("recording {activity}: {}", e.message))
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use tower::ServiceExt;

    async fn boom() -> &'static str {
        panic!("a bug")
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500() {
        let app = axum::Router::new()
            .route("/boom", axum::routing::get(boom))
            .route("/fine", axum::routing::get(|| async { "ok" }))
            .layer(axum::middleware::from_fn(super::catch_panics));
        let req = |p: &str| axum::http::Request::get(p).body(axum::body::Body::empty()).unwrap();
        let resp = app.clone().oneshot(req("/boom")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains("internal error"), "{body:?}");
        assert_eq!(app.oneshot(req("/fine")).await.unwrap().status(), StatusCode::OK);
    }
}
