//! Authentication, rate limiting and the recording of reads, as one
//! middleware in front of every endpoint but `/healthz` and `/readyz`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use custos_auth::{Action, Decision, Identity, Role, Scope};

use crate::audit::{self, MetaEvent};
use crate::conn::Peer;
use crate::error::ApiError;
use crate::state::AppState;

/// Rate limiters remembered at most; the oldest are forgotten beyond this.
pub const MAX_RATE_LIMITERS: usize = 100_000;

/// A token bucket: `rate` requests per second, bursts of up to `rate`.
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Takes one request from the bucket of `key`, or says how many seconds
/// to wait.
pub fn take(buckets: &mut HashMap<String, Bucket>, key: &str, rate: u32, now: Instant) -> Result<(), u32> {
    if buckets.len() >= MAX_RATE_LIMITERS && !buckets.contains_key(key) {
        buckets.clear();
    }
    let rate = f64::from(rate.max(1));
    let b = buckets.entry(key.to_string()).or_insert(Bucket { tokens: rate, at: now });
    b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(rate);
    b.at = now;
    if b.tokens >= 1.0 {
        b.tokens -= 1.0;
        Ok(())
    } else {
        Err(((1.0 - b.tokens) / rate).ceil().max(1.0) as u32)
    }
}

/// The identity of anyone when authentication is switched off.
fn open_identity() -> Identity {
    Identity {
        name: "anonymous".into(),
        role: Role::Admin,
        scope: Scope::All,
        rate_limit_per_sec: None,
        key: "anonymous".into(),
    }
}

/// Finds who is calling: a bearer token, else a mapped client certificate.
fn identify(state: &AppState, req: &Request, peer: &Peer) -> Result<Option<Identity>, String> {
    let Some(tokens) = &state.auth.tokens else { return Ok(Some(open_identity())) };
    if let Some(h) = req.headers().get(header::AUTHORIZATION) {
        let h = h.to_str().map_err(|_| "authorization header is not text".to_string())?;
        let token = h.strip_prefix("Bearer ").ok_or("authorization is not a Bearer token")?.trim();
        if let (Some(oidc), true) = (&state.auth.oidc, custos_auth::oidc::looks_like_jwt(token)) {
            let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            return custos_auth::oidc::validate(oidc, token, now).map(Some);
        }
        return tokens.authenticate(token, SystemTime::now()).map(Some).map_err(|e| e.to_string());
    }
    if let Some(cn) = &peer.cert_subject {
        return match state.auth.cert_identities.get(cn) {
            Some(scope) => Ok(Some(Identity {
                name: format!("cert:{cn}"),
                role: Role::Ingest,
                scope: scope.clone(),
                rate_limit_per_sec: None,
                key: format!("cert:{cn}"),
            })),
            None => Err(format!("client certificate subject {cn:?} is not mapped to an identity")),
        };
    }
    Ok(None)
}

/// The log a data endpoint concerns, and whether a GET of it is a read of
/// event data that must be recorded.
fn recorded_read(method: &Method, path: &str) -> Option<Option<String>> {
    if method != Method::GET {
        return None;
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["v1", "logs"] => Some(None),
        ["v1", "logs", log, ..] => Some(Some(log.to_string())),
        ["tlog", log, "tile", "entries", ..] => Some(Some(log.to_string())),
        ["v1", "tokens"] => Some(None),
        _ => None,
    }
}

/// Whether a path is a checkpoint or hash tile, which `public_hashes`
/// opens to everyone.
fn is_hash_path(path: &str) -> bool {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    matches!(parts.as_slice(), ["tlog", _, "checkpoint"])
        || matches!(parts.as_slice(), ["tlog", _, "tile", l, ..] if *l != "entries")
}

