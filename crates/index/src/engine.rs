//! The tantivy index of one log.
//!
//! Each entry becomes one document: its log index, its times, a keyword
//! token `path=value` for every scalar of the event, every path present,
//! its free text (`message`, `raw_data`), its endpoint IPs and a few
//! numeric fields. No event data is stored in the index: hits are read
//! back from the log, with their proofs.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::ops::Bound as StdBound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tantivy::columnar::Column;

use std::borrow::Cow;

use custos_event::doc::{Node, Num};
use custos_log::Log;

use crate::unsynced;
use serde_json::Value;
use tantivy::collector::Count;
use tantivy::query::{
    AllQuery, BooleanQuery, EmptyQuery, ExistsQuery, Occur, PhraseQuery, Query as TQuery, RangeQuery, RegexQuery,
    TermQuery,
};
use tantivy::schema::{
    DateOptions, DateTimePrecision, FAST, Field, IndexRecordOption, IpAddrOptions, NumericOptions, Schema,
    TextFieldIndexing, TextOptions,
};
use tantivy::{DateTime, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::query::{self, Bound, DECIMAL_FIELDS, NUMERIC_FIELDS, Query, Value_};

/// Memory the index writer may use before flushing a segment.
pub const WRITER_MEMORY_BYTES: usize = 24 << 20;
/// Entries read from the log per indexing step.
pub const INDEX_BATCH_ENTRIES: u64 = 2000;
/// No merge produces a segment of more documents than this. A merge holds
/// its segments' columns in memory and maps their files: merging 2.5
/// million entries at once, after a burst, raised the server's RSS by
/// about 200 MB. A log of 10 M entries ends with 10 to 20 segments.
pub const MERGE_MAX_DOCS: u32 = 500_000;
/// With less free space than this where an index lives, an index that
/// fails to open or to take new entries is kept as it is rather than
/// deleted and rebuilt: the failure is most likely the full disk, and the
/// last commit still answers searches for the entries it covers.
pub const LOW_DISK_BYTES: u64 = 64 << 20;

/// Whether the filesystem of `dir` (or of its nearest existing parent) has
/// less than [`LOW_DISK_BYTES`] available; true if that cannot be told.
pub fn disk_low(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Some(at) = dir.ancestors().find(|d| d.exists()) else { return true };
    let Ok(c) = std::ffi::CString::new(at.as_os_str().as_bytes()) else { return true };
    // SAFETY: `c` is a NUL-terminated path and `st` a writable statvfs that
    // the call fills in; nothing else is touched.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return true;
    }
    (st.f_bavail as u64).saturating_mul(st.f_frsize as u64) < LOW_DISK_BYTES
}

/// tantivy's `LogMergePolicy`, with every merge cut to at most `max_docs`
/// documents, and segments of half that or more left alone.
#[derive(Debug)]
struct BoundedMergePolicy {
    inner: tantivy::indexer::LogMergePolicy,
    max_docs: u32,
}

impl BoundedMergePolicy {
    fn new(max_docs: u32) -> BoundedMergePolicy {
        let mut inner = tantivy::indexer::LogMergePolicy::default();
        inner.set_max_docs_before_merge((max_docs / 2) as usize);
        BoundedMergePolicy { inner, max_docs }
    }
}

impl tantivy::indexer::MergePolicy for BoundedMergePolicy {
    fn compute_merge_candidates(
        &self,
        segments: &[tantivy::index::SegmentMeta],
    ) -> Vec<tantivy::indexer::MergeCandidate> {
        let docs = |id: &tantivy::index::SegmentId| segments.iter().find(|m| m.id() == *id).map_or(0, |m| m.num_docs());
        let mut out = Vec::new();
        for candidate in self.inner.compute_merge_candidates(segments) {
            let mut ids = candidate.0;
            ids.sort_by_key(|id| docs(id));
            let mut chunk: Vec<tantivy::index::SegmentId> = Vec::new();
            let mut sum = 0u32;
            for id in ids {
                let n = docs(&id);
                if !chunk.is_empty() && sum.saturating_add(n) > self.max_docs {
                    if chunk.len() > 1 {
                        out.push(tantivy::indexer::MergeCandidate(std::mem::take(&mut chunk)));
                    }
                    chunk.clear();
                    sum = 0;
                }
                chunk.push(id);
                sum = sum.saturating_add(n);
            }
            if chunk.len() > 1 {
                out.push(tantivy::indexer::MergeCandidate(chunk));
            }
        }
        out
    }
}
/// Hits per page, at most.
pub const MAX_PAGE_HITS: usize = 1000;
const HOUR_NS: i64 = 3_600_000_000_000;
const DAY_NS: i64 = 24 * HOUR_NS;
/// A bounded time range is split into at most this many hour and day
/// terms; wider ones use a plain range.
const MAX_TIME_TERMS: i64 = 400;

/// A keyword value longer than this is indexed only by its first bytes.
const MAX_KEYWORD_BYTES: usize = 256;

