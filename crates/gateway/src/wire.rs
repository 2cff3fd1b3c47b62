//! The PostgreSQL frontend/backend protocol 3.0: framing, the few
//! messages the gateway reads, and the ones it writes.
//!
//! Pure: byte slices in, values or bytes out. Every length is checked
//! before it is used, so hostile input gives a [`WireError`], never a
//! panic (the `pg_wire` fuzz target holds this).

use std::fmt;

/// A startup packet is at most this long; PostgreSQL itself refuses
/// longer ones (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_BYTES: usize = 10_000;
/// The largest message the gateway reads whole (a query, a Parse, a Bind,
/// an error). PostgreSQL's own limit for a query string is 1 GiB; 64 MiB
/// bounds the gateway's memory per connection while leaving room for bulk
/// statements. Larger messages are refused and the session closed.
pub const MAX_INSPECTED_MESSAGE_BYTES: usize = 64 << 20;
/// A message the gateway only streams through (DataRow, CopyData) may be
/// as large as PostgreSQL allows.
pub const MAX_STREAMED_MESSAGE_BYTES: usize = 1 << 30;

/// The protocol version 3.0 as sent in a startup packet.
pub const PROTOCOL_3_0: i32 = 196_608;
const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;

/// Why bytes are not a valid protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WireError {}

fn err<T>(msg: impl Into<String>) -> Result<T, WireError> {
    Err(WireError(msg.into()))
}

/// The first packet of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    /// The client asks for TLS.
    Ssl,
    /// The client asks for GSSAPI encryption, which the gateway refuses.
    GssEnc,
    /// Cancel the query running on the session with this key.
    Cancel { pid: i32, secret: Vec<u8> },
    /// A session starts with these parameters (`user`, `database`, …).
    Start { version: i32, params: Vec<(String, String)> },
}

/// Parses a startup packet from the front of `buf`. Returns `None` while
/// it is incomplete, else the packet and its length.
pub fn parse_startup(buf: &[u8]) -> Result<Option<(Startup, usize)>, WireError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = be_i32(&buf[..4]);
    if len < 8 || len as usize > MAX_STARTUP_BYTES {
        return err(format!("startup packet length {len} is outside 8..={MAX_STARTUP_BYTES}"));
    }
    let len = len as usize;
    if buf.len() < len {
        return Ok(None);
    }
    let code = be_i32(&buf[4..8]);
    let body = &buf[8..len];
    let packet = match code {
        SSL_REQUEST => Startup::Ssl,
        GSSENC_REQUEST => Startup::GssEnc,
        CANCEL_REQUEST => {
            // Protocol 3.2 allows a longer secret key; 3.0 has four bytes.
            if body.len() < 8 || body.len() > 260 {
                return err("cancel request key has the wrong length");
            }
            Startup::Cancel { pid: be_i32(&body[..4]), secret: body[4..].to_vec() }
        }
        v if v >> 16 == 3 => Startup::Start { version: v, params: parse_params(body)? },
        v => return err(format!("unsupported protocol version {}.{}", v >> 16, v & 0xffff)),
    };
    Ok(Some((packet, len)))
}

fn parse_params(body: &[u8]) -> Result<Vec<(String, String)>, WireError> {
    let mut r = Reader::new(body);
    let mut params = Vec::new();
    loop {
        let name = r.cstr()?;
        if name.is_empty() {
            break;
        }
        let value = r.cstr()?;
        params.push((name.to_string(), value.to_string()));
    }
    if !r.is_empty() {
        return err("startup packet has bytes after its terminator");
    }
    Ok(params)
}

