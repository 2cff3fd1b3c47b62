//! Offline verification of one log's files: the auditor's check. It only
//! reads, accepts no damage at all, and names the first failing entry,
//! stored hash or checkpoint.

use std::io;

use custos_tlog::checkpoint::Checkpoint;
use custos_tlog::hash::{HASH_SIZE, leaf_hash};
use custos_tlog::note::NoteVerifier;
use custos_tlog::proof;
use custos_tlog::tile::{MAX_ENTRY_SIZE_BYTES, TILE_WIDTH};

use crate::format::{
    self, BUNDLES_MAGIC, CHECKPOINTS_MAGIC, ENTRIES_MAGIC, HEADER_SIZE_BYTES, LEGACY_ENTRIES_FILE,
    MAX_BUNDLE_RECORD_BYTES, parse_segment_name,
};
use crate::log::{BUNDLES_FILE, CHECKPOINTS_FILE, HASHES_FILE, State, StoredReader};
use crate::scan::{HashStream, ScanEnd, is_zero_tail, scan_records, scan_records_max};
use crate::storage::Storage;

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries checked.
    pub entries: u64,
    /// Bytes of the files that hold the entries: the bundles file and the
    /// entries segments.
    pub entries_file_bytes: u64,
    /// Level-0 hash tiles compared with the recomputed ones.
    pub hash_tiles: u64,
    /// Checkpoints whose signature, root and mutual consistency held.
    pub checkpoints: u64,
    /// The latest checkpoint.
    pub latest: Option<Checkpoint>,
    /// Entries after the latest checkpoint, not yet covered by a signature.
    pub unsigned_entries: u64,
    /// Entries at the end whose hash the hashes file does not hold yet (a
    /// crash, or a full disk, between an append and its hashes can leave
    /// it so; the server rebuilds it at open). Their hashes were
    /// recomputed and checked against the checkpoints like the others.
    pub hashes_missing: u64,
}

/// The first thing that failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyFailure {
    /// A file could not be read.
    #[error("reading {file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The error.
        source: io::Error,
    },
    /// A file header is wrong, or a file is missing or out of place.
    #[error("{file}: bad header: {reason}")]
    Header {
        /// The file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// An entry record is damaged, or entries are missing.
    #[error("entry {index} at byte {offset} of {file}: {reason}")]
    Entry {
        /// The first bad entry.
        index: u64,
        /// The file that holds it.
        file: String,
        /// Its byte offset (of its compressed bundle, in the bundles file).
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A stored hash (level-0 tile) differs from the recomputed one.
    #[error("hash tile 0/{tile}: stored hash of entry {index} {reason}")]
    StoredHash {
        /// The first bad entry.
        index: u64,
        /// The level-0 tile that holds it.
        tile: u64,
        /// What is wrong.
        reason: String,
    },
    /// A checkpoint is damaged, badly signed, or does not match the
    /// entries.
    #[error("checkpoint {number}: {reason}")]
    Checkpoint {
        /// Its position in the checkpoints file, from 0.
        number: u64,
        /// What is wrong.
        reason: String,
    },
}

fn io_err(file: &str) -> impl FnOnce(io::Error) -> VerifyFailure + '_ {
    move |source| VerifyFailure::Io { file: file.to_string(), source }
}

fn header(s: &dyn Storage, file: &str, magic: [u8; 8]) -> Result<u64, VerifyFailure> {
    let len = s
        .len(file)
        .map_err(io_err(file))?
        .ok_or_else(|| VerifyFailure::Header { file: file.to_string(), reason: "file is missing".into() })?;
    let mut h = vec![0u8; HEADER_SIZE_BYTES.min(len) as usize];
    s.read_at(file, 0, &mut h).map_err(io_err(file))?;
    format::check_header(&h, magic).map_err(|reason| VerifyFailure::Header { file: file.to_string(), reason })?;
    Ok(len)
}