/// Why the index failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// tantivy failed.
    #[error("search index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    /// The log could not be read.
    #[error("reading the log for indexing: {0}")]
    Log(#[from] custos_log::ReadError),
    /// The index directory could not be managed.
    #[error("search index directory: {0}")]
    Io(#[from] std::io::Error),
    /// The query cannot run.
    #[error("{0}")]
    Query(String),
    /// The search ran past its deadline (see [`Prepared::until`]), checked
    /// after each segment: the overrun is one segment's work at most (no
    /// merge makes one of more than [`MERGE_MAX_DOCS`] entries).
    #[error("the search ran past its time limit")]
    TimedOut,
}

/// Fields that top-N counts work on, each kept as a fast column.
pub const AGG_FIELDS: &[&str] = &[
    "actor.user.name",
    "activity",
    "status",
    "resource.name",
    "resource.type",
    "src_endpoint.ip",
    "src_endpoint.hostname",
    "dst_endpoint.hostname",
    "submitter.name",
    // What was acted on: a statement's tables, a Kubernetes object.
    "targets.name",
    "targets.type",
];
/// Buckets an aggregation may return, at most.
pub const MAX_BUCKETS: u32 = 10_000;
/// Memory an aggregation may use, at most.
pub const MAX_AGG_MEMORY_BYTES: u64 = 256 << 20;

struct Fields {
    aggs: Vec<(&'static str, Field)>,
    index: Field,
    time: Field,
    /// Hours and days since the epoch of `time`, so that a range over whole
    /// hours or days is a union of a few terms that an intersection can
    /// skip through, rather than a bitset of every matching entry.
    time_hour: Field,
    time_day: Field,
    received_at: Field,
    kv: Field,
    has: Field,
    text: Field,
    src_ip: Field,
    dst_ip: Field,
    nums: Vec<(&'static str, Field)>,
    decimals: Vec<(&'static str, Field)>,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    // Entry numbers, times, addresses and numbers are fast columns only, with
    // no terms: every query on them is a range, which tantivy answers from
    // the column. Terms would cost a nearly unique term per entry for
    // `index`, `time` and `received_at`.
    let date = DateOptions::default().set_fast().set_precision(DateTimePrecision::Nanoseconds);
    let ip = IpAddrOptions::default().set_fast();
    let num = NumericOptions::default().set_fast();
    // No field keeps fieldnorms (tantivy's STRING, TEXT and INDEXED do):
    // they serve relevance scoring, and hits are ordered by entry number,
    // never scored. They cost a byte per entry for every such field, about
    // a third of the index.
    let terms = |tokenizer: &str, record: IndexRecordOption| {
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default().set_tokenizer(tokenizer).set_index_option(record).set_fieldnorms(false),
        )
    };
    let keyword = terms("raw", IndexRecordOption::Basic);
    let words = terms("default", IndexRecordOption::WithFreqsAndPositions);
    let unit = NumericOptions::default().set_indexed();
    let f = Fields {
        aggs: AGG_FIELDS.iter().map(|p| (*p, b.add_text_field(&format!("a.{p}"), keyword.clone() | FAST))).collect(),
        index: b.add_u64_field("index", FAST),
        time: b.add_date_field("time", date.clone()),
        time_hour: b.add_u64_field("time_hour", unit.clone()),
        time_day: b.add_u64_field("time_day", unit),
        received_at: b.add_date_field("received_at", date),
        kv: b.add_text_field("kv", keyword.clone()),
        has: b.add_text_field("has", keyword),
        text: b.add_text_field("text", words),
        src_ip: b.add_ip_addr_field("src_ip", ip.clone()),
        dst_ip: b.add_ip_addr_field("dst_ip", ip),
        nums: NUMERIC_FIELDS.iter().map(|p| (*p, b.add_u64_field(&format!("n.{p}"), num.clone()))).collect(),
        decimals: DECIMAL_FIELDS.iter().map(|p| (*p, b.add_f64_field(&format!("d.{p}"), num.clone()))).collect(),
    };
    (b.build(), f)
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

fn cut(s: &str) -> &str {
    &s[..s.floor_char_boundary(MAX_KEYWORD_BYTES)]
}

/// Adds `path=value` and path tokens for every scalar under `v`.
fn flatten(doc: &mut TantivyDocument, f: &Fields, path: &mut String, v: &Node<'_>) {
    match v {
        Node::Null => {}
        Node::Arr(a) => {
            for x in a {
                flatten(doc, f, path, x);
            }
        }
        Node::Obj(m) => {
            if !path.is_empty() && !query::ALWAYS_PRESENT.contains(&path.as_str()) {
                doc.add_text(f.has, path.as_str());
            }
            for (k, x) in m {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                flatten(doc, f, path, x);
                path.truncate(len);
            }
        }
        scalar => {
            let text = scalar_text(scalar);
            let agg = AGG_FIELDS.contains(&path.as_str());
            // A value in a field's own keyword column shows that it
            // exists; no token is needed for that.
            if !(query::ALWAYS_PRESENT.contains(&path.as_str()) || agg && text.is_some()) {
                doc.add_text(f.has, path.as_str());
            }
            // Free text is tokenised into its own field; times are matched
            // on their date fields (a keyword per event would be a distinct
            // term for nearly every entry).
            // Fields with a keyword column of their own are matched there.
            if query::TEXT_FIELDS.contains(&path.as_str()) || query::TIME_FIELDS.contains(&path.as_str()) || agg {
                return;
            }
            // Numbers of a decimal field are matched on its column alone.
            if matches!(scalar, Node::Num(_)) && query::DECIMAL_FIELDS.contains(&path.as_str()) {
                return;
            }
            if let Some(t) = text {
                doc.add_text(f.kv, format!("{path}={}", cut(&t)));
            }
        }
    }
}

/// [`query::scalar_text`] over a [`Node`]: numbers print as `serde_json`
/// prints them, so that the index and the brute-force evaluator agree.
fn scalar_text<'n>(v: &'n Node<'_>) -> Option<Cow<'n, str>> {
    match v {
        Node::Str(s) => Some(Cow::Borrowed(s)),
        Node::Num(Num::U(u)) => Some(Cow::Owned(u.to_string())),
        Node::Num(Num::I(i)) => Some(Cow::Owned(i.to_string())),
        Node::Num(Num::F(x)) => serde_json::Number::from_f64(*x).map(|n| Cow::Owned(n.to_string())),
        Node::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

fn date(ns: i64) -> DateTime {
    DateTime::from_timestamp_nanos(ns)
}

fn document(f: &Fields, index: u64, entry: &[u8]) -> TantivyDocument {
    let mut doc = TantivyDocument::default();
    doc.add_u64(f.index, index);
    // Entries are canonical JSON: parsed into borrowed nodes, no copies.
    let Ok(e) = custos_event::doc::parse(entry) else { return doc };
    for (field, name) in [(f.time, "time"), (f.received_at, "received_at")] {
        if let Some(ns) = e.get(name).and_then(Node::as_str).and_then(|s| custos_event::time::parse_rfc3339(s).ok()) {
            doc.add_date(field, date(ns));
            if name == "time" && ns >= 0 {
                doc.add_u64(f.time_hour, (ns / HOUR_NS) as u64);
                doc.add_u64(f.time_day, (ns / DAY_NS) as u64);
            }
        }
    }
    for (field, name) in [(f.src_ip, "src_endpoint"), (f.dst_ip, "dst_endpoint")] {
        let ip = e.get(name).and_then(|x| x.get("ip")).and_then(Node::as_str);
        if let Some(ip) = ip.and_then(|s| s.parse::<IpAddr>().ok()) {
            doc.add_ip_addr(field, v6(ip));
        }
    }
    for (path, field) in &f.nums {
        for v in query::values_at(&e, path) {
            if let Some(n) = v.as_u64() {
                doc.add_u64(*field, n);
            }
        }
    }
    for (path, field) in &f.decimals {
        for v in query::values_at(&e, path) {
            if let Some(n) = v.as_f64() {
                // -0 as 0, as range bounds are (query::decimal).
                doc.add_f64(*field, n + 0.0);
            }
        }
    }
    for name in query::TEXT_FIELDS {
        if let Some(s) = e.get(name).and_then(Node::as_str) {
            doc.add_text(f.text, s);
        }
    }
    for (path, field) in &f.aggs {
        let found = query::values_at(&e, path);
        if found.len() <= 1 {
            // The common case, with nothing to collect.
            if let Some(t) = found.first().and_then(|v| scalar_text(v)) {
                doc.add_text(*field, cut(&t));
            }
            continue;
        }
        // Each value once: an aggregation counts events, and tantivy counts
        // every value a document holds (a table named twice in a statement).
        let mut values: Vec<Cow<'_, str>> = found.into_iter().filter_map(scalar_text).collect();
        values.sort_unstable();
        values.dedup_by(|a, b| cut(a) == cut(b));
        for t in &values {
            doc.add_text(*field, cut(t));
        }
    }
    flatten(&mut doc, f, &mut String::new(), &e);
    doc
}

/// The `limit` hits with the highest (or lowest) entry numbers, read from
/// the kept `index` columns.
struct TopByIndex {
    limit: usize,
    newest_first: bool,
    /// Only entries after this one in the page order: a cursor.
    after: Option<u64>,
    segments: Arc<Segments>,
}

struct TopByIndexSegment {
    limit: usize,
    newest_first: bool,
    /// The key of the cursor: only smaller keys qualify.
    below: Option<u64>,
    column: Option<Column<u64>>,
    /// The best `limit` entry numbers so far, as keys (see
    /// [`TopByIndexSegment::key`]), worst on top.
    heap: std::collections::BinaryHeap<std::cmp::Reverse<u64>>,
}

impl TopByIndexSegment {
    /// A key that is larger the better the entry number: the number itself
    /// newest first, its complement oldest first. Its own inverse.
    fn key(&self, index: u64) -> u64 {
        if self.newest_first { index } else { !index }
    }
}

impl tantivy::collector::Collector for TopByIndex {
    type Fruit = Vec<u64>;
    type Child = TopByIndexSegment;

    fn for_segment(&self, _: u32, reader: &tantivy::SegmentReader) -> tantivy::Result<TopByIndexSegment> {
        let column = match self.segments.get(&reader.segment_id()).and_then(|s| s.index.as_ref()) {
            Some(c) => Some(c.clone()),
            None => reader.fast_fields().u64("index").ok(),
        };
        let mut s = TopByIndexSegment {
            limit: self.limit,
            newest_first: self.newest_first,
            below: None,
            column,
            heap: Default::default(),
        };
        s.below = self.after.map(|c| s.key(c));
        Ok(s)
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Vec<u64>>) -> tantivy::Result<Vec<u64>> {
        let mut all: Vec<u64> = fruits.into_iter().flatten().collect();
        if self.newest_first {
            all.sort_unstable_by(|a, b| b.cmp(a));
        } else {
            all.sort_unstable();
        }
        all.truncate(self.limit);
        Ok(all)
    }
}

impl tantivy::collector::SegmentCollector for TopByIndexSegment {
    type Fruit = Vec<u64>;

    fn collect(&mut self, doc: tantivy::DocId, _: tantivy::Score) {
        let Some(v) = self.column.as_ref().and_then(|c| c.first(doc)) else { return };
        let key = self.key(v);
        // Entries up to the cursor were on earlier pages.
        if self.below.is_some_and(|b| key >= b) {
            return;
        }
        if self.heap.len() < self.limit {
            self.heap.push(std::cmp::Reverse(key));
        } else if self.heap.peek().is_some_and(|worst| key > worst.0) {
            self.heap.pop();
            self.heap.push(std::cmp::Reverse(key));
        }
    }

    fn harvest(self) -> Vec<u64> {
        self.heap.iter().map(|r| self.key(r.0)).collect()
    }
}

/// The index of one log.
pub struct LogIndex {
    dir: PathBuf,
    reader: IndexReader,
    /// `None` once closed.
    writer: Mutex<Option<IndexWriter>>,
    fields: Fields,
    /// Whether commits skip fsync (see [`crate::unsynced`]).
    unsynced: bool,
    /// The `index` column and time span of each segment of the last
    /// searcher.
    segments: Mutex<Arc<Segments>>,
    /// How many entries the last commit covers, as its payload says: kept
    /// here because reading it back parses `meta.json` and the whole schema
    /// (a search answer gives it, and this took longer than the search).
    /// Set as soon as the commit is made, just before searches see it.
    committed: std::sync::atomic::AtomicU64,
    /// How many entries searches see: `committed`, once the reader was
    /// reloaded after the commit.
    visible: std::sync::atomic::AtomicU64,
    /// Segments that searches skipped as outside their time span.
    skipped: std::sync::atomic::AtomicU64,
    /// Segments whose matches a search only counted: none could make its page.
    counted_only: std::sync::atomic::AtomicU64,
}

/// A wildcard's regular expression as a query. One whose automaton is over
/// tantivy's size limit is the query's fault (400), not the index's.
fn wildcard(pattern: &str, field: Field) -> Result<RegexQuery, IndexError> {
    RegexQuery::from_pattern(pattern, field).map_err(|e| match e {
        tantivy::TantivyError::InvalidArgument(m) => {
            IndexError::Query(format!("a wildcard term is too complex to search for: {m}"))
        }
        other => IndexError::Tantivy(other),
    })
}

/// A query checked and translated by [`LogIndex::prepare`].
pub struct Prepared {
    query: Box<dyn TQuery>,
    /// `[lo, hi)` in nanoseconds: every match has its `time` in it.
    time: (i64, i64),
    /// When to give up, if ever.
    deadline: Option<std::time::Instant>,
}

impl Prepared {
    /// Gives up with [`IndexError::TimedOut`] once `deadline` has passed.
    pub fn until(mut self, deadline: std::time::Instant) -> Prepared {
        self.set_deadline(deadline);
        self
    }

    /// [`Prepared::until`] in place: a query run again (an export's pages)
    /// with a new deadline each time.
    pub fn set_deadline(&mut self, deadline: std::time::Instant) {
        self.deadline = Some(deadline);
    }

    /// Whether the deadline has passed.
    fn late(&self) -> bool {
        past(self.deadline)
    }
}

/// Whether `deadline`, if any, has passed.
fn past(deadline: Option<std::time::Instant>) -> bool {
    deadline.is_some_and(|d| std::time::Instant::now() >= d)
}

/// What a search keeps of each segment, by ID.
type Segments = HashMap<tantivy::index::SegmentId, SegmentInfo>;

/// What a search keeps of one segment.
struct SegmentInfo {
    /// Its `index` column: opening it rebuilds its block table.
    index: Option<Column<u64>>,
    /// The earliest and latest `time` in it (nanoseconds, inclusive);
    /// `None` if it has none or the column cannot be read.
    time: Option<(i64, i64)>,
}

impl SegmentInfo {
    /// The lowest and highest entry numbers in it; `None` if unknown.
    fn span(&self) -> Option<(u64, u64)> {
        self.index.as_ref().filter(|c| c.values.num_vals() > 0).map(|c| (c.min_value(), c.max_value()))
    }

    /// Whether every time in it lies outside `[lo, hi)`, so that a search
    /// whose matches all lie in that span can skip it.
    fn outside(&self, (lo, hi): (i64, i64)) -> bool {
        (lo, hi) != ALL_TIME && self.time.is_some_and(|(min, max)| max < lo || min >= hi)
    }
}

/// Every time in a search's answers: `[lo, hi)` in nanoseconds.
const ALL_TIME: (i64, i64) = (i64::MIN, i64::MAX);

/// The span of `time` that every match of `q` lies in, `[lo, hi)` in
/// nanoseconds, or [`ALL_TIME`]. Conservative: anything it cannot bound,
/// such as `NOT`, or a time it cannot read, bounds nothing.
fn required_time(q: &Query, now_ns: i64) -> (i64, i64) {
    let t = |x: &String| query::resolve_time(x, now_ns);
    match q {
        Query::And(qs) => {
            qs.iter().map(|q| required_time(q, now_ns)).fold(ALL_TIME, |a, b| (a.0.max(b.0), a.1.min(b.1)))
        }
        Query::Or(qs) if !qs.is_empty() => {
            qs.iter().map(|q| required_time(q, now_ns)).fold((i64::MAX, i64::MIN), |a, b| (a.0.min(b.0), a.1.max(b.1)))
        }
        Query::Field(f, Value_::Range(lo, hi)) if f == "time" => time_span(lo, hi, now_ns).unwrap_or(ALL_TIME),
        Query::Field(f, Value_::Exact(x) | Value_::Phrase(x)) if f == "time" && x.len() == 10 => {
            t(x).map_or(ALL_TIME, |day| (day, day.saturating_add(86_400_000_000_000)))
        }
        _ => ALL_TIME,
    }
}

/// `[lo, hi)` in nanoseconds of a range on a time field, an open side
/// being `i64::MIN` or `i64::MAX`; or the bound that is not a time.
fn time_span<'b>(lo: &'b Bound, hi: &'b Bound, now_ns: i64) -> Result<(i64, i64), &'b String> {
    let t = |x: &'b String| query::resolve_time(x, now_ns).ok_or(x);
    let lo = match lo {
        Bound::Unbounded => i64::MIN,
        Bound::Included(x) => t(x)?,
        Bound::Excluded(x) => t(x)?.saturating_add(1),
    };
    let hi = match hi {
        Bound::Unbounded => i64::MAX,
        Bound::Included(x) => t(x)?.saturating_add(1),
        Bound::Excluded(x) => t(x)?,
    };
    Ok((lo, hi))
}

/// A collector that skips every segment whose times all lie outside the
/// query's span, without building its scorers: a day's query over 30 days
/// of log opens the postings of a few segments, not all of them.
struct Pruned<'a, C> {
    inner: C,
    time: (i64, i64),
    segments: Arc<Segments>,
    /// Counts the segments skipped.
    skipped: &'a std::sync::atomic::AtomicU64,
    /// Checked after each segment.
    deadline: Option<std::time::Instant>,
    /// Set when a segment ended past the deadline (the search then fails).
    late: std::sync::atomic::AtomicBool,
}

impl<C: tantivy::collector::Collector> tantivy::collector::Collector for Pruned<'_, C> {
    type Fruit = C::Fruit;
    type Child = C::Child;

    fn for_segment(&self, ord: u32, reader: &tantivy::SegmentReader) -> tantivy::Result<C::Child> {
        self.inner.for_segment(ord, reader)
    }

    fn requires_scoring(&self) -> bool {
        self.inner.requires_scoring()
    }

    fn merge_fruits(
        &self,
        fruits: Vec<<C::Child as tantivy::collector::SegmentCollector>::Fruit>,
    ) -> tantivy::Result<C::Fruit> {
        self.inner.merge_fruits(fruits)
    }

    fn collect_segment(
        &self,
        weight: &dyn tantivy::query::Weight,
        ord: u32,
        reader: &tantivy::SegmentReader,
    ) -> tantivy::Result<<C::Child as tantivy::collector::SegmentCollector>::Fruit> {
        if self.segments.get(&reader.segment_id()).is_some_and(|s| s.outside(self.time)) {
            use tantivy::collector::SegmentCollector;
            self.skipped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(self.inner.for_segment(ord, reader)?.harvest());
        }
        let fruit = self.inner.collect_segment(weight, ord, reader)?;
        if past(self.deadline) {
            self.late.store(true, std::sync::atomic::Ordering::Relaxed);
            return Err(tantivy::TantivyError::InternalError("past the deadline".into()));
        }
        Ok(fruit)
    }
}

fn indexed_count(index: &Index) -> Result<u64, IndexError> {
    let metas = index.load_metas()?;
    Ok(metas.payload.as_deref().and_then(|p| p.parse().ok()).unwrap_or(0))
}

impl LogIndex {
    /// Opens the index in `dir` for a log of `log_size` entries. A missing,
    /// unreadable, or ahead-of-the-log index is deleted and started afresh:
    /// it is derived data.
    pub fn open(dir: &Path, log_size: u64) -> Result<LogIndex, IndexError> {
        Self::open_with(dir, log_size, 1, WRITER_MEMORY_BYTES)
    }

    /// [`LogIndex::open`] for a rebuild by `custos reindex` with the server
    /// stopped: `threads` indexing threads sharing `memory_bytes` of
    /// buffers (more memory means fewer, larger segments to merge).
    pub fn open_with(dir: &Path, log_size: u64, threads: usize, memory_bytes: usize) -> Result<LogIndex, IndexError> {
        let boot = unsynced::boot_id();
        if let Some(b) = &boot
            && let unsynced::Marker::OpenOtherBoot(old) = unsynced::read_marker(dir, b)
        {
            tracing::warn!(dir = %dir.display(), boot = old, "index was open when the machine went down; rebuilding");
            std::fs::remove_dir_all(dir)?;
        }
        match Self::try_open(dir, threads, memory_bytes, boot.as_deref()) {
            Ok(ix) if ix.indexed()? <= log_size => return Ok(ix),
            Ok(ix) => {
                tracing::warn!(dir = %dir.display(), indexed = ix.indexed()?, log_size, "index is ahead of the log; rebuilding")
            }
            // Another writer has it open: the index is in use, not damaged,
            // and deleting it would pull it from under that writer.
            Err(e @ IndexError::Tantivy(tantivy::TantivyError::LockFailure(..))) => return Err(e),
            // Out of space, a rebuild could not be written either: keep
            // what there is (searches report how much it covers).
            Err(e) if disk_low(dir) => return Err(e),
            Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "index unusable; rebuilding"),
        }
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        Self::try_open(dir, threads, memory_bytes, boot.as_deref())
    }

    fn try_open(dir: &Path, threads: usize, memory_bytes: usize, boot: Option<&str>) -> Result<LogIndex, IndexError> {
        std::fs::create_dir_all(dir)?;
        let (schema, fields) = schema();
        let dir_err =
            |e: tantivy::directory::error::OpenDirectoryError| IndexError::Io(std::io::Error::other(e.to_string()));
        let index = match boot {
            Some(b) => {
                // Durably marked open before anything is written unsynced.
                unsynced::mark_open(dir, b)?;
                Index::open_or_create(unsynced::UnsyncedDirectory::open(dir).map_err(dir_err)?, schema)?
            }
            None => Index::open_or_create(tantivy::directory::MmapDirectory::open(dir).map_err(dir_err)?, schema)?,
        };
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        // One merge at a time per indexing thread: every merge holds its
        // segments' columns and maps their files, and tantivy's default of
        // four at once took the server's peak RSS from about 230 to 350 MB
        // after a burst.
        let options = tantivy::indexer::IndexWriterOptions::builder()
            .num_worker_threads(threads)
            .memory_budget_per_thread(memory_bytes / threads.max(1))
            .num_merge_threads(threads)
            .build();
        let writer: IndexWriter = index.writer_with_options(options)?;
        writer.set_merge_policy(Box::new(BoundedMergePolicy::new(MERGE_MAX_DOCS)));
        let indexed = indexed_count(&index)?;
        Ok(LogIndex {
            dir: dir.to_path_buf(),
            reader,
            writer: Mutex::new(Some(writer)),
            fields,
            unsynced: boot.is_some(),
            segments: Mutex::new(Arc::new(HashMap::new())),
            committed: indexed.into(),
            visible: indexed.into(),
            skipped: 0.into(),
            counted_only: 0.into(),
        })
    }

    /// Stops indexing: waits for background merges, syncs every file and
    /// marks the index clean. Searches still work; [`LogIndex::catch_up`]
    /// then fails.
    pub fn close(&self) -> Result<(), IndexError> {
        let Some(writer) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return Ok(());
        };
        writer.wait_merging_threads()?;
        if self.unsynced {
            unsynced::mark_clean(&self.dir)?;
        }
        Ok(())
    }

    /// Stops indexing after a failure, keeping the files as they are: the
    /// writer is dropped (its lock released, so that the index can be
    /// opened again from its last commit), and searches go on.
    pub fn release_writer(&self) {
        drop(self.writer.lock().unwrap_or_else(|e| e.into_inner()).take());
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many segments searches have skipped, since open, because every
    /// time in them lies outside the query's.
    pub fn segments_skipped(&self) -> u64 {
        self.skipped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many segments searches have only counted, since open, because
    /// none of their matches could make the page asked for.
    pub fn segments_counted_only(&self) -> u64 {
        self.counted_only.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many log entries searches see (entries `0..n`): a search begun
    /// after this returned `n` finds every match among them.
    pub fn indexed(&self) -> Result<u64, IndexError> {
        Ok(self.visible.load(std::sync::atomic::Ordering::Acquire))
    }

    /// Indexes up to `max` new entries of `log` and commits; returns how
    /// many were added. Searches see them once this returns.
    pub fn catch_up(&self, log: &Log, max: u64) -> Result<u64, IndexError> {
        let mut guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let writer = guard.as_mut().ok_or_else(|| IndexError::Io(std::io::Error::other("the index is closed")))?;
        let start = self.committed.load(std::sync::atomic::Ordering::Acquire);
        let end = log.size().min(start + max);
        if end <= start {
            return Ok(0);
        }
        let mut at = start;
        while at < end {
            let stop = (at + INDEX_BATCH_ENTRIES).min(end);
            for (i, e) in log.entries(at, stop)?.iter().enumerate() {
                writer.add_document(document(&self.fields, at + i as u64, e))?;
            }
            at = stop;
        }
        let mut commit = writer.prepare_commit()?;
        commit.set_payload(&end.to_string());
        commit.commit()?;
        // Stored before the reload, which can fail, so that the next step
        // never adds these entries again.
        self.committed.store(end, std::sync::atomic::Ordering::Release);
        self.reader.reload()?;
        self.visible.store(end, std::sync::atomic::Ordering::Release);
        Ok(end - start)
    }

    /// Log indexes of matching entries, newest first (or oldest first),
    /// after `cursor` (exclusive), at most `limit`; and the total count of
    /// matches.
    pub fn search(
        &self,
        q: &Query,
        limit: usize,
        cursor: Option<u64>,
        newest_first: bool,
        now_ns: i64,
    ) -> Result<(Vec<u64>, usize), IndexError> {
        self.search_prepared(&self.prepare(q, now_ns)?, limit, cursor, newest_first)
    }

    /// Checks `q` against the limits and translates it for this index,
    /// with relative times taken from `now_ns`. Every error of the query
    /// itself ([`IndexError::Query`]) comes from here, none from
    /// [`LogIndex::search_prepared`].
    pub fn prepare(&self, q: &Query, now_ns: i64) -> Result<Prepared, IndexError> {
        query::check(q).map_err(IndexError::Query)?;
        Ok(Prepared { query: self.translate(q, now_ns)?, time: required_time(q, now_ns), deadline: None })
    }

    /// [`LogIndex::search`] of a prepared query.
    pub fn search_prepared(
        &self,
        q: &Prepared,
        limit: usize,
        cursor: Option<u64>,
        newest_first: bool,
    ) -> Result<(Vec<u64>, usize), IndexError> {
        use tantivy::collector::Collector;
        let limit = limit.clamp(1, MAX_PAGE_HITS);
        let searcher = self.reader.searcher();
        let segments = self.segments(&searcher);
        let weight = q.query.weight(tantivy::query::EnableScoring::disabled_from_searcher(&searcher))?;
        // The page and the count in one pass over each segment; the
        // collector skips what the cursor already covered. (A range query on
        // the `index` column here scanned the whole column of segments
        // holding only newer entries.)
        let page = (Count, TopByIndex { limit, newest_first, after: cursor, segments: segments.clone() });
        let key = |index: u64| if newest_first { index } else { !index };
        // Keys below this one are on later pages: the cursor's own key.
        let below = cursor.map_or(u64::MAX, key);
        // Each segment's keys, lowest and highest: entry numbers grow with
        // the segment's place in the log, so the segments holding the best
        // keys go first, and once the page is full, a segment whose best
        // key cannot make it is only counted (a term's count is its
        // document frequency: no postings are read).
        let mut order: Vec<(u32, &tantivy::SegmentReader, (u64, u64))> = searcher
            .segment_readers()
            .iter()
            .enumerate()
            .map(|(ord, r)| {
                let keys = match segments.get(&r.segment_id()).and_then(SegmentInfo::span) {
                    Some((lo, hi)) if newest_first => (lo, hi),
                    Some((lo, hi)) => (key(hi), key(lo)),
                    None => (0, u64::MAX),
                };
                (ord as u32, r, keys)
            })
            .collect();
        order.sort_by_key(|o| std::cmp::Reverse(o.2.1));
        let mut total = 0usize;
        let mut hits: Vec<u64> = Vec::new();
        for (ord, reader, (klo, khi)) in order {
            if segments.get(&reader.segment_id()).is_some_and(|s| s.outside(q.time)) {
                self.skipped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                continue;
            }
            let best = khi.min(below.saturating_sub(1));
            let full = hits.len() == limit;
            let worst = hits.last().map(|&i| key(i));
            if klo >= below || (full && worst.is_some_and(|w| best < w)) {
                self.counted_only.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                total += weight.count(reader)? as usize;
                if q.late() {
                    return Err(IndexError::TimedOut);
                }
                continue;
            }
            let (count, seg_hits) = page.collect_segment(weight.as_ref(), ord, reader)?;
            total += count;
            hits = page.1.merge_fruits(vec![hits, seg_hits])?;
            if q.late() {
                return Err(IndexError::TimedOut);
            }
        }
        Ok((hits, total))
    }

    /// Runs `q` into the collector that `make` builds from the segments'
    /// kept columns, skipping the segments outside `q`'s time span.
    fn collect<C: tantivy::collector::Collector>(
        &self,
        q: &Prepared,
        make: impl FnOnce(Arc<Segments>) -> C,
    ) -> Result<C::Fruit, IndexError> {
        let searcher = self.reader.searcher();
        let segments = self.segments(&searcher);
        let pruned = Pruned {
            inner: make(segments.clone()),
            time: q.time,
            segments,
            skipped: &self.skipped,
            deadline: q.deadline,
            late: Default::default(),
        };
        searcher.search(q.query.as_ref(), &pruned).map_err(|e| {
            if pruned.late.load(std::sync::atomic::Ordering::Relaxed) { IndexError::TimedOut } else { e.into() }
        })
    }

    /// The `index` column and time span of every segment of `searcher`,
    /// read once per segment and kept: opening the column rebuilds its
    /// block table, which took a third of the CPU of a selective search on
    /// 10 M entries.
    fn segments(&self, searcher: &tantivy::Searcher) -> Arc<Segments> {
        let mut cache = self.segments.lock().unwrap_or_else(|e| e.into_inner());
        let readers = searcher.segment_readers();
        let current = readers.len() == cache.len() && readers.iter().all(|r| cache.contains_key(&r.segment_id()));
        if !current {
            let mut next = HashMap::with_capacity(readers.len());
            for r in readers {
                let id = r.segment_id();
                let info = match cache.get(&id) {
                    Some(c) => SegmentInfo { index: c.index.clone(), time: c.time },
                    None => SegmentInfo {
                        index: r.fast_fields().u64("index").ok(),
                        time: r.fast_fields().date("time").ok().and_then(|c| {
                            (c.values.num_vals() > 0)
                                .then(|| (c.min_value().into_timestamp_nanos(), c.max_value().into_timestamp_nanos()))
                        }),
                    },
                };
                next.insert(id, info);
            }
            *cache = Arc::new(next);
        }
        cache.clone()
    }

    /// Counts of matching events: the `top` most frequent values of `by`
    /// (one of [`AGG_FIELDS`]), or, with `interval` (such as `1h`), a date
    /// histogram of `time`. Returns `(key, count)` pairs.
    pub fn aggregate(
        &self,
        q: &Query,
        by: Option<&str>,
        top: u32,
        interval: Option<&str>,
        now_ns: i64,
    ) -> Result<Vec<(Value, u64)>, IndexError> {
        self.aggregate_prepared(&self.prepare(q, now_ns)?, by, top, interval)
    }

    /// [`LogIndex::aggregate`] of a prepared query.
    pub fn aggregate_prepared(
        &self,
        q: &Prepared,
        by: Option<&str>,
        top: u32,
        interval: Option<&str>,
    ) -> Result<Vec<(Value, u64)>, IndexError> {
        use tantivy::aggregation::agg_req::Aggregations;
        use tantivy::aggregation::{AggregationCollector, AggregationLimitsGuard};
        let req = match (by, interval) {
            (Some(field), None) => {
                if !AGG_FIELDS.contains(&field) {
                    return Err(IndexError::Query(format!(
                        "by={field} is not countable; use one of {}",
                        AGG_FIELDS.join(", ")
                    )));
                }
                serde_json::json!({"a": {"terms": {"field": format!("a.{field}"), "size": top.clamp(1, MAX_BUCKETS)}}})
            }
            (None, Some(iv)) => {
                if !iv.ends_with(['s', 'm', 'h', 'd']) || iv[..iv.len() - 1].parse::<u32>().map_or(true, |n| n == 0) {
                    return Err(IndexError::Query(format!("interval {iv:?} is not like 30m, 1h or 1d")));
                }
                serde_json::json!({"a": {"date_histogram": {"field": "time", "fixed_interval": iv}}})
            }
            _ => return Err(IndexError::Query("give exactly one of by= or interval=".into())),
        };
        let aggs: Aggregations = serde_json::from_value(req).map_err(|e| IndexError::Query(e.to_string()))?;
        let limits = AggregationLimitsGuard::new(Some(MAX_AGG_MEMORY_BYTES), Some(MAX_BUCKETS));
        let collector = AggregationCollector::from_aggs(aggs, limits);
        let res = self.collect(q, |_| collector).map_err(|e| match e {
            IndexError::Tantivy(tantivy::TantivyError::AggregationError(a)) => {
                IndexError::Query(format!("aggregation over its limits: {a}"))
            }
            other => other,
        })?;
        let v = serde_json::to_value(&res).map_err(|e| IndexError::Query(e.to_string()))?;
        let buckets = v["a"]["buckets"].as_array().cloned().unwrap_or_default();
        Ok(buckets
            .into_iter()
            .map(|b| {
                let key = match (&b["key_as_string"], &b["key"]) {
                    (Value::String(s), _) => Value::String(s.clone()),
                    (_, k) => k.clone(),
                };
                (key, b["doc_count"].as_u64().unwrap_or(0))
            })
            .collect())
    }

    /// The number of matches.
    pub fn count(&self, q: &Query, now_ns: i64) -> Result<usize, IndexError> {
        self.collect(&self.prepare(q, now_ns)?, |_| Count)
    }

    fn translate(&self, q: &Query, now_ns: i64) -> Result<Box<dyn TQuery>, IndexError> {
        Ok(match q {
            Query::All => Box::new(AllQuery),
            Query::And(qs) => Box::new(BooleanQuery::new(
                qs.iter().map(|q| Ok((Occur::Must, self.translate(q, now_ns)?))).collect::<Result<_, IndexError>>()?,
            )),
            Query::Or(qs) => Box::new(BooleanQuery::new(
                qs.iter()
                    .map(|q| Ok((Occur::Should, self.translate(q, now_ns)?)))
                    .collect::<Result<_, IndexError>>()?,
            )),
            Query::Not(q) => Box::new(BooleanQuery::new(vec![
                (Occur::Must, Box::new(AllQuery) as Box<dyn TQuery>),
                (Occur::MustNot, self.translate(q, now_ns)?),
            ])),
            Query::Text(v) => self.text(v)?,
            Query::Field(field, v) => self.field(field, v, now_ns)?,
        })
    }

    fn text(&self, v: &Value_) -> Result<Box<dyn TQuery>, IndexError> {
        let f = self.fields.text;
        let term = |t: &str| Term::from_field_text(f, t);
        Ok(match v {
            Value_::Exact(w) => {
                let toks = query::tokens(w);
                if toks.is_empty() {
                    return Ok(Box::new(EmptyQuery));
                }
                Box::new(BooleanQuery::new(
                    toks.iter()
                        .map(|t| {
                            (
                                Occur::Must,
                                Box::new(TermQuery::new(term(t), IndexRecordOption::Basic)) as Box<dyn TQuery>,
                            )
                        })
                        .collect(),
                ))
            }
            Value_::Phrase(p) => {
                let toks = query::tokens(p);
                match toks.len() {
                    0 => Box::new(EmptyQuery),
                    1 => Box::new(TermQuery::new(term(&toks[0]), IndexRecordOption::Basic)),
                    _ => Box::new(PhraseQuery::new(toks.iter().map(|t| term(t)).collect())),
                }
            }
            Value_::Wildcard(w) => Box::new(wildcard(&glob_regex(&w.to_lowercase()), f)?),
            _ => return Err(IndexError::Query("free text takes words, phrases or wildcards".into())),
        })
    }

    fn field(&self, field: &str, v: &Value_, now_ns: i64) -> Result<Box<dyn TQuery>, IndexError> {
        let f = &self.fields;
        // A field with a keyword column of its own (`a.FIELD`) is matched
        // there; any other as `FIELD=value` in the shared `kv` field.
        let agg = f.aggs.iter().find(|(p, _)| *p == field).map(|(_, af)| *af);
        let kv = |val: &str| match agg {
            Some(af) => Term::from_field_text(af, cut(val)),
            None => Term::from_field_text(f.kv, &format!("{field}={}", cut(val))),
        };
        let time_field = match field {
            "time" => Some(f.time),
            "received_at" => Some(f.received_at),
            _ => None,
        };
        Ok(match v {
            Value_::Exists if query::ALWAYS_PRESENT.contains(&field) => Box::new(AllQuery),
            Value_::Exists => {
                let has = Box::new(TermQuery::new(Term::from_field_text(f.has, field), IndexRecordOption::Basic));
                match agg {
                    // A scalar is in the field's column; anything else (an
                    // object, say) has its token.
                    Some(_) => Box::new(BooleanQuery::new(vec![
                        (Occur::Should, has as Box<dyn TQuery>),
                        (Occur::Should, Box::new(ExistsQuery::new(format!("a.{field}"), false))),
                    ])),
                    None => has,
                }
            }
            Value_::Exact(x) | Value_::Phrase(x) if time_field.is_some() && x.len() == 10 => {
                let day =
                    query::resolve_time(x, now_ns).ok_or_else(|| IndexError::Query(format!("{x:?} is not a date")))?;
                let tf = time_field.expect("checked");
                Box::new(RangeQuery::new(
                    StdBound::Included(Term::from_field_date(tf, date(day))),
                    StdBound::Excluded(Term::from_field_date(tf, date(day + 86_400_000_000_000))),
                ))
            }
            Value_::Exact(x) | Value_::Phrase(x) if time_field.is_some() => {
                // Stored times are normalised RFC 3339, so only a normalised
                // string can equal one: that instant on the date field.
                let tf = time_field.expect("checked");
                match custos_event::time::parse_rfc3339(x) {
                    Ok(ns) if custos_event::time::format_rfc3339(ns) == *x => Box::new(RangeQuery::new(
                        StdBound::Included(Term::from_field_date(tf, date(ns))),
                        StdBound::Included(Term::from_field_date(tf, date(ns))),
                    )),
                    _ => Box::new(EmptyQuery),
                }
            }
            Value_::Exact(x) | Value_::Phrase(x) => {
                let term: Box<dyn TQuery> = Box::new(TermQuery::new(kv(x), IndexRecordOption::Basic));
                // A decimal field's numbers are in its column: equal as
                // numbers, or the text of a value that is not one.
                match (f.decimals.iter().find(|(p, _)| *p == field), query::decimal(x)) {
                    (Some((_, df)), Some(n)) => Box::new(BooleanQuery::new(vec![
                        (Occur::Should, term),
                        (
                            Occur::Should,
                            Box::new(RangeQuery::new(
                                StdBound::Included(Term::from_field_f64(*df, n)),
                                StdBound::Included(Term::from_field_f64(*df, n)),
                            )),
                        ),
                    ])),
                    _ => term,
                }
            }
            Value_::Wildcard(w) => match agg {
                Some(af) => Box::new(wildcard(&glob_regex(w), af)?),
                None => Box::new(wildcard(&format!("{}{}", regex_escape(&format!("{field}=")), glob_regex(w)), f.kv)?),
            },
            Value_::Cidr(net, bits) => {
                let tf = if field == "src_endpoint.ip" { f.src_ip } else { f.dst_ip };
                let (lo, hi) = cidr_bounds(*net, *bits);
                Box::new(RangeQuery::new(
                    StdBound::Included(Term::from_field_ip_addr(tf, lo)),
                    StdBound::Included(Term::from_field_ip_addr(tf, hi)),
                ))
            }
            Value_::Range(lo, hi) => {
                if field == "time"
                    && let Some(q) = self.time_terms(lo, hi, now_ns)?
                {
                    return Ok(q);
                }
                if let Some(tf) = time_field {
                    typed_range(lo, hi, |x| {
                        query::resolve_time(x, now_ns)
                            .map(|ns| Term::from_field_date(tf, date(ns)))
                            .ok_or_else(|| IndexError::Query(format!("{x:?} is not a time")))
                    })?
                } else if let Some((_, nf)) = f.nums.iter().find(|(p, _)| *p == field) {
                    typed_range(lo, hi, |x| {
                        x.parse::<u64>()
                            .map(|n| Term::from_field_u64(*nf, n))
                            .map_err(|_| IndexError::Query(format!("{x:?} is not a number")))
                    })?
                } else if let Some((_, df)) = f.decimals.iter().find(|(p, _)| *p == field) {
                    typed_range(lo, hi, |x| {
                        query::decimal(x)
                            .map(|n| Term::from_field_f64(*df, n))
                            .ok_or_else(|| IndexError::Query(format!("{x:?} is not a number")))
                    })?
                } else {
                    // Keyword order: the tokens of this field lie between
                    // "field=" and "field>" ('>' follows '=').
                    let (first, past) = match agg {
                        Some(af) => (Term::from_field_text(af, ""), None),
                        None => (
                            Term::from_field_text(f.kv, &format!("{field}=")),
                            Some(Term::from_field_text(f.kv, &format!("{field}>"))),
                        ),
                    };
                    let lo = match lo {
                        Bound::Unbounded => StdBound::Included(first),
                        Bound::Included(x) => StdBound::Included(kv(x)),
                        Bound::Excluded(x) => StdBound::Excluded(kv(x)),
                    };
                    let hi = match hi {
                        Bound::Unbounded => past.map_or(StdBound::Unbounded, StdBound::Excluded),
                        Bound::Included(x) => StdBound::Included(kv(x)),
                        Bound::Excluded(x) => StdBound::Excluded(kv(x)),
                    };
                    Box::new(RangeQuery::new(lo, hi))
                }
            }
        })
    }
}

impl LogIndex {
    /// `[lo, hi)` of a bounded range on `time`, in nanoseconds.
    fn ns_bounds(lo: &Bound, hi: &Bound, now_ns: i64) -> Result<Option<(i64, i64)>, IndexError> {
        if matches!(lo, Bound::Unbounded) || matches!(hi, Bound::Unbounded) {
            return Ok(None);
        }
        time_span(lo, hi, now_ns).map(Some).map_err(|x| IndexError::Query(format!("{x:?} is not a time")))
    }

    /// A bounded range on `time` as a union of whole days, whole hours and
    /// at most two partial hours; `None` when a plain range is better.
    fn time_terms(&self, lo: &Bound, hi: &Bound, now_ns: i64) -> Result<Option<Box<dyn TQuery>>, IndexError> {
        let Some((lo, hi)) = Self::ns_bounds(lo, hi, now_ns)? else { return Ok(None) };
        if lo >= hi {
            return Ok(Some(Box::new(EmptyQuery)));
        }
        if lo < 0 {
            return Ok(None);
        }
        let f = &self.fields;
        let mut parts: Vec<(Occur, Box<dyn TQuery>)> = Vec::new();
        let term = |field: Field, v: i64| -> Box<dyn TQuery> {
            Box::new(TermQuery::new(Term::from_field_u64(field, v as u64), IndexRecordOption::Basic))
        };
        // `[a, b)` within at most two hours: the entries of those hours
        // whose time is in range.
        let precise = |a: i64, b: i64| -> Box<dyn TQuery> {
            let hours: Vec<(Occur, Box<dyn TQuery>)> = (a.div_euclid(HOUR_NS)..=(b - 1).div_euclid(HOUR_NS))
                .map(|h| (Occur::Should, term(f.time_hour, h)))
                .collect();
            Box::new(TimeFilter { inner: Box::new(BooleanQuery::new(hours)), lo: a, hi: b })
        };
        let first_hour = lo.div_euclid(HOUR_NS) + i64::from(lo.rem_euclid(HOUR_NS) != 0);
        let last_hour = hi.div_euclid(HOUR_NS); // exclusive
        if first_hour >= last_hour {
            // Within one hour, or across one boundary: precise ranges only.
            return Ok(Some(precise(lo, hi)));
        }
        if lo < first_hour * HOUR_NS {
            parts.push((Occur::Should, precise(lo, first_hour * HOUR_NS)));
        }
        if hi > last_hour * HOUR_NS {
            parts.push((Occur::Should, precise(last_hour * HOUR_NS, hi)));
        }
        let mut h = first_hour;
        let mut terms = 0;
        while h < last_hour {
            if h % 24 == 0 && h + 24 <= last_hour {
                parts.push((Occur::Should, term(f.time_day, h / 24)));
                h += 24;
            } else {
                parts.push((Occur::Should, term(f.time_hour, h)));
                h += 1;
            }
            terms += 1;
            if terms > MAX_TIME_TERMS {
                return Ok(None);
            }
        }
        Ok(Some(Box::new(BooleanQuery::new(parts))))
    }
}

/// The entries of `inner` (the hour terms that hold the range) whose time
/// is in `[lo, hi)`, read from the `time` column entry by entry. tantivy's
/// own range on a fast column, once past its last match, scans the column
/// to the end of the segment for the next one: any time range not aligned
/// on hours cost a scan of the whole column (24 ms on 10 M entries).
#[derive(Debug)]
struct TimeFilter {
    inner: Box<dyn TQuery>,
    lo: i64,
    hi: i64,
}

impl Clone for TimeFilter {
    fn clone(&self) -> TimeFilter {
        TimeFilter { inner: self.inner.box_clone(), lo: self.lo, hi: self.hi }
    }
}

impl TQuery for TimeFilter {
    fn weight(&self, scoring: tantivy::query::EnableScoring<'_>) -> tantivy::Result<Box<dyn tantivy::query::Weight>> {
        Ok(Box::new(TimeFilterWeight { inner: self.inner.weight(scoring)?, lo: self.lo, hi: self.hi }))
    }
}

struct TimeFilterWeight {
    inner: Box<dyn tantivy::query::Weight>,
    lo: i64,
    hi: i64,
}

impl tantivy::query::Weight for TimeFilterWeight {
    fn scorer(
        &self,
        reader: &tantivy::SegmentReader,
        boost: tantivy::Score,
    ) -> tantivy::Result<Box<dyn tantivy::query::Scorer>> {
        let column = reader.fast_fields().date("time")?;
        let mut s = TimeFilterScorer { inner: self.inner.scorer(reader, boost)?, column, lo: self.lo, hi: self.hi };
        s.skip_misses();
        Ok(Box::new(s))
    }

    fn explain(&self, _: &tantivy::SegmentReader, _: tantivy::DocId) -> tantivy::Result<tantivy::query::Explanation> {
        Ok(tantivy::query::Explanation::new("time in range", 1.0))
    }
}

struct TimeFilterScorer {
    inner: Box<dyn tantivy::query::Scorer>,
    column: tantivy::columnar::Column<DateTime>,
    lo: i64,
    hi: i64,
}

impl TimeFilterScorer {
    /// Moves to the first entry at or after the current one that is in
    /// range.
    fn skip_misses(&mut self) -> tantivy::DocId {
        let mut doc = self.inner.doc();
        while doc != tantivy::TERMINATED
            && !self.column.values_for_doc(doc).any(|t| (self.lo..self.hi).contains(&t.into_timestamp_nanos()))
        {
            doc = self.inner.advance();
        }
        doc
    }
}

impl tantivy::DocSet for TimeFilterScorer {
    fn advance(&mut self) -> tantivy::DocId {
        self.inner.advance();
        self.skip_misses()
    }

    fn seek(&mut self, target: tantivy::DocId) -> tantivy::DocId {
        self.inner.seek(target);
        self.skip_misses()
    }

    fn doc(&self) -> tantivy::DocId {
        self.inner.doc()
    }

    fn size_hint(&self) -> u32 {
        self.inner.size_hint()
    }
}

impl tantivy::query::Scorer for TimeFilterScorer {
    fn score(&mut self) -> tantivy::Score {
        self.inner.score()
    }
}

/// A range on a typed column, each bound made a term by `term`.
fn typed_range(
    lo: &Bound,
    hi: &Bound,
    term: impl Fn(&String) -> Result<Term, IndexError>,
) -> Result<Box<dyn TQuery>, IndexError> {
    let b = |b: &Bound| -> Result<StdBound<Term>, IndexError> {
        Ok(match b {
            Bound::Unbounded => StdBound::Unbounded,
            Bound::Included(x) => StdBound::Included(term(x)?),
            Bound::Excluded(x) => StdBound::Excluded(term(x)?),
        })
    };
    Ok(Box::new(RangeQuery::new(b(lo)?, b(hi)?)))
}

fn cidr_bounds(net: IpAddr, bits: u8) -> (Ipv6Addr, Ipv6Addr) {
    // IPv4 addresses are stored IPv4-mapped (::ffff:a.b.c.d): their
    // prefix starts after the first 96 bits.
    let (n, bits) = match net {
        IpAddr::V4(a) => (u128::from(a.to_ipv6_mapped()), 96 + u32::from(bits)),
        IpAddr::V6(a) => (u128::from(a), u32::from(bits)),
    };
    let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
    (Ipv6Addr::from(n & mask), Ipv6Addr::from((n & mask) | !mask))
}

fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn glob_regex(glob: &str) -> String {
    let mut out = String::new();
    for c in glob.chars() {
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            c => out.push_str(&regex_escape(&c.to_string())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_merge_is_over_the_bound() {
        use tantivy::indexer::MergePolicy;
        let index = Index::create_in_ram(schema().0);
        let meta = |n| index.new_segment_meta(tantivy::index::SegmentId::generate_random(), n);
        // Sixteen small segments, a mid-sized one and two over half the bound.
        let mut segments: Vec<_> = (0..16).map(|_| meta(60_000)).collect();
        segments.push(meta(200_000));
        segments.push(meta(300_000));
        segments.push(meta(450_000));
        let docs = |id: &tantivy::index::SegmentId| segments.iter().find(|m| m.id() == *id).unwrap().num_docs();
        let candidates = BoundedMergePolicy::new(500_000).compute_merge_candidates(&segments);
        assert!(!candidates.is_empty(), "the small segments are merged");
        let mut seen = std::collections::HashSet::new();
        for c in &candidates {
            assert!(c.0.len() >= 2);
            let sum: u32 = c.0.iter().map(docs).sum();
            assert!(sum <= 500_000, "a merge of {sum} documents");
            for id in &c.0 {
                assert!(docs(id) < 250_000, "a segment of half the bound or more is left alone");
                assert!(seen.insert(*id), "a segment in two merges");
            }
        }
    }

    #[test]
    fn cidr_bounds_cover_the_network() {
        let (lo, hi) = cidr_bounds("10.1.2.3".parse().unwrap(), 8);
        assert_eq!(lo, "10.0.0.0".parse::<std::net::Ipv4Addr>().unwrap().to_ipv6_mapped());
        assert_eq!(hi, "10.255.255.255".parse::<std::net::Ipv4Addr>().unwrap().to_ipv6_mapped());
    }
}
