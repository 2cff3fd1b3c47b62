//! The `custos` command: one binary for the server, the offline verifier,
//! key management and benchmarks.
//!
//! # Layout
//! One file per subcommand under `cmd/`; this file only parses arguments
//! and dispatches.

mod cmd;
mod http;
mod remote;

use clap::{Parser, Subcommand};

// Ingest parses and canonicalises JSON, which allocates a lot from several
// threads; glibc malloc took over a quarter of the CPU in profiles.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Audit-ready, tamper-evident access logs.
#[derive(Parser)]
#[command(name = "custos", version, about)]
struct Cli {
    /// Bearer token for commands that talk to a server.
    #[arg(long, global = true, env = "CUSTOS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server on the embedded storage.
    Serve(Box<cmd::serve::Args>),
    /// Post events and print their receipts.
    Send(cmd::send::Args),
    /// Export entries with proofs as a self-contained bundle.
    Export(cmd::export::Args),
    /// Fill a log with realistic demo access events.
    Demo(cmd::demo::Args),
    /// Search a log: a table by default, or JSON, NDJSON or CSV.
    Search(cmd::search::Args),
    /// Count matching events: the most frequent values of a field, or a
    /// histogram of their times.
    Top(cmd::top::Args),
    /// Delete the search indexes of a stopped server's data directory and
    /// rebuild them from the logs.
    Reindex(cmd::reindex::Args),
    /// Show the health of every source: last seen, rate, gaps, silence.
    Sources(cmd::sources::Args),
    /// Create, list and revoke access tokens in a data directory.
    Token(cmd::token::Args),
    /// Create a signing key and print its verifier key.
    Keygen(cmd::keygen::Args),
    /// Verify a data directory offline, a live log from its tiles, or a bundle.
    Verify(cmd::verify::Args),
    /// The access gateway: a PostgreSQL proxy that records every statement.
    Gateway(cmd::gateway::Args),
    /// Measure the log: append throughput, latency and verify throughput.
    Bench(cmd::bench::Args),
}

/// Turns transparent huge pages off for this process, unless
/// `MIMALLOC_ALLOW_THP` says otherwise (mimalloc then applies it itself).
///
/// With THP on (Debian's default is `always`), each fresh 2 MiB of heap is
/// zeroed whole on its first touch. The search indexer's tantivy threads,
/// which start afresh at every index commit, touched new heap all the time:
/// profiles of the gateway at 16 clients showed `clear_page_erms` under
/// their page faults, and switching THP off was worth about 7% of its
/// throughput and 6% of `custos reindex`'s rate per CPU-second
/// (BENCHMARKS.md, session 8).
fn disable_transparent_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: prctl with PR_SET_THP_DISABLE takes integer arguments
        // only and sets a flag on this process; no memory is passed.
        unsafe {
            libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        }
    }
}

fn main() {
    disable_transparent_huge_pages();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("CUSTOS_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    http::set_token(cli.token);
    if let Err(e) = http::init_tls() {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
    let result = match cli.command {
        Command::Token(a) => cmd::token::run(a),
        Command::Sources(a) => cmd::sources::run(a),
        Command::Search(a) => cmd::search::run(a),
        Command::Top(a) => cmd::top::run(a),
        Command::Reindex(a) => cmd::reindex::run(a),
        Command::Serve(a) => cmd::serve::run(*a),
        Command::Send(a) => cmd::send::run(a),
        Command::Export(a) => cmd::export::run(a),
        Command::Demo(a) => cmd::demo::run(a),
        Command::Keygen(a) => cmd::keygen::run(a),
        Command::Verify(a) => cmd::verify::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Gateway(a) => cmd::gateway::run(a),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}
