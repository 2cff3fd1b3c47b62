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
/// Magic of an entries segment.
pub const ENTRIES_MAGIC: [u8; 8] = *b"CUSTOSEN";
/// Magic of the checkpoints file.
pub const CHECKPOINTS_MAGIC: [u8; 8] = *b"CUSTOSCP";
/// Magic of the bundles file (compressed entry bundles).
pub const BUNDLES_MAGIC: [u8; 8] = *b"CUSTOSBU";
/// A record payload is at most this large. Entries are limited further by
/// the u16 length prefix of C2SP entry bundles.
pub const MAX_RECORD_PAYLOAD_BYTES: usize = 1 << 20;
/// Entries per entry bundle (C2SP tlog-tiles), and per compressed bundle
/// record.
pub const BUNDLE_ENTRIES: u64 = 256;
/// The largest uncompressed entry bundle: 256 entries of 65,535 bytes, each
/// with its 2-byte length.
pub const MAX_BUNDLE_BYTES: usize = 256 * (2 + 65_535);
/// A record of the bundles file is at most this large: the bundle number
/// and a zstd frame of a bundle that did not compress at all (zstd's bound
/// for [`MAX_BUNDLE_BYTES`] is below 17 MiB).
pub const MAX_BUNDLE_RECORD_BYTES: usize = 8 + (17 << 20);
/// zstd level of compressed bundles: level 1 compresses the server's events
/// about as well as level 3 (about 24 bytes per event, from about 380) at
/// twice the speed.
pub const BUNDLE_ZSTD_LEVEL: i32 = 1;
/// The legacy name of the single entries file of format 1 logs, renamed to
/// the first segment at open.
pub const LEGACY_ENTRIES_FILE: &str = "entries";
/// Segment files are named this prefix and the index of their first entry
/// in 20 decimal digits.
pub const SEGMENT_PREFIX: &str = "entries.";

/// The file name of the entries segment whose first entry is `first`.
pub fn segment_name(first: u64) -> String {
    format!("{SEGMENT_PREFIX}{first:020}")
}

/// The first entry of a segment file name, or `None` if `name` is not one.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(SEGMENT_PREFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Entries per zstd frame of a bundle record. A search hit decompresses
/// only its frame, a quarter of the bundle; 64 entries still compress well
/// (about 30 bytes per event, against 25 for a whole bundle in one frame).
pub const FRAME_ENTRIES: usize = 64;
/// zstd frames per bundle record.
pub const BUNDLE_FRAMES: usize = BUNDLE_ENTRIES as usize / FRAME_ENTRIES;
/// Bytes before the frames: the bundle number and the frame lengths.
const BUNDLE_PAYLOAD_HEADER_BYTES: usize = 8 + 4 * BUNDLE_FRAMES;

/// The payload of a bundles-file record: the bundle number (u64 LE), the
/// compressed length of each of the 4 frames (u32 LE each), then the
/// frames: frame `g` is a zstd frame of the C2SP entry-bundle encoding of
/// entries `64·g .. 64·g+64`. `entries` must be a full bundle.
pub fn encode_bundle_payload<E: AsRef<[u8]>>(bundle: u64, entries: &[E]) -> std::io::Result<Vec<u8>> {
    if entries.len() != BUNDLE_ENTRIES as usize {
        return Err(std::io::Error::other(format!(
            "a bundle record holds {BUNDLE_ENTRIES} entries, not {}",
            entries.len()
        )));
    }
    let mut out = vec![0u8; BUNDLE_PAYLOAD_HEADER_BYTES];
    out[..8].copy_from_slice(&bundle.to_le_bytes());
    for (g, group) in entries.chunks(FRAME_ENTRIES).enumerate() {
        let mut raw = Vec::with_capacity(group.iter().map(|e| 2 + e.as_ref().len()).sum());
        for e in group {
            let e = e.as_ref();
            let len = u16::try_from(e.len()).map_err(|_| std::io::Error::other("entry over 65535 bytes"))?;
            raw.extend_from_slice(&len.to_be_bytes());
            raw.extend_from_slice(e);
        }
        thread_local! {
            static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
                const { std::cell::RefCell::new(None) };
        }
        let frame = COMPRESSOR.with(|c| {
            let mut c = c.borrow_mut();
            if c.is_none() {
                *c = Some(zstd::bulk::Compressor::new(BUNDLE_ZSTD_LEVEL)?);
            }
            c.as_mut().expect("just made").compress(&raw)
        })?;
        out[8 + 4 * g..12 + 4 * g].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    Ok(out)
}

/// A bundles-file record payload, split into its frames.
#[derive(Debug)]
pub struct BundleRecord<'a> {
    /// The bundle number.
    pub number: u64,
    frames: [&'a [u8]; BUNDLE_FRAMES],
}

/// Splits a bundles-file record payload into its bundle number and frames.
pub fn parse_bundle_payload(payload: &[u8]) -> Result<BundleRecord<'_>, String> {
    if payload.len() < BUNDLE_PAYLOAD_HEADER_BYTES {
        return Err(format!("bundle record of {} bytes is shorter than its header", payload.len()));
    }
    let number = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
    let mut frames = [&payload[..0]; BUNDLE_FRAMES];
    let mut at = BUNDLE_PAYLOAD_HEADER_BYTES;
    for (g, frame) in frames.iter_mut().enumerate() {
        let len = u32::from_le_bytes(payload[8 + 4 * g..12 + 4 * g].try_into().expect("4 bytes")) as usize;
        let end = at.checked_add(len).filter(|&e| e <= payload.len()).ok_or_else(|| {
            format!("bundle {number}: frame {g} of {len} bytes runs past the record's {} bytes", payload.len())
        })?;
        *frame = &payload[at..end];
        at = end;
    }
    if at != payload.len() {
        return Err(format!("bundle {number}: {} bytes after the last frame", payload.len() - at));
    }
    Ok(BundleRecord { number, frames })
}

