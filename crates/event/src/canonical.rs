//! RFC 8785 JSON Canonicalization Scheme: object members sorted by their
//! UTF-16 code units, no insignificant whitespace, minimal string escapes,
//! and numbers in the shortest form ECMAScript prints.

use serde_json::{Number, Value};

use crate::doc::{Node, Num};

/// Why a value has no canonical form.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CanonError {
    /// An integer beyond ±2^53 cannot be represented exactly as an
    /// IEEE 754 double, which JCS requires.
    #[error("number {number} at {path} is beyond ±2^53 and cannot be canonicalised; send it as a string")]
    UnsafeInteger {
        /// The number as given.
        number: String,
        /// Where it is.
        path: String,
    },
    /// An object names the same member twice, which RFC 8785 (and I-JSON)
    /// forbid: readers disagree on which value counts.
    #[error("member {key:?} appears more than once in the object at {path}")]
    DuplicateKey {
        /// The repeated key.
        key: String,
        /// Where the object is.
        path: String,
    },
}

const MAX_SAFE: u64 = 1 << 53;

/// The canonical bytes of a JSON value.
pub fn to_canonical(v: &Value) -> Result<String, CanonError> {
    let mut out = String::with_capacity(512);
    write_value(&mut out, v)?;
    Ok(out)
}

/// The canonical bytes of a JSON value, appended to `out` (left as it was
/// on error).
pub fn write_value(out: &mut String, v: &Value) -> Result<(), CanonError> {
    let mark = out.len();
    if write(out, v).is_err() {
        out.truncate(mark);
        // Rare: find where the unsafe number is, for the error message.
        let mut path = String::from("$");
        return Err(find_unsafe(v, &mut path).unwrap_or(CanonError::UnsafeInteger { number: "?".into(), path }));
    }
    Ok(())
}

/// An integer JCS cannot represent: beyond ±2^53.
fn is_unsafe(n: &Number) -> bool {
    n.as_u64().is_some_and(|u| u > MAX_SAFE) || n.as_i64().is_some_and(|i| i.unsigned_abs() > MAX_SAFE)
}

fn find_unsafe(v: &Value, path: &mut String) -> Option<CanonError> {
    match v {
        Value::Number(n) if is_unsafe(n) => {
            Some(CanonError::UnsafeInteger { number: n.to_string(), path: path.clone() })
        }
        Value::Array(a) => a.iter().enumerate().find_map(|(i, x)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let r = find_unsafe(x, path);
            path.truncate(len);
            r
        }),
        Value::Object(m) => m.iter().find_map(|(k, x)| {
            let len = path.len();
            path.push('.');
            path.push_str(k);
            let r = find_unsafe(x, path);
            path.truncate(len);
            r
        }),
        _ => None,
    }
}

/// The canonical bytes of a [`Node`], appended to `out`.
pub fn write_node(out: &mut String, v: &Node<'_>) -> Result<(), CanonError> {
    let mark = out.len();
    if node(out, v).is_err() {
        out.truncate(mark);
        let mut path = String::from("$");
        return Err(find_node_error(v, &mut path).unwrap_or(CanonError::UnsafeInteger { number: "?".into(), path }));
    }
    Ok(())
}

fn node(out: &mut String, v: &Node<'_>) -> Result<(), ()> {
    match v {
        Node::Null => out.push_str("null"),
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Num(n) => num(out, *n)?,
        Node::Str(s) => string(out, s),
        Node::Arr(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                node(out, x)?;
            }
            out.push(']');
        }
        Node::Obj(m) => {
            out.push('{');
            if m.is_sorted_by(|a, b| key_order(&a.0, &b.0).is_lt()) {
                for (i, (k, x)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    string(out, k);
                    out.push(':');
                    node(out, x)?;
                }
            } else {
                let mut entries: Vec<&(std::borrow::Cow<'_, str>, Node<'_>)> = m.iter().collect();
                entries.sort_by(|a, b| key_order(&a.0, &b.0));
                for (i, (k, x)) in entries.iter().enumerate() {
                    if i > 0 {
                        if entries[i - 1].0 == *k {
                            return Err(());
                        }
                        out.push(',');
                    }
                    string(out, k);
                    out.push(':');
                    node(out, x)?;
                }
            }
            out.push('}');
        }
    }
    Ok(())
}

