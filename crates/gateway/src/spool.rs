//! The spool on disk: events nobody waits for (async mode, and the
//! outcomes of statements) are written to local files before they are
//! posted, so that a gateway that posts to a server over HTTP loses none
//! when it crashes or restarts, and rides out a long outage of the server
//! in bounded memory.
//!
//! # Files
//! A directory of segments, `NNNNNNNNNNNNNNNN.spool` (16 decimal digits,
//! numbered from 1), each a sequence of records:
//!
//! ```text
//! len: u32 LE | crc32c(len bytes ‖ event): u32 LE | event: len bytes of canonical JSON
//! ```
//!
//! (the log's own framing: the checksum covers the length too). The
//! layout is specified in docs/format.md, "The gateway's spool".
//!
//! `lock`, held locked (flock) by the one gateway using the spool, and
//! `cursor`, 20 bytes: the segment and offset up to which records have
//! been posted (two u64 LE), and the crc32c of those 16 bytes (u32 LE).
//!
//! # Threads
//! Sessions append records to a buffer in memory. A writer thread writes
//! the buffer to the newest segment every [`LINGER`] and makes it durable
//! (fdatasync): a crash loses at most what that last linger gathered. A
//! poster thread reads durable records in order, posts them in batches,
//! and moves the cursor (fdatasync) once the server has them; a segment
//! wholly posted is deleted. Records posted but not yet under the cursor
//! when the gateway crashed are posted again: the server drops repeated
//! `uid`s, which statement events carry.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::sink::{Event, LINGER, MAX_BATCH_EVENTS, PostError, SPOOL_WAIT};

/// The spool's size on disk at most, by default: records written and not
/// yet posted. When it is full, statements wait up to [`SPOOL_WAIT`] and
/// are then refused, as with the spool in memory.
pub const DEFAULT_MAX_SPOOL_DISK_BYTES: u64 = 1 << 30;
/// A segment is closed, and the next one started, past this size.
pub const SEGMENT_BYTES: u64 = 64 << 20;
/// Records appended and not yet written, at most: the spool's memory.
pub const MAX_UNWRITTEN_BYTES: usize = 8 << 20;
/// A posted batch's body, at most (and [`MAX_BATCH_EVENTS`] events).
pub const MAX_POST_BYTES: usize = 4 << 20;
/// A record longer than this is corruption: the gateway's events stay
/// under 64 KiB.
const MAX_RECORD_BYTES: usize = 1 << 20;
const HEADER: usize = 8;
const CURSOR: &str = "cursor";
const LOCK: &str = "lock";

/// Posts an NDJSON body of `n` events, durably; blocking.
pub type PostNdjson = Arc<dyn Fn(&[u8], usize) -> Result<(), PostError> + Send + Sync>;

/// Where the poster is: a segment and an offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Pos {
    seg: u64,
    off: u64,
}

struct State {
    /// Records appended, not yet written.
    unwritten: Vec<u8>,
    /// The segment being written and its durable length.
    head: Pos,
    /// Set when the spool stops (tests): the threads end.
    stopped: bool,
}

struct Shared {
    dir: PathBuf,
    state: Mutex<State>,
    /// Wakes the writer: records to write.
    to_write: Condvar,
    /// Wakes the poster: records made durable.
    to_post: Condvar,
    /// Bytes the spool may still take, on disk and in memory.
    room: Arc<Semaphore>,
    /// Bytes of memory the unwritten records may still take.
    memory: Arc<Semaphore>,
    /// Bytes the spool held at open beyond its room (its limit lowered
    /// since): posting them gives no room back.
    debt: std::sync::atomic::AtomicU64,
    /// Held locked while the spool is open.
    _lock: File,
}

/// The spool on disk. Dropping it does not stop its threads; they live as
/// long as the gateway.
#[derive(Clone)]
pub struct DiskSpool {
    shared: Arc<Shared>,
}

fn segment_path(dir: &Path, seg: u64) -> PathBuf {
    dir.join(format!("{seg:016}.spool"))
}

fn io(what: &str, path: &Path, e: std::io::Error) -> String {
    format!("{what} {}: {e}", path.display())
}

/// The segments in `dir`, oldest first.
fn segments(dir: &Path) -> Result<Vec<u64>, String> {
    let mut segs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io("reading", dir, e))? {
        let name = entry.map_err(|e| io("reading", dir, e))?.file_name();
        if let Some(n) = name.to_str().and_then(|n| n.strip_suffix(".spool")).and_then(|n| n.parse().ok()) {
            segs.push(n);
        }
    }
    segs.sort_unstable();
    Ok(segs)
}

