//! `custos gateway postgres`: the access gateway in front of PostgreSQL,
//! recording into a Custos server's log; and `custos gateway user`, which
//! manages the people who may log in to it.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use custos_gateway::rules::{User, UsersFile};
use custos_gateway::scram::Verifier;
use custos_gateway::sink::{PostBatch, PostError, Sink};
use custos_gateway::spool::{DEFAULT_MAX_SPOOL_DISK_BYTES, DiskSpool, PostNdjson};
use custos_gateway::tls::{SslMode, Trust, UpstreamTls};
use custos_gateway::{AuditMode, Config, DenyRule, Gateway, Upstream, Users};
use serde::Deserialize;

/// Arguments of `custos gateway`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Run a PostgreSQL gateway.
    Postgres(Box<PgArgs>),
    /// Add or replace a person in a users file (the password is read
    /// from standard input).
    User(UserArgs),
}

/// Arguments of `custos gateway postgres`. Each also reads an environment
/// variable and, below both, a key of the TOML file given by `--config`.
#[derive(clap::Args)]
struct PgArgs {
    /// TOML configuration file; deny rules are set there (`[[deny]]`).
    #[arg(long, env = "CUSTOS_GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address [default: 127.0.0.1:6432].
    #[arg(long)]
    listen: Option<String>,
    /// The database: postgres://USER[:PASSWORD]@HOST[:PORT][/DB][?sslmode=M&sslrootcert=F&sslcert=C&sslkey=K].
    /// The password may also come from CUSTOS_UPSTREAM_PASSWORD.
    #[arg(long, env = "CUSTOS_UPSTREAM", hide_env_values = true)]
    upstream: Option<String>,
    /// The log that receives the events [default: db].
    #[arg(long)]
    log: Option<String>,
    /// The Custos server [default: http://127.0.0.1:7600]; the token
    /// (--token or CUSTOS_TOKEN) needs the ingest role on the log.
    #[arg(long, env = "CUSTOS_SERVER")]
    server: Option<String>,
    /// The users file [default: ./custos-gateway-users.json].
    #[arg(long)]
    users: Option<PathBuf>,
    /// TLS certificate chain (PEM) for clients.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for clients.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Refuse clients that do not use TLS.
    #[arg(long)]
    require_tls: bool,
    /// CA bundle (PEM) for client certificates: every client must then
    /// use TLS and present a certificate from this CA whose common name is
    /// the user it logs in as, besides its password.
    #[arg(long, requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Certificate revocation lists (PEM) for client certificates: a
    /// revoked certificate, or one whose CA has no list here, is refused.
    #[arg(long, requires = "tls_client_ca")]
    tls_client_crl: Option<PathBuf>,
    /// `fail-closed` (default): a statement runs only once its event is
    /// durable. `async`: statements run at once and events go through a
    /// bounded in-memory spool, lost if the gateway crashes.
    #[arg(long)]
    audit_mode: Option<String>,
    /// Keep events nobody waits for (async mode, and outcomes) in a spool
    /// on disk in this directory until the server has them, so that a
    /// crash or restart of the gateway loses none.
    #[arg(long)]
    spool_dir: Option<PathBuf>,
    /// The spool on disk takes at most this many MiB [default: 1024].
    #[arg(long, requires = "spool_dir")]
    spool_max_mb: Option<u64>,
    /// Record bound parameters as "<redacted>".
    #[arg(long)]
    redact_params: bool,
    /// Seconds a client has to authenticate [default: 30].
    #[arg(long)]
    auth_timeout_secs: Option<u64>,
    /// This gateway's name in events [default: postgres].
    #[arg(long)]
    name: Option<String>,
}

/// The `--config` file, and each `[[gateway]]` of `custos serve`'s.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub(crate) listen: Option<String>,
    upstream: Option<String>,
    log: Option<String>,
    server: Option<String>,
    users: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    require_tls: Option<bool>,
    tls_client_ca: Option<PathBuf>,
    tls_client_crl: Option<PathBuf>,
    audit_mode: Option<String>,
    spool_dir: Option<PathBuf>,
    spool_max_mb: Option<u64>,
    redact_params: Option<bool>,
    auth_timeout_secs: Option<u64>,
    name: Option<String>,
    #[serde(default)]
    pub(crate) deny: Vec<DenyRule>,
}

