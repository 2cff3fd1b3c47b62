//! Pure transparency-log math for Custos.
//!
//! # Layout
//! - [`hash`]: the RFC 6962 leaf and node hashes and the [`Hash`] type.
//! - [`tree`]: complete-subtree addressing, tree hashes of any size, and an
//!   incremental [`tree::TreeBuilder`] used by writers and verifiers.
//! - [`proof`]: inclusion and consistency proofs (RFC 9162 §2.1.3, §2.1.4),
//!   generated from any [`proof::HashReader`] and verified without one.
//! - [`tile`]: C2SP tlog-tiles addressing, tile paths and entry bundles.
//! - [`note`]: C2SP signed-note with Ed25519 keys, and [`checkpoint`] bodies.
//!
//! # Invariants
//! This crate performs no I/O, spawns no threads and knows nothing about
//! files, HTTP or async runtimes. Everything here is a pure function of its
//! inputs, which is what lets the offline verifier trust it.

pub mod checkpoint;
pub mod hash;
pub mod note;
pub mod proof;
pub mod tile;
pub mod tree;

pub use checkpoint::Checkpoint;
pub use hash::{Hash, leaf_hash, node_hash};
