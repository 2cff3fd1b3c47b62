//! Server settings. Every limit is a named field with its default here.

use std::time::Duration;

/// A request body is at most this large by default, after decompression.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 << 20;
/// One event, as sent, is at most this large by default.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 64 << 10;
/// One request carries at most this many events.
pub const MAX_EVENTS_PER_REQUEST: usize = 100_000;
/// A range read returns at most this many entries.
pub const MAX_RANGE_ENTRIES: u64 = 1000;
/// Client `uid`s remembered per log for deduplicating retries.
pub const DEDUPE_WINDOW: usize = 1_000_000;
/// A request body must arrive within this by default (against slow
/// senders).
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// A connection that sends nothing for this long is closed by default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `?wait=checkpoint` waits for a covering checkpoint.
pub const CHECKPOINT_WAIT: Duration = Duration::from_secs(10);
/// How long `?wait=searchable` waits for the index to cover new events.
pub const SEARCHABLE_WAIT: Duration = Duration::from_secs(10);

/// A search gives up after this long by default (checked after each index
/// segment), answering 400.
pub const DEFAULT_SEARCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Searches and aggregations running at once, by default; each
/// aggregation may use up to `custos_index::engine::MAX_AGG_MEMORY_BYTES`.
pub const DEFAULT_SEARCHES_AT_ONCE: usize = 4;
/// How long a search waits for its turn when the others hold every one,
/// before it is answered 503.
pub const SEARCH_QUEUE_WAIT: Duration = Duration::from_secs(10);

/// How long each page of an export waits for a search turn before the
/// export stops (part way through, with an error).
pub const EXPORT_TURN_WAIT: Duration = Duration::from_secs(300);
/// Exports (`format=ndjson|csv|bundle`) streaming at once; one more is
/// answered 503. Each holds at most a few MiB (see `search::export`).
pub const MAX_EXPORTS_AT_ONCE: usize = 8;

/// Answers of many entries (entry ranges, entry bundles) being built or
/// sent at once; more wait up to `SEARCH_QUEUE_WAIT`, then get 503. Each
/// holds up to `MAX_RANGE_ENTRIES` entries of up to 64 KiB.
pub const MAX_BIG_READS_AT_ONCE: usize = 16;
/// Request bodies held at once by default, over every connection: bodies
/// being read, decompressed, parsed and stored (see `ingest::BodyRoom`).
pub const DEFAULT_MAX_BODY_BYTES_IN_FLIGHT: usize = 64 << 20;
/// How long a request waits for room among the bodies in flight before it
/// is answered 503.
pub const BODY_ROOM_WAIT: Duration = Duration::from_secs(10);

/// Settings of a running server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Largest request body, after decompression.
    pub max_body_bytes: usize,
    /// Largest single event as sent.
    pub max_event_bytes: usize,
    /// Request bodies held at once, over every connection.
    pub max_body_bytes_in_flight: usize,
    /// How often grown logs get a new signed checkpoint.
    pub checkpoint_interval: Duration,
    /// Longest wait for a request body.
    pub body_timeout: Duration,
    /// Longest silence on a connection.
    pub idle_timeout: Duration,
    /// A source silent for longer is reported.
    pub source_silence: Duration,
    /// Longest run of one search or aggregation (or one page of an export).
    pub search_timeout: Duration,
    /// Searches, aggregations and export pages running at once.
    pub searches_at_once: usize,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            max_body_bytes_in_flight: DEFAULT_MAX_BODY_BYTES_IN_FLIGHT,
            checkpoint_interval: Duration::from_millis(500),
            body_timeout: DEFAULT_BODY_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            source_silence: Duration::from_secs(300),
            search_timeout: DEFAULT_SEARCH_TIMEOUT,
            searches_at_once: DEFAULT_SEARCHES_AT_ONCE,
        }
    }
}
