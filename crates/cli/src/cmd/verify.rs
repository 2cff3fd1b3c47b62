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
    /// The data directory to verify.
    #[arg(long, env = "CUSTOS_DATA")]
    data: PathBuf,
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
    let verifier = match &a.key {
        Some(k) => NoteVerifier::parse(k).context("parsing --key")?,
        None => {
            let v = load_signer(&a.data.join(KEY_FILE))?.verifier();
            eprintln!(
                "note: using the data directory's own key {}; pass --key to check against a key you hold",
                v.to_key_string()
            );
            v
        }
    };
    let logs_dir = a.data.join(LOGS_DIR);
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
