//! A simulated disk for crash and fault tests.
//!
//! Every file keeps its bytes and how many of them are durable. A crash
//! image keeps the durable prefix of each file plus a random part of the
//! unsynced tail, with random bytes torn in it, as a real disk may after
//! power loss. Faults make a chosen operation fail, and a countdown can
//! "pull the plug" after a number of operations: the image is taken at that
//! instant and every later operation fails.

use std::collections::BTreeMap;
use std::io;
use std::sync::Mutex;

use crate::storage::Storage;

/// A file: its current bytes, and what a crash would keep of them. Outside
/// `data[dirty_from..]`, `durable` and `data` agree.
#[derive(Clone, Debug, Default)]
struct SimFile {
    data: Vec<u8>,
    durable: Vec<u8>,
    /// The lowest offset written since the last sync.
    dirty_from: usize,
}

impl SimFile {
    fn durable(data: Vec<u8>) -> SimFile {
        SimFile { durable: data.clone(), dirty_from: data.len(), data }
    }

    fn write(&mut self, offset: usize, bytes: &[u8]) {
        let end = offset + bytes.len();
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[offset..end].copy_from_slice(bytes);
        self.dirty_from = self.dirty_from.min(offset);
    }
}

/// Which operation a fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultOp {
    /// [`Storage::append`] and [`Storage::write_at`], failing like a full
    /// disk (`ENOSPC`) after writing a random part of the data.
    Append,
    /// [`Storage::sync`], failing like a dying disk (`EIO`).
    Sync,
}

#[derive(Default)]
struct State {
    files: BTreeMap<String, SimFile>,
    rng: u64,
    ops: u64,
    crash_after_ops: Option<u64>,
    crash_image: Option<BTreeMap<String, Vec<u8>>>,
    faults: Vec<(FaultOp, u64)>,
}

/// The simulated disk.
pub struct SimStorage {
    state: Mutex<State>,
}

