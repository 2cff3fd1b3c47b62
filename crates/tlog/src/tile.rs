//! C2SP tlog-tiles: tile coordinates, paths and entry bundles.
//!
//! A hash tile at level `L` holds up to 256 consecutive complete subtree
//! hashes from tree level `8 * L`. An entry bundle holds up to 256
//! consecutive entries, each prefixed by its length as a big-endian u16.

use crate::hash::{HASH_SIZE, Hash};

/// Tree levels per tile level.
pub const TILE_HEIGHT: u32 = 8;
/// Hashes per full tile, and entries per full bundle.
pub const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;
/// The largest entry a bundle can carry: its length must fit a u16.
pub const MAX_ENTRY_SIZE_BYTES: usize = u16::MAX as usize;

/// What a tile holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TileKind {
    /// Hashes from tree level `8 * level`.
    Hashes {
        /// The tile level.
        level: u8,
    },
    /// An entry bundle.
    Entries,
}

/// One tile: its kind, its index within its level, and its width (1..=256).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tile {
    /// Hash tile or entry bundle.
    pub kind: TileKind,
    /// The tile's index within its level.
    pub index: u64,
    /// The number of hashes or entries, 256 for a full tile.
    pub width: u16,
}

/// Why a tile path did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad tile path {path:?}: {reason}")]
pub struct TilePathError {
    /// The path as given.
    pub path: String,
    /// What was wrong with it.
    pub reason: &'static str,
}

/// Encodes a tile index as groups of three digits, `x`-prefixed except the
/// last: 1234067 becomes `x001/x234/067`.
pub fn encode_index(index: u64) -> String {
    let mut groups = Vec::new();
    let mut n = index;
    loop {
        groups.push(n % 1000);
        n /= 1000;
        if n == 0 {
            break;
        }
    }
    let mut out = String::new();
    for (i, g) in groups.iter().rev().enumerate() {
        if i + 1 < groups.len() {
            out.push_str(&format!("x{g:03}/"));
        } else {
            out.push_str(&format!("{g:03}"));
        }
    }
    out
}

impl Tile {
    /// The path of this tile below the log's prefix, such as
    /// `tile/0/x001/234.p/7` or `tile/entries/005`.
    pub fn path(&self) -> String {
        let level = match self.kind {
            TileKind::Hashes { level } => level.to_string(),
            TileKind::Entries => "entries".to_string(),
        };
        let mut p = format!("tile/{level}/{}", encode_index(self.index));
        if u64::from(self.width) < TILE_WIDTH {
            p.push_str(&format!(".p/{}", self.width));
        }
        p
    }

    /// Parses a path produced by [`Tile::path`], accepting only the
    /// canonical form so that one tile has exactly one name.
    pub fn parse(path: &str) -> Result<Tile, TilePathError> {
        let err = |reason| TilePathError { path: path.to_string(), reason };
        let rest = path.strip_prefix("tile/").ok_or_else(|| err("does not start with tile/"))?;
        let (level, rest) = rest.split_once('/').ok_or_else(|| err("missing index"))?;
        let kind = if level == "entries" {
            TileKind::Entries
        } else {
            let l: u8 = parse_small(level).ok_or_else(|| err("level is not a small number"))?;
            if l > 63 {
                return Err(err("level is above 63"));
            }
            TileKind::Hashes { level: l }
        };
        let (index_part, width) = match rest.split_once(".p/") {
            Some((i, w)) => {
                let w: u16 = parse_small(w).ok_or_else(|| err("width is not a number"))?;
                if w == 0 || u64::from(w) >= TILE_WIDTH {
                    return Err(err("partial width must be 1 to 255"));
                }
                (i, w)
            }
            None => (rest, TILE_WIDTH as u16),
        };
        let groups: Vec<&str> = index_part.split('/').collect();
        let mut index: u64 = 0;
        for (i, g) in groups.iter().enumerate() {
            let last = i + 1 == groups.len();
            let digits = if last { *g } else { g.strip_prefix('x').ok_or_else(|| err("inner index group lacks x"))? };
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("index group is not three digits"));
            }
            let v: u64 = digits.parse().map_err(|_| err("bad index group"))?;
            if i == 0 && v == 0 && !last {
                return Err(err("index has a leading zero group"));
            }
            index = index.checked_mul(1000).and_then(|x| x.checked_add(v)).ok_or_else(|| err("index overflows"))?;
        }
        Ok(Tile { kind, index, width })
    }

    /// The hash tiles a client needs to read all of a tree of `size`
    /// leaves: for each level, the full tiles and at most one partial tile.
    pub fn hash_tiles_for_size(size: u64) -> Vec<Tile> {
        let mut out = Vec::new();
        let mut level = 0u8;
        let mut n = size; // hashes at tree level 8 * level
        while n > 0 {
            for index in 0..n / TILE_WIDTH {
                out.push(Tile { kind: TileKind::Hashes { level }, index, width: TILE_WIDTH as u16 });
            }
            if !n.is_multiple_of(TILE_WIDTH) {
                out.push(Tile {
                    kind: TileKind::Hashes { level },
                    index: n / TILE_WIDTH,
                    width: (n % TILE_WIDTH) as u16,
                });
            }
            n /= TILE_WIDTH;
            level += 1;
        }
        out
    }

    /// The entry bundles of a tree of `size` leaves, full ones first.
    pub fn bundles_for_size(size: u64) -> Vec<Tile> {
        let mut out: Vec<Tile> = (0..size / TILE_WIDTH)
            .map(|index| Tile { kind: TileKind::Entries, index, width: TILE_WIDTH as u16 })
            .collect();
        if !size.is_multiple_of(TILE_WIDTH) {
            out.push(Tile { kind: TileKind::Entries, index: size / TILE_WIDTH, width: (size % TILE_WIDTH) as u16 });
        }
        out
    }
}