fn num(out: &mut String, n: Num) -> Result<(), ()> {
    use std::fmt::Write;
    match n {
        Num::U(u) if u > MAX_SAFE => return Err(()),
        Num::I(i) if i.unsigned_abs() > MAX_SAFE => return Err(()),
        Num::U(u) => {
            let _ = write!(out, "{u}");
        }
        Num::I(i) => {
            let _ = write!(out, "{i}");
        }
        Num::F(f) => out.push_str(&es_number(f)),
    }
    Ok(())
}

fn find_node_error(v: &Node<'_>, path: &mut String) -> Option<CanonError> {
    match v {
        Node::Num(n) if num(&mut String::new(), *n).is_err() => Some(CanonError::UnsafeInteger {
            number: match n {
                Num::U(u) => u.to_string(),
                Num::I(i) => i.to_string(),
                Num::F(f) => f.to_string(),
            },
            path: path.clone(),
        }),
        Node::Arr(a) => a.iter().enumerate().find_map(|(i, x)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let r = find_node_error(x, path);
            path.truncate(len);
            r
        }),
        Node::Obj(m) => {
            let mut keys: Vec<&str> = m.iter().map(|(k, _)| k.as_ref()).collect();
            keys.sort_unstable();
            if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
                return Some(CanonError::DuplicateKey { key: w[0].to_string(), path: path.clone() });
            }
            m.iter().find_map(|(k, x)| {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                let r = find_node_error(x, path);
                path.truncate(len);
                r
            })
        }
        _ => None,
    }
}

