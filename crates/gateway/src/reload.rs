//! Picks up changes to the users file and to the deny rules while the
//! gateway runs: people added with `custos gateway user` can log in at
//! once, and people removed cannot log in any more (sessions already open
//! go on, as PostgreSQL's do when a role's password changes); new rules
//! apply to the next statement of every session. Each change is recorded
//! in the log (`gateway.users.reload`, `gateway.rules.reload`) naming who
//! or which rule was added, removed or changed, so that the log also shows
//! who was given access, and when the guardrails changed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use custos_event::doc::Node;

use crate::rules::{DenyRule, Users, UsersFile};
use crate::{Gateway, RulesLoader, sink::Event};

/// How often the users file, and the file of the deny rules, are looked
/// at for a change.
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
    let file = UsersFile::read(path)?;
    let users = Users::from_file(&file)?;
    let people = file.users.into_iter().map(|u| (u.name, (u.verifier, u.roles))).collect();
    Ok((users, people))
}

/// The names added, removed, and changed (for people: password or roles)
/// from `old` to `new`.
fn diff<T: PartialEq>(old: &BTreeMap<String, T>, new: &BTreeMap<String, T>) -> [Vec<String>; 3] {
    let added = new.keys().filter(|n| !old.contains_key(*n)).cloned().collect();
    let removed = old.keys().filter(|n| !new.contains_key(*n)).cloned().collect();
    let changed = new.iter().filter(|(n, p)| old.get(*n).is_some_and(|o| o != *p)).map(|(n, _)| n.clone()).collect();
    [added, removed, changed]
}

fn names(list: &[String]) -> Node<'static> {
    Node::Arr(list.iter().take(MAX_LISTED_NAMES).map(|n| Node::string(n.clone())).collect())
}

/// What a reload is of: its activity, and what the names in it are.
#[derive(Clone, Copy)]
struct Kind {
    activity: &'static str,
    /// The target type of the names, and the word for them.
    target: &'static str,
    count_key: &'static str,
    plural: &'static str,
}

const PEOPLE: Kind = Kind { activity: "gateway.users.reload", target: "user", count_key: "users", plural: "people" };
const RULES: Kind = Kind { activity: "gateway.rules.reload", target: "rule", count_key: "rules", plural: "rules" };

/// The event of a reload (or of a file that could not be used).
fn reload_event(gw: &Gateway, kind: Kind, path: &Path, outcome: Result<(usize, &[Vec<String>; 3]), &str>) -> Event {
    let name = gw.config.name.clone();
    let mut meta = Node::obj([("name", name.clone().into()), ("file", path.display().to_string().into())]);
    let mut e = Node::obj([
        ("time", crate::session::now().into()),
        ("activity", kind.activity.into()),
        ("class_uid", 3001.into()),
        ("actor", Node::obj([("user", Node::obj([("name", format!("gateway:{name}").into())]))])),
        ("resource", Node::obj([("type", "gateway".into()), ("name", name.into())])),
    ]);
    match outcome {
        Ok((count, [added, removed, changed])) => {
            e.set("status", "success".into());
            e.set(
                "status_detail",
                format!(
                    "{} added, {} removed, {} changed; {count} {}",
                    added.len(),
                    removed.len(),
                    changed.len(),
                    kind.plural
                )
                .into(),
            );
            meta.set(kind.count_key, count.into());
            meta.set("added", names(added));
            meta.set("removed", names(removed));
            meta.set("changed", names(changed));
            let targets = added.iter().chain(removed).chain(changed).take(MAX_LISTED_NAMES);
            let target = |n: &String| Node::obj([("type", kind.target.into()), ("name", Node::string(n.clone()))]);
            e.set("targets", Node::Arr(targets.map(target).collect()));
        }
        Err(why) => {
            e.set("status", "failure".into());
            e.set("status_detail", format!("{why}; the gateway keeps the {} it had", kind.plural).into());
        }
    }
    e.set("metadata", Node::obj([("gateway", meta)]));
    e
}

/// Records a reload: durably in fail-closed mode. A log that cannot take
/// it is logged, and the change applies all the same (the file is the
/// administrator's decision, not the log's).
async fn record(gw: &Gateway, event: Event) {
    let durable = gw.config.mode == crate::AuditMode::FailClosed;
    if let Err(e) = gw.sink.submit(vec![event], durable).await {
        tracing::warn!(error = %e, "a reload of the gateway's settings could not be recorded");
    }
}

/// Waits until the file at `path` is another version than `last`.
async fn changed(path: &Path, last: &mut Option<(Option<SystemTime>, u64, u64)>) {
    loop {
        tokio::time::sleep(USERS_RELOAD_INTERVAL).await;
        let now = stamp(path);
        if now != *last {
            *last = now;
            return;
        }
    }
}

/// Watches the file of the deny rules until the task is dropped: `load`
/// reads and checks them (the caller knows the file's layout).
pub(crate) async fn watch_rules(gw: Arc<Gateway>, path: PathBuf, load: RulesLoader) {
    let by_name = |rules: &[DenyRule]| -> BTreeMap<String, DenyRule> {
        rules.iter().map(|r| (r.name.clone(), r.clone())).collect()
    };
    let mut last = stamp(&path);
    loop {
        changed(&path, &mut last).await;
        let event = match load() {
            Ok(rules) => {
                let old = gw.rules.read().expect("rules lock").clone();
                let changes = diff(&by_name(&old), &by_name(&rules));
                if changes.iter().all(Vec::is_empty) && *old == rules {
                    continue;
                }
                let count = rules.len();
                *gw.rules.write().expect("rules lock") = Arc::new(rules);
                tracing::info!(added = ?changes[0], removed = ?changes[1], changed = ?changes[2], "deny rules reloaded");
                reload_event(&gw, RULES, &path, Ok((count, &changes)))
            }
            Err(why) => {
                tracing::error!(error = %why, "the deny rules changed but cannot be used; keeping the rules loaded before");
                reload_event(&gw, RULES, &path, Err(&why))
            }
        };
        record(&gw, event).await;
    }
}

/// Watches the users file until the task is dropped, swapping the
/// gateway's people when it changes and recording each change.
pub(crate) async fn watch_users(gw: Arc<Gateway>, path: PathBuf) {
    let mut last = stamp(&path);
    let mut known = load(&path).map(|(_, p)| p).unwrap_or_default();
    loop {
        changed(&path, &mut last).await;
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
                reload_event(&gw, PEOPLE, &path, Ok((count, &changes)))
            }
            Err(why) => {
                tracing::error!(error = %why, "the users file changed but cannot be used; keeping the people loaded before");
                reload_event(&gw, PEOPLE, &path, Err(&why))
            }
        };
        record(&gw, event).await;
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
