//! One client connection: the handshake (TLS, SCRAM, the upstream login),
//! then the proxy in both directions, and the events of it all.
//!
//! Client to upstream, each chunk read is scanned message by message.
//! Statements (Query, Execute, FunctionCall) become events; in fail-closed
//! mode the chunk is forwarded only once they are durable. A statement that
//! must not run (denied by a rule, or the log is down) is replaced by an
//! invalid statement carrying a marker, so that PostgreSQL itself fails it
//! at the right place in the pipeline and keeps its transaction state
//! exact; on the way back the resulting error is rewritten into ours.
//!
//! Upstream to client, CommandComplete, ErrorResponse and ReadyForQuery
//! give each statement its outcome; rows and copy data stream through.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use custos_event::doc::Node;

use crate::sink::Event;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::classify::Analysis;
use crate::scram::{ClientExchange, ScramError, ServerExchange};
use crate::tls::SslMode;
use crate::wire::{self, Startup};
use crate::{AuditMode, Gateway};

/// Bytes read from a socket at a time. A message longer than this is read
/// whole into room shared by all sessions ([`MAX_BIG_MESSAGE_BYTES`]).
pub const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Memory for long messages (over [`READ_BUFFER_BYTES`], up to
/// [`wire::MAX_INSPECTED_MESSAGE_BYTES`] each) that all sessions together
/// read at once; a session waits for room before it reads the rest of one.
/// A message takes twice its length: the buffer it is read into, and the
/// copy forwarded.
pub const MAX_BIG_MESSAGE_BYTES: usize = 256 << 20;
/// How long a session waits for that room before it is ended (53200).
const BIG_MESSAGE_ROOM_WAIT: Duration = Duration::from_secs(30);
/// How long a long message may take to arrive once it has room, so that a
/// slow client cannot keep the room from others.
const BIG_MESSAGE_READ_TIME: Duration = Duration::from_secs(60);
/// Statement text kept in an event; longer text is cut, and its SHA-256
/// recorded whole.
pub const MAX_EVENT_SQL_BYTES: usize = 32 * 1024;
/// Bytes of one parameter value kept in an event.
pub const MAX_EVENT_PARAM_BYTES: usize = 256;
/// Parameter values kept in an event; the rest are counted.
pub const MAX_EVENT_PARAMS: usize = 64;
/// Prepared statements and portals remembered per session.
pub const MAX_PREPARED_PER_SESSION: usize = 10_000;
/// Bytes of statement text and bound parameters a session's prepared
/// statements and portals may hold; a Parse or Bind past it is refused
/// (54000) until the client closes some.
pub const MAX_REMEMBERED_BYTES_PER_SESSION: usize = 4 << 20;
/// Commands, tables and outcome tags listed in a statement's event; the
/// rest are counted (`commands_count`, `tables_count`, `tags_count`).
pub const MAX_EVENT_LIST_ITEMS: usize = 32;
/// Bytes of one listed command or table name in an event.
pub const MAX_EVENT_NAME_BYTES: usize = 128;
/// Bytes of an error message kept in an event.
pub const MAX_EVENT_DETAIL_BYTES: usize = 2048;
/// A statement's event, sealed, stays under this: the log refuses events
/// over 64 KiB, and the server adds its own fields.
pub const MAX_GATEWAY_EVENT_BYTES: usize = 60 * 1024;
/// Statements between a Sync and the next, awaiting their outcome.
pub const MAX_INFLIGHT_PER_SESSION: usize = 100_000;
/// Time to reach the upstream and log in.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// PostgreSQL keeps 63 bytes of `application_name`.
const MAX_APPLICATION_NAME_BYTES: usize = 63;
/// Startup parameters passed on upstream. Others (notably `options`,
/// which can set server parameters such as `pgaudit.log`) are dropped.
const FORWARDED_PARAMS: &[&str] =
    &["client_encoding", "datestyle", "timezone", "extra_float_digits", "intervalstyle", "search_path"];

/// A byte stream: TCP, TLS over TCP, or a Unix socket.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type Stream = Box<dyn Io>;
/// The client's write half, shared: upstream answers go through it, and
/// so does the error that ends a session on a protocol violation.
type ClientWriter = tokio::sync::Mutex<tokio::io::WriteHalf<Stream>>;

/// Where a cancel request for a session goes.
#[derive(Clone)]
pub struct CancelTarget {
    pid: i32,
    secret: Vec<u8>,
    session: String,
    user: String,
}

/// How a session ended.
#[derive(Debug)]
enum End {
    /// The client sent Terminate.
    Terminate,
    /// The client closed the connection without Terminate.
    ClientGone,
    /// The upstream closed the connection.
    UpstreamGone,
    /// Something went wrong; the text says what, for the event.
    Failed(String),
}

/// What a session knows once the client has logged in.
struct Ctx {
    gw: Arc<Gateway>,
    sid: String,
    nonce: String,
    peer: SocketAddr,
    user: String,
    roles: Vec<String>,
    app: String,
    database: String,
    started: Instant,
    /// The client's certificate, when it sent one the gateway verified.
    cert: Option<crate::tls::ClientCert>,
}

pub(crate) fn now() -> String {
    custos_event::time::format_rfc3339(custos_event::time::now_nanos())
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).expect("the OS random source works");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Ctx {
    /// The fields every event of the session shares.
    fn event(&self, activity: &'static str, status: &'static str) -> Event {
        let up = &self.gw.config.upstream;
        let gateway = Node::obj([
            ("name", self.gw.config.name.clone().into()),
            ("session", self.sid.clone().into()),
            ("application_name", self.app.clone().into()),
            ("database", self.database.clone().into()),
            ("upstream_user", up.user.clone().into()),
        ]);
        Node::obj([
            ("time", now().into()),
            ("activity", activity.into()),
            ("status", status.into()),
            (
                "actor",
                Node::obj([
                    ("user", Node::obj([("name", self.user.clone().into())])),
                    ("session", Node::obj([("uid", self.sid.clone().into())])),
                ]),
            ),
            ("src_endpoint", Node::obj([("ip", self.peer.ip().to_string().into()), ("port", self.peer.port().into())])),
            ("dst_endpoint", Node::obj([("hostname", up.host.clone().into()), ("port", up.port.into())])),
            ("resource", Node::obj([("type", "database".into()), ("name", self.database.clone().into())])),
            ("metadata", Node::obj([("gateway", gateway)])),
        ])
    }

    /// A `db.login` event, naming the client's certificate if it sent one.
    fn login_event(&self, status: &'static str) -> Event {
        let mut e = self.event("db.login", status);
        e.set("class_uid", 3002.into());
        if let Some(c) = &self.cert {
            let mut cert = Node::obj([("sha256", c.sha256.clone().into())]);
            if let Some(cn) = &c.common_name {
                cert.set("common_name", cut(cn, MAX_EVENT_NAME_BYTES).into());
            }
            Ctx::gateway_meta(&mut e).set("client_cert", cert);
        }
        e
    }

    fn gateway_meta(e: &mut Event) -> &mut Event {
        e.get_mut("metadata").and_then(|m| m.get_mut("gateway")).expect("built by event")
    }

    /// Records session-level events: durably in fail-closed mode.
    async fn record(&self, events: Vec<Event>) -> Result<(), String> {
        self.gw.sink.submit(events, self.gw.config.mode == AuditMode::FailClosed).await
    }
}

/// Runs one client connection to its end.
pub async fn run(gw: Arc<Gateway>, tcp: tokio::net::TcpStream, peer: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    let mut ctx = Ctx {
        gw: gw.clone(),
        sid: random_hex(8),
        nonce: random_hex(6),
        peer,
        user: "unknown".into(),
        roles: Vec::new(),
        app: String::new(),
        database: String::new(),
        started: Instant::now(),
        cert: None,
    };
    let client: Stream = Box::new(tcp);
    let handshake = tokio::time::timeout(gw.config.auth_timeout, handshake(&mut ctx, client));
    let (client, upstream, buf) = match handshake.await {
        Err(_) => {
            let mut e = ctx.login_event("failure");
            e.set("status_detail", "authentication timed out".into());
            let _ = ctx.record(vec![e]).await;
            return;
        }
        Ok(Err(None)) => return, // a cancel request, or a probe that sent nothing
        Ok(Err(Some((mut c, fatal)))) => {
            let _ = c.write_all(&fatal).await;
            let _ = c.shutdown().await;
            return;
        }
        Ok(Ok(x)) => x,
    };
    let end = proxy(&ctx, client, upstream, buf).await;
    let (status, detail) = match &end {
        End::Terminate => ("success", "client terminated the session".to_string()),
        End::ClientGone => ("failure", "client closed the connection without terminating".to_string()),
        End::UpstreamGone => ("failure", "the upstream closed the connection".to_string()),
        End::Failed(why) => ("failure", why.clone()),
    };
    gw.cancels.lock().expect("cancel lock").retain(|_, t| t.session != ctx.sid);
    let mut e = ctx.event("db.disconnect", status);
    e.set("status_detail", detail.into());
    e.set("duration_ms", (ctx.started.elapsed().as_secs_f64() * 1000.0).into());
    let _ = ctx.record(vec![e]).await;
}

/// A handshake that ends the session: the stream and the FATAL error to
/// send on it. `None` ends it silently.
type HandshakeEnd = Option<(Stream, Vec<u8>)>;

fn fatal(code: &str, text: &str) -> Vec<u8> {
    let mut b = Vec::new();
    wire::error_response(&mut b, "FATAL", code, text, None);
    b
}

/// Reads one typed message during the handshake.
async fn read_frame(io: &mut Stream, buf: &mut Vec<u8>, max: usize) -> Result<(u8, Vec<u8>), String> {
    loop {
        if let Some((tag, len)) = wire::header(buf, max).map_err(|e| e.0)?
            && buf.len() >= len
        {
            let body = buf[5..len].to_vec();
            buf.drain(..len);
            return Ok((tag, body));
        }
        buf.reserve(READ_BUFFER_BYTES);
        if io.read_buf(buf).await.map_err(|e| e.to_string())? == 0 {
            return Err("connection closed during the handshake".into());
        }
    }
}

/// TLS, the startup packet, SCRAM and the upstream login. Returns the
/// client and upstream streams and any bytes the client already sent.
async fn handshake(ctx: &mut Ctx, mut client: Stream) -> Result<(Stream, Stream, Vec<u8>), HandshakeEnd> {
    let gw = ctx.gw.clone();
    let mut buf = Vec::with_capacity(1024);
    let mut tls = false;
    let (version, params) = loop {
        let packet = loop {
            match wire::parse_startup(&buf) {
                Ok(Some((p, n))) => {
                    buf.drain(..n);
                    break p;
                }
                Ok(None) => {}
                Err(e) => return Err(login_failed(ctx, client, "08P01", &format!("invalid startup packet: {e}")).await),
            }
            if client.read_buf(&mut buf).await.map_err(|_| None)? == 0 {
                return Err(None);
            }
        };
        match packet {
            Startup::Ssl => {
                let acceptor = gw.config.tls.clone().filter(|_| !tls);
                client.write_all(if acceptor.is_some() { b"S" } else { b"N" }).await.map_err(|_| None)?;
                if let Some(acceptor) = acceptor {
                    if !buf.is_empty() {
                        // Bytes sent before the TLS handshake would be
                        // trusted as if encrypted (CVE-2021-23222).
                        return Err(login_failed(ctx, client, "08P01", "unencrypted data after the SSL request").await);
                    }
                    let stream = match acceptor.accept(client).await {
                        Ok(s) => s,
                        Err(e) => {
                            // Who it was is unknown (the startup packet
                            // comes after TLS), but a refused certificate
                            // is a failed login all the same.
                            let mut ev = ctx.login_event("failure");
                            ev.set("status_code", "08P01".into());
                            ev.set("status_detail", cut(&format!("TLS handshake failed: {e}"), 512).into());
                            let _ = ctx.record(vec![ev]).await;
                            return Err(None);
                        }
                    };
                    ctx.cert = crate::tls::ClientCert::of(stream.get_ref().1);
                    client = Box::new(stream);
                    tls = true;
                }
            }
            Startup::GssEnc => client.write_all(b"N").await.map_err(|_| None)?,
            Startup::Cancel { pid, secret } => {
                cancel(&gw, pid, &secret).await;
                return Err(None);
            }
            Startup::Start { version, params } => break (version, params),
        }
    };
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    ctx.user = param("user").unwrap_or_default();
    ctx.app = param("application_name").unwrap_or_default();
    ctx.database = param("database").unwrap_or_else(|| ctx.user.clone());
    if ctx.user.is_empty() {
        return Err(login_failed(ctx, client, "28000", "no PostgreSQL user name specified in startup packet").await);
    }
    let connect = ctx.event("db.connect", "success");
    let _ = ctx.record(vec![connect]).await;
    if param("replication").is_some_and(|r| r != "false" && r != "0") {
        return Err(
            login_failed(ctx, client, "28000", "replication connections are not supported by the gateway").await
        );
    }
    if gw.config.require_tls && !tls {
        return Err(login_failed(ctx, client, "28000", "the gateway requires TLS (use sslmode=require)").await);
    }
    if gw.config.client_certs {
        // As PostgreSQL's clientcert=verify-full: the certificate (checked
        // against the CA during the handshake) must name this user.
        let why = match &ctx.cert {
            None => Some("the gateway requires a client certificate (sslcert and sslkey)".to_string()),
            Some(c) if c.common_name.as_deref() != Some(ctx.user.as_str()) => Some(format!(
                "certificate authentication failed for user \"{}\": the certificate is for {:?}",
                ctx.user,
                c.common_name.as_deref().unwrap_or("no common name")
            )),
            Some(_) => None,
        };
        if let Some(text) = why {
            return Err(login_failed(ctx, client, "28000", &text).await);
        }
    }
    if version != wire::PROTOCOL_3_0 {
        let mut v = Vec::new();
        wire::negotiate_version(&mut v);
        client.write_all(&v).await.map_err(|_| None)?;
    }
    let known = gw.users.read().expect("users lock").get(&ctx.user).cloned();
    let (server_final, method) = match (&known, &gw.config.tokens) {
        (None, Some(check)) => {
            // Not in the users file: a Custos token as the password. It
            // travels in clear inside TLS, so TLS is required.
            if !tls {
                let text = "token logins need TLS (sslmode=require); SCRAM is for users of the users file";
                return Err(login_failed(ctx, client, "28000", text).await);
            }
            let mut out = Vec::new();
            wire::auth_request(&mut out, 3, &[]);
            client.write_all(&out).await.map_err(|_| None)?;
            let (tag, body) = read_frame(&mut client, &mut buf, wire::MAX_STARTUP_BYTES).await.map_err(|_| None)?;
            let password = match (tag, wire::parse_query(&body)) {
                (b'p', Ok(p)) => p.to_string(),
                _ => return Err(login_failed(ctx, client, "08P01", "expected a PasswordMessage").await),
            };
            // The check may ask a server over HTTP: off the async workers.
            let (check, user) = (check.clone(), ctx.user.clone());
            let checked = tokio::task::spawn_blocking(move || check(&user, &password))
                .await
                .unwrap_or_else(|e| Err(format!("token check failed: {e}")));
            match checked {
                Ok(roles) => ctx.roles = roles,
                Err(why) => {
                    tracing::info!(user = %ctx.user, %why, "token login refused");
                    let text = format!("password authentication failed for user \"{}\"", ctx.user);
                    return Err(login_failed(ctx, client, "28P01", &text).await);
                }
            }
            (None, "Custos token over TLS".to_string())
        }
        _ => {
            let f = match scram_login(ctx, &mut client, &mut buf, known.as_ref()).await {
                Ok(f) => f,
                Err((code, text)) => return Err(login_failed(ctx, client, code, &text).await),
            };
            ctx.roles = known.map(|k| k.1).unwrap_or_default();
            (Some(f), format!("SCRAM-SHA-256{}", if tls { " over TLS" } else { "" }))
        }
    };
    let mut ok = ctx.login_event("success");
    let method = if ctx.cert.is_some() { format!("{method} with a client certificate") } else { method };
    ok.set("status_detail", method.into());
    if let Err(e) = ctx.record(vec![ok]).await {
        return Err(Some((client, fatal("57P03", &format!("custos: {e}; connection refused (fail-closed)")))));
    }
    let (upstream, status_bytes, (pid, secret)) = match timeout_upstream(ctx, &params).await {
        Ok(x) => x,
        Err(e) => {
            let text = format!("custos: cannot reach the upstream database: {e}");
            let mut ev = ctx.event("db.connect", "failure");
            ev.set("status_detail", text.clone().into());
            let _ = ctx.record(vec![ev]).await;
            return Err(Some((client, fatal("08006", &text))));
        }
    };
    // Our own cancel key, mapped to the upstream's.
    let our_pid = (u32::from_str_radix(&random_hex(4), 16).expect("hex") >> 1) as i32;
    let our_secret = random_hex(4).into_bytes()[..4].to_vec();
    gw.cancels.lock().expect("cancel lock").insert(
        (our_pid, our_secret.clone()),
        CancelTarget { pid, secret, session: ctx.sid.clone(), user: ctx.user.clone() },
    );
    let mut out = Vec::new();
    if let Some(f) = server_final {
        wire::auth_request(&mut out, 12, f.as_bytes());
    }
    wire::auth_request(&mut out, 0, &[]);
    out.extend_from_slice(&status_bytes);
    wire::backend_key(&mut out, our_pid, &our_secret);
    wire::ready_for_query(&mut out, b'I');
    client.write_all(&out).await.map_err(|_| None)?;
    Ok((client, upstream, buf))
}

/// SCRAM-SHA-256 against the users file. Returns the server-final
/// message, or the SQLSTATE and text of the failure.
async fn scram_login(
    ctx: &Ctx,
    client: &mut Stream,
    buf: &mut Vec<u8>,
    known: Option<&(crate::scram::Verifier, Vec<String>)>,
) -> Result<String, (&'static str, String)> {
    let gone = |_| ("08006", "the client went away during the login".to_string());
    let mut out = Vec::new();
    wire::auth_request(&mut out, 10, b"SCRAM-SHA-256\0\0");
    client.write_all(&out).await.map_err(|_| gone(()))?;
    let (tag, body) = read_frame(client, buf, wire::MAX_STARTUP_BYTES).await.map_err(|_| gone(()))?;
    let (mech, first) = match (tag, wire::parse_sasl_initial(&body)) {
        (b'p', Ok(x)) => x,
        _ => return Err(("08P01", "expected a SASLInitialResponse".into())),
    };
    if mech != "SCRAM-SHA-256" {
        return Err(("28000", format!("unsupported SASL mechanism {mech:?}")));
    }
    let (exchange, server_first) =
        ServerExchange::start(known.map(|k| &k.0), first).map_err(|e| ("08P01", format!("SCRAM: {e:?}")))?;
    out.clear();
    wire::auth_request(&mut out, 11, server_first.as_bytes());
    client.write_all(&out).await.map_err(|_| gone(()))?;
    let (tag, body) = read_frame(client, buf, wire::MAX_STARTUP_BYTES).await.map_err(|_| gone(()))?;
    if tag != b'p' {
        return Err(("08P01", "expected a SASLResponse".into()));
    }
    exchange.finish(&body).map_err(|e| match e {
        ScramError::Rejected => ("28P01", format!("password authentication failed for user \"{}\"", ctx.user)),
        ScramError::Malformed(m) => ("08P01", format!("SCRAM: {m}")),
    })
}

/// Records a failed login and returns the FATAL error for the client.
async fn login_failed(ctx: &Ctx, client: Stream, code: &str, text: &str) -> HandshakeEnd {
    let mut e = ctx.login_event("failure");
    e.set("status_code", code.to_string().into());
    e.set("status_detail", text.to_string().into());
    let _ = ctx.record(vec![e]).await;
    Some((client, fatal(code, text)))
}

/// The upstream's application_name: the client's, cut to fit, and the
/// session ID, so that the database's own logs (pgAudit) name the session.
fn tagged_application_name(app: &str, sid: &str) -> String {
    let suffix = format!(" [custos {sid}]");
    let mut keep = MAX_APPLICATION_NAME_BYTES.saturating_sub(suffix.len()).min(app.len());
    while !app.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{suffix}", &app[..keep])
}

async fn timeout_upstream(
    ctx: &Ctx,
    client_params: &[(String, String)],
) -> Result<(Stream, Vec<u8>, (i32, Vec<u8>)), String> {
    tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, connect_upstream(ctx, client_params))
        .await
        .map_err(|_| format!("no answer within {UPSTREAM_CONNECT_TIMEOUT:?}"))?
}

