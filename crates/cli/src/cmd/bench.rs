//! `custos bench log`: append throughput, single-append latency and verify
//! throughput of the log, each beside a baseline measured in the same run.

use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use custos_log::log::{Log, LogConfig};
use custos_log::storage::FsStorage;
use custos_log::verify::verify_log;
use custos_tlog::hash::leaf_hash;
use custos_tlog::note::NoteSigner;

/// Arguments of `custos bench`.
#[derive(clap::Args)]
pub struct Args {
    /// Work in a fresh directory under this one (on the disk to measure).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Entries to append in the throughput run.
    #[arg(long, default_value_t = 2_000_000)]
    entries: usize,
    /// Entries per append request (one fsync each with one submitter).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Bytes per entry.
    #[arg(long, default_value_t = 300)]
    size: usize,
    /// Concurrent submitters in the throughput run.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Single appends in the latency run.
    #[arg(long, default_value_t = 3000)]
    latency_count: usize,
}

fn entries(n: usize, size: usize, salt: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut e = format!("{{\"i\":{},\"s\":{salt},\"actor\":\"user{}\",\"pad\":\"", i, i % 10_000).into_bytes();
            while e.len() < size - 2 {
                e.push(b'a' + (e.len() % 26) as u8);
            }
            e.extend_from_slice(b"\"}");
            e
        })
        .collect()
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Runs the command.
pub fn run(a: Args) -> anyhow::Result<i32> {
    let tmp = tempfile::Builder::new().prefix("custos-bench-").tempdir_in(&a.dir).context("creating bench dir")?;
    let signer = NoteSigner::from_seed("bench.local", [1; 32]).map_err(anyhow::Error::msg)?;
    let origin = "bench.local/bench";
    let log_dir = tmp.path().join("log");
    let log = Arc::new(Log::open(Arc::new(FsStorage::open(&log_dir)?), LogConfig::new(origin), signer.clone())?);

    // 1. Append throughput.
    let per_thread = a.entries / a.threads;
    let data: Vec<Vec<Vec<u8>>> = (0..a.threads).map(|t| entries(per_thread, a.size, t)).collect();
    let started = Instant::now();
    std::thread::scope(|s| {
        for d in &data {
            let log = log.clone();
            s.spawn(move || {
                for chunk in d.chunks(a.batch) {
                    log.append_blocking(chunk).expect("append");
                }
            });
        }
    });
    let secs = started.elapsed().as_secs_f64();
    let st = log.stats();
    log.sign_checkpoint()?;
    let total = per_thread * a.threads;
    println!("## append throughput");
    println!(
        "{total} entries of {} bytes in requests of {}, {} submitter(s): {:.3} s, {:.0} entries/s, {:.1} MB/s, {} fsyncs ({:.1} entries per fsync, mean fsync {:.0} us)",
        a.size,
        a.batch,
        a.threads,
        secs,
        total as f64 / secs,
        (total * a.size) as f64 / secs / 1e6,
        st.commits,
        st.entries as f64 / st.commits as f64,
        st.fsync_ns as f64 / st.commits as f64 / 1e3
    );

    // 2. Single-append latency against raw fdatasync on the same disk.
    let one = entries(a.latency_count, a.size, 99);
    let mut lat = Vec::with_capacity(one.len());
    let before = log.stats();
    for e in &one {
        let t = Instant::now();
        log.append_blocking(&[e])?;
        lat.push(t.elapsed());
    }
    lat.sort();
    let after = log.stats();
    let writer_fsync_us =
        (after.fsync_ns - before.fsync_ns) as f64 / (after.commits - before.commits).max(1) as f64 / 1e3;
    let raw_path = tmp.path().join("raw-fsync");
    let mut f = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&raw_path)?;
    let mut raw = Vec::with_capacity(one.len());
    for e in &one {
        let t = Instant::now();
        f.write_all(e)?;
        f.sync_data()?;
        raw.push(t.elapsed());
    }
    raw.sort();
    // The log writes over zeroed space (docs/format.md): the same writes
    // and fdatasyncs over a file zeroed and synced beforehand.
    let zeroed_path = tmp.path().join("raw-zeroed");
    let z = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(&zeroed_path)?;
    let total: usize = one.iter().map(Vec::len).sum();
    z.write_all_at(&vec![0u8; total], 0)?;
    z.sync_all()?;
    let mut over = Vec::with_capacity(one.len());
    let mut at = 0u64;
    for e in &one {
        let t = Instant::now();
        z.write_all_at(e, at)?;
        z.sync_data()?;
        over.push(t.elapsed());
        at += e.len() as u64;
    }
    over.sort();
    println!("## single-append latency ({} appends of {} bytes)", a.latency_count, a.size);
    println!("raw write+fdatasync over zeroed space: p50 {:?} p99 {:?}", pct(&over, 0.5), pct(&over, 0.99));
    println!(
        "custos append: p50 {:?} p99 {:?} (mean fdatasync in the writer {writer_fsync_us:.0} µs) | raw write+fdatasync: p50 {:?} p99 {:?} | p99 ratio {:.2}",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        pct(&raw, 0.5),
        pct(&raw, 0.99),
        pct(&lat, 0.99).as_secs_f64() / pct(&raw, 0.99).as_secs_f64()
    );
    log.sign_checkpoint()?;
    let size = log.size();
    drop(log);

    // 3. Verify throughput against SHA-256 of the same entries alone.
    let started = Instant::now();
    let r = verify_log(&FsStorage::open(&log_dir)?, origin, &signer.verifier(), &mut |_, _| {})
        .map_err(|e| anyhow::anyhow!("verify failed: {e}"))?;
    let vsecs = started.elapsed().as_secs_f64();
    assert_eq!(r.entries, size);
    let started = Instant::now();
    let mut x = 0u8;
    for d in &data {
        for e in d {
            x ^= leaf_hash(e).0[0];
        }
    }
    let hsecs = started.elapsed().as_secs_f64();
    println!("## verify throughput ({size} entries)");
    println!(
        "custos verify: {:.3} s, {:.0} entries/s | baseline, SHA-256 leaf hashes only: {:.0} entries/s (ratio {:.2}) [{x}]",
        vsecs,
        size as f64 / vsecs,
        total as f64 / hsecs,
        (size as f64 / vsecs) / (total as f64 / hsecs)
    );
    Ok(0)
}
