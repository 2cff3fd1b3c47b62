//! One append-only Merkle log: recovery at open, group-commit appends on a
//! dedicated writer thread, reads, proofs, tiles and checkpoint signing.

use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use custos_tlog::checkpoint::Checkpoint;
use custos_tlog::hash::{HASH_SIZE, Hash, leaf_hash};
use custos_tlog::note::{NoteSigner, NoteVerifier};
use custos_tlog::proof::{self, HashReader};
use custos_tlog::tile::{self, MAX_ENTRY_SIZE_BYTES, TILE_HEIGHT, TILE_WIDTH};
use custos_tlog::tree::TreeBuilder;
use tokio::sync::{mpsc, oneshot};

use crate::format::{
    self, BUNDLES_MAGIC, CHECKPOINTS_MAGIC, ENTRIES_MAGIC, HEADER_SIZE_BYTES, LEGACY_ENTRIES_FILE,
    MAX_BUNDLE_RECORD_BYTES, parse_segment_name, segment_name,
};
use crate::scan::{HashStream, ScanEnd, is_zero_tail, scan_records, scan_records_max};
use crate::storage::Storage;

/// The compressed entry bundles: one record per full bundle of 256
/// entries, for every bundle before the first entries segment.
pub const BUNDLES_FILE: &str = "bundles";
/// The stored leaf hashes: 32 bytes per entry, the level-0 hash tiles.
pub const HASHES_FILE: &str = "hashes";
/// Every signed checkpoint, one record each, oldest first.
pub const CHECKPOINTS_FILE: &str = "checkpoints";

/// Tree levels kept in memory start here; lower levels are recomputed from
/// the stored leaf hashes (at most 128 of them per subtree).
const MEMORY_LEVEL_MIN: u32 = TILE_HEIGHT;
/// Append requests waiting for the writer. Callers wait for room beyond
/// this, which is how backpressure reaches clients.
pub const QUEUE_DEPTH_REQUESTS: usize = 1024;
/// At most this many entries share one write and fsync.
pub const DEFAULT_MAX_BATCH_ENTRIES: usize = 16 * 1024;
/// At most this many bytes share one write and fsync. It also bounds how
/// much damaged data recovery may cut from the end of the last segment:
/// only the last, unacknowledged batch can be torn.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 16 << 20;
/// When a batch would end past the zeroed space at the end of the last
/// segment, it is written together with at least this many zero bytes after
/// it (up to a 4 KiB boundary). Later batches then overwrite space that is
/// already allocated, so their fdatasync need not write the file's size:
/// one device write fewer per commit, as PostgreSQL's pre-zeroed WAL
/// segments do. It also bounds the zeros a crash can leave after a torn
/// batch.
pub const ENTRIES_PREALLOCATE_BYTES: u64 = 256 * 1024;
/// Block size the zeroed space is rounded to.
const PREALLOCATE_ALIGN_BYTES: u64 = 4096;
/// An append commits on its own thread only if no commit ended within this
/// long, and the last commit held one append: appends that follow each
/// other this closely, or that the writer thread found several at a time,
/// are a busy log, whose writer thread gathers more of them into each
/// commit (its wake-up is that gathering window).
pub const DIRECT_COMMIT_IDLE: std::time::Duration = std::time::Duration::from_micros(50);
/// The writer starts a new entries segment at the first bundle boundary
/// after the current one holds this many entries. Only whole segments are
/// compressed into the bundles file and then removed, so this is about how
/// many entries stay uncompressed (a few MB of typical events).
pub const DEFAULT_SEGMENT_ENTRIES: u64 = 64 * TILE_WIDTH;
/// A reader that finds its segment removed by compaction looks the bundle
/// up again, at most this many times.
const COMPACTED_READ_RETRIES: usize = 3;
/// A damaged tail of the checkpoints file longer than this is not a torn
/// write of one checkpoint, so recovery refuses to cut it.
const MAX_TORN_CHECKPOINT_BYTES: u64 = 64 * 1024;
/// Leaf hashes kept in memory while the hashes file cannot be written (see
/// `State::unstored`), at most: 32 MiB. Past it the log refuses appends
/// until reopened (which rebuilds the file from the entries).
pub const MAX_UNSTORED_HASHES: usize = 1 << 20;

/// How a log is opened.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// The checkpoint origin line, unique to this log.
    pub origin: String,
    /// Entries per group commit, at most.
    pub max_batch_entries: usize,
    /// Bytes per group commit, at most.
    pub max_batch_bytes: usize,
    /// How long an async append waits for room in a full queue before it
    /// gives up with [`AppendError::Busy`], which the API turns into 503
    /// with Retry-After: a sender learns that the log cannot keep up
    /// instead of hanging.
    pub queue_wait: std::time::Duration,
    /// Entries per segment before the writer starts a new one, at the next
    /// bundle boundary ([`DEFAULT_SEGMENT_ENTRIES`]).
    pub segment_entries: u64,
}

/// The default [`LogConfig::queue_wait`].
pub const DEFAULT_QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl LogConfig {
    /// Defaults for a log with this origin.
    pub fn new(origin: &str) -> LogConfig {
        LogConfig {
            origin: origin.to_string(),
            max_batch_entries: DEFAULT_MAX_BATCH_ENTRIES,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            queue_wait: DEFAULT_QUEUE_WAIT,
            segment_entries: DEFAULT_SEGMENT_ENTRIES,
        }
    }
}

/// A checkpoint and the signed note that carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The parsed checkpoint.
    pub checkpoint: Checkpoint,
    /// The whole signed note, as served at `/checkpoint`.
    pub note: String,
}

/// Why a log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The storage failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// Stored data is damaged or altered. `index` is the first bad entry.
    #[error("{file}: entry {index} (byte {offset}): {reason}")]
    Corrupt {
        /// The file at fault.
        file: String,
        /// The first bad entry index (or checkpoint number for the
        /// checkpoints file).
        index: u64,
        /// Its byte offset.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The entries do not match a signed checkpoint.
    #[error("entries do not match checkpoint {number} (size {size}): {reason}")]
    CheckpointMismatch {
        /// The checkpoint's position in the checkpoints file, from 0.
        number: u64,
        /// Its tree size.
        size: u64,
        /// What is wrong, naming the range of entries at fault.
        reason: String,
    },
}

/// Why an append failed. Nothing of a failed request is acknowledged.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AppendError {
    /// An entry is over the C2SP limit of 65,535 bytes.
    #[error("entry {position} is {size_bytes} bytes, over the limit of {MAX_ENTRY_SIZE_BYTES} bytes")]
    EntryTooLarge {
        /// The entry's position in the request.
        position: usize,
        /// Its size.
        size_bytes: usize,
    },
    /// Writing failed and was undone (a full disk, say); retrying later may
    /// succeed.
    #[error("write failed, nothing stored: {0}")]
    Io(String),
    /// An earlier fsync or write failed, so the log refuses appends until it
    /// is reopened.
    #[error("log is read-only after an earlier storage failure ({0}); reopen it")]
    Failed(String),
    /// The write queue stayed full for [`LogConfig::queue_wait`]: the log
    /// cannot keep up; nothing was stored, and retrying later may succeed.
    #[error("the log's write queue is full ({QUEUE_DEPTH_REQUESTS} requests); nothing was stored")]
    Busy,
    /// The log is shutting down.
    #[error("log is closed")]
    Closed,
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The index, size or tile does not exist in this log.
    #[error("{0}")]
    OutOfRange(String),
    /// The storage failed.
    #[error("reading log storage: {0}")]
    Io(#[from] io::Error),
}

/// Why a checkpoint could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The new tree does not extend the last signed one. This would be a
    /// bug or tampering; the log refuses to sign.
    #[error("refusing to sign: size {new_size} is inconsistent with signed size {old_size}: {reason}")]
    Inconsistent {
        /// Last signed size.
        old_size: u64,
        /// Size that would be signed.
        new_size: u64,
        /// Why.
        reason: String,
    },
    /// The storage failed; the log is now read-only until reopened.
    #[error("storing checkpoint: {0}")]
    Io(String),
}

/// Why compaction stopped. The log's entries are unaffected: they stay in
/// their segments until a later compaction succeeds.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// Writing failed and was undone (a full disk, say).
    #[error("compacting: {0}")]
    Io(String),
    /// An fsync of the bundles file failed: compaction stops until the log
    /// is reopened, when recovery checks the bundles file.
    #[error("compaction stopped after a storage failure ({0}); reopen the log")]
    Failed(String),
}

