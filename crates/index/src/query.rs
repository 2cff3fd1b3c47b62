//! The query language of `docs/query.md`: a parser with error positions,
//! limits, and a brute-force evaluator over event JSON that defines what a
//! query means. The index must give exactly the evaluator's answers.

use std::net::IpAddr;

use custos_event::View;
use serde_json::Value;

/// Queries longer than this are refused.
pub const MAX_QUERY_BYTES: usize = 4096;
/// Clauses (terms and operators) in one query, at most.
pub const MAX_CLAUSES: usize = 64;
/// Parenthesis nesting, at most.
pub const MAX_DEPTH: usize = 16;

/// A parsed query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// Matches every event (the empty query).
    All,
    /// All must match.
    And(Vec<Query>),
    /// Any must match.
    Or(Vec<Query>),
    /// Must not match.
    Not(Box<Query>),
    /// `field:value`, on a dotted path of the event.
    Field(String, Value_),
    /// A bare value: free text over `message` and `raw_data`.
    Text(Value_),
}

/// The value side of a term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value_ {
    /// An exact value.
    Exact(String),
    /// A quoted phrase.
    Phrase(String),
    /// A value with `*` or `?` wildcards.
    Wildcard(String),
    /// `field:*`: the field exists.
    Exists,
    /// A range, bounds as written (times and numbers are resolved later).
    Range(Bound, Bound),
    /// An IP network, `10.0.0.0/8`.
    Cidr(IpAddr, u8),
}

/// One end of a range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bound {
    /// No bound.
    Unbounded,
    /// Includes the value.
    Included(String),
    /// Excludes the value.
    Excluded(String),
}

/// A syntax error, with the byte position where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("query syntax error at position {position}: {message}")]
pub struct ParseError {
    /// Byte offset into the query.
    pub position: usize,
    /// What was expected or found.
    pub message: String,
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
    clauses: usize,
    depth: usize,
    /// Inside `field:( … )`: the field every bare value is matched on.
    group: Option<String>,
}

fn err<T>(position: usize, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError { position, message: message.into() })
}

