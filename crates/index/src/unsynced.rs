//! An index directory that does not fsync, and the marker that makes that
//! safe.
//!
//! The index is derived data, so its commits need not survive a crash of
//! the machine: only that a damaged index is never used. tantivy's
//! `MmapDirectory` syncs every file of every commit (a dozen fsyncs each
//! time), and those compete on the disk with the log's fdatasync, which
//! every acknowledgement waits for. [`UnsyncedDirectory`] skips them.
//!
//! What a crash can do to such an index:
//! - the process dies (kill -9, a panic): the files written so far are in
//!   the page cache and the kernel writes them out; tantivy's commit
//!   (segment files, then `meta.json` renamed over the old one) leaves the
//!   last commit or the one before, both whole;
//! - the machine dies (power, kernel): anything is possible.
//!
//! The two are told apart by the marker file [`MARKER_FILE`], synced
//! before the index is written to: `open <boot id>` while a process has the
//! index open, `clean` once [`mark_clean`] synced every file. At open, an
//! index marked `open` under another boot id (from
//! `/proc/sys/kernel/random/boot_id`) was being written when the machine
//! went down, and is rebuilt.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    AntiCallToken, Directory, DirectoryLock, FileHandle, Lock, MmapDirectory, TerminatingWrite, WatchCallback,
    WatchHandle, WritePtr,
};

/// The marker file in an index directory.
pub const MARKER_FILE: &str = "custos-index-state";

/// The running kernel's boot id, or `None` where there is none (then the
/// index must be synced as usual).
pub fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_string())
}

/// What the marker of an existing index says about it.
#[derive(Debug, PartialEq, Eq)]
pub enum Marker {
    /// Closed cleanly, or never marked (written by a build that synced
    /// every commit).
    Trusted,
    /// Open, under this boot: the process stopped, the page cache did not.
    OpenThisBoot,
    /// Open when the machine went down: it may be damaged.
    OpenOtherBoot(String),
}

/// Reads the marker of the index in `dir`.
pub fn read_marker(dir: &Path, boot: &str) -> Marker {
    match std::fs::read_to_string(dir.join(MARKER_FILE)) {
        Ok(s) => match s.trim().strip_prefix("open ") {
            Some(b) if b == boot => Marker::OpenThisBoot,
            Some(b) => Marker::OpenOtherBoot(b.to_string()),
            None => Marker::Trusted,
        },
        Err(_) => Marker::Trusted,
    }
}

/// Marks the index in `dir` open under `boot`, durably, before anything is
/// written to it unsynced.
pub fn mark_open(dir: &Path, boot: &str) -> io::Result<()> {
    write_marker(dir, &format!("open {boot}\n"))
}

/// Syncs every file of the index in `dir`, then marks it clean.
pub fn mark_clean(dir: &Path) -> io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_file() && e.file_name() != MARKER_FILE {
            File::open(e.path())?.sync_all()?;
        }
    }
    File::open(dir)?.sync_all()?;
    write_marker(dir, "clean\n")
}

fn write_marker(dir: &Path, text: &str) -> io::Result<()> {
    let tmp = dir.join(format!("{MARKER_FILE}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(MARKER_FILE))?;
    File::open(dir)?.sync_all()
}

/// tantivy's `MmapDirectory`, minus its fsyncs.
#[derive(Clone, Debug)]
pub struct UnsyncedDirectory {
    inner: MmapDirectory,
    root: PathBuf,
}

impl UnsyncedDirectory {
    /// Opens `root`, which must exist.
    pub fn open(root: &Path) -> Result<UnsyncedDirectory, tantivy::directory::error::OpenDirectoryError> {
        Ok(UnsyncedDirectory { inner: MmapDirectory::open(root)?, root: root.to_path_buf() })
    }
}

/// A file written without a sync when it is finished.
struct UnsyncedFile(File);

impl Write for UnsyncedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TerminatingWrite for UnsyncedFile {
    fn terminate_ref(&mut self, _: AntiCallToken) -> io::Result<()> {
        self.0.flush()
    }
}

impl Directory for UnsyncedDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        self.inner.get_file_handle(path)
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        self.inner.delete(path)
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        self.inner.exists(path)
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        let file = OpenOptions::new().write(true).create_new(true).open(self.root.join(path)).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                OpenWriteError::FileAlreadyExists(path.to_path_buf())
            } else {
                OpenWriteError::wrap_io_error(e, path.to_path_buf())
            }
        })?;
        Ok(BufWriter::new(Box::new(UnsyncedFile(file))))
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        self.inner.atomic_read(path)
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        // Atomic against a process crash: a whole new file renamed over the
        // old one.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self.root.join(format!(".atomic-write.{}.{n}.tmp", std::process::id()));
        let written = File::create(&tmp).and_then(|mut f| f.write_all(data));
        match written.and_then(|()| std::fs::rename(&tmp, self.root.join(path))) {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    fn sync_directory(&self) -> io::Result<()> {
        Ok(())
    }

    fn acquire_lock(&self, lock: &Lock) -> Result<DirectoryLock, LockError> {
        self.inner.acquire_lock(lock)
    }

    fn watch(&self, watch_callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        self.inner.watch(watch_callback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_tell_a_process_crash_from_a_machine_crash() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_marker(dir.path(), "b1"), Marker::Trusted, "no marker: an index from a syncing build");
        mark_open(dir.path(), "b1").unwrap();
        assert_eq!(read_marker(dir.path(), "b1"), Marker::OpenThisBoot);
        assert_eq!(read_marker(dir.path(), "b2"), Marker::OpenOtherBoot("b1".into()));
        std::fs::write(dir.path().join("seg.idx"), b"data").unwrap();
        mark_clean(dir.path()).unwrap();
        assert_eq!(read_marker(dir.path(), "b2"), Marker::Trusted);
        assert!(!dir.path().join(format!("{MARKER_FILE}.tmp")).exists());
    }
}
