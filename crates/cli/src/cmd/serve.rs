//! `custos serve`: the server on the embedded default storage.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use custos_log::{LogStore, StoreConfig};
use custos_server::{AppState, ServerConfig};
use serde::Deserialize;

/// Arguments of `custos serve`. Each also reads an environment variable,
/// and, below both, a key of the TOML file given by `--config`.
#[derive(clap::Args)]
pub struct Args {
    /// TOML configuration file.
    #[arg(long, env = "CUSTOS_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory [default: ./custos-data].
    #[arg(long, env = "CUSTOS_DATA")]
    data: Option<PathBuf>,
    /// Listen address [default: 127.0.0.1:7600].
    #[arg(long, env = "CUSTOS_LISTEN")]
    listen: Option<String>,
    /// Milliseconds between checkpoints of grown logs [default: 500].
    #[arg(long, env = "CUSTOS_CHECKPOINT_INTERVAL_MS")]
    checkpoint_interval_ms: Option<u64>,
    /// Require logs to be created explicitly (`--create-log` or config
    /// `logs`) instead of by their first write.
    #[arg(long, env = "CUSTOS_EXPLICIT_LOGS")]
    explicit_logs: bool,
    /// Logs to create at start.
    #[arg(long = "create-log", env = "CUSTOS_CREATE_LOGS", value_delimiter = ',')]
    create_logs: Vec<String>,
    /// Key name for a new signing key [default: custos.local].
    #[arg(long, env = "CUSTOS_KEY_NAME")]
    key_name: Option<String>,
    /// Largest request body in bytes, after decompression [default: 16 MiB].
    #[arg(long, env = "CUSTOS_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,
    /// Largest event in bytes [default: 64 KiB].
    #[arg(long, env = "CUSTOS_MAX_EVENT_BYTES")]
    max_event_bytes: Option<usize>,
    /// Request bodies held at once, over every connection, in bytes; a
    /// request waits up to 10 s for room, then gets 503 [default: 64 MiB].
    #[arg(long, env = "CUSTOS_MAX_BODY_BYTES_IN_FLIGHT", value_parser = clap::value_parser!(u64).range(1..))]
    max_body_bytes_in_flight: Option<u64>,
    /// TLS certificate chain (PEM).
    #[arg(long, env = "CUSTOS_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "CUSTOS_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// CA bundle (PEM) for client certificates: mutual TLS for sources.
    #[arg(long, env = "CUSTOS_TLS_CLIENT_CA")]
    tls_client_ca: Option<PathBuf>,
    /// Serve TLS with a fresh self-signed certificate, for development;
    /// prints its fingerprint.
    #[arg(long, env = "CUSTOS_TLS_SELF_SIGNED", conflicts_with = "tls_cert")]
    tls_self_signed: bool,
    /// Map a client certificate subject CN to an ingest identity:
    /// `CN=log1,log2` (or `CN=*`). Repeatable.
    #[arg(long = "cert-identity", env = "CUSTOS_CERT_IDENTITIES", value_delimiter = ';')]
    cert_identities: Vec<String>,
    /// Let anyone read checkpoints and hash tiles (they hold only hashes
    /// and sizes), for witnesses and monitors.
    #[arg(long, env = "CUSTOS_PUBLIC_HASHES")]
    public_hashes: bool,
    /// Seconds a connection may stay silent before it is closed [default: 30].
    #[arg(long, env = "CUSTOS_IDLE_TIMEOUT_SECS")]
    idle_timeout_secs: Option<u64>,
    /// Seconds a request body may take to arrive [default: 30].
    #[arg(long, env = "CUSTOS_BODY_TIMEOUT_SECS")]
    body_timeout_secs: Option<u64>,
    /// Accept OIDC JWTs from this issuer (the exact `iss`).
    #[arg(long, env = "CUSTOS_OIDC_ISSUER")]
    oidc_issuer: Option<String>,
    /// The issuer's JWKS: a file, or an http(s) URL fetched at start.
    #[arg(long, env = "CUSTOS_OIDC_JWKS")]
    oidc_jwks: Option<String>,
    /// An `aud` the JWT must carry.
    #[arg(long, env = "CUSTOS_OIDC_AUDIENCE")]
    oidc_audience: Option<String>,
    /// The claim naming the person [default: preferred_username, then
    /// email, then sub].
    #[arg(long, env = "CUSTOS_OIDC_USER_CLAIM", default_value = "preferred_username")]
    oidc_user_claim: String,
    /// The claim listing groups or roles [default: groups].
    #[arg(long, env = "CUSTOS_OIDC_ROLES_CLAIM", default_value = "groups")]
    oidc_roles_claim: String,
    /// Map a claim value to a role and logs: `value=role:logs`, such as
    /// `custos-auditors=auditor:*`. Repeatable; the first match wins.
    #[arg(long = "oidc-map", env = "CUSTOS_OIDC_MAP", value_delimiter = ';')]
    oidc_map: Vec<String>,
    /// Switch authentication off. Only for development and benchmarks, and
    /// only on a loopback address.
    #[arg(long, env = "CUSTOS_INSECURE_NO_AUTH")]
    insecure_no_auth: bool,
    /// Receive syslog over TCP (RFC 6587, framing detected per
    /// connection): `ADDR=LOG`, such as `127.0.0.1:6514=syslog`. Repeatable.
    #[arg(long = "syslog-tcp", env = "CUSTOS_SYSLOG_TCP", value_delimiter = ';')]
    syslog_tcp: Vec<String>,
    /// Receive syslog over TLS (RFC 5425) with the server's certificate
    /// (and client-certificate checks, if configured): `ADDR=LOG`.
    #[arg(long = "syslog-tls", env = "CUSTOS_SYSLOG_TLS", value_delimiter = ';')]
    syslog_tls: Vec<String>,
    /// Receive syslog over UDP: `ADDR=LOG`. Repeatable.
    #[arg(long = "syslog-udp", env = "CUSTOS_SYSLOG_UDP", value_delimiter = ';')]
    syslog_udp: Vec<String>,
    /// Receive OpenTelemetry logs over OTLP/gRPC: `ADDR=LOG`, such as
    /// `127.0.0.1:4317=apps`; over TLS when the server has TLS, else
    /// HTTP/2 in clear. Repeatable. (OTLP/HTTP is always on at
    /// `/v1/otlp/{log}/v1/logs`.)
    #[arg(long = "otlp-grpc", env = "CUSTOS_OTLP_GRPC", value_delimiter = ';')]
    otlp_grpc: Vec<String>,
    /// Report a source as silent after this many seconds without events
    /// [default: 300].
    #[arg(long, env = "CUSTOS_SOURCE_SILENCE_SECS")]
    source_silence_secs: Option<u64>,
    /// Milliseconds a search, an aggregation or one page of an export may
    /// run before it is stopped and answered 400 [default: 30000].
    #[arg(long, env = "CUSTOS_SEARCH_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(1..))]
    search_timeout_ms: Option<u64>,
    /// Searches, aggregations and export pages run at once; others wait
    /// their turn, up to 10 s, then get 503 [default: 4].
    #[arg(long, env = "CUSTOS_SEARCHES_AT_ONCE", value_parser = clap::value_parser!(u64).range(1..=1024))]
    searches_at_once: Option<u64>,
}

