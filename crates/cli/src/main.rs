//! The `custos` command: one binary for the server, the offline verifier,
//! key management and benchmarks.
//!
//! # Layout
//! One file per subcommand under `cmd/`; this file only parses arguments
//! and dispatches.

mod cmd;

use clap::{Parser, Subcommand};

/// Audit-ready, tamper-evident access logs.
#[derive(Parser)]
#[command(name = "custos", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a signing key and print its verifier key.
    Keygen(cmd::keygen::Args),
    /// Verify logs offline: every entry, stored tile and checkpoint.
    Verify(cmd::verify::Args),
    /// Measure the log: append throughput, latency and verify throughput.
    Bench(cmd::bench::Args),
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("CUSTOS_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen(a) => cmd::keygen::run(a),
        Command::Verify(a) => cmd::verify::run(a),
        Command::Bench(a) => cmd::bench::run(a),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}
