//! What a statement does: its class (as pgAudit names them) and the
//! tables it touches, from `sqlparser`'s PostgreSQL dialect.
//!
//! Parsing costs microseconds, which shows on a proxy that handles tens of
//! thousands of statements a second, so analyses are cached by the
//! statement's *shape*: the text with its literals replaced by `0` and
//! `''`. Literals change neither the class nor the tables.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use sqlparser::ast::{CopySource, GrantObjects, ObjectType, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// Shapes remembered before the cache starts over.
pub const MAX_CACHED_SHAPES: usize = 10_000;
/// Statements longer than this are analysed but not cached (bulk inserts
/// would fill the cache with one-off shapes).
pub const MAX_CACHED_SQL_BYTES: usize = 4096;
/// Query strings longer than this are not given to the parser, whose
/// memory and time grow about a hundredfold of the text (a 32 MiB bulk
/// INSERT took 3.6 GB and 7.8 s): they are analysed by their words, as
/// texts the parser does not understand are. At this size a parse takes
/// about 8 ms and 9 MB.
pub const MAX_PARSED_SQL_BYTES: usize = 64 * 1024;

/// The statement classes of pgAudit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// SELECT, COPY … TO.
    Read,
    /// INSERT, UPDATE, DELETE, MERGE, TRUNCATE, COPY … FROM.
    Write,
    /// Schema changes other than roles.
    Ddl,
    /// GRANT, REVOKE and CREATE/ALTER/DROP ROLE.
    Role,
    /// CALL and DO.
    Function,
    /// Everything else: transactions, SET, VACUUM, ….
    Misc,
}

impl Class {
    /// The lowercase name used in events and rules.
    pub fn name(self) -> &'static str {
        match self {
            Class::Read => "read",
            Class::Write => "write",
            Class::Ddl => "ddl",
            Class::Role => "role",
            Class::Function => "function",
            Class::Misc => "misc",
        }
    }

    /// Parses a name from a rule.
    pub fn parse(s: &str) -> Option<Class> {
        Some(match s.to_ascii_lowercase().as_str() {
            "read" => Class::Read,
            "write" => Class::Write,
            "ddl" => Class::Ddl,
            "role" => Class::Role,
            "function" => Class::Function,
            "misc" => Class::Misc,
            _ => return None,
        })
    }
}

/// What a query string does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Analysis {
    /// One entry per statement, in order: the command (`SELECT`,
    /// `CREATE TABLE`, …) and its class.
    pub statements: Vec<(String, Class)>,
    /// Tables touched, lowercased, schema-qualified when the text is.
    pub tables: Vec<String>,
    /// Whether the parser understood the text. When it did not, the
    /// classes come from the leading keyword and `tables` is empty.
    pub parsed: bool,
    /// When the parser did not understand the text: the classes any of
    /// its statements may have, from the keywords outside its literals and
    /// comments. The text may hold more statements than its leading one
    /// shows (`SELECT 1; DROP TABLE t; TABLE u`), and a deny rule must
    /// see them.
    pub possible: Vec<Class>,
}

impl Analysis {
    /// Distinct classes, in order: those of the statements, and for a text
    /// the parser did not understand, every class it may have.
    pub fn classes(&self) -> Vec<Class> {
        let mut c: Vec<Class> = self.statements.iter().map(|(_, c)| *c).chain(self.possible.iter().copied()).collect();
        c.sort();
        c.dedup();
        c
    }
}

