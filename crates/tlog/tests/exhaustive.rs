//! Every inclusion and consistency proof of every tree up to 600 leaves
//! (crossing the 256-leaf tile boundary twice) verifies, and fails with a
//! bit flipped anywhere in it.

use custos_tlog::hash::{Hash, leaf_hash};
use custos_tlog::proof::{
    VerifyError, consistency_proof, inclusion_proof, tree_hash, verify_consistency, verify_inclusion,
};
use custos_tlog::tree::{MemoryTree, root_of_leaves};

const MAX_SIZE: u64 = 600;
/// Up to this size every one of the 256 bits of every proof hash is
/// flipped in turn; above it one bit per hash, rotating, to keep the test
/// within seconds.
const ALL_BITS_UP_TO: u64 = 24;

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut x = *h;
    x.0[bit / 8] ^= 1 << (bit % 8);
    x
}

fn bits_for(size: u64, salt: u64) -> Vec<usize> {
    if size <= ALL_BITS_UP_TO { (0..256).collect() } else { vec![((size * 31 + salt * 7) % 256) as usize] }
}

fn setup() -> (Vec<Hash>, MemoryTree, Vec<Hash>) {
    let leaves: Vec<Hash> = (0..MAX_SIZE).map(|i| leaf_hash(format!("entry {i}").as_bytes())).collect();
    let tree = MemoryTree::from_leaves(leaves.iter().copied());
    let roots: Vec<Hash> = (0..=MAX_SIZE).map(|n| tree_hash(&tree, n).unwrap()).collect();
    (leaves, tree, roots)
}

#[test]
fn roots_match_the_recursive_definition() {
    let (leaves, _, roots) = setup();
    for n in 0..=MAX_SIZE as usize {
        assert_eq!(roots[n], root_of_leaves(&leaves[..n]), "size {n}");
    }
}

#[test]
fn every_inclusion_proof_verifies_and_any_flip_fails() {
    let (leaves, tree, roots) = setup();
    for n in 1..=MAX_SIZE {
        let root = roots[n as usize];
        for i in 0..n {
            let leaf = leaves[i as usize];
            let proof = inclusion_proof(&tree, n, i).unwrap();
            verify_inclusion(i, n, &leaf, &proof, &root).unwrap_or_else(|e| panic!("{i} in {n}: {e}"));
            for j in 0..proof.len() {
                for bit in bits_for(n, i + j as u64) {
                    let mut bad = proof.clone();
                    bad[j] = flip(&bad[j], bit);
                    assert!(verify_inclusion(i, n, &leaf, &bad, &root).is_err(), "flip {j}/{bit} of {i} in {n}");
                }
            }
            let bit = bits_for(n, i)[0];
            assert!(verify_inclusion(i, n, &flip(&leaf, bit), &proof, &root).is_err());
            assert!(verify_inclusion(i, n, &leaf, &proof, &flip(&root, bit)).is_err());
            if n > 1 {
                assert!(verify_inclusion((i + 1) % n, n, &leaf, &proof, &root).is_err());
            }
            let mut longer = proof.clone();
            longer.push(root);
            assert_eq!(verify_inclusion(i, n, &leaf, &longer, &root), Err(VerifyError::WrongLength));
            if !proof.is_empty() {
                assert!(verify_inclusion(i, n, &leaf, &proof[1..], &root).is_err());
            }
        }
    }
}

#[test]
fn every_consistency_proof_verifies_and_any_flip_fails() {
    let (_, tree, roots) = setup();
    for n in 1..=MAX_SIZE {
        for m in 1..=n {
            let (r1, r2) = (roots[m as usize], roots[n as usize]);
            let proof = consistency_proof(&tree, m, n).unwrap();
            verify_consistency(m, n, &r1, &r2, &proof).unwrap_or_else(|e| panic!("{m} -> {n}: {e}"));
            for j in 0..proof.len() {
                for bit in bits_for(n, m + j as u64) {
                    let mut bad = proof.clone();
                    bad[j] = flip(&bad[j], bit);
                    assert!(verify_consistency(m, n, &r1, &r2, &bad).is_err(), "flip {j}/{bit} of {m} -> {n}");
                }
            }
            let bit = bits_for(n, m)[0];
            assert!(verify_consistency(m, n, &flip(&r1, bit), &r2, &proof).is_err());
            assert!(verify_consistency(m, n, &r1, &flip(&r2, bit), &proof).is_err());
            let mut longer = proof.clone();
            longer.push(r1);
            assert!(verify_consistency(m, n, &r1, &r2, &longer).is_err());
        }
    }
}

#[test]
fn out_of_range_requests_are_errors_not_panics() {
    let (_, tree, roots) = setup();
    assert!(inclusion_proof(&tree, 5, 5).is_err());
    assert!(consistency_proof(&tree, 6, 5).is_err());
    assert!(matches!(verify_inclusion(5, 5, &roots[1], &[], &roots[5]), Err(VerifyError::OutOfRange(_))));
    assert!(matches!(verify_consistency(6, 5, &roots[6], &roots[5], &[]), Err(VerifyError::OutOfRange(_))));
    // Equal sizes need equal roots and an empty proof.
    assert!(verify_consistency(5, 5, &roots[5], &roots[5], &[]).is_ok());
    assert!(verify_consistency(5, 5, &roots[5], &roots[4], &[]).is_err());
}