/// Replays entries in order, checking each against its stored hash and the
/// checkpoints.
struct Checker<'a> {
    state: State,
    stored: HashStream<'a>,
    checkpoints: &'a [Checkpoint],
    next_cp: usize,
}

impl Checker<'_> {
    /// Checks that `payload`, found at `offset` of `file`, is entry `index`:
    /// the next one, or (`index` below the size) a second copy of one.
    fn entry(&mut self, file: &str, offset: u64, index: u64, payload: &[u8]) -> Result<(), VerifyFailure> {
        if payload.len() > MAX_ENTRY_SIZE_BYTES {
            return Err(VerifyFailure::Entry {
                index,
                file: file.to_string(),
                offset,
                reason: "entry is over the 65535-byte limit".into(),
            });
        }
        let leaf = leaf_hash(payload);
        let tile = index / TILE_WIDTH;
        match self.stored.get(index).map_err(io_err(HASHES_FILE))? {
            Some(h) if h == leaf => {}
            Some(_) => {
                return Err(VerifyFailure::StoredHash {
                    index,
                    tile,
                    reason: format!(
                        "differs from the hash of the entry in {file} (entry or hash altered, or entries reordered)"
                    ),
                });
            }
            // The hashes file ends early: a cache written after the
            // entries, which a crash or a full disk can leave behind them.
            // The recomputed hashes stand in, and the checkpoints still
            // check every entry.
            None => {
                let stored = self.state.size - self.state.unstored.len() as u64;
                if index < self.state.size {
                    if index.checked_sub(stored).and_then(|k| self.state.unstored.get(k as usize)) != Some(&leaf) {
                        return Err(VerifyFailure::StoredHash {
                            index,
                            tile,
                            reason: format!("is missing, and the entry in {file} differs from its other copy"),
                        });
                    }
                    return Ok(());
                }
                self.state.unstored.push(leaf);
            }
        }
        if index < self.state.size {
            return Ok(());
        }
        self.state.push_leaf(leaf);
        let cps = self.checkpoints;
        while self.next_cp < cps.len() && cps[self.next_cp].size == self.state.size {
            if cps[self.next_cp].root != self.state.builder.root() {
                let from = if self.next_cp == 0 { 0 } else { cps[self.next_cp - 1].size };
                return Err(VerifyFailure::Checkpoint {
                    number: self.next_cp as u64,
                    reason: format!("root does not match entries {from}..{}: one of them was altered", self.state.size),
                });
            }
            self.next_cp += 1;
        }
        Ok(())
    }
}

/// The entries segments, as (first entry, file name), in order. A format-1
/// `entries` file is read as the segment starting at entry 0.
fn segment_files(s: &dyn Storage) -> Result<Vec<(u64, String)>, VerifyFailure> {
    let names = s.list().map_err(io_err("the log directory"))?;
    let mut out: Vec<(u64, String)> =
        names.iter().filter_map(|n| parse_segment_name(n).map(|f| (f, n.clone()))).collect();
    out.sort_unstable();
    if names.iter().any(|n| n == LEGACY_ENTRIES_FILE) {
        if !out.is_empty() {
            return Err(VerifyFailure::Header {
                file: LEGACY_ENTRIES_FILE.into(),
                reason: "a format-1 entries file and entries segments both exist".into(),
            });
        }
        out.push((0, LEGACY_ENTRIES_FILE.to_string()));
    }
    Ok(out)
}

