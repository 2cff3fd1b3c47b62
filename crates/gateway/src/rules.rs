//! The people who may use the gateway, their roles, and deny rules.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::classify::{Analysis, Class};
use crate::scram::Verifier;

/// One person in the users file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    /// The name they log in with and are recorded as.
    pub name: String,
    /// Their SCRAM-SHA-256 verifier (never the password).
    pub verifier: String,
    /// Roles that deny rules can name (`analyst`, `support`, …).
    #[serde(default)]
    pub roles: Vec<String>,
}

/// The users file: `{"users": [...]}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UsersFile {
    /// Everyone, in the order added.
    pub users: Vec<User>,
}

impl UsersFile {
    /// Reads a users file; a missing file holds nobody.
    pub fn read(path: &std::path::Path) -> Result<UsersFile, String> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("parsing {}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(UsersFile::default()),
            Err(e) => Err(format!("reading {}: {e}", path.display())),
        }
    }
}

/// The people who may log in, by name.
#[derive(Debug, Clone, Default)]
pub struct Users {
    by_name: HashMap<String, (Verifier, Vec<String>)>,
}

impl Users {
    /// Checks a users file: every verifier must parse, names be unique.
    pub fn from_file(file: &UsersFile) -> Result<Users, String> {
        let mut by_name = HashMap::new();
        for u in &file.users {
            let v = Verifier::decode(&u.verifier).map_err(|e| format!("user {:?}: verifier: {e}", u.name))?;
            if by_name.insert(u.name.clone(), (v, u.roles.clone())).is_some() {
                return Err(format!("user {:?} appears twice", u.name));
            }
        }
        Ok(Users { by_name })
    }

    /// A user's verifier and roles.
    pub fn get(&self, name: &str) -> Option<&(Verifier, Vec<String>)> {
        self.by_name.get(name)
    }

    /// How many people there are.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there is nobody.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// Refuses statements: by whom (users or roles) and by what (classes or
/// tables). An empty list matches anything; a rule with no users and no
/// roles applies to everyone.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DenyRule {
    /// The rule's name, shown in the error and the event.
    pub name: String,
    /// People it applies to.
    #[serde(default)]
    pub users: Vec<String>,
    /// Roles it applies to.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Statement classes it refuses (`read`, `write`, `ddl`, `role`,
    /// `function`, `misc`).
    #[serde(default)]
    pub classes: Vec<String>,
    /// Tables it refuses, `schema.table` or `table`.
    #[serde(default)]
    pub tables: Vec<String>,
}

impl DenyRule {
    /// Checks every rule of a list, as [`DenyRule::validate`].
    pub fn validate_all(rules: &[DenyRule]) -> Result<(), String> {
        rules.iter().try_for_each(DenyRule::validate)
    }

    /// Checks the rule's names.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() {
            return Err("a deny rule needs a name".into());
        }
        for c in &self.classes {
            if Class::parse(c).is_none() {
                return Err(format!(
                    "rule {:?}: unknown class {c:?} (read, write, ddl, role, function, misc)",
                    self.name
                ));
            }
        }
        if self.classes.is_empty() && self.tables.is_empty() {
            return Err(format!("rule {:?} names no classes and no tables, so it would deny everything", self.name));
        }
        Ok(())
    }

    fn applies_to(&self, user: &str, roles: &[String]) -> bool {
        let by_user = self.users.iter().any(|u| u == user);
        let by_role = self.roles.iter().any(|r| roles.contains(r));
        (self.users.is_empty() && self.roles.is_empty()) || by_user || by_role
    }

    /// Why this rule denies the statement `sql`, if it does.
    fn denies(&self, a: &Analysis, sql: &str) -> Option<String> {
        let classes = a.classes();
        let class_hit = self.classes.is_empty()
            || classes.iter().any(|c| self.classes.iter().any(|r| r.eq_ignore_ascii_case(c.name())));
        if !class_hit {
            return None;
        }
        if self.tables.is_empty() {
            let classes = classes.iter().map(|c| c.name()).collect::<Vec<_>>().join(",");
            return Some(if a.parsed {
                format!("class {classes}")
            } else {
                format!("it cannot be parsed, and may be of class {classes}")
            });
        }
        if !a.parsed {
            // The tables are unknown. A text that names a rule's table
            // anywhere is refused; one that never names it cannot touch it
            // directly (views and functions are out of any text's sight).
            let named = self.tables.iter().any(|r| {
                let last = r.rsplit('.').next().unwrap_or(r);
                crate::classify::names_word(sql, last)
            });
            return named.then(|| "it may name a protected table, and cannot be parsed".into());
        }
        a.tables.iter().find(|t| self.tables.iter().any(|r| table_matches(r, t))).map(|t| format!("table {t}"))
    }
}

