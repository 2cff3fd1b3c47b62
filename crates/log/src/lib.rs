//! Durable storage for Custos's append-only Merkle logs.
//!
//! # Layout
//! - [`format`]: the byte layout of files and records (see `docs/format.md`).
//! - [`storage`]: the [`storage::Storage`] trait and the POSIX backend.
//! - [`sim`]: a simulated disk that tears writes and injects faults.
//! - [`scan`]: sequential record and hash reading shared by open and verify.
//! - [`log`]: one log: recovery, group commit, reads, proofs, tiles and
//!   checkpoint signing.
//! - [`store`]: a data directory of many named logs and the signing key.
//! - [`verify`]: offline verification of a log's files.
//!
//! # Invariants
//! - Only this crate writes log storage, and only [`log::Log`]'s writer
//!   thread appends entries.
//! - An append is acknowledged only after an fsync of its bytes succeeded.
//!   After a failed fsync a log refuses appends until reopened.
//! - Readers only ever see acknowledged (durable) entries.
//! - A checkpoint is signed only after proving it consistent with the last
//!   one signed.
//! - This crate knows nothing of HTTP, JSON events or the search index.

pub mod format;
pub mod log;
pub mod scan;
pub mod sim;
pub mod storage;
pub mod store;
pub mod verify;

pub use log::{
    AppendError, CompactError, CompactReport, ENTRIES_PREALLOCATE_BYTES, Log, LogConfig, LogStats, OpenError,
    ReadError, SignedCheckpoint,
};
pub use store::{LogStore, StoreConfig};
