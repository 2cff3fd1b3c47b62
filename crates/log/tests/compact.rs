//! Compaction: full segments become zstd-compressed bundles in the bundles
//! file and are removed. Reads, proofs and tiles are the same before and
//! after; a crash at any point, a format-1 log, and tampering with the
//! bundles are all handled.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use custos_log::sim::SimStorage;
use custos_log::storage::{FsStorage, Storage};

type Image = BTreeMap<String, Vec<u8>>;

fn entries(n: usize, tag: &str) -> Vec<Vec<u8>> {
    let mut rng = Rng(7);
    (0..n).map(|i| entry(&format!("{tag}-{i}"), &mut rng)).collect()
}

fn segments(img: &Image) -> Vec<String> {
    img.keys().filter(|k| k.starts_with("entries.")).cloned().collect()
}

/// 1,000 entries in uneven batches over segments of 256 entries, with
/// checkpoints along the way.
fn build(storage: Arc<dyn Storage>) -> (custos_log::Log, Vec<Vec<u8>>) {
    let log = open_small_segments(storage);
    let all = entries(1000, "e");
    let mut at = 0;
    for (k, n) in [1, 300, 5, 250, 200, 244].iter().enumerate() {
        log.append_blocking(&all[at..at + n]).unwrap();
        at += n;
        if k % 2 == 1 {
            log.sign_checkpoint().unwrap();
        }
    }
    log.sign_checkpoint().unwrap();
    (log, all)
}

/// Entries, entry bundles (data tiles), hash tiles, inclusion proofs.
type Snapshot = (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<Vec<custos_tlog::Hash>>);

/// Everything a client can read from the log.
fn snapshot(log: &custos_log::Log) -> Snapshot {
    let size = log.size();
    let all = log.entries(0, size).unwrap();
    let bundles =
        (0..size.div_ceil(256)).map(|b| log.entry_bundle(b, (size - b * 256).min(256) as u16).unwrap()).collect();
    let tiles = (0..size / 256).map(|t| log.hash_tile(0, t, 256).unwrap()).collect();
    let proofs = [0, 1, 255, 256, 511, 700, size - 1].iter().map(|&i| log.inclusion_proof(i, size).unwrap()).collect();
    // Hits as search reads them: scattered, repeated, across frames.
    let hits = [size - 1, 3, 700, 64, 63, 300, 3, 191, 192, 0];
    let scattered = log.entries_at(&hits).unwrap();
    for (h, e) in hits.iter().zip(&scattered) {
        assert_eq!(e, &all[*h as usize], "entry {h} read as a hit");
    }
    (all, bundles, tiles, proofs)
}

#[test]
fn compaction_keeps_every_read_the_same_and_survives_reopen() {
    let storage = Arc::new(SimStorage::new(5));
    let (log, all) = build(storage.clone());
    let before = snapshot(&log);
    assert_eq!(before.0, all);
    assert_eq!(segments(&storage.crash_image()).len(), 4, "segments start at 0, 256, 512 and 768");

    let r = log.compact().unwrap();
    assert_eq!((r.bundles, r.segments), (3, 3));
    assert!(r.bytes_out * 3 < r.bytes_in, "compressed {} of {} bytes", r.bytes_out, r.bytes_in);
    assert_eq!(log.compact().unwrap().bundles, 0, "nothing more to do");
    assert_eq!(snapshot(&log), before);
    assert_eq!(segments(&storage.crash_image()), vec!["entries.00000000000000000768"]);

    // Appends go on; a reopen reads the bundles back.
    let more = entries(300, "more");
    log.append_blocking(&more).unwrap();
    log.sign_checkpoint().unwrap();
    let grown = snapshot(&log);
    drop(log);
    assert_eq!(verify(&*storage).unwrap().entries, 1300);
    let log = open_small_segments(storage.clone());
    assert_eq!(snapshot(&log), grown);
    assert_eq!(log.compact().unwrap().bundles, 2, "the segments from 768 and 1024 are full now");
    assert_eq!(log.entries(1000, 1300).unwrap(), more);
    drop(log);
    assert_eq!(verify(&*storage).unwrap().entries, 1300);
}