/// Whether a rule's table names a table in a statement. An unqualified
/// name in the statement could resolve to any schema on the search path,
/// so it matches a qualified rule with the same table name.
fn table_matches(rule: &str, table: &str) -> bool {
    let rule = rule.to_ascii_lowercase();
    let last = |s: &str| s.rsplit('.').next().unwrap_or("").to_string();
    rule == table || (!table.contains('.') && last(&rule) == table) || (!rule.contains('.') && last(table) == rule)
}

/// The first rule that denies `user` the statement `sql`, analysed as `a`:
/// its name and why.
pub fn check(rules: &[DenyRule], user: &str, roles: &[String], a: &Analysis, sql: &str) -> Option<(String, String)> {
    rules.iter().filter(|r| r.applies_to(user, roles)).find_map(|r| r.denies(a, sql).map(|why| (r.name.clone(), why)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::analyse;

    fn rule(name: &str, roles: &[&str], classes: &[&str], tables: &[&str]) -> DenyRule {
        DenyRule {
            name: name.into(),
            users: vec![],
            roles: roles.iter().map(|s| s.to_string()).collect(),
            classes: classes.iter().map(|s| s.to_string()).collect(),
            tables: tables.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn rules_by_role_class_and_table() {
        let rules = vec![
            rule("no-ddl-for-analysts", &["analyst"], &["ddl"], &[]),
            rule("no-cards-for-support", &["support"], &["read"], &["payments.card"]),
        ];
        let analyst = vec!["analyst".to_string()];
        let support = vec!["support".to_string()];
        let deny = |roles: &[String], sql: &str| check(&rules, "x", roles, &analyse(sql), sql).map(|d| d.0);
        assert_eq!(deny(&analyst, "DROP TABLE t").as_deref(), Some("no-ddl-for-analysts"));
        assert_eq!(deny(&analyst, "SELECT * FROM payments.card"), None);
        assert_eq!(deny(&support, "SELECT * FROM payments.card").as_deref(), Some("no-cards-for-support"));
        assert_eq!(deny(&support, "select number from card").as_deref(), Some("no-cards-for-support"));
        assert_eq!(deny(&support, "SELECT * FROM payments.invoice"), None);
        assert_eq!(deny(&support, "SELEKT garbage ((").as_deref(), None, "class misc is not read");
        assert_eq!(
            deny(&support, "SELECT FROM card WHERE ((").as_deref(),
            Some("no-cards-for-support"),
            "unknown tables"
        );
        assert_eq!(deny(&support, "vacuum analyze pgbench_branches"), None, "never names the table");
        assert_eq!(deny(&[], "DROP TABLE t"), None);
        // Statements after the first of a text the parser does not
        // understand are seen too (TABLE is PostgreSQL, not sqlparser).
        assert_eq!(deny(&analyst, "select 1; drop table victim; table other").as_deref(), Some("no-ddl-for-analysts"));
        assert_eq!(
            deny(&analyst, "select 1; /* x */ DrOp table victim; checkpoint").as_deref(),
            Some("no-ddl-for-analysts")
        );
        assert_eq!(deny(&analyst, "select 'drop'; table other"), None, "a literal is not a statement");
        assert_eq!(deny(&analyst, "select 1 -- drop\n; table other"), None, "nor a comment");
        // Standard strings end at a quote after a backslash; with
        // standard_conforming_strings off they do not. Both readings count.
        assert_eq!(
            deny(&analyst, "select date'2020-01-01\\'; drop table victim; --'; table t").as_deref(),
            Some("no-ddl-for-analysts")
        );
        assert_eq!(
            deny(&analyst, "select 'a\\''; drop table victim; --'; table t").as_deref(),
            Some("no-ddl-for-analysts")
        );
        assert_eq!(deny(&analyst, "select $q$; drop table victim; $q$; table t"), None, "a dollar quote");
        assert_eq!(
            deny(&analyst, "select x$q$; drop table victim; $q$; table t").as_deref(),
            Some("no-ddl-for-analysts")
        );
        // Too long to parse: analysed by its words.
        let bulk = format!("insert into t values {}", vec!["(1, 'create')"; 20_000].join(","));
        assert!(bulk.len() > crate::classify::MAX_PARSED_SQL_BYTES);
        assert_eq!(deny(&analyst, &bulk), None);
        assert_eq!(deny(&analyst, &format!("{bulk}; create table x()")).as_deref(), Some("no-ddl-for-analysts"));
        assert_eq!(deny(&support, &format!("{bulk}; select * from card")).as_deref(), Some("no-cards-for-support"));
        assert!(rule("x", &[], &[], &[]).validate().is_err());
        assert!(rule("x", &[], &["bogus"], &[]).validate().is_err());
    }
}