/// Opens a TCP (and, per the sslmode, TLS) connection to the upstream, or
/// a connection to its Unix socket.
async fn open_upstream(gw: &Gateway) -> Result<Stream, String> {
    let up = &gw.config.upstream;
    if let Some(path) = up.unix_socket() {
        if matches!(up.tls.mode, SslMode::Require | SslMode::VerifyFull) {
            return Err(format!("sslmode {:?} asks for TLS, which a Unix socket does not carry", up.tls.mode));
        }
        let unix = tokio::net::UnixStream::connect(&path)
            .await
            .map_err(|e| format!("connecting to the Unix socket {}: {e}", path.display()))?;
        return Ok(Box::new(unix));
    }
    let tcp = tokio::net::TcpStream::connect((up.host.as_str(), up.port))
        .await
        .map_err(|e| format!("connecting to {}:{}: {e}", up.host, up.port))?;
    let _ = tcp.set_nodelay(true);
    let mut io: Stream = Box::new(tcp);
    let Some(connector) = up.tls.connector.clone() else { return Ok(io) };
    let mut b = Vec::new();
    wire::ssl_request(&mut b);
    io.write_all(&b).await.map_err(|e| e.to_string())?;
    let mut answer = [0u8; 1];
    io.read_exact(&mut answer).await.map_err(|e| e.to_string())?;
    match answer[0] {
        b'S' => {
            let name = rustls::pki_types::ServerName::try_from(up.host.clone()).map_err(|e| e.to_string())?;
            Ok(Box::new(connector.connect(name, io).await.map_err(|e| format!("TLS to the upstream: {e}"))?))
        }
        b'N' if up.tls.mode == SslMode::Prefer => Ok(io),
        _ => Err("the upstream does not offer TLS".into()),
    }
}

