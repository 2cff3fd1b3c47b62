//! Where a log's files live. The log talks to storage only through
//! [`Storage`], so tests can swap in [`crate::sim::SimStorage`], which
//! tears writes and drops unsynced data, and a later object-store backend
//! can take the place of [`FsStorage`].

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The files of one log. Names are plain file names without separators.
///
/// Durability contract: [`Storage::append`] and [`Storage::write_at`] are
/// not durable until a later [`Storage::sync`] of the same file returns
/// `Ok`. [`Storage::truncate`] is durable when it returns `Ok`. Each file
/// has one writer at a time.
pub trait Storage: Send + Sync + 'static {
    /// The length of a file, or `None` if it does not exist. Called for
    /// every commit, so it must be cheap (no system call per call).
    fn len(&self, file: &str) -> io::Result<Option<u64>>;
    /// Fills `buf` from `offset`; fewer bytes than asked is an error.
    fn read_at(&self, file: &str, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Appends to a file, creating it if needed.
    fn append(&self, file: &str, data: &[u8]) -> io::Result<()>;
    /// Writes `data` at `offset` of a file, creating it if needed and
    /// growing it if the write ends past its end.
    fn write_at(&self, file: &str, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Makes everything written to a file so far durable.
    fn sync(&self, file: &str) -> io::Result<()>;
    /// Cuts a file to `len` bytes, durably.
    fn truncate(&self, file: &str, len: u64) -> io::Result<()>;
    /// The names of the files that exist, in no particular order.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Removes a file, durably; removing a missing file is not an error.
    /// A reader that already holds the file open may finish its read.
    fn remove(&self, file: &str) -> io::Result<()>;
    /// Renames a file, replacing any file called `to`, durably.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
}

/// Reads a whole file, or `None` if it does not exist.
pub fn read_all(s: &dyn Storage, file: &str) -> io::Result<Option<Vec<u8>>> {
    let Some(len) = s.len(file)? else {
        return Ok(None);
    };
    let mut buf = vec![0u8; len as usize];
    s.read_at(file, 0, &mut buf)?;
    Ok(Some(buf))
}

/// A directory on a local POSIX file system.
pub struct FsStorage {
    dir: PathBuf,
    // One handle per file, opened for reading and writing (not O_APPEND:
    // Linux's pwrite ignores the offset on such handles). Readers and the
    // one writer of a file share it.
    files: Mutex<HashMap<String, Arc<Handle>>>,
}

/// An open file and its length. The length is kept here rather than asked
/// of the file system per append: on this kernel an fstat of one file
/// between writes made the fdatasync of another file in the directory
/// about 40 µs slower (multigrain timestamps), which is a third of a
/// commit.
struct Handle {
    file: File,
    len: std::sync::atomic::AtomicU64,
}

impl Handle {
    fn len(&self) -> u64 {
        self.len.load(std::sync::atomic::Ordering::Acquire)
    }

    fn set_len(&self, len: u64) {
        self.len.store(len, std::sync::atomic::Ordering::Release);
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        match self.file.write_all_at(data, offset) {
            Ok(()) => {
                self.set_len(self.len().max(offset + data.len() as u64));
                Ok(())
            }
            Err(e) => {
                self.reload_len();
                Err(e)
            }
        }
    }

    /// After a failed write the length is whatever the file system says.
    fn reload_len(&self) {
        if let Ok(m) = self.file.metadata() {
            self.set_len(m.len());
        }
    }
}

impl FsStorage {
    /// Uses `dir`, creating it (and syncing its parent) if needed.
    pub fn open(dir: &Path) -> io::Result<FsStorage> {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        Ok(FsStorage { dir: dir.to_path_buf(), files: Mutex::new(HashMap::new()) })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn handle(&self, name: &str, create: bool) -> io::Result<Option<Arc<Handle>>> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = files.get(name) {
            return Ok(Some(f.clone()));
        }
        let path = self.dir.join(name);
        let existed = path.exists();
        if !existed && !create {
            return Ok(None);
        }
        let file = OpenOptions::new().read(true).write(true).create(create).open(&path)?;
        let len = file.metadata()?.len();
        let f = Arc::new(Handle { file, len: len.into() });
        if !existed {
            // A new file's directory entry must be durable too.
            sync_dir(&self.dir)?;
        }
        files.insert(name.to_string(), f.clone());
        Ok(Some(f))
    }
}

/// Syncs a directory, so that entries created in it survive a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Storage for FsStorage {
    fn len(&self, file: &str) -> io::Result<Option<u64>> {
        Ok(self.handle(file, false)?.map(|h| h.len()))
    }

    fn read_at(&self, file: &str, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let h = self
            .handle(file, false)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{file} does not exist")))?;
        h.file.read_exact_at(buf, offset)
    }

    fn append(&self, file: &str, data: &[u8]) -> io::Result<()> {
        let h = self.handle(file, true)?.expect("created");
        h.write_at(h.len(), data)
    }

    fn write_at(&self, file: &str, offset: u64, data: &[u8]) -> io::Result<()> {
        self.handle(file, true)?.expect("created").write_at(offset, data)
    }

    fn sync(&self, file: &str) -> io::Result<()> {
        match self.handle(file, false)? {
            Some(h) => h.file.sync_data(),
            None => Ok(()),
        }
    }

    fn truncate(&self, file: &str, len: u64) -> io::Result<()> {
        if let Some(h) = self.handle(file, false)? {
            let cut = h.file.set_len(len);
            h.reload_len();
            cut?;
            h.file.sync_all()?;
        }
        Ok(())
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir)? {
            let e = e?;
            if e.file_type()?.is_file()
                && let Ok(name) = e.file_name().into_string()
            {
                out.push(name);
            }
        }
        Ok(out)
    }

    fn remove(&self, file: &str) -> io::Result<()> {
        self.files.lock().unwrap_or_else(|e| e.into_inner()).remove(file);
        match std::fs::remove_file(self.dir.join(file)) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        {
            let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
            files.remove(from);
            files.remove(to);
        }
        std::fs::rename(self.dir.join(from), self.dir.join(to))?;
        sync_dir(&self.dir)
    }
}
