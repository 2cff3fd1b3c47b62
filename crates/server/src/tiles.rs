//! The C2SP tlog-tiles API: `/tlog/{log}/checkpoint`,
//! `/tlog/{log}/tile/{L}/{N}[.p/{W}]` and `/tlog/{log}/tile/entries/{N}[.p/{W}]`.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use custos_auth::{Action, Identity};
use custos_tlog::tile::{Tile, TileKind};

use crate::error::ApiError;
use crate::state::AppState;

/// Tiles never change once served (a partial tile of width W is fixed
/// too), so caches may keep them for a year.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// `GET /tlog/{log}/checkpoint`: the latest signed checkpoint.
pub async fn checkpoint(
    State(state): State<Arc<AppState>>,
    id: Option<Extension<Identity>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    custos_log::store::validate_log_name(&name, true).map_err(|e| ApiError::bad_request(e.to_string()))?;
    crate::authn::authorize(&state, id.as_ref().map(|Extension(i)| i), Action::ReadHashes(&name))?;
    let ext = state.existing(&name).await?;
    let cp = ext.log.checkpoint().ok_or_else(|| ApiError::not_found(format!("log {name:?} has no checkpoint yet")))?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")],
        cp.note,
    )
        .into_response())
}

/// `GET /tlog/{log}/tile/...`: a hash tile or an entry bundle.
pub async fn tile(
    State(state): State<Arc<AppState>>,
    id: Option<Extension<Identity>>,
    Path((name, path)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    custos_log::store::validate_log_name(&name, true).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let t = Tile::parse(&format!("tile/{path}")).map_err(|e| ApiError::bad_request(e.to_string()))?;
    // Entry bundles hold events; hash tiles only hashes.
    let action = match t.kind {
        TileKind::Entries => Action::Read(&name),
        TileKind::Hashes { .. } => Action::ReadHashes(&name),
    };
    crate::authn::authorize(&state, id.as_ref().map(|Extension(i)| i), action)?;
    let ext = state.existing(&name).await?;
    let log = ext.log.clone();
    // An entry bundle holds up to 256 entries; a hash tile 8 KiB.
    let place = match t.kind {
        TileKind::Entries => Some(state.big_reads.enter(crate::config::SEARCH_QUEUE_WAIT).await?),
        TileKind::Hashes { .. } => None,
    };
    let bytes = tokio::task::spawn_blocking(move || match t.kind {
        TileKind::Hashes { level } => log.hash_tile(level, t.index, t.width),
        TileKind::Entries => log.entry_bundle(t.index, t.width),
    })
    .await
    .map_err(|e| ApiError::unavailable(e.to_string(), 1))?
    .map_err(|e| match e {
        custos_log::ReadError::OutOfRange(m) => ApiError::not_found(m),
        other => other.into(),
    })?;
    let resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/octet-stream"), (header::CACHE_CONTROL, IMMUTABLE)],
        bytes,
    )
        .into_response();
    Ok(match place {
        Some(place) => crate::gate::hold(resp, place),
        None => resp,
    })
}
