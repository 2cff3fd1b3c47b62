//! Sequential reading of record files and of the stored hashes, shared by
//! recovery at open and by the offline verifier.

use std::io;

use custos_tlog::hash::{HASH_SIZE, Hash};

use crate::format::{self, Decoded, HEADER_SIZE_BYTES};
use crate::storage::Storage;

/// Bytes read per call while scanning.
const SCAN_CHUNK_BYTES: usize = 4 << 20;
/// Hashes read per call while streaming the hashes file.
const HASH_CHUNK: u64 = 64 * 1024;

/// How a scan ended.
#[derive(Debug, PartialEq, Eq)]
pub enum ScanEnd {
    /// Every byte up to the end of the file is a valid record.
    Clean {
        /// The file length.
        end: u64,
    },
    /// The record at `offset` is damaged or torn; `file_len - offset` bytes
    /// from there on are not valid records.
    Damaged {
        /// Offset of the first bad record.
        offset: u64,
        /// The file length.
        file_len: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Calls `each(offset, payload)` for every valid record of `file` after its
/// header, in order, and says how the file ends. `progress(bytes)` is
/// called after each chunk with the bytes scanned so far.
pub fn scan_records<E: From<io::Error>>(
    s: &dyn Storage,
    file: &str,
    file_len: u64,
    each: impl FnMut(u64, &[u8]) -> Result<(), E>,
    progress: impl FnMut(u64),
) -> Result<ScanEnd, E> {
    scan_records_max(s, file, file_len, format::MAX_RECORD_PAYLOAD_BYTES, each, progress)
}

/// [`scan_records`] of a file whose record payloads may be up to `max`
/// bytes.
pub fn scan_records_max<E: From<io::Error>>(
    s: &dyn Storage,
    file: &str,
    file_len: u64,
    max: usize,
    mut each: impl FnMut(u64, &[u8]) -> Result<(), E>,
    mut progress: impl FnMut(u64),
) -> Result<ScanEnd, E> {
    let mut offset = HEADER_SIZE_BYTES;
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_start = offset; // file offset of buf[0]
    let mut pos = 0usize; // position in buf
    loop {
        match format::decode_record_max(&buf[pos..], max) {
            Decoded::Record(payload, used) => {
                each(offset, payload)?;
                offset += used as u64;
                pos += used;
            }
            Decoded::Bad(reason) => {
                return Ok(ScanEnd::Damaged { offset, file_len, reason });
            }
            Decoded::Incomplete => {
                let read_from = buf_start + buf.len() as u64;
                if read_from >= file_len {
                    if offset == file_len {
                        return Ok(ScanEnd::Clean { end: file_len });
                    }
                    return Ok(ScanEnd::Damaged { offset, file_len, reason: "record runs past the end of the file" });
                }
                // Keep the unread part and read the next chunk after it.
                buf.drain(..pos);
                buf_start = offset;
                pos = 0;
                let n = (file_len - read_from).min(SCAN_CHUNK_BYTES as u64) as usize;
                let old = buf.len();
                buf.resize(old + n, 0);
                s.read_at(file, read_from, &mut buf[old..])?;
                progress(read_from + n as u64);
            }
        }
    }
}

/// Whether every byte of `file` from `offset` to `file_len` is zero: the
/// zeroed space the log writes ahead at the end of an entries segment.
pub fn is_zero_tail(s: &dyn Storage, file: &str, offset: u64, file_len: u64) -> io::Result<bool> {
    let mut buf = vec![0u8; SCAN_CHUNK_BYTES.min(file_len.saturating_sub(offset) as usize)];
    let mut at = offset;
    while at < file_len {
        let n = (file_len - at).min(buf.len() as u64) as usize;
        s.read_at(file, at, &mut buf[..n])?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

/// Streams the stored leaf hashes of the `hashes` file in order.
pub struct HashStream<'a> {
    s: &'a dyn Storage,
    file: &'a str,
    count: u64,
    next: u64,
    chunk: Vec<Hash>,
    chunk_start: u64,
}

impl<'a> HashStream<'a> {
    /// Streams the first `count` hashes of `file`.
    pub fn new(s: &'a dyn Storage, file: &'a str, count: u64) -> HashStream<'a> {
        HashStream { s, file, count, next: 0, chunk: Vec::new(), chunk_start: 0 }
    }

    /// The stored hash at `index`, which must be the next one or later;
    /// `None` past the end.
    pub fn get(&mut self, index: u64) -> io::Result<Option<Hash>> {
        if index >= self.count {
            return Ok(None);
        }
        if index < self.chunk_start || index >= self.chunk_start + self.chunk.len() as u64 {
            let n = (self.count - index).min(HASH_CHUNK);
            let mut raw = vec![0u8; n as usize * HASH_SIZE];
            self.s.read_at(self.file, index * HASH_SIZE as u64, &mut raw)?;
            self.chunk = raw.chunks(HASH_SIZE).map(|c| Hash::from_slice(c).expect("32 bytes")).collect();
            self.chunk_start = index;
        }
        self.next = index + 1;
        Ok(Some(self.chunk[(index - self.chunk_start) as usize]))
    }
}
