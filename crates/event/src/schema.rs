//! Validation of one access event and sealing it into a log entry. See
//! `docs/events.md`.

use serde_json::{Map, Value};

use crate::canonical::{CanonError, write_node, write_value};
use crate::doc::Node;
use crate::time::{format_rfc3339, parse_rfc3339};

/// A sealed event is one log entry, so it must fit the C2SP entry limit.
pub const MAX_EVENT_BYTES: usize = 65_535;
/// Longest `uid` a client may send.
pub const MAX_UID_BYTES: usize = 128;
/// Longest `activity`.
pub const MAX_ACTIVITY_BYTES: usize = 128;

/// Fields that the server sets; an event that carries them is rejected.
pub const SERVER_FIELDS: &[&str] = &["received_at", "log", "submitter"];

/// Top-level fields an event may carry.
pub const KNOWN_FIELDS: &[&str] = &[
    "time",
    "activity",
    "class_uid",
    "category_uid",
    "severity",
    "actor",
    "resource",
    "targets",
    "src_endpoint",
    "dst_endpoint",
    "status",
    "status_detail",
    "status_code",
    "message",
    "metadata",
    "raw_data",
    "uid",
    "seq",
    "duration_ms",
    "unmapped",
];

/// Whether a top-level field is one of [`KNOWN_FIELDS`], as a `match` the
/// compiler turns into a few length and byte comparisons.
fn is_known_field(k: &str) -> bool {
    let known = matches!(
        k,
        "time"
            | "activity"
            | "class_uid"
            | "category_uid"
            | "severity"
            | "actor"
            | "resource"
            | "targets"
            | "src_endpoint"
            | "dst_endpoint"
            | "status"
            | "status_detail"
            | "status_code"
            | "message"
            | "metadata"
            | "raw_data"
            | "uid"
            | "seq"
            | "duration_ms"
            | "unmapped"
    );
    debug_assert_eq!(known, KNOWN_FIELDS.contains(&k));
    known
}

/// The outcomes `status` may take.
pub const STATUSES: &[&str] = &["success", "failure", "unknown"];

/// One problem with one field of an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {error}")]
pub struct FieldError {
    /// The dotted path of the field, such as `actor.user.name`.
    pub field: String,
    /// What is wrong with it.
    pub error: String,
}

/// Why an event cannot become a log entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// One or more fields are invalid.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Fields(Vec<FieldError>),
    /// The sealed event is over the size limit.
    #[error("event is {size_bytes} bytes once sealed, over the limit of {MAX_EVENT_BYTES} bytes")]
    TooLarge {
        /// Its size.
        size_bytes: usize,
    },
}

/// What the server adds to every event it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFields {
    /// The log the event is stored in.
    pub log: String,
    /// When the server received it, RFC 3339 UTC (see
    /// [`crate::time::format_rfc3339`]).
    pub received_at: String,
    /// The authenticated identity that submitted it.
    pub submitter: String,
    /// How it arrived: `http`, `syslog`, `k8s`, `otlp`, `gateway`, `system`.
    pub via: String,
    /// The peer address it came from, if known.
    pub address: Option<String>,
}

/// What validation needs to see of a JSON value, implemented for
/// `serde_json::Value` and for the borrowed [`Node`], so that both are
/// checked by the same code.
pub trait View {
    /// Member `key` of an object (`None` for other values).
    fn get(&self, key: &str) -> Option<&Self>;
    /// The string, if this is one.
    fn as_str(&self) -> Option<&str>;
    /// The number as `u64`, if it is a non-negative integer.
    fn as_u64(&self) -> Option<u64>;
    /// The number as `i64`, if it is an integer in range.
    fn as_i64(&self) -> Option<i64>;
    /// Whether this is `null`.
    fn is_null(&self) -> bool;
    /// Whether this is a number.
    fn is_number(&self) -> bool;
    /// Whether this is an object.
    fn is_object(&self) -> bool;
    /// The items, if this is an array.
    fn as_array(&self) -> Option<&[Self]>
    where
        Self: Sized;
    /// Whether this is an array whose items are all objects.
    fn is_array_of_objects(&self) -> bool
    where
        Self: Sized,
    {
        self.as_array().is_some_and(|a| a.iter().all(View::is_object))
    }
    /// The members of an object, in any order (`None` for other values).
    fn members(&self) -> Option<Vec<(&str, &Self)>>;
    /// Appends the canonical encoding.
    fn write_canonical(&self, out: &mut String) -> Result<(), CanonError>;
}

