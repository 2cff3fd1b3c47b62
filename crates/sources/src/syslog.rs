//! Syslog: RFC 5424 and RFC 3164 messages, RFC 6587 framing on streams,
//! and the authentication messages of sshd, sudo, su and PAM turned into
//! proper access events.

use std::borrow::Cow;

use custos_event::doc::Node;
use serde_json::{Map, Value};

/// A stream frame (or datagram) is read up to this size.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// At most this much of a message is stored (twice: parsed and raw), so
/// that a sealed event always fits a log entry; longer ones are cut and
/// flagged `metadata.syslog.truncated`.
pub const MAX_STORED_BYTES: usize = 24 * 1024;

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const SEVERITIES: [&str; 8] = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];

/// The parts of a syslog message.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Message {
    /// Facility number.
    pub facility: u8,
    /// Severity number.
    pub severity: u8,
    /// RFC 3339 time, if the message had a usable one.
    pub time: Option<String>,
    /// HOSTNAME.
    pub hostname: Option<String>,
    /// APP-NAME (the TAG of RFC 3164).
    pub app_name: Option<String>,
    /// PROCID.
    pub procid: Option<String>,
    /// MSGID.
    pub msgid: Option<String>,
    /// STRUCTURED-DATA: SD-ID to parameters.
    pub structured_data: Map<String, Value>,
    /// MSG.
    pub msg: String,
}

fn nil(s: &str) -> Option<String> {
    (s != "-" && !s.is_empty()).then(|| s.to_string())
}

fn pri(s: &str) -> Option<(u8, &str)> {
    let rest = s.strip_prefix('<')?;
    let end = rest.find('>')?;
    if end == 0 || end > 3 {
        return None;
    }
    let p: u16 = rest[..end].parse().ok()?;
    (p <= 191).then_some((p as u8, &rest[end + 1..]))
}

/// Parses RFC 5424 structured data; returns it and the rest.
fn structured(s: &str) -> Option<(Map<String, Value>, &str)> {
    let mut out = Map::new();
    if let Some(rest) = s.strip_prefix('-') {
        return Some((out, rest));
    }
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && b[i] == b'[' {
        i += 1;
        let id_end = i + s[i..].find([' ', ']'])?;
        let id = &s[i..id_end];
        i = id_end;
        let mut params = Map::new();
        while b.get(i) == Some(&b' ') {
            i += 1;
            let eq = i + s[i..].find('=')?;
            let name = &s[i..eq];
            i = eq + 1;
            if b.get(i) != Some(&b'"') {
                return None;
            }
            i += 1;
            let mut val = String::new();
            loop {
                let c = *b.get(i)?;
                if c == b'\\' && matches!(b.get(i + 1), Some(b'"' | b'\\' | b']')) {
                    val.push(b[i + 1] as char);
                    i += 2;
                } else if c == b'"' {
                    i += 1;
                    break;
                } else {
                    let ch = s[i..].chars().next()?;
                    val.push(ch);
                    i += ch.len_utf8();
                }
            }
            params.insert(name.to_string(), Value::String(val));
        }
        if b.get(i) != Some(&b']') {
            return None;
        }
        i += 1;
        out.insert(id.to_string(), Value::Object(params));
    }
    Some((out, &s[i..]))
}

fn rfc5424(p: u8, rest: &str) -> Option<Message> {
    let rest = rest.strip_prefix("1 ")?;
    let mut it = rest.splitn(6, ' ');
    let (ts, host, app, proc_, msgid, tail) = (it.next()?, it.next()?, it.next()?, it.next()?, it.next()?, it.next()?);
    let time = if ts == "-" {
        None
    } else {
        Some(custos_event::time::parse_rfc3339(ts).ok().map(custos_event::time::format_rfc3339)?)
    };
    let (sd, msg) = structured(tail)?;
    let msg = msg.strip_prefix(' ').unwrap_or(msg);
    let msg = msg.strip_prefix('\u{feff}').unwrap_or(msg);
    Some(Message {
        facility: p / 8,
        severity: p % 8,
        time,
        hostname: nil(host),
        app_name: nil(app),
        procid: nil(proc_),
        msgid: nil(msgid),
        structured_data: sd,
        msg: msg.trim_end_matches(['\n', '\r']).trim_start().to_string(),
    })
}

