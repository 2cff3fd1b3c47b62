//! Inclusion and consistency proofs: generated as in RFC 6962 §2.1.1–2.1.2
//! from complete subtrees, verified as in RFC 9162 §2.1.3.2 and §2.1.4.2.

use crate::hash::{Hash, node_hash};
use crate::tree::split_point;

/// Reads complete subtree hashes. Storage implements this; proofs need
/// nothing else.
pub trait HashReader {
    /// The error of the underlying storage.
    type Error;
    /// The hash of the complete subtree at `(level, index)`.
    fn subtree(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// Why a proof could not be generated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError<E> {
    /// The requested index or size does not fit the tree.
    #[error("{0}")]
    OutOfRange(String),
    /// The storage failed to read a hash.
    #[error("reading a hash: {0}")]
    Read(E),
}

/// Why a proof did not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum VerifyError {
    /// The index is not below the tree size, or the sizes are reversed.
    #[error("{0}")]
    OutOfRange(String),
    /// The proof has the wrong number of hashes for these sizes.
    #[error("proof has the wrong length")]
    WrongLength,
    /// The proof is well formed but the recomputed root differs.
    #[error("recomputed root does not match")]
    RootMismatch,
}

/// The hash of leaves `[start, start + len)`, where `start` is a multiple of
/// the largest power of two not above `len`, as every range in RFC 6962's
/// recursive decomposition is.
pub fn range_hash<R: HashReader>(r: &R, start: u64, len: u64) -> Result<Hash, R::Error> {
    if len.is_power_of_two() {
        let level = len.trailing_zeros();
        return r.subtree(level, start >> level);
    }
    let k = split_point(len);
    let left = range_hash(r, start, k)?;
    let right = range_hash(r, start + k, len - k)?;
    Ok(node_hash(&left, &right))
}

/// The tree hash of the first `size` leaves.
pub fn tree_hash<R: HashReader>(r: &R, size: u64) -> Result<Hash, R::Error> {
    if size == 0 {
        return Ok(Hash::empty());
    }
    range_hash(r, 0, size)
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves.
pub fn inclusion_proof<R: HashReader>(r: &R, size: u64, index: u64) -> Result<Vec<Hash>, ProofError<R::Error>> {
    if index >= size {
        return Err(ProofError::OutOfRange(format!("index {index} is not below tree size {size}")));
    }
    let mut out = Vec::new();
    path(r, index, 0, size, &mut out).map_err(ProofError::Read)?;
    Ok(out)
}

fn path<R: HashReader>(r: &R, m: u64, start: u64, n: u64, out: &mut Vec<Hash>) -> Result<(), R::Error> {
    if n == 1 {
        return Ok(());
    }
    let k = split_point(n);
    if m < k {
        path(r, m, start, k, out)?;
        out.push(range_hash(r, start + k, n - k)?);
    } else {
        path(r, m - k, start + k, n - k, out)?;
        out.push(range_hash(r, start, k)?);
    }
    Ok(())
}

/// The consistency proof from the tree of `old_size` leaves to the tree of
/// `new_size` leaves. Empty when `old_size` is 0 or equals `new_size`.
pub fn consistency_proof<R: HashReader>(
    r: &R,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, ProofError<R::Error>> {
    if old_size > new_size {
        return Err(ProofError::OutOfRange(format!("old size {old_size} is above new size {new_size}")));
    }
    let mut out = Vec::new();
    if old_size == 0 || old_size == new_size {
        return Ok(out);
    }
    subproof(r, old_size, 0, new_size, true, &mut out).map_err(ProofError::Read)?;
    Ok(out)
}

fn subproof<R: HashReader>(
    r: &R,
    m: u64,
    start: u64,
    n: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Result<(), R::Error> {
    if m == n {
        if !whole {
            out.push(range_hash(r, start, n)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        subproof(r, m, start, k, whole, out)?;
        out.push(range_hash(r, start + k, n - k)?);
    } else {
        subproof(r, m - k, start + k, n - k, false, out)?;
        out.push(range_hash(r, start, k)?);
    }
    Ok(())
}

/// Verifies that `leaf` is at `index` in the tree of `size` leaves with
/// hash `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> Result<(), VerifyError> {
    if index >= size {
        return Err(VerifyError::OutOfRange(format!("index {index} is not below tree size {size}")));
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(VerifyError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(VerifyError::WrongLength);
    }
    if !r.ct_eq(root) {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}

/// Verifies that the tree of `new_size` leaves with hash `new_root` extends
/// the tree of `old_size` leaves with hash `old_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), VerifyError> {
    if old_size > new_size {
        return Err(VerifyError::OutOfRange(format!("old size {old_size} is above new size {new_size}")));
    }
    if old_size == new_size || old_size == 0 {
        if !proof.is_empty() {
            return Err(VerifyError::WrongLength);
        }
        if old_size == new_size && !old_root.ct_eq(new_root) {
            return Err(VerifyError::RootMismatch);
        }
        return Ok(());
    }
    if proof.is_empty() {
        return Err(VerifyError::WrongLength);
    }
    let mut path: &[Hash] = proof;
    let first;
    if old_size.is_power_of_two() {
        first = *old_root;
    } else {
        first = path[0];
        path = &path[1..];
    }
    let (mut f, mut s) = (old_size - 1, new_size - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (first, first);
    for c in path {
        if s == 0 {
            return Err(VerifyError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(VerifyError::WrongLength);
    }
    if !fr.ct_eq(old_root) || !sr.ct_eq(new_root) {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}
