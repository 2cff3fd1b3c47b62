//! Any bytes as PostgreSQL protocol input to the gateway: the startup
//! packet, every message it reads whole, the SCRAM messages, statement
//! analysis and the literal-shape scan never panic.
#![no_main]
use custos_gateway::{classify, scram, wire};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wire::parse_startup(data);
    // Walk the bytes as a stream of typed messages, as both proxy
    // directions do, and decode each kind the gateway inspects.
    let mut rest = data;
    while let Ok(Some((tag, len))) = wire::header(rest, wire::MAX_INSPECTED_MESSAGE_BYTES) {
        if rest.len() < len {
            break;
        }
        let body = &rest[5..len];
        match tag {
            b'Q' => {
                if let Ok(sql) = wire::parse_query(body) {
                    let _ = classify::shape(sql);
                    let _ = classify::analyse(sql);
                }
            }
            b'P' => drop(wire::parse_parse(body)),
            b'B' => drop(wire::parse_bind(body)),
            b'E' => {
                let _ = wire::parse_execute(body);
                let _ = wire::parse_fields(body);
            }
            b'C' | b'D' => drop(wire::parse_target(body)),
            b'R' => drop(wire::parse_auth(body)),
            b'p' => {
                let _ = wire::parse_sasl_initial(body);
                let _ = scram::ServerExchange::start(None, body);
                let (mut c, _) = scram::ClientExchange::start("pw");
                let _ = c.respond(body);
                let _ = c.verify(body);
            }
            _ => {}
        }
        rest = &rest[len..];
    }
});