/// Parses a query.
pub fn parse(s: &str) -> Result<Query, ParseError> {
    if s.len() > MAX_QUERY_BYTES {
        return err(MAX_QUERY_BYTES, format!("query is longer than {MAX_QUERY_BYTES} bytes"));
    }
    let mut p = Parser { s, pos: 0, clauses: 0, depth: 0, group: None };
    p.skip_ws();
    if p.pos == s.len() {
        return Ok(Query::All);
    }
    let q = p.or()?;
    p.skip_ws();
    if p.pos < s.len() {
        return err(p.pos, format!("unexpected {:?}", p.rest().chars().next().unwrap_or(' ')));
    }
    Ok(q)
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.s[self.pos..]
    }

    fn skip_ws(&mut self) {
        while self.rest().starts_with(char::is_whitespace) {
            self.pos += self.rest().chars().next().map_or(1, char::len_utf8);
        }
    }

    /// Whether the next word is the keyword `kw` (followed by a space or
    /// parenthesis).
    fn keyword(&mut self, kw: &str) -> bool {
        self.skip_ws();
        let r = self.rest();
        if r.starts_with(kw) && r[kw.len()..].starts_with(|c: char| c.is_whitespace() || c == '(') {
            self.pos += kw.len();
            true
        } else {
            false
        }
    }

    fn count(&mut self) -> Result<(), ParseError> {
        self.clauses += 1;
        if self.clauses > MAX_CLAUSES {
            return err(self.pos, format!("more than {MAX_CLAUSES} clauses"));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Query, ParseError> {
        let mut parts = vec![self.and()?];
        while self.keyword("OR") {
            self.count()?;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 { parts.pop().expect("one") } else { Query::Or(parts) })
    }

    fn and(&mut self) -> Result<Query, ParseError> {
        let mut parts = vec![self.unary()?];
        loop {
            self.skip_ws();
            let r = self.rest();
            if r.is_empty()
                || r.starts_with(')')
                || (r.starts_with("OR") && r[2..].starts_with(|c: char| c.is_whitespace() || c == '('))
            {
                break;
            }
            self.keyword("AND");
            self.count()?;
            parts.push(self.unary()?);
        }
        Ok(if parts.len() == 1 { parts.pop().expect("one") } else { Query::And(parts) })
    }

    fn unary(&mut self) -> Result<Query, ParseError> {
        self.skip_ws();
        if self.keyword("NOT") {
            return Ok(Query::Not(Box::new(self.unary()?)));
        }
        if self.rest().starts_with('-') && self.rest()[1..].starts_with(|c: char| !c.is_whitespace()) {
            self.pos += 1;
            return Ok(Query::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Query, ParseError> {
        self.skip_ws();
        let start = self.pos;
        if self.rest().is_empty() {
            return err(start, "expected a term, found the end of the query");
        }
        if self.rest().starts_with('(') {
            return self.parenthesised();
        }
        if self.rest().starts_with(')') {
            return err(start, "unexpected ')'");
        }
        self.count()?;
        if let Some(field) = &self.group {
            // `field:(a OR b*)`: every value inside is one of the field's.
            let field = field.clone();
            return Ok(Query::Field(field, self.value(true)?));
        }
        // A field name is a dotted path followed by ':'.
        let name_len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(self.rest().len());
        if name_len > 0 && self.rest()[name_len..].starts_with(':') {
            let field = self.rest()[..name_len].to_string();
            if field.starts_with('.') || field.ends_with('.') || field.contains("..") {
                return err(start, format!("bad field name {field:?}"));
            }
            self.pos += name_len + 1;
            if self.rest().starts_with('(') {
                self.group = Some(field);
                let q = self.parenthesised();
                self.group = None;
                return q;
            }
            let value = self.value(true)?;
            return Ok(Query::Field(field, value));
        }
        Ok(Query::Text(self.value(false)?))
    }

    /// `( query )`, the parser at its `(`.
    fn parenthesised(&mut self) -> Result<Query, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err(self.pos, format!("parentheses nested deeper than {MAX_DEPTH}"));
        }
        self.pos += 1;
        let q = self.or()?;
        self.skip_ws();
        if !self.rest().starts_with(')') {
            return err(self.pos, "expected ')'");
        }
        self.pos += 1;
        self.depth -= 1;
        Ok(q)
    }

    fn word(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        let len = self
            .rest()
            .find(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ']' || c == '}')
            .unwrap_or(self.rest().len());
        if len == 0 {
            return err(start, "expected a value");
        }
        self.pos += len;
        Ok(self.s[start..start + len].to_string())
    }

    fn phrase(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, e)) => out.push(e),
                    None => break,
                },
                '"' => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                c => out.push(c),
            }
        }
        err(start, "unterminated phrase: missing closing '\"'")
    }

    fn value(&mut self, field: bool) -> Result<Value_, ParseError> {
        let start = self.pos;
        let r = self.rest();
        if r.starts_with('"') {
            return Ok(Value_::Phrase(self.phrase()?));
        }
        if field && (r.starts_with('[') || r.starts_with('{')) {
            let inclusive_lo = r.starts_with('[');
            self.pos += 1;
            self.skip_ws();
            let lo = self.bound_word()?;
            if !self.keyword("TO") {
                return err(self.pos, "expected TO in range");
            }
            self.skip_ws();
            let hi = self.bound_word()?;
            self.skip_ws();
            let close = self.rest().chars().next();
            let inclusive_hi = match close {
                Some(']') => true,
                Some('}') => false,
                _ => return err(self.pos, "expected ']' or '}' to close the range"),
            };
            self.pos += 1;
            let b = |v: Option<String>, inc: bool| match v {
                None => Bound::Unbounded,
                Some(v) if inc => Bound::Included(v),
                Some(v) => Bound::Excluded(v),
            };
            return Ok(Value_::Range(b(lo, inclusive_lo), b(hi, inclusive_hi)));
        }
        if field {
            for (op, make) in [
                (">=", (|v| Value_::Range(Bound::Included(v), Bound::Unbounded)) as fn(String) -> Value_),
                ("<=", |v| Value_::Range(Bound::Unbounded, Bound::Included(v))),
                (">", |v| Value_::Range(Bound::Excluded(v), Bound::Unbounded)),
                ("<", |v| Value_::Range(Bound::Unbounded, Bound::Excluded(v))),
            ] {
                if self.rest().starts_with(op) {
                    self.pos += op.len();
                    return Ok(make(self.word()?));
                }
            }
        }
        let w = self.word()?;
        if field && w == "*" {
            return Ok(Value_::Exists);
        }
        if field
            && let Some((net, bits)) = w.split_once('/')
            && let (Ok(ip), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u8>())
        {
            let max = if ip.is_ipv4() { 32 } else { 128 };
            if bits > max {
                return err(start, format!("prefix length {bits} is over {max}"));
            }
            return Ok(Value_::Cidr(ip, bits));
        }
        if w.contains(['*', '?']) {
            return Ok(Value_::Wildcard(w));
        }
        Ok(Value_::Exact(w))
    }

    fn bound_word(&mut self) -> Result<Option<String>, ParseError> {
        let w = if self.rest().starts_with('"') { self.phrase()? } else { self.word()? };
        Ok(if w == "*" { None } else { Some(w) })
    }
}

