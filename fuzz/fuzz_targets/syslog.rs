//! Any bytes as syslog datagrams and streams: framing and parsing never
//! panic, and every message becomes a valid event that fits a log entry
//! once sealed.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let e = custos_sources::syslog::to_node(data, Some("127.0.0.1"), 1_795_000_000_000_000_000);
    let server = custos_event::ServerFields {
        log: "fuzz".into(),
        received_at: "2026-01-01T00:00:00Z".into(),
        submitter: "syslog:127.0.0.1".into(),
        via: "syslog".into(),
        address: Some("127.0.0.1".into()),
    };
    if let Err(err) = custos_event::seal_event(&e, &server) {
        panic!("a syslog message did not become a storable event: {err}");
    }
    let mut f = custos_sources::syslog::Framer::default();
    for chunk in data.chunks(7) {
        f.push(chunk);
        while f.next().is_some() {}
    }
    let _ = f.finish();
});