/// What one [`Log::compact`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// Bundles written to the bundles file.
    pub bundles: u64,
    /// Segments removed.
    pub segments: u64,
    /// Bytes of the removed segments' records.
    pub bytes_in: u64,
    /// Bytes added to the bundles file.
    pub bytes_out: u64,
}

/// Entries framed as records and hashed, ready for the writer.
struct Prepared {
    records: Vec<u8>,
    leaves: Vec<Hash>,
    lens: Vec<u32>,
}

struct Request {
    prepared: Prepared,
    reply: oneshot::Sender<Result<Range<u64>, AppendError>>,
}

/// Counts an append in progress until dropped (also when its future is).
struct Appending<'a>(&'a AtomicUsize);

impl<'a> Appending<'a> {
    fn enter(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::AcqRel);
        Appending(n)
    }
}

impl Drop for Appending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where the entries of one bundle are stored.
#[derive(Clone, Copy, Debug)]
enum Loc {
    /// In the segment whose first entry is `segment`, from byte `offset`.
    Raw { segment: u64, offset: u64 },
    /// In the record of the bundles file at `offset`, `len` bytes long.
    Archived { offset: u64, len: u64 },
}

/// What to read for one bundle.
enum Span {
    Raw { file: String, from: u64, to: u64 },
    Archived { offset: u64, len: u64 },
}

/// An entries segment on disk.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Segment {
    /// Its first entry.
    pub(crate) first: u64,
    /// The end of its durable records (before any zeroed space).
    pub(crate) end: u64,
}

/// The published state of the tree. Only entries that are durable are in
/// it, so readers never see what could still be lost.
pub(crate) struct State {
    pub(crate) size: u64,
    pub(crate) builder: TreeBuilder,
    /// `upper[k]` holds the complete subtrees at level `MEMORY_LEVEL_MIN + k`.
    upper: Vec<Vec<Hash>>,
    /// Leaf hashes of the last, partial bundle.
    tail: Vec<Hash>,
    /// Leaf hashes of the last entries, which the hashes file does not hold
    /// yet: writing them failed (a full disk), after their entries were
    /// durable. They go out with the next batch's. The hashes file holds
    /// exactly the first `size - unstored.len()`.
    pub(crate) unstored: Vec<Hash>,
    /// Where each bundle is stored.
    bundles: Vec<Loc>,
    /// The leading bundles that are in the bundles file.
    archived: u64,
    /// The entries segments on disk, oldest first. The writer appends to
    /// the last one.
    segments: Vec<Segment>,
    checkpoint: Option<SignedCheckpoint>,
    checkpoint_count: u64,
}

impl State {
    pub(crate) fn empty() -> State {
        State {
            size: 0,
            builder: TreeBuilder::new(),
            upper: Vec::new(),
            tail: Vec::new(),
            unstored: Vec::new(),
            bundles: Vec::new(),
            archived: 0,
            segments: Vec::new(),
            checkpoint: None,
            checkpoint_count: 0,
        }
    }

    /// The segment whose first entry is `first`.
    fn segment(&self, first: u64) -> Option<&Segment> {
        let k = self.segments.partition_point(|s| s.first < first);
        self.segments.get(k).filter(|s| s.first == first)
    }

    /// What to read for bundle `bundle`, which must hold at least one entry.
    fn span(&self, bundle: u64) -> Span {
        match self.bundles[bundle as usize] {
            Loc::Archived { offset, len } => Span::Archived { offset, len },
            Loc::Raw { segment, offset } => {
                let to = match self.bundles.get(bundle as usize + 1) {
                    Some(Loc::Raw { segment: next, offset: o }) if *next == segment => *o,
                    _ => self.segment(segment).map_or(offset, |s| s.end),
                };
                Span::Raw { file: segment_name(segment), from: offset, to }
            }
        }
    }

    /// Adds one durable entry to the tree.
    pub(crate) fn push_leaf(&mut self, leaf: Hash) {
        if self.size.is_multiple_of(TILE_WIDTH) {
            self.tail.clear();
        }
        self.tail.push(leaf);
        let upper = &mut self.upper;
        self.builder.push(leaf, |level, index, hash| {
            if level >= MEMORY_LEVEL_MIN {
                let k = (level - MEMORY_LEVEL_MIN) as usize;
                if upper.len() <= k {
                    upper.push(Vec::new());
                }
                debug_assert_eq!(upper[k].len() as u64, index);
                upper[k].push(*hash);
            }
        });
        self.size += 1;
    }

    /// Adds one durable entry whose record starts at `offset` of the last
    /// segment.
    fn push_raw(&mut self, offset: u64, leaf: Hash, record_len: u64) {
        let seg = self.segments.last_mut().expect("a segment to append to");
        if self.size.is_multiple_of(TILE_WIDTH) {
            self.bundles.push(Loc::Raw { segment: seg.first, offset });
        }
        seg.end = offset + record_len;
        self.push_leaf(leaf);
    }

    /// Records that the next bundle is the bundles-file record at `offset`;
    /// its entries follow with [`State::push_leaf`].
    fn push_archived(&mut self, offset: u64, len: u64) {
        debug_assert_eq!(self.size % TILE_WIDTH, 0);
        self.bundles.push(Loc::Archived { offset, len });
        self.archived += 1;
    }
}

struct Inner {
    storage: Arc<dyn Storage>,
    config: LogConfig,
    signer: NoteSigner,
    state: RwLock<State>,
    /// Set by the first storage failure that leaves the files in an unknown
    /// state; appends are refused from then on.
    failed: Mutex<Option<String>>,
    /// Serialises commits: the writer thread's, and those an appending task
    /// makes itself when nothing else is queued (see [`Log::append_hashed`]).
    committing: Mutex<()>,
    /// Appends in progress through [`Log::append_hashed`].
    appending: AtomicUsize,
    /// When the log was opened, and when the last commit ended (ns after).
    opened: std::time::Instant,
    last_commit_ns: AtomicU64,
    /// How many appends the last commit grouped.
    last_commit_requests: AtomicUsize,
    /// Serialises checkpoint signing.
    signing: Mutex<()>,
    /// Serialises compaction, and holds the failure that stopped it.
    compacting: Mutex<Option<String>>,
    stats: Stats,
}

#[derive(Default)]
struct Stats {
    commits: AtomicU64,
    direct_commits: AtomicU64,
    entries: AtomicU64,
    bytes: AtomicU64,
    fsync_ns: AtomicU64,
}

/// Counters of a log since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Group commits, each one write and one fsync of the last segment (two
    /// when a new segment starts).
    pub commits: u64,
    /// Of those, commits an appending task made itself, not the writer
    /// thread (see [`Log::append_hashed`]).
    pub direct_commits: u64,
    /// Entries appended.
    pub entries: u64,
    /// Entry bytes appended.
    pub bytes: u64,
    /// Time spent in fsync of entries segments.
    pub fsync_ns: u64,
}

/// An open log. Appends go through one writer thread; reads run on any
/// thread, concurrently with appends.
pub struct Log {
    inner: Arc<Inner>,
    tx: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
}

fn io_ctx(context: impl Into<String>) -> impl FnOnce(io::Error) -> OpenError {
    let context = context.into();
    move |source| OpenError::Io { context, source }
}

