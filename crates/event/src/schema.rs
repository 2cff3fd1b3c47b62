//! Validation of one access event and sealing it into a log entry. See
//! `docs/events.md`.

use serde_json::{Map, Value};

use crate::canonical::to_canonical;
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

struct Check {
    errors: Vec<FieldError>,
}

impl Check {
    fn err(&mut self, field: &str, error: impl Into<String>) {
        self.errors.push(FieldError { field: field.to_string(), error: error.into() });
    }
}

/// Checks an optional or required string field, already looked up.
fn check_string<'a>(c: &mut Check, v: Option<&'a Value>, path: &str, required: bool, max: usize) -> Option<&'a str> {
    match v {
        None | Some(Value::Null) if !required => None,
        None | Some(Value::Null) => {
            c.err(path, "required");
            None
        }
        Some(Value::String(s)) if s.is_empty() => {
            c.err(path, "must not be empty");
            None
        }
        Some(Value::String(s)) if s.len() > max => {
            c.err(path, format!("longer than {max} bytes"));
            None
        }
        Some(Value::String(s)) => Some(s),
        Some(_) => {
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

fn check_endpoint(c: &mut Check, ep: Option<&Value>, p: &EndpointPaths) {
    let Some(ep) = ep else { return };
    if !ep.is_object() {
        return c.err(p.root, "must be an object");
    }
    if let Some(ip) = check_string(c, ep.get("ip"), p.ip, false, 64) {
        if ip.parse::<std::net::IpAddr>().is_err() {
            c.err(p.ip, format!("{ip:?} is not an IPv4 or IPv6 address"));
        }
    }
    if let Some(port) = ep.get("port") {
        if !port.as_u64().is_some_and(|port| port <= 65535) {
            c.err(p.port, "must be an integer from 0 to 65535");
        }
    }
    check_string(c, ep.get("hostname"), p.hostname, false, 255);
}

fn check_time(c: &mut Check, v: Option<&Value>) -> Option<i64> {
    match v {
        None | Some(Value::Null) => {
            c.err("time", "required");
            None
        }
        Some(Value::String(s)) => match parse_rfc3339(s) {
            Ok(ns) => Some(ns),
            Err(e) => {
                c.err("time", e);
                None
            }
        },
        Some(Value::Number(n)) => match n.as_i64() {
            Some(ms) if ms.unsigned_abs() < 1 << 52 => Some(ms * 1_000_000),
            _ => {
                c.err("time", "must be milliseconds since the epoch as an integer");
                None
            }
        },
        Some(_) => {
            c.err("time", "must be an RFC 3339 string or epoch milliseconds");
            None
        }
    }
}

fn check_actor(c: &mut Check, actor: Option<&Value>) {
    let user = actor.and_then(|a| a.get("user"));
    match user {
        Some(u @ Value::Object(_)) => {
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

/// Checks an event against the schema and returns it with `time`
/// normalised to RFC 3339 UTC. Every problem is reported, not just the
/// first.
pub fn validate(v: Value) -> Result<Map<String, Value>, Vec<FieldError>> {
    let Value::Object(mut obj) = v else {
        return Err(vec![FieldError { field: "$".into(), error: "an event must be a JSON object".into() }]);
    };
    let mut c = Check { errors: Vec::new() };
    for k in obj.keys() {
        if !is_known_field(k) {
            if SERVER_FIELDS.contains(&k.as_str()) {
                c.err(k, "is set by the server and must not be sent");
            } else {
                c.err(k, "unknown field; put extra data under metadata or unmapped");
            }
        }
    }
    let time = check_time(&mut c, obj.get("time"));
    if let Some(a) = check_string(&mut c, obj.get("activity"), "activity", true, MAX_ACTIVITY_BYTES) {
        if !a.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-:/".contains(&b)) {
            c.err("activity", "only letters, digits and . _ - : / are allowed");
        }
    }
    let actor = obj.get("actor");
    check_actor(&mut c, actor);
    if let Some(s) = check_string(&mut c, obj.get("status"), "status", true, 16) {
        if !STATUSES.contains(&s) {
            c.err("status", format!("{s:?} is not one of success, failure, unknown"));
        }
    }
    check_string(&mut c, obj.get("status_detail"), "status_detail", false, 4096);
    check_string(&mut c, obj.get("message"), "message", false, MAX_EVENT_BYTES);
    check_string(&mut c, obj.get("raw_data"), "raw_data", false, MAX_EVENT_BYTES);
    check_string(&mut c, obj.get("uid"), "uid", false, MAX_UID_BYTES);
    for f in ["class_uid", "category_uid", "seq"] {
        if obj.get(f).is_some_and(|x| !x.is_u64()) {
            c.err(f, "must be a non-negative integer");
        }
    }
    for f in ["actor", "resource", "metadata", "unmapped"] {
        if obj.get(f).is_some_and(|x| !x.is_object() && !x.is_null()) {
            c.err(f, "must be an object");
        }
    }
    if let Some(t) = obj.get("targets") {
        if !t.as_array().is_some_and(|a| a.iter().all(Value::is_object)) {
            c.err("targets", "must be an array of objects");
        }
    }
    check_endpoint(&mut c, obj.get("src_endpoint"), &SRC);
    check_endpoint(&mut c, obj.get("dst_endpoint"), &DST);
    if !c.errors.is_empty() {
        return Err(c.errors);
    }
    if let Some(ns) = time {
        obj.insert("time".into(), Value::String(format_rfc3339(ns)));
    }
    Ok(obj)
}

/// Adds the server's fields and returns the canonical bytes that become
/// the log entry.
pub fn seal(mut event: Map<String, Value>, server: &ServerFields) -> Result<Vec<u8>, EventError> {
    event.insert("log".into(), Value::String(server.log.clone()));
    event.insert("received_at".into(), Value::String(server.received_at.clone()));
    let mut sub = Map::new();
    sub.insert("name".into(), Value::String(server.submitter.clone()));
    sub.insert("via".into(), Value::String(server.via.clone()));
    if let Some(a) = &server.address {
        sub.insert("address".into(), Value::String(a.clone()));
    }
    event.insert("submitter".into(), Value::Object(sub));
    let bytes = to_canonical(&Value::Object(event))
        .map_err(|e| EventError::Fields(vec![FieldError { field: "$".into(), error: e.to_string() }]))?
        .into_bytes();
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(EventError::TooLarge { size_bytes: bytes.len() });
    }
    Ok(bytes)
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
}
