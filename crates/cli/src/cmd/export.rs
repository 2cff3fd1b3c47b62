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
    /// Instead of a range: every hit of this search (docs/query.md), each
    /// with its inclusion proof, against a checkpoint signed for the
    /// purpose if need be.
    #[arg(long, conflicts_with_all = ["start", "end"])]
    query: Option<String>,
    /// With --query: only events of the last DURATION (such as 24h, 7d).
    #[arg(long, requires = "query")]
    since: Option<String>,
    /// Output file [default: standard output].
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Counts the entries of a bundle the server streams (each starts on a
/// new line) and keeps its opening (up to the first line end), which names
/// the checkpoint.
struct Counting<W> {
    inner: W,
    newlines: u64,
    head: Vec<u8>,
    head_done: bool,
}

impl<W: std::io::Write> std::io::Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        let buf = &buf[..n];
        if !self.head_done {
            let end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
            self.head.extend_from_slice(&buf[..end]);
            self.head_done = end < buf.len() || self.head.len() > 1 << 20;
        }
        self.newlines += buf.iter().filter(|&&b| b == b'\n').count() as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// `--query`: the server streams the bundle; it goes to the output as it
/// comes.
fn run_query(a: &Args, q: &str) -> anyhow::Result<i32> {
    let enc = http::enc;
    let mut url = format!("{}/v1/logs/{}/search?format=bundle&q={}", a.url.trim_end_matches('/'), a.log, enc(q));
    if let Some(s) = &a.since {
        url.push_str(&format!("&start=now-{}", enc(s)));
    }
    let out: Box<dyn std::io::Write> = match &a.out {
        Some(p) => Box::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut w = Counting {
        inner: std::io::BufWriter::with_capacity(64 * 1024, out),
        newlines: 0,
        head: Vec::new(),
        head_done: false,
    };
    let done = http::get_to(&http::streaming_agent(), &url, &mut w)
        .and_then(|_| std::io::Write::flush(&mut w).map_err(Into::into));
    if let Err(e) = done {
        // No partial bundle is left behind to be mistaken for a whole one.
        if let Some(p) = &a.out {
            let _ = std::fs::remove_file(p);
        }
        return Err(e);
    }
    if let Some(p) = &a.out {
        std::fs::File::open(p)?.sync_all()?;
    }
    // The opening, closed, is JSON; entries follow one per line, then the
    // closing line.
    w.head.extend_from_slice(b"]}");
    let head: Value = serde_json::from_slice(&w.head).context("the bundle's opening")?;
    let size = head["checkpoint"].as_str().and_then(|n| n.lines().nth(1)).unwrap_or("?");
    eprintln!(
        "exported {} search hits of {} proven against checkpoint size {size}",
        w.newlines.saturating_sub(2),
        a.log
    );
    Ok(0)
}

/// Runs the command.
pub fn run(a: Args) -> anyhow::Result<i32> {
    if let Some(q) = &a.query {
        return run_query(&a, q);
    }
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