/// The header of a typed message at the front of `buf`: its type byte and
/// its whole length including the type byte. `None` while fewer than five
/// bytes are there.
pub fn header(buf: &[u8], max_bytes: usize) -> Result<Option<(u8, usize)>, WireError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = be_i32(&buf[1..5]);
    if len < 4 || len as usize > max_bytes {
        return err(format!(
            "message '{}' has length {len}, outside 4..={max_bytes}",
            char::from(buf[0]).escape_default()
        ));
    }
    Ok(Some((buf[0], len as usize + 1)))
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Reads fields of one message body, checking every length.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads from a message body.
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// A NUL-terminated UTF-8 string.
    pub fn cstr(&mut self) -> Result<&'a str, WireError> {
        let Some(nul) = self.buf.iter().position(|&b| b == 0) else {
            return err("string is not NUL-terminated");
        };
        let s = std::str::from_utf8(&self.buf[..nul]).map_err(|e| WireError(format!("string is not UTF-8: {e}")))?;
        self.buf = &self.buf[nul + 1..];
        Ok(s)
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return err(format!("message ends {} bytes early", n - self.buf.len()));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// A big-endian 16-bit integer.
    pub fn i16(&mut self) -> Result<i16, WireError> {
        let b = self.bytes(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    /// A big-endian 32-bit integer.
    pub fn i32(&mut self) -> Result<i32, WireError> {
        Ok(be_i32(self.bytes(4)?))
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// A count (16-bit, non-negative).
    fn count(&mut self, what: &str) -> Result<usize, WireError> {
        let n = self.i16()?;
        if n < 0 {
            return err(format!("negative {what} count {n}"));
        }
        Ok(n as usize)
    }
}

/// An extended-protocol Parse message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parse<'a> {
    /// The prepared statement's name; empty for the unnamed one.
    pub name: &'a str,
    /// The statement text.
    pub sql: &'a str,
    /// The declared parameter type OIDs.
    pub param_types: Vec<u32>,
}

/// Parses the body of a Parse ('P') message.
pub fn parse_parse(body: &[u8]) -> Result<Parse<'_>, WireError> {
    let mut r = Reader::new(body);
    let name = r.cstr()?;
    let sql = r.cstr()?;
    let n = r.count("parameter type")?;
    let mut param_types = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        param_types.push(r.i32()? as u32);
    }
    Ok(Parse { name, sql, param_types })
}

/// An extended-protocol Bind message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind<'a> {
    /// The portal created; empty for the unnamed one.
    pub portal: &'a str,
    /// The prepared statement bound.
    pub statement: &'a str,
    /// Each parameter's value (`None` is SQL NULL) and whether it is binary.
    pub params: Vec<(Option<&'a [u8]>, bool)>,
}

/// Parses the body of a Bind ('B') message.
pub fn parse_bind(body: &[u8]) -> Result<Bind<'_>, WireError> {
    let mut r = Reader::new(body);
    let portal = r.cstr()?;
    let statement = r.cstr()?;
    let nformats = r.count("parameter format")?;
    let mut formats = Vec::with_capacity(nformats.min(1024));
    for _ in 0..nformats {
        formats.push(r.i16()? == 1);
    }
    let n = r.count("parameter")?;
    if nformats > 1 && nformats != n {
        return err(format!("{nformats} parameter formats for {n} parameters"));
    }
    let mut params = Vec::with_capacity(n.min(1024));
    for i in 0..n {
        let binary = match nformats {
            0 => false,
            1 => formats[0],
            _ => formats[i],
        };
        let len = r.i32()?;
        let value = match len {
            -1 => None,
            l if l < 0 => return err(format!("parameter {} has length {l}", i + 1)),
            l => Some(r.bytes(l as usize)?),
        };
        params.push((value, binary));
    }
    // Result-column formats follow; the gateway has no use for them.
    let nresults = r.count("result format")?;
    r.bytes(nresults * 2)?;
    Ok(Bind { portal, statement, params })
}

/// Parses the body of an Execute ('E') message: the portal and the row
/// limit (0 for all rows).
pub fn parse_execute(body: &[u8]) -> Result<(&str, i32), WireError> {
    let mut r = Reader::new(body);
    Ok((r.cstr()?, r.i32()?))
}

/// Parses the body of a Close ('C') or Describe ('D') message: 'S' for a
/// statement or 'P' for a portal, and its name.
pub fn parse_target(body: &[u8]) -> Result<(u8, &str), WireError> {
    let mut r = Reader::new(body);
    let kind = r.bytes(1)?[0];
    if kind != b'S' && kind != b'P' {
        return err(format!("target kind '{}' is neither 'S' nor 'P'", char::from(kind).escape_default()));
    }
    Ok((kind, r.cstr()?))
}

