//! Bearer tokens: `custos_<id>_<secret>`. The secret is 32 random bytes,
//! shown once; the store keeps only its SHA-256 (a fast hash is right for
//! high-entropy secrets). The store is one JSON file, replaced atomically
//! under a file lock, so the offline CLI and a running server can both
//! change it; the server rereads it when it changes, so revocation takes
//! effect at once.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::policy::{Identity, Role, Scope};

/// Every token starts with this, so secret scanners can find leaked ones.
pub const TOKEN_PREFIX: &str = "custos_";
/// The store's directory inside the data directory.
pub const AUTH_DIR: &str = "auth";
/// The store's file inside [`AUTH_DIR`].
pub const TOKENS_FILE: &str = "tokens.json";
/// At most this many tokens, so the store stays small and fast to reread.
pub const MAX_TOKENS: usize = 10_000;

/// One stored token, without its secret.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenRecord {
    /// The public part of the token, 12 hex digits.
    pub id: String,
    /// A human name, such as `ci-pipeline`.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The logs the role applies to.
    pub scope: Scope,
    /// Creation time, Unix seconds.
    pub created_at: u64,
    /// Expiry, Unix seconds.
    pub expires_at: Option<u64>,
    /// Revocation time, Unix seconds.
    pub revoked_at: Option<u64>,
    /// Requests per second allowed.
    pub rate_limit_per_sec: Option<u32>,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
}

impl TokenRecord {
    /// The identity this token authenticates as.
    pub fn identity(&self) -> Identity {
        Identity {
            name: format!("token:{}", self.name),
            role: self.role,
            scope: self.scope.clone(),
            rate_limit_per_sec: self.rate_limit_per_sec,
            key: format!("token:{}", self.id),
        }
    }
}

/// Why a token was refused. The server answers all of these with the same
/// 401, and records which one in the audit trail.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// Not of the form `custos_<id>_<secret>`.
    #[error("malformed token")]
    Malformed,
    /// No token has this ID, or the secret is wrong.
    #[error("unknown token")]
    Unknown,
    /// Past its expiry.
    #[error("token {0} expired")]
    Expired(String),
    /// Revoked.
    #[error("token {0} is revoked")]
    Revoked(String),
}

/// Why the store could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file system failed.
    #[error("token store {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("token store {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A request to change it is invalid.
    #[error("{0}")]
    Invalid(String),
}

/// Parses a duration such as `90d`, `12h`, `30m` or `45s`.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let n: u64 = num.parse().map_err(|_| format!("ttl {s:?} is not like 90d, 12h, 30m or 45s"))?;
    let secs = match unit {
        "d" => n.checked_mul(86_400),
        "h" => n.checked_mul(3600),
        "m" => n.checked_mul(60),
        "s" => Some(n),
        _ => None,
    };
    secs.map(Duration::from_secs).ok_or_else(|| format!("ttl {s:?} is not like 90d, 12h, 30m or 45s"))
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Splits `custos_<id>_<secret>`.
fn split(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()) && secret.len() == 43).then_some((id, secret))
}

struct Cache {
    stamp: Option<(SystemTime, u64)>,
    /// Shared, so that checking a token copies no records.
    records: std::sync::Arc<Vec<TokenRecord>>,
    generation: u64,
}

/// The token store of a data directory.
pub struct TokenStore {
    dir: PathBuf,
    cache: Mutex<Cache>,
}

