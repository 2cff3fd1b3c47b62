//! A data directory holding the signing key and many named logs:
//!
//! ```text
//! DATA/signing.key        the note signer key, mode 0600
//! DATA/logs/NAME/entries  one directory per log (see docs/format.md)
//! ```

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use custos_tlog::note::{NoteSigner, NoteVerifier};

use crate::log::{Log, LogConfig, OpenError};
use crate::storage::{FsStorage, sync_dir};

/// Log names are at most this long, so they fit file names and URLs.
pub const MAX_LOG_NAME_BYTES: usize = 64;
/// The key file inside the data directory.
pub const KEY_FILE: &str = "signing.key";
/// The directory of logs inside the data directory.
pub const LOGS_DIR: &str = "logs";
/// File in the data directory that one process holds locked (`flock`)
/// while it has the store open, so that a second server, or `custos
/// reindex` beside a running server, cannot write the same logs.
pub const LOCK_FILE: &str = "custos.lock";

/// How a data directory is opened.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// The data directory.
    pub dir: PathBuf,
    /// The key name used when a new signing key is created.
    pub key_name: String,
    /// Whether the first append to an unknown log creates it.
    pub auto_create: bool,
    /// Entries per group commit, at most.
    pub max_batch_entries: usize,
    /// Bytes per group commit, at most.
    pub max_batch_bytes: usize,
}

impl StoreConfig {
    /// Defaults for a data directory.
    pub fn new(dir: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            dir: dir.into(),
            key_name: "custos.local".into(),
            auto_create: true,
            max_batch_entries: crate::log::DEFAULT_MAX_BATCH_ENTRIES,
            max_batch_bytes: crate::log::DEFAULT_MAX_BATCH_BYTES,
        }
    }
}

/// Why the store or one of its logs could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file system failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The signing key is missing, malformed or unsafe.
    #[error("signing key {path}: {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A log name breaks the naming rules.
    #[error("invalid log name {name:?}: {reason}")]
    BadName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The log does not exist and is not created automatically.
    #[error("log {0:?} does not exist")]
    NotFound(String),
    /// Another process has the data directory open.
    #[error("data directory {0} is in use by another custos process (it holds {LOCK_FILE} locked)")]
    InUse(PathBuf),
    /// A log failed to open.
    #[error("log {name:?}: {source}")]
    Open {
        /// The log.
        name: String,
        /// Why.
        source: OpenError,
    },
}

fn io_ctx(context: impl Into<String>) -> impl FnOnce(io::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Io { context, source }
}

/// Checks a log name: 1 to 64 bytes of `A-Z a-z 0-9 . _ -`, starting with
/// a letter or digit. Names starting with `_` are reserved for system logs
/// and allowed only when `system` is set.
pub fn validate_log_name(name: &str, system: bool) -> Result<(), StoreError> {
    let bad = |reason| Err(StoreError::BadName { name: name.chars().take(80).collect(), reason });
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_LOG_NAME_BYTES {
        return bad("longer than 64 bytes");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return bad("only letters, digits, '.', '_' and '-' are allowed");
    }
    let first = name.as_bytes()[0];
    if first == b'_' && !system {
        return bad("names starting with '_' are reserved for system logs");
    }
    if !first.is_ascii_alphanumeric() && first != b'_' {
        return bad("must start with a letter or digit");
    }
    Ok(())
}

/// The open data directory.
pub struct LogStore {
    config: StoreConfig,
    signer: NoteSigner,
    logs: RwLock<BTreeMap<String, Arc<Log>>>,
    creating: Mutex<()>,
    /// Held locked for as long as the store is open.
    _lock: std::fs::File,
}

/// A fresh random signer.
pub fn generate_signer(name: &str) -> Result<NoteSigner, String> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| format!("no randomness: {e}"))?;
    NoteSigner::from_seed(name, seed).map_err(|e| e.to_string())
}

/// Writes a secret file with mode 0600, atomically and durably.
pub fn write_secret_file(path: &Path, contents: &str) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    // A bare file name has the empty path as its parent.
    sync_dir(path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
}