/// Logs in upstream with the service credential. Returns the stream, the
/// ParameterStatus messages to pass on, and the upstream's cancel key.
async fn connect_upstream(
    ctx: &Ctx,
    client_params: &[(String, String)],
) -> Result<(Stream, Vec<u8>, (i32, Vec<u8>)), String> {
    let up = &ctx.gw.config.upstream;
    let mut io = open_upstream(&ctx.gw).await?;
    let database = up.database.clone().unwrap_or_else(|| ctx.database.clone());
    let app = tagged_application_name(&ctx.app, &ctx.sid);
    let mut params: Vec<(&str, &str)> =
        vec![("user", up.user.as_str()), ("database", database.as_str()), ("application_name", app.as_str())];
    for (k, v) in client_params {
        if FORWARDED_PARAMS.contains(&k.to_ascii_lowercase().as_str()) {
            params.push((k.as_str(), v.as_str()));
        }
    }
    let mut out = Vec::new();
    wire::startup_message(&mut out, &params);
    io.write_all(&out).await.map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut scram: Option<ClientExchange> = None;
    let mut status = Vec::new();
    let mut key = (0, Vec::new());
    let password = || up.password.clone().ok_or_else(|| "the upstream asks for a password and none is set".to_string());
    loop {
        let (tag, body) = read_frame(&mut io, &mut buf, wire::MAX_INSPECTED_MESSAGE_BYTES).await?;
        out.clear();
        match tag {
            b'R' => {
                let (code, data) = wire::parse_auth(&body).map_err(|e| e.0)?;
                match code {
                    0 => {}
                    3 => wire::password_message(&mut out, format!("{}\0", password()?).as_bytes()),
                    10 => {
                        if !data.split(|&b| b == 0).any(|m| m == b"SCRAM-SHA-256") {
                            return Err("the upstream offers no SCRAM-SHA-256".into());
                        }
                        let (ex, first) = ClientExchange::start(&password()?);
                        scram = Some(ex);
                        wire::sasl_initial(&mut out, "SCRAM-SHA-256", first.as_bytes());
                    }
                    11 => {
                        let ex = scram.as_mut().ok_or("SASL continue before SASL start")?;
                        let fin = ex.respond(data).map_err(|e| format!("SCRAM with the upstream: {e:?}"))?;
                        wire::password_message(&mut out, fin.as_bytes());
                    }
                    12 => {
                        let ex = scram.as_ref().ok_or("SASL final before SASL start")?;
                        ex.verify(data).map_err(|_| "the upstream failed to prove it knows the password")?;
                    }
                    5 => return Err("the upstream asks for md5; set password_encryption to scram-sha-256".into()),
                    c => return Err(format!("the upstream asks for authentication method {c}, which is unsupported")),
                }
                if !out.is_empty() {
                    io.write_all(&out).await.map_err(|e| e.to_string())?;
                }
            }
            b'S' | b'N' => wire::message(&mut status, tag, |b| b.extend_from_slice(&body)),
            b'K' => {
                let mut r = wire::Reader::new(&body);
                key = (r.i32().map_err(|e| e.0)?, r.rest().to_vec());
            }
            b'Z' => return Ok((io, status, key)),
            b'E' => {
                let fields = wire::parse_fields(&body).map_err(|e| e.0)?;
                return Err(format!("{} ({})", wire::field(&fields, b'M'), wire::field(&fields, b'C')));
            }
            b'v' => {} // NegotiateProtocolVersion: we asked for 3.0 only.
            t => return Err(format!("unexpected message '{}' from the upstream", char::from(t).escape_default())),
        }
    }
}