#[test]
fn a_crash_between_writing_bundles_and_removing_the_segment_loses_nothing() {
    let storage = Arc::new(SimStorage::new(6));
    let (log, all) = build(storage.clone());
    let before = storage.crash_image();
    log.compact().unwrap();
    drop(log);
    let after = storage.crash_image();

    // Every segment still there beside its bundles (the removals were lost),
    // and segment 0 beside only part of its bundles.
    let mut both = after.clone();
    for name in segments(&before) {
        both.insert(name.clone(), before[&name].clone());
    }
    let mut partial = both.clone();
    let bundles = partial.get_mut("bundles").unwrap();
    let first_len = u32::from_le_bytes(bundles[16..20].try_into().unwrap()) as usize;
    bundles.truncate(16 + 8 + first_len); // bundle 0 only
    for img in [both, partial] {
        let storage = Arc::new(SimStorage::from_image(img, 0));
        assert_eq!(verify(&*storage).unwrap().entries, 1000, "a second copy of entries verifies");
        let log = open_small_segments(storage.clone());
        assert_eq!(log.entries(0, 1000).unwrap(), all);
        log.compact().unwrap();
        assert_eq!(log.entries(0, 1000).unwrap(), all);
        drop(log);
        assert_eq!(segments(&storage.crash_image()), vec!["entries.00000000000000000768"]);
        assert_eq!(verify(&*storage).unwrap().entries, 1000);
    }

    // A torn bundle whose segment is gone is damage, not a torn write.
    let mut torn = after.clone();
    let len = torn["bundles"].len();
    torn.get_mut("bundles").unwrap().truncate(len - 3);
    let storage = Arc::new(SimStorage::from_image(torn, 0));
    let e = verify(&*storage).unwrap_err();
    assert!(e.contains("entry 512") && e.contains("bundles"), "{e}");
    let e = custos_log::Log::open(storage, custos_log::LogConfig::new(ORIGIN), signer()).err().unwrap().to_string();
    assert!(e.contains("bundles: entry 512") && e.contains("no entries segment"), "{e}");
}

#[test]
fn a_forged_bundle_is_named_by_verify_and_open() {
    let storage = Arc::new(SimStorage::new(7));
    let (log, all) = build(storage.clone());
    log.compact().unwrap();
    drop(log);
    let img = storage.crash_image();
    // Rewrite bundle 1 with entry 300 changed, a valid record and a valid
    // zstd frame, as an attacker who knows the format would.
    let b = &img["bundles"];
    let first_len = u32::from_le_bytes(b[16..20].try_into().unwrap()) as usize;
    let second = 16 + 8 + first_len;
    let second_len = u32::from_le_bytes(b[second..second + 4].try_into().unwrap()) as usize;
    let mut changed = all[256..512].to_vec();
    changed[44][3] ^= 1;
    let payload = custos_log::format::encode_bundle_payload(1, &changed).unwrap();
    let mut rec = Vec::new();
    custos_log::format::encode_record(&mut rec, &payload);
    let mut forged = b[..second].to_vec();
    forged.extend_from_slice(&rec);
    forged.extend_from_slice(&b[second + 8 + second_len..]);
    let mut img = img.clone();
    img.insert("bundles".into(), forged);
    let storage = Arc::new(SimStorage::from_image(img, 0));
    let e = verify(&*storage).unwrap_err();
    assert!(e.contains("stored hash of entry 300") && e.contains("bundles"), "{e}");
    let e = custos_log::Log::open(storage, custos_log::LogConfig::new(ORIGIN), signer()).err().unwrap().to_string();
    assert!(e.contains("bundles: entry 300"), "{e}");
}

#[test]
fn a_missing_segment_is_named() {
    let storage = Arc::new(SimStorage::new(8));
    let (log, _) = build(storage.clone());
    drop(log);
    let mut img = storage.crash_image();
    img.remove("entries.00000000000000000256");
    let storage = Arc::new(SimStorage::from_image(img, 0));
    let e = verify(&*storage).unwrap_err();
    assert!(e.contains("entries 256..512 are missing"), "{e}");
    let e = custos_log::Log::open(storage, custos_log::LogConfig::new(ORIGIN), signer()).err().unwrap().to_string();
    assert!(e.contains("the segment ends at entry 256, but the next one starts at entry 512"), "{e}");
}

