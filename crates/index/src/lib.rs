//! Search over a log, derived from it and always rebuildable.
//!
//! # Layout
//! - [`query`]: the query language (`docs/query.md`): parser and a
//!   brute-force evaluator over event JSON, the model the index must match.
//! - [`engine`]: the tantivy index of one log: schema, indexing from the
//!   log, and queries translated to tantivy.
//! - [`unsynced`]: the index directory without fsyncs, and the marker that
//!   has an index rebuilt after a machine crash.
//!
//! # Invariants
//! The log is the only source of truth: the index stores no event data
//! that is not also in the log, records how many entries it covers, and is
//! deleted and rebuilt when missing, damaged or ahead of the log.

pub mod engine;
pub mod query;
pub mod unsynced;
