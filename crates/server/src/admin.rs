//! Token management for admins: `POST /v1/tokens`, `GET /v1/tokens`,
//! `DELETE /v1/tokens/{id}`. Every change is recorded in `_custos`.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use custos_auth::{Action, Identity, Role, Scope};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::audit::{self, MetaEvent};
use crate::authn::authorize;
use crate::conn::Peer;
use crate::error::ApiError;
use crate::state::AppState;

fn store(state: &AppState) -> Result<&custos_auth::TokenStore, ApiError> {
    state.auth.tokens.as_deref().ok_or_else(|| ApiError::bad_request("authentication is switched off on this server"))
}

fn admin(state: &AppState, id: &Option<Extension<Identity>>) -> Result<Identity, ApiError> {
    let id = id.as_ref().map(|Extension(i)| i);
    authorize(state, id, Action::Manage)?;
    Ok(id.expect("authorized").clone())
}

/// `GET /v1/tokens`: every token, without secrets.
pub async fn list_tokens(
    State(state): State<Arc<AppState>>,
    id: Option<Extension<Identity>>,
) -> Result<Json<Value>, ApiError> {
    admin(&state, &id)?;
    let records = store(&state)?.records().map_err(|e| ApiError::unavailable(e.to_string(), 5))?;
    Ok(Json(json!({ "tokens": records })))
}

/// The body of `POST /v1/tokens`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    name: String,
    role: String,
    /// Comma-separated logs, or `*`.
    #[serde(default)]
    logs: Option<String>,
    /// Such as `90d`.
    #[serde(default)]
    ttl: Option<String>,
    #[serde(default)]
    rate_limit_per_sec: Option<u32>,
}

async fn record_change(
    state: &AppState,
    actor: &str,
    peer: &Peer,
    activity: &str,
    detail: String,
) -> Result<(), ApiError> {
    let e = MetaEvent {
        activity,
        actor,
        ip: peer.addr.map(|a| a.ip().to_string()),
        log: None,
        success: true,
        detail,
        message: activity.into(),
    };
    audit::record(state, e).await
}

/// `POST /v1/tokens`: creates a token; the answer is the only time its
/// secret is shown.
pub async fn create_token(
    State(state): State<Arc<AppState>>,
    id: Option<Extension<Identity>>,
    Extension(peer): Extension<Peer>,
    body: Result<Json<NewToken>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let who = admin(&state, &id)?;
    let Json(t) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let role = Role::parse(&t.role).map_err(ApiError::bad_request)?;
    let ttl = t.ttl.as_deref().map(custos_auth::tokens::parse_ttl).transpose().map_err(ApiError::bad_request)?;
    let scope = Scope::parse(t.logs.as_deref().unwrap_or("*"));
    let (token, rec) = store(&state)?
        .create(&t.name, role, scope, ttl, t.rate_limit_per_sec, SystemTime::now())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    state.known_tokens.lock().unwrap_or_else(|e| e.into_inner()).1.insert(rec.id.clone(), false);
    record_change(
        &state,
        &who.name,
        &peer,
        "custos.token.create",
        format!("token {} ({}) role {}", rec.id, rec.name, role.as_str()),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!({ "token": token, "record": rec }))))
}

/// `DELETE /v1/tokens/{id}`: revokes a token at once.
pub async fn revoke_token(
    State(state): State<Arc<AppState>>,
    id: Option<Extension<Identity>>,
    Extension(peer): Extension<Peer>,
    Path(token_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let who = admin(&state, &id)?;
    let rec = store(&state)?.revoke(&token_id, SystemTime::now()).map_err(|e| ApiError::not_found(e.to_string()))?;
    state.known_tokens.lock().unwrap_or_else(|e| e.into_inner()).1.insert(rec.id.clone(), true);
    record_change(&state, &who.name, &peer, "custos.token.revoke", format!("token {} ({})", rec.id, rec.name)).await?;
    Ok(Json(json!({ "record": rec })))
}

/// `GET /v1/whoami`: the caller's own identity and role, so that a
/// service (the standalone database gateway) can check a token it was
/// handed without holding the token store.
pub async fn whoami(id: Option<Extension<Identity>>) -> Result<Json<Value>, ApiError> {
    let Some(Extension(id)) = id else {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "no identity: send a bearer token"));
    };
    Ok(Json(json!({ "name": id.name, "role": id.role.as_str() })))
}
