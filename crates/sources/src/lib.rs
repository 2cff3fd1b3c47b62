//! Sources: outside formats turned into Custos access events.
//!
//! # Layout
//! - [`syslog`]: RFC 5424 and RFC 3164 messages, RFC 6587 framing, and
//!   the common authentication messages (sshd, sudo, su, PAM).
//! - [`k8s`]: Kubernetes `audit.k8s.io` events from the webhook backend.
//!
//! # Invariants
//! Pure code: bytes in, event JSON out, no I/O. Parsers take outside input
//! and never panic (they are property-tested and fuzzed). Nothing is
//! dropped: what does not parse becomes an event flagged unparsed, with the
//! original in `raw_data`.

pub mod k8s;
pub mod otlp;
pub mod syslog;
