//! Any bytes as syslog datagrams and streams: framing and parsing never
//! panic, and every message becomes a valid event.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let e = custos_sources::syslog::to_event(data, Some("127.0.0.1"), 1_795_000_000_000_000_000);
    assert!(custos_event::validate(e).is_ok());
    let mut f = custos_sources::syslog::Framer::default();
    for chunk in data.chunks(7) {
        f.push(chunk);
        while f.next().is_some() {}
    }
    let _ = f.finish();
});