/// Forwards a CancelRequest to the upstream, if the key is one of ours.
async fn cancel(gw: &Arc<Gateway>, pid: i32, secret: &[u8]) {
    let target = gw.cancels.lock().expect("cancel lock").get(&(pid, secret.to_vec())).cloned();
    let Some(t) = target else { return };
    // Cancel requests to PostgreSQL go over a fresh connection.
    if let Ok(mut io) = open_upstream(gw).await {
        let mut b = Vec::new();
        wire::cancel_request(&mut b, t.pid, &t.secret);
        let _ = io.write_all(&b).await;
        let _ = io.shutdown().await;
    }
    let e = Node::obj([
        ("time", now().into()),
        ("activity", "db.cancel".into()),
        ("status", "success".into()),
        (
            "actor",
            Node::obj([
                ("user", Node::obj([("name", t.user.into())])),
                ("session", Node::obj([("uid", t.session.clone().into())])),
            ]),
        ),
        (
            "metadata",
            Node::obj([(
                "gateway",
                Node::obj([("name", gw.config.name.clone().into()), ("session", t.session.into())]),
            )]),
        ),
    ]);
    let _ = gw.sink.submit(vec![e], false).await;
}

/// Why a statement is not run: the error the client gets instead.
#[derive(Debug, Clone)]
struct Refusal {
    code: &'static str,
    message: String,
}

/// A statement on its way: from the client's message to its outcome.
struct Exec {
    seq: u64,
    protocol: &'static str,
    sql: Sql,
    analysis: Arc<Analysis>,
    params: Option<Event>,
    statement_name: String,
    portal: String,
    started: Instant,
    /// When its outcome arrived.
    ended: Option<Instant>,
    tags: Vec<String>,
    error: Option<(String, String)>,
    /// Denied or refused: the client gets our error, no outcome event.
    refused: bool,
}

enum Pending {
    Exec(Box<Exec>),
    Sync,
}

/// What both directions of a session share.
struct Track {
    /// A per-session secret in refusal markers, so that a client cannot
    /// forge one.
    nonce: String,
    inflight: VecDeque<Pending>,
    /// Refusals whose marked statement is on its way, with the number of
    /// Syncs sent before it: one that PostgreSQL skipped (after an earlier
    /// error) is forgotten at the next ReadyForQuery.
    refusals: HashMap<u64, (Refusal, u64)>,
    next_refusal: u64,
    /// Statements described and awaiting their ParameterDescription, with
    /// the number of Syncs sent before each.
    describes: VecDeque<(String, u64)>,
    /// Syncs sent, and ReadyForQuery seen.
    syncs_sent: u64,
    ready_seen: u64,
    /// Parameter types the server inferred, by statement name, so that
    /// binary parameters can be shown as values.
    param_types: HashMap<String, Vec<u32>>,
}

/// A prepared statement as the client defined it.
struct Prepared {
    sql: Sql,
    /// Parameter types the client declared (0 for "let the server infer").
    param_types: Vec<u32>,
    analysis: Arc<Analysis>,
    denied: Option<Refusal>,
}

/// A bound portal.
struct Portal {
    statement_name: String,
    prepared: Arc<Prepared>,
    params: Option<Event>,
    /// What its parameters count against the session's remembered bytes.
    bytes: usize,
}

/// A statement's text as a session keeps it: the first
/// [`MAX_EVENT_SQL_BYTES`], and the whole text's length and SHA-256 when
/// it is longer. A session never holds more of a text than its events
/// show.
#[derive(Clone)]
struct Sql {
    kept: Arc<str>,
    bytes: usize,
    sha256: Option<Arc<str>>,
}

impl Sql {
    fn new(full: &str) -> Sql {
        if full.len() <= MAX_EVENT_SQL_BYTES {
            return Sql { kept: full.into(), bytes: full.len(), sha256: None };
        }
        let hash = ring::digest::digest(&ring::digest::SHA256, full.as_bytes());
        Sql {
            kept: full[..full.floor_char_boundary(MAX_EVENT_SQL_BYTES)].into(),
            bytes: full.len(),
            sha256: Some(base64::engine::general_purpose::STANDARD.encode(hash).into()),
        }
    }
}

/// The client-to-upstream direction's own state.
struct ClientSide {
    prepared: HashMap<String, Arc<Prepared>>,
    portals: HashMap<String, Portal>,
    /// Bytes of text and parameters held by `prepared` and `portals`.
    remembered_bytes: usize,
    seq: u64,
    passthrough_bytes: usize,
}

/// The refusal of a Parse or Bind past what a session may remember
/// (`what`: statements or portals).
fn at_session_limit(what: &str) -> Refusal {
    Refusal {
        code: "54000",
        message: format!(
            "custos: this session's prepared statements and portals are at the gateway's limit \
             ({MAX_PREPARED_PER_SESSION} {what}, {} MiB); close some first",
            MAX_REMEMBERED_BYTES_PER_SESSION >> 20
        ),
    }
}

/// What a prepared statement counts against the session's remembered bytes.
fn prepared_bytes(p: &Prepared) -> usize {
    p.sql.kept.len() + 4 * p.param_types.len() + 64
}

/// What scanning one chunk of client bytes produced.
#[derive(Default)]
struct Scanned {
    out: Vec<u8>,
    pending: Vec<Pending>,
    /// Statement events to make durable before forwarding (fail-closed),
    /// with denial events.
    events: Vec<Event>,
    /// Where each statement's message sits in `out`, to replace it if the
    /// log turns out to be unavailable (fail-closed) or the spool has no
    /// room (async): (start, end, index in pending, is a simple Query).
    audited: Vec<(usize, usize, usize, bool)>,
    terminate: bool,
    /// The length of the inspected message at the end of the bytes
    /// scanned, when not all of it has arrived.
    need: usize,
}

/// A session's room for one long message it is reading.
struct BigRoom {
    _permit: tokio::sync::OwnedSemaphorePermit,
    bytes: usize,
    granted: Instant,
}

/// Reads more of a direction's bytes into `buf`; `Ok(0)` at the end.
/// `need` is the length of the message partly read (0 when none is):
/// room for a long one is taken first, and given back (the buffer shrunk)
/// once it has been read; it must arrive within [`BIG_MESSAGE_READ_TIME`]
/// of getting room. Errs with the SQLSTATE and text to end the session
/// with.
async fn read_more(
    gw: &Gateway,
    r: &mut tokio::io::ReadHalf<Stream>,
    buf: &mut Vec<u8>,
    held: &mut Option<BigRoom>,
    need: usize,
) -> Result<usize, (&'static str, String)> {
    if held.as_ref().is_some_and(|h| h.bytes != need) {
        *held = None;
        buf.shrink_to(READ_BUFFER_BYTES);
    }
    if need > READ_BUFFER_BYTES && held.is_none() {
        let take = gw.big_messages.clone().acquire_many_owned(2 * need as u32);
        let permit = tokio::time::timeout(BIG_MESSAGE_ROOM_WAIT, take)
            .await
            .map_err(|_| {
                let text = format!(
                    "no room to read a message of {need} bytes: sessions read at most {} MiB of long messages at once",
                    MAX_BIG_MESSAGE_BYTES >> 20
                );
                ("53200", text)
            })?
            .expect("the room is never closed");
        // Exactly the message: no doubling past it.
        buf.reserve_exact(need.saturating_sub(buf.len()));
        *held = Some(BigRoom { _permit: permit, bytes: need, granted: Instant::now() });
    }
    let Some(h) = held else {
        buf.reserve(READ_BUFFER_BYTES);
        return Ok(r.read_buf(buf).await.unwrap_or(0));
    };
    let left = BIG_MESSAGE_READ_TIME.saturating_sub(h.granted.elapsed());
    match tokio::time::timeout(left, r.read_buf(buf)).await {
        Ok(n) => Ok(n.unwrap_or(0)),
        Err(_) => Err((
            "08P01",
            format!("a message of {} bytes did not arrive within {} s", h.bytes, BIG_MESSAGE_READ_TIME.as_secs()),
        )),
    }
}

