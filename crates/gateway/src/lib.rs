//! The Custos access gateway for PostgreSQL.
//!
//! People connect to the gateway as themselves; the gateway holds the
//! service credential and records every statement in the tamper-evident
//! log *before* forwarding it (fail-closed), or as soon as it can (async).
//!
//! # Layout
//! - [`wire`]: the protocol 3.0 framing and messages (pure, fuzzed).
//! - [`scram`]: SCRAM-SHA-256, server and client side (pure).
//! - [`classify`]: statement classes and tables, via `sqlparser` (pure).
//! - [`rules`]: people, their roles and the deny rules (pure).
//! - [`reload`]: picks up changes to the users file, and records them.
//! - [`sink`]: the bounded queue of events on their way to the log.
//! - [`spool`]: the spool on disk, for a gateway posting over HTTP.
//! - [`session`]: one client connection: handshake, proxy, events.
//! - [`tls`]: TLS toward clients and toward the upstream.
//!
//! The gateway knows nothing of HTTP or of log storage: the caller gives
//! the [`sink::Sink`] a function that stores a batch of events durably.

pub mod classify;
pub mod reload;
pub mod rules;
pub mod scram;
pub mod session;
pub mod sink;
pub mod spool;
pub mod tls;
pub mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use rules::{DenyRule, Users};

/// When a statement may reach the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditMode {
    /// Only after its audit event is durable in the log; refused when the
    /// log is unavailable.
    FailClosed,
    /// At once; its event (with the outcome) goes through a bounded
    /// in-memory spool. A gateway crash loses what is spooled.
    Async,
}

/// Where and how the gateway connects upstream.
#[derive(Clone)]
pub struct Upstream {
    /// Host name or address; or, as in libpq, a directory (starting with
    /// `/`) holding the upstream's Unix socket.
    pub host: String,
    /// Port.
    pub port: u16,
    /// The service role people never see.
    pub user: String,
    /// Its password, if the upstream asks for one.
    pub password: Option<String>,
    /// The database; `None` uses the one the client asks for.
    pub database: Option<String>,
    /// TLS toward the upstream.
    pub tls: tls::UpstreamTls,
}

impl Upstream {
    /// The Unix socket to connect to, when `host` is a directory:
    /// `HOST/.s.PGSQL.PORT`, where PostgreSQL puts it. TLS does not apply
    /// there (as in libpq), so only `sslmode` `disable` and `prefer` are
    /// accepted with one.
    pub fn unix_socket(&self) -> Option<std::path::PathBuf> {
        self.host.starts_with('/').then(|| std::path::Path::new(&self.host).join(format!(".s.PGSQL.{}", self.port)))
    }
}

/// Everything a gateway needs.
pub struct Config {
    /// A name for this gateway in events (`metadata.gateway.name`).
    pub name: String,
    /// The upstream database.
    pub upstream: Upstream,
    /// TLS toward clients; `None` answers `N` to SSLRequest.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Refuse clients that do not use TLS.
    pub require_tls: bool,
    /// Require a client certificate whose common name is the user's (the
    /// acceptor in `tls` checks it against the CA), as PostgreSQL's
    /// `clientcert=verify-full`; the password is still asked for.
    pub client_certs: bool,
    /// The people who may log in.
    pub users: Users,
    /// The file they come from, watched for changes while the gateway
    /// runs ([`reload`]); `None` keeps `users` as they are.
    pub users_file: Option<std::path::PathBuf>,
    /// Deny rules, checked in order.
    pub rules: Vec<DenyRule>,
    /// The file the rules come from, watched for changes while the
    /// gateway runs, and how to read the rules from it ([`reload`]).
    pub rules_file: Option<(std::path::PathBuf, RulesLoader)>,
    /// Record bound parameter values as `"<redacted>"`.
    pub redact_params: bool,
    /// Fail-closed or async.
    pub mode: AuditMode,
    /// How long a client has to authenticate.
    pub auth_timeout: Duration,
    /// Checks a Custos token used as the password by someone who is not
    /// in the users file; returns their roles for deny rules. `None`
    /// allows users of the users file only.
    pub tokens: Option<TokenCheck>,
}

