//! `custos search`: query a log from the command line.

use std::io::Write;

use anyhow::bail;
use serde_json::Value;

use crate::http;

/// Arguments of `custos search`.
#[derive(clap::Args)]
pub struct Args {
    /// The query (see docs/query.md), such as
    /// 'actor.user.name:alice AND status:failure'.
    query: String,
    /// Server URL.
    #[arg(long, env = "CUSTOS_URL", default_value = "http://127.0.0.1:7600")]
    url: String,
    /// The log to search.
    #[arg(long, env = "CUSTOS_SEARCH_LOG", default_value = "default")]
    log: String,
    /// Only events of the last DURATION (such as 24h, 7d, 30m).
    #[arg(long)]
    since: Option<String>,
    /// At most this many hits; 0 for all of them, page by page.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Oldest first instead of newest first.
    #[arg(long)]
    oldest_first: bool,
    /// table, json, ndjson or csv.
    #[arg(long, default_value = "table")]
    output: String,
}

/// Table columns: a heading and the field shown.
const COLUMNS: [(&str, &str); 7] = [
    ("index", "index"),
    ("time", "time"),
    ("actor", "actor.user.name"),
    ("activity", "activity"),
    ("status", "status"),
    ("source", "src_endpoint.ip"),
    ("resource", "resource.name"),
];

/// CSV columns: those of the server's CSV export (`format=csv`), so that a
/// page and a whole export read alike.
const CSV_COLUMNS: [&str; 8] =
    ["index", "time", "actor.user.name", "activity", "status", "src_endpoint.ip", "resource.name", "leaf_hash"];

fn cell(hit: &Value, path: &str) -> String {
    let v = match path {
        "index" | "leaf_hash" => &hit[path],
        _ => path.split('.').fold(&hit["event"], |v, k| &v[k]),
    };
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

/// Runs the command.
pub fn run(a: Args) -> anyhow::Result<i32> {
    if !["table", "json", "ndjson", "csv"].contains(&a.output.as_str()) {
        bail!("--output must be table, json, ndjson or csv");
    }
    if a.limit == 0 && !["ndjson", "csv"].contains(&a.output.as_str()) {
        bail!("--limit 0 (every hit) needs --output ndjson or csv, which stream in constant memory");
    }
    let want = if a.limit == 0 { usize::MAX } else { a.limit };
    let mut base = format!("{}/v1/logs/{}/search?q={}", a.url.trim_end_matches('/'), a.log, http::enc(&a.query));
    if let Some(s) = &a.since {
        base.push_str(&format!("&start=now-{}", http::enc(s)));
    }
    if a.oldest_first {
        base.push_str("&order=asc");
    }
    let out = std::io::stdout();
    let mut out = out.lock();
    if a.limit == 0 {
        // Every hit: the server streams them, in one read of the log.
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
        http::get_to(&http::streaming_agent(), &format!("{base}&format={}", a.output), &mut out)?;
        out.flush()?;
        return Ok(0);
    }
    let agent = http::agent();
    let (mut hits, mut got, mut cursor) = (Vec::new(), 0usize, None::<u64>);
    let mut total: u64;
    loop {
        let page = (want - got).min(1000);
        let mut url = format!("{base}&limit={page}");
        if let Some(c) = cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let v = http::get_json(&agent, &url)?;
        if a.output == "csv" && cursor.is_none() {
            writeln!(out, "{}", CSV_COLUMNS.join(","))?;
        }
        total = v["total"].as_u64().unwrap_or(0);
        for h in v["hits"].as_array().cloned().unwrap_or_default() {
            got += 1;
            match a.output.as_str() {
                // Streamed, so that exporting every hit needs no memory.
                "ndjson" => writeln!(out, "{h}")?,
                "csv" => writeln!(out, "{}", CSV_COLUMNS.map(|c| csv_field(&cell(&h, c))).join(","))?,
                _ => hits.push(h),
            }
        }
        cursor = v["next_cursor"].as_u64();
        if cursor.is_none() || got >= want {
            break;
        }
    }
    match a.output.as_str() {
        "json" => {
            writeln!(out, "{}", serde_json::to_string_pretty(&serde_json::json!({"total": total, "hits": hits}))?)?
        }
        "table" => {
            let rows: Vec<Vec<String>> = hits.iter().map(|h| COLUMNS.iter().map(|c| cell(h, c.1)).collect()).collect();
            let widths: Vec<usize> = (0..COLUMNS.len())
                .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0).max(COLUMNS[i].0.len()).min(40))
                .collect();
            let line = |cells: Vec<String>| {
                cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{:<w$}", c.chars().take(*w).collect::<String>(), w = *w))
                    .collect::<Vec<_>>()
                    .join("  ")
            };
            writeln!(out, "{}", line(COLUMNS.iter().map(|c| c.0.to_uppercase()).collect()))?;
            for r in rows {
                writeln!(out, "{}", line(r))?;
            }
            writeln!(out, "{} of {total} matching events", hits.len())?;
        }
        _ => {}
    }
    Ok(0)
}