fn read_cursor(dir: &Path) -> Option<Pos> {
    let b = std::fs::read(dir.join(CURSOR)).ok()?;
    let b: [u8; 20] = b.try_into().ok()?;
    let crc = u32::from_le_bytes(b[16..20].try_into().expect("4 bytes"));
    (crc32c::crc32c(&b[..16]) == crc).then(|| Pos {
        seg: u64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
        off: u64::from_le_bytes(b[8..16].try_into().expect("8 bytes")),
    })
}

/// Overwrites the cursor in place: 20 bytes, within one sector. A torn
/// write fails its checksum, and the spool then starts from its oldest
/// segment, posting again what the server drops as repeated.
fn write_cursor(file: &mut File, pos: Pos) -> std::io::Result<()> {
    let mut b = [0u8; 20];
    b[..8].copy_from_slice(&pos.seg.to_le_bytes());
    b[8..16].copy_from_slice(&pos.off.to_le_bytes());
    let crc = crc32c::crc32c(&b[..16]);
    b[16..].copy_from_slice(&crc.to_le_bytes());
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&b)?;
    file.sync_data()
}

/// A record's checksum: of its length field, then its event.
fn checksum(len: &[u8], event: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(len), event)
}

/// One record, checked: `Ok(Some((event, length)))`, `Ok(None)` if `b`
/// holds only part of it, `Err` if it is corrupt.
fn record(b: &[u8]) -> Result<Option<(&[u8], usize)>, String> {
    if b.len() < HEADER {
        return Ok(None);
    }
    let len = u32::from_le_bytes(b[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(b[4..8].try_into().expect("4 bytes"));
    if len == 0 || len > MAX_RECORD_BYTES {
        return Err(format!("a record claims {len} bytes"));
    }
    let Some(event) = b.get(HEADER..HEADER + len) else { return Ok(None) };
    if checksum(&b[..4], event) != crc {
        return Err("a record fails its checksum".into());
    }
    Ok(Some((event, HEADER + len)))
}

/// The length of the whole, valid records at the start of `path`, read
/// one record at a time (a segment can be 72 MiB).
fn whole_records(path: &Path) -> Result<u64, String> {
    let f = File::open(path).map_err(|e| io("reading", path, e))?;
    let mut r = std::io::BufReader::new(f);
    let mut b = Vec::with_capacity(HEADER + 64 * 1024);
    let mut at = 0u64;
    loop {
        b.clear();
        if (&mut r).take(HEADER as u64).read_to_end(&mut b).map_err(|e| io("reading", path, e))? < HEADER {
            return Ok(at);
        }
        let len = u32::from_le_bytes(b[..4].try_into().expect("4 bytes")) as usize;
        if len == 0 || len > MAX_RECORD_BYTES {
            return Ok(at);
        }
        (&mut r).take(len as u64).read_to_end(&mut b).map_err(|e| io("reading", path, e))?;
        match record(&b) {
            Ok(Some((_, n))) => at += n as u64,
            _ => return Ok(at),
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), String> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io("syncing", dir, e))
}

impl DiskSpool {
    /// Opens (or creates) the spool in `dir`, taking at most `max_bytes`,
    /// and starts its writer and poster. Records a crash left behind are
    /// posted first; a record the crash tore at the end is dropped.
    pub fn open(dir: &Path, max_bytes: u64, post: PostNdjson) -> Result<DiskSpool, String> {
        std::fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
        // One gateway per spool: two would post and delete each other's
        // records. The lock goes with the process, kill -9 included.
        let lock_path = dir.join(LOCK);
        let lock = File::create(&lock_path).map_err(|e| io("creating", &lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(format!("the spool {} is in use by another gateway", dir.display()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("locking", &lock_path, e)),
        }
        let segs = segments(dir)?;
        let first = segs.first().copied().unwrap_or(1);
        let mut pos = read_cursor(dir).filter(|p| segs.contains(&p.seg)).unwrap_or(Pos { seg: first, off: 0 });
        // The newest segment may end in a record torn by a crash.
        let head = match segs.last() {
            Some(&last) => {
                let path = segment_path(dir, last);
                let whole = whole_records(&path)?;
                let file = OpenOptions::new().write(true).open(&path).map_err(|e| io("opening", &path, e))?;
                let len = file.metadata().map_err(|e| io("reading", &path, e))?.len();
                if whole < len {
                    tracing::warn!(segment = %path.display(), dropped = len - whole, "the spool ends in a torn or damaged record; dropping the bytes from it on");
                    file.set_len(whole).and_then(|()| file.sync_all()).map_err(|e| io("truncating", &path, e))?;
                }
                Pos { seg: last, off: whole }
            }
            None => {
                let path = segment_path(dir, 1);
                File::create(&path).map_err(|e| io("creating", &path, e))?;
                sync_dir(dir)?;
                Pos { seg: 1, off: 0 }
            }
        };
        if pos.seg == head.seg {
            pos.off = pos.off.min(head.off);
        }
        // Segments wholly posted whose deletion a crash interrupted.
        for &s in segs.iter().filter(|&&s| s < pos.seg) {
            let _ = std::fs::remove_file(segment_path(dir, s));
        }
        let mut used = 0u64;
        for &s in segs.iter().filter(|&&s| s >= pos.seg) {
            let len =
                if s == head.seg { head.off } else { std::fs::metadata(segment_path(dir, s)).map_or(0, |m| m.len()) };
            used += len - if s == pos.seg { pos.off.min(len) } else { 0 };
        }
        if used > 0 {
            tracing::info!(bytes = used, dir = %dir.display(), "posting what the spool kept from before");
        }
        let permits = |n: u64| usize::try_from(n).unwrap_or(usize::MAX).min(Semaphore::MAX_PERMITS);
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            state: Mutex::new(State { unwritten: Vec::new(), head, stopped: false }),
            to_write: Condvar::new(),
            to_post: Condvar::new(),
            room: Arc::new(Semaphore::new(permits(max_bytes.saturating_sub(used)))),
            memory: Arc::new(Semaphore::new(MAX_UNWRITTEN_BYTES)),
            debt: std::sync::atomic::AtomicU64::new(used.saturating_sub(max_bytes)),
            _lock: lock,
        });
        let mut cursor = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(CURSOR))
            .map_err(|e| io("opening", &dir.join(CURSOR), e))?;
        write_cursor(&mut cursor, pos).map_err(|e| io("writing", &dir.join(CURSOR), e))?;
        let head_file = OpenOptions::new()
            .append(true)
            .open(segment_path(dir, head.seg))
            .map_err(|e| io("opening", &segment_path(dir, head.seg), e))?;
        let s = shared.clone();
        std::thread::Builder::new()
            .name("custos-gw-spool-write".into())
            .spawn(move || writer(&s, head_file))
            .map_err(|e| e.to_string())?;
        let s = shared.clone();
        std::thread::Builder::new()
            .name("custos-gw-spool-post".into())
            .spawn(move || poster(&s, pos, cursor, &post))
            .map_err(|e| e.to_string())?;
        Ok(DiskSpool { shared })
    }

    /// Appends events. Returns once they are in the spool's memory, to be
    /// written within [`LINGER`]; waits up to [`SPOOL_WAIT`] for room.
    pub async fn append(&self, events: &[Event]) -> Result<(), String> {
        let mut records = Vec::new();
        let mut text = String::new();
        for e in events {
            text.clear();
            custos_event::canonical::write_node(&mut text, e)
                .map_err(|err| format!("an audit event has no JSON form: {err}"))?;
            let len = (text.len() as u32).to_le_bytes();
            records.extend_from_slice(&len);
            records.extend_from_slice(&checksum(&len, text.as_bytes()).to_le_bytes());
            records.extend_from_slice(text.as_bytes());
        }
        let n = records.len();
        if n > MAX_UNWRITTEN_BYTES {
            return Err(format!("{} events at once are over the spool's memory", events.len()));
        }
        let taken = self.take_room(n).await?;
        taken.0.forget();
        taken.1.forget();
        let s = &self.shared;
        let mut st = s.state.lock().expect("spool lock");
        if st.unwritten.is_empty() {
            s.to_write.notify_one();
        }
        st.unwritten.extend_from_slice(&records);
        Ok(())
    }

    /// Waits up to [`SPOOL_WAIT`] for room for about one more event (of
    /// [`crate::sink::EVENT_ROOM_BYTES`]), without taking it.
    pub async fn wait_for_room(&self) -> Result<(), String> {
        let s = &self.shared;
        let n = crate::sink::EVENT_ROOM_BYTES;
        if s.room.available_permits() >= n && s.memory.available_permits() >= n {
            return Ok(());
        }
        self.take_room(n).await.map(drop)
    }

    /// Takes `n` bytes of room, on disk and in memory, waiting up to
    /// [`SPOOL_WAIT`] for them.
    async fn take_room(
        &self,
        n: usize,
    ) -> Result<(tokio::sync::OwnedSemaphorePermit, tokio::sync::OwnedSemaphorePermit), String> {
        let s = &self.shared;
        tokio::time::timeout(SPOOL_WAIT, async {
            let room = s.room.clone().acquire_many_owned(n as u32).await?;
            let memory = s.memory.clone().acquire_many_owned(n as u32).await?;
            Ok::<_, tokio::sync::AcquireError>((room, memory))
        })
        .await
        .map_err(|_| "the audit spool on disk is full, or the disk is too slow".to_string())?
        .map_err(|_| "the audit spool is closed".to_string())
    }

    /// Bytes in the spool not yet posted, at most about: for tests.
    #[cfg(test)]
    fn room(&self) -> usize {
        self.shared.room.available_permits()
    }

    /// Stops the threads and closes the spool, as a gateway that exits
    /// (tests).
    #[cfg(test)]
    fn stop(self) {
        self.shared.state.lock().unwrap().stopped = true;
        self.shared.to_write.notify_all();
        self.shared.to_post.notify_all();
        // The threads hold the spool (and its lock) until they end.
        while Arc::strong_count(&self.shared) > 1 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Shared {
    /// Gives back the room of `n` bytes that left the spool.
    fn release(&self, n: u64) {
        use std::sync::atomic::Ordering;
        let mut paid = 0;
        let _ = self.debt.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
            paid = d.min(n);
            Some(d - paid)
        });
        self.room.add_permits(usize::try_from(n - paid).unwrap_or(usize::MAX));
    }
}

/// Writes what sessions appended, every [`LINGER`], and makes it durable.
fn writer(s: &Shared, mut file: File) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let (batch, head) = {
            let mut st = s.state.lock().expect("spool lock");
            while st.unwritten.is_empty() && !st.stopped {
                st = s.to_write.wait(st).expect("spool lock");
            }
            if st.stopped {
                return;
            }
            // Let the records of other statements gather.
            drop(st);
            std::thread::sleep(LINGER);
            let mut st = s.state.lock().expect("spool lock");
            (std::mem::take(&mut st.unwritten), st.head)
        };
        let path = segment_path(&s.dir, head.seg);
        let written = file.write_all(&batch).and_then(|()| file.sync_data());
        if let Err(e) = written {
            // Disk full or an I/O error: put the file back as it was and
            // the records back in front, and try again. Sessions wait for
            // memory meanwhile, and are refused once SPOOL_WAIT passes.
            tracing::error!(error = %e, segment = %path.display(), "the audit spool cannot write");
            let _ = file.set_len(head.off);
            let mut st = s.state.lock().expect("spool lock");
            let newer = std::mem::replace(&mut st.unwritten, batch);
            st.unwritten.extend_from_slice(&newer);
            drop(st);
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(5));
            continue;
        }
        backoff = Duration::from_millis(50);
        let mut next = Pos { seg: head.seg, off: head.off + batch.len() as u64 };
        if next.off >= SEGMENT_BYTES {
            let new = segment_path(&s.dir, head.seg + 1);
            match OpenOptions::new().append(true).create(true).open(&new) {
                Ok(f) if sync_dir(&s.dir).is_ok() => {
                    file = f;
                    // The poster finishes the old segment from its length.
                    next = Pos { seg: head.seg + 1, off: 0 };
                }
                Ok(_) | Err(_) => {
                    tracing::error!(segment = %new.display(), "cannot start a spool segment; the current one grows")
                }
            }
        }
        let mut st = s.state.lock().expect("spool lock");
        st.head = next;
        drop(st);
        s.memory.add_permits(batch.len());
        s.to_post.notify_one();
    }
}

