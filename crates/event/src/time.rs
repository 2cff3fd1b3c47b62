//! RFC 3339 timestamps, to nanoseconds, as nanoseconds since the Unix
//! epoch in UTC.

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses an RFC 3339 date-time (`2026-11-27T09:05:26.123Z`,
/// `2026-11-27T10:05:26+01:00`) or a bare date (`2026-11-27`, taken as
/// midnight UTC) into nanoseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Result<i64, String> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Result<i64, String> {
        let part = b.get(from..from + len).ok_or_else(|| format!("{s:?} is too short for RFC 3339"))?;
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(format!("{s:?} is not an RFC 3339 timestamp (expected digits at byte {from})"));
        }
        Ok(std::str::from_utf8(part).expect("digits").parse().expect("digits"))
    };
    let expect = |at: usize, c: &[u8]| -> Result<(), String> {
        match b.get(at) {
            Some(x) if c.contains(x) => Ok(()),
            _ => Err(format!("{s:?} is not an RFC 3339 timestamp (expected {:?} at byte {at})", c[0] as char)),
        }
    };
    let (y, mo, d) = (
        num(0, 4)?,
        {
            expect(4, b"-")?;
            num(5, 2)?
        },
        {
            expect(7, b"-")?;
            num(8, 2)?
        },
    );
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
        return Err(format!("{s:?} has no such date"));
    }
    let days = days_from_civil(y, mo, d);
    if b.len() == 10 {
        return days.checked_mul(86_400 * 1_000_000_000).ok_or_else(|| format!("{s:?} is out of range"));
    }
    expect(10, b"Tt ")?;
    let (h, mi, sec) = (
        num(11, 2)?,
        {
            expect(13, b":")?;
            num(14, 2)?
        },
        {
            expect(16, b":")?;
            num(17, 2)?
        },
    );
    if h > 23 || mi > 59 || sec > 60 {
        return Err(format!("{s:?} has no such time of day"));
    }
    let mut pos = 19;
    let mut nanos = 0i64;
    if b.get(pos) == Some(&b'.') {
        pos += 1;
        let start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            if pos - start < 9 {
                nanos = nanos * 10 + i64::from(b[pos] - b'0');
            }
            pos += 1;
        }
        if pos == start {
            return Err(format!("{s:?} has an empty fraction of a second"));
        }
        for _ in (pos - start).min(9)..9 {
            nanos *= 10;
        }
    }
    let offset_secs = match b.get(pos) {
        Some(b'Z' | b'z') if pos + 1 == b.len() => 0,
        Some(c @ (b'+' | b'-')) if pos + 6 == b.len() => {
            expect(pos + 3, b":")?;
            let (oh, om) = (num(pos + 1, 2)?, num(pos + 4, 2)?);
            if oh > 23 || om > 59 {
                return Err(format!("{s:?} has a bad UTC offset"));
            }
            let o = oh * 3600 + om * 60;
            if *c == b'+' { o } else { -o }
        }
        _ => return Err(format!("{s:?} lacks a time zone (Z or ±hh:mm) at byte {pos}")),
    };
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec.min(59) - offset_secs;
    secs.checked_mul(1_000_000_000).and_then(|x| x.checked_add(nanos)).ok_or_else(|| format!("{s:?} is out of range"))
}

/// Formats nanoseconds since the epoch as RFC 3339 UTC, with as many
/// fraction digits as needed (none, 3, 6 or 9).
pub fn format_rfc3339(nanos: i64) -> String {
    // Written digit by digit: `format!` showed in ingest profiles.
    fn push(out: &mut Vec<u8>, v: i64, width: usize) {
        let mut buf = [b'0'; 20];
        let mut v = v.unsigned_abs();
        let mut i = buf.len();
        while v > 0 {
            i -= 1;
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        let digits = (buf.len() - i).max(width);
        out.extend_from_slice(&buf[buf.len() - digits..]);
    }
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let mut s = Vec::with_capacity(32);
    if y < 0 {
        s.push(b'-');
    }
    push(&mut s, y, 4);
    s.push(b'-');
    push(&mut s, m, 2);
    s.push(b'-');
    push(&mut s, d, 2);
    s.push(b'T');
    push(&mut s, rem / 3600, 2);
    s.push(b':');
    push(&mut s, rem % 3600 / 60, 2);
    s.push(b':');
    push(&mut s, rem % 60, 2);
    if frac != 0 {
        s.push(b'.');
        if frac % 1_000_000 == 0 {
            push(&mut s, frac / 1_000_000, 3);
        } else if frac % 1000 == 0 {
            push(&mut s, frac / 1000, 6);
        } else {
            push(&mut s, frac, 9);
        }
    }
    s.push(b'Z');
    String::from_utf8(s).expect("ASCII")
}

/// The current time in nanoseconds since the epoch.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339("2026-11-27T09:05:26.5Z").map(format_rfc3339).unwrap(), "2026-11-27T09:05:26.500Z");
        assert_eq!(parse_rfc3339("2026-11-27T10:05:26+01:00"), parse_rfc3339("2026-11-27T09:05:26Z"));
        assert_eq!(parse_rfc3339("2026-11-27"), parse_rfc3339("2026-11-27T00:00:00Z"));
        assert_eq!(format_rfc3339(1_700_000_000_123_456_789), "2023-11-14T22:13:20.123456789Z");
        assert_eq!(format_rfc3339(-1_000_000_000), "1969-12-31T23:59:59Z");
        for bad in ["", "2026-13-01T00:00:00Z", "2026-02-30", "2026-11-27T09:05:26", "2026-11-27T25:00:00Z", "x"] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn round_trips_every_day_for_centuries() {
        for days in (-100_000..100_000).step_by(97) {
            let n = days * 86_400_000_000_000i64 + 12_345_000_000;
            assert_eq!(parse_rfc3339(&format_rfc3339(n)), Ok(n));
        }
    }
}