impl Log {
    /// Opens (creating if empty) the log in `storage`, recovering from any
    /// torn write and checking every entry against the stored hashes and
    /// every signed checkpoint.
    pub fn open(storage: Arc<dyn Storage>, config: LogConfig, signer: NoteSigner) -> Result<Log, OpenError> {
        let verifier = signer.verifier();
        let (checkpoints, mut state) = recover(&*storage, &config, &verifier)?;
        state.checkpoint_count = checkpoints.len() as u64;
        state.checkpoint = checkpoints.last().cloned();
        let inner = Arc::new(Inner {
            storage,
            config,
            signer,
            state: RwLock::new(state),
            failed: Mutex::new(None),
            committing: Mutex::new(()),
            appending: AtomicUsize::new(0),
            opened: std::time::Instant::now(),
            last_commit_ns: AtomicU64::new(0),
            last_commit_requests: AtomicUsize::new(0),
            signing: Mutex::new(()),
            compacting: Mutex::new(None),
            stats: Stats::default(),
        });
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH_REQUESTS);
        let w = inner.clone();
        let writer = std::thread::Builder::new()
            .name("custos-log-writer".into())
            .spawn(move || writer_loop(w, rx))
            .map_err(io_ctx("starting the writer thread"))?;
        Ok(Log { inner, tx: Some(tx), writer: Some(writer) })
    }

    /// The origin line of this log's checkpoints.
    pub fn origin(&self) -> &str {
        &self.inner.config.origin
    }

    /// The verifier key of this log's checkpoints.
    pub fn verifier(&self) -> NoteVerifier {
        self.inner.signer.verifier()
    }

    /// Checks, frames and hashes entries on the caller's thread, so that
    /// the writer thread only writes, syncs and publishes.
    fn prepare<E: AsRef<[u8]>>(entries: &[E]) -> Result<Prepared, AppendError> {
        let mut bytes = 0;
        for (position, e) in entries.iter().enumerate() {
            let len = e.as_ref().len();
            if len > MAX_ENTRY_SIZE_BYTES {
                return Err(AppendError::EntryTooLarge { position, size_bytes: len });
            }
            bytes += format::RECORD_HEADER_SIZE_BYTES + len;
        }
        let mut p = Prepared {
            records: Vec::with_capacity(bytes),
            leaves: Vec::with_capacity(entries.len()),
            lens: Vec::with_capacity(entries.len()),
        };
        for e in entries {
            let e = e.as_ref();
            format::encode_record(&mut p.records, e);
            p.leaves.push(leaf_hash(e));
            p.lens.push((format::RECORD_HEADER_SIZE_BYTES + e.len()) as u32);
        }
        Ok(p)
    }

    /// Appends entries and returns their indexes once they are durable.
    pub async fn append<E: AsRef<[u8]>>(&self, entries: &[E]) -> Result<Range<u64>, AppendError> {
        Ok(self.append_hashed(entries).await?.0)
    }

    /// [`Log::append`], also returning the leaf hash of each entry.
    ///
    /// When this is the only append in progress, no commit is running or
    /// ended within [`DIRECT_COMMIT_IDLE`], the last commit held one append,
    /// and the caller runs on a multi-threaded runtime, the caller commits
    /// its entries itself (inside `block_in_place`, so the runtime's other tasks
    /// move to another thread meanwhile). That saves the two thread
    /// hand-offs, to the writer thread and back, on a path bound by fsync
    /// latency. With appends from several tasks at once, everything goes
    /// through the writer thread, which groups them into one commit: a
    /// commit of one caller's entries alone would cost an fsync of its own.
    pub async fn append_hashed<E: AsRef<[u8]>>(&self, entries: &[E]) -> Result<(Range<u64>, Vec<Hash>), AppendError> {
        let prepared = Self::prepare(entries)?;
        let leaves = prepared.leaves.clone();
        let tx = self.tx.as_ref().ok_or(AppendError::Closed)?;
        let _counted = Appending::enter(&self.inner.appending);
        let idle = self.inner.opened.elapsed().as_nanos() as u64
            > self.inner.last_commit_ns.load(Ordering::Relaxed) + DIRECT_COMMIT_IDLE.as_nanos() as u64;
        let alone = idle
            && self.inner.last_commit_requests.load(Ordering::Relaxed) <= 1
            && self.inner.appending.load(Ordering::Acquire) == 1
            && tx.capacity() == tx.max_capacity();
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if alone
            && multi_thread
            && let Ok(_guard) = self.inner.committing.try_lock()
        {
            let (count, bytes) = (prepared.leaves.len(), prepared.records.len());
            let first = tokio::task::block_in_place(|| commit(&self.inner, &[&prepared], count, bytes))?;
            self.inner.stats.direct_commits.fetch_add(1, Ordering::Relaxed);
            return Ok((first..first + count as u64, leaves));
        }
        let (reply, rx) = oneshot::channel();
        match tx.try_send(Request { prepared, reply }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(AppendError::Closed),
            Err(mpsc::error::TrySendError::Full(req)) => {
                match tokio::time::timeout(self.inner.config.queue_wait, tx.send(req)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err(AppendError::Closed),
                    Err(_) => return Err(AppendError::Busy),
                }
            }
        }
        Ok((rx.await.map_err(|_| AppendError::Closed)??, leaves))
    }

    /// [`Log::append`] for threads outside an async runtime.
    pub fn append_blocking<E: AsRef<[u8]>>(&self, entries: &[E]) -> Result<Range<u64>, AppendError> {
        let prepared = Self::prepare(entries)?;
        let (reply, rx) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or(AppendError::Closed)?;
        tx.blocking_send(Request { prepared, reply }).map_err(|_| AppendError::Closed)?;
        rx.blocking_recv().map_err(|_| AppendError::Closed)?
    }

    /// The number of durable entries.
    pub fn size(&self) -> u64 {
        self.read_state().size
    }

    /// The tree hash of the first `size` entries.
    pub fn root_at(&self, size: u64) -> Result<Hash, ReadError> {
        let st = self.read_state();
        check_size(size, st.size)?;
        if size == st.size {
            return Ok(st.builder.root());
        }
        proof::tree_hash(&self.reader(&st), size).map_err(ReadError::Io)
    }

    /// The latest signed checkpoint.
    pub fn checkpoint(&self) -> Option<SignedCheckpoint> {
        self.read_state().checkpoint.clone()
    }

    /// Whether an earlier storage failure made the log read-only.
    pub fn failure(&self) -> Option<String> {
        self.inner.failed.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The entry at `index`.
    pub fn entry(&self, index: u64) -> Result<Vec<u8>, ReadError> {
        let mut v = self.entries_at(&[index])?;
        Ok(v.pop().expect("one entry"))
    }

    /// Entries `[start, end)`. The caller bounds the range.
    pub fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, ReadError> {
        {
            let st = self.read_state();
            if start > end || end > st.size {
                return Err(ReadError::OutOfRange(format!(
                    "range {start}..{end} is outside the log's {} entries",
                    st.size
                )));
            }
        }
        if start == end {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity((end - start) as usize);
        for bundle in start / TILE_WIDTH..=(end - 1) / TILE_WIDTH {
            let first = bundle * TILE_WIDTH;
            for (i, r) in self.load_bundle(bundle)?.into_iter().enumerate() {
                let idx = first + i as u64;
                if idx >= start && idx < end {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    /// The entries at `indexes`, in the order given, reading each bundle
    /// they fall in only once (search hits cluster in bundles).
    pub fn entries_at(&self, indexes: &[u64]) -> Result<Vec<Vec<u8>>, ReadError> {
        {
            let st = self.read_state();
            if let Some(bad) = indexes.iter().find(|i| **i >= st.size) {
                return Err(ReadError::OutOfRange(format!("index {bad} is not below the log size {}", st.size)));
            }
        }
        let mut order: Vec<usize> = (0..indexes.len()).collect();
        order.sort_by_key(|&k| indexes[k]);
        let mut out: Vec<Option<Vec<u8>>> = vec![None; indexes.len()];
        // The hits in one bundle, read together.
        for group in order.chunk_by(|&a, &b| indexes[a] / TILE_WIDTH == indexes[b] / TILE_WIDTH) {
            let bundle = indexes[group[0]] / TILE_WIDTH;
            let positions: Vec<usize> = group.iter().map(|&k| (indexes[k] % TILE_WIDTH) as usize).collect();
            let records = self.load_from_bundle(bundle, Some(&positions))?;
            for &k in group {
                out[k] = Some(records[(indexes[k] % TILE_WIDTH) as usize].clone());
            }
        }
        Ok(out.into_iter().map(|e| e.expect("every index read")).collect())
    }

    /// The durable entries of bundle `bundle`, which must hold at least one.
    /// Stored entries never change, so they are read without holding the
    /// state lock: a slow reader (the indexer, at the lowest CPU priority)
    /// must never hold up the writer thread. If compaction removed the
    /// segment meanwhile, the bundle is looked up again: it is in the
    /// bundles file now.
    fn load_bundle(&self, bundle: u64) -> Result<Vec<Vec<u8>>, ReadError> {
        self.load_from_bundle(bundle, None)
    }

    /// [`Log::load_bundle`], reading at least the entries at `only`
    /// (sorted positions in the bundle) if given.
    fn load_from_bundle(&self, bundle: u64, only: Option<&[usize]>) -> Result<Vec<Vec<u8>>, ReadError> {
        let mut attempt = 0;
        loop {
            let span = self.read_state().span(bundle);
            match self.read_span(bundle, &span, only) {
                Err(ReadError::Io(e))
                    if e.kind() == io::ErrorKind::NotFound
                        && matches!(span, Span::Raw { .. })
                        && attempt < COMPACTED_READ_RETRIES =>
                {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Reads bundle `bundle` from `span`: every entry, or, with `only`
    /// (sorted positions in the bundle), at least those.
    fn read_span(&self, bundle: u64, span: &Span, only: Option<&[usize]>) -> Result<Vec<Vec<u8>>, ReadError> {
        let damaged = |what: String| ReadError::Io(io::Error::new(io::ErrorKind::InvalidData, what));
        match *span {
            Span::Raw { ref file, from, to } => {
                let mut raw = vec![0u8; (to - from) as usize];
                self.inner.storage.read_at(file, from, &mut raw)?;
                let mut out = Vec::new();
                let mut pos = 0;
                while pos < raw.len() {
                    match format::decode_record(&raw[pos..]) {
                        format::Decoded::Record(p, used) => {
                            out.push(p.to_vec());
                            pos += used;
                        }
                        _ => return Err(damaged(format!("{file} damaged at byte {} since open", from + pos as u64))),
                    }
                }
                Ok(out)
            }
            Span::Archived { offset, len } => {
                let mut raw = vec![0u8; len as usize];
                self.inner.storage.read_at(BUNDLES_FILE, offset, &mut raw)?;
                let format::Decoded::Record(payload, _) = format::decode_record_max(&raw, MAX_BUNDLE_RECORD_BYTES)
                else {
                    return Err(damaged(format!("{BUNDLES_FILE} damaged at byte {offset} since open")));
                };
                let rec = format::parse_bundle_payload(payload).map_err(damaged)?;
                if rec.number != bundle {
                    return Err(damaged(format!("{BUNDLES_FILE} holds bundle {} where {bundle} was", rec.number)));
                }
                match only {
                    // Just the frames that hold the entries asked for; the
                    // others stay empty.
                    Some(positions) => {
                        let mut out = vec![Vec::new(); TILE_WIDTH as usize];
                        let mut done = usize::MAX;
                        for &p in positions {
                            let g = p / format::FRAME_ENTRIES;
                            if g != done {
                                let frame = rec.frame_entries(g).map_err(damaged)?;
                                let at = g * format::FRAME_ENTRIES;
                                for (k, e) in frame.into_iter().enumerate() {
                                    out[at + k] = e;
                                }
                                done = g;
                            }
                        }
                        Ok(out)
                    }
                    None => rec.entries().map_err(damaged),
                }
            }
        }
    }

    /// The inclusion proof of entry `index` in the tree of `tree_size`.
    pub fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<Vec<Hash>, ReadError> {
        let st = self.read_state();
        check_size(tree_size, st.size)?;
        proof::inclusion_proof(&self.reader(&st), tree_size, index).map_err(proof_err)
    }

    /// The inclusion proofs of the entries `indexes` in the tree of
    /// `tree_size`, in order. Each proof's lower levels lie inside its
    /// entry's tile; those are hashed once per tile for all the entries in
    /// it, rather than once per entry (255 hashes each).
    pub fn inclusion_proofs(&self, indexes: Range<u64>, tree_size: u64) -> Result<Vec<Vec<Hash>>, ReadError> {
        self.proofs_of(indexes, tree_size)
    }

    /// [`Log::inclusion_proofs`] of any entries, in the order given, such
    /// as a page of search hits: entries in the same tile (in a row, or
    /// within a few tiles of each other) share its hashing.
    pub fn inclusion_proofs_at(&self, indexes: &[u64], tree_size: u64) -> Result<Vec<Vec<Hash>>, ReadError> {
        self.proofs_of(indexes.iter().copied(), tree_size)
    }

    /// The state lock is taken for one proof at a time, so that many proofs
    /// never hold up the writer for longer than one. The cached tiles stay
    /// valid in between: their complete subtrees never change, and the
    /// leaves they hold cover `tree_size`, which the log never shrinks below.
    fn proofs_of(&self, indexes: impl Iterator<Item = u64>, tree_size: u64) -> Result<Vec<Vec<Hash>>, ReadError> {
        check_size(tree_size, self.size())?;
        let tiles = std::cell::RefCell::new(Vec::new());
        indexes
            .map(|i| {
                let st = self.read_state();
                let reader = TileCachedReader { inner: self.reader(&st), tiles: &tiles };
                proof::inclusion_proof(&reader, tree_size, i).map_err(proof_err)
            })
            .collect()
    }

    /// The consistency proof between two tree sizes.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, ReadError> {
        let st = self.read_state();
        check_size(new_size, st.size)?;
        proof::consistency_proof(&self.reader(&st), old_size, new_size).map_err(proof_err)
    }

    /// The leaf hash of entry `index`.
    pub fn leaf_hash(&self, index: u64) -> Result<Hash, ReadError> {
        let st = self.read_state();
        if index >= st.size {
            return Err(ReadError::OutOfRange(format!("index {index} is not below the log size {}", st.size)));
        }
        Ok(self.reader(&st).leaves(index, 1)?[0])
    }

    /// The bytes of hash tile `(level, index)` with `width` hashes.
    pub fn hash_tile(&self, level: u8, index: u64, width: u16) -> Result<Vec<u8>, ReadError> {
        let st = self.read_state();
        let tree_level = u32::from(level) * TILE_HEIGHT;
        let available = if tree_level >= 64 { 0 } else { st.size >> tree_level };
        let first =
            index.checked_mul(TILE_WIDTH).ok_or_else(|| ReadError::OutOfRange("tile index overflows".into()))?;
        if first + u64::from(width) > available {
            return Err(ReadError::OutOfRange(format!(
                "tile {level}/{index} of width {width} is beyond the tree ({available} hashes at that level)"
            )));
        }
        let hashes: Vec<Hash> = if level == 0 {
            self.reader(&st).leaves(first, u64::from(width))?
        } else {
            let k = (tree_level - MEMORY_LEVEL_MIN) as usize;
            st.upper[k][first as usize..(first + u64::from(width)) as usize].to_vec()
        };
        Ok(hashes.iter().flat_map(|h| h.0).collect())
    }

    /// The bytes of entry bundle `index` with `width` entries.
    pub fn entry_bundle(&self, index: u64, width: u16) -> Result<Vec<u8>, ReadError> {
        let first =
            index.checked_mul(TILE_WIDTH).ok_or_else(|| ReadError::OutOfRange("bundle index overflows".into()))?;
        let size = self.size();
        if width == 0 || first + u64::from(width) > size {
            return Err(ReadError::OutOfRange(format!(
                "bundle {index} of width {width} is beyond the log's {size} entries"
            )));
        }
        let records = self.load_bundle(index)?;
        let mut out = Vec::new();
        for r in &records[..width as usize] {
            tile::push_bundle_entry(&mut out, r).expect("stored entries fit a bundle");
        }
        Ok(out)
    }

    /// Signs a checkpoint of the current tree if it grew since the last
    /// one, after proving it consistent with that one. Returns the new
    /// checkpoint, or `None` if there was nothing new to sign.
    pub fn sign_checkpoint(&self) -> Result<Option<SignedCheckpoint>, SignError> {
        let _guard = self.inner.signing.lock().unwrap_or_else(|e| e.into_inner());
        let (size, root, previous) = {
            let st = self.read_state();
            (st.size, st.builder.root(), st.checkpoint.clone())
        };
        if let Some(prev) = &previous {
            if prev.checkpoint.size == size {
                return Ok(None);
            }
            self.check_extends(&prev.checkpoint, size, &root)?;
        }
        let storage = &self.inner.storage;
        // The stored hashes a checkpoint covers must be durable before it.
        storage.sync(HASHES_FILE).map_err(|e| self.fail_sign(e))?;
        let checkpoint = Checkpoint { origin: self.inner.config.origin.clone(), size, root, extensions: vec![] };
        let note = self.inner.signer.sign(&checkpoint.to_body()).expect("checkpoint body is valid note text");
        let mut rec = Vec::new();
        format::encode_record(&mut rec, note.as_bytes());
        storage.append(CHECKPOINTS_FILE, &rec).map_err(|e| self.fail_sign(e))?;
        storage.sync(CHECKPOINTS_FILE).map_err(|e| self.fail_sign(e))?;
        let signed = SignedCheckpoint { checkpoint, note };
        let mut st = self.write_state();
        st.checkpoint = Some(signed.clone());
        st.checkpoint_count += 1;
        Ok(Some(signed))
    }

    /// Compresses every entries segment but the last into the bundles
    /// file, then removes it. Each segment's bundles are synced before the
    /// segment is removed, so a crash leaves every entry in one place or
    /// both; recovery sorts that out. Readers and the writer go on
    /// meanwhile. Blocking: run it off the async runtime.
    pub fn compact(&self) -> Result<CompactReport, CompactError> {
        let mut failed = self.inner.compacting.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = failed.clone() {
            return Err(CompactError::Failed(f));
        }
        let storage = &*self.inner.storage;
        let mut report = CompactReport::default();
        loop {
            let (seg, next_first, from) = {
                let st = self.read_state();
                if st.segments.len() < 2 {
                    return Ok(report);
                }
                (st.segments[0], st.segments[1].first, st.archived)
            };
            let to = next_first / TILE_WIDTH;
            let io_err = |e: io::Error| CompactError::Io(e.to_string());
            let start = storage.len(BUNDLES_FILE).map_err(io_err)?.unwrap_or(0);
            let mut at = start;
            let mut locs = Vec::with_capacity((to - from) as usize);
            for bundle in from..to {
                let entries = self.load_bundle(bundle).map_err(|e| CompactError::Io(e.to_string()))?;
                let mut record = Vec::new();
                let written = format::encode_bundle_payload(bundle, &entries).and_then(|payload| {
                    format::encode_record(&mut record, &payload);
                    storage.append(BUNDLES_FILE, &record)
                });
                if let Err(e) = written {
                    return Err(match storage.truncate(BUNDLES_FILE, start) {
                        Ok(()) => CompactError::Io(e.to_string()),
                        Err(e2) => {
                            let msg = format!("writing {BUNDLES_FILE}: {e}; undoing it: {e2}");
                            *failed = Some(msg.clone());
                            CompactError::Failed(msg)
                        }
                    });
                }
                locs.push(Loc::Archived { offset: at, len: record.len() as u64 });
                at += record.len() as u64;
            }
            if let Err(e) = storage.sync(BUNDLES_FILE) {
                let msg = format!("fsync of {BUNDLES_FILE}: {e}");
                tracing::error!(origin = %self.inner.config.origin, error = msg, "compaction stopped");
                *failed = Some(msg.clone());
                return Err(CompactError::Failed(msg));
            }
            {
                let mut st = self.write_state();
                for (k, loc) in locs.into_iter().enumerate() {
                    st.bundles[from as usize + k] = loc;
                }
                st.archived = to;
                st.segments.remove(0);
            }
            report.bundles += to - from;
            report.segments += 1;
            report.bytes_in += seg.end - HEADER_SIZE_BYTES;
            report.bytes_out += at - start;
            // The bundles are durable and published; the segment is now a
            // second copy. If removing it fails, the next open removes it.
            storage.remove(&segment_name(seg.first)).map_err(io_err)?;
        }
    }

    fn check_extends(&self, prev: &Checkpoint, size: u64, root: &Hash) -> Result<(), SignError> {
        let inconsistent = |reason: String| SignError::Inconsistent { old_size: prev.size, new_size: size, reason };
        if size < prev.size {
            return Err(inconsistent("the tree shrank".into()));
        }
        let st = self.read_state();
        let p =
            proof::consistency_proof(&self.reader(&st), prev.size, size).map_err(|e| inconsistent(e.to_string()))?;
        proof::verify_consistency(prev.size, size, &prev.root, root, &p).map_err(|e| inconsistent(e.to_string()))
    }

    fn fail_sign(&self, e: io::Error) -> SignError {
        let msg = format!("checkpoint storage: {e}");
        set_failed(&self.inner, &msg);
        SignError::Io(msg)
    }

    /// Counters since open.
    pub fn stats(&self) -> LogStats {
        let s = &self.inner.stats;
        LogStats {
            commits: s.commits.load(Ordering::Relaxed),
            direct_commits: s.direct_commits.load(Ordering::Relaxed),
            entries: s.entries.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
            fsync_ns: s.fsync_ns.load(Ordering::Relaxed),
        }
    }

    /// The number of checkpoints signed so far.
    pub fn checkpoint_count(&self) -> u64 {
        self.read_state().checkpoint_count
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.inner.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.inner.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn reader<'a>(&'a self, st: &'a State) -> StoredReader<'a> {
        StoredReader { storage: &*self.inner.storage, st }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what it holds and stop.
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn check_size(size: u64, have: u64) -> Result<(), ReadError> {
    if size > have {
        return Err(ReadError::OutOfRange(format!("tree size {size} is beyond the log's {have} entries")));
    }
    Ok(())
}

fn proof_err(e: proof::ProofError<io::Error>) -> ReadError {
    match e {
        proof::ProofError::OutOfRange(m) => ReadError::OutOfRange(m),
        proof::ProofError::Read(e) => ReadError::Io(e),
    }
}

fn set_failed(inner: &Inner, msg: &str) {
    let mut f = inner.failed.lock().unwrap_or_else(|e| e.into_inner());
    if f.is_none() {
        tracing::error!(origin = %inner.config.origin, error = msg, "log storage failed; refusing appends until reopened");
        *f = Some(msg.to_string());
    }
}

/// Reads complete subtrees from the published state: upper levels from
/// memory, lower ones from the stored leaf hashes.
pub(crate) struct StoredReader<'a> {
    pub(crate) storage: &'a dyn Storage,
    pub(crate) st: &'a State,
}

impl StoredReader<'_> {
    fn leaves(&self, first: u64, count: u64) -> io::Result<Vec<Hash>> {
        let tail_start = self.st.size - self.st.tail.len() as u64;
        if first >= tail_start {
            let i = (first - tail_start) as usize;
            return Ok(self.st.tail[i..i + count as usize].to_vec());
        }
        // From the file, then from those it does not hold yet.
        let stored = self.st.size - self.st.unstored.len() as u64;
        let from_file = count.min(stored.saturating_sub(first));
        let mut raw = vec![0u8; from_file as usize * HASH_SIZE];
        if from_file > 0 {
            self.storage.read_at(HASHES_FILE, first * HASH_SIZE as u64, &mut raw)?;
        }
        let mut out: Vec<Hash> = raw.chunks(HASH_SIZE).map(|c| Hash::from_slice(c).expect("32 bytes")).collect();
        for i in first + from_file..first + count {
            let h = self
                .st
                .unstored
                .get((i - stored) as usize)
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no leaf hash for entry {i}")))?;
            out.push(*h);
        }
        Ok(out)
    }
}

impl HashReader for StoredReader<'_> {
    type Error = io::Error;
    fn subtree(&self, level: u32, index: u64) -> io::Result<Hash> {
        if level >= MEMORY_LEVEL_MIN {
            let k = (level - MEMORY_LEVEL_MIN) as usize;
            return self.st.upper.get(k).and_then(|l| l.get(index as usize)).copied().ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("no subtree at level {level} index {index}"))
            });
        }
        let leaves = self.leaves(index << level, 1 << level)?;
        Ok(tile::subtree_of_run(&leaves))
    }
}

/// Tiles whose levels a [`TileCachedReader`] keeps: an entry's own tile,
/// and the tree's last, partial one, which proofs near the right edge read.
const CACHED_TILES: usize = 4;

/// A tile and its levels 0..TILE_HEIGHT: leaf hashes, then each level's
/// complete pairs.
type TileLevels = (u64, Vec<Vec<Hash>>);

/// A [`StoredReader`] that hashes a tile's lower levels once and keeps
/// them, for many proofs of entries in few tiles.
struct TileCachedReader<'a> {
    inner: StoredReader<'a>,
    /// (tile, its levels 0..TILE_HEIGHT: leaf hashes, then each level's
    /// complete pairs), least recently used first.
    tiles: &'a std::cell::RefCell<Vec<TileLevels>>,
}

impl HashReader for TileCachedReader<'_> {
    type Error = io::Error;
    fn subtree(&self, level: u32, index: u64) -> io::Result<Hash> {
        if level >= MEMORY_LEVEL_MIN {
            return self.inner.subtree(level, index);
        }
        let tile = (index << level) / TILE_WIDTH;
        let offset = (index - tile * (TILE_WIDTH >> level)) as usize;
        let mut tiles = self.tiles.borrow_mut();
        match tiles.iter().position(|(t, _)| *t == tile) {
            Some(k) => {
                let used = tiles.remove(k);
                tiles.push(used);
            }
            None => {
                // Every leaf of the tile that exists: a complete subtree
                // asked for lies within them.
                let first = tile * TILE_WIDTH;
                let mut levels = vec![self.inner.leaves(first, (self.inner.st.size - first).min(TILE_WIDTH))?];
                for _ in 1..MEMORY_LEVEL_MIN {
                    let below = levels.last().expect("level 0");
                    let next = below.chunks_exact(2).map(|p| custos_tlog::hash::node_hash(&p[0], &p[1])).collect();
                    levels.push(next);
                }
                if tiles.len() == CACHED_TILES {
                    tiles.remove(0);
                }
                tiles.push((tile, levels));
            }
        }
        let (_, levels) = tiles.last().expect("the tile was just used");
        levels[level as usize].get(offset).copied().ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("no subtree at level {level} index {index}"))
        })
    }
}