/// Reads up to `max` bytes of `path` from `off`.
fn read_at(path: &Path, off: u64, max: u64) -> std::io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(off))?;
    let mut b = Vec::new();
    f.take(max).read_to_end(&mut b)?;
    Ok(b)
}

/// Posts durable records in order, moving the cursor behind them.
fn poster(s: &Shared, mut pos: Pos, mut cursor: File, post: &PostNdjson) {
    let mut backoff = Duration::from_millis(50);
    let mut body = Vec::new();
    loop {
        let head = {
            let mut st = s.state.lock().expect("spool lock");
            while pos.seg == st.head.seg && pos.off >= st.head.off && !st.stopped {
                st = s.to_post.wait(st).expect("spool lock");
            }
            if st.stopped {
                return;
            }
            st.head
        };
        let path = segment_path(&s.dir, pos.seg);
        let end = if pos.seg < head.seg { std::fs::metadata(&path).map_or(0, |m| m.len()) } else { head.off };
        if pos.off >= end {
            // A segment wholly posted: delete it and go on to the next.
            if pos.seg < head.seg {
                let _ = std::fs::remove_file(&path);
                pos = Pos { seg: pos.seg + 1, off: 0 };
                let _ = write_cursor(&mut cursor, pos);
            }
            continue;
        }
        let want = (end - pos.off).min((MAX_POST_BYTES + MAX_RECORD_BYTES) as u64);
        let b = match read_at(&path, pos.off, want) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, segment = %path.display(), "the audit spool cannot read");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        body.clear();
        let (mut used, mut n) = (0usize, 0usize);
        let mut corrupt = None;
        while n < MAX_BATCH_EVENTS && body.len() < MAX_POST_BYTES {
            match record(&b[used..]) {
                Ok(Some((event, len))) => {
                    body.extend_from_slice(event);
                    body.push(b'\n');
                    used += len;
                    n += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    corrupt = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = corrupt.filter(|_| n == 0) {
            // Durable bytes that do not read back: the rest of this
            // segment is lost, and the gateway says so loudly.
            tracing::error!(segment = %path.display(), offset = pos.off, error = %e, lost_bytes = end - pos.off, "the audit spool is corrupt; skipping the rest of the segment");
            s.release(end - pos.off);
            pos.off = end;
            let _ = write_cursor(&mut cursor, pos);
            continue;
        }
        if n == 0 {
            // A record longer than `want` cannot be: treat as corrupt.
            tracing::error!(segment = %path.display(), offset = pos.off, "an unreadable record in the audit spool");
            s.release(end - pos.off);
            pos.off = end;
            let _ = write_cursor(&mut cursor, pos);
            continue;
        }
        match post(&body, n) {
            Ok(()) => backoff = Duration::from_millis(50),
            Err(PostError::Rejected(e)) => {
                tracing::error!(error = %e, events = n, "the log rejected spooled audit events");
            }
            Err(PostError::Retry(e)) => {
                tracing::warn!(error = %e, events = n, "audit log unavailable; the spool keeps the events");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        }
        pos.off += used as u64;
        if let Err(e) = write_cursor(&mut cursor, pos) {
            tracing::error!(error = %e, "the audit spool cannot move its cursor; events may be posted twice");
        }
        s.release(used as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custos_event::doc::Node;

    fn ev(n: u64) -> Event {
        Node::obj([("n", n.into()), ("pad", Node::string("x".repeat(200)))])
    }

    type Posted = Arc<Mutex<Vec<u64>>>;

    /// A post function that records the numbers it was given, and fails
    /// (to be retried) while `down` is set.
    fn recorder(down: Arc<std::sync::atomic::AtomicBool>) -> (PostNdjson, Posted) {
        let posted: Posted = Arc::default();
        let p = posted.clone();
        let post: PostNdjson = Arc::new(move |body: &[u8], n: usize| {
            if down.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(PostError::Retry("down".into()));
            }
            let lines: Vec<u64> = body
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice::<serde_json::Value>(l).unwrap()["n"].as_u64().unwrap())
                .collect();
            assert_eq!(lines.len(), n);
            p.lock().unwrap().extend(lines);
            Ok(())
        });
        (post, posted)
    }

    /// Waits until the segment `seg` holds `bytes`: the writer wrote them.
    async fn written(seg: &Path, bytes: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::fs::metadata(seg).unwrap().len() < bytes {
            assert!(std::time::Instant::now() < deadline, "never written");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn wait_for(posted: &Posted, want: &[u64]) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while posted.lock().unwrap().as_slice() != want {
            assert!(std::time::Instant::now() < deadline, "posted {:?}", posted.lock().unwrap());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Events spooled while the log is down are kept on disk, survive a
    /// restart of the spool (a torn record at the end dropped), and are
    /// posted in order once the log is back; posted segments are deleted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spooled_events_survive_a_restart_and_are_posted_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (post, posted) = recorder(down.clone());
        let spool = DiskSpool::open(dir.path(), 1 << 20, post.clone()).unwrap();
        let Err(e) = DiskSpool::open(dir.path(), 1 << 20, post) else { panic!("two gateways share a spool") };
        assert!(e.contains("in use by another gateway"), "{e}");
        for n in 0..10 {
            spool.append(&[ev(n)]).await.unwrap();
        }
        // Written and durable within a linger or so, though never posted.
        let seg = segment_path(dir.path(), 1);
        written(&seg, 10 * 200).await;
        spool.stop();
        assert!(posted.lock().unwrap().is_empty());
        // A crash tore a record: half of one more at the end.
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[100, 0, 0, 0, 1, 2, 3, 4, b'{']).unwrap();
        drop(f);

        down.store(false, std::sync::atomic::Ordering::SeqCst);
        let (post, posted) = recorder(down.clone());
        let spool = DiskSpool::open(dir.path(), 1 << 20, post).unwrap();
        spool.append(&[ev(10)]).await.unwrap();
        wait_for(&posted, &(0..11).collect::<Vec<_>>());
        // All posted: the room is whole again, and a restart posts nothing.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while spool.room() != 1 << 20 {
            assert!(std::time::Instant::now() < deadline, "room {}", spool.room());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        spool.stop();
        let (post, posted) = recorder(down.clone());
        let spool = DiskSpool::open(dir.path(), 1 << 20, post).unwrap();
        tokio::time::sleep(LINGER * 5).await;
        assert!(posted.lock().unwrap().is_empty());
        spool.stop();
    }

    /// The spool is bounded on disk: once full, an append waits, then is
    /// refused; room comes back as the log takes events.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_spool_on_disk_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (post, posted) = recorder(down.clone());
        let spool = DiskSpool::open(dir.path(), 4096, post).unwrap();
        let mut n = 0;
        let e = loop {
            match spool.append(&[ev(n)]).await {
                Ok(()) => n += 1,
                Err(e) => break e,
            }
            assert!(n < 100, "the spool never filled");
        };
        assert!(n >= 10, "{n}");
        assert!(e.contains("spool on disk is full"), "{e}");
        down.store(false, std::sync::atomic::Ordering::SeqCst);
        wait_for(&posted, &(0..n).collect::<Vec<_>>());
        spool.append(&[ev(n)]).await.unwrap();
        wait_for(&posted, &(0..=n).collect::<Vec<_>>());
        spool.stop();
    }

    /// A spool reopened with a lower limit than it holds gets no more room
    /// than the new limit once it has posted everything.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lowered_limit_holds_after_the_backlog_is_posted() {
        let dir = tempfile::tempdir().unwrap();
        let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (post, _) = recorder(down.clone());
        let spool = DiskSpool::open(dir.path(), 1 << 20, post).unwrap();
        for n in 0..20 {
            spool.append(&[ev(n)]).await.unwrap();
        }
        let seg = segment_path(dir.path(), 1);
        written(&seg, 20 * 200).await;
        spool.stop();
        down.store(false, std::sync::atomic::Ordering::SeqCst);
        let (post, posted) = recorder(down);
        let spool = DiskSpool::open(dir.path(), 2048, post).unwrap();
        wait_for(&posted, &(0..20).collect::<Vec<_>>());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while spool.room() != 2048 {
            assert!(spool.room() < 2048, "room {} over the limit", spool.room());
            assert!(std::time::Instant::now() < deadline, "room {}", spool.room());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        spool.stop();
    }

    /// Segments roll over past their size and are deleted once posted;
    /// the order holds across them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn segments_roll_over_and_are_deleted_once_posted() {
        let dir = tempfile::tempdir().unwrap();
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (post, posted) = recorder(down);
        let spool = DiskSpool::open(dir.path(), 1 << 30, post).unwrap();
        // Big events, so that a few segments fill quickly.
        let big = |n: u64| Node::obj([("n", n.into()), ("pad", Node::string("y".repeat(60_000)))]);
        let count = (SEGMENT_BYTES * 5 / 2 / 60_000) + 1;
        for chunk in (0..count).collect::<Vec<_>>().chunks(100) {
            let events: Vec<Event> = chunk.iter().map(|&n| big(n)).collect();
            spool.append(&events).await.unwrap();
        }
        wait_for(&posted, &(0..count).collect::<Vec<_>>());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while segments(dir.path()).unwrap().len() > 1 {
            assert!(std::time::Instant::now() < deadline, "{:?}", segments(dir.path()));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(segments(dir.path()).unwrap()[0] >= 3);
        spool.stop();
    }
}
