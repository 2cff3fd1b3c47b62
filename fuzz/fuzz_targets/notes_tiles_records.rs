//! Outside input of the verifier side: signed notes, checkpoints, tile
//! paths, entry bundles, hash tiles, stored records, compressed bundle
//! records (zstd frames) and segment names.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = custos_log::format::decode_record(data);
    let _ = custos_log::format::decode_record_max(data, custos_log::format::MAX_BUNDLE_RECORD_BYTES);
    if let Ok(rec) = custos_log::format::parse_bundle_payload(data) {
        let _ = rec.entries();
    }
    let _ = custos_log::format::split_bundle(data);
    let _ = custos_tlog::tile::decode_bundle(data);
    let _ = custos_tlog::tile::decode_hash_tile(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = custos_tlog::tile::Tile::parse(s);
        let _ = custos_log::format::parse_segment_name(s);
        let _ = custos_tlog::checkpoint::Checkpoint::parse(s);
        let _ = custos_tlog::note::NoteVerifier::parse(s);
        let _ = custos_tlog::note::NoteSigner::parse(s);
        let v = custos_tlog::note::NoteSigner::from_seed("fuzz", [1; 32]).unwrap().verifier();
        let _ = v.open(s);
    }
});