/// Ends the client's side with a FATAL error.
async fn tell_client(cw: &ClientWriter, code: &str, why: &str) {
    let mut c = cw.lock().await;
    let _ = c.write_all(&fatal(code, &format!("custos: {why}"))).await;
    let _ = c.shutdown().await;
}

async fn proxy(ctx: &Ctx, client: Stream, upstream: Stream, buf: Vec<u8>) -> End {
    let (cr, cw) = tokio::io::split(client);
    let cw = tokio::sync::Mutex::new(cw);
    let (ur, uw) = tokio::io::split(upstream);
    let track = Arc::new(Mutex::new(Track {
        nonce: ctx.nonce.clone(),
        inflight: VecDeque::new(),
        refusals: HashMap::new(),
        next_refusal: 0,
        describes: VecDeque::new(),
        syncs_sent: 0,
        ready_seen: 0,
        param_types: HashMap::new(),
    }));
    let down = downstream(ctx, ur, &cw, &track);
    let up = upstream_direction(ctx, cr, uw, &cw, &track, buf);
    tokio::pin!(down);
    tokio::pin!(up);
    tokio::select! {
        end = &mut up => match end {
            // After Terminate the upstream closes; let the last answers
            // through first.
            End::Terminate => {
                let _ = tokio::time::timeout(Duration::from_secs(5), down).await;
                End::Terminate
            }
            other => other,
        },
        end = &mut down => end,
    }
}

/// A bound parameter as text: text-format values as sent, binary ones
/// decoded by their type when it is a common one, else as hex.
fn render_param(value: Option<&[u8]>, binary: bool, oid: u32) -> Event {
    let Some(v) = value else { return Node::Null };
    if binary && let Some(s) = decode_binary(v, oid) {
        return s.into();
    }
    let cut = &v[..v.len().min(MAX_EVENT_PARAM_BYTES)];
    let mut s = if binary && !is_text_oid(oid) {
        format!("\\x{}", cut.iter().map(|b| format!("{b:02x}")).collect::<String>())
    } else {
        String::from_utf8_lossy(cut).into_owned()
    };
    if v.len() > cut.len() {
        s.push_str(&format!("…({} bytes)", v.len()));
    }
    s.into()
}

/// text, varchar, bpchar, name, json: their binary form is their text.
fn is_text_oid(oid: u32) -> bool {
    matches!(oid, 25 | 1043 | 1042 | 19 | 114)
}

/// The binary send format of fixed-size common types.
fn decode_binary(v: &[u8], oid: u32) -> Option<String> {
    Some(match (oid, v.len()) {
        (16, 1) => (if v[0] != 0 { "t" } else { "f" }).to_string(),
        (21, 2) => i16::from_be_bytes(v.try_into().ok()?).to_string(),
        (23, 4) => i32::from_be_bytes(v.try_into().ok()?).to_string(),
        (26, 4) => u32::from_be_bytes(v.try_into().ok()?).to_string(),
        (20, 8) => i64::from_be_bytes(v.try_into().ok()?).to_string(),
        (700, 4) => f32::from_be_bytes(v.try_into().ok()?).to_string(),
        (701, 8) => f64::from_be_bytes(v.try_into().ok()?).to_string(),
        (2950, 16) => {
            let h: String = v.iter().map(|b| format!("{b:02x}")).collect();
            format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
        }
        _ => return None,
    })
}

impl ClientSide {
    fn new() -> ClientSide {
        ClientSide {
            prepared: HashMap::new(),
            portals: HashMap::new(),
            remembered_bytes: 0,
            seq: 0,
            passthrough_bytes: 0,
        }
    }

    /// Scans complete messages at the front of `buf`; returns how many
    /// bytes were consumed.
    fn scan(&mut self, ctx: &Ctx, track: &Mutex<Track>, buf: &[u8], s: &mut Scanned) -> Result<usize, End> {
        let mut pos = 0;
        while pos < buf.len() && !s.terminate {
            if self.passthrough_bytes > 0 {
                let n = self.passthrough_bytes.min(buf.len() - pos);
                s.out.extend_from_slice(&buf[pos..pos + n]);
                self.passthrough_bytes -= n;
                pos += n;
                continue;
            }
            let Some((tag, len)) = wire::header(&buf[pos..], wire::MAX_STREAMED_MESSAGE_BYTES)
                .map_err(|e| End::Failed(format!("invalid message from the client: {e}")))?
            else {
                break;
            };
            if tag == b'd' {
                // CopyData streams through whatever its size.
                self.passthrough_bytes = len;
                continue;
            }
            if len > wire::MAX_INSPECTED_MESSAGE_BYTES {
                return Err(End::Failed(format!(
                    "message '{}' of {len} bytes exceeds the gateway's limit of {} bytes",
                    char::from(tag).escape_default(),
                    wire::MAX_INSPECTED_MESSAGE_BYTES
                )));
            }
            if buf.len() - pos < len {
                s.need = len;
                break;
            }
            let frame = &buf[pos..pos + len];
            self.message(ctx, track, tag, frame, s)
                .map_err(|e| End::Failed(format!("invalid '{}' message from the client: {e}", char::from(tag))))?;
            pos += len;
        }
        Ok(pos)
    }

