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
    let read = recorded_read(&method, &path);
    let resp = next.run(req).await;
    let Some(log) = read else { return resp };
    let status = resp.status();
    let e = MetaEvent {
        activity: if path.starts_with("/v1/tokens") { "custos.token.list" } else { "custos.read" },
        actor: &actor,
        ip,
        log: log.as_deref(),
        success: status.is_success(),
        detail: format!("HTTP {}", status.as_u16()),
        message,
    };
    // The read is answered only once it is on record.
    let started = Instant::now();
    match audit::record(&state, e).await {
        Ok(()) => {
            let mut resp = resp;
            let (name, mut value) = server_timing("audit", started.elapsed());
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
}
