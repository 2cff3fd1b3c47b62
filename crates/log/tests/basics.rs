//! Appends, reads, proofs, tiles and checkpoints of one log, on a real
//! file system and on the simulated disk.

mod common;

use std::sync::Arc;

use common::*;
use custos_log::AppendError;
use custos_log::sim::SimStorage;
use custos_log::storage::FsStorage;
use custos_tlog::hash::leaf_hash;
use custos_tlog::proof::{verify_consistency, verify_inclusion};
use custos_tlog::tile::{decode_bundle, decode_hash_tile};
use custos_tlog::tree::MemoryTree;

#[test]
fn appends_read_back_with_proofs_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(7);
    let all: Vec<Vec<u8>> = (0..700).map(|i| entry(&format!("e{i}"), &mut rng)).collect();
    {
        let log = open(Arc::new(FsStorage::open(dir.path()).unwrap()));
        let mut next = 0;
        for chunk in all.chunks(97) {
            let r = log.append_blocking(chunk).unwrap();
            assert_eq!(r, next..next + chunk.len() as u64);
            next = r.end;
        }
        assert!(log.sign_checkpoint().unwrap().is_some());
        assert!(log.sign_checkpoint().unwrap().is_none(), "nothing new to sign");
    }
    let log = open(Arc::new(FsStorage::open(dir.path()).unwrap()));
    assert_eq!(log.size(), 700);
    let model = MemoryTree::from_leaves(all.iter().map(|e| leaf_hash(e)));
    let cp = log.checkpoint().unwrap().checkpoint;
    assert_eq!(cp.size, 700);
    assert_eq!(cp.root, custos_tlog::proof::tree_hash(&model, 700).unwrap());
    for i in [0u64, 1, 255, 256, 511, 512, 699] {
        assert_eq!(log.entry(i).unwrap(), all[i as usize]);
        for size in [i + 1, 300, 513, 700] {
            if size <= i {
                continue;
            }
            let p = log.inclusion_proof(i, size).unwrap();
            let root = log.root_at(size).unwrap();
            verify_inclusion(i, size, &leaf_hash(&all[i as usize]), &p, &root).unwrap();
        }
    }
    // Proofs of a range, which hash each tile once, against the model,
    // for tree sizes ending inside a tile and on its edges.
    for (range, size) in
        [(0..700, 700), (0..1, 1), (0..2, 2), (0..256, 256), (250..257, 257), (200..300, 300), (0..513, 513)]
    {
        let proofs = log.inclusion_proofs(range.clone(), size).unwrap();
        assert_eq!(proofs.len() as u64, range.end - range.start);
        for (i, p) in range.zip(&proofs) {
            assert_eq!(p, &custos_tlog::proof::inclusion_proof(&model, size, i).unwrap(), "entry {i} of {size}");
        }
    }
    assert!(log.inclusion_proofs(0..701, 701).is_err());
    assert!(log.inclusion_proofs(5..7, 6).is_err(), "an entry beyond the tree size has no proof");
    for (a, b) in [(1u64, 700u64), (256, 700), (300, 513), (699, 700)] {
        let p = log.consistency_proof(a, b).unwrap();
        verify_consistency(a, b, &log.root_at(a).unwrap(), &log.root_at(b).unwrap(), &p).unwrap();
    }
    assert_eq!(log.entries(250, 260).unwrap(), all[250..260].to_vec());
    let picks = [699u64, 3, 256, 4, 255, 600, 3];
    let want: Vec<Vec<u8>> = picks.iter().map(|i| all[*i as usize].clone()).collect();
    assert_eq!(log.entries_at(&picks).unwrap(), want);
    assert!(log.entries_at(&[1, 700]).is_err());
    assert!(log.entry(700).is_err());
    assert!(log.inclusion_proof(0, 701).is_err());
    // Tiles: level 0 is the leaf hashes, bundles the entries.
    let t0 = decode_hash_tile(&log.hash_tile(0, 1, 256).unwrap()).unwrap();
    assert_eq!(t0, model.levels[0][256..512].to_vec());
    let t1 = decode_hash_tile(&log.hash_tile(1, 0, 2).unwrap()).unwrap();
    assert_eq!(t1, model.levels[8][0..2].to_vec());
    let p = decode_hash_tile(&log.hash_tile(0, 2, 188).unwrap()).unwrap();
    assert_eq!(p.len(), 188);
    assert!(log.hash_tile(0, 2, 189).is_err());
    assert!(log.hash_tile(1, 0, 3).is_err());
    let bundle = log.entry_bundle(2, 188).unwrap();
    let decoded = decode_bundle(&bundle).unwrap();
    assert_eq!(decoded.len(), 188);
    assert_eq!(decoded[0], &all[512][..]);
    assert!(log.entry_bundle(2, 189).is_err());
    verify(&FsStorage::open(dir.path()).unwrap()).unwrap();
}

#[test]
fn oversized_entry_is_rejected_and_nothing_stored() {
    let log = open(Arc::new(SimStorage::new(1)));
    let err = log.append_blocking(&[b"ok".to_vec(), vec![0; 65536]]).unwrap_err();
    assert_eq!(err, AppendError::EntryTooLarge { position: 1, size_bytes: 65536 });
    assert_eq!(log.size(), 0);
    log.append_blocking(&[vec![1; 65535]]).unwrap();
}

