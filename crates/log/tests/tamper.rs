//! Tampering with stored files is caught by the offline verifier and by
//! open, naming the first bad entry, stored hash or checkpoint.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use custos_log::sim::SimStorage;
use custos_tlog::hash::leaf_hash;

type Image = BTreeMap<String, Vec<u8>>;

/// The first (and, for these small logs, only) entries segment.
const SEG0: &str = "entries.00000000000000000000";

/// A log of 600 entries with checkpoints at 300 and 600, and the byte
/// offset of each entry's record.
fn build() -> (Image, Vec<usize>) {
    let storage = Arc::new(SimStorage::new(1));
    let log = open(storage.clone());
    let mut rng = Rng(99);
    let all: Vec<Vec<u8>> = (0..600).map(|i| entry(&format!("entry-{i}"), &mut rng)).collect();
    log.append_blocking(&all[..300]).unwrap();
    log.sign_checkpoint().unwrap();
    log.append_blocking(&all[300..]).unwrap();
    log.sign_checkpoint().unwrap();
    drop(log);
    let mut offsets = Vec::new();
    let mut pos = 16;
    for e in &all {
        offsets.push(pos);
        pos += 8 + e.len();
    }
    (storage.crash_image(), offsets)
}

fn check(image: Image) -> (String, String) {
    let storage = Arc::new(SimStorage::from_image(image, 0));
    let verify_err = verify(&*storage).expect_err("verify must fail");
    let open_err = custos_log::Log::open(storage, custos_log::LogConfig::new(ORIGIN), signer())
        .err()
        .expect("open must fail")
        .to_string();
    (verify_err, open_err)
}

fn record(img: &Image, offsets: &[usize], i: usize) -> Vec<u8> {
    let e = &img[SEG0];
    let end = offsets.get(i + 1).copied().unwrap_or(e.len());
    e[offsets[i]..end].to_vec()
}

/// Rewrites record `i`'s payload with a valid checksum, as an attacker who
/// knows the format would.
fn forge(img: &mut Image, offsets: &[usize], i: usize) {
    let mut rec = record(img, offsets, i);
    rec[8] ^= 1;
    let len = (rec.len() as u32 - 8).to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len), &rec[8..]);
    rec[4..8].copy_from_slice(&crc.to_le_bytes());
    img.get_mut(SEG0).unwrap()[offsets[i]..offsets[i] + rec.len()].copy_from_slice(&rec);
}

#[test]
fn untouched_log_verifies() {
    let (img, _) = build();
    let r = verify(&SimStorage::from_image(img, 0)).unwrap();
    assert_eq!((r.entries, r.checkpoints, r.unsigned_entries, r.hash_tiles), (600, 2, 0, 3));
}

#[test]
fn entries_file_ends_in_zeroed_space_that_reopen_keeps_and_verify_accepts() {
    let (img, offsets) = build();
    let e = &img[SEG0];
    let len = u32::from_le_bytes(e[offsets[599]..offsets[599] + 4].try_into().unwrap()) as usize;
    let end = offsets[599] + 8 + len;
    // The writer leaves zeroed space after the records, ending on a 4 KiB
    // boundary and never more than it writes at once.
    assert!(e.len() > end && (e.len() - end) as u64 <= custos_log::ENTRIES_PREALLOCATE_BYTES + 4096);
    assert_eq!(e.len() % 4096, 0);
    assert!(e[end..].iter().all(|&b| b == 0));
    let storage = Arc::new(SimStorage::from_image(img, 0));
    assert_eq!(verify(&*storage).unwrap().entries, 600);
    let log = open(storage.clone());
    assert_eq!(log.size(), 600);
    log.append_blocking(&[b"after reopen".to_vec()]).unwrap();
    log.sign_checkpoint().unwrap();
    drop(log);
    // The new entry went where the zeros began, not after them.
    let e = storage.contents(SEG0).unwrap();
    assert_eq!(&e[end + 8..end + 8 + 12], b"after reopen");
    assert_eq!(verify(&*storage).unwrap().entries, 601);
}

#[test]
fn zeroed_last_entries_are_caught_by_the_checkpoint() {
    // Zeros where the last entries were look like zeroed space, so it is
    // the stored hashes and the checkpoint that name them as removed.
    let (mut img, offsets) = build();
    let e = img.get_mut(SEG0).unwrap();
    for b in &mut e[offsets[550]..] {
        *b = 0;
    }
    let (v, o) = check(img);
    assert!(v.contains("entry 550") && v.contains("removed"), "{v}");
    assert!(o.contains("checkpoint 1") && o.contains("entries 550.."), "{o}");
}

#[test]
fn zeroed_entries_before_others_name_the_first() {
    let (mut img, offsets) = build();
    let e = img.get_mut(SEG0).unwrap();
    for b in &mut e[offsets[40]..offsets[45]] {
        *b = 0;
    }
    let (v, o) = check(img);
    assert!(v.starts_with("entry 40 at byte") && v.contains("checksum"), "{v}");
    assert!(o.contains("entry 40"), "{o}");
}

#[test]
fn flipped_byte_names_the_entry() {
    let (mut img, offsets) = build();
    img.get_mut(SEG0).unwrap()[offsets[123] + 20] ^= 0x40;
    let (v, o) = check(img);
    assert!(v.starts_with("entry 123 at byte") && v.contains("checksum"), "{v}");
    assert!(o.contains("entry 123"), "{o}");
}

