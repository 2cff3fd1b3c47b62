//! C2SP tlog-checkpoint bodies: `<origin>\n<size>\n<base64 root>\n`,
//! optionally followed by extension lines.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::hash::Hash;

/// A checkpoint: a log's size and root hash, named by its origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's unique origin line, such as `custos.local/prod`.
    pub origin: String,
    /// The number of entries.
    pub size: u64,
    /// The tree hash of those entries.
    pub root: Hash,
    /// Extension lines, each without its newline.
    pub extensions: Vec<String>,
}

/// Why a checkpoint body did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed checkpoint: {0}")]
pub struct CheckpointError(pub &'static str);

impl Checkpoint {
    /// The note text of this checkpoint.
    pub fn to_body(&self) -> String {
        let mut s = format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root.0));
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parses the note text of a checkpoint.
    pub fn parse(body: &str) -> Result<Checkpoint, CheckpointError> {
        let body = body.strip_suffix('\n').ok_or(CheckpointError("does not end in a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().filter(|o| !o.is_empty()).ok_or(CheckpointError("empty origin"))?;
        let size = lines.next().ok_or(CheckpointError("missing size"))?;
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) || (size.len() > 1 && size.starts_with('0')) {
            return Err(CheckpointError("size is not a canonical decimal number"));
        }
        let size: u64 = size.parse().map_err(|_| CheckpointError("size overflows"))?;
        let root = lines.next().ok_or(CheckpointError("missing root hash"))?;
        let root = B64
            .decode(root)
            .ok()
            .and_then(|r| Hash::from_slice(&r))
            .ok_or(CheckpointError("root is not a base64 32-byte hash"))?;
        let extensions: Vec<String> = lines.map(str::to_string).collect();
        if extensions.iter().any(|e| e.is_empty()) {
            return Err(CheckpointError("empty extension line"));
        }
        Ok(Checkpoint { origin: origin.to_string(), size, root, extensions })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_round_trips() {
        let c = Checkpoint { origin: "custos.local/x".into(), size: 42, root: Hash([9; 32]), extensions: vec![] };
        assert_eq!(c.to_body(), "custos.local/x\n42\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n");
        assert_eq!(Checkpoint::parse(&c.to_body()), Ok(c));
    }

    #[test]
    fn malformed_bodies_are_rejected() {
        for bad in [
            "",
            "o\n",
            "o\n01\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n",
            "o\n1\nAAAA\n",
            "\n1\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n",
        ] {
            assert!(Checkpoint::parse(bad).is_err(), "{bad:?}");
        }
    }
}
