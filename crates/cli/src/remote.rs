//! Client-side verification of a live log through the C2SP tlog-tiles API,
//! and of exported bundles. Trusts nothing but the verifier key: every
//! tile and entry bundle is fetched and recomputed.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use custos_tlog::checkpoint::Checkpoint;
use custos_tlog::hash::{Hash, leaf_hash};
use custos_tlog::note::NoteVerifier;
use custos_tlog::proof::verify_inclusion;
use custos_tlog::tile::{Tile, TileKind, decode_bundle, decode_hash_tile};
use custos_tlog::tree::TreeBuilder;
use serde::{Deserialize, Serialize};

use crate::http;

/// The last checkpoint this client verified for a log.
#[derive(Serialize, Deserialize)]
struct State {
    origin: String,
    size: u64,
    root: String,
}

/// What a remote verification covered.
pub struct RemoteReport {
    /// The verified checkpoint.
    pub checkpoint: Checkpoint,
    /// Size of the previously verified checkpoint, if any.
    pub previous_size: Option<u64>,
    /// Tiles and bundles fetched.
    pub tiles: u64,
}

/// The default state file for a log URL.
pub fn default_state_path(url: &str) -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    let name: String = url.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    base.join("custos").join(format!("verify-{name}.json"))
}

/// Verifies the log at `url` (ending in `/tlog/LOG`) against `verifier`
/// and the state in `state_path`, then records the new checkpoint there.
pub fn verify_url(url: &str, verifier: &NoteVerifier, state_path: &Path) -> anyhow::Result<RemoteReport> {
    let agent = http::agent();
    let base = url.trim_end_matches('/');
    let note =
        String::from_utf8(http::get_ok(&agent, &format!("{base}/checkpoint"))?).context("checkpoint is not UTF-8")?;
    let text = verifier.open(&note).context("checkpoint signature")?;
    let cp = Checkpoint::parse(text)?;
    let previous: Option<State> = match std::fs::read(state_path) {
        Ok(b) => Some(serde_json::from_slice(&b).with_context(|| format!("reading {}", state_path.display()))?),
        Err(_) => None,
    };
    let mut prev_root = None;
    if let Some(p) = &previous {
        if p.origin != cp.origin {
            bail!("state file {} is for origin {:?}, the server says {:?}", state_path.display(), p.origin, cp.origin);
        }
        if p.size > cp.size {
            bail!("server rolled back: its checkpoint has size {}, but size {} was verified before", cp.size, p.size);
        }
        let r = B64.decode(&p.root).ok().and_then(|r| Hash::from_slice(&r)).context("state file root")?;
        prev_root = Some((p.size, r));
    }

    let mut tiles = 0u64;
    let mut builder = TreeBuilder::new();
    // Hashes at tree levels 8, 16, ...: what the upper tiles must hold.
    let mut upper: Vec<Vec<Hash>> = Vec::new();
    if let Some((0, r)) = prev_root
        && r != Hash::empty()
    {
        bail!("server rewrote history: the empty tree had a different root before");
    }
    for bundle in Tile::bundles_for_size(cp.size) {
        let raw = http::get_ok(&agent, &format!("{base}/{}", bundle.path()))?;
        let entries = decode_bundle(&raw).with_context(|| format!("entry bundle {}", bundle.path()))?;
        if entries.len() != usize::from(bundle.width) {
            bail!("entry bundle {} holds {} entries, expected {}", bundle.path(), entries.len(), bundle.width);
        }
        let t0 = Tile { kind: TileKind::Hashes { level: 0 }, ..bundle };
        let stored = decode_hash_tile(&http::get_ok(&agent, &format!("{base}/{}", t0.path()))?)?;
        tiles += 2;
        for (i, e) in entries.iter().enumerate() {
            let leaf = leaf_hash(e);
            let index = bundle.index * 256 + i as u64;
            if stored.get(i) != Some(&leaf) {
                bail!("hash tile {} does not hold the hash of entry {index} from its bundle", t0.path());
            }
            builder.push(leaf, |level, idx, h| {
                if level > 0 && level % 8 == 0 {
                    let k = (level / 8 - 1) as usize;
                    if upper.len() <= k {
                        upper.push(Vec::new());
                    }
                    debug_assert_eq!(upper[k].len() as u64, idx);
                    upper[k].push(*h);
                }
            });
            if let Some((size, root)) = prev_root
                && builder.size() == size
                && builder.root() != root
            {
                bail!(
                    "server rewrote history: the tree of the previously verified size {size} has a different root now"
                );
            }
        }
    }
    for t in Tile::hash_tiles_for_size(cp.size) {
        let TileKind::Hashes { level } = t.kind else { continue };
        if level == 0 {
            continue;
        }
        let got = decode_hash_tile(&http::get_ok(&agent, &format!("{base}/{}", t.path()))?)?;
        tiles += 1;
        let first = (t.index * 256) as usize;
        let want = upper.get(level as usize - 1).and_then(|l| l.get(first..first + usize::from(t.width)));
        if want != Some(&got[..]) {
            bail!("hash tile {} does not match the hashes recomputed from the entries", t.path());
        }
    }
    if builder.root() != cp.root {
        bail!("the entries of size {} hash to {}, but the checkpoint says {}", cp.size, builder.root(), cp.root);
    }
    if let Some(dir) = state_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let st = State { origin: cp.origin.clone(), size: cp.size, root: B64.encode(cp.root.0) };
    let tmp = state_path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&st)?)?;
    std::fs::rename(&tmp, state_path)?;
    Ok(RemoteReport { checkpoint: cp, previous_size: previous.map(|p| p.size), tiles })
}

/// An exported bundle: a signed checkpoint and entries with proofs.
#[derive(Serialize, Deserialize)]
pub struct Bundle {
    /// Always `custos-bundle-v1`.
    pub format: String,
    /// The log name.
    pub log: String,
    /// The signed checkpoint note the proofs are against.
    pub checkpoint: String,
    /// The entries.
    pub entries: Vec<BundleEntry>,
}

/// One entry of a bundle.
#[derive(Serialize, Deserialize)]
pub struct BundleEntry {
    /// Its index.
    pub index: u64,
    /// The exact entry bytes (canonical JSON).
    pub entry: String,
    /// Its inclusion proof, base64 hashes.
    pub inclusion_proof: Vec<String>,
}

/// Checks a bundle with no server: the checkpoint signature, then every
/// entry's inclusion proof. Returns the checkpoint and the entry count.
pub fn verify_bundle(bundle: &Bundle, verifier: &NoteVerifier) -> anyhow::Result<(Checkpoint, usize)> {
    if bundle.format != "custos-bundle-v1" {
        bail!("unknown bundle format {:?}", bundle.format);
    }
    let text = verifier.open(&bundle.checkpoint).context("bundle checkpoint signature")?;
    let cp = Checkpoint::parse(text)?;
    for e in &bundle.entries {
        let proof: Vec<Hash> = e
            .inclusion_proof
            .iter()
            .map(|p| B64.decode(p).ok().and_then(|b| Hash::from_slice(&b)))
            .collect::<Option<_>>()
            .with_context(|| format!("entry {}: proof is not base64 hashes", e.index))?;
        verify_inclusion(e.index, cp.size, &leaf_hash(e.entry.as_bytes()), &proof, &cp.root)
            .with_context(|| format!("entry {}: inclusion proof against checkpoint of size {}", e.index, cp.size))?;
    }
    Ok((cp, bundle.entries.len()))
}
