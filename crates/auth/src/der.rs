//! Just enough DER (X.690) to read the subject common name of an X.509
//! certificate presented by a client. Outside input: every length is
//! checked, nothing panics.

/// One TLV: its tag, its contents, and what follows it.
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, &x| (acc << 8) | x as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
/// 2.5.4.3, commonName.
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];

/// The subject common name of a DER certificate, if it has one.
pub fn subject_common_name(cert: &[u8]) -> Option<String> {
    let (tag, cert, _) = tlv(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = tlv(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    // Optional [0] version, then serial, signature, issuer, validity, subject.
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest)?.2;
    }
    for _ in 0..4 {
        rest = tlv(rest)?.2;
    }
    let (tag, subject, _) = tlv(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rdns = subject;
    while !rdns.is_empty() {
        let (tag, set, next) = tlv(rdns)?;
        rdns = next;
        if tag != SET {
            return None;
        }
        let mut atvs = set;
        while !atvs.is_empty() {
            let (tag, atv, next) = tlv(atvs)?;
            atvs = next;
            if tag != SEQUENCE {
                return None;
            }
            let (tag, oid, value) = tlv(atv)?;
            if tag == OID && oid == OID_CN {
                let (_, v, _) = tlv(value)?;
                return String::from_utf8(v.to_vec()).ok();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn never_panics_on_garbage(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = subject_common_name(&b);
        }
    }
}