/// The leading words of a statement and its class.
fn command_of(text: &str) -> (String, Class) {
    let words: Vec<String> = text.split_whitespace().take(3).map(|w| w.to_ascii_uppercase()).collect();
    let w = |i: usize| words.get(i).map_or("", |s| s.trim_end_matches(';'));
    let class = match w(0) {
        "SELECT" | "VALUES" | "TABLE" | "SHOW" => Class::Read,
        "WITH" => {
            let up = text.to_ascii_uppercase();
            let mut words = up.split(|c: char| !c.is_ascii_alphanumeric() && c != '_');
            if words.any(|w| matches!(w, "INSERT" | "UPDATE" | "DELETE" | "MERGE")) {
                Class::Write
            } else {
                Class::Read
            }
        }
        "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "TRUNCATE" => Class::Write,
        "COPY" => {
            if text.to_ascii_uppercase().contains(" FROM ") && !text.trim_start()[4..].trim_start().starts_with('(') {
                Class::Write
            } else {
                Class::Read
            }
        }
        "GRANT" | "REVOKE" => Class::Role,
        "CREATE" | "ALTER" | "DROP" if matches!(w(1), "ROLE" | "USER" | "GROUP") => Class::Role,
        "CREATE" | "ALTER" | "DROP" | "COMMENT" | "REINDEX" | "CLUSTER" | "REFRESH" | "SECURITY" | "IMPORT" => {
            Class::Ddl
        }
        "CALL" | "DO" => Class::Function,
        _ => Class::Misc,
    };
    let command = match (w(0), class) {
        ("CREATE" | "ALTER" | "DROP", _) => format!("{} {}", w(0), w(1)),
        (c, _) => c.to_string(),
    };
    (command, class)
}

/// Removes leading whitespace and comments.
fn strip_leading_comments(mut s: &str) -> &str {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix("--") {
            s = rest.split_once('\n').map_or("", |(_, r)| r);
        } else if let Some(rest) = s.strip_prefix("/*") {
            s = rest.split_once("*/").map_or("", |(_, r)| r);
        } else {
            return s;
        }
    }
}

/// Analyses a query string, uncached.
pub fn analyse(sql: &str) -> Analysis {
    if sql.len() > MAX_PARSED_SQL_BYTES {
        return by_words(sql);
    }
    match Parser::parse_sql(&PostgreSqlDialect {}, sql) {
        Ok(stmts) => {
            let mut tables = Vec::new();
            let mut seen = std::collections::HashSet::new();
            let statements = stmts
                .iter()
                .map(|s| {
                    let mut add = |name: &sqlparser::ast::ObjectName| {
                        let t = name.to_string().replace('"', "").to_ascii_lowercase();
                        if seen.insert(t.clone()) {
                            tables.push(t);
                        }
                    };
                    // DROP names its objects outside the relation visitor.
                    if let Statement::Drop { object_type: ObjectType::Table | ObjectType::View, names, .. } = s {
                        names.iter().for_each(&mut add);
                    }
                    if let Statement::Grant(g) = s
                        && let Some(GrantObjects::Tables(names)) = &g.objects
                    {
                        names.iter().for_each(&mut add);
                    }
                    if let Statement::Copy { source: CopySource::Table { table_name, .. }, .. } = s {
                        add(table_name);
                    }
                    if let Statement::Truncate(t) = s {
                        t.table_names.iter().for_each(|t| add(&t.name));
                    }
                    let _ = sqlparser::ast::visit_relations(s, |name| {
                        add(name);
                        ControlFlow::<()>::Continue(())
                    });
                    command_of(&s.to_string())
                })
                .collect();
            Analysis { statements, tables, parsed: true, possible: Vec::new() }
        }
        Err(_) => by_words(sql),
    }
}

/// Keywords that can start a statement of a class, for texts analysed by
/// their words. VALUES and WITH read nothing by themselves: a table they
/// read is named after SELECT or TABLE. COPY reads or writes.
const CLASS_KEYWORDS: &[(&str, Class)] = &[
    ("SELECT", Class::Read),
    ("TABLE", Class::Read),
    ("COPY", Class::Read),
    ("COPY", Class::Write),
    ("INSERT", Class::Write),
    ("UPDATE", Class::Write),
    ("DELETE", Class::Write),
    ("MERGE", Class::Write),
    ("TRUNCATE", Class::Write),
    ("CREATE", Class::Ddl),
    ("ALTER", Class::Ddl),
    ("DROP", Class::Ddl),
    ("COMMENT", Class::Ddl),
    ("REINDEX", Class::Ddl),
    ("CLUSTER", Class::Ddl),
    ("REFRESH", Class::Ddl),
    ("SECURITY", Class::Ddl),
    ("IMPORT", Class::Ddl),
    ("GRANT", Class::Role),
    ("REVOKE", Class::Role),
    ("CALL", Class::Function),
    ("DO", Class::Function),
];