fn next(rng: &mut u64) -> u64 {
    // xorshift64*: deterministic from the seed, good enough for choosing
    // crash points.
    *rng ^= *rng >> 12;
    *rng ^= *rng << 25;
    *rng ^= *rng >> 27;
    rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

impl SimStorage {
    /// An empty disk whose random choices follow `seed`.
    pub fn new(seed: u64) -> SimStorage {
        SimStorage { state: Mutex::new(State { rng: seed | 1, ..State::default() }) }
    }

    /// A disk holding exactly these files, all durable.
    pub fn from_image(image: BTreeMap<String, Vec<u8>>, seed: u64) -> SimStorage {
        let files = image.into_iter().map(|(k, v)| (k, SimFile::durable(v))).collect();
        SimStorage { state: Mutex::new(State { files, rng: seed | 1, ..State::default() }) }
    }

    /// Pulls the plug after `ops` more storage operations.
    pub fn crash_after(&self, ops: u64) {
        let mut s = self.lock();
        s.crash_after_ops = Some(s.ops + ops);
    }

    /// Makes the `nth` (0-based) future call of `op` fail.
    pub fn fail(&self, op: FaultOp, nth: u64) {
        self.lock().faults.push((op, nth));
    }

    /// The image the disk would show after a crash now, or the one taken
    /// when the plug was pulled.
    pub fn crash_image(&self) -> BTreeMap<String, Vec<u8>> {
        let mut s = self.lock();
        if let Some(img) = &s.crash_image {
            return img.clone();
        }
        take_image(&mut s)
    }

    /// The current bytes of a file, durable or not.
    pub fn contents(&self, file: &str) -> Option<Vec<u8>> {
        self.lock().files.get(file).map(|f| f.data.clone())
    }

    /// Overwrites bytes of a file in place, durably: tampering in tests.
    pub fn poke(&self, file: &str, offset: usize, bytes: &[u8]) {
        let mut s = self.lock();
        let f = s.files.get_mut(file).expect("file exists");
        f.data[offset..offset + bytes.len()].copy_from_slice(bytes);
        if f.durable.len() >= offset + bytes.len() {
            f.durable[offset..offset + bytes.len()].copy_from_slice(bytes);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn take_image(s: &mut State) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let names: Vec<String> = s.files.keys().cloned().collect();
    for name in names {
        let f = &s.files[&name];
        let mut data = f.durable.clone();
        let from = f.dirty_from;
        let unsynced = f.data[from.min(f.data.len())..].to_vec();
        if !unsynced.is_empty() {
            // Keep a random prefix of the unsynced bytes, then tear some of
            // the kept bytes: zeroed (unwritten blocks) or garbage.
            let keep = (next(&mut s.rng) % (unsynced.len() as u64 + 1)) as usize;
            let mut tail = unsynced[..keep].to_vec();
            if !tail.is_empty() && next(&mut s.rng).is_multiple_of(2) {
                let start = (next(&mut s.rng) % tail.len() as u64) as usize;
                let zero = next(&mut s.rng).is_multiple_of(2);
                for b in &mut tail[start..] {
                    *b = if zero { 0 } else { next(&mut s.rng) as u8 };
                }
            }
            // The kept bytes replace what was durable there; durable bytes
            // after them stay.
            if data.len() < from + tail.len() {
                data.resize(from + tail.len(), 0);
            }
            data[from..from + tail.len()].copy_from_slice(&tail);
        }
        out.insert(name, data);
    }
    out
}

impl State {
    /// Counts an operation; fails it if the plug is pulled.
    fn tick(&mut self) -> io::Result<()> {
        if self.crash_image.is_none() && self.crash_after_ops.is_some_and(|n| self.ops >= n) {
            let img = take_image(self);
            self.crash_image = Some(img);
        }
        self.ops += 1;
        if self.crash_image.is_some() {
            return Err(io::Error::other("simulated power loss"));
        }
        Ok(())
    }

    fn fault(&mut self, op: FaultOp) -> bool {
        let mut hit = false;
        for (o, n) in &mut self.faults {
            if *o == op {
                if *n == 0 {
                    hit = true;
                }
                *n = n.wrapping_sub(1);
            }
        }
        hit
    }
}

impl Storage for SimStorage {
    fn len(&self, file: &str) -> io::Result<Option<u64>> {
        let mut s = self.lock();
        s.tick()?;
        Ok(s.files.get(file).map(|f| f.data.len() as u64))
    }

    fn read_at(&self, file: &str, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut s = self.lock();
        s.tick()?;
        let f = s.files.get(file).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, file.to_string()))?;
        let end = offset as usize + buf.len();
        if end > f.data.len() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past end"));
        }
        buf.copy_from_slice(&f.data[offset as usize..end]);
        Ok(())
    }

    fn append(&self, file: &str, data: &[u8]) -> io::Result<()> {
        let offset = self.lock().files.get(file).map_or(0, |f| f.data.len() as u64);
        self.write_at(file, offset, data)
    }

    fn write_at(&self, file: &str, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut s = self.lock();
        s.tick()?;
        let offset = offset as usize;
        if s.fault(FaultOp::Append) {
            let part = (next(&mut s.rng) % (data.len() as u64 + 1)) as usize;
            s.files.entry(file.to_string()).or_default().write(offset, &data[..part]);
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        s.files.entry(file.to_string()).or_default().write(offset, data);
        Ok(())
    }

    fn sync(&self, file: &str) -> io::Result<()> {
        let mut s = self.lock();
        s.tick()?;
        if s.fault(FaultOp::Sync) {
            return Err(io::Error::from_raw_os_error(5)); // EIO
        }
        if let Some(f) = s.files.get_mut(file) {
            let from = f.dirty_from.min(f.durable.len());
            f.durable.truncate(from);
            f.durable.extend_from_slice(&f.data[from..]);
            f.dirty_from = f.data.len();
        }
        Ok(())
    }

    fn truncate(&self, file: &str, len: u64) -> io::Result<()> {
        let mut s = self.lock();
        s.tick()?;
        if let Some(f) = s.files.get_mut(file) {
            // Durable at once, like FsStorage's, which syncs the whole file.
            f.data.truncate(len as usize);
            f.durable = f.data.clone();
            f.dirty_from = f.data.len();
        }
        Ok(())
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut s = self.lock();
        s.tick()?;
        Ok(s.files.keys().cloned().collect())
    }

    fn remove(&self, file: &str) -> io::Result<()> {
        let mut s = self.lock();
        s.tick()?;
        // Durable at once, like FsStorage's, which syncs the directory.
        s.files.remove(file);
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut s = self.lock();
        s.tick()?;
        let f = s.files.remove(from).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, from.to_string()))?;
        s.files.insert(to.to_string(), f);
        Ok(())
    }
}