/// Records token creations and revocations that happened outside the
/// server since it last looked (offline `custos token` commands).
async fn record_outside_token_changes(state: &AppState) -> Result<(), ApiError> {
    let Some(tokens) = &state.auth.tokens else { return Ok(()) };
    let generation = tokens.generation();
    let changes: Vec<(String, String)> = {
        let mut known = state.known_tokens.lock().unwrap_or_else(|e| e.into_inner());
        if known.0 == generation {
            return Ok(());
        }
        known.0 = generation;
        let mut changes = Vec::new();
        for r in tokens.records().unwrap_or_default() {
            let revoked = r.revoked_at.is_some();
            match known.1.insert(r.id.clone(), revoked) {
                None => changes.push((
                    "custos.token.create".to_string(),
                    format!("token {} ({}) role {}", r.id, r.name, r.role.as_str()),
                )),
                Some(false) if revoked => {
                    changes.push(("custos.token.revoke".to_string(), format!("token {} ({})", r.id, r.name)))
                }
                _ => {}
            }
        }
        changes
    };
    for (activity, detail) in changes {
        let e = MetaEvent {
            activity: &activity,
            actor: "local:token-store",
            ip: None,
            log: None,
            success: true,
            detail,
            message: format!("{activity} (seen in the token store)"),
        };
        audit::record(state, e).await?;
    }
    Ok(())
}

/// The middleware.
pub async fn middleware(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if path == "/healthz" || path == "/readyz" {
        return next.run(req).await;
    }
    let peer = req.extensions().get::<Peer>().cloned().unwrap_or_default();
    let ip = peer.addr.map(|a| a.ip().to_string());
    let method = req.method().clone();
    let message = format!("{method} {path}");
    let identity = identify(&state, &req, &peer);
    if let Err(e) = record_outside_token_changes(&state).await {
        return e.into_response();
    }
    let identity = match identity {
        Ok(id) => id,
        Err(reason) => {
            let e = MetaEvent {
                activity: "custos.auth.failure",
                actor: "anonymous",
                ip,
                log: None,
                success: false,
                detail: reason.clone(),
                message,
            };
            if let Err(err) = audit::record(&state, e).await {
                return err.into_response();
            }
            let mut r =
                ApiError::new(StatusCode::UNAUTHORIZED, format!("credentials rejected: {reason}")).into_response();
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    };
    if identity.is_none() && !(state.auth.public_hashes && is_hash_path(&path)) {
        // Nothing is anonymous: without credentials, nothing else is said.
        let mut r =
            ApiError::new(StatusCode::UNAUTHORIZED, "authentication required: send Authorization: Bearer <token>")
                .into_response();
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    if let Some(id) = &identity {
        if let Some(rate) = id.rate_limit_per_sec {
            let verdict =
                take(&mut state.buckets.lock().unwrap_or_else(|e| e.into_inner()), &id.key, rate, Instant::now());
            if let Err(wait) = verdict {
                metrics::counter!("custos_rate_limited_total").increment(1);
                return ApiError {
                    retry_after_secs: Some(wait),
                    ..ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        format!("rate limit of {rate} requests per second exceeded"),
                    )
                }
                .into_response();
            }
        }
        req.extensions_mut().insert(id.clone());
    }
    let actor = identity.as_ref().map_or("anonymous".to_string(), |i| i.name.clone());
    let Some(log) = recorded_read(&method, &path) else { return next.run(req).await };
    let read = Arc::new(audit::EarlyRead::new(actor, ip, log, message));
    req.extensions_mut().insert(read.clone());
    let resp = next.run(req).await;
    let status = resp.status();
    // The read is answered only once it is on record: made by the handler
    // while it worked, or now.
    let started = Instant::now();
    let took = match read.take() {
        Some(Ok(took)) if status.is_success() => Ok(took),
        Some(Ok(_)) => {
            // Recorded as a success, then failed after all: the failure is
            // recorded too.
            let detail = format!("HTTP {} (after the read was recorded as a success)", status.as_u16());
            audit::record(&state, read.event(false, detail)).await.map(|()| started.elapsed())
        }
        Some(Err(e)) => Err(e),
        None => audit::record(&state, read.event(status.is_success(), format!("HTTP {}", status.as_u16())))
            .await
            .map(|()| started.elapsed()),
    };
    match took {
        Ok(took) => {
            let mut resp = resp;
            let (name, mut value) = server_timing("audit", took);
            // One header, so that clients that read only the first see both.
            if let Some(before) = resp.headers().get(&name).and_then(|v| v.to_str().ok()) {
                let both = format!("{before}, {}", value.to_str().unwrap_or(""));
                value = HeaderValue::from_str(&both).unwrap_or(value);
            }
            resp.headers_mut().insert(name, value);
            resp
        }
        Err(err) => err.into_response(),
    }
}

/// A `Server-Timing` header (W3C Server Timing) naming how long a step of
/// the request took, such as the search itself or the durable record of
/// the read, so that a client can tell the server's time from the network's.
pub fn server_timing(step: &str, took: std::time::Duration) -> (header::HeaderName, HeaderValue) {
    let value = format!("{step};dur={:.3}", took.as_secs_f64() * 1000.0);
    (
        header::HeaderName::from_static("server-timing"),
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("invalid")),
    )
}