impl TokenStore {
    /// Opens (creating the directory, mode 0700) the store of `data_dir`.
    pub fn open(data_dir: &Path) -> Result<TokenStore, StoreError> {
        let dir = data_dir.join(AUTH_DIR);
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|source| StoreError::Io { path: dir.clone(), source })?;
        }
        let store =
            TokenStore { dir, cache: Mutex::new(Cache { stamp: None, records: Default::default(), generation: 0 }) };
        store.records()?;
        Ok(store)
    }

    fn path(&self) -> PathBuf {
        self.dir.join(TOKENS_FILE)
    }

    fn io(&self, source: std::io::Error) -> StoreError {
        StoreError::Io { path: self.path(), source }
    }

    /// Every token, reread if the file changed.
    pub fn records(&self) -> Result<Vec<TokenRecord>, StoreError> {
        Ok(self.snapshot()?.as_ref().clone())
    }

    /// [`TokenStore::records`] without copying them.
    fn snapshot(&self) -> Result<std::sync::Arc<Vec<TokenRecord>>, StoreError> {
        let path = self.path();
        let stamp = match std::fs::metadata(&path) {
            Ok(m) => Some((m.modified().map_err(|e| self.io(e))?, m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.io(e)),
        };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.stamp != stamp || stamp.is_none() {
            cache.records = std::sync::Arc::new(match stamp {
                None => Vec::new(),
                Some(_) => {
                    let bytes = std::fs::read(&path).map_err(|e| self.io(e))?;
                    serde_json::from_slice(&bytes)
                        .map_err(|e| StoreError::Corrupt { path: path.clone(), reason: e.to_string() })?
                }
            });
            cache.stamp = stamp;
            cache.generation += 1;
        }
        Ok(cache.records.clone())
    }

    /// Grows each time the store was reread because it changed, here or in
    /// another process.
    pub fn generation(&self) -> u64 {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).generation
    }

    /// Runs `change` on the records under an exclusive file lock and
    /// replaces the file atomically and durably.
    fn modify<T>(&self, change: impl FnOnce(&mut Vec<TokenRecord>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(self.dir.join("tokens.lock"))
            .map_err(|e| self.io(e))?;
        lock.lock().map_err(|e| self.io(e))?;
        // Reread under the lock: another process may have just changed it.
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).stamp = None;
        let mut records = self.records()?;
        let out = change(&mut records)?;
        let tmp = self.dir.join("tokens.json.tmp");
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| self.io(e))?;
        f.write_all(&serde_json::to_vec_pretty(&records).expect("records serialise")).map_err(|e| self.io(e))?;
        f.sync_all().map_err(|e| self.io(e))?;
        std::fs::rename(&tmp, self.path()).map_err(|e| self.io(e))?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(|e| self.io(e))?;
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).stamp = None;
        Ok(out)
    }

    /// Creates a token and returns it (the only time its secret is seen)
    /// with its record.
    pub fn create(
        &self,
        name: &str,
        role: Role,
        scope: Scope,
        ttl: Option<Duration>,
        rate_limit_per_sec: Option<u32>,
        now: SystemTime,
    ) -> Result<(String, TokenRecord), StoreError> {
        if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(StoreError::Invalid(format!(
                "token name {name:?} must be 1 to 64 letters, digits, '.', '_' or '-'"
            )));
        }
        if let Scope::Logs(logs) = &scope
            && logs.iter().any(|l| l.starts_with('_'))
        {
            return Err(StoreError::Invalid("system logs cannot be scoped; use the auditor role".into()));
        }
        let mut raw = [0u8; 6 + 32];
        getrandom::fill(&mut raw).map_err(|e| StoreError::Invalid(format!("no randomness: {e}")))?;
        let id: String = raw[..6].iter().map(|b| format!("{b:02x}")).collect();
        let secret = B64URL.encode(&raw[6..]);
        let token = format!("{TOKEN_PREFIX}{id}_{secret}");
        let record = TokenRecord {
            id,
            name: name.to_string(),
            role,
            scope,
            created_at: unix(now),
            expires_at: ttl.map(|t| unix(now) + t.as_secs()),
            revoked_at: None,
            rate_limit_per_sec,
            secret_sha256: sha256_hex(&secret),
        };
        let r = record.clone();
        self.modify(move |records| {
            if records.len() >= MAX_TOKENS {
                return Err(StoreError::Invalid(format!("the store already holds {MAX_TOKENS} tokens")));
            }
            records.push(r);
            Ok(())
        })?;
        Ok((token, record))
    }

    /// Revokes the token with this ID or name.
    pub fn revoke(&self, id_or_name: &str, now: SystemTime) -> Result<TokenRecord, StoreError> {
        self.modify(|records| {
            let matches: Vec<usize> = records
                .iter()
                .enumerate()
                .filter(|(_, r)| r.id == id_or_name || r.name == id_or_name)
                .map(|(i, _)| i)
                .collect();
            match matches[..] {
                [i] => {
                    records[i].revoked_at.get_or_insert(unix(now));
                    Ok(records[i].clone())
                }
                [] => Err(StoreError::Invalid(format!("no token has ID or name {id_or_name:?}"))),
                _ => Err(StoreError::Invalid(format!("{id_or_name:?} names several tokens; use the ID"))),
            }
        })
    }

    /// Checks a bearer token.
    pub fn authenticate(&self, token: &str, now: SystemTime) -> Result<Identity, AuthError> {
        let (id, secret) = split(token).ok_or(AuthError::Malformed)?;
        let records = self.snapshot().map_err(|_| AuthError::Unknown)?;
        let r = records.iter().find(|r| r.id == id).ok_or(AuthError::Unknown)?;
        if !ct_eq(sha256_hex(secret).as_bytes(), r.secret_sha256.as_bytes()) {
            return Err(AuthError::Unknown);
        }
        if r.revoked_at.is_some() {
            return Err(AuthError::Revoked(r.id.clone()));
        }
        if r.expires_at.is_some_and(|e| unix(now) >= e) {
            return Err(AuthError::Expired(r.id.clone()));
        }
        Ok(r.identity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_authenticate_expire_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let s = TokenStore::open(dir.path()).unwrap();
        let now = SystemTime::now();
        let (tok, rec) =
            s.create("ci", Role::Ingest, Scope::parse("a,b"), Some(parse_ttl("1h").unwrap()), None, now).unwrap();
        assert!(tok.starts_with("custos_"));
        let id = s.authenticate(&tok, now).unwrap();
        assert_eq!((id.role, id.name.as_str()), (Role::Ingest, "token:ci"));
        assert_eq!(s.authenticate(&tok, now + Duration::from_secs(3600)), Err(AuthError::Expired(rec.id.clone())));
        let mut wrong = tok.clone();
        wrong.pop();
        wrong.push(if tok.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(s.authenticate(&wrong, now), Err(AuthError::Unknown));
        assert_eq!(s.authenticate("nope", now), Err(AuthError::Malformed));
        // A second handle (another process) sees the revocation at once.
        let other = TokenStore::open(dir.path()).unwrap();
        other.revoke("ci", now).unwrap();
        assert_eq!(s.authenticate(&tok, now), Err(AuthError::Revoked(rec.id)));
        // The secret is not stored.
        let file = std::fs::read_to_string(dir.path().join("auth/tokens.json")).unwrap();
        // The whole secret, not its last '_'-separated piece: base64url
        // secrets contain '_', and a short tail can appear in the file by
        // chance (a flaky failure seen in CI's suite).
        let (_, secret) = split(&tok).unwrap();
        assert!(!file.contains(secret));
        assert!(s.create("bad name", Role::Admin, Scope::All, None, None, now).is_err());
        assert!(s.create("x", Role::Reader, Scope::parse("_custos"), None, None, now).is_err());
    }

    #[test]
    fn ttl_parsing() {
        assert_eq!(parse_ttl("90d"), Ok(Duration::from_secs(90 * 86400)));
        assert_eq!(parse_ttl("30m"), Ok(Duration::from_secs(1800)));
        assert!(parse_ttl("1y").is_err());
        assert!(parse_ttl("").is_err());
    }
}