fn listener_spec(spec: &str) -> anyhow::Result<(SocketAddr, String)> {
    let (addr, log) = spec.rsplit_once('=').with_context(|| format!("{spec:?} is not ADDR=LOG"))?;
    let addr = addr.parse().with_context(|| format!("{addr:?} is not an address like 127.0.0.1:6514"))?;
    custos_log::store::validate_log_name(log, false)?;
    Ok((addr, log.to_string()))
}

/// The TOML file: the same settings as the flags.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data: Option<PathBuf>,
    listen: Option<String>,
    checkpoint_interval_ms: Option<u64>,
    explicit_logs: Option<bool>,
    logs: Option<Vec<String>>,
    key_name: Option<String>,
    max_body_bytes: Option<usize>,
    max_event_bytes: Option<usize>,
    max_body_bytes_in_flight: Option<u64>,
    idle_timeout_secs: Option<u64>,
    body_timeout_secs: Option<u64>,
    source_silence_secs: Option<u64>,
    search_timeout_ms: Option<u64>,
    searches_at_once: Option<u64>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    cert_identities: Option<std::collections::BTreeMap<String, String>>,
    public_hashes: Option<bool>,
    oidc: Option<FileOidc>,
    /// Access gateways run inside the server (`[[gateway]]`), recording
    /// straight into the log.
    #[serde(default)]
    gateway: Vec<super::gateway::FileConfig>,
}