#[derive(clap::Args)]
struct UserArgs {
    /// The person's name.
    name: String,
    /// The users file [default: ./custos-gateway-users.json].
    #[arg(long)]
    users: Option<PathBuf>,
    /// A role deny rules can name; repeatable.
    #[arg(long = "role")]
    roles: Vec<String>,
    /// Remove the person instead (no password is read).
    #[arg(long, conflicts_with = "roles")]
    remove: bool,
}

const DEFAULT_USERS: &str = "custos-gateway-users.json";
/// Where a gateway listens unless told.
pub(crate) const DEFAULT_GATEWAY_LISTEN: &str = "127.0.0.1:6432";

/// Runs a gateway subcommand.
pub fn run(a: Args) -> anyhow::Result<i32> {
    match a.command {
        Command::Postgres(p) => postgres(*p),
        Command::User(u) => user(u),
    }
}

fn read_users(path: &Path) -> anyhow::Result<UsersFile> {
    UsersFile::read(path).map_err(anyhow::Error::msg)
}

fn user(a: UserArgs) -> anyhow::Result<i32> {
    let path = a.users.unwrap_or_else(|| DEFAULT_USERS.into());
    let mut file = read_users(&path)?;
    let save = |file: &UsersFile| -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(file)?;
        custos_log::store::write_secret_file(&path, &text).with_context(|| format!("writing {}", path.display()))
    };
    if a.remove {
        let before = file.users.len();
        file.users.retain(|u| u.name != a.name);
        if file.users.len() == before {
            bail!("{} has no user {}", path.display(), a.name);
        }
        save(&file)?;
        eprintln!("user {} removed from {}", a.name, path.display());
        return Ok(0);
    }
    let mut password = String::new();
    std::io::stdin().lock().read_line(&mut password).context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        bail!("the password (first line of standard input) is empty");
    }
    let entry = User { name: a.name.clone(), verifier: Verifier::new(password).encode(), roles: a.roles };
    file.users.retain(|u| u.name != a.name);
    file.users.push(entry);
    save(&file)?;
    eprintln!("user {} saved in {}", a.name, path.display());
    Ok(0)
}

/// The parts of a `postgres://` URL.
fn parse_upstream(url: &str) -> anyhow::Result<(Upstream, Option<PathBuf>)> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .context("the upstream must be a postgres:// URL")?;
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (auth, hostpart) = main.rsplit_once('@').context("the upstream URL needs a user: postgres://USER@HOST")?;
    let (user, password) = match auth.split_once(':') {
        Some((u, p)) => (decode(u)?, Some(decode(p)?)),
        None => (decode(auth)?, None),
    };
    let (hostport, database) = match hostpart.split_once('/') {
        Some((h, d)) if !d.is_empty() => (h, Some(decode(d)?)),
        Some((h, _)) => (h, None),
        None => (hostpart, None),
    };
    let (host, port): (&str, u16) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || p.is_empty() => (h, p.parse().context("upstream port")?),
        _ => (hostport, 5432),
    };
    let mut host = decode(host.trim_start_matches('[').trim_end_matches(']'))?;
    let mut port = port;
    let mut mode = SslMode::Prefer;
    let (mut ca, mut crl) = (None, None);
    let (mut cert, mut key) = (None, None);
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        match kv.split_once('=') {
            Some(("sslmode", m)) => mode = SslMode::parse(m).map_err(anyhow::Error::msg)?,
            Some(("sslrootcert", f)) => ca = Some(PathBuf::from(decode(f)?)),
            Some(("sslcrl", f)) => crl = Some(PathBuf::from(decode(f)?)),
            Some(("sslcert", f)) => cert = Some(PathBuf::from(decode(f)?)),
            Some(("sslkey", f)) => key = Some(PathBuf::from(decode(f)?)),
            // As in libpq: `host=/run/postgresql` names the directory of a
            // Unix socket, for a URL with no host of its own.
            Some(("host", h)) => host = decode(h)?,
            Some(("port", p)) => port = decode(p)?.parse().context("upstream port")?,
            _ => bail!(
                "unsupported upstream URL parameter {kv:?} (sslmode, sslrootcert, sslcrl, sslcert, sslkey, host, port)"
            ),
        }
    }
    if host.is_empty() {
        bail!("the upstream URL needs a host: postgres://USER@HOST, or a Unix socket directory as ?host=/DIR");
    }
    if host.starts_with('/') && matches!(mode, SslMode::Require | SslMode::VerifyFull) {
        bail!(
            "the upstream {host} is a Unix socket directory, and TLS does not run over a Unix socket; use sslmode=disable"
        );
    }
    let client = match (&cert, &key) {
        (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
        (None, None) => None,
        _ => bail!("the upstream URL's sslcert and sslkey go together"),
    };
    if client.is_some() && (mode == SslMode::Disable || host.starts_with('/')) {
        bail!(
            "a client certificate (sslcert) needs TLS toward the upstream: a TCP host and sslmode prefer, require or verify-full"
        );
    }
    if crl.is_some() && ca.is_none() {
        bail!("the upstream URL's sslcrl needs sslrootcert: revocation is checked only for verified certificates");
    }
    let password = password.or_else(|| std::env::var("CUSTOS_UPSTREAM_PASSWORD").ok());
    let trust = ca.as_deref().map(|ca| Trust { ca, crl: crl.as_deref() });
    let tls = UpstreamTls::new(mode, trust, client).map_err(anyhow::Error::msg)?;
    Ok((Upstream { host, port, user, password, database, tls }, ca))
}