/// Resolves a time bound: RFC 3339 (date or date-time), `now`, or
/// `now-24h`, `now-7d`, `now-30m`, `now-10s`. Nanoseconds since the epoch.
pub fn resolve_time(s: &str, now_ns: i64) -> Option<i64> {
    if let Some(rest) = s.strip_prefix("now") {
        if rest.is_empty() {
            return Some(now_ns);
        }
        let (sign, d) = match rest.as_bytes().first()? {
            b'-' => (-1, &rest[1..]),
            b'+' => (1, &rest[1..]),
            _ => return None,
        };
        // The unit is one ASCII letter; anything else (a multi-byte last
        // character, say) is not a relative time.
        let (n, unit) = d.split_at_checked(d.len().checked_sub(1)?)?;
        let n: i64 = n.parse().ok()?;
        let unit_secs = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => return None,
        };
        let ns = n.checked_mul(unit_secs)?.checked_mul(1_000_000_000)?.checked_mul(sign)?;
        return now_ns.checked_add(ns);
    }
    custos_event::time::parse_rfc3339(s).ok()
}

/// Fields holding times, compared as instants.
pub const TIME_FIELDS: &[&str] = &["time", "received_at"];
/// Fields compared as whole numbers in ranges; other fields compare as
/// text.
pub const NUMERIC_FIELDS: &[&str] =
    &["src_endpoint.port", "dst_endpoint.port", "class_uid", "category_uid", "status_code", "seq"];
/// Fields whose numbers compare as decimal numbers, in ranges and exact
/// matches (`duration_ms:2.5` is `duration_ms:2.50`): the gateway's
/// durations, say, have fractions of a millisecond. Their numbers are in a
/// column only, with no keyword (nearly every one is distinct); other
/// values there (text) are keywords as anywhere else, and only they match
/// wildcards.
pub const DECIMAL_FIELDS: &[&str] = &["duration_ms"];

/// A range bound on a [`DECIMAL_FIELDS`] field: a finite number, with
/// -0 as 0 (they compare equal, but the index orders their bits apart).
pub fn decimal(x: &str) -> Option<f64> {
    x.parse::<f64>().ok().filter(|n| n.is_finite()).map(|n| n + 0.0)
}
/// Fields CIDR matches work on.
pub const IP_FIELDS: &[&str] = &["src_endpoint.ip", "dst_endpoint.ip"];
/// Paths every sealed event has (required by the schema, or set by the
/// server): `path:*` matches every entry, so the index keeps no
/// "exists" token for them.
pub const ALWAYS_PRESENT: &[&str] = &[
    "time",
    "activity",
    "status",
    "actor",
    "actor.user",
    "log",
    "received_at",
    "submitter",
    "submitter.name",
    "submitter.via",
];
/// Fields searched only as free text (bare words), not with `field:`.
pub const TEXT_FIELDS: &[&str] = &["message", "raw_data"];

/// Why a well-formed query cannot run.
pub fn check(q: &Query) -> Result<(), String> {
    match q {
        Query::All | Query::Text(_) => Ok(()),
        Query::And(qs) | Query::Or(qs) => qs.iter().try_for_each(check),
        Query::Not(q) => check(q),
        Query::Field(f, v) => {
            if TEXT_FIELDS.contains(&f.as_str()) && !matches!(v, Value_::Exists) {
                return Err(format!("{f} is searched as free text: write the words without {f}:"));
            }
            if matches!(v, Value_::Wildcard(_)) && TIME_FIELDS.contains(&f.as_str()) {
                return Err(format!(
                    "wildcards do not apply to {f}: use a date ({f}:2026-11-20) or a range ({f}:[2026-11-20T10:00:00Z TO 2026-11-20T11:00:00Z])"
                ));
            }
            if matches!(v, Value_::Cidr(..)) && !IP_FIELDS.contains(&f.as_str()) {
                return Err(format!("CIDR matches work on {}, not {f}", IP_FIELDS.join(" and ")));
            }
            if let Value_::Range(lo, hi) = v {
                for b in [lo, hi] {
                    if let Bound::Included(x) | Bound::Excluded(x) = b {
                        if TIME_FIELDS.contains(&f.as_str()) && resolve_time(x, 0).is_none() {
                            return Err(format!("{x:?} is not a time (RFC 3339, or now, now-24h, now-7d)"));
                        }
                        if NUMERIC_FIELDS.contains(&f.as_str()) && x.parse::<u64>().is_err() {
                            return Err(format!("{x:?} is not a whole number for {f}"));
                        }
                        if DECIMAL_FIELDS.contains(&f.as_str()) && decimal(x).is_none() {
                            return Err(format!("{x:?} is not a number for {f}"));
                        }
                    }
                }
            }
            Ok(())
        }
    }
}

