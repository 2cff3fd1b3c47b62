//! `custos verify`: the auditor's offline check of a data directory.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, bail};
use custos_log::storage::FsStorage;
use custos_log::store::{KEY_FILE, LOGS_DIR, load_signer};
use custos_log::verify::verify_log;
use custos_tlog::note::NoteVerifier;

/// Arguments of `custos verify`.
#[derive(clap::Args)]
pub struct Args {
    /// The data directory to verify offline.
    #[arg(long, env = "CUSTOS_DATA", conflicts_with_all = ["url", "bundle"])]
    data: Option<PathBuf>,
    /// A live log's tiles URL, `http://HOST/tlog/LOG`: verified on this
    /// side from its tiles, and against the last checkpoint verified.
    #[arg(long, requires = "key", conflicts_with = "bundle")]
    url: Option<String>,
    /// Where `--url` keeps the last verified checkpoint.
    #[arg(long)]
    state: Option<PathBuf>,
    /// An exported bundle (`custos export`), checked with no server.
    #[arg(long, requires = "key")]
    bundle: Option<PathBuf>,
    /// Verify only this log.
    #[arg(long)]
    log: Option<String>,
    /// The verifier key (`name+id+key`). Without it the key is derived
    /// from the data directory's signing key, which proves integrity only
    /// against someone who could not also replace that key.
    #[arg(long)]
    key: Option<String>,
}

/// Runs the command: 0 if every log verifies, 1 if one fails.
pub fn run(a: Args) -> anyhow::Result<i32> {
    if let Some(url) = &a.url {
        return run_url(url, a.key.as_deref().unwrap_or_default(), a.state.as_deref());
    }
    if let Some(path) = &a.bundle {
        return run_bundle(path, a.key.as_deref().unwrap_or_default());
    }
    let Some(data) = a.data.clone() else { bail!("give --data DIR, --url URL or --bundle FILE") };
    let verifier = match &a.key {
        Some(k) => NoteVerifier::parse(k).context("parsing --key")?,
        None => {
            let v = load_signer(&data.join(KEY_FILE))?.verifier();
            eprintln!(
                "note: using the data directory's own key {}; pass --key to check against a key you hold",
                v.to_key_string()
            );
            v
        }
    };
    let logs_dir = data.join(LOGS_DIR);
    let names: Vec<String> = match &a.log {
        Some(l) => vec![l.clone()],
        None => {
            let mut v: Vec<String> = std::fs::read_dir(&logs_dir)
                .with_context(|| format!("reading {}", logs_dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().to_string()))
                .collect();
            v.sort();
            v
        }
    };
    if names.is_empty() {
        bail!("no logs in {}", logs_dir.display());
    }
    let mut failed = 0;
    for name in &names {
        let dir = logs_dir.join(name);
        if !dir.is_dir() {
            bail!("log {name:?} does not exist in {}", logs_dir.display());
        }
        let storage = FsStorage::open(&dir)?;
        let origin = format!("{}/{name}", verifier.name());
        let bar = progress_bar(name);
        let started = std::time::Instant::now();
        let result = verify_log(&storage, &origin, &verifier, &mut |done, total| {
            if let Some(b) = &bar {
                b.set_length(total);
                b.set_position(done);
            }
        });
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        match result {
            Ok(r) => {
                let secs = started.elapsed().as_secs_f64();
                let latest =
                    r.latest.as_ref().map_or("none".to_string(), |c| format!("size {} root {}", c.size, c.root));
                println!(
                    "OK   {name}: {} entries, {} hash tiles, {} checkpoints (latest {latest}), {} entries not yet signed; {:.0} entries/s",
                    r.entries,
                    r.hash_tiles,
                    r.checkpoints,
                    r.unsigned_entries,
                    r.entries as f64 / secs.max(1e-9)
                );
                if r.hashes_missing > 0 {
                    println!(
                        "     {name}: the stored hashes of the last {} entries are missing (the hashes file is a cache \
                         that a crash or a full disk can leave short; the server rebuilds it when it opens the log); \
                         recomputed and checked",
                        r.hashes_missing
                    );
                }
            }
            Err(e) => {
                failed += 1;
                println!("FAIL {name}: {e}");
            }
        }
    }
    println!("{} of {} logs verified", names.len() - failed, names.len());
    Ok(if failed == 0 { 0 } else { 1 })
}

fn progress_bar(name: &str) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let b = indicatif::ProgressBar::new(0);
    b.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    b.set_message(name.to_string());
    Some(b)
}

fn run_url(url: &str, key: &str, state: Option<&std::path::Path>) -> anyhow::Result<i32> {
    let verifier = NoteVerifier::parse(key).context("parsing --key")?;
    let state = state.map(PathBuf::from).unwrap_or_else(|| crate::remote::default_state_path(url));
    match crate::remote::verify_url(url, &verifier, &state) {
        Ok(r) => {
            let from = r
                .previous_size
                .map_or("no earlier checkpoint".to_string(), |s| format!("consistent with size {s} verified before"));
            println!(
                "OK   {url}: checkpoint {} size {} root {}; {} tiles and bundles recomputed; {from}",
                r.checkpoint.origin, r.checkpoint.size, r.checkpoint.root, r.tiles
            );
            Ok(0)
        }
        Err(e) => {
            println!("FAIL {url}: {e:#}");
            Ok(1)
        }
    }
}

fn run_bundle(path: &std::path::Path, key: &str) -> anyhow::Result<i32> {
    let verifier = NoteVerifier::parse(key).context("parsing --key")?;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let bundle: crate::remote::Bundle =
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))?;
    match crate::remote::verify_bundle(&bundle, &verifier) {
        Ok((cp, n)) => {
            println!(
                "OK   {}: {n} entries proven in checkpoint {} size {} root {}",
                path.display(),
                cp.origin,
                cp.size,
                cp.root
            );
            Ok(0)
        }
        Err(e) => {
            println!("FAIL {}: {e:#}", path.display());
            Ok(1)
        }
    }
}