/// Percent-decoding for URL parts.
fn decode(s: &str) -> anyhow::Result<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).context("truncated %-escape in the upstream URL")?;
            out.push(u8::from_str_radix(hex, 16).context("bad %-escape in the upstream URL")?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).context("the upstream URL is not UTF-8")
}

/// Checks a Custos token used as a password by asking the server who it
/// is (`GET /v1/whoami`): it must be valid and named after the user.
fn token_check(server: &str) -> custos_gateway::TokenCheck {
    let url = format!("{}/v1/whoami", server.trim_end_matches('/'));
    let agent = crate::http::agent_within(Duration::from_secs(10));
    Arc::new(move |user: &str, token: &str| {
        let mut resp = agent
            .get(&url)
            .header("Authorization", format!("Bearer {token}"))
            .call()
            .map_err(|e| format!("{url}: {e}"))?;
        if resp.status() != 200 {
            return Err(format!("{url} answered {}", resp.status()));
        }
        let body = resp.body_mut().with_config().limit(64 << 10).read_to_string().map_err(|e| e.to_string())?;
        let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        if v["name"] != format!("token:{user}").as_str() {
            return Err(format!("the token is {}'s, not {user}'s", v["name"]));
        }
        Ok(vec![v["role"].as_str().unwrap_or("").to_string()])
    })
}

/// Posts NDJSON bodies to the server's ingest API. The receipt comes
/// only after the server's fsync, so success means durable.
fn ndjson_poster(server: &str, log: &str) -> PostNdjson {
    let url = format!("{}/v1/logs/{log}/events", server.trim_end_matches('/'));
    let agent = crate::http::agent_within(Duration::from_secs(10));
    let token = crate::http::token();
    Arc::new(move |body: &[u8], _events: usize| {
        let mut req = agent.post(&url).header("Content-Type", "application/x-ndjson");
        if let Some(t) = &token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        match req.send(body) {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                if (200..300).contains(&status) {
                    return Ok(());
                }
                let text = resp.body_mut().with_config().limit(64 << 10).read_to_string().unwrap_or_default();
                let msg = format!("HTTP {status} from {url}: {}", text.trim());
                if status == 400 || status == 413 { Err(PostError::Rejected(msg)) } else { Err(PostError::Retry(msg)) }
            }
            Err(e) => Err(PostError::Retry(format!("{url}: {e}"))),
        }
    })
}

/// Posts batches of events as NDJSON through `post`.
fn poster(post: PostNdjson) -> PostBatch {
    Arc::new(move |events: &[custos_gateway::sink::Event]| {
        let mut body = String::with_capacity(events.len() * 512);
        for e in events {
            // The gateway's events have unique keys and finite numbers, so
            // they always have a canonical form; the server seals them anew.
            custos_event::canonical::write_node(&mut body, e)
                .map_err(|err| PostError::Rejected(format!("an audit event has no JSON form: {err}")))?;
            body.push('\n');
        }
        post(body.as_bytes(), events.len())
    })
}

/// A [`RulesLoader`] from a function that reads the rules of one gateway
/// from its configuration file; the rules are checked.
pub(crate) fn rules_loader(
    read: impl Fn() -> anyhow::Result<Vec<DenyRule>> + Send + Sync + 'static,
) -> custos_gateway::RulesLoader {
    Arc::new(move || {
        let rules = read().map_err(|e| format!("{e:#}"))?;
        DenyRule::validate_all(&rules)?;
        Ok(rules)
    })
}