#[test]
fn forged_entry_with_valid_checksum_names_the_entry() {
    let (mut img, offsets) = build();
    forge(&mut img, &offsets, 456);
    let (v, o) = check(img);
    assert!(v.contains("stored hash of entry 456") && v.contains("tile 0/1"), "{v}");
    assert!(o.contains("entry 456"), "{o}");
}

#[test]
fn forged_entry_and_hash_are_caught_by_the_checkpoint() {
    let (mut img, offsets) = build();
    forge(&mut img, &offsets, 200);
    let rec = record(&img, &offsets, 200);
    let h = leaf_hash(&rec[8..]);
    img.get_mut("hashes").unwrap()[200 * 32..201 * 32].copy_from_slice(&h.0);
    let (v, o) = check(img);
    assert!(v.contains("checkpoint 0") && v.contains("entries 0..300"), "{v}");
    assert!(o.contains("checkpoint 0") && o.contains("0..300"), "{o}");
}

#[test]
fn reordered_entries_name_the_first_moved_one() {
    let (mut img, offsets) = build();
    let (a, b) = (record(&img, &offsets, 10), record(&img, &offsets, 11));
    let mut swapped = b.clone();
    swapped.extend_from_slice(&a);
    img.get_mut(SEG0).unwrap()[offsets[10]..offsets[10] + swapped.len()].copy_from_slice(&swapped);
    let (v, o) = check(img);
    assert!(v.contains("stored hash of entry 10 "), "{v}");
    assert!(o.contains("entry 10 "), "{o}");
}

#[test]
fn deleted_entry_names_where_it_was() {
    let (mut img, offsets) = build();
    let e = img.get_mut(SEG0).unwrap();
    e.drain(offsets[77]..offsets[78]);
    let (v, o) = check(img);
    assert!(v.contains("stored hash of entry 77 "), "{v}");
    assert!(o.contains("entry 77 "), "{o}");
}

#[test]
fn truncated_log_names_the_missing_entries() {
    let (mut img, offsets) = build();
    img.get_mut(SEG0).unwrap().truncate(offsets[500]);
    img.get_mut("hashes").unwrap().truncate(500 * 32);
    let (v, o) = check(img);
    assert!(v.contains("checkpoint 1") && v.contains("entries 500.. were removed"), "{v}");
    assert!(o.contains("checkpoint 1") && o.contains("entries 500.."), "{o}");
}

#[test]
fn truncation_mid_record_names_the_entry() {
    let (mut img, offsets) = build();
    img.get_mut(SEG0).unwrap().truncate(offsets[321] + 5);
    let (v, o) = check(img);
    assert!(v.starts_with("entry 321 at byte"), "{v}");
    assert!(o.contains("entry 321"), "{o}");
}

#[test]
fn altered_checkpoint_is_caught() {
    let (mut img, _) = build();
    let cps = img.get_mut("checkpoints").unwrap();
    let pos = cps.windows(5).position(|w| w == b"\n300\n").unwrap();
    cps[pos + 1] = b'2'; // 300 -> 200, checksum now wrong
    let (v, o) = check(img);
    assert!(v.contains("checkpoint 0"), "{v}");
    assert!(o.contains("checkpoints: entry 0"), "{o}");
}

#[test]
fn flipped_stored_hash_names_the_tile() {
    let (mut img, _) = build();
    img.get_mut("hashes").unwrap()[300 * 32 + 5] ^= 1;
    let (v, o) = check(img);
    assert!(v.contains("hash tile 0/1: stored hash of entry 300"), "{v}");
    assert!(o.contains("entry 300"), "{o}");
}

/// A checkpoint torn while being written, its length field included (the
/// disk kept zeros from its second byte on), is cut at open: it was never
/// published. The checkpoints before it stay.
#[test]
fn a_checkpoint_torn_in_its_length_is_cut() {
    let (mut img, _) = build();
    let cps = img.get_mut("checkpoints").unwrap();
    let whole = cps.len();
    let mut torn = cps[16..].to_vec(); // a copy of record 0 stands for a third one
    torn.truncate(200);
    for b in &mut torn[1..] {
        *b = 0;
    }
    cps.extend_from_slice(&torn);
    let storage = Arc::new(SimStorage::from_image(img, 0));
    let log = open(storage.clone());
    assert_eq!(log.checkpoint_count(), 2);
    drop(log);
    assert_eq!(storage.contents("checkpoints").unwrap().len(), whole);
    assert_eq!(verify(&*storage).unwrap().checkpoints, 2);
}

/// The hashes file is a cache written after the entries: a crash or a full
/// disk can leave it short. The verifier recomputes the missing hashes,
/// says how many there were, and still checks those entries against the
/// checkpoints.
#[test]
fn a_short_hashes_file_is_not_tampering_but_its_entries_are_still_checked() {
    let (mut img, offsets) = build();
    img.get_mut("hashes").unwrap().truncate(450 * 32);
    let storage = Arc::new(SimStorage::from_image(img.clone(), 0));
    let r = verify(&*storage).unwrap();
    assert_eq!((r.entries, r.checkpoints, r.hashes_missing), (600, 2, 150));
    // Open rebuilds the file; then nothing is missing.
    drop(custos_log::Log::open(storage.clone(), custos_log::LogConfig::new(ORIGIN), signer()).unwrap());
    assert_eq!(verify(&*storage).unwrap().hashes_missing, 0);
    // An entry altered where no stored hash covers it is still caught.
    forge(&mut img, &offsets, 500);
    let storage = Arc::new(SimStorage::from_image(img, 0));
    let v = verify(&*storage).unwrap_err();
    assert!(v.contains("checkpoint 1") && v.contains("entries 300..600"), "{v}");
}
