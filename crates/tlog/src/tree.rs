//! Tree hashes of any size, built from leaves or from complete subtrees.
//!
//! A *complete subtree* at `(level, index)` covers the `2^level` leaves
//! starting at `index << level`. Every tree hash, proof and tile is made of
//! them, which is what lets storage keep only some levels and recompute the
//! rest.

use crate::hash::{Hash, node_hash};

/// The largest power of two strictly less than `n`. Requires `n > 1`.
pub fn split_point(n: u64) -> u64 {
    debug_assert!(n > 1);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Builds a tree one leaf at a time in O(log n) memory.
///
/// It keeps the right edge of the tree: one complete subtree per set bit of
/// the size, largest first. Each push reports every complete subtree it
/// finishes, so callers can keep exactly the levels they need.
#[derive(Clone, Debug, Default)]
pub struct TreeBuilder {
    size: u64,
    // INVARIANT: edge[i] is the complete subtree for the i-th set bit of
    // `size`, counted from the most significant bit.
    edge: Vec<Hash>,
}

impl TreeBuilder {
    /// An empty tree.
    pub fn new() -> TreeBuilder {
        TreeBuilder::default()
    }

    /// Rebuilds the right edge of a tree of `size` leaves from its complete
    /// subtrees, read through `subtree(level, index)`.
    pub fn from_subtrees<E>(size: u64, mut subtree: impl FnMut(u32, u64) -> Result<Hash, E>) -> Result<TreeBuilder, E> {
        let mut edge = Vec::new();
        let mut start = 0u64;
        for level in (0..64).rev() {
            if size & (1 << level) != 0 {
                edge.push(subtree(level, start >> level)?);
                start += 1 << level;
            }
        }
        Ok(TreeBuilder { size, edge })
    }

    /// The number of leaves so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash. `done(level, index, hash)` is called for the leaf
    /// itself (level 0) and for every complete subtree this leaf finishes.
    pub fn push(&mut self, leaf: Hash, mut done: impl FnMut(u32, u64, &Hash)) {
        let mut hash = leaf;
        let mut index = self.size;
        let mut level = 0;
        done(level, index, &hash);
        while index & 1 == 1 {
            let left = self.edge.pop().expect("edge has one subtree per set bit of size");
            hash = node_hash(&left, &hash);
            index >>= 1;
            level += 1;
            done(level, index, &hash);
        }
        self.edge.push(hash);
        self.size += 1;
    }

    /// The tree hash of the leaves pushed so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.edge.iter().rev();
        let Some(last) = iter.next() else {
            return Hash::empty();
        };
        iter.fold(*last, |right, left| node_hash(left, &right))
    }
}

/// The tree hash of a list of leaf hashes (RFC 6962 `MTH`), by the
/// recursive definition. Slow but obviously right; used as a test model.
pub fn root_of_leaves(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Hash::empty(),
        1 => leaves[0],
        n => {
            let k = split_point(n as u64) as usize;
            node_hash(&root_of_leaves(&leaves[..k]), &root_of_leaves(&leaves[k..]))
        }
    }
}

/// Every complete subtree of a tree, level by level: `levels[l][i]` is the
/// subtree at `(l, i)`. Memory grows with the tree; for tests and small
/// in-memory logs.
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    /// `levels[l]` holds the complete subtrees at level `l`, left to right.
    pub levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// Builds the tree of the given leaf hashes.
    pub fn from_leaves(leaves: impl IntoIterator<Item = Hash>) -> MemoryTree {
        let mut tree = MemoryTree::default();
        let mut builder = TreeBuilder::new();
        for leaf in leaves {
            builder.push(leaf, |level, index, hash| {
                let level = level as usize;
                if tree.levels.len() <= level {
                    tree.levels.push(Vec::new());
                }
                debug_assert_eq!(tree.levels[level].len() as u64, index);
                tree.levels[level].push(*hash);
            });
        }
        tree
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }
}

impl crate::proof::HashReader for MemoryTree {
    type Error = std::convert::Infallible;
    fn subtree(&self, level: u32, index: u64) -> Result<Hash, Self::Error> {
        Ok(self.levels[level as usize][index as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;

    #[test]
    fn split_point_is_largest_power_below() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(1 << 40), 1 << 39);
        assert_eq!(split_point((1 << 40) + 1), 1 << 40);
    }

    #[test]
    fn builder_matches_recursive_definition_for_every_size() {
        let leaves: Vec<Hash> = (0..300u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut b = TreeBuilder::new();
        assert_eq!(b.root(), Hash::empty());
        let tree = MemoryTree::from_leaves(leaves.iter().copied());
        for (n, leaf) in leaves.iter().enumerate() {
            b.push(*leaf, |_, _, _| {});
            let want = root_of_leaves(&leaves[..=n]);
            assert_eq!(b.root(), want, "size {}", n + 1);
            let rebuilt =
                TreeBuilder::from_subtrees(n as u64 + 1, |l, i| Ok::<_, ()>(tree.levels[l as usize][i as usize]))
                    .unwrap();
            assert_eq!(rebuilt.root(), want);
        }
    }
}