/// Asks the policy, turning its answer into the HTTP error to send.
pub fn authorize(state: &AppState, id: Option<&Identity>, action: Action) -> Result<(), ApiError> {
    match custos_auth::decide(id, action, state.auth.public_hashes) {
        Decision::Allow => Ok(()),
        Decision::Hide => {
            let log = match action {
                Action::Append(l) | Action::Read(l) | Action::ReadHashes(l) => l,
                _ => "",
            };
            Err(not_found(log))
        }
        Decision::Deny(reason) if id.is_none() => {
            Err(ApiError::new(StatusCode::UNAUTHORIZED, format!("{reason}: send Authorization: Bearer <token>")))
        }
        Decision::Deny(reason) => Err(ApiError::new(StatusCode::FORBIDDEN, reason)),
    }
}

/// The one answer for a log that does not exist or is out of scope.
pub fn not_found(log: &str) -> ApiError {
    ApiError::not_found(format!("log {log:?} not found"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_limits_then_recovers() {
        let mut b = HashMap::new();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(take(&mut b, "k", 5, t0).is_ok());
        }
        assert_eq!(take(&mut b, "k", 5, t0), Err(1));
        assert!(take(&mut b, "k", 5, t0 + Duration::from_millis(250)).is_ok());
        assert!(take(&mut b, "other", 5, t0).is_ok());
    }

    /// A handler that records its read early and then succeeds is recorded
    /// once; one that then fails is recorded twice (the success, then the
    /// failure); one that never records early is recorded after it answers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_recorded_by_their_handler_and_after_it() {
        use axum::Extension;
        use axum::routing::get;
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(custos_log::LogStore::open(custos_log::StoreConfig::new(dir.path())).unwrap());
        let state = Arc::new(AppState::new(store.clone(), Default::default(), Default::default()));
        async fn early(
            State(state): State<Arc<AppState>>,
            Extension(read): Extension<Arc<audit::EarlyRead>>,
            axum::extract::Path(outcome): axum::extract::Path<String>,
        ) -> StatusCode {
            read.record(&state).await;
            if outcome == "works" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }
        }
        let app = axum::Router::new()
            .route("/v1/logs/a/early/{outcome}", get(early))
            .route("/v1/logs/a/late", get(|| async { StatusCode::NOT_FOUND }))
            .layer(axum::middleware::from_fn_with_state(state.clone(), middleware))
            .with_state(state.clone());
        for (path, status) in
            [("/v1/logs/a/early/works", 200), ("/v1/logs/a/early/fails", 503), ("/v1/logs/a/late", 404)]
        {
            let req = axum::http::Request::get(path).body(axum::body::Body::empty()).unwrap();
            let resp = tower::ServiceExt::oneshot(app.clone(), req).await.unwrap();
            assert_eq!(resp.status().as_u16(), status, "{path}");
            let timing = resp.headers().get("server-timing").and_then(|v| v.to_str().ok()).unwrap_or("");
            assert!(timing.starts_with("audit;dur="), "{path}: {timing:?}");
        }
        let log = store.get(audit::SYSTEM_LOG).unwrap();
        let records: Vec<(String, String, String)> = log
            .entries(0, log.size())
            .unwrap()
            .iter()
            .map(|e| {
                let v: serde_json::Value = serde_json::from_slice(e).unwrap();
                let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
                (s("message"), s("status"), s("status_detail"))
            })
            .collect();
        let r = |m: &str, st: &str, d: &str| (m.to_string(), st.to_string(), d.to_string());
        assert_eq!(
            records,
            vec![
                r("GET /v1/logs/a/early/works", "success", "HTTP 200"),
                r("GET /v1/logs/a/early/fails", "success", "HTTP 200"),
                r("GET /v1/logs/a/early/fails", "failure", "HTTP 503 (after the read was recorded as a success)"),
                r("GET /v1/logs/a/late", "failure", "HTTP 404"),
            ]
        );
    }
}
