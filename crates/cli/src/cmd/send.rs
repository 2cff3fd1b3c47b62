//! `custos send`: post events and print their receipts.

use std::io::{BufRead, Write};

use anyhow::{Context, bail};

use crate::http;

/// Events per request when reading NDJSON from standard input.
const LINES_PER_REQUEST: usize = 1000;

/// Arguments of `custos send`.
#[derive(clap::Args)]
pub struct Args {
    /// Server URL.
    #[arg(long, env = "CUSTOS_URL", default_value = "http://127.0.0.1:7600")]
    url: String,
    /// Log to append to.
    #[arg(long)]
    log: String,
    /// Wait for a signed checkpoint and print proofs with the receipts.
    #[arg(long)]
    wait_checkpoint: bool,
    /// Answer only once searches find the events.
    #[arg(long, conflicts_with = "wait_checkpoint")]
    wait_searchable: bool,
    /// Events as JSON objects. Without any, NDJSON is read from standard
    /// input.
    events: Vec<String>,
}

fn post(agent: &ureq::Agent, url: &str, lines: &[String]) -> anyhow::Result<()> {
    let body = lines.join("\n");
    let (status, resp) = http::post(agent, url, "application/x-ndjson", body.as_bytes())?;
    if status != 200 {
        bail!("HTTP {status}: {}", String::from_utf8_lossy(&resp).trim());
    }
    let v: serde_json::Value = serde_json::from_slice(&resp).context("parsing receipts")?;
    let mut out = std::io::stdout().lock();
    for r in v["receipts"].as_array().context("answer has no receipts")? {
        writeln!(out, "{r}")?;
    }
    Ok(())
}

/// Runs the command.
pub fn run(a: Args) -> anyhow::Result<i32> {
    let agent = http::agent();
    let wait = match (a.wait_checkpoint, a.wait_searchable) {
        (true, _) => "?wait=checkpoint",
        (_, true) => "?wait=searchable",
        _ => "",
    };
    let url = format!("{}/v1/logs/{}/events{wait}", a.url.trim_end_matches('/'), a.log);
    if !a.events.is_empty() {
        post(&agent, &url, &a.events)?;
        return Ok(0);
    }
    let mut batch = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line.context("reading standard input")?;
        if line.trim().is_empty() {
            continue;
        }
        batch.push(line);
        if batch.len() == LINES_PER_REQUEST {
            post(&agent, &url, &batch)?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        post(&agent, &url, &batch)?;
    }
    Ok(0)
}