    /// Handles one whole client message.
    fn message(
        &mut self,
        ctx: &Ctx,
        track: &Mutex<Track>,
        tag: u8,
        frame: &[u8],
        s: &mut Scanned,
    ) -> Result<(), String> {
        let body = &frame[5..];
        match tag {
            b'Q' => {
                let full = wire::parse_query(body).map_err(|e| e.0)?;
                let analysis = ctx.gw.analyser.analyse(full);
                let exec = self.exec("simple", Sql::new(full), analysis, None, "", "");
                self.statement(ctx, track, exec, frame, full, s);
            }
            b'P' => {
                let mut p = wire::parse_parse(body).map_err(|e| e.0)?;
                // Only the types of the parameters an event shows matter.
                p.param_types.truncate(MAX_EVENT_PARAMS);
                let analysis = ctx.gw.analyser.analyse(p.sql);
                let sql = Sql::new(p.sql);
                let prepared = Prepared { sql, param_types: p.param_types, analysis, denied: None };
                let old = self.prepared.get(p.name).map_or(0, |o| prepared_bytes(o));
                let too_many = self.prepared.len() >= MAX_PREPARED_PER_SESSION && old == 0;
                let too_big =
                    self.remembered_bytes - old + prepared_bytes(&prepared) > MAX_REMEMBERED_BYTES_PER_SESSION;
                let denied = if too_many || too_big {
                    Some(at_session_limit("statements"))
                } else {
                    self.denial(ctx, &prepared.analysis, p.sql)
                };
                if let Some(r) = &denied {
                    self.seq += 1;
                    let exec = self.exec("extended", prepared.sql.clone(), prepared.analysis.clone(), None, p.name, "");
                    s.events.push(denied_event(ctx, &exec, r));
                    inject(track, r.clone(), false, &mut s.out);
                } else {
                    s.out.extend_from_slice(frame);
                }
                if too_many || too_big {
                    // Never sent upstream, so not remembered either.
                    return Ok(());
                }
                self.remembered_bytes += prepared_bytes(&prepared);
                let prepared = Prepared { denied, ..prepared };
                if let Some(o) = self.prepared.insert(p.name.to_string(), Arc::new(prepared)) {
                    self.remembered_bytes -= prepared_bytes(&o);
                }
            }
            b'B' => {
                let b = wire::parse_bind(body).map_err(|e| e.0)?;
                let Some(prepared) = self.prepared.get(b.statement).cloned() else {
                    // Unknown to us, so unknown upstream: it answers 26000.
                    s.out.extend_from_slice(frame);
                    return Ok(());
                };
                if let Some(r) = &prepared.denied {
                    inject(track, r.clone(), false, &mut s.out);
                    return Ok(());
                }
                let params = if ctx.gw.config.redact_params {
                    Node::Arr(vec!["<redacted>".into(); b.params.len().min(MAX_EVENT_PARAMS)])
                } else {
                    let described = track.lock().expect("track lock").param_types.get(b.statement).cloned();
                    let types = described.as_deref().unwrap_or(&prepared.param_types);
                    let oid = |i: usize| types.get(i).copied().unwrap_or(0);
                    Node::Arr(
                        b.params
                            .iter()
                            .take(MAX_EVENT_PARAMS)
                            .enumerate()
                            .map(|(i, (v, bin))| render_param(*v, *bin, oid(i)))
                            .collect(),
                    )
                };
                let bytes = 64
                    + b.params
                        .iter()
                        .take(MAX_EVENT_PARAMS)
                        .map(|(v, _)| 16 + v.map_or(0, <[u8]>::len).min(4 * MAX_EVENT_PARAM_BYTES))
                        .sum::<usize>();
                let old = self.portals.get(b.portal).map_or(0, |p| p.bytes);
                let too_many = self.portals.len() >= MAX_PREPARED_PER_SESSION && old == 0;
                if too_many || self.remembered_bytes - old + bytes > MAX_REMEMBERED_BYTES_PER_SESSION {
                    inject(track, at_session_limit("portals"), false, &mut s.out);
                    return Ok(());
                }
                self.remembered_bytes += bytes;
                let portal = Portal { statement_name: b.statement.to_string(), prepared, params: Some(params), bytes };
                if let Some(o) = self.portals.insert(b.portal.to_string(), portal) {
                    self.remembered_bytes -= o.bytes;
                }
                s.out.extend_from_slice(frame);
            }
            b'E' => {
                let (portal, _max_rows) = wire::parse_execute(body).map_err(|e| e.0)?;
                let (sql, analysis, params, name) = match self.portals.get(portal) {
                    Some(p) => (
                        p.prepared.sql.clone(),
                        p.prepared.analysis.clone(),
                        p.params.clone(),
                        p.statement_name.clone(),
                    ),
                    None => (Sql::new(""), Arc::new(Analysis::default()), None, String::new()),
                };
                let exec = self.exec("extended", sql, analysis, params, &name, portal);
                self.statement(ctx, track, exec, frame, "", s);
            }
            b'F' => {
                let text = "(function call)";
                let exec = self.exec("function", Sql::new(text), Arc::new(Analysis::default()), None, "", "");
                self.statement(ctx, track, exec, frame, text, s);
            }
            b'S' => {
                s.pending.push(Pending::Sync);
                track.lock().expect("track lock").syncs_sent += 1;
                s.out.extend_from_slice(frame);
            }
            b'D' => {
                let (kind, name) = wire::parse_target(body).map_err(|e| e.0)?;
                if kind == b'S' {
                    let mut t = track.lock().expect("track lock");
                    let syncs = t.syncs_sent;
                    if t.describes.len() < MAX_PREPARED_PER_SESSION {
                        t.describes.push_back((name.to_string(), syncs));
                    }
                }
                s.out.extend_from_slice(frame);
            }
            b'C' => {
                let (kind, name) = wire::parse_target(body).map_err(|e| e.0)?;
                if kind == b'S' {
                    if let Some(o) = self.prepared.remove(name) {
                        self.remembered_bytes -= prepared_bytes(&o);
                    }
                } else if let Some(o) = self.portals.remove(name) {
                    self.remembered_bytes -= o.bytes;
                }
                s.out.extend_from_slice(frame);
            }
            b'X' => {
                s.out.extend_from_slice(frame);
                s.terminate = true;
            }
            b'H' | b'c' | b'f' => s.out.extend_from_slice(frame),
            t => return Err(format!("unknown message type '{}'", char::from(t).escape_default())),
        }
        Ok(())
    }

    fn exec(
        &mut self,
        protocol: &'static str,
        sql: Sql,
        analysis: Arc<Analysis>,
        params: Option<Event>,
        name: &str,
        portal: &str,
    ) -> Exec {
        Exec {
            seq: self.seq,
            protocol,
            sql,
            analysis,
            params,
            statement_name: name.into(),
            portal: portal.into(),
            started: Instant::now(),
            ended: None,
            tags: Vec::new(),
            error: None,
            refused: false,
        }
    }

    fn denial(&self, ctx: &Ctx, a: &Analysis, sql: &str) -> Option<Refusal> {
        // Held only for the check, which does not wait on anything.
        let rules = ctx.gw.rules.read().expect("rules lock");
        if rules.is_empty() {
            return None;
        }
        crate::rules::check(&rules, &ctx.user, &ctx.roles, a, sql).map(|(rule, why)| Refusal {
            code: "42501",
            message: format!("custos: statement denied by rule \"{rule}\" ({why})"),
        })
    }

    /// A statement (Query, Execute, FunctionCall): denied, or recorded and
    /// forwarded. `simple_text`: the whole text of a Query or FunctionCall,
    /// which deny rules see; `""` for an Execute (its Parse was checked).
    fn statement(
        &mut self,
        ctx: &Ctx,
        track: &Mutex<Track>,
        mut exec: Exec,
        frame: &[u8],
        simple_text: &str,
        s: &mut Scanned,
    ) {
        let simple = exec.protocol != "extended";
        self.seq += 1;
        exec.seq = self.seq;
        if simple {
            // A Query or FunctionCall ends with a ReadyForQuery, as a Sync does.
            track.lock().expect("track lock").syncs_sent += 1;
            if let Some(r) = self.denial(ctx, &exec.analysis, simple_text) {
                s.events.push(denied_event(ctx, &exec, &r));
                exec.refused = true;
                inject(track, r, true, &mut s.out);
                s.pending.push(Pending::Exec(Box::new(exec)));
                return;
            }
        }
        let start = s.out.len();
        s.out.extend_from_slice(frame);
        if ctx.gw.config.mode == AuditMode::FailClosed {
            s.events.push(statement_event(ctx, &exec, None));
        }
        s.audited.push((start, s.out.len(), s.pending.len(), simple));
        s.pending.push(Pending::Exec(Box::new(exec)));
    }
}

/// Appends a marked invalid statement that PostgreSQL will fail, and
/// remembers the error to show in its place.
fn inject(track: &Mutex<Track>, r: Refusal, simple: bool, out: &mut Vec<u8>) {
    let mut t = track.lock().expect("track lock");
    t.next_refusal += 1;
    let n = t.next_refusal;
    let syncs = t.syncs_sent;
    t.refusals.insert(n, (r, syncs));
    let marker = format!("custos_refused_{}_{n}", t.nonce);
    drop(t);
    if simple {
        wire::query(out, &marker);
    } else {
        wire::parse_message(out, &marker);
    }
}

/// A statement as an event: the text, classes, tables and parameters,
/// and the outcome if known.
fn statement_event(ctx: &Ctx, e: &Exec, outcome: Option<(&'static str, Option<String>)>) -> Event {
    let status = outcome.as_ref().map_or("unknown", |o| o.0);
    let mut ev = ctx.event("db.query", status);
    ev.set("class_uid", 6005.into());
    ev.set("uid", format!("{}:{}", ctx.sid, e.seq).into());
    ev.set("message", e.sql.kept.to_string().into());
    let tables = &e.analysis.tables;
    if !tables.is_empty() {
        let t: Vec<Event> = tables
            .iter()
            .take(MAX_EVENT_LIST_ITEMS)
            .map(|t| Node::obj([("type", "table".into()), ("name", cut(t, MAX_EVENT_NAME_BYTES).into())]))
            .collect();
        ev.set("targets", t.into());
    }
    let g = Ctx::gateway_meta(&mut ev);
    g.set("seq", e.seq.into());
    g.set("protocol", e.protocol.into());
    g.set("classes", Node::Arr(e.analysis.classes().iter().map(|c| c.name().into()).collect()));
    let commands = &e.analysis.statements;
    g.set(
        "commands",
        Node::Arr(commands.iter().take(MAX_EVENT_LIST_ITEMS).map(|c| cut(&c.0, MAX_EVENT_NAME_BYTES).into()).collect()),
    );
    if commands.len() > MAX_EVENT_LIST_ITEMS {
        g.set("commands_count", commands.len().into());
    }
    if tables.len() > MAX_EVENT_LIST_ITEMS {
        g.set("tables_count", tables.len().into());
    }
    if !e.analysis.parsed {
        // Its classes are what its words allow, not what a parser read.
        g.set("parsed", false.into());
    }
    if e.protocol == "extended" {
        g.set("statement_name", e.statement_name.clone().into());
        g.set("portal", e.portal.clone().into());
    }
    if let Some(p) = &e.params {
        g.set("params", p.clone());
    }
    if let Some(hash) = &e.sql.sha256 {
        g.set("sql_bytes", e.sql.bytes.into());
        g.set("sql_sha256", hash.to_string().into());
    }
    if let Some((_, detail)) = outcome {
        add_outcome(&mut ev, e, detail);
    }
    fit(&mut ev, e);
    ev
}

/// At most `max` bytes of `s`, cut at a character boundary, marked with
/// the whole length when cut.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    format!("{}…({} bytes)", &s[..s.floor_char_boundary(max)], s.len())
}