/// The values at a dotted path, looking through arrays: of an event as
/// `serde_json::Value` (the evaluator) or as a borrowed `Node` (indexing).
pub fn values_at<'a, V: View>(v: &'a V, path: &str) -> Vec<&'a V> {
    let mut cur = vec![v];
    for key in path.split('.') {
        let mut next = Vec::new();
        for c in cur {
            if let Some(x) = c.get(key) {
                match x.as_array() {
                    Some(a) => next.extend(a.iter()),
                    None => next.push(x),
                }
            }
        }
        cur = next;
    }
    cur.into_iter()
        .flat_map(|x| match x.as_array() {
            Some(a) => a.iter().collect(),
            None => vec![x],
        })
        .filter(|x| !x.is_null())
        .collect()
}

/// The text of a scalar as the index stores it.
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Splits text the way the index does for free-text search: runs of
/// letters and digits, shorter than 40 bytes, lowercased (tantivy's
/// `default` tokenizer).
pub fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty() && t.len() < 40)
        .map(str::to_lowercase)
        .collect()
}

/// Whether `s` matches the glob `pattern` (`*` any run, `?` one char).
pub fn glob(pattern: &str, s: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), s.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn in_cidr(ip: &str, net: &IpAddr, bits: u8) -> bool {
    let Ok(ip) = ip.parse::<IpAddr>() else { return false };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            u32::from(a) & mask == u32::from(*n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            u128::from(a) & mask == u128::from(*n) & mask
        }
        _ => false,
    }
}

fn cmp_bound(field: &str, v: &Value, b: &Bound, lower: bool, now_ns: i64) -> bool {
    let (x, inclusive) = match b {
        Bound::Unbounded => return true,
        Bound::Included(x) => (x, true),
        Bound::Excluded(x) => (x, false),
    };
    let ord = if TIME_FIELDS.contains(&field) {
        let (Some(a), Some(b)) = (v.as_str().and_then(|s| resolve_time(s, now_ns)), resolve_time(x, now_ns)) else {
            return false;
        };
        a.cmp(&b)
    } else if NUMERIC_FIELDS.contains(&field) {
        let (Some(a), Ok(b)) = (v.as_u64(), x.parse::<u64>()) else { return false };
        a.cmp(&b)
    } else if DECIMAL_FIELDS.contains(&field) {
        let Some(ord) = v.as_f64().zip(decimal(x)).and_then(|(a, b)| a.partial_cmp(&b)) else { return false };
        ord
    } else {
        let Some(a) = scalar_text(v) else { return false };
        a.as_str().cmp(x.as_str())
    };
    match (lower, inclusive) {
        (true, true) => ord.is_ge(),
        (true, false) => ord.is_gt(),
        (false, true) => ord.is_le(),
        (false, false) => ord.is_lt(),
    }
}

fn text_matches(event: &Value, value: &Value_) -> bool {
    let mut toks = Vec::new();
    for f in ["message", "raw_data"] {
        if let Some(s) = event.get(f).and_then(Value::as_str) {
            toks.extend(tokens(s));
        }
    }
    match value {
        Value_::Exact(w) => {
            let q = tokens(w);
            !q.is_empty() && q.iter().all(|t| toks.contains(t))
        }
        Value_::Phrase(p) => {
            let q = tokens(p);
            !q.is_empty() && toks.windows(q.len()).any(|w| w == q.as_slice())
        }
        Value_::Wildcard(w) => {
            let w = w.to_lowercase();
            toks.iter().any(|t| glob(&w, t))
        }
        _ => false,
    }
}