/// RFC 3164: `Mmm dd hh:mm:ss HOST TAG[PID]: MSG`. The year is not in the
/// message: `year` is used, and the time taken as UTC.
fn rfc3164(p: u8, rest: &str, year: i64) -> Option<Message> {
    let month = MONTHS.iter().position(|m| rest.starts_with(m))? as i64 + 1;
    let day: i64 = rest.get(4..6)?.trim().parse().ok()?;
    let clock = rest.get(7..15)?;
    if rest.as_bytes().get(15) != Some(&b' ') {
        return None;
    }
    let stamp = format!("{year:04}-{month:02}-{day:02}T{clock}Z");
    let time = custos_event::time::parse_rfc3339(&stamp).ok().map(custos_event::time::format_rfc3339);
    let rest = &rest[16..];
    let (host, rest) = rest.split_once(' ')?;
    let (tag, msg) = match rest.split_once(": ") {
        Some((t, m)) if !t.contains(' ') => (Some(t), m),
        _ => (None, rest),
    };
    let (app, procid) = match tag {
        Some(t) => match t.split_once('[') {
            Some((a, pid)) => (Some(a.to_string()), Some(pid.trim_end_matches(']').to_string())),
            None => (Some(t.to_string()), None),
        },
        None => (None, None),
    };
    Some(Message {
        facility: p / 8,
        severity: p % 8,
        time,
        hostname: nil(host),
        app_name: app,
        procid,
        msg: msg.trim_end_matches(['\n', '\r']).to_string(),
        ..Message::default()
    })
}

/// Parses one message, RFC 5424 or RFC 3164.
pub fn parse(raw: &str, year: i64) -> Option<Message> {
    let (p, rest) = pri(raw)?;
    if rest.starts_with("1 ") { rfc5424(p, rest) } else { rfc3164(p, rest, year) }
}

/// What an authentication message says.
struct Auth {
    activity: &'static str,
    user: String,
    success: bool,
    detail: String,
    ip: Option<String>,
    port: Option<u64>,
    target: Option<String>,
}

fn word_after<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let i = s.find(key)? + key.len();
    s[i..].split_whitespace().next()
}

/// Recognises sshd, sudo, su and PAM session messages.
fn auth(app: &str, msg: &str) -> Option<Auth> {
    let a = |activity, user: &str, success, detail: &str| Auth {
        activity,
        user: user.to_string(),
        success,
        detail: detail.to_string(),
        ip: word_after(msg, " from ").filter(|ip| ip.parse::<std::net::IpAddr>().is_ok()).map(str::to_string),
        port: word_after(msg, " port ").and_then(|p| p.parse().ok()),
        target: None,
    };
    if app == "sshd" {
        if let Some(rest) = msg.strip_prefix("Accepted ") {
            let method = rest.split_whitespace().next()?;
            return Some(a("user.login", word_after(msg, " for ")?, true, method));
        }
        if msg.starts_with("Failed ") {
            let method = msg.split_whitespace().nth(1)?;
            let user = word_after(msg, " for invalid user ").or_else(|| word_after(msg, " for "))?;
            return Some(a("user.login", user, false, method));
        }
        if let Some(rest) = msg.strip_prefix("Invalid user ") {
            return Some(a("user.login", rest.split_whitespace().next()?, false, "invalid user"));
        }
    }
    if app == "sudo" {
        let (user, rest) = msg.split_once(" : ")?;
        let target = word_after(rest, "USER=").map(|u| u.trim_end_matches(';').to_string());
        let success = !rest.contains("incorrect password")
            && !rest.contains("NOT in sudoers")
            && !rest.contains("command not allowed");
        let detail = rest.split("COMMAND=").nth(1).map_or(rest.split(" ; ").next().unwrap_or(""), str::trim);
        return Some(Auth { target, ..a("user.sudo", user.trim(), success, detail) });
    }
    if app == "su" {
        let failed = msg.starts_with("FAILED SU") || msg.contains("authentication failure");
        let target = word_after(msg, "(to ").map(|t| t.trim_end_matches(')').to_string());
        let user = msg.split(") ").nth(1).and_then(|r| r.split_whitespace().next())?;
        return Some(Auth { target, ..a("user.su", user, !failed, if failed { "failed" } else { "ok" }) });
    }
    if msg.contains("pam_unix(") {
        if let Some(i) = msg.find("session opened for user ") {
            let user = msg[i + 24..].split(['(', ' ']).next()?;
            return Some(a("session.open", user, true, msg.split(':').next().unwrap_or("")));
        }
        if let Some(i) = msg.find("session closed for user ") {
            let user = msg[i + 24..].split(['(', ' ']).next()?;
            return Some(a("session.close", user, true, msg.split(':').next().unwrap_or("")));
        }
        if msg.contains("authentication failure") {
            let user = word_after(msg, " user=").unwrap_or("unknown");
            return Some(a("user.login", user, false, "pam authentication failure"));
        }
    }
    None
}

