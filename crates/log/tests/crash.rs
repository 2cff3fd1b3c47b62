//! Crash consistency on the simulated disk: the plug is pulled after a
//! random number of storage operations, unsynced data is torn at random,
//! and after recovery every acknowledged entry and checkpoint is present and
//! the log verifies. Segments are small (256 entries) and compaction runs
//! beside the writers, so crashes also hit segment changes and compaction. Reproducible from the proptest seed (single writer
//! thread) or from the loop seed (concurrent submitters).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use common::*;
use custos_log::sim::SimStorage;
use proptest::prelude::*;

struct World {
    image: BTreeMap<String, Vec<u8>>,
    /// Every acknowledged entry, by index.
    acked: BTreeMap<u64, Vec<u8>>,
    /// The largest checkpoint size reported as signed.
    signed: u64,
}

/// One life of the log: reopen the image, check it, append until the plug
/// is pulled, and leave the new image in `world`. Returns how many commits
/// an appending task made itself.
fn life(world: &mut World, round: u64, seed: u64, threads: usize, via_runtime: bool) -> u64 {
    let storage = Arc::new(SimStorage::from_image(std::mem::take(&mut world.image), seed ^ round));
    let log = Arc::new(open_small_segments(storage.clone()));
    let size = log.size();

    // Everything acknowledged survived, at its index.
    for (i, e) in &world.acked {
        assert!(*i < size, "acknowledged entry {i} lost: log has {size}");
        assert_eq!(&log.entry(*i).unwrap(), e, "entry {i} changed");
    }
    assert!(log.checkpoint().map_or(0, |c| c.checkpoint.size) >= world.signed, "signed checkpoint lost");
    verify(&*storage).unwrap_or_else(|e| panic!("round {round}: {e}"));
    // Recovered entries are now durable and become part of the record.
    for i in 0..size {
        world.acked.entry(i).or_insert_with(|| log.entry(i).unwrap());
    }

    let mut rng = Rng(seed.wrapping_mul(31).wrapping_add(round) | 1);
    storage.crash_after(rng.below(120));
    let attempted = Arc::new(Mutex::new(HashSet::new()));
    let acked = Arc::new(Mutex::new(Vec::new()));
    // With `via_runtime`, submitters append through a multi-threaded
    // runtime, with pauses, so that many of their appends commit on their
    // own thread (an idle log), interleaved with the writer thread's.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_time().build().unwrap();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (log, attempted, acked) = (log.clone(), attempted.clone(), acked.clone());
            let mut rng = Rng(rng.next() | 1);
            let handle = rt.handle().clone();
            std::thread::spawn(move || {
                for n in 0..60 {
                    let batch: Vec<Vec<u8>> =
                        (0..1 + rng.below(12)).map(|k| entry(&format!("r{round}t{t}n{n}k{k}"), &mut rng)).collect();
                    attempted.lock().unwrap().extend(batch.iter().cloned());
                    let appended = if via_runtime {
                        std::thread::sleep(std::time::Duration::from_micros(60 + rng.below(60)));
                        handle.block_on(log.append_hashed(&batch)).map(|(r, _)| r)
                    } else {
                        log.append_blocking(&batch)
                    };
                    match appended {
                        Ok(r) => acked.lock().unwrap().extend(r.zip(batch)),
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    let mut signed = world.signed;
    for _ in 0..10 {
        match log.sign_checkpoint() {
            Ok(Some(c)) => signed = signed.max(c.checkpoint.size),
            Ok(None) => {}
            Err(_) => break,
        }
        if log.compact().is_err() {
            break;
        }
        std::thread::yield_now();
    }
    for h in handles {
        h.join().unwrap();
    }
    drop(rt);
    let direct_commits = log.stats().direct_commits;
    drop(log);
    for (i, e) in acked.lock().unwrap().drain(..) {
        assert!(world.acked.insert(i, e).is_none(), "index {i} acknowledged twice");
    }
    world.signed = signed;
    world.image = storage.crash_image();

    // Unacknowledged entries may survive, but only whole and in order, and
    // only ones that were really sent: checked on the next reopen.
    let check = Arc::new(SimStorage::from_image(world.image.clone(), 0));
    let log = open_small_segments(check);
    let attempted = attempted.lock().unwrap();
    for i in 0..log.size() {
        let e = log.entry(i).unwrap();
        match world.acked.get(&i) {
            Some(a) => assert_eq!(&e, a),
            None => assert!(attempted.contains(&e), "entry {i} was never sent"),
        }
    }
    direct_commits
}

/// Runs `rounds` lives; returns how many commits appending tasks made
/// themselves.
fn run(seed: u64, rounds: u64, threads: usize, via_runtime: bool) -> u64 {
    let mut world = World { image: BTreeMap::new(), acked: BTreeMap::new(), signed: 0 };
    let mut direct_commits = 0;
    for round in 0..rounds {
        direct_commits += life(&mut world, round, seed, threads, via_runtime);
    }
    // A final clean reopen verifies.
    let storage = Arc::new(SimStorage::from_image(world.image, seed));
    let log = open_small_segments(storage.clone());
    assert!(log.size() >= world.acked.len() as u64);
    // Compacting what is left keeps every entry, and leaves only the
    // segment being written.
    log.compact().unwrap();
    for (i, e) in &world.acked {
        assert_eq!(&log.entry(*i).unwrap(), e, "entry {i} changed by compaction");
    }
    let size = log.size();
    drop(log);
    verify(&*storage).unwrap();
    let image = storage.crash_image();
    let segments = image.keys().filter(|k| k.starts_with("entries.")).count();
    assert_eq!(segments, 1, "{:?}", image.keys().collect::<Vec<_>>());
    assert_eq!(image["bundles"].len() > 16, size > 256, "size {size}");
    direct_commits
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn single_writer_crashes_lose_nothing_acknowledged(seed in any::<u64>(), rounds in 1u64..5) {
        run(seed, rounds, 1, false);
    }
}

#[test]
fn concurrent_writers_crashes_lose_nothing_acknowledged() {
    for seed in 1..=24u64 {
        run(seed * 0x9E37_79B9, 4, 3, false);
    }
}

/// Submitters that append with pauses through a runtime: many of their
/// appends commit on their own thread.
#[test]
fn direct_commits_crashes_lose_nothing_acknowledged() {
    let direct_commits: u64 = (1..=24u64).map(|seed| run(seed * 0x2545_F491, 4, 2, true)).sum();
    assert!(direct_commits > 0, "no append committed on its own thread");
}
