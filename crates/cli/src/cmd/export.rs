//! `custos export`: a self-contained bundle of entries with inclusion
//! proofs against one signed checkpoint, checkable with
//! `custos verify --bundle FILE --key KEY` and no server.

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::http;
use crate::remote::{Bundle, BundleEntry};

/// Entries fetched per request.
const PAGE_ENTRIES: u64 = 1000;

/// Arguments of `custos export`.
#[derive(clap::Args)]
pub struct Args {
    /// Server URL.
    #[arg(long, env = "CUSTOS_URL", default_value = "http://127.0.0.1:7600")]
    url: String,
    /// The log.
    #[arg(long)]
    log: String,
    /// First index [default: 0].
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// End index, exclusive [default: the latest checkpoint's size].
    #[arg(long)]
    end: Option<u64>,
    /// Output file [default: standard output].
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Runs the command.
pub fn run(a: Args) -> anyhow::Result<i32> {
    let agent = http::agent();
    let base = format!("{}/v1/logs/{}", a.url.trim_end_matches('/'), a.log);
    let info: Value = serde_json::from_slice(&http::get_ok(&agent, &base)?)?;
    let Some(size) = info["checkpoint"]["size"].as_u64() else { bail!("log {} has no checkpoint yet", a.log) };
    let note = info["checkpoint"]["note"].as_str().context("checkpoint note")?.to_string();
    let end = a.end.unwrap_or(size);
    if end > size || a.start > end {
        bail!("range {}..{end} is outside the latest checkpoint's {size} entries", a.start);
    }
    let mut entries = Vec::new();
    let mut start = a.start;
    while start < end {
        let stop = (start + PAGE_ENTRIES).min(end);
        // Read straight into bundle entries: the other fields of each entry
        // (its event, leaf hash) are skipped unparsed.
        #[derive(serde::Deserialize)]
        struct Page {
            entries: Vec<BundleEntry>,
        }
        let page: Page = serde_json::from_slice(&http::get_ok(
            &agent,
            &format!("{base}/entries?start={start}&end={stop}&tree_size={size}"),
        )?)
        .with_context(|| format!("the entries {start}..{stop} with their proofs"))?;
        if page.entries.len() as u64 != stop - start || page.entries.iter().zip(start..).any(|(e, i)| e.index != i) {
            bail!("the server answered other entries than {start}..{stop}");
        }
        entries.extend(page.entries);
        start = stop;
    }
    let bundle = Bundle { format: "custos-bundle-v1".into(), log: a.log.clone(), checkpoint: note, entries };
    let bytes = serde_json::to_vec_pretty(&bundle)?;
    match &a.out {
        Some(p) => std::fs::write(p, bytes).with_context(|| format!("writing {}", p.display()))?,
        None => {
            use std::io::Write;
            std::io::stdout().write_all(&bytes)?;
        }
    }
    eprintln!("exported {} entries of {} proven against checkpoint size {size}", bundle.entries.len(), a.log);
    Ok(0)
}
