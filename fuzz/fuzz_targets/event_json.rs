//! Any bytes as an ingest request body line: parse, validate, seal. Never
//! panics; a sealed event always re-parses to the same JSON.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let Ok(event) = custos_event::validate(v) else { return };
    let server = custos_event::ServerFields {
        log: "fuzz".into(),
        received_at: "2026-01-01T00:00:00Z".into(),
        submitter: "fuzz".into(),
        via: "http".into(),
        address: None,
    };
    if let Ok(bytes) = custos_event::seal(event, &server) {
        let back: serde_json::Value = serde_json::from_slice(&bytes).expect("sealed events are JSON");
        let again = custos_event::canonical::to_canonical(&back).expect("canonical twice");
        assert_eq!(again.as_bytes(), &bytes[..], "canonical form is stable");
    }
});