/// Reads and checks the deny rules of a gateway from its configuration
/// file, whose layout the caller knows.
pub type RulesLoader = Arc<dyn Fn() -> Result<Vec<DenyRule>, String> + Send + Sync>;

/// Checks `(user, token)`: the token must be valid and name that user.
pub type TokenCheck = std::sync::Arc<dyn Fn(&str, &str) -> Result<Vec<String>, String> + Send + Sync>;

/// Upper bound on concurrent client sessions: each costs two sockets, two
/// buffers of [`session::READ_BUFFER_BYTES`] (long messages take shared
/// room, [`session::MAX_BIG_MESSAGE_BYTES`]), up to
/// [`session::MAX_REMEMBERED_BYTES_PER_SESSION`] of prepared statements, and
/// an upstream backend.
pub const MAX_SESSIONS: usize = 1024;

/// A running gateway, shared by its sessions.
pub struct Gateway {
    pub(crate) config: Config,
    pub(crate) sink: sink::Sink,
    pub(crate) analyser: classify::Analyser,
    /// Our cancel key → the upstream's, for forwarding CancelRequests.
    pub(crate) cancels: Mutex<HashMap<(i32, Vec<u8>), session::CancelTarget>>,
    sessions: Arc<tokio::sync::Semaphore>,
    /// Room for long messages, in bytes ([`session::MAX_BIG_MESSAGE_BYTES`]).
    pub(crate) big_messages: Arc<tokio::sync::Semaphore>,
    /// The people who may log in now: `config.users` at start, replaced
    /// when the users file changes.
    pub(crate) users: std::sync::RwLock<Arc<Users>>,
    /// The deny rules now: `config.rules` at start, replaced when their
    /// file changes.
    pub(crate) rules: std::sync::RwLock<Arc<Vec<DenyRule>>>,
}

impl Gateway {
    /// A gateway that records through `sink`.
    pub fn new(mut config: Config, sink: sink::Sink) -> Arc<Gateway> {
        let users = std::sync::RwLock::new(Arc::new(std::mem::take(&mut config.users)));
        let rules = std::sync::RwLock::new(Arc::new(std::mem::take(&mut config.rules)));
        Arc::new(Gateway {
            users,
            rules,
            config,
            sink,
            analyser: classify::Analyser::default(),
            cancels: Mutex::new(HashMap::new()),
            sessions: Arc::new(tokio::sync::Semaphore::new(MAX_SESSIONS)),
            big_messages: Arc::new(tokio::sync::Semaphore::new(session::MAX_BIG_MESSAGE_BYTES)),
        })
    }

    /// Accepts clients until `shutdown` resolves.
    pub async fn serve(
        self: Arc<Gateway>,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        tokio::pin!(shutdown);
        // Watches the users file while this runs.
        struct Abort(Vec<tokio::task::JoinHandle<()>>);
        impl Drop for Abort {
            fn drop(&mut self) {
                self.0.iter().for_each(tokio::task::JoinHandle::abort);
            }
        }
        let mut watches = Vec::new();
        if let Some(p) = self.config.users_file.clone() {
            watches.push(tokio::spawn(reload::watch_users(self.clone(), p)));
        }
        if let Some((p, load)) = self.config.rules_file.clone() {
            watches.push(tokio::spawn(reload::watch_rules(self.clone(), p, load)));
        }
        let _watches = Abort(watches);
        loop {
            let permit = tokio::select! {
                p = self.sessions.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                _ = &mut shutdown => return Ok(()),
            };
            let (tcp, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => return Ok(()),
            };
            let gw = self.clone();
            tokio::spawn(async move {
                session::run(gw, tcp, peer).await;
                drop(permit);
            });
        }
    }
}
