//! `custos top`: counts from the command line, through the aggregation API
//! (`GET /v1/logs/{log}/aggregate`): the most frequent values of a field
//! among matching events, or a histogram of their times.

use std::io::Write;

use anyhow::bail;
use serde_json::Value;

use crate::http;

/// Arguments of `custos top`.
#[derive(clap::Args)]
pub struct Args {
    /// The query (see docs/query.md); all events if left out.
    #[arg(default_value = "")]
    query: String,
    /// Server URL.
    #[arg(long, env = "CUSTOS_URL", default_value = "http://127.0.0.1:7600")]
    url: String,
    /// The log.
    #[arg(long, env = "CUSTOS_SEARCH_LOG", default_value = "default")]
    log: String,
    /// Count the values of this field, such as actor.user.name or
    /// targets.name.
    #[arg(long, conflicts_with = "interval", required_unless_present = "interval")]
    by: Option<String>,
    /// How many values, the most frequent first.
    #[arg(long, default_value_t = 10)]
    top: u32,
    /// Instead of --by: a histogram of the events' times with buckets of
    /// this length (such as 1h, 30m, 1d).
    #[arg(long)]
    interval: Option<String>,
    /// Only events of the last DURATION (such as 24h, 7d, 30m).
    #[arg(long)]
    since: Option<String>,
    /// table or json.
    #[arg(long, default_value = "table")]
    output: String,
}

/// Runs the command.
pub fn run(a: Args) -> anyhow::Result<i32> {
    if !["table", "json"].contains(&a.output.as_str()) {
        bail!("--output must be table or json");
    }
    let mut url = format!("{}/v1/logs/{}/aggregate?q={}", a.url.trim_end_matches('/'), a.log, http::enc(&a.query));
    match (&a.by, &a.interval) {
        (Some(by), _) => url.push_str(&format!("&by={}&top={}", http::enc(by), a.top)),
        (None, Some(i)) => url.push_str(&format!("&interval={}", http::enc(i))),
        (None, None) => bail!("give --by FIELD or --interval LENGTH"),
    }
    if let Some(s) = &a.since {
        url.push_str(&format!("&start=now-{}", http::enc(s)));
    }
    let v = http::get_json(&http::agent(), &url)?;
    let mut out = std::io::stdout().lock();
    if a.output == "json" {
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(0);
    }
    let buckets = v["buckets"].as_array().cloned().unwrap_or_default();
    let key = |b: &Value| match &b["key"] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let heading = a.by.as_deref().unwrap_or("time").to_uppercase();
    let width = buckets.iter().map(|b| key(b).chars().count()).max().unwrap_or(0).max(heading.len()).min(60);
    let most = buckets.iter().filter_map(|b| b["count"].as_u64()).max().unwrap_or(0).max(1);
    writeln!(out, "{heading:<width$}  {:>10}", "EVENTS")?;
    for b in &buckets {
        let count = b["count"].as_u64().unwrap_or(0);
        // A bar of up to 30 characters, scaled to the largest count.
        let bar = "#".repeat(((count * 30).div_ceil(most)) as usize);
        let k: String = key(b).chars().take(width).collect();
        writeln!(out, "{k:<width$}  {count:>10}  {bar}")?;
    }
    Ok(0)
}
