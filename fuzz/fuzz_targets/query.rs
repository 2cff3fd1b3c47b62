//! Any text as a search query (`q=`): parsing, the limits check and the
//! evaluator never panic, and a parse error points inside the query.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else { return };
    let event = serde_json::json!({
        "time": "2026-11-20T10:00:00Z", "activity": "user.login", "status": "failure",
        "actor": {"user": {"name": "alice"}, "session": {"uid": "s1"}},
        "src_endpoint": {"ip": "10.1.2.3", "port": 22}, "message": "Permission denied for root",
        "targets": [{"name": "root"}], "class_uid": 3002,
    });
    match custos_index::query::parse(q) {
        Ok(parsed) => {
            if custos_index::query::check(&parsed).is_ok() {
                let _ = custos_index::query::matches(&parsed, &event, 1_795_000_000_000_000_000);
            }
        }
        Err(e) => assert!(e.position <= q.len(), "error position {} beyond {} bytes", e.position, q.len()),
    }
});
