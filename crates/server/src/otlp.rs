//! `POST /v1/otlp/{log}/v1/logs`: OpenTelemetry logs over OTLP/HTTP, in
//! binary protobuf or OTLP/JSON. Point an exporter's logs endpoint here,
//! with `Authorization: Bearer TOKEN` in its headers.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use custos_auth::{Action, Identity};
use custos_event::ServerFields;

use crate::authn::authorize;
use crate::conn::Peer;
use crate::error::ApiError;
use crate::state::AppState;

/// The OTLP/HTTP logs receiver. Records that are not access events are
/// rejected one by one (partial success); a request that cannot be stored
/// gets 503 with Retry-After, which OTLP exporters retry.
pub async fn logs(
    State(state): State<Arc<AppState>>,
    id: Option<Extension<Identity>>,
    Extension(peer): Extension<Peer>,
    Path(log): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    custos_log::store::validate_log_name(&log, false).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let id = id.map(|Extension(i)| i);
    authorize(&state, id.as_ref(), Action::Append(&log))?;
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let as_json = match ct.split(';').next().unwrap_or("").trim() {
        "application/x-protobuf" | "application/protobuf" => false,
        "application/json" => true,
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Type {other:?} is not OTLP: send application/x-protobuf or application/json"),
            ));
        }
    };
    let raw = crate::ingest::read_body(body, &headers, state.config.max_body_bytes, state.config.body_timeout).await?;
    let req =
        if as_json { custos_sources::otlp::decode_json(&raw) } else { custos_sources::otlp::decode_protobuf(&raw) }
            .map_err(ApiError::bad_request)?;
    let conv = custos_sources::otlp::to_events(&req, custos_event::time::now_nanos()).map_err(ApiError::bad_request)?;
    if !conv.events.is_empty() {
        let server = ServerFields {
            log: log.clone(),
            received_at: custos_event::time::format_rfc3339(custos_event::time::now_nanos()),
            submitter: id.map_or_else(|| "anonymous".into(), |i| i.name),
            via: "otlp".into(),
            address: peer.addr.map(|a| a.ip().to_string()),
        };
        crate::ingest::ingest_values(&state, &log, server, conv.events).await?;
    }
    let body = custos_sources::otlp::encode_response(conv.rejected, &conv.error_message, as_json);
    let ct = if as_json { "application/json" } else { "application/x-protobuf" };
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, ct)], body).into_response())
}