/// The analysis of a text the parser does not understand, or that is too
/// long for it: the leading keyword's class, and every class a keyword
/// outside the literals and comments could start.
fn by_words(sql: &str) -> Analysis {
    let text = strip_leading_comments(sql);
    let statements = if text.is_empty() { Vec::new() } else { vec![command_of(text)] };
    // COPY options the parser does not know (`WITH (FREEZE ON)`, as
    // pgbench sends) leave its table plain to see.
    if let Some(table) = copy_table(text) {
        return Analysis { statements, tables: vec![table], parsed: true, possible: Vec::new() };
    }
    let mut possible = Vec::new();
    let mut add = |c: Class| {
        if !possible.contains(&c) {
            possible.push(c);
        }
    };
    // Whether backslashes escape quotes in plain strings depends on the
    // session's standard_conforming_strings: both readings are taken, so
    // that no statement hides in what one of them calls a literal.
    let mut role_word = false;
    for backslash_quotes in [false, true] {
        let mut more_statements = false;
        code_words(sql, backslash_quotes, |w| match w {
            Token::Semicolon => more_statements = true,
            Token::Dot | Token::Quoted(_) => {}
            Token::Word(w) => {
                for (k, c) in CLASS_KEYWORDS {
                    if w.eq_ignore_ascii_case(k) {
                        add(*c);
                    }
                }
                role_word |= ["ROLE", "USER", "GROUP"].iter().any(|k| w.eq_ignore_ascii_case(k));
            }
        });
        // Any further statement may be one of the others (SET, VACUUM, …).
        if more_statements {
            add(Class::Misc);
        }
    }
    // CREATE, ALTER or DROP of a role (or `COMMENT ON ROLE`, counted too).
    if role_word && possible.contains(&Class::Ddl) {
        possible.push(Class::Role);
    }
    possible.sort();
    possible.dedup();
    Analysis { statements, tables: written_tables(sql), parsed: false, possible }
}

/// The tables that statements of a text not parsed write or read whole,
/// where the statement's own leading words name them: `INSERT INTO t`,
/// `UPDATE [ONLY] t`, `DELETE FROM [ONLY] t`, `TRUNCATE [TABLE] [ONLY] t`,
/// `COPY t`, `TABLE t`. A bulk INSERT too long to parse is the common
/// case. Tables named elsewhere (after FROM or JOIN) are left out: without
/// the parser, a word after FROM may as well be a column
/// (`extract(year from ts)`), and an audit record must not name tables a
/// statement did not touch. Read as with `standard_conforming_strings` on;
/// names are lowercased, as the parser's are, and a quoted name holding
/// `""` is cut there.
fn written_tables(sql: &str) -> Vec<String> {
    /// Where the walk is in a statement's leading words.
    #[derive(Clone, Copy, PartialEq)]
    enum At {
        /// At a statement's first word.
        Start,
        /// Past the words before a name (`INTO`, `ONLY`, …); `skip` lists
        /// the words that may still come before it.
        Before(&'static [&'static str]),
        /// In a name, after a part (`Dot` continues it).
        Name,
        /// After a dot in a name.
        AfterDot,
        /// Elsewhere: nothing to take until the next statement.
        Rest,
    }
    let mut tables: Vec<String> = Vec::new();
    let mut name = String::new();
    let mut at = At::Start;
    let finish = |name: &mut String, tables: &mut Vec<String>| {
        if !name.is_empty() && !tables.contains(name) && tables.len() < MAX_WORD_TABLES {
            tables.push(std::mem::take(name));
        }
        name.clear();
    };
    code_words(sql, false, |t| {
        let part = match t {
            Token::Word(w) => Some((w, false)),
            Token::Quoted(q) => Some((q, true)),
            Token::Dot => None,
            Token::Semicolon => {
                finish(&mut name, &mut tables);
                at = At::Start;
                return;
            }
        };
        at = match (at, part) {
            (At::Start, Some((w, false))) => {
                let leading: &[(&str, &'static [&'static str])] = &[
                    ("INSERT", &["INTO"]),
                    ("UPDATE", &["ONLY"]),
                    ("DELETE", &["FROM", "ONLY"]),
                    ("TRUNCATE", &["TABLE", "ONLY"]),
                    ("COPY", &[]),
                    ("TABLE", &["ONLY"]),
                ];
                match leading.iter().find(|(k, _)| w.eq_ignore_ascii_case(k)) {
                    Some((_, skip)) => At::Before(skip),
                    None => At::Rest,
                }
            }
            (At::Before(skip), Some((w, false))) if skip.iter().any(|k| w.eq_ignore_ascii_case(k)) => {
                let left = skip.iter().position(|k| w.eq_ignore_ascii_case(k)).map_or(skip, |i| &skip[i + 1..]);
                At::Before(left)
            }
            (At::Before(_) | At::AfterDot, Some((w, _))) => {
                if at == At::AfterDot {
                    name.push('.');
                }
                name.push_str(w);
                At::Name
            }
            (At::Name, None) => At::AfterDot,
            (At::Name, Some(_)) => {
                finish(&mut name, &mut tables);
                At::Rest
            }
            (_, _) => At::Rest,
        };
        if at == At::Rest {
            name.clear();
        }
    });
    finish(&mut name, &mut tables);
    tables.into_iter().map(|t| t.to_ascii_lowercase()).collect()
}