impl BundleRecord<'_> {
    /// The entries of frame `g` (entries `64·g .. 64·g+64` of the bundle).
    /// Decompression is bounded by 64 entries of 65,535 bytes.
    pub fn frame_entries(&self, g: usize) -> Result<Vec<Vec<u8>>, String> {
        // A decompression context costs more to set up than a frame costs
        // to decompress, so each thread keeps one.
        thread_local! {
            static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
                const { std::cell::RefCell::new(None) };
        }
        // The frame header states the size (the compressor writes it), so
        // the buffer is that big rather than the 4 MiB a frame may reach.
        let max = FRAME_ENTRIES * (2 + 65_535);
        let size = match zstd::zstd_safe::get_frame_content_size(self.frames[g]) {
            Ok(Some(n)) if n as usize <= max => n as usize,
            Ok(Some(n)) => return Err(format!("bundle {}: frame {g} claims {n} bytes, over {max}", self.number)),
            _ => max,
        };
        let mut raw = Vec::with_capacity(size);
        DECOMPRESSOR
            .with(|d| {
                let mut d = d.borrow_mut();
                if d.is_none() {
                    *d = Some(zstd::bulk::Decompressor::new()?);
                }
                d.as_mut().expect("just made").decompress_to_buffer(self.frames[g], &mut raw)
            })
            .map_err(|e| format!("bundle {}: frame {g} does not decompress: {e}", self.number))?;
        let entries = split_bundle(&raw).map_err(|e| format!("bundle {}: frame {g}: {e}", self.number))?;
        if entries.len() != FRAME_ENTRIES {
            return Err(format!(
                "bundle {}: frame {g} holds {} entries, not {FRAME_ENTRIES}",
                self.number,
                entries.len()
            ));
        }
        Ok(entries.into_iter().map(<[u8]>::to_vec).collect())
    }

    /// Every entry of the bundle, in order.
    pub fn entries(&self) -> Result<Vec<Vec<u8>>, String> {
        let mut out = Vec::with_capacity(BUNDLE_ENTRIES as usize);
        for g in 0..BUNDLE_FRAMES {
            out.extend(self.frame_entries(g)?);
        }
        Ok(out)
    }
}

/// Splits an uncompressed entry bundle into its entries.
pub fn split_bundle(raw: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < raw.len() {
        if pos + 2 > raw.len() {
            return Err(format!("entry {} is cut short at byte {pos} of the bundle", out.len()));
        }
        let len = u16::from_be_bytes([raw[pos], raw[pos + 1]]) as usize;
        if pos + 2 + len > raw.len() {
            return Err(format!("entry {} is cut short at byte {pos} of the bundle", out.len()));
        }
        out.push(&raw[pos + 2..pos + 2 + len]);
        pos += 2 + len;
    }
    Ok(out)
}

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

/// Appends one record to `out`. The caller has checked the payload size
/// (at most [`MAX_RECORD_PAYLOAD_BYTES`], or [`MAX_BUNDLE_RECORD_BYTES`] in
/// the bundles file).
pub fn encode_record(out: &mut Vec<u8>, payload: &[u8]) {
    assert!(payload.len() <= MAX_BUNDLE_RECORD_BYTES, "record payload over the limit");
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

/// Decodes the record at the start of `bytes`, whose payload is at most
/// [`MAX_RECORD_PAYLOAD_BYTES`].
pub fn decode_record(bytes: &[u8]) -> Decoded<'_> {
    decode_record_max(bytes, MAX_RECORD_PAYLOAD_BYTES)
}

/// Decodes the record at the start of `bytes`, whose payload is at most
/// `max` bytes.
pub fn decode_record_max(bytes: &[u8], max: usize) -> Decoded<'_> {
    if bytes.len() < RECORD_HEADER_SIZE_BYTES {
        return Decoded::Incomplete;
    }
    let len_bytes: [u8; 4] = bytes[..4].try_into().expect("4 bytes");
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > max {
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
    fn bundles_round_trip_and_names_parse() {
        let entries: Vec<Vec<u8>> = (0..256).map(|i| format!("{{\"n\":{i}}}").into_bytes()).collect();
        let payload = encode_bundle_payload(7, &entries).unwrap();
        let rec = parse_bundle_payload(&payload).unwrap();
        assert_eq!(rec.number, 7);
        assert_eq!(rec.entries().unwrap(), entries);
        assert_eq!(rec.frame_entries(2).unwrap(), entries[128..192]);
        assert!(parse_bundle_payload(&payload[..payload.len() - 1]).unwrap_err().contains("runs past"));
        assert!(parse_bundle_payload(&payload[..20]).is_err());
        let mut extra = payload.clone();
        extra.push(0);
        assert!(parse_bundle_payload(&extra).unwrap_err().contains("after the last frame"));
        assert!(encode_bundle_payload(7, &entries[..255]).is_err());
        assert!(split_bundle(&[0, 5, b'a']).unwrap_err().contains("entry 0"));
        assert_eq!(parse_segment_name(&segment_name(4096)), Some(4096));
        assert_eq!(parse_segment_name("entries.12"), None);
        assert_eq!(parse_segment_name("entries"), None);
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
