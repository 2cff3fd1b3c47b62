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

/// What the server adds to an OTLP event: who sent it, how, from where.
fn server_fields(log: &str, id: Option<Identity>, peer: &Peer) -> ServerFields {
    ServerFields {
        log: log.to_string(),
        received_at: custos_event::time::format_rfc3339(custos_event::time::now_nanos()),
        submitter: id.map_or_else(|| "anonymous".into(), |i| i.name),
        via: "otlp".into(),
        address: peer.addr.map(|a| a.ip().to_string()),
    }
}

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
    let (raw, _room) = crate::ingest::read_body(body, &headers, &state).await?;
    let req =
        if as_json { custos_sources::otlp::decode_json(&raw) } else { custos_sources::otlp::decode_protobuf(&raw) }
            .map_err(ApiError::bad_request)?;
    let conv = custos_sources::otlp::to_events(&req, custos_event::time::now_nanos()).map_err(ApiError::bad_request)?;
    if !conv.events.is_empty() {
        let server = server_fields(&log, id, &peer);
        crate::ingest::ingest_values(&state, &log, server, conv.events).await?;
    }
    let body = custos_sources::otlp::encode_response(conv.rejected, &conv.error_message, as_json);
    let ct = if as_json { "application/json" } else { "application/x-protobuf" };
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, ct)], body).into_response())
}

/// The gRPC method of OTLP logs.
pub const GRPC_EXPORT_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
/// Concurrent connections on an OTLP/gRPC listener.
pub const MAX_GRPC_CONNECTIONS: usize = 256;

/// The log an OTLP/gRPC listener writes to.
#[derive(Clone)]
struct GrpcLog(String);

/// gRPC status codes used here.
const GRPC_OK: u32 = 0;
const GRPC_INVALID_ARGUMENT: u32 = 3;
const GRPC_PERMISSION_DENIED: u32 = 7;
const GRPC_UNAVAILABLE: u32 = 14;
const GRPC_UNAUTHENTICATED: u32 = 16;

/// A gRPC answer: the message (if any) as one length-prefixed frame, and
/// `grpc-status` in the trailers; errors are "trailers-only" answers.
fn grpc_response(status: u32, message: &str, payload: Option<Vec<u8>>) -> Response {
    use http_body_util::StreamBody;
    let mut builder = Response::builder().status(StatusCode::OK).header(header::CONTENT_TYPE, "application/grpc");
    let Some(payload) = payload else {
        // Percent-encoding of grpc-message: keep it printable ASCII.
        let msg: String = message.chars().map(|c| if (' '..='~').contains(&c) && c != '%' { c } else { '?' }).collect();
        builder = builder.header("grpc-status", status.to_string()).header("grpc-message", msg);
        return builder.body(axum::body::Body::empty()).expect("valid response");
    };
    let mut frame = Vec::with_capacity(5 + payload.len());
    frame.push(0);
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", status.to_string().parse().expect("digits"));
    let frames: Vec<Result<http_body::Frame<bytes::Bytes>, std::convert::Infallible>> =
        vec![Ok(http_body::Frame::data(bytes::Bytes::from(frame))), Ok(http_body::Frame::trailers(trailers))];
    let body = StreamBody::new(futures_util::stream::iter(frames));
    builder.body(axum::body::Body::new(body)).expect("valid response")
}

