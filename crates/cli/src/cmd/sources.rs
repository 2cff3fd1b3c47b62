//! `custos sources`: the health of every source, from a running server.

use anyhow::Context;
use serde_json::Value;

use crate::http;

/// Arguments of `custos sources`.
#[derive(clap::Args)]
pub struct Args {
    /// Server URL.
    #[arg(long, env = "CUSTOS_URL", default_value = "http://127.0.0.1:7600")]
    url: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs the command: exit 0 if every source is healthy, 1 if one is
/// silent or has gaps.
pub fn run(a: Args) -> anyhow::Result<i32> {
    let body = http::get_ok(&http::agent(), &format!("{}/v1/sources", a.url.trim_end_matches('/')))?;
    let v: Value = serde_json::from_slice(&body).context("parsing sources")?;
    let sources = v["sources"].as_array().context("answer has no sources")?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{:<32} {:<26} {:>10} {:>9} {:>6} STATE", "SOURCE", "LAST SEEN", "EVENTS", "PER SEC", "GAPS");
        for s in sources {
            let state = if s["silent"] == true {
                "SILENT"
            } else if s["gaps"].as_u64() > Some(0) {
                "GAPS"
            } else {
                "ok"
            };
            println!(
                "{:<32} {:<26} {:>10} {:>9.1} {:>6} {state}",
                s["source"].as_str().unwrap_or(""),
                s["last_seen"].as_str().unwrap_or(""),
                s["events"],
                s["events_per_sec"].as_f64().unwrap_or(0.0),
                s["gaps"]
            );
        }
    }
    let unhealthy = sources.iter().any(|s| s["silent"] == true || s["gaps"].as_u64() > Some(0));
    Ok(if unhealthy { 1 } else { 0 })
}