fn postgres(a: PgArgs) -> anyhow::Result<i32> {
    let file: FileConfig = match &a.config {
        Some(p) => super::read_toml(p)?,
        None => FileConfig::default(),
    };
    // Flags win over the file.
    let mut merged = FileConfig {
        listen: a.listen.or(file.listen),
        upstream: a.upstream.or(file.upstream),
        log: a.log.or(file.log),
        server: a.server.or(file.server),
        users: a.users.or(file.users),
        tls_cert: a.tls_cert.or(file.tls_cert),
        tls_key: a.tls_key.or(file.tls_key),
        require_tls: Some(a.require_tls || file.require_tls.unwrap_or(false)),
        tls_client_ca: a.tls_client_ca.or(file.tls_client_ca),
        tls_client_crl: a.tls_client_crl.or(file.tls_client_crl),
        audit_mode: a.audit_mode.or(file.audit_mode),
        spool_dir: a.spool_dir.or(file.spool_dir),
        spool_max_mb: a.spool_max_mb.or(file.spool_max_mb),
        redact_params: Some(a.redact_params || file.redact_params.unwrap_or(false)),
        auth_timeout_secs: a.auth_timeout_secs.or(file.auth_timeout_secs),
        name: a.name.or(file.name),
        deny: file.deny,
    };
    let server = merged.server.clone().unwrap_or_else(|| "http://127.0.0.1:7600".into());
    let spool = merged.spool_dir.take().map(|d| (d, merged.spool_max_mb.take()));
    let (listen, log, mut config) = build(merged)?;
    // The deny rules are the file's alone: they follow it while running.
    if let Some(path) = a.config {
        let p = path.clone();
        config.rules_file = Some((path, rules_loader(move || super::read_toml::<FileConfig>(&p).map(|f| f.deny))));
    }
    let post = ndjson_poster(&server, &log);
    let disk = match spool {
        Some((dir, mb)) => {
            let max = mb.map_or(DEFAULT_MAX_SPOOL_DISK_BYTES, |mb| mb << 20);
            let disk = DiskSpool::open(&dir, max, post.clone()).map_err(anyhow::Error::msg)?;
            eprintln!("audit spool on disk: {} (at most {} MiB)", dir.display(), max >> 20);
            Some(disk)
        }
        None => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let (listener, line) = bind(&listen, &log, &format!("{server} over HTTP"), &config).await?;
        eprintln!("{line}");
        let mut config = config;
        config.tokens = Some(token_check(&server));
        let sink = match disk {
            Some(disk) => Sink::start_spooled(poster(post), disk),
            None => Sink::start(poster(post)),
        };
        let gw = Gateway::new(config, sink);
        gw.serve(listener, super::serve::shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    Ok(0)
}

/// Binds a gateway's listener; returns it and a line describing it.
pub(crate) async fn bind(
    listen: &str,
    log: &str,
    to: &str,
    config: &Config,
) -> anyhow::Result<(tokio::net::TcpListener, String)> {
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    let line = format!(
        "gateway listening on {}; upstream {}:{} as {}; log {log} at {to}; audit {:?}; users {}; deny rules {}; tls {}",
        listener.local_addr()?,
        config.upstream.host,
        config.upstream.port,
        config.upstream.user,
        config.mode,
        config.users.len(),
        config.rules.len(),
        if config.tls.is_some() { "on" } else { "off" },
    );
    Ok((listener, line))
}

/// Checks a gateway's settings and builds its configuration: returns the
/// listen address, the log, and the configuration.
pub(crate) fn build(f: FileConfig) -> anyhow::Result<(String, String, Config)> {
    let listen = f.listen.unwrap_or_else(|| DEFAULT_GATEWAY_LISTEN.into());
    if f.spool_dir.is_some() || f.spool_max_mb.is_some() {
        bail!(
            "spool_dir is for a gateway that posts to a server (custos gateway postgres); \
             inside custos serve, events go straight to the log"
        );
    }
    let upstream_url = f.upstream.context("the upstream (postgres://USER@HOST:PORT/DB) is required")?;
    let (upstream, _) = parse_upstream(&upstream_url)?;
    let log = f.log.unwrap_or_else(|| "db".into());
    let users_path = f.users.unwrap_or_else(|| DEFAULT_USERS.into());
    let users = Users::from_file(&read_users(&users_path)?).map_err(anyhow::Error::msg)?;
    if users.is_empty() {
        eprintln!("warning: {} has no users; add one with `custos gateway user NAME`", users_path.display());
    }
    let tls = match (f.tls_cert, f.tls_key) {
        (Some(c), Some(k)) => {
            let clients = f.tls_client_ca.as_deref().map(|ca| Trust { ca, crl: f.tls_client_crl.as_deref() });
            Some(custos_gateway::tls::acceptor(&c, &k, clients).map_err(anyhow::Error::msg)?)
        }
        (None, None) if f.tls_client_ca.is_some() => bail!("tls_client_ca needs tls_cert and tls_key"),
        (None, None) => None,
        _ => bail!("tls_cert and tls_key go together"),
    };
    if f.tls_client_crl.is_some() && f.tls_client_ca.is_none() {
        bail!("tls_client_crl needs tls_client_ca");
    }
    let client_certs = f.tls_client_ca.is_some();
    // Client certificates come only over TLS.
    let require_tls = f.require_tls.unwrap_or(false) || client_certs;
    if require_tls && tls.is_none() {
        bail!("require_tls needs tls_cert and tls_key");
    }
    let mode = match f.audit_mode.as_deref() {
        None | Some("fail-closed") => AuditMode::FailClosed,
        Some("async") => AuditMode::Async,
        Some(m) => bail!("unknown audit mode {m:?}: fail-closed or async"),
    };
    DenyRule::validate_all(&f.deny).map_err(anyhow::Error::msg)?;
    let config = Config {
        name: f.name.unwrap_or_else(|| "postgres".into()),
        upstream,
        tls,
        require_tls,
        client_certs,
        users,
        users_file: Some(users_path),
        rules: f.deny,
        // Set by the caller, which knows the file the rules come from.
        rules_file: None,
        redact_params: f.redact_params.unwrap_or(false),
        mode,
        auth_timeout: Duration::from_secs(f.auth_timeout_secs.unwrap_or(30)),
        // Set by `custos serve` for gateways inside it, where the token
        // store is at hand.
        tokens: None,
    };
    Ok((listen, log, config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls() {
        let (u, _) = parse_upstream("postgres://svc:p%40ss@db.example:5433/app?sslmode=disable").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.user.as_str()), ("db.example", 5433, "svc"));
        assert_eq!(u.password.as_deref(), Some("p@ss"));
        assert_eq!(u.database.as_deref(), Some("app"));
        let (u, _) = parse_upstream("postgresql://svc@127.0.0.1?sslmode=disable").unwrap();
        assert_eq!((u.port, u.database), (5432, None));
        assert!(parse_upstream("mysql://x@y").is_err());
        assert!(parse_upstream("postgres://x@y?bogus=1").is_err());
        let Err(e) = parse_upstream("postgres://x@y?sslcert=/c.pem") else { panic!("accepted") };
        assert!(e.to_string().contains("sslcert and sslkey go together"), "{e}");
        let Err(e) = parse_upstream("postgres://x@y?sslmode=disable&sslcert=/c.pem&sslkey=/c.key") else {
            panic!("accepted")
        };
        assert!(e.to_string().contains("needs TLS toward the upstream"), "{e}");
    }

    /// As libpq, a client key others may read is refused.
    #[test]
    fn upstream_client_keys_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["svc".into()]).unwrap();
        let (cert, key) = (dir.path().join("svc.pem"), dir.path().join("svc.key"));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
        let url = format!("postgres://svc@db?sslmode=require&sslcert={}&sslkey={}", cert.display(), key.display());
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let Err(e) = parse_upstream(&url) else { panic!("accepted") };
        assert!(e.to_string().contains("may be read by others (mode 644)"), "{e}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        parse_upstream(&url).unwrap();
    }

    #[test]
    fn upstream_unix_sockets() {
        let (u, _) = parse_upstream("postgres://svc@%2Frun%2Fpostgresql:5433/app").unwrap();
        assert_eq!(u.unix_socket(), Some(PathBuf::from("/run/postgresql/.s.PGSQL.5433")));
        let (u, _) = parse_upstream("postgres://svc@/app?host=/tmp/pg%20dir&port=6000&sslmode=disable").unwrap();
        assert_eq!(u.unix_socket(), Some(PathBuf::from("/tmp/pg dir/.s.PGSQL.6000")));
        assert_eq!(u.database.as_deref(), Some("app"));
        let (u, _) = parse_upstream("postgres://svc@db.example/app").unwrap();
        assert_eq!(u.unix_socket(), None);
        let Err(e) = parse_upstream("postgres://svc@/app?host=/run/postgresql&sslmode=require") else {
            panic!("accepted")
        };
        assert!(e.to_string().contains("TLS does not run over a Unix socket"), "{e}");
        let Err(e) = parse_upstream("postgres://svc@/app") else { panic!("accepted") };
        assert!(e.to_string().contains("needs a host"), "{e}");
    }
}
