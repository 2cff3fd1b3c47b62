//! Any bytes as an OTLP logs request, protobuf or JSON: decoding and
//! mapping never panic, and every accepted record is a valid event.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for req in [custos_sources::otlp::decode_protobuf(data), custos_sources::otlp::decode_json(data)] {
        let Ok(req) = req else { continue };
        let Ok(c) = custos_sources::otlp::to_events(&req, 1_795_000_000_000_000_000) else { continue };
        for e in c.events {
            assert!(custos_event::validate(e).is_ok());
        }
        let _ = custos_sources::otlp::encode_response(c.rejected, &c.error_message, true);
    }
});