/// `[oidc]` in the TOML file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOidc {
    issuer: String,
    jwks: String,
    audience: Option<String>,
    user_claim: Option<String>,
    roles_claim: Option<String>,
    /// Claim value to `role:logs`, such as `custos-auditors = "auditor:*"`.
    map: std::collections::BTreeMap<String, String>,
}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(a: Args) -> anyhow::Result<i32> {
    let file: FileConfig = match &a.config {
        Some(p) => super::read_toml(p)?,
        None => FileConfig::default(),
    };
    let data = a.data.or(file.data).unwrap_or_else(|| PathBuf::from("custos-data"));
    let listen = a.listen.or(file.listen).unwrap_or_else(|| "127.0.0.1:7600".into());
    let listen: SocketAddr =
        listen.parse().with_context(|| format!("--listen {listen:?} is not an address like 127.0.0.1:7600"))?;
    let mut store_cfg = StoreConfig::new(&data);
    store_cfg.auto_create = !(a.explicit_logs || file.explicit_logs.unwrap_or(false));
    if let Some(k) = a.key_name.or(file.key_name) {
        store_cfg.key_name = k;
    }
    if file.max_body_bytes_in_flight == Some(0) {
        bail!("max_body_bytes_in_flight in the config file must be at least 1");
    }
    if file.search_timeout_ms == Some(0) {
        bail!("search_timeout_ms in the config file must be at least 1");
    }
    if file.searches_at_once.is_some_and(|n| !(1..=1024).contains(&n)) {
        bail!("searches_at_once in the config file must be 1 to 1024");
    }
    let defaults = ServerConfig::default();
    // Each setting from its flag, else the file, else the default.
    let ms = |flag: Option<u64>, file: Option<u64>, default| flag.or(file).map_or(default, Duration::from_millis);
    let secs = |flag: Option<u64>, file: Option<u64>, default| flag.or(file).map_or(default, Duration::from_secs);
    let size = |flag: Option<u64>, file: Option<u64>, default| flag.or(file).map_or(default, |n| n as usize);
    let server_cfg = ServerConfig {
        max_body_bytes: a.max_body_bytes.or(file.max_body_bytes).unwrap_or(defaults.max_body_bytes),
        max_event_bytes: a.max_event_bytes.or(file.max_event_bytes).unwrap_or(defaults.max_event_bytes),
        max_body_bytes_in_flight: size(
            a.max_body_bytes_in_flight,
            file.max_body_bytes_in_flight,
            defaults.max_body_bytes_in_flight,
        ),
        checkpoint_interval: ms(a.checkpoint_interval_ms, file.checkpoint_interval_ms, defaults.checkpoint_interval),
        idle_timeout: secs(a.idle_timeout_secs, file.idle_timeout_secs, defaults.idle_timeout),
        body_timeout: secs(a.body_timeout_secs, file.body_timeout_secs, defaults.body_timeout),
        source_silence: secs(a.source_silence_secs, file.source_silence_secs, defaults.source_silence),
        search_timeout: ms(a.search_timeout_ms, file.search_timeout_ms, defaults.search_timeout),
        searches_at_once: size(a.searches_at_once, file.searches_at_once, defaults.searches_at_once),
    };
    let syslog_tcp: Vec<(SocketAddr, String)> =
        a.syslog_tcp.iter().map(|s| listener_spec(s)).collect::<anyhow::Result<_>>()?;
    let syslog_udp: Vec<(SocketAddr, String)> =
        a.syslog_udp.iter().map(|s| listener_spec(s)).collect::<anyhow::Result<_>>()?;
    let otlp_grpc: Vec<(SocketAddr, String)> =
        a.otlp_grpc.iter().map(|s| listener_spec(s)).collect::<anyhow::Result<_>>()?;
    let syslog_tls: Vec<(SocketAddr, String)> =
        a.syslog_tls.iter().map(|s| listener_spec(s)).collect::<anyhow::Result<_>>()?;
    let mut create = a.create_logs;
    create.extend(file.logs.unwrap_or_default());

    let started = std::time::Instant::now();
    let store =
        Arc::new(LogStore::open(store_cfg).with_context(|| format!("opening data directory {}", data.display()))?);
    for name in &create {
        store.create(name, false)?;
    }
    // Flags win over the file's [oidc] table.
    let file_oidc = file.oidc;
    let mut gateways = file
        .gateway
        .into_iter()
        .map(super::gateway::build)
        .collect::<anyhow::Result<Vec<_>>>()
        .context("[[gateway]] in the configuration file")?;
    // Each gateway's deny rules follow the file while the server runs:
    // found again by the gateway's listen address.
    if let Some(path) = &a.config {
        for (listen, _, config) in &mut gateways {
            let (p, listen) = (path.clone(), listen.clone());
            let read = move || {
                let f: FileConfig = super::read_toml(&p)?;
                let g = f
                    .gateway
                    .into_iter()
                    .find(|g| g.listen.as_deref().unwrap_or(super::gateway::DEFAULT_GATEWAY_LISTEN) == listen);
                Ok(g.context(format!("no [[gateway]] with listen = {listen:?} any more"))?.deny)
            };
            config.rules_file = Some((path.clone(), super::gateway::rules_loader(read)));
        }
    }
    let oidc_issuer = a.oidc_issuer.clone().or_else(|| file_oidc.as_ref().map(|o| o.issuer.clone()));
    let oidc = match oidc_issuer {
        None => None,
        Some(issuer) => {
            let fo = file_oidc.as_ref();
            let src = a
                .oidc_jwks
                .clone()
                .or_else(|| fo.map(|o| o.jwks.clone()))
                .context("OIDC needs a JWKS (--oidc-jwks or [oidc] jwks)")?;
            let text = if src.starts_with("http://") || src.starts_with("https://") {
                String::from_utf8(crate::http::get_ok(&crate::http::agent(), &src)?)?
            } else {
                std::fs::read_to_string(&src).with_context(|| format!("reading JWKS {src}"))?
            };
            let mut maps = a.oidc_map.clone();
            if let Some(o) = fo {
                maps.extend(o.map.iter().map(|(k, v)| format!("{k}={v}")));
            }
            anyhow::ensure!(!maps.is_empty(), "OIDC needs at least one mapping (--oidc-map or [oidc.map])");
            Some(custos_auth::oidc::OidcConfig {
                issuer,
                audience: a.oidc_audience.clone().or_else(|| fo.and_then(|o| o.audience.clone())),
                jwks: custos_auth::oidc::parse_jwks(&text).map_err(anyhow::Error::msg)?,
                user_claim: fo.and_then(|o| o.user_claim.clone()).unwrap_or_else(|| a.oidc_user_claim.clone()),
                roles_claim: fo.and_then(|o| o.roles_claim.clone()).unwrap_or_else(|| a.oidc_roles_claim.clone()),
                mappings: maps
                    .iter()
                    .map(|m| custos_auth::oidc::parse_mapping(m))
                    .collect::<Result<_, _>>()
                    .map_err(anyhow::Error::msg)?,
                leeway_secs: 60,
            })
        }
    };
    let mut auth =
        auth_config(&data, &listen, a.insecure_no_auth, a.public_hashes || file.public_hashes.unwrap_or(false), {
            let mut m: Vec<String> = a.cert_identities;
            m.extend(file.cert_identities.unwrap_or_default().into_iter().map(|(k, v)| format!("{k}={v}")));
            m
        })?;
    auth.oidc = oidc;
    let tls = match (a.tls_cert.or(file.tls_cert), a.tls_key.or(file.tls_key), a.tls_self_signed) {
        (Some(cert), Some(key), _) => Some((cert, key)),
        (None, None, true) => {
            let (cert, key, fp) = custos_server::conn::self_signed(&data.join("tls"))?;
            println!("self-signed TLS certificate {} SHA-256 fingerprint {fp}", cert.display());
            Some((cert, key))
        }
        (None, None, false) => None,
        _ => anyhow::bail!("give both --tls-cert and --tls-key"),
    };
    let client_ca = a.tls_client_ca.or(file.tls_client_ca);
    // OTLP/gRPC listeners speak TLS when the server does, with ALPN h2.
    let grpc_tls = match &tls {
        Some((cert, key)) => Some(custos_server::conn::tls_acceptor_alpn(
            &custos_server::conn::TlsFiles { cert, key, client_ca: client_ca.as_deref() },
            vec![b"h2".to_vec()],
        )?),
        None => None,
    };
    let tls = match &tls {
        Some((cert, key)) => Some(custos_server::conn::tls_acceptor(&custos_server::conn::TlsFiles {
            cert,
            key,
            client_ca: client_ca.as_deref(),
        })?),
        None if client_ca.is_some() => anyhow::bail!("--tls-client-ca needs TLS: give --tls-cert and --tls-key"),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        logs = store.list().len(),
        ms = started.elapsed().as_millis() as u64,
        "opened and checked data directory"
    );
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr()?;
        println!("custos listening on {scheme}://{addr}");
        println!("data directory: {}", data.display());
        let mut tcp_listeners = Vec::new();
        let mut tls_listeners = Vec::new();
        for (addr, log) in syslog_tcp {
            let l = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding syslog TCP {addr}"))?;
            println!("syslog tcp on {} -> log {log}", l.local_addr()?);
            tcp_listeners.push((l, log));
        }
        anyhow::ensure!(
            syslog_tls.is_empty() || tls.is_some(),
            "--syslog-tls needs --tls-cert and --tls-key (or --tls-self-signed)"
        );
        for (addr, log) in syslog_tls {
            let l = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding syslog TLS {addr}"))?;
            println!("syslog tls on {} -> log {log}", l.local_addr()?);
            tls_listeners.push((l, log));
        }
        let mut udp_sockets = Vec::new();
        for (addr, log) in syslog_udp {
            let sock = tokio::net::UdpSocket::bind(addr).await.with_context(|| format!("binding syslog UDP {addr}"))?;
            println!("syslog udp on {} -> log {log}", sock.local_addr()?);
            udp_sockets.push((sock, log));
        }
        let mut grpc_listeners = Vec::new();
        for (addr, log) in otlp_grpc {
            let l = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding OTLP/gRPC {addr}"))?;
            println!("otlp grpc{} on {} -> log {log}", if grpc_tls.is_some() { "s" } else { "" }, l.local_addr()?);
            grpc_listeners.push((l, log));
        }
        let mut gateway_listeners = Vec::new();
        for (listen, log, config) in gateways {
            let (l, line) = super::gateway::bind(&listen, &log, "this server", &config).await?;
            println!("{line}");
            gateway_listeners.push((l, log, config));
        }
        println!("verifier key: {}", store.verifier().to_key_string());
        tracing::info!(%addr, data = %data.display(), "serving");
        let state = Arc::new(AppState::new(store, server_cfg, auth));
        for (l, log) in tcp_listeners {
            tokio::spawn(custos_server::sources::syslog_tcp(
                state.clone(),
                l,
                log,
                None,
                custos_server::sources::MAX_SYSLOG_CONNECTIONS,
            ));
        }
        for (l, log) in tls_listeners {
            tokio::spawn(custos_server::sources::syslog_tcp(
                state.clone(),
                l,
                log,
                tls.clone(),
                custos_server::sources::MAX_SYSLOG_CONNECTIONS,
            ));
        }
        for (sock, log) in udp_sockets {
            tokio::spawn(custos_server::sources::syslog_udp(state.clone(), sock, log));
        }
        for (l, log) in grpc_listeners {
            tokio::spawn(custos_server::otlp::serve_grpc(state.clone(), l, log, grpc_tls.clone()));
        }
        for (l, log, mut config) in gateway_listeners {
            config.tokens = custos_server::gateway::token_check(&state);
            let name = config.name.clone();
            let sink = custos_server::gateway::sink(state.clone(), log, name);
            let gw = custos_gateway::Gateway::new(config, sink);
            tokio::spawn(gw.serve(l, std::future::pending::<()>()));
        }
        custos_server::serve(state, listener, tls, shutdown_signal()).await?;
        tracing::info!("stopped after draining requests and signing final checkpoints");
        anyhow::Ok(())
    })?;
    Ok(0)
}