impl View for Value {
    fn get(&self, key: &str) -> Option<&Self> {
        Value::get(self, key)
    }
    fn as_str(&self) -> Option<&str> {
        Value::as_str(self)
    }
    fn as_u64(&self) -> Option<u64> {
        Value::as_u64(self)
    }
    fn as_i64(&self) -> Option<i64> {
        Value::as_i64(self)
    }
    fn is_null(&self) -> bool {
        Value::is_null(self)
    }
    fn is_number(&self) -> bool {
        Value::is_number(self)
    }
    fn is_object(&self) -> bool {
        Value::is_object(self)
    }
    fn as_array(&self) -> Option<&[Self]> {
        Value::as_array(self).map(Vec::as_slice)
    }
    fn members(&self) -> Option<Vec<(&str, &Self)>> {
        self.as_object().map(|m| m.iter().map(|(k, v)| (k.as_str(), v)).collect())
    }
    fn write_canonical(&self, out: &mut String) -> Result<(), CanonError> {
        write_value(out, self)
    }
}

impl View for Node<'_> {
    fn get(&self, key: &str) -> Option<&Self> {
        Node::get(self, key)
    }
    fn as_str(&self) -> Option<&str> {
        Node::as_str(self)
    }
    fn as_u64(&self) -> Option<u64> {
        Node::as_u64(self)
    }
    fn as_i64(&self) -> Option<i64> {
        Node::as_i64(self)
    }
    fn is_null(&self) -> bool {
        matches!(self, Node::Null)
    }
    fn is_number(&self) -> bool {
        matches!(self, Node::Num(_))
    }
    fn is_object(&self) -> bool {
        matches!(self, Node::Obj(_))
    }
    fn as_array(&self) -> Option<&[Self]> {
        match self {
            Node::Arr(a) => Some(a),
            _ => None,
        }
    }
    fn members(&self) -> Option<Vec<(&str, &Self)>> {
        match self {
            Node::Obj(m) => Some(m.iter().map(|(k, v)| (k.as_ref(), v)).collect()),
            _ => None,
        }
    }
    fn write_canonical(&self, out: &mut String) -> Result<(), CanonError> {
        write_node(out, self)
    }
}

struct Check {
    errors: Vec<FieldError>,
}

impl Check {
    fn err(&mut self, field: &str, error: impl Into<String>) {
        self.errors.push(FieldError { field: field.to_string(), error: error.into() });
    }
}

/// Checks an optional or required string field, already looked up.
fn check_string<'a, V: View>(
    c: &mut Check,
    v: Option<&'a V>,
    path: &str,
    required: bool,
    max: usize,
) -> Option<&'a str> {
    let v = v.filter(|v| !v.is_null());
    let Some(v) = v else {
        if required {
            c.err(path, "required");
        }
        return None;
    };
    match v.as_str() {
        Some("") => {
            c.err(path, "must not be empty");
            None
        }
        Some(s) if s.len() > max => {
            c.err(path, format!("longer than {max} bytes"));
            None
        }
        Some(s) => Some(s),
        None => {
            c.err(path, "must be a string");
            None
        }
    }
}

/// Field paths of an endpoint object, spelled out so that checking a valid
/// event formats no strings.
struct EndpointPaths {
    root: &'static str,
    ip: &'static str,
    port: &'static str,
    hostname: &'static str,
}

const SRC: EndpointPaths = EndpointPaths {
    root: "src_endpoint",
    ip: "src_endpoint.ip",
    port: "src_endpoint.port",
    hostname: "src_endpoint.hostname",
};
const DST: EndpointPaths = EndpointPaths {
    root: "dst_endpoint",
    ip: "dst_endpoint.ip",
    port: "dst_endpoint.port",
    hostname: "dst_endpoint.hostname",
};