/// Tables [`written_tables`] lists at most: a text of many statements
/// could otherwise name thousands.
const MAX_WORD_TABLES: usize = 64;

/// What [`code_words`] reports.
enum Token<'a> {
    /// A word outside literals, quoted identifiers and comments.
    Word(&'a str),
    /// A quoted identifier, without its quotes (`""` inside left as is).
    Quoted(&'a str),
    /// A `.` there.
    Dot,
    /// A `;` there that more text follows.
    Semicolon,
}

/// Walks a query string as PostgreSQL's lexer would, calling `f` for every
/// word outside string literals, quoted identifiers and comments, and for
/// every `;` between statements. `backslash_quotes`: whether `\'` inside a
/// plain string is a quote (standard_conforming_strings off). Linear in
/// the text, and allocates nothing.
fn code_words<'a>(sql: &'a str, backslash_quotes: bool, mut f: impl FnMut(Token<'a>)) {
    let b = sql.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80;
    let mut i = 0;
    // Whether the word just read was a lone `E`, which makes the string
    // right after it take backslash escapes (`E'it\'s'`).
    let mut e_prefix = false;
    while i < b.len() {
        let c = b[i];
        let escaping_string = std::mem::take(&mut e_prefix);
        match c {
            b'\'' => {
                let escapes = backslash_quotes || escaping_string;
                i += 1;
                while i < b.len() {
                    match b[i] {
                        b'\\' if escapes => i += 2,
                        b'\'' if b.get(i + 1) == Some(&b'\'') => i += 2,
                        b'\'' => break,
                        _ => i += 1,
                    }
                }
                i += 1;
            }
            b'"' => {
                // "" inside is a quote, which this skips as two quotes.
                i += 1;
                let start = i;
                while i < b.len() && b[i] != b'"' {
                    i += 1;
                }
                f(Token::Quoted(&sql[start..i]));
                i += 1;
            }
            b'.' => {
                f(Token::Dot);
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                // Comments nest.
                let mut depth = 0usize;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'$' => {
                // $tag$…$tag$, where the tag is empty or an identifier
                // that does not start with a digit; $1 is a parameter.
                let start = i;
                let mut j = i + 1;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] >= 0x80) {
                    j += 1;
                }
                let tag_ok = j < b.len() && b[j] == b'$' && !b.get(i + 1).is_some_and(u8::is_ascii_digit);
                if tag_ok {
                    let tag = &sql[start..=j];
                    i = match sql[j + 1..].find(tag) {
                        Some(k) => j + 1 + k + tag.len(),
                        None => b.len(),
                    };
                } else {
                    i = j;
                }
            }
            b';' => {
                i += 1;
                if b[i..].iter().any(|c| !c.is_ascii_whitespace() && *c != b';') {
                    f(Token::Semicolon);
                }
            }
            c if ident(c) => {
                // Identifiers go on through digits and `$`, as PostgreSQL's
                // do: `x$tag$` is one word, not a dollar quote.
                let start = i;
                while i < b.len() && ident(b[i]) {
                    i += 1;
                }
                let w = &sql[start..i];
                e_prefix = w.eq_ignore_ascii_case("e");
                f(Token::Word(w));
            }
            _ => i += 1,
        }
    }
}