/// `LogsService/Export` over gRPC: the same conversion as OTLP/HTTP.
async fn grpc_export(
    State(state): State<Arc<AppState>>,
    id: Option<Extension<Identity>>,
    Extension(peer): Extension<Peer>,
    Extension(GrpcLog(log)): Extension<GrpcLog>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let id = id.map(|Extension(i)| i);
    if let Err(e) = authorize(&state, id.as_ref(), Action::Append(&log)) {
        let code = if e.status == StatusCode::UNAUTHORIZED { GRPC_UNAUTHENTICATED } else { GRPC_PERMISSION_DENIED };
        return grpc_response(code, &e.message, None);
    }
    // Room among the bodies in flight, as for HTTP ingest: for the body as
    // declared (or as large as allowed), and as much again decompressed.
    let limit = state.config.max_body_bytes;
    let gzip = headers.get("grpc-encoding").is_some_and(|v| v == "gzip");
    let need = crate::ingest::declared_len(&headers, limit + 5).unwrap_or(limit + 5) + limit;
    let mut room = match state.body_room.take_within(need, crate::config::BODY_ROOM_WAIT).await {
        Ok(room) => room,
        Err(e) => return grpc_response(GRPC_UNAVAILABLE, &e.message, None),
    };
    // The body is read raw: gRPC compresses per message, not per body.
    let raw = match tokio::time::timeout(
        state.config.body_timeout,
        axum::body::to_bytes(body, state.config.max_body_bytes + 5),
    )
    .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return grpc_response(GRPC_INVALID_ARGUMENT, &format!("reading the request: {e}"), None),
        Err(_) => return grpc_response(GRPC_UNAVAILABLE, "the request body did not arrive in time", None),
    };
    if raw.len() < 5 {
        return grpc_response(GRPC_INVALID_ARGUMENT, "the gRPC message is shorter than its 5-byte prefix", None);
    }
    let len = u32::from_be_bytes([raw[1], raw[2], raw[3], raw[4]]) as usize;
    if raw.len() != 5 + len {
        return grpc_response(
            GRPC_INVALID_ARGUMENT,
            &format!("the gRPC prefix says {len} bytes, {} follow", raw.len() - 5),
            None,
        );
    }
    let message = match raw[0] {
        0 => raw[5..].to_vec(),
        1 if gzip => {
            use std::io::Read;
            let mut out = Vec::new();
            if let Err(e) = flate2::read::GzDecoder::new(&raw[5..]).take(limit as u64 + 1).read_to_end(&mut out) {
                return grpc_response(GRPC_INVALID_ARGUMENT, &format!("gzip: {e}"), None);
            }
            if out.len() > limit {
                return grpc_response(GRPC_INVALID_ARGUMENT, "the decompressed message is over the body limit", None);
            }
            out
        }
        _ => {
            return grpc_response(
                GRPC_INVALID_ARGUMENT,
                "unsupported gRPC message compression (identity or gzip)",
                None,
            );
        }
    };
    crate::ingest::BodyRoom::keep(&mut room, raw.len() + message.len());
    let req = match custos_sources::otlp::decode_protobuf(&message) {
        Ok(r) => r,
        Err(e) => return grpc_response(GRPC_INVALID_ARGUMENT, &e, None),
    };
    let conv = match custos_sources::otlp::to_events(&req, custos_event::time::now_nanos()) {
        Ok(c) => c,
        Err(e) => return grpc_response(GRPC_INVALID_ARGUMENT, &e, None),
    };
    if !conv.events.is_empty() {
        let server = server_fields(&log, id, &peer);
        if let Err(e) = crate::ingest::ingest_values(&state, &log, server, conv.events).await {
            // UNAVAILABLE is the retryable status of OTLP/gRPC.
            let code = if e.status.is_client_error() { GRPC_INVALID_ARGUMENT } else { GRPC_UNAVAILABLE };
            return grpc_response(code, &e.message, None);
        }
    }
    let payload = custos_sources::otlp::encode_response(conv.rejected, &conv.error_message, false);
    grpc_response(GRPC_OK, "", Some(payload))
}

/// Serves OTLP/gRPC on `listener`, writing to `log`: over TLS (ALPN `h2`)
/// when `tls` is given, else HTTP/2 without TLS (exporters with
/// `insecure`). Tokens and client certificates authenticate as on the
/// HTTP API (`authorization: Bearer …` metadata).
pub async fn serve_grpc(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    log: String,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let app = axum::Router::new()
        .route(GRPC_EXPORT_PATH, axum::routing::post(grpc_export))
        .layer(Extension(GrpcLog(log)))
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::authn::middleware))
        .with_state(state);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_GRPC_CONNECTIONS));
    loop {
        let permit = slots.clone().acquire_owned().await.expect("never closed");
        let (tcp, addr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "OTLP/gRPC accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_h2(tcp, Peer { addr: Some(addr), cert_subject: None }, app).await,
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp));
                    if let Ok(Ok(stream)) = handshake.await {
                        let cert_subject = crate::conn::cert_subject(stream.get_ref().1);
                        serve_h2(stream, Peer { addr: Some(addr), cert_subject }, app).await;
                    }
                }
            }
            drop(permit);
        });
    }
}

async fn serve_h2<IO>(io: IO, peer: Peer, app: axum::Router)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tower::ServiceExt;
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(peer.clone());
        app.clone().oneshot(req.map(axum::body::Body::new))
    });
    let conn = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .serve_connection(hyper_util::rt::TokioIo::new(io), svc);
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "OTLP/gRPC connection ended with an error");
    }
}