/// Parses the body of a Query ('Q') message.
pub fn parse_query(body: &[u8]) -> Result<&str, WireError> {
    Reader::new(body).cstr()
}

/// The fields of an ErrorResponse or NoticeResponse, by their type byte
/// (`C` SQLSTATE, `M` message, `S` severity, …).
pub fn parse_fields(body: &[u8]) -> Result<Vec<(u8, &str)>, WireError> {
    let mut r = Reader::new(body);
    let mut fields = Vec::new();
    loop {
        let kind = r.bytes(1)?[0];
        if kind == 0 {
            return Ok(fields);
        }
        fields.push((kind, r.cstr()?));
    }
}

/// One field of an error, or "".
pub fn field<'a>(fields: &[(u8, &'a str)], kind: u8) -> &'a str {
    fields.iter().find(|(k, _)| *k == kind).map_or("", |(_, v)| v)
}

/// Parses an Authentication ('R') message: its code and data.
pub fn parse_auth(body: &[u8]) -> Result<(i32, &[u8]), WireError> {
    let mut r = Reader::new(body);
    Ok((r.i32()?, r.rest()))
}

/// Parses a SASLInitialResponse ('p') body: the mechanism and the data.
pub fn parse_sasl_initial(body: &[u8]) -> Result<(&str, &[u8]), WireError> {
    let mut r = Reader::new(body);
    let mechanism = r.cstr()?;
    let len = r.i32()?;
    let data = if len < 0 { &[][..] } else { r.bytes(len as usize)? };
    Ok((mechanism, data))
}

/// Appends a typed message: the type byte, the length, then the body
/// written by `body`.
pub fn message(out: &mut Vec<u8>, tag: u8, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.push(tag);
    out.extend_from_slice(&[0; 4]);
    body(out);
    let len = (out.len() - start - 1) as i32;
    out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
}

/// Appends a NUL-terminated string.
pub fn put_cstr(out: &mut Vec<u8>, s: &str) {
    // A NUL inside would end the string early on the other side.
    out.extend(s.bytes().map(|b| if b == 0 { b'?' } else { b }));
    out.push(0);
}

/// Appends an ErrorResponse (or NoticeResponse with tag `N`).
pub fn error_response(out: &mut Vec<u8>, severity: &str, code: &str, text: &str, detail: Option<&str>) {
    message(out, b'E', |b| {
        for (kind, value) in [(b'S', severity), (b'V', severity), (b'C', code), (b'M', text)] {
            b.push(kind);
            put_cstr(b, value);
        }
        if let Some(d) = detail {
            b.push(b'D');
            put_cstr(b, d);
        }
        b.push(0);
    });
}

/// Appends an Authentication request with `code` and `data`.
pub fn auth_request(out: &mut Vec<u8>, code: i32, data: &[u8]) {
    message(out, b'R', |b| {
        b.extend_from_slice(&code.to_be_bytes());
        b.extend_from_slice(data);
    });
}

/// Appends BackendKeyData.
pub fn backend_key(out: &mut Vec<u8>, pid: i32, secret: &[u8]) {
    message(out, b'K', |b| {
        b.extend_from_slice(&pid.to_be_bytes());
        b.extend_from_slice(secret);
    });
}

/// Appends ReadyForQuery with a transaction status (`I`, `T` or `E`).
pub fn ready_for_query(out: &mut Vec<u8>, status: u8) {
    message(out, b'Z', |b| b.push(status));
}

/// Appends a Query.
pub fn query(out: &mut Vec<u8>, sql: &str) {
    message(out, b'Q', |b| put_cstr(b, sql));
}

/// Appends a Parse of the unnamed statement with no parameter types.
pub fn parse_message(out: &mut Vec<u8>, sql: &str) {
    message(out, b'P', |b| {
        put_cstr(b, "");
        put_cstr(b, sql);
        b.extend_from_slice(&0i16.to_be_bytes());
    });
}

/// Appends a startup packet (protocol 3.0) with its parameters.
pub fn startup_message(out: &mut Vec<u8>, params: &[(&str, &str)]) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
    for (k, v) in params {
        put_cstr(out, k);
        put_cstr(out, v);
    }
    out.push(0);
    let len = (out.len() - start) as i32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends an SSLRequest.