/// Loads a signer key file, refusing one that others can read.
pub fn load_signer(path: &Path) -> Result<NoteSigner, StoreError> {
    let key_err = |reason: String| StoreError::Key { path: path.to_path_buf(), reason };
    let meta = std::fs::metadata(path).map_err(|e| key_err(e.to_string()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(key_err(format!("mode is {mode:o}, readable by others; run chmod 600 on it")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| key_err(e.to_string()))?;
    NoteSigner::parse(&text).map_err(|e| key_err(e.to_string()))
}

impl LogStore {
    /// Opens a data directory, creating it and its signing key if new, and
    /// opens (and so checks) every log in it.
    pub fn open(config: StoreConfig) -> Result<LogStore, StoreError> {
        let dir = config.dir.clone();
        std::fs::create_dir_all(dir.join(LOGS_DIR))
            .map_err(io_ctx(format!("creating data directory {}", dir.display())))?;
        let lock = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(io_ctx(format!("opening {}", dir.join(LOCK_FILE).display())))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(StoreError::InUse(dir)),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(io_ctx(format!("locking {}", dir.join(LOCK_FILE).display()))(e));
            }
        }
        let key_path = dir.join(KEY_FILE);
        let signer = if key_path.exists() {
            load_signer(&key_path)?
        } else {
            let signer = generate_signer(&config.key_name)
                .map_err(|reason| StoreError::Key { path: key_path.clone(), reason })?;
            write_secret_file(&key_path, &format!("{}\n", signer.to_key_string()))
                .map_err(io_ctx(format!("writing {}", key_path.display())))?;
            tracing::info!(verifier_key = %signer.verifier().to_key_string(), "created a new signing key");
            signer
        };
        let store =
            LogStore { config, signer, logs: RwLock::new(BTreeMap::new()), creating: Mutex::new(()), _lock: lock };
        let entries = std::fs::read_dir(dir.join(LOGS_DIR)).map_err(io_ctx("listing logs"))?;
        for entry in entries {
            let entry = entry.map_err(io_ctx("listing logs"))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if validate_log_name(&name, true).is_err() {
                tracing::warn!(name, "ignoring a directory that is not a valid log name");
                continue;
            }
            let log = store.open_log(&name)?;
            store.logs.write().unwrap_or_else(|e| e.into_inner()).insert(name, Arc::new(log));
        }
        Ok(store)
    }

    fn open_log(&self, name: &str) -> Result<Log, StoreError> {
        let path = self.config.dir.join(LOGS_DIR).join(name);
        let storage = FsStorage::open(&path).map_err(io_ctx(format!("opening {}", path.display())))?;
        let mut cfg = LogConfig::new(&self.origin(name));
        cfg.max_batch_entries = self.config.max_batch_entries;
        cfg.max_batch_bytes = self.config.max_batch_bytes;
        Log::open(Arc::new(storage), cfg, self.signer.clone())
            .map_err(|source| StoreError::Open { name: name.into(), source })
    }

    /// The checkpoint origin of a log: `<key name>/<log name>`.
    pub fn origin(&self, name: &str) -> String {
        format!("{}/{name}", self.signer.name())
    }

    /// The verifier key of every log in this store.
    pub fn verifier(&self) -> NoteVerifier {
        self.signer.verifier()
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// An existing log.
    pub fn get(&self, name: &str) -> Option<Arc<Log>> {
        self.logs.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    /// An existing log, or a new one if the store creates logs on first
    /// write. System logs (`_name`) are always created.
    pub fn get_or_create(&self, name: &str) -> Result<Arc<Log>, StoreError> {
        if let Some(log) = self.get(name) {
            return Ok(log);
        }
        let system = name.starts_with('_');
        validate_log_name(name, system)?;
        if !self.config.auto_create && !system {
            return Err(StoreError::NotFound(name.into()));
        }
        self.create(name, system)
    }

    /// Creates a log explicitly; returns the existing one if present.
    pub fn create(&self, name: &str, system: bool) -> Result<Arc<Log>, StoreError> {
        validate_log_name(name, system)?;
        let _guard = self.creating.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(log) = self.get(name) {
            return Ok(log);
        }
        let log = Arc::new(self.open_log(name)?);
        sync_dir(&self.config.dir.join(LOGS_DIR)).map_err(io_ctx("syncing logs directory"))?;
        self.logs.write().unwrap_or_else(|e| e.into_inner()).insert(name.into(), log.clone());
        Ok(log)
    }

    /// Every log, by name.
    pub fn list(&self) -> Vec<(String, Arc<Log>)> {
        self.logs.read().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_names_follow_the_rules() {
        for ok in ["a", "prod-db", "db.prod_1", &"x".repeat(64)] {
            assert!(validate_log_name(ok, false).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "a/b", ".hidden", "-x", "_custos", "a b", &"x".repeat(65), "é"] {
            assert!(validate_log_name(bad, false).is_err(), "{bad}");
        }
        assert!(validate_log_name("_custos", true).is_ok());
    }

    #[test]
    fn one_process_at_a_time_opens_a_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let first = LogStore::open(StoreConfig::new(dir.path())).unwrap();
        let err = LogStore::open(StoreConfig::new(dir.path())).err().unwrap();
        assert!(matches!(err, StoreError::InUse(_)), "{err}");
        assert!(err.to_string().contains("in use by another custos process"), "{err}");
        drop(first);
        assert!(LogStore::open(StoreConfig::new(dir.path())).is_ok());
    }

    #[test]
    fn world_readable_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(LogStore::open(StoreConfig::new(dir.path())).unwrap());
        let key = dir.path().join(KEY_FILE);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = LogStore::open(StoreConfig::new(dir.path())).err().unwrap().to_string();
        assert!(err.contains("readable by others"), "{err}");
    }
}
