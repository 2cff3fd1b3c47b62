//! `custos serve`: the server on the embedded default storage.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
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
}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(a: Args) -> anyhow::Result<i32> {
    let file: FileConfig = match &a.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))?
        }
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
    let defaults = ServerConfig::default();
    let server_cfg = ServerConfig {
        max_body_bytes: a.max_body_bytes.or(file.max_body_bytes).unwrap_or(defaults.max_body_bytes),
        max_event_bytes: a.max_event_bytes.or(file.max_event_bytes).unwrap_or(defaults.max_event_bytes),
        checkpoint_interval: a
            .checkpoint_interval_ms
            .or(file.checkpoint_interval_ms)
            .map(Duration::from_millis)
            .unwrap_or(defaults.checkpoint_interval),
    };
    let mut create = a.create_logs;
    create.extend(file.logs.unwrap_or_default());

    let started = std::time::Instant::now();
    let store =
        Arc::new(LogStore::open(store_cfg).with_context(|| format!("opening data directory {}", data.display()))?);
    for name in &create {
        store.create(name, false)?;
    }
    tracing::info!(
        logs = store.list().len(),
        ms = started.elapsed().as_millis() as u64,
        "opened and checked data directory"
    );
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr()?;
        println!("custos listening on http://{addr}");
        println!("data directory: {}", data.display());
        println!("verifier key: {}", store.verifier().to_key_string());
        tracing::info!(%addr, data = %data.display(), "serving");
        let state = Arc::new(AppState::new(store, server_cfg));
        custos_server::serve(state, listener, shutdown_signal()).await?;
        tracing::info!("stopped after draining requests and signing final checkpoints");
        anyhow::Ok(())
    })?;
    Ok(0)
}

async fn shutdown_signal() {
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
