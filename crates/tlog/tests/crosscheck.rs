//! Cross-checks against independent implementations: `ct-merkle` for roots
//! and proofs, `tlog_tiles` (a port of Go's sumdb/tlog) for roots, proofs,
//! tile paths and checkpoint bytes, and `signed_note` for note signatures.

use custos_tlog::checkpoint::Checkpoint;
use custos_tlog::hash::{Hash, leaf_hash};
use custos_tlog::note::{NoteSigner, NoteVerifier};
use custos_tlog::proof::{consistency_proof, inclusion_proof, tree_hash};
use custos_tlog::tile::{Tile, TileKind};
use custos_tlog::tree::MemoryTree;
use proptest::prelude::*;

struct TlogReader<'a>(&'a MemoryTree);

impl tlog_tiles::HashReader for TlogReader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
        Ok(indexes
            .iter()
            .map(|&i| {
                let (level, n) = tlog_tiles::split_stored_hash_index(i);
                tlog_tiles::Hash(self.0.levels[level as usize][n as usize].0)
            })
            .collect())
    }
}

fn entries(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("{{\"event\":{i}}}").into_bytes()).collect()
}

#[test]
fn roots_and_proofs_match_ct_merkle() {
    type Ct = ct_merkle::mem_backed_tree::MemoryBackedTree<sha2::Sha256, Vec<u8>>;
    let data = entries(300);
    let mut ct = Ct::new();
    let ours = MemoryTree::from_leaves(data.iter().map(|e| leaf_hash(e)));
    for (n, e) in data.iter().enumerate() {
        ct.push(e.clone());
        let size = n as u64 + 1;
        assert_eq!(ct.root().as_bytes().as_slice(), tree_hash(&ours, size).unwrap().0, "root {size}");
        if n % 37 == 0 || n == data.len() - 1 {
            for i in 0..=n {
                let theirs = ct.prove_inclusion(i);
                let mine: Vec<u8> = inclusion_proof(&ours, size, i as u64).unwrap().iter().flat_map(|h| h.0).collect();
                assert_eq!(theirs.as_bytes(), &mine[..], "inclusion {i} in {size}");
            }
            for old in 1..size {
                let theirs = ct.prove_consistency((size - old) as usize);
                let mine: Vec<u8> = consistency_proof(&ours, old, size).unwrap().iter().flat_map(|h| h.0).collect();
                assert_eq!(theirs.as_bytes(), &mine[..], "consistency {old} -> {size}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn roots_and_proofs_match_tlog_tiles(size in 1u64..3000, a in any::<u64>(), b in any::<u64>()) {
        let ours = MemoryTree::from_leaves(entries(size as usize).iter().map(|e| leaf_hash(e)));
        let r = TlogReader(&ours);
        let root = tree_hash(&ours, size).unwrap();
        prop_assert_eq!(tlog_tiles::tree_hash(size, &r).unwrap().0, root.0);
        let index = a % size;
        let theirs: Vec<[u8; 32]> = tlog_tiles::prove_record(size, index, &r).unwrap().iter().map(|h| h.0).collect();
        let mine: Vec<[u8; 32]> = inclusion_proof(&ours, size, index).unwrap().iter().map(|h| h.0).collect();
        prop_assert_eq!(theirs, mine);
        let old = 1 + b % size;
        let theirs: Vec<[u8; 32]> = tlog_tiles::prove_tree(size, old, &r).unwrap().iter().map(|h| h.0).collect();
        let mine: Vec<[u8; 32]> = consistency_proof(&ours, old, size).unwrap().iter().map(|h| h.0).collect();
        prop_assert_eq!(theirs, mine);
    }

    #[test]
    fn tile_paths_match_tlog_tiles(index in any::<u64>(), level in 0u8..6, width in 1u32..=256, data in any::<bool>()) {
        let kind = if data { TileKind::Entries } else { TileKind::Hashes { level } };
        let ours = Tile { kind, index, width: width as u16 };
        let theirs = tlog_tiles::Tile::new(8, if data { 0 } else { level }, index, width, data).path();
        // tlog_tiles writes Go's older layout with the tile height and
        // "data"; C2SP drops the height and says "entries".
        let converted = theirs.replacen("tile/8/", "tile/", 1).replacen("tile/data/", "tile/entries/", 1);
        prop_assert_eq!(ours.path(), converted);
    }
}

#[test]
fn checkpoint_bytes_match_tlog_tiles() {
    for (origin, size) in [("custos.local/prod", 0u64), ("example.com/a", 123456789)] {
        let root = leaf_hash(origin.as_bytes());
        let ours = Checkpoint { origin: origin.into(), size, root, extensions: vec![] };
        let theirs = tlog_tiles::Checkpoint::new(origin, size, tlog_tiles::Hash(root.0), "").unwrap();
        assert_eq!(ours.to_body().as_bytes(), &theirs.to_bytes()[..]);
        let parsed = tlog_tiles::Checkpoint::from_bytes(ours.to_body().as_bytes()).unwrap();
        assert_eq!(parsed.size(), size);
    }
}

#[test]
fn notes_and_keys_interoperate_with_signed_note() {
    let signer = NoteSigner::from_seed("custos.local", [42u8; 32]).unwrap();
    let vkey = signer.verifier().to_key_string();
    let text =
        Checkpoint { origin: "custos.local/x".into(), size: 3, root: Hash([1; 32]), extensions: vec![] }.to_body();

    // Their verifier accepts our key string and our signed note.
    let their_verifier = signed_note::StandardVerifier::new(&vkey).unwrap();
    let list = signed_note::VerifierList::new(vec![Box::new(their_verifier)]);
    let ours = signer.sign(&text).unwrap();
    let note = signed_note::Note::from_bytes(ours.as_bytes()).unwrap();
    let (verified, _) = note.verify(&list).unwrap();
    assert_eq!(verified.len(), 1);

    // Their signer, from our private key string, produces exactly our bytes
    // (Ed25519 is deterministic), and we verify theirs.
    let their_signer = signed_note::StandardSigner::new(&signer.to_key_string()).unwrap();
    let mut theirs = signed_note::Note::new(text.as_bytes(), &[]).unwrap();
    theirs.add_sigs(&[&their_signer]).unwrap();
    let theirs = String::from_utf8(theirs.to_bytes()).unwrap();
    assert_eq!(theirs, ours);
    assert_eq!(NoteVerifier::parse(&vkey).unwrap().open(&theirs).unwrap(), text);
}