/// Turns a received message into an event. `now_ns` stands in for a
/// missing timestamp; `peer` is the sender's address. A message that does
/// not parse is kept, flagged `metadata.syslog.parsed = false`.
pub fn to_event(raw: &[u8], peer: Option<&str>, now_ns: i64) -> Value {
    to_node(raw, peer, now_ns).to_value()
}

/// [`to_event`] as a [`Node`], which the server seals without building a
/// `serde_json::Value`. The result always passes [`custos_event::check`].
pub fn to_node(raw: &[u8], peer: Option<&str>, now_ns: i64) -> Node<'static> {
    let stored = raw.len().min(MAX_STORED_BYTES);
    let mut e = event(raw, peer, now_ns);
    if fit(&mut e, stored) && custos_event::check(&e).is_ok() {
        return e;
    }
    // Fields the parser pulled out break the schema (an over-long tag,
    // say) or cannot be made to fit (escaped structured data): keep the
    // message whole, flagged unparsed, rather than lose it. Its only long
    // field is `raw_data`, which halving always fits.
    let mut e = unparsed(raw, peer, now_ns);
    fit(&mut e, stored);
    e
}

type Members = Vec<(Cow<'static, str>, Node<'static>)>;

fn put(m: &mut Members, k: &'static str, v: Node<'static>) {
    m.push((Cow::Borrowed(k), v));
}

/// Adds a string member unless it is empty, which the schema refuses.
fn put_text(m: &mut Members, k: &'static str, v: String) {
    if !v.is_empty() {
        put(m, k, Node::string(v));
    }
}

fn user(name: String) -> Node<'static> {
    let name = if name.is_empty() { "unknown".to_string() } else { name };
    Node::obj([("user", Node::obj([("name", Node::string(name))]))])
}

fn peer_ip(peer: Option<&str>) -> Option<Node<'static>> {
    peer.filter(|ip| ip.parse::<std::net::IpAddr>().is_ok()).map(|ip| Node::string(ip.to_string()))
}

fn unparsed(raw: &[u8], peer: Option<&str>, now_ns: i64) -> Node<'static> {
    let text = String::from_utf8_lossy(&raw[..raw.len().min(MAX_STORED_BYTES)]).into_owned();
    let mut e = Members::with_capacity(8);
    put(&mut e, "time", Node::string(custos_event::time::format_rfc3339(now_ns)));
    put(&mut e, "activity", Node::str("syslog.unparsed"));
    put(&mut e, "actor", user("unknown".into()));
    put(&mut e, "status", Node::str("unknown"));
    put(&mut e, "message", Node::str("unparsed syslog message"));
    put(
        &mut e,
        "metadata",
        Node::obj([(
            "syslog",
            Node::obj([("parsed", Node::Bool(false)), ("truncated", Node::Bool(raw.len() > MAX_STORED_BYTES))]),
        )]),
    );
    put_text(&mut e, "raw_data", text);
    if let Some(ip) = peer_ip(peer) {
        put(&mut e, "src_endpoint", Node::obj([("ip", ip)]));
    }
    Node::Obj(e)
}

/// Longest `status_detail` the event schema accepts.
const MAX_DETAIL_BYTES: usize = 4096;

/// Encoded size a syslog event may reach, leaving room for the server's
/// fields within the 65,535-byte entry limit.
const MAX_EVENT_JSON_BYTES: usize = 60_000;

