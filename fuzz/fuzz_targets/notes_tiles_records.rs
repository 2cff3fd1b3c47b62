//! Outside input of the verifier side: signed notes, checkpoints, tile
//! paths, entry bundles, hash tiles and stored records.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = custos_log::format::decode_record(data);
    let _ = custos_tlog::tile::decode_bundle(data);
    let _ = custos_tlog::tile::decode_hash_tile(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = custos_tlog::tile::Tile::parse(s);
        let _ = custos_tlog::checkpoint::Checkpoint::parse(s);
        let _ = custos_tlog::note::NoteVerifier::parse(s);
        let _ = custos_tlog::note::NoteSigner::parse(s);
        let v = custos_tlog::note::NoteSigner::from_seed("fuzz", [1; 32]).unwrap().verifier();
        let _ = v.open(s);
    }
});