/// Whether `word` appears in `sql` as a whole word (ASCII letters compared
/// without case), anywhere, literals and comments included: a table rule
/// uses it for texts the parser did not understand.
pub fn names_word(sql: &str, word: &str) -> bool {
    let word_char = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    sql.split(|c: char| !word_char(c)).any(|w| w.eq_ignore_ascii_case(word))
}

/// The table of a single `COPY name [(columns)] FROM|TO …`.
fn copy_table(text: &str) -> Option<String> {
    let mut words = text.split_whitespace();
    if !words.next()?.eq_ignore_ascii_case("copy") {
        return None;
    }
    let name = words.next()?;
    let name = name.split('(').next()?;
    let simple = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
    if name.is_empty() || !name.chars().all(simple) || text.contains(';') {
        return None;
    }
    Some(name.to_ascii_lowercase())
}

/// The text with literals replaced, or `None` when the scan meets
/// something it does not follow (the caller then does not cache).
pub fn shape(sql: &str) -> Option<String> {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'\'' {
            // A string; '' inside is a quote. E'' strings (backslash
            // escapes) and dollar quotes are not followed.
            if i > 0 && (b[i - 1] == b'E' || b[i - 1] == b'e') {
                return None;
            }
            i += 1;
            loop {
                match b.get(i) {
                    None => return None,
                    Some(b'\'') if b.get(i + 1) == Some(&b'\'') => i += 2,
                    Some(b'\'') => break,
                    Some(_) => i += 1,
                }
            }
            i += 1;
            out.push_str("''");
        } else if c == b'$' && !b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            return None;
        } else if c.is_ascii_digit()
            && !(i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b'$'))
        {
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                i += 1;
            }
            out.push('0');
        } else if c == b'"' {
            let end = sql[i + 1..].find('"')? + i + 2;
            out.push_str(&sql[i..end]);
            i = end;
        } else if c == b'-' && b.get(i + 1) == Some(&b'-') || c == b'/' && b.get(i + 1) == Some(&b'*') {
            return None;
        } else {
            let ch = sql[i..].chars().next()?;
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    Some(out)
}

/// A cache of analyses by shape, shared by every session.
#[derive(Default)]
pub struct Analyser {
    cache: Mutex<HashMap<String, Arc<Analysis>>>,
}

impl Analyser {
    /// Analyses a query string, from the cache when its shape is known.
    pub fn analyse(&self, sql: &str) -> Arc<Analysis> {
        let key = if sql.len() <= MAX_CACHED_SQL_BYTES { shape(sql) } else { None };
        let Some(key) = key else { return Arc::new(analyse(sql)) };
        if let Some(a) = self.cache.lock().expect("cache lock").get(&key) {
            return a.clone();
        }
        // The shape parses like the text, and its analysis is the same.
        let a = Arc::new(analyse(&key));
        let mut cache = self.cache.lock().expect("cache lock");
        if cache.len() >= MAX_CACHED_SHAPES {
            cache.clear();
        }
        cache.insert(key, a.clone());
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sql: &str, classes: &[Class], tables: &[&str]) {
        let a = analyse(sql);
        assert_eq!(a.statements.iter().map(|s| s.1).collect::<Vec<_>>(), classes, "{sql}: {a:?}");
        assert_eq!(a.tables, tables, "{sql}");
    }