/// Makes a statement's event fit [`MAX_GATEWAY_EVENT_BYTES`] once sealed:
/// JSON escapes can make text up to six times longer (`\u0001`), so text
/// within the byte limits above can still be too long. The statement text
/// is cut to what fits (its whole length and SHA-256 recorded), then, if
/// need be, the parameters go. The limits on lists and names bound the
/// rest.
fn fit(ev: &mut Event, e: &Exec) {
    fn size(n: &Event) -> usize {
        let mut out = String::new();
        let _ = custos_event::canonical::write_node(&mut out, n);
        out.len()
    }
    // Room for what the server adds (time, log, received_at, submitter),
    // and for `sql_bytes` and `sql_sha256` if the text is cut here.
    const BUDGET: usize = MAX_GATEWAY_EVENT_BYTES - 1024;
    // Six bytes per byte held bounds any escaping: most events are far
    // under the limit, and are not measured.
    if 6 * crate::sink::approx_bytes(ev) <= BUDGET {
        return;
    }
    let over = size(ev).saturating_sub(BUDGET);
    if over == 0 {
        return;
    }
    let message = ev.get("message").and_then(Node::as_str).unwrap_or("");
    let within = custos_event::canonical::escaped_len(message).saturating_sub(over);
    let kept = custos_event::canonical::escaped_prefix(message, within).to_string();
    ev.set("message", kept.into());
    if e.sql.sha256.is_none() {
        // Not cut before, so what the session kept is the whole text.
        let hash = ring::digest::digest(&ring::digest::SHA256, e.sql.kept.as_bytes());
        let g = Ctx::gateway_meta(ev);
        g.set("sql_bytes", e.sql.bytes.into());
        g.set("sql_sha256", base64::engine::general_purpose::STANDARD.encode(hash).into());
    }
    if size(ev) > BUDGET {
        Ctx::gateway_meta(ev).set("params", "<cut: too large for the event>".into());
    }
}

/// The outcome fields: tags and rows, or the error; the duration.
fn add_outcome(ev: &mut Event, e: &Exec, detail: Option<String>) {
    if let Some((code, message)) = &e.error {
        ev.set("status_code", code.clone().into());
        ev.set("status_detail", cut(message, MAX_EVENT_DETAIL_BYTES).into());
    } else if let Some(d) = detail {
        ev.set("status_detail", cut(&d, MAX_EVENT_DETAIL_BYTES).into());
    }
    let took = e.ended.unwrap_or_else(Instant::now).saturating_duration_since(e.started);
    ev.set("duration_ms", (took.as_secs_f64() * 1000.0).into());
    let rows: Option<u64> =
        e.tags.iter().filter_map(|t| t.rsplit(' ').next()?.parse::<u64>().ok()).reduce(|a, b| a + b);
    let g = Ctx::gateway_meta(ev);
    let tags = e.tags.iter().take(MAX_EVENT_LIST_ITEMS).map(|t| cut(t, MAX_EVENT_NAME_BYTES).into());
    g.set("tags", Node::Arr(tags.collect()));
    if e.tags.len() > MAX_EVENT_LIST_ITEMS {
        g.set("tags_count", e.tags.len().into());
    }
    if let Some(r) = rows {
        g.set("rows", r.into());
    }
}

fn denied_event(ctx: &Ctx, e: &Exec, r: &Refusal) -> Event {
    let mut ev = statement_event(ctx, e, None);
    ev.set("status", "failure".into());
    ev.set("status_code", r.code.into());
    ev.set("status_detail", r.message.clone().into());
    Ctx::gateway_meta(&mut ev).set("denied", true.into());
    ev
}

/// The event of a finished statement: in async mode the whole statement
/// with its outcome; in fail-closed mode (the statement is already on
/// record) the outcome alone.
fn outcome_event(ctx: &Ctx, e: &Exec, skipped: bool) -> Event {
    let status = if e.error.is_some() || skipped { "failure" } else { "success" };
    let detail = skipped.then(|| "not executed: an earlier message in the pipeline failed".to_string());
    if ctx.gw.config.mode == AuditMode::Async {
        return statement_event(ctx, e, Some((status, detail)));
    }
    let mut ev = ctx.event("db.query.result", status);
    ev.set("class_uid", 6005.into());
    ev.set("uid", format!("{}:{}:result", ctx.sid, e.seq).into());
    Ctx::gateway_meta(&mut ev).set("seq", e.seq.into());
    add_outcome(&mut ev, e, detail);
    ev
}

async fn upstream_direction(
    ctx: &Ctx,
    mut cr: tokio::io::ReadHalf<Stream>,
    mut uw: tokio::io::WriteHalf<Stream>,
    cw: &ClientWriter,
    track: &Mutex<Track>,
    mut buf: Vec<u8>,
) -> End {
    let mut side = ClientSide::new();
    let mut room = None;
    loop {
        let mut s = Scanned::default();
        let used = match side.scan(ctx, track, &buf, &mut s) {
            Ok(n) => n,
            Err(End::Failed(why)) => return protocol_violation(ctx, cw, &mut uw, why).await,
            Err(e) => return e,
        };
        buf.drain(..used);
        if !s.events.is_empty() {
            let durable = ctx.gw.config.mode == AuditMode::FailClosed;
            if let Err(e) = ctx.gw.sink.submit(std::mem::take(&mut s.events), durable).await
                && durable
                && !s.audited.is_empty()
            {
                tracing::warn!(session = %ctx.sid, error = %e, "statements refused: the audit log is unavailable");
                refuse_all(track, &mut s, &e);
            }
        }
        // Async: a statement runs before its event exists, so it runs only
        // if the spool has room for that event.
        if ctx.gw.config.mode == AuditMode::Async
            && !s.audited.is_empty()
            && let Err(e) = ctx.gw.sink.wait_for_room().await
        {
            tracing::warn!(session = %ctx.sid, error = %e, "statements refused: the audit spool is full");
            refuse_all(track, &mut s, &e);
        }
        if !s.pending.is_empty() {
            let mut t = track.lock().expect("track lock");
            if t.inflight.len() + s.pending.len() > MAX_INFLIGHT_PER_SESSION {
                return End::Failed(format!("more than {MAX_INFLIGHT_PER_SESSION} statements in flight"));
            }
            t.inflight.extend(s.pending.drain(..));
        }
        if !s.out.is_empty() && uw.write_all(&s.out).await.is_err() {
            return End::UpstreamGone;
        }
        if s.terminate {
            let _ = uw.shutdown().await;
            return End::Terminate;
        }
        match read_more(&ctx.gw, &mut cr, &mut buf, &mut room, s.need).await {
            Ok(0) => return End::ClientGone,
            Ok(_) => {}
            Err((code, why)) => return session_error(ctx, cw, &mut uw, code, why).await,
        }
    }
}

/// Replaces every audited statement of a chunk by a refusal, because its
/// event could not be made durable.
fn refuse_all(track: &Mutex<Track>, s: &mut Scanned, why: &str) {
    let r = Refusal {
        code: "55000",
        message: format!("custos: statement refused because it could not be recorded ({why})"),
    };
    let mut out = Vec::with_capacity(s.out.len());
    let mut last = 0;
    for &(start, end, index, simple) in &s.audited {
        out.extend_from_slice(&s.out[last..start]);
        inject(track, r.clone(), simple, &mut out);
        if let Some(Pending::Exec(e)) = s.pending.get_mut(index) {
            e.refused = true;
        }
        last = end;
    }
    out.extend_from_slice(&s.out[last..]);
    s.out = out;
}