pub(crate) async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutting down: draining in-flight requests");
}

/// Authentication settings; creates and prints the bootstrap admin token
/// when the store has none.
fn auth_config(
    data: &std::path::Path,
    listen: &SocketAddr,
    insecure_no_auth: bool,
    public_hashes: bool,
    cert_identities: Vec<String>,
) -> anyhow::Result<custos_server::state::AuthConfig> {
    let mut certs = std::collections::HashMap::new();
    for m in cert_identities {
        let (cn, logs) = m.split_once('=').with_context(|| format!("--cert-identity {m:?} is not CN=log1,log2"))?;
        certs.insert(cn.trim().to_string(), custos_auth::Scope::parse(logs));
    }
    if insecure_no_auth {
        anyhow::ensure!(listen.ip().is_loopback(), "--insecure-no-auth is only allowed on a loopback address");
        tracing::warn!("authentication is OFF: anyone who can connect may read and write every log");
        return Ok(custos_server::state::AuthConfig {
            tokens: None,
            public_hashes,
            cert_identities: certs,
            oidc: None,
        });
    }
    let tokens = custos_auth::TokenStore::open(data)?;
    if tokens.records()?.is_empty() {
        let (token, rec) = tokens.create(
            "bootstrap-admin",
            custos_auth::Role::Admin,
            custos_auth::Scope::All,
            None,
            None,
            std::time::SystemTime::now(),
        )?;
        println!("bootstrap admin token {} (shown once, stored hashed): {token}", rec.id);
    }
    Ok(custos_server::state::AuthConfig {
        tokens: Some(Arc::new(tokens)),
        public_hashes,
        cert_identities: certs,
        oidc: None,
    })
}