    #[test]
    fn classes_and_tables() {
        check("SELECT abalance FROM pgbench_accounts WHERE aid = 1", &[Class::Read], &["pgbench_accounts"]);
        check(
            "select * from payments.card c join users u on u.id = c.uid",
            &[Class::Read],
            &["payments.card", "users"],
        );
        check("UPDATE t SET a = 1; INSERT INTO u VALUES (1)", &[Class::Write, Class::Write], &["t", "u"]);
        check("CREATE TABLE x (a int)", &[Class::Ddl], &["x"]);
        check("DROP TABLE x", &[Class::Ddl], &["x"]);
        check("GRANT SELECT ON t TO bob", &[Class::Role], &["t"]);
        check("CREATE ROLE bob", &[Class::Role], &[]);
        check("BEGIN", &[Class::Misc], &[]);
        check("COPY t FROM STDIN", &[Class::Write], &["t"]);
        check("COPY t TO STDOUT", &[Class::Read], &["t"]);
        check("TRUNCATE t", &[Class::Write], &["t"]);
        check("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", &[Class::Write], &["t", "d"]);
    }

    #[test]
    fn copy_with_unknown_options_still_names_its_table() {
        let a = analyse("copy pgbench_accounts from stdin with (freeze on)");
        assert_eq!(a.tables, ["pgbench_accounts"]);
        assert_eq!(a.statements[0].1, Class::Write);
        assert!(!analyse("copy (select 1) to stdout with (bogus)").parsed);
    }

    /// Texts not parsed (too long, or syntax the parser lacks) list the
    /// tables their statements' leading words name, and no others.
    #[test]
    fn texts_not_parsed_list_the_tables_their_leading_words_name() {
        let rows = "(1, 'a; drop table x'), ".repeat(MAX_PARSED_SQL_BYTES / 20);
        let bulk = format!("insert into Payments.\"Card\" (id, v) values {rows}(0, '')");
        let a = analyse(&bulk);
        assert!(!a.parsed);
        assert_eq!(a.tables, ["payments.card"]);
        let a = analyse(
            "table only audit.t; update only u set a = 1 from v; delete from only w; \
             truncate table x, y; copy z from stdin; select extract(year from ts) from q; \
             insert into \"my tab\"(a) select 1; table only",
        );
        assert!(!a.parsed, "{a:?}");
        assert_eq!(a.tables, ["audit.t", "u", "w", "x", "z", "my tab"]);
        // Words in literals, comments and dollar quotes are not statements.
        let a = analyse("table t; select 'insert into a'; /* update b */ select $$delete from c$$");
        assert_eq!(a.tables, ["t"]);
        assert!(analyse("select 1; checkpoint; table").tables.is_empty());
    }

    #[test]
    fn unparsable_falls_back_to_the_keyword() {
        let a = analyse("/* hi */ CREATE FOO BAR BAZ ((");
        assert!(!a.parsed);
        assert_eq!(a.statements, vec![("CREATE FOO".to_string(), Class::Ddl)]);
    }

    #[test]
    fn shapes_replace_literals_only() {
        assert_eq!(
            shape("SELECT a1 FROM t2 WHERE x = 12.5 AND y = 'it''s'").unwrap(),
            "SELECT a1 FROM t2 WHERE x = 0 AND y = ''"
        );
        assert_eq!(shape("SELECT $1"), Some("SELECT $1".into()));
        assert_eq!(shape("SELECT E'\\''"), None);
        assert_eq!(shape("SELECT 'open"), None);
        assert_eq!(shape("SELECT 1 -- c"), None);
        let an = Analyser::default();
        let a = an.analyse("SELECT * FROM t WHERE id = 1");
        let b = an.analyse("SELECT * FROM t WHERE id = 2");
        assert!(Arc::ptr_eq(&a, &b));
    }
}
