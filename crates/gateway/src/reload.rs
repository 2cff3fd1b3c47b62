//! Picks up changes to the users file while the gateway runs: people
//! added with `custos gateway user` can log in at once, and people removed
//! cannot log in any more (sessions already open go on, as PostgreSQL's do
//! when a role's password changes). Each change is recorded in the log as
//! a `gateway.users.reload` event naming who was added, removed or
//! changed, so that the log also shows who was given access, and when.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use custos_event::doc::Node;

use crate::rules::{Users, UsersFile};
use crate::{Gateway, sink::Event};

/// How often the users file is looked at for a change.
pub const USERS_RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// Names listed per kind of change in a reload event, at most.
const MAX_LISTED_NAMES: usize = 32;

/// A person as the file holds them: the verifier text and the roles.
type Person = (String, Vec<String>);

/// What identifies a version of the file: a new file renamed over it, or
/// a write in place, changes one of these.
fn stamp(path: &Path) -> Option<(Option<SystemTime>, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok(), m.len(), m.ino()))
}

/// Reads and checks the users file; a missing file holds nobody.
fn load(path: &Path) -> Result<(Users, BTreeMap<String, Person>), String> {
    let file: UsersFile = match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("parsing {}: {e}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => UsersFile::default(),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    let users = Users::from_file(&file)?;
    let people = file.users.into_iter().map(|u| (u.name, (u.verifier, u.roles))).collect();
    Ok((users, people))
}

/// The names added, removed, and changed (password or roles) from `old`
/// to `new`.
fn diff(old: &BTreeMap<String, Person>, new: &BTreeMap<String, Person>) -> [Vec<String>; 3] {
    let added = new.keys().filter(|n| !old.contains_key(*n)).cloned().collect();
    let removed = old.keys().filter(|n| !new.contains_key(*n)).cloned().collect();
    let changed = new.iter().filter(|(n, p)| old.get(*n).is_some_and(|o| o != *p)).map(|(n, _)| n.clone()).collect();
    [added, removed, changed]
}

fn names(list: &[String]) -> Node<'static> {
    Node::Arr(list.iter().take(MAX_LISTED_NAMES).map(|n| Node::string(n.clone())).collect())
}

/// The event of a reload (or of a file that could not be used).
fn reload_event(gw: &Gateway, path: &Path, outcome: Result<(usize, &[Vec<String>; 3]), &str>) -> Event {
    let name = gw.config.name.clone();
    let mut meta = Node::obj([("name", name.clone().into()), ("users_file", path.display().to_string().into())]);
    let mut e = Node::obj([
        ("time", crate::session::now().into()),
        ("activity", "gateway.users.reload".into()),
        ("class_uid", 3001.into()),
        ("actor", Node::obj([("user", Node::obj([("name", format!("gateway:{name}").into())]))])),
        ("resource", Node::obj([("type", "gateway".into()), ("name", name.into())])),
    ]);
    match outcome {
        Ok((count, [added, removed, changed])) => {
            e.set("status", "success".into());
            e.set(
                "status_detail",
                format!("{} added, {} removed, {} changed; {count} people", added.len(), removed.len(), changed.len())
                    .into(),
            );
            meta.set("users", count.into());
            meta.set("added", names(added));
            meta.set("removed", names(removed));
            meta.set("changed", names(changed));
            let targets = added.iter().chain(removed).chain(changed).take(MAX_LISTED_NAMES);
            e.set(
                "targets",
                Node::Arr(
                    targets.map(|n| Node::obj([("type", "user".into()), ("name", Node::string(n.clone()))])).collect(),
                ),
            );
        }
        Err(why) => {
            e.set("status", "failure".into());
            e.set("status_detail", format!("{why}; the gateway keeps the people it had").into());
        }
    }
    e.set("metadata", Node::obj([("gateway", meta)]));
    e
}

/// Watches `path` until the task is dropped, swapping the gateway's
/// people when the file changes and recording each change.
pub(crate) async fn watch_users(gw: Arc<Gateway>, path: PathBuf) {
    let mut last = stamp(&path);
    let mut known = load(&path).map(|(_, p)| p).unwrap_or_default();
    loop {
        tokio::time::sleep(USERS_RELOAD_INTERVAL).await;
        let now = stamp(&path);
        if now == last {
            continue;
        }
        last = now;
        let event = match load(&path) {
            Ok((users, people)) => {
                let changes = diff(&known, &people);
                if changes.iter().all(Vec::is_empty) {
                    continue;
                }
                let count = users.len();
                *gw.users.write().expect("users lock") = Arc::new(users);
                tracing::info!(
                    added = ?changes[0], removed = ?changes[1], changed = ?changes[2],
                    "gateway users reloaded from {}", path.display()
                );
                known = people;
                reload_event(&gw, &path, Ok((count, &changes)))
            }
            Err(why) => {
                tracing::error!(error = %why, "the users file changed but cannot be used; keeping the people loaded before");
                reload_event(&gw, &path, Err(&why))
            }
        };
        // Durable in fail-closed mode; a log that cannot take it is
        // logged, and the change applies all the same (the file is the
        // administrator's decision, not the log's).
        let durable = gw.config.mode == crate::AuditMode::FailClosed;
        if let Err(e) = gw.sink.submit(vec![event], durable).await {
            tracing::warn!(error = %e, "the users reload could not be recorded");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(v: &str, roles: &[&str]) -> Person {
        (v.to_string(), roles.iter().map(|r| r.to_string()).collect())
    }

    #[test]
    fn diffs_name_who_was_added_removed_and_changed() {
        let old: BTreeMap<String, Person> = [
            ("alice".into(), person("v1", &["analyst"])),
            ("bob".into(), person("v2", &[])),
            ("carol".into(), person("v3", &[])),
        ]
        .into();
        let new: BTreeMap<String, Person> = [
            ("alice".into(), person("v1", &["analyst", "support"])),
            ("carol".into(), person("v3", &[])),
            ("dora".into(), person("v4", &[])),
        ]
        .into();
        assert_eq!(diff(&old, &new), [vec!["dora".to_string()], vec!["bob".to_string()], vec!["alice".to_string()]]);
        assert_eq!(diff(&new, &new), [Vec::<String>::new(), vec![], vec![]]);
    }
}