fn writer_loop(inner: Arc<Inner>, mut rx: mpsc::Receiver<Request>) {
    let cfg = inner.config.clone();
    while let Some(first) = rx.blocking_recv() {
        let mut count = first.prepared.leaves.len();
        let mut bytes = first.prepared.records.len();
        let mut batch = vec![first];
        while count < cfg.max_batch_entries && bytes < cfg.max_batch_bytes {
            let Ok(r) = rx.try_recv() else { break };
            count += r.prepared.leaves.len();
            bytes += r.prepared.records.len();
            batch.push(r);
        }
        let result = {
            let _guard = inner.committing.lock().unwrap_or_else(|e| e.into_inner());
            let prepared: Vec<&Prepared> = batch.iter().map(|r| &r.prepared).collect();
            commit(&inner, &prepared, count, bytes)
        };
        match result {
            Ok(mut next) => {
                for r in batch {
                    let n = r.prepared.leaves.len() as u64;
                    let _ = r.reply.send(Ok(next..next + n));
                    next += n;
                }
            }
            Err(e) => {
                for r in batch {
                    let _ = r.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// The part of a batch that goes to one segment.
struct Piece {
    /// The segment's first entry.
    segment: u64,
    /// Whether this write starts the segment's file.
    new: bool,
    /// Where in the segment the records go.
    offset: u64,
    /// The records, as a byte range of the batch.
    bytes: Range<usize>,
    /// How many entries.
    count: u64,
}

/// Splits a batch of records into pieces, one per segment: a new segment
/// starts at the first bundle boundary after the current one holds
/// `segment_entries` entries.
fn plan_pieces(
    lens: impl Iterator<Item = u32>,
    first_index: u64,
    current: Segment,
    segment_entries: u64,
) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut cur = Piece { segment: current.first, new: false, offset: current.end, bytes: 0..0, count: 0 };
    for (index, len) in (first_index..).zip(lens) {
        if index.is_multiple_of(TILE_WIDTH) && index - cur.segment >= segment_entries.max(1) {
            let at = cur.bytes.end;
            let done = std::mem::replace(
                &mut cur,
                Piece { segment: index, new: true, offset: HEADER_SIZE_BYTES, bytes: at..at, count: 0 },
            );
            if done.count > 0 {
                pieces.push(done);
            }
        }
        cur.bytes.end += len as usize;
        cur.count += 1;
    }
    pieces.push(cur);
    pieces
}

/// Writes one piece of a batch to its segment. The segment holds its
/// records, then the zeroed space.
fn write_piece(storage: &dyn Storage, piece: &Piece, records: &[u8]) -> io::Result<()> {
    let file = segment_name(piece.segment);
    let end = piece.offset + records.len() as u64;
    let file_len = if piece.new {
        // A file of that name would be a leftover of a failed write.
        if storage.len(&file)?.is_some() {
            storage.truncate(&file, 0)?;
        }
        0
    } else {
        storage.len(&file)?.unwrap_or(0)
    };
    if end <= file_len {
        return storage.write_at(&file, piece.offset, records);
    }
    // Past the zeroed space: write zeros after the records too.
    let new_len = (end + ENTRIES_PREALLOCATE_BYTES).next_multiple_of(PREALLOCATE_ALIGN_BYTES);
    let mut buf = Vec::with_capacity((new_len - piece.offset + HEADER_SIZE_BYTES) as usize);
    if piece.new {
        buf.extend_from_slice(&format::header(ENTRIES_MAGIC));
    }
    buf.extend_from_slice(records);
    buf.resize(buf.len() + (new_len - end) as usize, 0);
    storage.write_at(&file, if piece.new { 0 } else { piece.offset }, &buf)
}

/// Writes a group of requests with one write and one fsync (two at a
/// segment boundary), then publishes them. Returns the index of the first
/// entry. Nothing is published, and so nothing acknowledged, unless every
/// fsync succeeded.
fn commit(inner: &Inner, batch: &[&Prepared], count: usize, bytes: usize) -> Result<u64, AppendError> {
    if let Some(f) = inner.failed.lock().unwrap_or_else(|e| e.into_inner()).clone() {
        return Err(AppendError::Failed(f));
    }
    let (first_index, current) = {
        let st = inner.state.read().unwrap_or_else(|e| e.into_inner());
        (st.size, *st.segments.last().expect("recovery leaves a segment"))
    };
    let joined;
    let records: &[u8] = if batch.len() == 1 {
        &batch[0].records
    } else {
        let mut buf = Vec::with_capacity(bytes);
        for r in batch {
            buf.extend_from_slice(&r.records);
        }
        joined = buf;
        &joined
    };
    let lens = batch.iter().flat_map(|r| r.lens.iter().copied());
    let pieces = plan_pieces(lens, first_index, current, inner.config.segment_entries);
    let storage = &*inner.storage;
    for (k, piece) in pieces.iter().enumerate() {
        if let Err(e) = write_piece(storage, piece, &records[piece.bytes.clone()]) {
            // Undo whatever part was written, so the log stays usable once
            // the cause (a full disk, say) is gone. This also drops the
            // zeroed space, which the next batch writes again.
            let undone = pieces[..=k].iter().try_for_each(|p| {
                if p.new {
                    storage.remove(&segment_name(p.segment))
                } else {
                    storage.truncate(&segment_name(p.segment), p.offset)
                }
            });
            return match undone {
                Ok(()) => Err(AppendError::Io(e.to_string())),
                Err(e2) => {
                    let msg = format!("writing entries: {e}; undoing it: {e2}");
                    set_failed(inner, &msg);
                    Err(AppendError::Failed(msg))
                }
            };
        }
        // A piece in a new segment is written only once the one before it
        // is durable, so a crash never leaves a hole before the last
        // segment.
        let fsync_start = std::time::Instant::now();
        let synced = storage.sync(&segment_name(piece.segment));
        inner.stats.fsync_ns.fetch_add(fsync_start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        if let Err(e) = synced {
            // After a failed fsync the page cache may hold anything: never
            // retry, never acknowledge (the "fsyncgate" lesson).
            let msg = format!("fsync of entries: {e}");
            set_failed(inner, &msg);
            return Err(AppendError::Failed(msg));
        }
    }
    // Durable from here on. The stored hashes are a cache that recovery
    // rebuilds, so they are written but not synced per batch; with them,
    // any that an earlier batch could not write.
    let mut raw;
    let stored = {
        let st = inner.state.read().unwrap_or_else(|e| e.into_inner());
        raw = Vec::with_capacity((st.unstored.len() + count) * HASH_SIZE);
        for h in &st.unstored {
            raw.extend_from_slice(&h.0);
        }
        first_index - st.unstored.len() as u64
    };
    for r in batch {
        for h in &r.leaves {
            raw.extend_from_slice(&h.0);
        }
    }
    // A failed write (a full disk) is cut back off, and its hashes kept in
    // memory for the next batch: the batch is durable, so it is still
    // acknowledged, and the log stays usable.
    let hashes = storage.append(HASHES_FILE, &raw).map_err(|e| {
        match storage.truncate(HASHES_FILE, stored * HASH_SIZE as u64) {
            Ok(()) => {
                tracing::warn!(origin = %inner.config.origin, error = %e, "writing stored hashes failed; kept in memory and tried again with the next batch");
                None
            }
            Err(e2) => Some(format!("writing stored hashes: {e}; undoing it: {e2}")),
        }
    });
    let unstored = {
        let mut st = inner.state.write().unwrap_or_else(|e| e.into_inner());
        let mut entries = batch.iter().flat_map(|r| r.leaves.iter().zip(&r.lens)).map(|(h, l)| (*h, *l));
        for piece in &pieces {
            if piece.new {
                st.segments.push(Segment { first: piece.segment, end: HEADER_SIZE_BYTES });
            }
            let mut offset = piece.offset;
            for (leaf, len) in entries.by_ref().take(piece.count as usize) {
                st.push_raw(offset, leaf, u64::from(len));
                offset += u64::from(len);
            }
        }
        if hashes.is_ok() {
            st.unstored.clear();
        } else {
            st.unstored.extend(batch.iter().flat_map(|r| r.leaves.iter().copied()));
        }
        st.unstored.len()
    };
    inner.stats.commits.fetch_add(1, Ordering::Relaxed);
    inner.last_commit_ns.store(inner.opened.elapsed().as_nanos() as u64, Ordering::Relaxed);
    inner.last_commit_requests.store(batch.len(), Ordering::Relaxed);
    inner.stats.entries.fetch_add(count as u64, Ordering::Relaxed);
    inner.stats.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    match hashes {
        Ok(()) => {}
        Err(Some(msg)) => set_failed(inner, &msg),
        Err(None) if unstored > MAX_UNSTORED_HASHES => set_failed(
            inner,
            &format!("the hashes file could not be written for the last {unstored} entries (MAX_UNSTORED_HASHES)"),
        ),
        Err(None) => {}
    }
    Ok(first_index)
}

/// Replays stored entries into a [`State`] at open, checking each against
/// its stored hash and the checkpoints.
struct Replay<'a> {
    state: State,
    stored: HashStream<'a>,
    stored_count: u64,
    signed_size: u64,
    /// Recomputed hashes to append to the hashes file.
    fresh: Vec<Hash>,
    checkpoints: &'a [SignedCheckpoint],
    next_cp: usize,
}

impl Replay<'_> {
    /// The leaf hash of the next entry, checked against its stored hash.
    fn leaf(&mut self, file: &str, offset: u64, payload: &[u8]) -> Result<Hash, OpenError> {
        let index = self.state.size;
        let corrupt = |reason: String| OpenError::Corrupt { file: file.to_string(), index, offset, reason };
        if payload.len() > MAX_ENTRY_SIZE_BYTES {
            return Err(corrupt(format!("entry of {} bytes is over the limit", payload.len())));
        }
        let leaf = leaf_hash(payload);
        if index < self.stored_count {
            let want = self.stored.get(index).map_err(io_ctx("reading stored hashes"))?.expect("below count");
            if want != leaf {
                if index < self.signed_size {
                    return Err(corrupt("entry does not match its stored leaf hash".into()));
                }
                // Above the last checkpoint the stored hashes are an
                // unsynced cache: recompute them from here.
                self.stored_count = index;
            }
        }
        if index >= self.stored_count {
            self.fresh.push(leaf);
        }
        Ok(leaf)
    }

    /// Checks every checkpoint of the size the tree has just reached.
    fn pushed(&mut self) -> Result<(), OpenError> {
        let cps = self.checkpoints;
        while self.next_cp < cps.len() && cps[self.next_cp].checkpoint.size == self.state.size {
            check_root(cps, self.next_cp, &self.state.builder.root())?;
            self.next_cp += 1;
        }
        Ok(())
    }
}

/// The first entries of the segment files, sorted, after renaming a
/// format-1 `entries` file to the first segment.
fn list_segments(s: &dyn Storage) -> Result<Vec<u64>, OpenError> {
    let names = s.list().map_err(io_ctx("listing the log's files"))?;
    let mut segments: Vec<u64> = names.iter().filter_map(|n| parse_segment_name(n)).collect();
    segments.sort_unstable();
    if names.iter().any(|n| n == LEGACY_ENTRIES_FILE) {
        if !segments.is_empty() {
            return Err(OpenError::Corrupt {
                file: LEGACY_ENTRIES_FILE.into(),
                index: 0,
                offset: 0,
                reason: "a format-1 entries file and entries segments both exist".into(),
            });
        }
        s.rename(LEGACY_ENTRIES_FILE, &segment_name(0)).map_err(io_ctx("renaming entries to its first segment"))?;
        segments.push(0);
    }
    Ok(segments)
}

/// Recovers the log's state from storage. See `docs/format.md` §Recovery.
fn recover(
    s: &dyn Storage,
    config: &LogConfig,
    verifier: &NoteVerifier,
) -> Result<(Vec<SignedCheckpoint>, State), OpenError> {
    ensure_header(s, CHECKPOINTS_FILE, CHECKPOINTS_MAGIC)?;
    let checkpoints = load_checkpoints(s, config, verifier)?;
    let mut segments = list_segments(s)?;
    ensure_header(s, BUNDLES_FILE, BUNDLES_MAGIC)?;

    let hashes_len = s.len(HASHES_FILE).map_err(io_ctx("reading hashes length"))?.unwrap_or(0);
    let mut r = Replay {
        state: State::empty(),
        stored: HashStream::new(s, HASHES_FILE, hashes_len / HASH_SIZE as u64),
        stored_count: hashes_len / HASH_SIZE as u64,
        signed_size: checkpoints.last().map_or(0, |c| c.checkpoint.size),
        fresh: Vec::new(),
        checkpoints: &checkpoints,
        next_cp: 0,
    };
    // Checkpoints of size 0 match the empty tree.
    while r.next_cp < checkpoints.len() && checkpoints[r.next_cp].checkpoint.size == 0 {
        check_root(&checkpoints, r.next_cp, &Hash::empty())?;
        r.next_cp += 1;
    }

    // 1. The compressed bundles.
    let bundles_len = s.len(BUNDLES_FILE).map_err(io_ctx("reading bundles length"))?.unwrap_or(0);
    let end = scan_records_max(
        s,
        BUNDLES_FILE,
        bundles_len,
        MAX_BUNDLE_RECORD_BYTES,
        |offset, payload| -> Result<(), OpenError> {
            let index = r.state.size;
            let corrupt = |reason: String| OpenError::Corrupt { file: BUNDLES_FILE.into(), index, offset, reason };
            let rec = format::parse_bundle_payload(payload).map_err(corrupt)?;
            if rec.number != r.state.archived {
                return Err(corrupt(format!("holds bundle {} where bundle {} belongs", rec.number, r.state.archived)));
            }
            let entries = rec.entries().map_err(corrupt)?;
            r.state.push_archived(offset, (format::RECORD_HEADER_SIZE_BYTES + payload.len()) as u64);
            for e in &entries {
                let leaf = r.leaf(BUNDLES_FILE, offset, e)?;
                r.state.push_leaf(leaf);
                r.pushed()?;
            }
            Ok(())
        },
        |_| {},
    )?;
    if let ScanEnd::Damaged { offset, reason, .. } = end {
        // Compaction removes a segment only after syncing its bundles, so
        // a damaged tail is a torn write only if the segments still hold
        // what it would have held.
        if segments.first().is_none_or(|&first| first > r.state.size) {
            return Err(OpenError::Corrupt {
                file: BUNDLES_FILE.into(),
                index: r.state.size,
                offset,
                reason: format!("{reason}, and no entries segment holds these entries"),
            });
        }
        tracing::warn!(origin = %config.origin, offset, reason, "cutting torn write from end of bundles");
        s.truncate(BUNDLES_FILE, offset).map_err(io_ctx("truncating torn bundles"))?;
    }

    // 2. Segments that the bundles file holds entirely are left over from
    // a compaction that stopped before removing them.
    while segments.len() > 1 && segments[1] <= r.state.size {
        s.remove(&segment_name(segments[0])).map_err(io_ctx("removing a compacted segment"))?;
        segments.remove(0);
    }
    if segments.is_empty() {
        segments.push(r.state.size);
    }
    if segments[0] > r.state.size {
        return Err(OpenError::Corrupt {
            file: segment_name(segments[0]),
            index: r.state.size,
            offset: 0,
            reason: format!("entries {}..{} are in no file", r.state.size, segments[0]),
        });
    }

    // 3. The segments, in order.
    for (k, &first) in segments.iter().enumerate() {
        let last = k + 1 == segments.len();
        let file = segment_name(first);
        if last {
            ensure_header(s, &file, ENTRIES_MAGIC)?;
        } else {
            check_header(s, &file, ENTRIES_MAGIC)?;
        }
        r.state.segments.push(Segment { first, end: HEADER_SIZE_BYTES });
        let file_len = s.len(&file).map_err(io_ctx(format!("reading {file} length")))?.unwrap_or(0);
        let mut index = first;
        let end = scan_records(
            s,
            &file,
            file_len,
            |offset, payload| -> Result<(), OpenError> {
                // Entries that the bundles file holds too (a compaction
                // stopped half way through this segment) are read from there.
                if index >= r.state.size {
                    let leaf = r.leaf(&file, offset, payload)?;
                    r.state.push_raw(offset, leaf, (format::RECORD_HEADER_SIZE_BYTES + payload.len()) as u64);
                    r.pushed()?;
                }
                index += 1;
                Ok(())
            },
            |_| {},
        )?;
        let end = match end {
            // Zeros after the last record are the zeroed space of a clean end.
            ScanEnd::Damaged { offset, .. }
                if is_zero_tail(s, &file, offset, file_len).map_err(io_ctx(format!("reading {file}")))? =>
            {
                ScanEnd::Clean { end: offset }
            }
            other => other,
        };
        if let ScanEnd::Damaged { offset, file_len, reason } = end {
            // Only the last batch, with the zeros written after it, can be
            // torn, and only in the last segment.
            let torn_max = config.max_batch_bytes as u64 + ENTRIES_PREALLOCATE_BYTES + PREALLOCATE_ALIGN_BYTES;
            if !last || r.state.size < r.signed_size || file_len - offset > torn_max {
                return Err(OpenError::Corrupt {
                    file,
                    index: r.state.size,
                    offset,
                    reason: format!(
                        "{reason}, and the {} bytes from here on are not a torn final write",
                        file_len - offset
                    ),
                });
            }
            tracing::warn!(origin = %config.origin, file, offset, bytes = file_len - offset, reason, "cutting torn write from end of entries");
            s.truncate(&file, offset).map_err(io_ctx("truncating torn entries"))?;
        }
        if let Some(&next) = segments.get(k + 1)
            && index != next
        {
            return Err(OpenError::Corrupt {
                file,
                index,
                offset: r.state.segments.last().map_or(0, |s| s.end),
                reason: format!("the segment ends at entry {index}, but the next one starts at entry {next}"),
            });
        }
    }
    let Replay { state, stored_count, fresh, next_cp, .. } = r;
    if next_cp < checkpoints.len() {
        let cp = &checkpoints[next_cp].checkpoint;
        return Err(OpenError::CheckpointMismatch {
            number: next_cp as u64,
            size: cp.size,
            reason: format!("the log holds only {} entries; entries {}.. are missing", state.size, state.size),
        });
    }
    if stored_count > state.size || hashes_len % HASH_SIZE as u64 != 0 || stored_count < hashes_len / HASH_SIZE as u64 {
        s.truncate(HASHES_FILE, stored_count.min(state.size) * HASH_SIZE as u64)
            .map_err(io_ctx("truncating hashes"))?;
    }
    if !fresh.is_empty() {
        let raw: Vec<u8> = fresh.iter().flat_map(|h| h.0).collect();
        s.append(HASHES_FILE, &raw).map_err(io_ctx("restoring stored hashes"))?;
        s.sync(HASHES_FILE).map_err(io_ctx("syncing stored hashes"))?;
    }
    Ok((checkpoints, state))
}

fn check_root(checkpoints: &[SignedCheckpoint], number: usize, root: &Hash) -> Result<(), OpenError> {
    let cp = &checkpoints[number].checkpoint;
    if cp.root != *root {
        let from = if number == 0 { 0 } else { checkpoints[number - 1].checkpoint.size };
        return Err(OpenError::CheckpointMismatch {
            number: number as u64,
            size: cp.size,
            reason: format!("root differs; some entry in {from}..{} was altered", cp.size),
        });
    }
    Ok(())
}

/// Checks the header of a file that must be whole.
fn check_header(s: &dyn Storage, file: &str, magic: [u8; 8]) -> Result<(), OpenError> {
    let mut h = [0u8; HEADER_SIZE_BYTES as usize];
    let len = s.len(file).map_err(io_ctx(format!("reading {file} length")))?.unwrap_or(0);
    let bad = |reason: String| OpenError::Corrupt { file: file.to_string(), index: 0, offset: 0, reason };
    if len < HEADER_SIZE_BYTES {
        return Err(bad(format!("file is {len} bytes, shorter than its header")));
    }
    s.read_at(file, 0, &mut h).map_err(io_ctx(format!("reading {file} header")))?;
    format::check_header(&h, magic).map_err(bad)
}

/// Writes a file's header if the file is new, or finishes one torn while
/// being created; otherwise checks it.
fn ensure_header(s: &dyn Storage, file: &str, magic: [u8; 8]) -> Result<(), OpenError> {
    let header = format::header(magic);
    let len = s.len(file).map_err(io_ctx(format!("reading {file} length")))?;
    let existing = match len {
        Some(n) if n >= HEADER_SIZE_BYTES => return check_header(s, file, magic),
        Some(n) => {
            let mut h = vec![0u8; n as usize];
            s.read_at(file, 0, &mut h).map_err(io_ctx(format!("reading {file} header")))?;
            h
        }
        None => Vec::new(),
    };
    if !header.starts_with(&existing) && !existing.iter().all(|&b| b == 0) {
        return Err(OpenError::Corrupt {
            file: file.to_string(),
            index: 0,
            offset: 0,
            reason: "damaged file header".into(),
        });
    }
    s.truncate(file, 0).map_err(io_ctx(format!("resetting {file}")))?;
    s.append(file, &header).map_err(io_ctx(format!("writing {file} header")))?;
    s.sync(file).map_err(io_ctx(format!("syncing {file}")))?;
    Ok(())
}

fn load_checkpoints(
    s: &dyn Storage,
    config: &LogConfig,
    verifier: &NoteVerifier,
) -> Result<Vec<SignedCheckpoint>, OpenError> {
    let len = s.len(CHECKPOINTS_FILE).map_err(io_ctx("reading checkpoints length"))?.unwrap_or(0);
    let mut out: Vec<SignedCheckpoint> = Vec::new();
    let end = scan_records(
        s,
        CHECKPOINTS_FILE,
        len,
        |offset, payload| -> Result<(), OpenError> {
            let number = out.len() as u64;
            let bad =
                |reason: String| OpenError::Corrupt { file: CHECKPOINTS_FILE.into(), index: number, offset, reason };
            let note = std::str::from_utf8(payload).map_err(|_| bad("not UTF-8".into()))?;
            let text = verifier.open(note).map_err(|e| bad(e.to_string()))?;
            let checkpoint = Checkpoint::parse(text).map_err(|e| bad(e.to_string()))?;
            if checkpoint.origin != config.origin {
                return Err(bad(format!("origin {:?}, expected {:?}", checkpoint.origin, config.origin)));
            }
            if let Some(prev) = out.last()
                && checkpoint.size <= prev.checkpoint.size
            {
                return Err(bad(format!(
                    "size {} does not grow from the previous {}",
                    checkpoint.size, prev.checkpoint.size
                )));
            }
            out.push(SignedCheckpoint { checkpoint, note: note.to_string() });
            Ok(())
        },
        |_| {},
    )?;
    if let ScanEnd::Damaged { offset, file_len, reason } = end {
        // Only the last record can be a torn write: checkpoints are
        // appended one at a time, each synced before the next. Its own
        // length field may be torn too, so what marks damage rather than a
        // torn write is a valid record anywhere after it.
        let tail = file_len - offset;
        let valid_after = tail <= MAX_TORN_CHECKPOINT_BYTES && {
            let mut bytes = vec![0u8; tail as usize];
            s.read_at(CHECKPOINTS_FILE, offset, &mut bytes).map_err(io_ctx("reading checkpoints"))?;
            (1..bytes.len()).any(|p| matches!(format::decode_record(&bytes[p..]), format::Decoded::Record(..)))
        };
        if tail > MAX_TORN_CHECKPOINT_BYTES || valid_after {
            return Err(OpenError::Corrupt {
                file: CHECKPOINTS_FILE.into(),
                index: out.len() as u64,
                offset,
                reason: reason.to_string(),
            });
        }
        s.truncate(CHECKPOINTS_FILE, offset).map_err(io_ctx("truncating torn checkpoint"))?;
    }
    Ok(out)
}

impl From<io::Error> for OpenError {
    fn from(source: io::Error) -> OpenError {
        OpenError::Io { context: "reading log storage".into(), source }
    }
}
