//! The accept loop: plain TCP or TLS (rustls, optionally verifying client
//! certificates), with a connection limit, handshake and header timeouts,
//! and graceful shutdown.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Open connections at most; further ones are closed at once.
pub const MAX_CONNECTIONS: usize = 4096;
/// A TLS handshake must finish within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// In-flight requests get this long to finish at shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Who is on the other end of a connection.
#[derive(Clone, Debug, Default)]
pub struct Peer {
    /// The remote address.
    pub addr: Option<SocketAddr>,
    /// The subject common name of a verified client certificate.
    pub cert_subject: Option<String>,
}

/// TLS settings of a listener.
pub struct TlsFiles<'a> {
    /// PEM certificate chain.
    pub cert: &'a Path,
    /// PEM private key.
    pub key: &'a Path,
    /// PEM CA bundle that client certificates must chain to; clients
    /// without a certificate may still connect and use a token.
    pub client_ca: Option<&'a Path>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds a TLS acceptor from PEM files, for HTTP/1.1.
pub fn tls_acceptor(files: &TlsFiles) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    tls_acceptor_alpn(files, vec![b"http/1.1".to_vec()])
}

/// Builds a TLS acceptor from PEM files offering these ALPN protocols
/// (`h2` for gRPC).
pub fn tls_acceptor_alpn(files: &TlsFiles, alpn: Vec<Vec<u8>>) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use anyhow::Context;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(files.cert)
        .with_context(|| format!("reading certificate {}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing certificate {}", files.cert.display()))?;
    let key =
        PrivateKeyDer::from_pem_file(files.key).with_context(|| format!("reading key {}", files.key.display()))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match files.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).with_context(|| format!("reading CA {}", ca.display()))? {
                roots.add(c.with_context(|| format!("parsing CA {}", ca.display()))?)?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .allow_unauthenticated()
                .build()?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).context("certificate and key do not match")?;
    config.alpn_protocols = alpn;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A self-signed certificate for `localhost` and 127.0.0.1, for
/// development: writes it to `dir` and returns the PEM paths and the
/// SHA-256 fingerprint of the certificate.
pub fn self_signed(dir: &Path) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf, String)> {
    use sha2_fp::fingerprint;
    std::fs::create_dir_all(dir)?;
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into(), "::1".into()])?;
    let (cert, key) = (dir.join("self-signed.pem"), dir.join("self-signed.key"));
    std::fs::write(&cert, ck.cert.pem())?;
    custos_log::store::write_secret_file(&key, &ck.signing_key.serialize_pem())?;
    Ok((cert, key, fingerprint(ck.cert.der())))
}

mod sha2_fp {
    /// `AB:CD:…` SHA-256 fingerprint, as browsers and openssl print it.
    pub fn fingerprint(der: &[u8]) -> String {
        let d = ring_digest(der);
        d.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
    }
    fn ring_digest(der: &[u8]) -> [u8; 32] {
        custos_tlog::hash::sha256(der)
    }
}

/// Cuts off idle and slow clients at the socket: a connection that sends
/// nothing for `idle` is closed, and so is one whose request (from its
/// first byte until the server starts answering) takes longer than
/// `request`, which catches slowloris clients that dribble headers.
///
/// hyper's own header timeout pushed single-request p99 latency from 5 ms
/// to 40 ms under 64 connections in our benchmark, and so did resetting a
/// timer on every read; this timer is re-armed only when it fires.
struct IdleTimeout<IO> {
    io: IO,
    idle: Duration,
    request: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    last_read: tokio::time::Instant,
    /// When the request being read started: set by the first read after
    /// an answer, cleared when the server writes.
    request_started: Option<tokio::time::Instant>,
}

impl<IO> IdleTimeout<IO> {
    fn new(io: IO, idle: Duration, request: Duration) -> IdleTimeout<IO> {
        IdleTimeout {
            io,
            idle,
            request,
            sleep: Box::pin(tokio::time::sleep(idle.min(request))),
            last_read: tokio::time::Instant::now(),
            request_started: None,
        }
    }

    fn deadline(&self) -> tokio::time::Instant {
        let idle = self.last_read + self.idle;
        match self.request_started {
            Some(started) => idle.min(started + self.request),
            None => idle,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for IdleTimeout<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                let now = tokio::time::Instant::now();
                this.last_read = now;
                if buf.filled().len() > before && this.request_started.is_none() {
                    this.request_started = Some(now);
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                while this.sleep.as_mut().poll(cx).is_ready() {
                    let deadline = this.deadline();
                    if tokio::time::Instant::now() >= deadline {
                        return Poll::Ready(Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "client idle or too slow",
                        )));
                    }
                    this.sleep.as_mut().reset(deadline);
                }
                Poll::Pending
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.request_started = None;
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.request_started = None;
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

pub(crate) fn cert_subject(conn: &rustls::ServerConnection) -> Option<String> {
    let chain = conn.peer_certificates()?;
    custos_auth::der::subject_common_name(chain.first()?.as_ref())
}

async fn serve_conn<IO>(
    io: IO,
    peer: Peer,
    app: Router,
    watcher: hyper_util::server::graceful::Watcher,
    idle: Duration,
    request: Duration,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(peer.clone());
        app.clone().oneshot(req.map(axum::body::Body::new))
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(IdleTimeout::new(io, idle, request)), svc);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Accepts connections until `shutdown` resolves, then waits for open
/// connections to finish their requests.
pub async fn accept_loop(
    listener: TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    idle: Duration,
    request: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let (tcp, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors, say: wait a little, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics::counter!("custos_connections_refused_total").increment(1);
            continue; // dropping the stream closes it
        };
        let _ = tcp.set_nodelay(true);
        let (app, tls, watcher) = (app.clone(), tls.clone(), graceful.watcher());
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => {
                    serve_conn(tcp, Peer { addr: Some(addr), cert_subject: None }, app, watcher, idle, request).await
                }
                Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let cert_subject = cert_subject(stream.get_ref().1);
                        serve_conn(stream, Peer { addr: Some(addr), cert_subject }, app, watcher, idle, request).await
                    }
                    Ok(Err(e)) => tracing::info!(peer = %addr, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::info!(peer = %addr, "TLS handshake timed out"),
                },
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections were still busy after the drain timeout");
    }
    Ok(())
}