fn check_endpoint<V: View>(c: &mut Check, ep: Option<&V>, p: &EndpointPaths) {
    let Some(ep) = ep else { return };
    if !ep.is_object() {
        return c.err(p.root, "must be an object");
    }
    if let Some(ip) = check_string(c, ep.get("ip"), p.ip, false, 64)
        && ip.parse::<std::net::IpAddr>().is_err()
    {
        c.err(p.ip, format!("{ip:?} is not an IPv4 or IPv6 address"));
    }
    if let Some(port) = ep.get("port")
        && port.as_u64().is_none_or(|port| port > 65535)
    {
        c.err(p.port, "must be an integer from 0 to 65535");
    }
    check_string(c, ep.get("hostname"), p.hostname, false, 255);
}

fn check_time<V: View>(c: &mut Check, v: Option<&V>) -> Option<i64> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        c.err("time", "required");
        return None;
    };
    if let Some(s) = v.as_str() {
        return match parse_rfc3339(s) {
            Ok(ns) => Some(ns),
            Err(e) => {
                c.err("time", e);
                None
            }
        };
    }
    if v.is_number() {
        return match v.as_i64() {
            // Nanoseconds since the epoch must fit an i64: 1677 to 2262.
            Some(ms) => match ms.checked_mul(1_000_000) {
                Some(ns) => Some(ns),
                None => {
                    c.err("time", format!("{ms} milliseconds since the epoch is out of range (years 1677 to 2262)"));
                    None
                }
            },
            _ => {
                c.err("time", "must be milliseconds since the epoch as an integer");
                None
            }
        };
    }
    c.err("time", "must be an RFC 3339 string or epoch milliseconds");
    None
}

fn check_actor<V: View>(c: &mut Check, actor: Option<&V>) {
    let user = actor.and_then(|a| a.get("user"));
    match user {
        Some(u) if u.is_object() => {
            let before = c.errors.len();
            let name = check_string(c, u.get("name"), "actor.user.name", false, 256);
            let uid = check_string(c, u.get("uid"), "actor.user.uid", false, 256);
            if name.is_none() && uid.is_none() && c.errors.len() == before {
                c.err("actor.user.name", "required (or actor.user.uid)");
            }
        }
        Some(_) => c.err("actor.user", "must be an object"),
        None => c.err("actor.user.name", "required (or actor.user.uid)"),
    }
    let session = actor.and_then(|a| a.get("session"));
    check_string(c, session.and_then(|s| s.get("uid")), "actor.session.uid", false, 256);
}

/// Checks an event against the schema. Every problem is reported, not just
/// the first. On success, returns the event time in nanoseconds since the
/// epoch.
pub fn check<V: View>(obj: &V) -> Result<i64, Vec<FieldError>> {
    let Some(members) = obj.members() else {
        return Err(vec![FieldError { field: "$".into(), error: "an event must be a JSON object".into() }]);
    };
    let mut c = Check { errors: Vec::new() };
    for (k, _) in &members {
        if !is_known_field(k) {
            if SERVER_FIELDS.contains(k) {
                c.err(k, "is set by the server and must not be sent");
            } else {
                c.err(k, "unknown field; put extra data under metadata or unmapped");
            }
        }
    }
    let time = check_time(&mut c, obj.get("time"));
    if let Some(a) = check_string(&mut c, obj.get("activity"), "activity", true, MAX_ACTIVITY_BYTES)
        && !a.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-:/".contains(&b))
    {
        c.err("activity", "only letters, digits and . _ - : / are allowed");
    }
    check_actor(&mut c, obj.get("actor"));
    if let Some(s) = check_string(&mut c, obj.get("status"), "status", true, 16)
        && !STATUSES.contains(&s)
    {
        c.err("status", format!("{s:?} is not one of success, failure, unknown"));
    }
    check_string(&mut c, obj.get("status_detail"), "status_detail", false, 4096);
    check_string(&mut c, obj.get("message"), "message", false, MAX_EVENT_BYTES);
    check_string(&mut c, obj.get("raw_data"), "raw_data", false, MAX_EVENT_BYTES);
    check_string(&mut c, obj.get("uid"), "uid", false, MAX_UID_BYTES);
    for f in ["class_uid", "category_uid", "seq"] {
        if obj.get(f).is_some_and(|x| x.as_u64().is_none()) {
            c.err(f, "must be a non-negative integer");
        }
    }
    for f in ["actor", "resource", "metadata", "unmapped"] {
        if obj.get(f).is_some_and(|x| !x.is_object() && !x.is_null()) {
            c.err(f, "must be an object");
        }
    }
    if let Some(t) = obj.get("targets")
        && !t.is_array_of_objects()
    {
        c.err("targets", "must be an array of objects");
    }
    check_endpoint(&mut c, obj.get("src_endpoint"), &SRC);
    check_endpoint(&mut c, obj.get("dst_endpoint"), &DST);
    match time {
        Some(ns) if c.errors.is_empty() => Ok(ns),
        _ => Err(c.errors),
    }
}

