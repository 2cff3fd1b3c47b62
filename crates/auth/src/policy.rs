//! Roles, scopes and the authorization decision.

use serde::{Deserialize, Serialize};

/// What an identity is allowed to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Appends to its logs; reads nothing.
    Ingest,
    /// Reads and searches its logs.
    Reader,
    /// Reads, exports and verifies every log, including system logs; cannot
    /// append or manage.
    Auditor,
    /// Manages tokens, logs and settings, and may do anything else.
    Admin,
}

impl Role {
    /// Parses `ingest`, `reader`, `auditor` or `admin`.
    pub fn parse(s: &str) -> Result<Role, String> {
        match s {
            "ingest" => Ok(Role::Ingest),
            "reader" => Ok(Role::Reader),
            "auditor" => Ok(Role::Auditor),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role {other:?}: use ingest, reader, auditor or admin")),
        }
    }

    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Reader => "reader",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

/// Which logs an identity's role applies to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every log that is not a system log.
    All,
    /// Exactly these logs.
    Logs(Vec<String>),
}

impl Scope {
    /// Parses a comma-separated list, or `*` for all logs.
    pub fn parse(s: &str) -> Scope {
        if s.trim() == "*" || s.trim().is_empty() {
            return Scope::All;
        }
        Scope::Logs(s.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect())
    }

    /// Whether a (non-system) log is in scope.
    pub fn contains(&self, log: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Logs(l) => l.iter().any(|x| x == log),
        }
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The name recorded as `submitter.name` and as the actor of audit
    /// events: `token:<name>`, `cert:<subject CN>`, `oidc:<subject>`.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The logs the role applies to.
    pub scope: Scope,
    /// Requests per second allowed, if limited.
    pub rate_limit_per_sec: Option<u32>,
    /// A key for rate limiting and revocation: the token ID, or the
    /// certificate subject.
    pub key: String,
}

/// Something a caller wants to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// Append events to a log.
    Append(&'a str),
    /// Read entries, proofs or entry bundles of a log.
    Read(&'a str),
    /// Read a checkpoint or hash tile of a log (hashes and sizes only).
    ReadHashes(&'a str),
    /// List logs (filtered to the scope by the caller).
    ListLogs,
    /// Manage tokens, logs or settings.
    Manage,
    /// Read server metrics.
    Metrics,
}

/// The answer to "may this identity do this".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// The log is outside the identity's scope: answer exactly as if it did
    /// not exist, so the caller learns nothing about it.
    Hide,
    /// The log is in scope but the role may not do this.
    Deny(String),
}

/// Whether `log` is a system log, such as `_custos`.
pub fn is_system_log(log: &str) -> bool {
    log.starts_with('_')
}

fn in_scope(id: &Identity, log: &str) -> bool {
    match id.role {
        // Auditors and admins see every log, system logs included.
        Role::Auditor | Role::Admin => true,
        Role::Ingest | Role::Reader => !is_system_log(log) && id.scope.contains(log),
    }
}

/// Decides whether `id` may perform `action`. `public_hashes` opens
/// checkpoints and hash tiles to everyone, for witnesses and monitors.
pub fn decide(id: Option<&Identity>, action: Action, public_hashes: bool) -> Decision {
    if let (Action::ReadHashes(_), true) = (action, public_hashes) {
        return Decision::Allow;
    }
    let Some(id) = id else {
        return Decision::Deny("authentication required".into());
    };
    let deny = |what: &str| Decision::Deny(format!("role {} may not {what}", id.role.as_str()));
    match action {
        Action::Append(log) | Action::Read(log) | Action::ReadHashes(log) if !in_scope(id, log) => Decision::Hide,
        Action::Append(log) => match id.role {
            Role::Ingest | Role::Admin if !is_system_log(log) => Decision::Allow,
            _ if is_system_log(log) => deny("append to a system log"),
            _ => deny("append events"),
        },
        Action::Read(_) | Action::ReadHashes(_) => match id.role {
            Role::Reader | Role::Auditor | Role::Admin => Decision::Allow,
            Role::Ingest => deny("read"),
        },
        Action::ListLogs => match id.role {
            Role::Ingest => deny("read"),
            _ => Decision::Allow,
        },
        Action::Manage => match id.role {
            Role::Admin => Decision::Allow,
            _ => deny("manage tokens, logs or settings"),
        },
        Action::Metrics => match id.role {
            Role::Admin | Role::Auditor => Decision::Allow,
            _ => deny("read metrics"),
        },
    }
}

/// Whether `id` may see `log` at all (for filtering lists).
pub fn may_see(id: &Identity, log: &str) -> bool {
    id.role != Role::Ingest && in_scope(id, log)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(role: Role, logs: &[&str]) -> Identity {
        Identity {
            name: "t".into(),
            role,
            scope: Scope::Logs(logs.iter().map(|s| s.to_string()).collect()),
            rate_limit_per_sec: None,
            key: "k".into(),
        }
    }

    #[test]
    fn roles_and_scopes() {
        let ingest = id(Role::Ingest, &["a"]);
        let reader = id(Role::Reader, &["a"]);
        let auditor = id(Role::Auditor, &[]);
        let admin = id(Role::Admin, &[]);
        assert_eq!(decide(Some(&ingest), Action::Append("a"), false), Decision::Allow);
        assert!(matches!(decide(Some(&ingest), Action::Read("a"), false), Decision::Deny(_)));
        assert_eq!(decide(Some(&ingest), Action::Append("b"), false), Decision::Hide);
        assert_eq!(decide(Some(&reader), Action::Read("a"), false), Decision::Allow);
        assert_eq!(decide(Some(&reader), Action::Read("b"), false), Decision::Hide);
        assert_eq!(decide(Some(&reader), Action::Read("_custos"), false), Decision::Hide);
        assert!(matches!(decide(Some(&reader), Action::Append("a"), false), Decision::Deny(_)));
        assert_eq!(decide(Some(&auditor), Action::Read("_custos"), false), Decision::Allow);
        assert!(matches!(decide(Some(&auditor), Action::Append("a"), false), Decision::Deny(_)));
        assert!(matches!(decide(Some(&auditor), Action::Manage, false), Decision::Deny(_)));
        assert_eq!(decide(Some(&admin), Action::Manage, false), Decision::Allow);
        assert!(matches!(decide(Some(&admin), Action::Append("_custos"), false), Decision::Deny(_)));
        assert!(matches!(decide(None, Action::ReadHashes("a"), false), Decision::Deny(_)));
        assert_eq!(decide(None, Action::ReadHashes("a"), true), Decision::Allow);
        assert!(matches!(decide(None, Action::Read("a"), true), Decision::Deny(_)));
        assert!(may_see(&reader, "a") && !may_see(&reader, "b") && !may_see(&ingest, "a"));
    }
}
