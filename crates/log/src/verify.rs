//! Offline verification of one log's files: the auditor's check. It only
//! reads, accepts no damage at all, and names the first failing entry,
//! stored hash or checkpoint.

use std::io;

use custos_tlog::checkpoint::Checkpoint;
use custos_tlog::hash::{HASH_SIZE, leaf_hash};
use custos_tlog::note::NoteVerifier;
use custos_tlog::proof;
use custos_tlog::tile::{MAX_ENTRY_SIZE_BYTES, TILE_WIDTH};

use crate::format::{self, CHECKPOINTS_MAGIC, ENTRIES_MAGIC, HEADER_SIZE_BYTES};
use crate::log::{CHECKPOINTS_FILE, ENTRIES_FILE, HASHES_FILE, State, StoredReader};
use crate::scan::{HashStream, ScanEnd, is_zero_tail, scan_records};
use crate::storage::Storage;

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries checked.
    pub entries: u64,
    /// Bytes of the entries file.
    pub entries_file_bytes: u64,
    /// Level-0 hash tiles compared with the recomputed ones.
    pub hash_tiles: u64,
    /// Checkpoints whose signature, root and mutual consistency held.
    pub checkpoints: u64,
    /// The latest checkpoint.
    pub latest: Option<Checkpoint>,
    /// Entries after the latest checkpoint, not yet covered by a signature.
    pub unsigned_entries: u64,
}

/// The first thing that failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyFailure {
    /// A file could not be read.
    #[error("reading {file}: {source}")]
    Io {
        /// The file.
        file: &'static str,
        /// The error.
        source: io::Error,
    },
    /// A file header is wrong.
    #[error("{file}: bad header: {reason}")]
    Header {
        /// The file.
        file: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// An entry record is damaged.
    #[error("entry {index} at byte {offset} of entries: {reason}")]
    Entry {
        /// The first bad entry.
        index: u64,
        /// Its byte offset.
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

fn header(s: &dyn Storage, file: &'static str, magic: [u8; 8]) -> Result<u64, VerifyFailure> {
    let io = |source| VerifyFailure::Io { file, source };
    let len =
        s.len(file).map_err(io)?.ok_or_else(|| VerifyFailure::Header { file, reason: "file is missing".into() })?;
    let mut h = vec![0u8; HEADER_SIZE_BYTES.min(len) as usize];
    s.read_at(file, 0, &mut h).map_err(|source| VerifyFailure::Io { file, source })?;
    format::check_header(&h, magic).map_err(|reason| VerifyFailure::Header { file, reason })?;
    Ok(len)
}

/// Verifies a log's files against `verifier`, expecting checkpoints with
/// `origin`. `progress(done, total)` reports bytes of the entries file.
pub fn verify_log(
    s: &dyn Storage,
    origin: &str,
    verifier: &NoteVerifier,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<VerifyReport, VerifyFailure> {
    let checkpoints = read_checkpoints(s, origin, verifier)?;
    let entries_len = header(s, ENTRIES_FILE, ENTRIES_MAGIC)?;
    let hashes_len = s.len(HASHES_FILE).map_err(|source| VerifyFailure::Io { file: HASHES_FILE, source })?.unwrap_or(0);
    if hashes_len % HASH_SIZE as u64 != 0 {
        return Err(VerifyFailure::StoredHash {
            index: hashes_len / HASH_SIZE as u64,
            tile: hashes_len / HASH_SIZE as u64 / TILE_WIDTH,
            reason: format!("is cut short: the hashes file has {hashes_len} bytes, not a multiple of 32"),
        });
    }
    let stored_count = hashes_len / HASH_SIZE as u64;
    let mut stored = HashStream::new(s, HASHES_FILE, stored_count);
    let mut state = State::empty();
    let mut next_cp = 0usize;
    while next_cp < checkpoints.len() && checkpoints[next_cp].size == 0 {
        if !checkpoints[next_cp].root.ct_eq(&custos_tlog::Hash::empty()) {
            return Err(VerifyFailure::Checkpoint {
                number: next_cp as u64,
                reason: "size 0 with a root other than the empty tree's".into(),
            });
        }
        next_cp += 1;
    }
    let end = scan_records(
        s,
        ENTRIES_FILE,
        entries_len,
        |offset, payload| -> Result<(), VerifyFailure> {
            let index = state.size;
            if payload.len() > MAX_ENTRY_SIZE_BYTES {
                return Err(VerifyFailure::Entry {
                    index,
                    offset,
                    reason: "entry is over the 65535-byte limit".into(),
                });
            }
            let leaf = leaf_hash(payload);
            let tile = index / TILE_WIDTH;
            match stored.get(index).map_err(|source| VerifyFailure::Io { file: HASHES_FILE, source })? {
                Some(h) if h == leaf => {}
                Some(_) => {
                    return Err(VerifyFailure::StoredHash {
                        index,
                        tile,
                        reason: "differs from the hash of the entry (entry or hash altered, or entries reordered)"
                            .into(),
                    });
                }
                None => {
                    return Err(VerifyFailure::StoredHash { index, tile, reason: "is missing".into() });
                }
            }
            state.push(offset, leaf, (format::RECORD_HEADER_SIZE_BYTES + payload.len()) as u64);
            while next_cp < checkpoints.len() && checkpoints[next_cp].size == state.size {
                if checkpoints[next_cp].root != state.builder.root() {
                    let from = if next_cp == 0 { 0 } else { checkpoints[next_cp - 1].size };
                    return Err(VerifyFailure::Checkpoint {
                        number: next_cp as u64,
                        reason: format!("root does not match entries {from}..{}: one of them was altered", state.size),
                    });
                }
                next_cp += 1;
            }
            Ok(())
        },
        |done| progress(done, entries_len),
    )?;
    if let ScanEnd::Damaged { offset, reason, file_len } = end {
        // Zeros after the last record are the log's zeroed space, not
        // records: they add nothing, and removing entries this way is
        // caught by the checkpoints like any truncation.
        let zeros = is_zero_tail(s, ENTRIES_FILE, offset, file_len)
            .map_err(|source| VerifyFailure::Io { file: ENTRIES_FILE, source })?;
        if !zeros {
            return Err(VerifyFailure::Entry {
                index: state.size,
                offset,
                reason: format!("{reason} ({} bytes from here to the end of the file)", file_len - offset),
            });
        }
    }
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
    if next_cp < checkpoints.len() {
        return Err(VerifyFailure::Checkpoint {
            number: next_cp as u64,
            reason: format!(
                "covers {} entries but only {} are stored: entries {}.. were removed",
                checkpoints[next_cp].size, state.size, state.size
            ),
        });
    }
    check_mutual_consistency(s, &state, &checkpoints)?;
    progress(entries_len, entries_len);
    Ok(VerifyReport {
        entries: state.size,
        entries_file_bytes: entries_len,
        hash_tiles: state.size.div_ceil(TILE_WIDTH),
        checkpoints: checkpoints.len() as u64,
        unsigned_entries: state.size - checkpoints.last().map_or(0, |c| c.size),
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
            if let Some(prev) = out.last() {
                if cp.size <= prev.size {
                    return Err(fail(format!("size {} does not grow from {}", cp.size, prev.size)));
                }
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
        VerifyFailure::Io { file: ENTRIES_FILE, source }
    }
}