fn parse_small<T: std::str::FromStr>(s: &str) -> Option<T> {
    // Canonical decimal: no sign, no leading zeros.
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

/// Why an entry bundle or hash tile did not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TileDataError {
    /// An entry's length prefix runs past the end of the bundle.
    #[error("entry {entry} at byte {offset} runs past the end of the bundle")]
    Truncated {
        /// Position of the entry within the bundle.
        entry: usize,
        /// Byte offset of its length prefix.
        offset: usize,
    },
    /// An entry does not fit a bundle.
    #[error("entry of {0} bytes is over the limit of {MAX_ENTRY_SIZE_BYTES} bytes")]
    EntryTooLarge(usize),
    /// A hash tile is not a whole number of hashes.
    #[error("hash tile of {0} bytes is not a multiple of 32")]
    BadHashTile(usize),
}

/// Appends one entry to an entry bundle being built.
pub fn push_bundle_entry(bundle: &mut Vec<u8>, entry: &[u8]) -> Result<(), TileDataError> {
    let len = u16::try_from(entry.len()).map_err(|_| TileDataError::EntryTooLarge(entry.len()))?;
    bundle.extend_from_slice(&len.to_be_bytes());
    bundle.extend_from_slice(entry);
    Ok(())
}

/// Splits an entry bundle into its entries.
pub fn decode_bundle(bytes: &[u8]) -> Result<Vec<&[u8]>, TileDataError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let truncated = TileDataError::Truncated { entry: out.len(), offset: pos };
        if pos + 2 > bytes.len() {
            return Err(truncated);
        }
        let len = u16::from_be_bytes([bytes[pos], bytes[pos + 1]]) as usize;
        let end = pos + 2 + len;
        if end > bytes.len() {
            return Err(truncated);
        }
        out.push(&bytes[pos + 2..end]);
        pos = end;
    }
    Ok(out)
}

/// Splits a hash tile into its hashes.
pub fn decode_hash_tile(bytes: &[u8]) -> Result<Vec<Hash>, TileDataError> {
    if !bytes.len().is_multiple_of(HASH_SIZE) {
        return Err(TileDataError::BadHashTile(bytes.len()));
    }
    Ok(bytes.chunks(HASH_SIZE).map(|c| Hash::from_slice(c).expect("chunk is 32 bytes")).collect())
}

/// The root of a power-of-two run of hashes from one tile: the complete
/// subtree they form.
pub fn subtree_of_run(run: &[Hash]) -> Hash {
    debug_assert!(run.len().is_power_of_two());
    if run.len() == 1 {
        return run[0];
    }
    let half = run.len() / 2;
    crate::hash::node_hash(&subtree_of_run(&run[..half]), &subtree_of_run(&run[half..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_encoding_matches_spec_examples() {
        assert_eq!(encode_index(0), "000");
        assert_eq!(encode_index(67), "067");
        assert_eq!(encode_index(1234067), "x001/x234/067");
        assert_eq!(encode_index(1000), "x001/000");
    }

    #[test]
    fn paths_round_trip_and_reject_non_canonical() {
        for t in [
            Tile { kind: TileKind::Hashes { level: 0 }, index: 1234067, width: 256 },
            Tile { kind: TileKind::Hashes { level: 2 }, index: 5, width: 7 },
            Tile { kind: TileKind::Entries, index: 999, width: 1 },
        ] {
            assert_eq!(Tile::parse(&t.path()), Ok(t), "{}", t.path());
        }
        assert_eq!(Tile::parse("tile/0/x001/234.p/7").unwrap().index, 1234);
        for bad in [
            "tile/0/67",
            "tile/0/x000/067",
            "tile/00/067",
            "tile/0/067.p/0",
            "tile/0/067.p/256",
            "tile/0/001/067",
            "tile/x/067",
            "tiles/0/067",
            "tile/0/x001",
            "tile/0/../067",
        ] {
            assert!(Tile::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn bundles_round_trip_and_reject_truncation() {
        let mut b = Vec::new();
        push_bundle_entry(&mut b, b"hello").unwrap();
        push_bundle_entry(&mut b, b"").unwrap();
        push_bundle_entry(&mut b, &[7u8; 300]).unwrap();
        let d = decode_bundle(&b).unwrap();
        assert_eq!(d, vec![&b"hello"[..], &b""[..], &[7u8; 300][..]]);
        assert_eq!(decode_bundle(&b[..b.len() - 1]), Err(TileDataError::Truncated { entry: 2, offset: 9 }));
        assert_eq!(push_bundle_entry(&mut b, &vec![0; 65536]), Err(TileDataError::EntryTooLarge(65536)));
    }

    #[test]
    fn tiles_for_size_cover_levels() {
        assert!(Tile::hash_tiles_for_size(0).is_empty());
        let t = Tile::hash_tiles_for_size(256 * 256 + 3);
        // Level 0: 256 full + 1 partial(3); level 1: 1 full; level 2: partial(1).
        assert_eq!(t.len(), 259);
        assert_eq!(t[256], Tile { kind: TileKind::Hashes { level: 0 }, index: 256, width: 3 });
        assert_eq!(t[257], Tile { kind: TileKind::Hashes { level: 1 }, index: 0, width: 256 });
        assert_eq!(t[258], Tile { kind: TileKind::Hashes { level: 2 }, index: 0, width: 1 });
    }
}