#[test]
fn concurrent_appends_share_fsyncs_and_all_land() {
    let storage = Arc::new(SimStorage::new(5));
    let log = Arc::new(open(storage.clone()));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for n in 0..200 {
                    let e = format!("t{t}-{n}").into_bytes();
                    let r = log.append_blocking(&[&e]).unwrap();
                    got.push((r.start, e));
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in threads {
        all.extend(t.join().unwrap());
    }
    assert_eq!(log.size(), 1600);
    for (i, e) in &all {
        assert_eq!(&log.entry(*i).unwrap(), e);
    }
    log.sign_checkpoint().unwrap();
    drop(log);
    verify(&*storage).unwrap();
}

/// On a multi-threaded runtime an append commits on the caller's thread
/// when nothing else is queued, and through the writer thread otherwise.
/// Both kinds interleave: every entry gets exactly one index, reads back
/// as appended, and survives a reopen.
#[test]
fn appends_committed_by_their_task_and_by_the_writer_interleave() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(Arc::new(FsStorage::open(dir.path()).unwrap())));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
    let tasks = 6u64;
    let per_task = 120u64;
    let results = rt.block_on(async {
        // Alone, and not right after another commit, an append commits on
        // its own thread; right after one, it goes through the writer.
        let mut all = Vec::new();
        for k in 0..10u64 {
            let batch = vec![format!("{{\"alone\":{k}}}").into_bytes()];
            let (range, _) = log.append_hashed(&batch).await.unwrap();
            all.push((range, batch));
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert_eq!(log.stats().direct_commits, 10, "{:?}", log.stats());
        for k in 0..10u64 {
            let batch = vec![format!("{{\"next\":{k}}}").into_bytes()];
            let (range, _) = log.append_hashed(&batch).await.unwrap();
            all.push((range, batch));
        }
        assert!(log.stats().direct_commits <= 15, "back to back, most go through the writer: {:?}", log.stats());
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    for k in 0..per_task {
                        // One to three entries, each naming its task and number.
                        let n = 1 + (t + k) % 3;
                        let batch: Vec<Vec<u8>> =
                            (0..n).map(|j| format!("{{\"t\":{t},\"k\":{k},\"j\":{j}}}").into_bytes()).collect();
                        let (range, leaves) = log.append_hashed(&batch).await.unwrap();
                        assert_eq!(range.end - range.start, n);
                        assert_eq!(leaves, batch.iter().map(|e| leaf_hash(e)).collect::<Vec<_>>());
                        out.push((range, batch));
                        if k % 7 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                    out
                })
            })
            .collect();
        for h in handles {
            all.extend(h.await.unwrap());
        }
        all
    });
    let stats = log.stats();
    assert!(stats.direct_commits < stats.commits, "no append went through the writer thread: {stats:?}");
    // Every index taken exactly once, each holding what was appended there.
    let mut by_index = std::collections::BTreeMap::new();
    for (range, batch) in &results {
        for (i, e) in range.clone().zip(batch) {
            assert!(by_index.insert(i, e.clone()).is_none(), "index {i} given twice");
        }
    }
    let total = by_index.len() as u64;
    assert_eq!(by_index.keys().copied().collect::<Vec<_>>(), (0..total).collect::<Vec<_>>());
    assert_eq!(log.size(), total);
    for (i, e) in &by_index {
        assert_eq!(&log.entry(*i).unwrap(), e);
    }
    drop(rt);
    drop(Arc::try_unwrap(log).ok().expect("no other owner"));
    let log = open(Arc::new(FsStorage::open(dir.path()).unwrap()));
    assert_eq!(log.size(), total);
    for (i, e) in &by_index {
        assert_eq!(&log.entry(*i).unwrap(), e);
    }
}

#[test]
fn range_proofs_over_more_tiles_than_are_kept_match_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(11);
    let all: Vec<Vec<u8>> = (0..1500).map(|i| entry(&format!("r{i}"), &mut rng)).collect();
    let log = open(Arc::new(FsStorage::open(dir.path()).unwrap()));
    log.append_blocking(&all).unwrap();
    let model = MemoryTree::from_leaves(all.iter().map(|e| leaf_hash(e)));
    // Six tiles, the last one partial: proofs near the right edge read the
    // last tile between the others, and the first tiles are dropped.
    for size in [1500u64, 1499, 1281, 1024] {
        let proofs = log.inclusion_proofs(0..size, size).unwrap();
        for (i, p) in proofs.iter().enumerate() {
            assert_eq!(p, &custos_tlog::proof::inclusion_proof(&model, size, i as u64).unwrap(), "{i} of {size}");
        }
    }
}

#[test]
fn proofs_of_scattered_entries_match_the_model_while_the_log_grows() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(12);
    let all: Vec<Vec<u8>> = (0..1800).map(|i| entry(&format!("s{i}"), &mut rng)).collect();
    let log = open(Arc::new(FsStorage::open(dir.path()).unwrap()));
    log.append_blocking(&all[..1300]).unwrap();
    let model = MemoryTree::from_leaves(all[..1300].iter().map(|e| leaf_hash(e)));
    // Newest first, as search hits come, with repeats and jumps back over
    // more tiles than are kept; and a tree smaller than the log.
    let hits: Vec<u64> = (0..400u64).map(|k| (k * 7919 + k * k) % 1300).chain([1299, 0, 1299, 256, 255]).collect();
    for size in [1300u64, 1290] {
        let want: Vec<_> = hits.iter().filter(|i| **i < size).collect();
        let indexes: Vec<u64> = want.iter().map(|i| **i).collect();
        // The log grows meanwhile: proofs against `size` stay the same.
        log.append_blocking(&all[1300 + (size as usize - 1290) * 25..][..25]).unwrap();
        let proofs = log.inclusion_proofs_at(&indexes, size).unwrap();
        assert_eq!(proofs.len(), indexes.len());
        for (i, p) in indexes.iter().zip(&proofs) {
            assert_eq!(p, &custos_tlog::proof::inclusion_proof(&model, size, *i).unwrap(), "{i} of {size}");
        }
    }
    assert!(log.inclusion_proofs_at(&[3, 1300], 1300).is_err(), "an entry beyond the tree size has no proof");
}