#[test]
fn a_format_1_entries_file_becomes_the_first_segment() {
    let storage = Arc::new(SimStorage::new(9));
    let log = open(storage.clone());
    let all = entries(700, "old");
    log.append_blocking(&all).unwrap();
    log.sign_checkpoint().unwrap();
    drop(log);
    // A format-1 directory: one `entries` file, no bundles file.
    let mut img = storage.crash_image();
    let seg = img.remove("entries.00000000000000000000").unwrap();
    img.remove("bundles");
    img.insert("entries".into(), seg);
    let storage = Arc::new(SimStorage::from_image(img, 0));
    assert_eq!(verify(&*storage).unwrap().entries, 700);
    let log = open_small_segments(storage.clone());
    assert_eq!(log.entries(0, 700).unwrap(), all);
    log.append_blocking(&entries(100, "new")).unwrap();
    assert_eq!(log.compact().unwrap().bundles, 3, "the old file is a segment that ends at entry 768");
    assert_eq!(log.entries(0, 700).unwrap(), all);
    drop(log);
    let img = storage.crash_image();
    assert!(!img.contains_key("entries"));
    assert_eq!(verify(&*storage).unwrap().entries, 800);
}

/// Readers racing compaction on a real file system: a reader that looked
/// up a segment just before it was removed reads the bundle instead.
#[test]
fn readers_never_fail_while_compaction_removes_segments() {
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(FsStorage::open(dir.path()).unwrap());
    let log = Arc::new(open_small_segments(storage));
    let all = entries(256 * 40, "fs");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (log, stop, all) = (log.clone(), stop.clone(), all.clone());
        std::thread::spawn(move || {
            let mut rng = Rng(3);
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let size = log.size();
                if size == 0 {
                    continue;
                }
                let i = rng.below(size);
                assert_eq!(log.entry(i).unwrap(), all[i as usize], "entry {i}");
                reads += 1;
            }
            reads
        })
    };
    for chunk in all.chunks(256 * 4) {
        log.append_blocking(chunk).unwrap();
        log.compact().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names.iter().filter(|n| n.starts_with("entries.")).count(), 1, "{names:?}");
    assert_eq!(log.entries(0, all.len() as u64).unwrap(), all);
}

/// A full disk during compaction is undone and retried later; a failed
/// fsync of the bundles file stops compaction (not appends) until reopen.
#[test]
fn storage_faults_during_compaction_keep_the_log_whole() {
    use custos_log::sim::FaultOp;
    let storage = Arc::new(SimStorage::new(10));
    let (log, all) = build(storage.clone());
    storage.fail(FaultOp::Append, 1); // the second bundle record
    assert!(matches!(log.compact(), Err(custos_log::log::CompactError::Io(_))));
    assert_eq!(log.entries(0, 1000).unwrap(), all);
    assert_eq!(log.compact().unwrap().bundles, 2, "a later one does the rest (segment 0 was done before the fault)");

    let more = entries(600, "late");
    log.append_blocking(&more).unwrap();
    storage.fail(FaultOp::Sync, 0);
    assert!(matches!(log.compact(), Err(custos_log::log::CompactError::Failed(_))));
    assert!(matches!(log.compact(), Err(custos_log::log::CompactError::Failed(_))), "stopped until reopen");
    log.append_blocking(&entries(5, "still")).unwrap();
    assert_eq!(log.entries(1000, 1600).unwrap(), more);
    drop(log);
    let log = open_small_segments(storage.clone());
    assert_eq!(log.size(), 1605);
    assert!(log.compact().unwrap().bundles >= 2);
    assert_eq!(log.entries(1000, 1600).unwrap(), more);
    drop(log);
    assert_eq!(verify(&*storage).unwrap().entries, 1605);
}