/// Checks an event against the schema and returns it with `time`
/// normalised to RFC 3339 UTC. Every problem is reported, not just the
/// first.
pub fn validate(v: Value) -> Result<Map<String, Value>, Vec<FieldError>> {
    let ns = check(&v)?;
    let Value::Object(mut obj) = v else { unreachable!("check accepts only objects") };
    obj.insert("time".into(), Value::String(format_rfc3339(ns)));
    Ok(obj)
}

/// A canonical-encoding error inside top-level member `member`, with its
/// path made absolute (`$.metadata.x` rather than `$.x`) and named as the
/// field.
fn member_error(member: &str, e: CanonError) -> EventError {
    let absolute = |path: &str| format!("$.{member}{}", path.strip_prefix('$').unwrap_or(path));
    let e = match e {
        CanonError::UnsafeInteger { number, path } => CanonError::UnsafeInteger { number, path: absolute(&path) },
        CanonError::DuplicateKey { key, path } => CanonError::DuplicateKey { key, path: absolute(&path) },
    };
    let field = match &e {
        CanonError::UnsafeInteger { path, .. } | CanonError::DuplicateKey { path, .. } => {
            path.strip_prefix("$.").unwrap_or(path).to_string()
        }
    };
    EventError::Fields(vec![FieldError { field, error: e.to_string() }])
}

/// Adds the server's fields and returns the canonical bytes that become
/// the log entry.
pub fn seal(event: Map<String, Value>, server: &ServerFields) -> Result<Vec<u8>, EventError> {
    seal_event(&Value::Object(event), server)
}

