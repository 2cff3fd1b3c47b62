//! The Custos event model: what an access event must contain, what the
//! server adds, and the exact bytes that are hashed.
//!
//! # Layout
//! - [`canonical`]: RFC 8785 (JCS) canonical JSON.
//! - [`doc`]: a JSON parser into borrowed [`doc::Node`]s, for the ingest paths.
//! - [`time`]: RFC 3339 timestamps without a date library.
//! - [`schema`]: validation of one event and sealing it into a log entry.
//!
//! # Invariants
//! Pure code: no I/O. `docs/events.md` is the specification this mirrors.

pub mod canonical;
pub mod doc;
pub mod schema;
pub mod time;

pub use schema::{EventError, MAX_EVENT_BYTES, ServerFields, View, check, seal, seal_event, validate};