/// Halves `message` and `raw_data` until the event's JSON fits: escaping
/// can make text up to six times longer. Returns false if it cannot fit
/// that way (structured data alone can be too long once escaped).
fn fit(e: &mut Node<'static>, stored_bytes: usize) -> bool {
    // Every string in the event is a piece of the stored text: `raw_data`
    // is all of it, and the message, the structured data and the header
    // fields are disjoint pieces, but an auth message's detail, user and
    // target repeat parts of the message, and the hostname appears up to
    // three times. Four times the text bounds all of them, and escaping
    // at most sextuples text, so short messages cannot overflow and are not
    // encoded just to measure.
    if (stored_bytes * 4 + 2 * 255) * 6 + 8192 < MAX_EVENT_JSON_BYTES {
        return true;
    }
    let encoded_len = |e: &Node<'_>| {
        let mut out = String::new();
        // Built from strings and small integers: always encodable.
        custos_event::canonical::write_node(&mut out, e).map_or(usize::MAX, |()| out.len())
    };
    while encoded_len(e) > MAX_EVENT_JSON_BYTES {
        let Some(members) = e.members_mut() else { return false };
        let mut shortened = false;
        for (k, v) in members.iter_mut() {
            match (k.as_ref(), v) {
                ("message" | "raw_data", Node::Str(t)) if !t.is_empty() => {
                    let cut = t.floor_char_boundary(t.len() / 2);
                    *t = Cow::Owned(t[..cut].to_string());
                    shortened = true;
                }
                ("metadata", Node::Obj(meta)) => {
                    for (k, sys) in meta.iter_mut() {
                        if let (true, Some(sys)) = (k == "syslog", sys.members_mut()) {
                            sys.retain(|(k, _)| k != "truncated");
                            sys.push((Cow::Borrowed("truncated"), Node::Bool(true)));
                        }
                    }
                }
                _ => {}
            }
        }
        if !shortened {
            return false;
        }
    }
    // An emptied text field is dropped: the schema refuses empty strings.
    if let Some(members) = e.members_mut() {
        members.retain(|(k, v)| !(matches!(k.as_ref(), "message" | "raw_data") && v.as_str() == Some("")));
    }
    true
}

fn event(raw: &[u8], peer: Option<&str>, now_ns: i64) -> Node<'static> {
    let now = custos_event::time::format_rfc3339(now_ns);
    let year = now[..4].parse().unwrap_or(1970);
    let truncated = raw.len() > MAX_STORED_BYTES;
    let text = String::from_utf8_lossy(&raw[..raw.len().min(MAX_STORED_BYTES)]).into_owned();
    let Some(m) = parse(&text, year) else {
        return unparsed(raw, peer, now_ns);
    };
    let Message { facility, severity, time, hostname, app_name, procid, msgid, structured_data, msg } = m;
    // RFC 5424 `meta sequenceId`, for gap detection.
    let seq = structured_data
        .get("meta")
        .and_then(|x| x.get("sequenceId"))
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<u64>().ok());
    // rsyslog's RFC 5424 templates keep the space that followed the tag.
    let auth = auth(app_name.as_deref().unwrap_or(""), msg.trim_start());
    let mut e = Members::with_capacity(14);
    let mut src = Members::with_capacity(3);
    if let Some(h) = &hostname {
        put(&mut src, "hostname", Node::string(h.clone()));
    }
    match auth {
        Some(a) => {
            put(&mut e, "activity", Node::str(a.activity));
            put(&mut e, "class_uid", Node::uint(3002));
            put(&mut e, "actor", user(a.user));
            put(&mut e, "status", Node::str(if a.success { "success" } else { "failure" }));
            // The schema caps the detail; a long sudo command is cut rather
            // than sending the whole message to the unparsed fallback.
            let mut detail = a.detail;
            detail.truncate(detail.floor_char_boundary(MAX_DETAIL_BYTES));
            put_text(&mut e, "status_detail", detail);
            if let Some(t) = a.target.filter(|t| !t.is_empty()) {
                let target = Node::obj([("type", Node::str("user")), ("name", Node::string(t))]);
                put(&mut e, "targets", Node::Arr(vec![target]));
            }
            match a.ip {
                Some(ip) => {
                    put(&mut src, "ip", Node::string(ip));
                    if let Some(p) = a.port {
                        put(&mut src, "port", Node::uint(p));
                    }
                    if let Some(peer) = peer {
                        let mut dst = Members::with_capacity(2);
                        put(&mut dst, "ip", Node::string(peer.to_string()));
                        if let Some(h) = &hostname {
                            put(&mut dst, "hostname", Node::string(h.clone()));
                        }
                        put(&mut e, "dst_endpoint", Node::Obj(dst));
                    }
                }
                None => {
                    if let Some(peer) = peer {
                        put(&mut src, "ip", Node::string(peer.to_string()));
                    }
                }
            }
        }
        None => {
            put(&mut e, "activity", Node::str("syslog.message"));
            put(&mut e, "actor", user(app_name.clone().unwrap_or_default()));
            put(&mut e, "status", Node::str("unknown"));
            if let Some(peer) = peer {
                put(&mut src, "ip", Node::string(peer.to_string()));
            }
        }
    }
    let mut meta = Members::with_capacity(9);
    put(&mut meta, "parsed", Node::Bool(true));
    put(&mut meta, "truncated", Node::Bool(truncated));
    put(&mut meta, "facility", Node::uint(facility.into()));
    put(&mut meta, "severity", Node::str(SEVERITIES[severity as usize]));
    for (k, v) in [("hostname", hostname), ("app_name", app_name), ("procid", procid), ("msgid", msgid)] {
        if let Some(v) = v {
            put(&mut meta, k, Node::string(v));
        }
    }
    if !structured_data.is_empty() {
        put(&mut meta, "structured_data", Node::from_value(Value::Object(structured_data)));
    }
    put(&mut e, "time", Node::string(time.unwrap_or(now)));
    put_text(&mut e, "message", msg);
    put_text(&mut e, "raw_data", text);
    put(&mut e, "metadata", Node::obj([("syslog", Node::Obj(meta))]));
    put(&mut e, "src_endpoint", Node::Obj(src));
    if let Some(seq) = seq {
        put(&mut e, "seq", Node::uint(seq));
    }
    Node::Obj(e)
}

