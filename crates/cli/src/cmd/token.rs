//! `custos token create|list|revoke`: token management that works offline
//! against the data directory, for automation. A running server sees the
//! change at its next request.

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Context;
use custos_auth::tokens::parse_ttl;
use custos_auth::{Role, Scope, TokenStore};

/// Arguments of `custos token`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Create a token; it is printed once and stored hashed.
    Create {
        /// The data directory.
        #[arg(long, env = "CUSTOS_DATA", default_value = "custos-data")]
        data: PathBuf,
        /// ingest, reader, auditor or admin.
        #[arg(long)]
        role: String,
        /// Logs the role applies to, comma-separated, or `*` for all.
        #[arg(long, default_value = "*")]
        logs: String,
        /// Lifetime, such as 90d, 12h or 30m [default: no expiry].
        #[arg(long)]
        ttl: Option<String>,
        /// A name for the token, such as ci-pipeline.
        #[arg(long)]
        name: String,
        /// Requests per second allowed [default: unlimited].
        #[arg(long)]
        rate_limit: Option<u32>,
    },
    /// List tokens (never their secrets).
    List {
        /// The data directory.
        #[arg(long, env = "CUSTOS_DATA", default_value = "custos-data")]
        data: PathBuf,
    },
    /// Revoke a token by ID or name, with effect at once.
    Revoke {
        /// The data directory.
        #[arg(long, env = "CUSTOS_DATA", default_value = "custos-data")]
        data: PathBuf,
        /// The token's ID or name.
        id: String,
    },
}

/// Runs the command.
pub fn run(a: Args) -> anyhow::Result<i32> {
    match a.command {
        Sub::Create { data, role, logs, ttl, name, rate_limit } => {
            let store = TokenStore::open(&data)?;
            let role = Role::parse(&role).map_err(anyhow::Error::msg)?;
            let ttl = ttl.as_deref().map(parse_ttl).transpose().map_err(anyhow::Error::msg)?;
            let (token, rec) = store.create(&name, role, Scope::parse(&logs), ttl, rate_limit, SystemTime::now())?;
            eprintln!("created token {} ({}), role {}; it is shown only now:", rec.id, rec.name, role.as_str());
            println!("{token}");
        }
        Sub::List { data } => {
            let store = TokenStore::open(&data)?;
            println!("{:<14} {:<24} {:<8} {:<24} {:<12} STATE", "ID", "NAME", "ROLE", "LOGS", "EXPIRES");
            for r in store.records()? {
                let logs = match &r.scope {
                    Scope::All => "*".to_string(),
                    Scope::Logs(l) => l.join(","),
                };
                let expires = r.expires_at.map_or("never".into(), |e| {
                    custos_event::time::format_rfc3339(e as i64 * 1_000_000_000)[..10].to_string()
                });
                let state = if r.revoked_at.is_some() { "revoked" } else { "active" };
                println!("{:<14} {:<24} {:<8} {:<24} {:<12} {state}", r.id, r.name, r.role.as_str(), logs, expires);
            }
        }
        Sub::Revoke { data, id } => {
            let store = TokenStore::open(&data)?;
            let r = store.revoke(&id, SystemTime::now()).context("revoking")?;
            println!("revoked token {} ({})", r.id, r.name);
        }
    }
    Ok(0)
}