/// Whether an event matches: the meaning of every query.
pub fn matches(q: &Query, event: &Value, now_ns: i64) -> bool {
    match q {
        Query::All => true,
        Query::And(qs) => qs.iter().all(|q| matches(q, event, now_ns)),
        Query::Or(qs) => qs.iter().any(|q| matches(q, event, now_ns)),
        Query::Not(q) => !matches(q, event, now_ns),
        Query::Text(v) => text_matches(event, v),
        Query::Field(field, value) => {
            let vals = values_at(event, field);
            match value {
                Value_::Exists => !vals.is_empty(),
                Value_::Exact(x) | Value_::Phrase(x) if TIME_FIELDS.contains(&field.as_str()) && x.len() == 10 => {
                    // A bare date matches the whole day.
                    let Some(day) = resolve_time(x, now_ns) else { return false };
                    vals.iter().any(|v| {
                        v.as_str()
                            .and_then(|s| resolve_time(s, now_ns))
                            .is_some_and(|t| t >= day && t < day + 86_400_000_000_000)
                    })
                }
                // Numbers in a decimal field compare as numbers (2.5 is
                // 2.50); anything else there, as everywhere, as text.
                Value_::Exact(x) | Value_::Phrase(x) if DECIMAL_FIELDS.contains(&field.as_str()) => {
                    vals.iter().any(|v| match v {
                        Value::Number(_) => v.as_f64().zip(decimal(x)).is_some_and(|(a, b)| a == b),
                        _ => scalar_text(v).as_deref() == Some(x.as_str()),
                    })
                }
                Value_::Exact(x) | Value_::Phrase(x) => {
                    vals.iter().any(|v| scalar_text(v).as_deref() == Some(x.as_str()))
                }
                Value_::Wildcard(w) if DECIMAL_FIELDS.contains(&field.as_str()) => {
                    vals.iter().any(|v| !v.is_number() && scalar_text(v).is_some_and(|s| glob(w, &s)))
                }
                Value_::Wildcard(w) => vals.iter().any(|v| scalar_text(v).is_some_and(|s| glob(w, &s))),
                Value_::Range(lo, hi) => {
                    vals.iter().any(|v| cmp_bound(field, v, lo, true, now_ns) && cmp_bound(field, v, hi, false, now_ns))
                }
                Value_::Cidr(net, bits) => vals.iter().any(|v| v.as_str().is_some_and(|s| in_cidr(s, net, *bits))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(field: &str, v: Value_) -> Query {
        Query::Field(field.into(), v)
    }
    fn ex(s: &str) -> Value_ {
        Value_::Exact(s.into())
    }

    #[test]
    fn parses_each_construct() {
        let cases: Vec<(&str, Query)> = vec![
            ("", Query::All),
            ("actor.user.name:alice", f("actor.user.name", ex("alice"))),
            ("a:1 b:2", Query::And(vec![f("a", ex("1")), f("b", ex("2"))])),
            (
                "a:1 AND b:2 OR c:3",
                Query::Or(vec![Query::And(vec![f("a", ex("1")), f("b", ex("2"))]), f("c", ex("3"))]),
            ),
            ("NOT a:1", Query::Not(Box::new(f("a", ex("1"))))),
            ("-a:1", Query::Not(Box::new(f("a", ex("1"))))),
            (
                "(a:1 OR a:2) status:failure",
                Query::And(vec![Query::Or(vec![f("a", ex("1")), f("a", ex("2"))]), f("status", ex("failure"))]),
            ),
            ("message:\"permission denied\"", f("message", Value_::Phrase("permission denied".into()))),
            ("resource.name:pay*", f("resource.name", Value_::Wildcard("pay*".into()))),
            ("actor.session.uid:*", f("actor.session.uid", Value_::Exists)),
            (
                "time:[now-24h TO now]",
                f("time", Value_::Range(Bound::Included("now-24h".into()), Bound::Included("now".into()))),
            ),
            ("time:>2026-11-01", f("time", Value_::Range(Bound::Excluded("2026-11-01".into()), Bound::Unbounded))),
            ("port:{1 TO *]", f("port", Value_::Range(Bound::Excluded("1".into()), Bound::Unbounded))),
            ("src_endpoint.ip:10.0.0.0/8", f("src_endpoint.ip", Value_::Cidr("10.0.0.0".parse().unwrap(), 8))),
            ("denied", Query::Text(ex("denied"))),
            // A field group: each value inside is matched on the field.
            (
                "actor.user.name:(alice OR bo*) -status:(failure)",
                Query::And(vec![
                    Query::Or(vec![
                        f("actor.user.name", ex("alice")),
                        f("actor.user.name", Value_::Wildcard("bo*".into())),
                    ]),
                    Query::Not(Box::new(f("status", ex("failure")))),
                ]),
            ),
            (
                "uid:(\"s1:2\" OR (s1:3 AND NOT [a TO b])) x",
                Query::And(vec![
                    Query::Or(vec![
                        f("uid", Value_::Phrase("s1:2".into())),
                        Query::And(vec![
                            f("uid", ex("s1:3")),
                            Query::Not(Box::new(f(
                                "uid",
                                Value_::Range(Bound::Included("a".into()), Bound::Included("b".into())),
                            ))),
                        ]),
                    ]),
                    Query::Text(ex("x")),
                ]),
            ),
            ("\"root login\"", Query::Text(Value_::Phrase("root login".into()))),
        ];
        for (q, want) in cases {
            assert_eq!(parse(q), Ok(want), "{q}");
        }
    }

    #[test]
    fn syntax_errors_name_the_position() {
        for (q, pos) in [
            ("a:1 AND (b:2", 12),
            ("a:", 2),
            ("time:[1 2]", 8),
            ("msg:\"open", 4),
            (")", 0),
            ("a:1 )", 4),
            ("ip:10.0.0.0/40", 3),
            ("a:[1 TO 2", 9),
            ("a:(1 OR 2", 9),
            ("a:()", 3),
            ("a:(1 OR )", 8),
        ] {
            let e = parse(q).unwrap_err();
            assert_eq!(e.position, pos, "{q}: {e}");
        }
        assert!(parse(&"a:1 ".repeat(100)).unwrap_err().message.contains("clauses"));
        assert!(parse(&format!("{}a:1{}", "(".repeat(20), ")".repeat(20))).unwrap_err().message.contains("nested"));
    }

    #[test]
    fn relative_times_that_overflow_are_not_times() {
        let now = 1_795_000_000_000_000_000;
        assert_eq!(resolve_time("now-1h", now), Some(now - 3_600_000_000_000));
        // "now--5ܖ" was found by `cargo fuzz run query`: it split inside a character.
        for s in ["now-9223372036854775807w", "now+99999999999d", "now-9223372036854775808s", "now-", "now--5\u{716}"] {
            assert_eq!(resolve_time(s, now), None, "{s}");
        }
        assert!(check(&parse("time:[now-99999999999d TO now]").unwrap()).unwrap_err().contains("is not a time"));
    }

    #[test]
    fn queries_that_cannot_run_say_why() {
        for (q, says) in [
            ("message:denied", "free text"),
            ("actor.user.name:10.0.0.0/8", "CIDR matches work on"),
            ("time:2026-11-20T1*", "wildcards do not apply to time"),
            ("received_at:*5Z", "wildcards do not apply to received_at"),
            ("time:[yesterday TO now]", "is not a time"),
            ("src_endpoint.port:[a TO 9]", "whole number"),
        ] {
            let e = check(&parse(q).unwrap()).unwrap_err();
            assert!(e.contains(says), "{q}: {e}");
        }
        assert!(check(&parse("time:* AND time:2026-11-20 AND actor.user.name:al*").unwrap()).is_ok());
    }

    #[test]
    fn evaluator_semantics() {
        let e = json!({"time": "2026-11-20T10:00:00Z", "actor": {"user": {"name": "alice"}}, "status": "failure",
            "src_endpoint": {"ip": "10.1.2.3", "port": 22}, "message": "Permission denied for root",
            "targets": [{"name": "a"}, {"name": "b"}]});
        let now = resolve_time("2026-11-20T12:00:00Z", 0).unwrap();
        let m = |q: &str| matches(&parse(q).unwrap(), &e, now);
        assert!(m("actor.user.name:alice AND status:failure"));
        assert!(!m("actor.user.name:bob"));
        assert!(m("src_endpoint.ip:10.0.0.0/8") && !m("src_endpoint.ip:192.168.0.0/16"));
        assert!(m("time:[now-24h TO now]") && !m("time:[now-1h TO now]"));
        assert!(m("time:2026-11-20") && !m("time:2026-11-21"));
        assert!(m("time:>2026-11-01") && m("src_endpoint.port:<23") && !m("src_endpoint.port:>22"));
        assert!(m("denied") && m("\"permission denied\"") && !m("\"denied permission\"") && m("perm*"));
        assert!(m("targets.name:b") && m("src_endpoint.port:*") && !m("dst_endpoint.port:*"));
        assert!(m("NOT status:success") && m("actor.user.name:al*"));
        assert!(glob("a*c?e", "abbbcde") && !glob("a*c", "abd"));
    }
}
