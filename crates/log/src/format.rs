//! The on-disk record format, as pure functions. `docs/format.md` is the
//! specification; this file mirrors it.
//!
//! A file starts with a 16-byte header: an 8-byte magic, a little-endian
//! u32 format version and 4 zero bytes. Then come records:
//!
//! ```text
//! offset 0: u32 LE  payload length (0 ..= MAX_RECORD_PAYLOAD_BYTES)
//! offset 4: u32 LE  CRC32C over bytes 0..4 and the payload
//! offset 8: payload
//! ```

/// Size of the file header.
pub const HEADER_SIZE_BYTES: u64 = 16;
/// Size of a record header.
pub const RECORD_HEADER_SIZE_BYTES: usize = 8;
/// The format version written by this code.
pub const FORMAT_VERSION: u32 = 1;
/// Magic of the entries file.
pub const ENTRIES_MAGIC: [u8; 8] = *b"CUSTOSEN";
/// Magic of the checkpoints file.
pub const CHECKPOINTS_MAGIC: [u8; 8] = *b"CUSTOSCP";
/// A record payload is at most this large. Entries are limited further by
/// the u16 length prefix of C2SP entry bundles.
pub const MAX_RECORD_PAYLOAD_BYTES: usize = 1 << 20;

/// The 16-byte header of a file with the given magic.
pub fn header(magic: [u8; 8]) -> [u8; HEADER_SIZE_BYTES as usize] {
    let mut h = [0u8; HEADER_SIZE_BYTES as usize];
    h[..8].copy_from_slice(&magic);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h
}

/// Checks a file header. Returns a description of what is wrong.
pub fn check_header(bytes: &[u8], magic: [u8; 8]) -> Result<(), String> {
    if bytes.len() < HEADER_SIZE_BYTES as usize {
        return Err(format!("header is {} bytes, expected {HEADER_SIZE_BYTES}", bytes.len()));
    }
    if bytes[..8] != magic {
        return Err(format!(
            "bad magic {:?}, expected {:?}",
            String::from_utf8_lossy(&bytes[..8]),
            String::from_utf8_lossy(&magic)
        ));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(format!("format version {version}, this build reads {FORMAT_VERSION}"));
    }
    Ok(())
}

fn crc(len_bytes: &[u8; 4], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(len_bytes), payload)
}

/// Appends one record to `out`. The caller has checked the payload size.
pub fn encode_record(out: &mut Vec<u8>, payload: &[u8]) {
    assert!(payload.len() <= MAX_RECORD_PAYLOAD_BYTES, "record payload over the limit");
    let len = (payload.len() as u32).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc(&len, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// What is at a position in a record stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole, valid record and the number of bytes it occupies.
    Record(&'a [u8], usize),
    /// The bytes end before the record does: read more, or it is torn.
    Incomplete,
    /// The record is invalid.
    Bad(&'static str),
}

/// Decodes the record at the start of `bytes`.
pub fn decode_record(bytes: &[u8]) -> Decoded<'_> {
    if bytes.len() < RECORD_HEADER_SIZE_BYTES {
        return Decoded::Incomplete;
    }
    let len_bytes: [u8; 4] = bytes[..4].try_into().expect("4 bytes");
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > MAX_RECORD_PAYLOAD_BYTES {
        return Decoded::Bad("length is over the record limit");
    }
    let total = RECORD_HEADER_SIZE_BYTES + len;
    if bytes.len() < total {
        return Decoded::Incomplete;
    }
    let want = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    let payload = &bytes[RECORD_HEADER_SIZE_BYTES..total];
    if crc(&len_bytes, payload) != want {
        return Decoded::Bad("checksum mismatch");
    }
    Decoded::Record(payload, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_detect_damage() {
        let mut buf = Vec::new();
        encode_record(&mut buf, b"hello");
        encode_record(&mut buf, b"");
        assert_eq!(decode_record(&buf), Decoded::Record(b"hello", 13));
        assert_eq!(decode_record(&buf[13..]), Decoded::Record(b"", 8));
        assert_eq!(decode_record(&buf[..12]), Decoded::Incomplete);
        for i in 0..13 {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            assert!(!matches!(decode_record(&bad), Decoded::Record(b"hello", 13)), "flip at byte {i}");
        }
    }

    #[test]
    fn headers_are_checked() {
        let h = header(ENTRIES_MAGIC);
        assert!(check_header(&h, ENTRIES_MAGIC).is_ok());
        assert!(check_header(&h, CHECKPOINTS_MAGIC).unwrap_err().contains("bad magic"));
        let mut v2 = h;
        v2[8] = 2;
        assert!(check_header(&v2, ENTRIES_MAGIC).unwrap_err().contains("version 2"));
        assert!(check_header(&h[..3], ENTRIES_MAGIC).is_err());
    }
}