/// Verifies a log's files against `verifier`, expecting checkpoints with
/// `origin`. `progress(done, total)` reports bytes of the entries files.
pub fn verify_log(
    s: &dyn Storage,
    origin: &str,
    verifier: &NoteVerifier,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<VerifyReport, VerifyFailure> {
    let checkpoints = read_checkpoints(s, origin, verifier)?;
    let segments = segment_files(s)?;
    let bundles_len = match s.len(BUNDLES_FILE).map_err(io_err(BUNDLES_FILE))? {
        Some(_) => Some(header(s, BUNDLES_FILE, BUNDLES_MAGIC)?),
        None => None,
    };
    let mut total = bundles_len.unwrap_or(0);
    for (_, name) in &segments {
        total += header(s, name, ENTRIES_MAGIC)?;
    }
    let hashes_len = s.len(HASHES_FILE).map_err(io_err(HASHES_FILE))?.unwrap_or(0);
    if hashes_len % HASH_SIZE as u64 != 0 {
        return Err(VerifyFailure::StoredHash {
            index: hashes_len / HASH_SIZE as u64,
            tile: hashes_len / HASH_SIZE as u64 / TILE_WIDTH,
            reason: format!("is cut short: the hashes file has {hashes_len} bytes, not a multiple of 32"),
        });
    }
    let stored_count = hashes_len / HASH_SIZE as u64;
    let mut c = Checker {
        state: State::empty(),
        stored: HashStream::new(s, HASHES_FILE, stored_count),
        checkpoints: &checkpoints,
        next_cp: 0,
    };
    while c.next_cp < checkpoints.len() && checkpoints[c.next_cp].size == 0 {
        if !checkpoints[c.next_cp].root.ct_eq(&custos_tlog::Hash::empty()) {
            return Err(VerifyFailure::Checkpoint {
                number: c.next_cp as u64,
                reason: "size 0 with a root other than the empty tree's".into(),
            });
        }
        c.next_cp += 1;
    }
    let mut done = 0;

    // The compressed bundles, each exactly 256 entries, numbered in order.
    if let Some(len) = bundles_len {
        let end = scan_records_max(
            s,
            BUNDLES_FILE,
            len,
            MAX_BUNDLE_RECORD_BYTES,
            |offset, payload| -> Result<(), VerifyFailure> {
                let index = c.state.size;
                let bad = |reason: String| VerifyFailure::Entry { index, file: BUNDLES_FILE.into(), offset, reason };
                let rec = format::parse_bundle_payload(payload).map_err(bad)?;
                let want = index / TILE_WIDTH;
                if rec.number != want {
                    return Err(bad(format!("the record holds bundle {} where bundle {want} belongs", rec.number)));
                }
                for e in &rec.entries().map_err(bad)? {
                    c.entry(BUNDLES_FILE, offset, c.state.size, e)?;
                }
                Ok(())
            },
            |n| progress(n, total),
        )?;
        if let ScanEnd::Damaged { offset, reason, file_len } = end {
            return Err(VerifyFailure::Entry {
                index: c.state.size,
                file: BUNDLES_FILE.into(),
                offset,
                reason: format!("{reason} ({} bytes from here to the end of the file)", file_len - offset),
            });
        }
        done = len;
    }

    // The segments: contiguous, the first one starting at or before the
    // first entry that is not in a bundle. Entries in both (a compaction
    // that stopped before removing its segment) must be the same.
    let mut next_first = None;
    for (first, name) in &segments {
        let expected = next_first.unwrap_or(c.state.size);
        if *first > expected || (next_first.is_some() && *first != expected) {
            return Err(VerifyFailure::Entry {
                index: expected,
                file: name.clone(),
                offset: 0,
                reason: format!("entries {expected}..{first} are missing: the segment starts at entry {first}"),
            });
        }
        let len = s.len(name).map_err(io_err(name))?.unwrap_or(0);
        let mut index = *first;
        let end = scan_records(
            s,
            name,
            len,
            |offset, payload| -> Result<(), VerifyFailure> {
                c.entry(name, offset, index, payload)?;
                index += 1;
                Ok(())
            },
            |n| progress(done + n, total),
        )?;
        if let ScanEnd::Damaged { offset, reason, file_len } = end {
            // Zeros after the last record are the log's zeroed space, not
            // records: they add nothing, and removing entries this way is
            // caught by the checkpoints like any truncation.
            if !is_zero_tail(s, name, offset, file_len).map_err(io_err(name))? {
                return Err(VerifyFailure::Entry {
                    index,
                    file: name.clone(),
                    offset,
                    reason: format!("{reason} ({} bytes from here to the end of the file)", file_len - offset),
                });
            }
        }
        done += len;
        next_first = Some(index);
    }
    let state = c.state;
    if stored_count > state.size {
        return Err(VerifyFailure::StoredHash {
            index: state.size,
            tile: state.size / TILE_WIDTH,
            reason: format!(
                "has no entry: {stored_count} hashes are stored for {} entries (entries removed?)",
                state.size
            ),
        });
    }
    if c.next_cp < checkpoints.len() {
        return Err(VerifyFailure::Checkpoint {
            number: c.next_cp as u64,
            reason: format!(
                "covers {} entries but only {} are stored: entries {}.. were removed",
                checkpoints[c.next_cp].size, state.size, state.size
            ),
        });
    }
    check_mutual_consistency(s, &state, &checkpoints)?;
    progress(total, total);
    Ok(VerifyReport {
        entries: state.size,
        entries_file_bytes: total,
        hash_tiles: state.size.div_ceil(TILE_WIDTH),
        checkpoints: checkpoints.len() as u64,
        unsigned_entries: state.size - checkpoints.last().map_or(0, |c| c.size),
        hashes_missing: state.unstored.len() as u64,
        latest: checkpoints.last().cloned(),
    })
}

/// Proves each checkpoint consistent with the one before, with proofs made
/// from the verified stored tree.
fn check_mutual_consistency(s: &dyn Storage, state: &State, cps: &[Checkpoint]) -> Result<(), VerifyFailure> {
    let reader = StoredReader { storage: s, st: state };
    for (i, pair) in cps.windows(2).enumerate() {
        let (a, b) = (&pair[0], &pair[1]);
        let fail = |reason: String| VerifyFailure::Checkpoint { number: i as u64 + 1, reason };
        let p = proof::consistency_proof(&reader, a.size, b.size).map_err(|e| fail(format!("building proof: {e}")))?;
        proof::verify_consistency(a.size, b.size, &a.root, &b.root, &p)
            .map_err(|e| fail(format!("inconsistent with checkpoint {i}: {e}")))?;
    }
    Ok(())
}

fn read_checkpoints(s: &dyn Storage, origin: &str, verifier: &NoteVerifier) -> Result<Vec<Checkpoint>, VerifyFailure> {
    let len = header(s, CHECKPOINTS_FILE, CHECKPOINTS_MAGIC)?;
    let mut out: Vec<Checkpoint> = Vec::new();
    let end = scan_records(
        s,
        CHECKPOINTS_FILE,
        len,
        |_, payload| -> Result<(), VerifyFailure> {
            let fail = |reason: String| VerifyFailure::Checkpoint { number: out.len() as u64, reason };
            let note = std::str::from_utf8(payload).map_err(|_| fail("note is not UTF-8".into()))?;
            let text = verifier.open(note).map_err(|e| fail(e.to_string()))?;
            let cp = Checkpoint::parse(text).map_err(|e| fail(e.to_string()))?;
            if cp.origin != origin {
                return Err(fail(format!("origin {:?}, expected {origin:?}", cp.origin)));
            }
            if let Some(prev) = out.last()
                && cp.size <= prev.size
            {
                return Err(fail(format!("size {} does not grow from {}", cp.size, prev.size)));
            }
            out.push(cp);
            Ok(())
        },
        |_| {},
    )?;
    if let ScanEnd::Damaged { offset, reason, .. } = end {
        return Err(VerifyFailure::Checkpoint {
            number: out.len() as u64,
            reason: format!("record at byte {offset}: {reason}"),
        });
    }
    Ok(out)
}

impl From<io::Error> for VerifyFailure {
    fn from(source: io::Error) -> VerifyFailure {
        VerifyFailure::Io { file: "the log's files".into(), source }
    }
}