/// Checks an event, adds the server's fields and returns the canonical
/// bytes that become the log entry, without copying the event.
pub fn seal_event<V: View>(event: &V, server: &ServerFields) -> Result<Vec<u8>, EventError> {
    let ns = check(event).map_err(EventError::Fields)?;
    let members = event.members().expect("check accepts only objects");
    enum Part<'v, V> {
        Event(&'v V),
        Time,
        Log,
        ReceivedAt,
        Submitter,
    }
    // Validated top-level keys are ASCII, so byte order is canonical order.
    let mut parts: Vec<(&str, Part<'_, V>)> = Vec::with_capacity(members.len() + 3);
    parts.extend(members.into_iter().filter(|(k, _)| *k != "time").map(|(k, v)| (k, Part::Event(v))));
    parts.extend([("time", Part::Time), ("log", Part::Log), ("received_at", Part::ReceivedAt)]);
    parts.push(("submitter", Part::Submitter));
    parts.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let field_error = |error: String| EventError::Fields(vec![FieldError { field: "$".into(), error }]);
    if let Some(w) = parts.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(field_error(format!("member {:?} appears more than once in the event", w[0].0)));
    }
    let mut out = String::with_capacity(512);
    out.push('{');
    for (i, (k, part)) in parts.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(k);
        out.push_str("\":");
        match part {
            Part::Event(v) => v.write_canonical(&mut out).map_err(|e| member_error(k, e))?,
            Part::Time => crate::canonical::string(&mut out, &format_rfc3339(ns)),
            Part::Log => crate::canonical::string(&mut out, &server.log),
            Part::ReceivedAt => crate::canonical::string(&mut out, &server.received_at),
            Part::Submitter => {
                out.push('{');
                if let Some(a) = &server.address {
                    out.push_str("\"address\":");
                    crate::canonical::string(&mut out, a);
                    out.push(',');
                }
                out.push_str("\"name\":");
                crate::canonical::string(&mut out, &server.submitter);
                out.push_str(",\"via\":");
                crate::canonical::string(&mut out, &server.via);
                out.push('}');
            }
        }
    }
    out.push('}');
    if out.len() > MAX_EVENT_BYTES {
        return Err(EventError::TooLarge { size_bytes: out.len() });
    }
    Ok(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> Value {
        json!({
            "time": "2026-11-27T09:00:00+01:00",
            "activity": "user.login",
            "actor": {"user": {"name": "alice"}},
            "status": "failure",
            "src_endpoint": {"ip": "10.1.2.3", "port": 5123},
        })
    }

    fn fields(v: Value) -> Vec<String> {
        validate(v).unwrap_err().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn good_event_is_normalised_and_sealed() {
        let e = validate(good()).unwrap();
        assert_eq!(e["time"], "2026-11-27T08:00:00Z");
        let server = ServerFields {
            log: "prod".into(),
            received_at: format_rfc3339(0),
            submitter: "ci".into(),
            via: "http".into(),
            address: None,
        };
        let bytes = String::from_utf8(seal(e, &server).unwrap()).unwrap();
        assert!(
            bytes.starts_with(r#"{"activity":"user.login","actor":{"user":{"name":"alice"}},"log":"prod""#),
            "{bytes}"
        );
        assert!(bytes.contains(r#""submitter":{"name":"ci","via":"http"}"#));
    }

    #[test]
    fn every_problem_is_named() {
        assert_eq!(fields(json!({})), ["time", "activity", "actor.user.name", "status"]);
        let mut v = good();
        v["status"] = json!("ok");
        v["src_endpoint"]["ip"] = json!("10.1.2");
        v["src_endpoint"]["port"] = json!(70000);
        v["log"] = json!("other");
        v["colour"] = json!(1);
        v["time"] = json!("yesterday");
        let mut f = fields(v);
        f.sort();
        assert_eq!(f, ["colour", "log", "src_endpoint.ip", "src_endpoint.port", "status", "time"]);
        assert_eq!(fields(json!([1])), ["$"]);
    }

    #[test]
    fn epoch_millis_are_accepted() {
        let mut v = good();
        v["time"] = json!(1_700_000_000_123i64);
        assert_eq!(validate(v).unwrap()["time"], "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn out_of_range_times_are_refused_not_wrapped() {
        // Found by `cargo fuzz run event_json`: epoch milliseconds whose
        // nanoseconds overflow i64 panicked (debug) or wrapped (release).
        for t in [json!(3_333_333_333_333_320i64), json!(-9_300_000_000_000i64), json!("9999-12-31")] {
            let mut v = good();
            v["time"] = t.clone();
            let e = validate(v).unwrap_err();
            assert_eq!(e[0].field, "time", "{t}");
            assert!(e[0].error.contains("out of range"), "{t}: {}", e[0].error);
        }
        let mut v = good();
        v["time"] = json!(9_000_000_000_000i64);
        assert_eq!(validate(v).unwrap()["time"], "2255-03-14T16:00:00Z");
    }

    #[test]
    fn oversized_event_is_refused_when_sealed() {
        let mut v = good();
        v["message"] = json!("x".repeat(65_500));
        let server = ServerFields {
            log: "l".into(),
            received_at: format_rfc3339(0),
            submitter: "s".into(),
            via: "http".into(),
            address: None,
        };
        let e = seal(validate(v).unwrap(), &server).unwrap_err();
        assert!(matches!(e, EventError::TooLarge { .. }), "{e}");
    }

    fn server() -> ServerFields {
        ServerFields {
            log: "l".into(),
            received_at: format_rfc3339(0),
            submitter: "s\"q".into(),
            via: "http".into(),
            address: Some("::1".into()),
        }
    }

    fn outcome(r: Result<Vec<u8>, EventError>) -> Result<Vec<u8>, Vec<String>> {
        r.map_err(|e| match e {
            EventError::Fields(f) => f.into_iter().map(|f| f.field).collect(),
            EventError::TooLarge { .. } => vec!["too large".into()],
        })
    }

    proptest::proptest! {
        /// The borrowed-node path and the `serde_json::Value` path accept
        /// and refuse the same events and seal the same bytes.
        #[test]
        fn node_and_value_paths_agree(
            picks in proptest::collection::vec(0usize..24, 0..12),
            text in "[a-z\\\"é ]{0,8}",
        ) {
            let choices: Vec<(&str, Value)> = vec![
                ("time", json!("2026-11-27T09:00:00.5+01:00")),
                ("time", json!(1_700_000_000_123i64)),
                ("time", json!("yesterday")),
                ("activity", json!("user.login")),
                ("activity", json!("bad activity")),
                ("actor", json!({"user": {"name": text}})),
                ("actor", json!({"user": {"uid": "u-1"}, "session": {"uid": 7}})),
                ("actor", json!({"user": "alice"})),
                ("status", json!("failure")),
                ("status", json!("ok")),
                ("src_endpoint", json!({"ip": "10.0.0.1", "port": 22})),
                ("src_endpoint", json!({"ip": "10.0.0", "port": -1})),
                ("dst_endpoint", json!({"hostname": text})),
                ("message", json!(text)),
                ("metadata", json!({"z": [1, 2.5, null, {"b": true, "a": "x"}], "a": -3})),
                ("metadata", json!("flat")),
                ("seq", json!(5)),
                ("seq", json!(-5)),
                ("uid", json!("")),
                ("targets", json!([{"name": "t"}])),
                ("targets", json!([1])),
                ("log", json!("x")),
                ("colour", json!("red")),
                ("unmapped", json!({"big": 9007199254740993u64})),
            ];
            let mut obj = Map::new();
            for p in picks {
                let (k, v) = &choices[p];
                obj.insert(k.to_string(), v.clone());
            }
            let value = Value::Object(obj);
            let by_value = outcome(validate(value.clone()).map_err(EventError::Fields).and_then(|m| seal(m, &server())));
            let text = serde_json::to_vec(&value).unwrap();
            let node = crate::doc::parse(&text).unwrap();
            let by_node = outcome(seal_event(&node, &server()));
            proptest::prop_assert_eq!(by_value, by_node);
        }
    }

    #[test]
    fn nested_encoding_errors_name_the_whole_path() {
        let text = br#"{"time":"2026-11-27T09:00:00Z","activity":"a","actor":{"user":{"name":"a"}},"status":"success","metadata":{"x":{"k":1,"k":2},"n":[9007199254740993]}}"#;
        let EventError::Fields(f) = seal_event(&crate::doc::parse(text).unwrap(), &server()).unwrap_err() else {
            panic!("expected a field error")
        };
        assert_eq!(f[0].field, "metadata.x", "{f:?}");
        assert!(f[0].error.contains("\"k\" appears more than once in the object at $.metadata.x"), "{f:?}");
        let v = json!({"time": "2026-11-27T09:00:00Z", "activity": "a", "actor": {"user": {"name": "a"}},
            "status": "success", "unmapped": {"n": [9007199254740993u64]}});
        let EventError::Fields(f) = seal_event(&v, &server()).unwrap_err() else { panic!("expected a field error") };
        assert_eq!(f[0].field, "unmapped.n[0]", "{f:?}");
    }

    #[test]
    fn repeated_members_are_refused() {
        let text = br#"{"time":"2026-11-27T09:00:00Z","activity":"a","actor":{"user":{"name":"a"}},"status":"success","status":"failure"}"#;
        let e = seal_event(&crate::doc::parse(text).unwrap(), &server()).unwrap_err();
        assert!(e.to_string().contains("\"status\" appears more than once"), "{e}");
    }
}