/// Orders keys by UTF-16 code units. For the common all-BMP-or-ASCII case
/// this equals byte order; only keys with characters above U+FFFF or in
/// U+E000..U+FFFF can differ, so take the slow path only then.
fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    if a.is_ascii() || b.is_ascii() {
        return a.cmp(b);
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

fn write(out: &mut String, v: &Value) -> Result<(), ()> {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if is_unsafe(n) {
                return Err(());
            }
            number(out, n);
        }
        Value::String(s) => string(out, s),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(out, x)?;
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            // serde_json's map is usually already in byte order, which
            // matches UTF-16 order for these keys; check rather than assume,
            // since a feature such as preserve_order changes the map.
            if !entries.is_sorted_by(|a, b| key_order(a.0, b.0).is_le()) {
                entries.sort_by(|a, b| key_order(a.0, b.0));
            }
            out.push('{');
            for (i, (k, x)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                string(out, k);
                out.push(':');
                write(out, x)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

pub(crate) fn string(out: &mut String, s: &str) {
    out.push('"');
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Bytes `c` takes inside a JSON string as [`string`] writes it.
fn escaped_char_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\u{8}' | '\t' | '\n' | '\u{c}' | '\r' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// Bytes `s` takes inside a JSON string, escapes included.
pub fn escaped_len(s: &str) -> usize {
    s.chars().map(escaped_char_len).sum()
}

/// The longest prefix of `s` that takes at most `max` bytes inside a JSON
/// string, escapes included.
pub fn escaped_prefix(s: &str, max: usize) -> &str {
    let mut total = 0;
    for (i, c) in s.char_indices() {
        total += escaped_char_len(c);
        if total > max {
            return &s[..i];
        }
    }
    s
}

fn number(out: &mut String, n: &Number) {
    use std::fmt::Write;
    if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else {
        out.push_str(&es_number(n.as_f64().unwrap_or(0.0)));
    }
}

/// ECMAScript's Number::toString for a finite double.
pub fn es_number(f: f64) -> String {
    if f == 0.0 {
        return "0".into();
    }
    // `{:e}` gives the shortest round-trip digits: "-1.2345e-7".
    let sci = format!("{:e}", f.abs());
    let (mant, exp) = sci.split_once('e').expect("exponent");
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i32;
    let n = exp.parse::<i32>().expect("exponent") + 1; // value = 0.digits × 10^n
    let mut s = String::new();
    if f < 0.0 {
        s.push('-');
    }
    if k <= n && n <= 21 {
        s.push_str(&digits);
        s.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        s.push_str(&digits[..n as usize]);
        s.push('.');
        s.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        s.push_str("0.");
        s.extend(std::iter::repeat_n('0', (-n) as usize));
        s.push_str(&digits);
    } else {
        s.push_str(&digits[..1]);
        if k > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        s.push('e');
        s.push(if n > 0 { '+' } else { '-' });
        s.push_str(&(n - 1).abs().to_string());
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn escaped_prefixes_measure_what_strings_write() {
        let s = "a\"b\\c\u{1}d\né€\u{1f600}";
        let written = |s: &str| {
            let mut out = String::new();
            super::string(&mut out, s);
            out.len() - 2
        };
        assert_eq!(super::escaped_len(s), written(s));
        assert_eq!(super::escaped_prefix(s, written(s)), s);
        for max in 0..written(s) {
            let p = super::escaped_prefix(s, max);
            assert!(written(p) <= max, "{p:?} within {max}");
            let next = s[p.len()..].chars().next().unwrap();
            assert!(written(&s[..p.len() + next.len_utf8()]) > max, "{p:?} is the longest within {max}");
        }
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn rfc8785_examples() {
        // Key order by UTF-16 code units, from RFC 8785 §3.2.3.
        let v: Value = serde_json::from_str(
            r#"{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}"#,
        )
        .unwrap();
        let c = to_canonical(&v).unwrap();
        let keys: Vec<&str> = ["\r", "1", "\u{80}", "\u{f6}", "\u{20ac}", "\u{1f600}", "\u{fb33}"].to_vec();
        let mut pos = 0;
        for k in keys {
            let p = c.find(&format!("\"{}\":", k.replace('\r', "\\r"))).unwrap();
            assert!(p >= pos, "{k:?} out of order in {c}");
            pos = p;
        }
        assert_eq!(
            to_canonical(&json!({"b": [1, "x\n", null, true], "a": {}})).unwrap(),
            r#"{"a":{},"b":[1,"x\n",null,true]}"#
        );
    }

    #[test]
    fn numbers_print_like_ecmascript() {
        for (f, s) in [
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (0.000001, "0.000001"),
            (1e-7, "1e-7"),
            (123.456, "123.456"),
            (-0.5, "-0.5"),
            (4.35, "4.35"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
        ] {
            assert_eq!(es_number(f), s);
        }
        assert_eq!(to_canonical(&json!(9007199254740992u64)).unwrap(), "9007199254740992");
        assert!(to_canonical(&json!({"x": [9007199254740993u64]})).unwrap_err().to_string().contains("$.x[0]"));
    }

    #[test]
    fn nodes_encode_like_values() {
        for s in [
            r#"{"b":[1,"x\n",null,true,-3,2.50,1e21],"a":{},"\u20ac":1,"\r":2,"\ud83d\ude00":3,"\ufb33":4}"#,
            r#"[{"z":{"y":1,"x":[]}},"\u0001\u00e9"]"#,
        ] {
            let n = crate::doc::parse(s.as_bytes()).unwrap();
            let mut out = String::new();
            write_node(&mut out, &n).unwrap();
            assert_eq!(out, to_canonical(&serde_json::from_str(s).unwrap()).unwrap(), "{s}");
        }
        let mut out = String::from("kept");
        let e = write_node(&mut out, &crate::doc::parse(br#"{"a":{"k":1,"j":2,"k":3}}"#).unwrap()).unwrap_err();
        assert_eq!(e, CanonError::DuplicateKey { key: "k".into(), path: "$.a".into() });
        assert_eq!(out, "kept");
        let e = write_node(&mut out, &crate::doc::parse(br#"{"a":[1,-9007199254740993]}"#).unwrap()).unwrap_err();
        assert!(e.to_string().contains("$.a[1]"), "{e}");
    }

    #[test]
    fn control_characters_are_escaped_minimally() {
        assert_eq!(to_canonical(&json!("\u{1}é\u{7f}/")).unwrap(), "\"\\u0001é\u{7f}/\"");
    }
}