pub fn ssl_request(out: &mut Vec<u8>) {
    out.extend_from_slice(&8i32.to_be_bytes());
    out.extend_from_slice(&SSL_REQUEST.to_be_bytes());
}

/// Appends a CancelRequest.
pub fn cancel_request(out: &mut Vec<u8>, pid: i32, secret: &[u8]) {
    out.extend_from_slice(&(8 + secret.len() as i32 + 4).to_be_bytes());
    out.extend_from_slice(&CANCEL_REQUEST.to_be_bytes());
    out.extend_from_slice(&pid.to_be_bytes());
    out.extend_from_slice(secret);
}

/// Appends a SASLInitialResponse.
pub fn sasl_initial(out: &mut Vec<u8>, mechanism: &str, data: &[u8]) {
    message(out, b'p', |b| {
        put_cstr(b, mechanism);
        b.extend_from_slice(&(data.len() as i32).to_be_bytes());
        b.extend_from_slice(data);
    });
}

/// Appends a SASLResponse or PasswordMessage (both are `p`).
pub fn password_message(out: &mut Vec<u8>, data: &[u8]) {
    message(out, b'p', |b| b.extend_from_slice(data));
}

/// Appends a NegotiateProtocolVersion naming 3.0 as the newest supported.
pub fn negotiate_version(out: &mut Vec<u8>) {
    message(out, b'v', |b| {
        b.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_round_trip() {
        let mut b = Vec::new();
        startup_message(&mut b, &[("user", "alice"), ("database", "app")]);
        let (s, n) = parse_startup(&b).unwrap().unwrap();
        assert_eq!(n, b.len());
        assert_eq!(
            s,
            Startup::Start {
                version: PROTOCOL_3_0,
                params: vec![("user".into(), "alice".into()), ("database".into(), "app".into())]
            }
        );
        assert_eq!(parse_startup(&b[..b.len() - 1]).unwrap(), None);
        let mut c = Vec::new();
        cancel_request(&mut c, 7, &[1, 2, 3, 4]);
        assert_eq!(parse_startup(&c).unwrap().unwrap().0, Startup::Cancel { pid: 7, secret: vec![1, 2, 3, 4] });
    }

    #[test]
    fn bad_lengths_are_errors() {
        assert!(parse_startup(&[0, 0, 0, 3, 0, 0, 0, 0]).is_err());
        assert!(parse_startup(&[0x7f, 0, 0, 0]).is_err());
        assert!(header(&[b'Q', 0, 0, 0, 3], 100).is_err());
        assert!(header(&[b'Q', 0, 0, 1, 0], 100).unwrap_err().0.contains("outside 4..=100"));
        assert_eq!(header(&[b'Q', 0, 0, 0, 5], 100).unwrap(), Some((b'Q', 6)));
    }

    #[test]
    fn bind_with_params() {
        let mut body = Vec::new();
        put_cstr(&mut body, "p1");
        put_cstr(&mut body, "s1");
        body.extend_from_slice(&1i16.to_be_bytes());
        body.extend_from_slice(&0i16.to_be_bytes());
        body.extend_from_slice(&2i16.to_be_bytes());
        body.extend_from_slice(&2i32.to_be_bytes());
        body.extend_from_slice(b"42");
        body.extend_from_slice(&(-1i32).to_be_bytes());
        body.extend_from_slice(&0i16.to_be_bytes());
        let b = parse_bind(&body).unwrap();
        assert_eq!(b.portal, "p1");
        assert_eq!(b.statement, "s1");
        assert_eq!(b.params, vec![(Some(&b"42"[..]), false), (None, false)]);
        assert!(parse_bind(&body[..body.len() - 3]).is_err());
    }

    #[test]
    fn error_fields_round_trip() {
        let mut b = Vec::new();
        error_response(&mut b, "ERROR", "42501", "denied", Some("rule x"));
        let (tag, n) = header(&b, 1000).unwrap().unwrap();
        assert_eq!((tag, n), (b'E', b.len()));
        let f = parse_fields(&b[5..]).unwrap();
        assert_eq!(field(&f, b'C'), "42501");
        assert_eq!(field(&f, b'D'), "rule x");
    }
}
