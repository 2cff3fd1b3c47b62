//! Any text as a search query (`q=`): parsing, the limits check, the
//! evaluator and the index (translation, the time span that skips segments,
//! the search) never panic, a parse error points inside the query, and the
//! index finds the one indexed event exactly when the evaluator says it
//! matches.
#![no_main]
use std::sync::{Arc, OnceLock};

use custos_index::engine::{IndexError, LogIndex};
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_795_000_000_000_000_000;

struct Fixture {
    event: serde_json::Value,
    index: LogIndex,
    _log: custos_log::Log,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let event = serde_json::json!({
            "time": "2026-11-20T10:00:00Z", "activity": "user.login", "status": "failure",
            "actor": {"user": {"name": "alice"}, "session": {"uid": "s1"}},
            "src_endpoint": {"ip": "10.1.2.3", "port": 22}, "message": "Permission denied for root",
            "targets": [{"name": "root"}], "class_uid": 3002, "duration_ms": 12.5,
        });
        let log = custos_log::Log::open(
            Arc::new(custos_log::sim::SimStorage::new(1)),
            custos_log::LogConfig::new("fuzz/log"),
            custos_tlog::note::NoteSigner::from_seed("fuzz", [1; 32]).expect("key"),
        )
        .expect("log");
        let entry = custos_event::canonical::to_canonical(&event).expect("canonical").into_bytes();
        log.append_blocking(&[entry]).expect("append");
        let dir = std::env::temp_dir().join(format!("custos-fuzz-query-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let index = LogIndex::open(&dir, log.size()).expect("index");
        while index.catch_up(&log, 10).expect("catch up") > 0 {}
        Fixture { event, index, _log: log }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else { return };
    let f = fixture();
    match custos_index::query::parse(q) {
        Ok(parsed) => {
            if custos_index::query::check(&parsed).is_ok() {
                let want = custos_index::query::matches(&parsed, &f.event, NOW);
                match f.index.search(&parsed, 10, None, true, NOW) {
                    Ok((hits, total)) => {
                        assert_eq!(total == 1, want, "index and evaluator disagree on {q:?}");
                        assert_eq!(hits.len(), total);
                    }
                    // Queries the index refuses (free text on a field, say).
                    Err(IndexError::Query(_)) => {}
                    Err(e) => panic!("{q:?}: {e}"),
                }
            }
        }
        Err(e) => assert!(e.position <= q.len(), "error position {} beyond {} bytes", e.position, q.len()),
    }
});