/// RFC 6587 framing on a stream, detected per connection from its first
/// byte: a digit means octet counting (`LEN SP MSG`), anything else
/// newline-terminated messages.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    octet_counting: Option<bool>,
}

/// A frame, or a framing error that ends the connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// One message.
    Message(Vec<u8>),
    /// The stream is broken (bad length); the rest is kept as one
    /// unparsed message.
    Broken(Vec<u8>),
}

impl Framer {
    /// Adds received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.octet_counting.is_none()
            && let Some(&b) = data.first()
        {
            self.octet_counting = Some(b.is_ascii_digit());
        }
        self.buf.extend_from_slice(data);
    }

    /// What is left when the stream ends: a last message without its
    /// newline.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.buf.is_empty()).then(|| std::mem::take(&mut self.buf))
    }
}

impl Iterator for Framer {
    type Item = Frame;

    /// The next complete frame, if any (`None` until more bytes come).
    fn next(&mut self) -> Option<Frame> {
        if self.octet_counting? {
            let sp = self.buf.iter().take(8).position(|&b| b == b' ');
            let Some(sp) = sp else {
                if self.buf.len() >= 8 {
                    return Some(Frame::Broken(std::mem::take(&mut self.buf)));
                }
                return None;
            };
            let len: usize = match std::str::from_utf8(&self.buf[..sp]).ok().and_then(|s| s.parse().ok()) {
                Some(l) if l <= MAX_MESSAGE_BYTES => l,
                _ => return Some(Frame::Broken(std::mem::take(&mut self.buf))),
            };
            if self.buf.len() < sp + 1 + len {
                return None;
            }
            let msg = self.buf[sp + 1..sp + 1 + len].to_vec();
            self.buf.drain(..sp + 1 + len);
            Some(Frame::Message(msg))
        } else {
            match self.buf.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let mut msg: Vec<u8> = self.buf.drain(..=i).collect();
                    msg.pop();
                    if msg.last() == Some(&b'\r') {
                        msg.pop();
                    }
                    if msg.is_empty() { self.next() } else { Some(Frame::Message(msg)) }
                }
                None if self.buf.len() > MAX_MESSAGE_BYTES => Some(Frame::Message(std::mem::take(&mut self.buf))),
                None => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_795_000_000_000_000_000;

    #[test]
    fn rfc5424_with_structured_data() {
        let m = parse(
            r#"<38>1 2026-11-27T09:00:00.5Z web01 sshd 4242 ID47 [meta sequenceId="7"][x@1 a="q\"uote"] BOMhello"#,
            2026,
        )
        .unwrap();
        assert_eq!((m.facility, m.severity), (4, 6));
        assert_eq!(m.hostname.as_deref(), Some("web01"));
        assert_eq!(m.structured_data["meta"]["sequenceId"], "7");
        assert_eq!(m.structured_data["x@1"]["a"], "q\"uote");
        assert_eq!(m.time.as_deref(), Some("2026-11-27T09:00:00.500Z"));
        assert_eq!(m.msg, "BOMhello");
    }

    #[test]
    fn rfc3164() {
        let m = parse(
            "<86>Nov  7 09:05:26 bastion sshd[812]: Accepted publickey for alice from 10.1.2.3 port 52314 ssh2",
            2026,
        )
        .unwrap();
        assert_eq!(m.app_name.as_deref(), Some("sshd"));
        assert_eq!(m.procid.as_deref(), Some("812"));
        assert_eq!(m.time.as_deref(), Some("2026-11-07T09:05:26Z"));
    }

    #[test]
    fn auth_messages_become_access_events() {
        let cases = [
            (
                "<86>Nov 27 09:00:00 h sshd[1]: Accepted password for alice from 10.0.0.5 port 2222 ssh2",
                "user.login",
                "alice",
                "success",
            ),
            (
                "<86>Nov 27 09:00:00 h sshd[1]: Failed password for invalid user bob from 203.0.113.9 port 4444 ssh2",
                "user.login",
                "bob",
                "failure",
            ),
            (
                "<86>Nov 27 09:00:00 h sshd[1]: Failed password for carol from 203.0.113.9 port 4444 ssh2",
                "user.login",
                "carol",
                "failure",
            ),
            (
                "<86>Nov 27 09:00:00 h sudo: alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/ls",
                "user.sudo",
                "alice",
                "success",
            ),
            (
                "<86>Nov 27 09:00:00 h sudo: dave : 3 incorrect password attempts ; TTY=pts/1 ; PWD=/ ; USER=root ; COMMAND=/bin/sh",
                "user.sudo",
                "dave",
                "failure",
            ),
            ("<86>Nov 27 09:00:00 h su[9]: FAILED SU (to root) erin on pts/2", "user.su", "erin", "failure"),
            ("<86>Nov 27 09:00:00 h su[9]: (to root) erin on pts/2", "user.su", "erin", "success"),
            (
                "<86>Nov 27 09:00:00 h sshd[1]: pam_unix(sshd:session): session opened for user alice(uid=1000) by (uid=0)",
                "session.open",
                "alice",
                "success",
            ),
        ];
        for (raw, activity, user, status) in cases {
            let e = to_event(raw.as_bytes(), Some("127.0.0.1"), NOW);
            assert_eq!(
                (e["activity"].as_str(), e["actor"]["user"]["name"].as_str(), e["status"].as_str()),
                (Some(activity), Some(user), Some(status)),
                "{raw}"
            );
            assert!(custos_event::validate(e.clone()).is_ok(), "{e}");
        }
        let e = to_event(
            b"<86>Nov 27 09:00:00 h sshd[1]: Accepted password for alice from 10.0.0.5 port 2222 ssh2",
            None,
            NOW,
        );
        assert_eq!(
            (e["src_endpoint"]["ip"].as_str(), e["src_endpoint"]["port"].as_u64()),
            (Some("10.0.0.5"), Some(2222))
        );
    }

    #[test]
    fn garbage_is_kept_flagged_unparsed() {
        let e = to_event(b"not syslog at all", Some("127.0.0.1"), NOW);
        assert_eq!(e["activity"], "syslog.unparsed");
        assert_eq!(e["raw_data"], "not syslog at all");
        assert!(custos_event::validate(e).is_ok());
    }

    #[test]
    fn framing_is_detected() {
        let mut f = Framer::default();
        f.push(b"5 hello11 hello world");
        assert_eq!(f.next(), Some(Frame::Message(b"hello".to_vec())));
        assert_eq!(f.next(), Some(Frame::Message(b"hello world".to_vec())));
        assert_eq!(f.next(), None);
        let mut f = Framer::default();
        f.push(b"<1>a\r\n<2>b\n<3>c");
        assert_eq!(f.next(), Some(Frame::Message(b"<1>a".to_vec())));
        assert_eq!(f.next(), Some(Frame::Message(b"<2>b".to_vec())));
        assert_eq!(f.next(), None);
        assert_eq!(f.finish(), Some(b"<3>c".to_vec()));
        let mut f = Framer::default();
        f.push(b"99999999999 x");
        assert!(matches!(f.next(), Some(Frame::Broken(_))));
    }

    #[test]
    fn fuzz_crash_over_long_tag_is_kept_unparsed() {
        // Found by `cargo fuzz run syslog`: an RFC 3164 tag longer than an
        // actor name may be.
        let mut raw = b"<0>Dec 27 09:00:00 h ".to_vec();
        raw.extend(std::iter::repeat_n(b'x', 300));
        raw.extend_from_slice(b": hi");
        let e = to_event(&raw, Some("127.0.0.1"), NOW);
        assert!(custos_event::validate(e.clone()).is_ok());
        assert_eq!(e["activity"], "syslog.unparsed");
    }

    fn server() -> custos_event::ServerFields {
        custos_event::ServerFields {
            log: "l".into(),
            received_at: "2026-01-01T00:00:00Z".into(),
            submitter: "s".into(),
            via: "syslog".into(),
            address: None,
        }
    }

    #[test]
    fn structured_data_that_escapes_beyond_an_entry_is_kept_unparsed() {
        // 20,000 control characters in a parameter: 120 kB once escaped,
        // with a short message. The size check used to be skipped for
        // short messages, so sealing failed and took the batch with it.
        let mut raw = b"<13>1 2026-11-27T00:00:00Z h app - - [x@1 a=\"".to_vec();
        raw.extend(std::iter::repeat_n(1u8, 20_000));
        raw.extend_from_slice(b"\"] hi");
        let e = to_node(&raw, Some("127.0.0.1"), NOW);
        let sealed = custos_event::seal_event(&e, &server()).expect("fits a log entry");
        assert!(sealed.len() <= MAX_EVENT_JSON_BYTES + 200, "{}", sealed.len());
        assert_eq!(e.get("activity").and_then(Node::as_str), Some("syslog.unparsed"));
    }

    #[test]
    fn a_long_sudo_command_is_cut_not_unparsed() {
        // 3,900 control characters after COMMAND=: the message, its raw
        // text and the detail each hold them, 70 kB once escaped.
        let mut raw =
            b"<86>Nov 27 09:00:00 h sudo: alice : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/echo ".to_vec();
        raw.extend(std::iter::repeat_n(1u8, 3_900));
        let e = to_node(&raw, Some("127.0.0.1"), NOW);
        assert!(custos_event::seal_event(&e, &server()).is_ok());
        let mut raw = b"<86>Nov 27 09:00:00 h sudo: alice : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=".to_vec();
        raw.extend(std::iter::repeat_n(b'x', 6_000));
        let e = to_node(&raw, Some("127.0.0.1"), NOW);
        assert_eq!(e.get("activity").and_then(Node::as_str), Some("user.sudo"));
        assert_eq!(e.get("status_detail").and_then(Node::as_str).map(str::len), Some(MAX_DETAIL_BYTES));
    }

    #[test]
    fn huge_messages_still_fit_a_log_entry() {
        let mut raw = b"<13>Nov 27 09:00:00 h app: ".to_vec();
        raw.extend(std::iter::repeat_n(b'\\', 60_000));
        let e = custos_event::validate(to_event(&raw, None, NOW)).unwrap();
        assert!(custos_event::seal(e, &server()).is_ok());
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let e = to_event(&b, Some("::1"), NOW);
            prop_assert!(custos_event::validate(e).is_ok());
            let mut f = Framer::default();
            f.push(&b);
            while f.next().is_some() {}
        }

        #[test]
        fn structured_text_never_panics(s in "<[0-9]{1,3}>1 [ -~]{0,200}") {
            let _ = to_event(s.as_bytes(), None, NOW);
        }
    }
}
