//! Any JSON as a Kubernetes audit webhook body.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let Ok(items) = custos_sources::k8s::items(&v) else { return };
    for i in items {
        let _ = custos_sources::k8s::map_event(i);
    }
});
