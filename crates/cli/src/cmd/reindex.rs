//! `custos reindex`: deletes the search indexes of a data directory and
//! rebuilds them from the logs, which stay the only source of truth. The
//! server does the same by itself at start for an index that is missing,
//! corrupt or behind; this command is for doing it on purpose, offline,
//! and for measuring the index build rate.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use custos_index::engine::LogIndex;
use custos_log::store::LOGS_DIR;
use custos_log::{LogStore, StoreConfig};

/// Entries indexed per commit.
const STEP_ENTRIES: u64 = 1_000_000;
/// Indexing buffers of the rebuild, shared by its threads; the server's
/// indexer uses far less (`custos_index::engine::WRITER_MEMORY_BYTES`).
const REBUILD_MEMORY_BYTES: usize = 512 << 20;

/// Arguments of `custos reindex`.
#[derive(clap::Args)]
pub struct Args {
    /// The data directory. The server must be stopped: the directory is
    /// locked while either has it open.
    #[arg(long, env = "CUSTOS_DATA", default_value = "custos-data")]
    data: PathBuf,
    /// Rebuild only this log's index.
    #[arg(long)]
    log: Option<String>,
}

/// CPU time this process has used, user plus system.
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Runs the command.
pub fn run(a: Args) -> anyhow::Result<i32> {
    if !a.data.join(LOGS_DIR).is_dir() {
        bail!("{} is not a custos data directory (it has no {LOGS_DIR}/)", a.data.display());
    }
    let store = LogStore::open(StoreConfig::new(&a.data))
        .with_context(|| format!("opening data directory {}", a.data.display()))?;
    let logs: Vec<_> = store.list().into_iter().filter(|(n, _)| a.log.as_ref().is_none_or(|l| l == n)).collect();
    if let (Some(l), true) = (&a.log, logs.is_empty()) {
        bail!("log {l:?} does not exist in {}", a.data.display());
    }
    for (name, log) in logs {
        let dir = store.dir().join("index").join(&name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("deleting {}", dir.display()))?;
        }
        let (started, cpu) = (Instant::now(), cpu_time());
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let ix = LogIndex::open_with(&dir, log.size(), threads, REBUILD_MEMORY_BYTES)
            .with_context(|| format!("creating {}", dir.display()))?;
        let mut n = 0;
        loop {
            let added = ix.catch_up(&log, STEP_ENTRIES).with_context(|| format!("indexing {name}"))?;
            if added == 0 {
                break;
            }
            n += added;
        }
        // Commits skip fsync; closing syncs the whole index once.
        ix.close().with_context(|| format!("syncing the index of {name}"))?;
        let (wall, cpu) = (started.elapsed().as_secs_f64(), (cpu_time() - cpu).as_secs_f64());
        println!(
            "{name}: {n} entries indexed in {wall:.1} s = {:.0} entries/s; CPU {cpu:.1} s = {:.0} entries per CPU-second",
            n as f64 / wall.max(1e-9),
            n as f64 / cpu.max(1e-9)
        );
    }
    Ok(0)
}
