//! Any bytes as an ingest request body line: parse (with the borrowed
//! parser the server uses, and with serde_json), validate, seal. Never
//! panics; both parsers accept the same inputs (but for one member name
//! serde_json reserves); a sealed event always
//! re-parses to the same JSON, and is sealed the same way by both paths
//! (unless it repeats a member, which only the borrowed parser can see).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let node = custos_event::doc::parse(data);
    // serde_json gives one member name a private meaning, and reads or
    // refuses it its own way; the server's parser refuses it
    // (doc::RESERVED_MEMBER_NAME).
    if node.as_ref().is_err_and(|e| e.what.contains("is reserved")) {
        return;
    }
    let value = serde_json::from_slice::<serde_json::Value>(data);
    assert_eq!(node.is_ok(), value.is_ok(), "the parsers disagree on {:?}", String::from_utf8_lossy(data));
    let (Ok(node), Ok(v)) = (node, value) else { return };
    let server = custos_event::ServerFields {
        log: "fuzz".into(),
        received_at: "2026-01-01T00:00:00Z".into(),
        submitter: "fuzz".into(),
        via: "http".into(),
        address: None,
    };
    let by_node = custos_event::seal_event(&node, &server);
    let Ok(event) = custos_event::validate(v) else {
        assert!(by_node.is_err(), "only the node path accepted the event");
        return;
    };
    if let Ok(bytes) = custos_event::seal(event, &server) {
        let back: serde_json::Value = serde_json::from_slice(&bytes).expect("sealed events are JSON");
        let again = custos_event::canonical::to_canonical(&back).expect("canonical twice");
        assert_eq!(again.as_bytes(), &bytes[..], "canonical form is stable");
        if let Ok(b) = by_node {
            // Floats may be read one unit in the last place apart by serde_json.
            if !data.iter().any(|&c| c == b'.' || c == b'e' || c == b'E') {
                assert_eq!(b, bytes, "the two paths seal differently");
            }
        }
    }
});