/// Ends a session on a protocol violation: tells the client, records it.
async fn protocol_violation(ctx: &Ctx, cw: &ClientWriter, uw: &mut tokio::io::WriteHalf<Stream>, why: String) -> End {
    session_error(ctx, cw, uw, "08P01", why).await
}

/// Ends a session with a FATAL error `code`, recorded as a protocol error.
async fn session_error(
    ctx: &Ctx,
    cw: &ClientWriter,
    uw: &mut tokio::io::WriteHalf<Stream>,
    code: &'static str,
    why: String,
) -> End {
    tell_client(cw, code, &why).await;
    let mut e = ctx.event("db.protocol_error", "failure");
    e.set("status_code", code.into());
    e.set("status_detail", why.clone().into());
    let _ = ctx.record(vec![e]).await;
    let mut t = Vec::new();
    wire::message(&mut t, b'X', |_| {});
    let _ = uw.write_all(&t).await;
    let _ = uw.shutdown().await;
    End::Failed(why)
}

async fn downstream(ctx: &Ctx, mut ur: tokio::io::ReadHalf<Stream>, cw: &ClientWriter, track: &Mutex<Track>) -> End {
    let mut buf: Vec<u8> = Vec::with_capacity(READ_BUFFER_BYTES);
    let mut out: Vec<u8> = Vec::with_capacity(READ_BUFFER_BYTES);
    let mut room = None;
    let mut need = 0;
    let mut passthrough = 0usize;
    let mut done = Vec::new();
    loop {
        match read_more(&ctx.gw, &mut ur, &mut buf, &mut room, std::mem::take(&mut need)).await {
            Ok(0) => {
                let _ = cw.lock().await.shutdown().await;
                return End::UpstreamGone;
            }
            Ok(_) => {}
            Err((code, why)) => {
                tell_client(cw, code, &why).await;
                return End::Failed(why);
            }
        }
        out.clear();
        let mut pos = 0;
        while pos < buf.len() {
            if passthrough > 0 {
                let n = passthrough.min(buf.len() - pos);
                out.extend_from_slice(&buf[pos..pos + n]);
                passthrough -= n;
                pos += n;
                continue;
            }
            let (tag, len) = match wire::header(&buf[pos..], wire::MAX_STREAMED_MESSAGE_BYTES) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => {
                    let mut b = Vec::new();
                    wire::error_response(
                        &mut b,
                        "FATAL",
                        "08P01",
                        &format!("custos: invalid message from the upstream: {e}"),
                        None,
                    );
                    let _ = cw.lock().await.write_all(&b).await;
                    return End::Failed(format!("invalid message from the upstream: {e}"));
                }
            };
            let inspected = matches!(tag, b'C' | b'E' | b'Z' | b'I' | b's' | b't');
            if !inspected || len > wire::MAX_INSPECTED_MESSAGE_BYTES {
                passthrough = len;
                continue;
            }
            if buf.len() - pos < len {
                need = len;
                break;
            }
            let frame = &buf[pos..pos + len];
            on_upstream(track, tag, frame, &mut out, &mut done);
            pos += len;
        }
        buf.drain(..pos);
        if !out.is_empty() && cw.lock().await.write_all(&out).await.is_err() {
            return End::ClientGone;
        }
        // The statements' events are built once the client has its answer:
        // off the path of every round trip.
        if !done.is_empty() {
            let events = done.drain(..).map(|(e, skipped)| outcome_event(ctx, &e, skipped)).collect();
            let _ = ctx.gw.sink.submit(events, false).await;
        }
    }
}

/// Finished statements whose outcome event is still to be built, and
/// whether each was skipped.
type Done = Vec<(Box<Exec>, bool)>;

/// Handles one inspected upstream message: outcome bookkeeping, and the
/// rewrite of a refusal's error.
fn on_upstream(track: &Mutex<Track>, tag: u8, frame: &[u8], out: &mut Vec<u8>, done: &mut Done) {
    let body = &frame[5..];
    let mut t = track.lock().expect("track lock");
    match tag {
        b'C' | b'I' | b's' => {
            let label = match tag {
                b'C' => wire::parse_query(body).unwrap_or("").to_string(),
                b'I' => String::new(),
                _ => "suspended".to_string(),
            };
            out.extend_from_slice(frame);
            if let Some(Pending::Exec(e)) = t.inflight.front_mut() {
                e.tags.push(label);
                if e.protocol == "extended"
                    && let Some(Pending::Exec(e)) = t.inflight.pop_front()
                {
                    finish(e, false, done);
                }
            }
        }
        b'E' => {
            let fields = wire::parse_fields(body).unwrap_or_default();
            let message = wire::field(&fields, b'M');
            let code = wire::field(&fields, b'C').to_string();
            let marker = format!("custos_refused_{}_", t.nonce);
            let refusal = message
                .split(&marker)
                .nth(1)
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse::<u64>().ok())
                .filter(|_| code == "42601")
                .and_then(|n| t.refusals.remove(&n))
                .map(|(r, _)| r);
            let (code, message) = match refusal {
                Some(r) => {
                    wire::error_response(out, "ERROR", r.code, &r.message, None);
                    (r.code.to_string(), r.message)
                }
                None => {
                    out.extend_from_slice(frame);
                    (code, message.to_string())
                }
            };
            if let Some(Pending::Exec(e)) = t.inflight.front_mut() {
                e.error = Some((code, message));
                if e.protocol == "extended"
                    && let Some(Pending::Exec(e)) = t.inflight.pop_front()
                {
                    finish(e, false, done);
                }
            }
        }
        b't' => {
            out.extend_from_slice(frame);
            let mut r = wire::Reader::new(body);
            let n = r.i16().unwrap_or(0).max(0) as usize;
            let types: Vec<u32> = (0..n).map_while(|_| r.i32().ok().map(|o| o as u32)).collect();
            if let Some((name, _)) = t.describes.pop_front() {
                if t.param_types.len() >= MAX_PREPARED_PER_SESSION {
                    t.param_types.clear();
                }
                t.param_types.insert(name, types);
            }
        }
        b'Z' => {
            out.extend_from_slice(frame);
            // Describes sent before this Sync that got no answer failed.
            t.ready_seen += 1;
            let seen = t.ready_seen;
            while t.describes.front().is_some_and(|d| d.1 < seen) {
                t.describes.pop_front();
            }
            t.refusals.retain(|_, (_, syncs)| *syncs >= seen);
            while let Some(p) = t.inflight.pop_front() {
                match p {
                    Pending::Sync => break,
                    Pending::Exec(e) if e.protocol != "extended" => {
                        finish(e, false, done);
                        break;
                    }
                    Pending::Exec(e) => finish(e, true, done),
                }
            }
        }
        _ => out.extend_from_slice(frame),
    }
}

fn finish(mut e: Box<Exec>, skipped: bool, done: &mut Done) {
    if !e.refused {
        e.ended = Some(Instant::now());
        done.push((e, skipped));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_name_keeps_the_session_id() {
        let a = tagged_application_name("psql", "0123456789abcdef");
        assert_eq!(a, "psql [custos 0123456789abcdef]");
        let long = "é".repeat(40);
        let a = tagged_application_name(&long, "0123456789abcdef");
        assert!(a.len() <= MAX_APPLICATION_NAME_BYTES, "{}", a.len());
        assert!(a.ends_with("[custos 0123456789abcdef]"));
    }

    #[test]
    fn params_are_cut_and_binary_is_hex() {
        let s = |t: &str| Node::from(t.to_string());
        assert_eq!(render_param(None, false, 0), Node::Null);
        assert_eq!(render_param(Some(b"abc"), false, 0), s("abc"));
        assert_eq!(render_param(Some(&[0xde, 0xad]), true, 0), s("\\xdead"));
        assert_eq!(render_param(Some(&[0, 0, 0, 50]), true, 23), s("50"));
        assert_eq!(render_param(Some(&[0xff, 0xfe]), true, 21), s("-2"));
        assert_eq!(render_param(Some(b"hi"), true, 25), s("hi"));
        let big = vec![b'x'; 1000];
        let s = render_param(Some(&big), false, 0);
        assert!(s.as_str().unwrap().ends_with("…(1000 bytes)"));
    }
}
