//! OpenTelemetry logs into Custos: the OpenTelemetry Python SDK's OTLP/HTTP
//! exporter (protobuf), and OTLP/JSON with a partial success, against a
//! real `custos serve`.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use serde_json::json;

/// A venv with the OpenTelemetry SDK and its OTLP/HTTP exporter, made once
/// per machine (pinned versions, from PyPI).
fn otel_python() -> PathBuf {
    // The tests of this file run in parallel: one of them makes the venv,
    // the others wait for it (two at once made it fail on a fresh machine).
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON.get_or_init(make_otel_python).clone()
}

fn make_otel_python() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let venv = home.join(".cache").join("custos-otel-venv");
    let python = venv.join("bin").join("python");
    let ready = |p: &PathBuf| {
        Command::new(p)
            .args([
                "-c",
                "import opentelemetry.exporter.otlp.proto.http._log_exporter, \
                 opentelemetry.exporter.otlp.proto.grpc._log_exporter, opentelemetry.sdk._logs",
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !ready(&python) {
        let ok = Command::new("python3").args(["-m", "venv", "--clear"]).arg(&venv).status().unwrap().success();
        assert!(ok, "python3 -m venv failed");
        let ok = Command::new(venv.join("bin").join("pip"))
            .args([
                "install",
                "-q",
                "opentelemetry-sdk==1.39.1",
                "opentelemetry-exporter-otlp-proto-http==1.39.1",
                "opentelemetry-exporter-otlp-proto-grpc==1.39.1",
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "pip install of the OpenTelemetry SDK failed");
    }
    assert!(ready(&python));
    python
}

const SENDER: &str = r#"
import logging, sys
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

provider = LoggerProvider(resource=Resource.create({"service.name": "billing"}))
if sys.argv[3] == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    exporter = OTLPLogExporter(endpoint=sys.argv[1], insecure=True, headers=(("authorization", "Bearer " + sys.argv[2]),))
elif sys.argv[3] == "grpcs":
    import grpc
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    creds = grpc.ssl_channel_credentials(root_certificates=open(sys.argv[4], "rb").read())
    exporter = OTLPLogExporter(endpoint=sys.argv[1], credentials=creds, headers=(("authorization", "Bearer " + sys.argv[2]),))
else:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    exporter = OTLPLogExporter(endpoint=sys.argv[1], headers={"Authorization": "Bearer " + sys.argv[2]})
provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
log = logging.getLogger("audit")
log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=provider))
log.setLevel(logging.INFO)
log.info("login ok", extra={"user.id": "u-42", "client.address": "203.0.113.9", "event.outcome": "success",
                            "user_agent.original": "billing-web/2.1"})
log.error("login failed", extra={"enduser.id": "mallory", "client.address": "198.51.100.7", "transport": sys.argv[3]})
provider.shutdown()
"#;

#[test]
fn opentelemetry_python_sdk_and_otlp_json_land_as_events() {
    let python = otel_python();
    let dir = tempfile::tempdir().unwrap();
    let grpc_port = common::pg::free_port();
    let grpc = format!("127.0.0.1:{grpc_port}=apps");
    let s = Server::start(dir.path(), &["--otlp-grpc", &grpc]);
    let token = s.admin_token.clone().unwrap();
    let endpoint = format!("{}/v1/otlp/apps/v1/logs", s.url);
    let out = Command::new(&python).args(["-c", SENDER, &endpoint, &token, "http"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The same through the gRPC exporter.
    let out = Command::new(&python)
        .args(["-c", SENDER, &format!("http://127.0.0.1:{grpc_port}"), &token, "grpc"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ev = poll(|| {
        let e = log_events(&s.url, "apps");
        (e.len() >= 4).then_some(e)
    });
    for transport in ["http", "grpc"] {
        assert!(
            ev.iter().any(|e| e["metadata"]["otel"]["attributes"]["transport"] == transport),
            "no event came over {transport}"
        );
    }
    // A wrong token is refused over gRPC as well.
    let out = Command::new(&python)
        .args(["-c", SENDER, &format!("http://127.0.0.1:{grpc_port}"), "wrong-token", "grpc"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).to_lowercase().contains("unauthenticated"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(log_events(&s.url, "apps").len(), ev.len(), "nothing from a wrong token");
    let ok = ev.iter().find(|e| e["actor"]["user"]["uid"] == "u-42").expect("u-42's login");
    assert_eq!(ok["status"], "success");
    assert_eq!(ok["message"], "login ok");
    assert_eq!(ok["src_endpoint"]["ip"], "203.0.113.9");
    assert_eq!(ok["metadata"]["user_agent"], "billing-web/2.1");
    assert_eq!(ok["metadata"]["service"], "billing");
    assert_eq!(ok["metadata"]["otel"]["resource"]["service.name"], "billing");
    assert_eq!(ok["submitter"]["via"], "otlp");
    let bad = ev.iter().find(|e| e["actor"]["user"]["name"] == "mallory").expect("mallory's failure");
    assert_eq!(bad["status"], "failure", "ERROR severity without an outcome is a failure");

    // OTLP/JSON by hand: one access event and one ordinary log line, which
    // is rejected with a partial success naming it.
    let body = json!({"resourceLogs": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "vpn"}}]},
        "scopeLogs": [{"logRecords": [
            {"timeUnixNano": "1795000000000000000", "eventName": "vpn.connect", "body": {"stringValue": "tunnel up"},
             "attributes": [{"key": "user.name", "value": {"stringValue": "carol"}},
                            {"key": "event.outcome", "value": {"stringValue": "success"}}]},
            {"timeUnixNano": "1795000000000000000", "body": {"stringValue": "gc pause 3ms"}}]}]}]});
    let (st, resp) = post(&endpoint, "application/json", body.to_string(), &[]);
    assert_eq!(st, 200, "{resp}");
    let rejected = &resp["partialSuccess"]["rejectedLogRecords"];
    assert!(rejected == &json!(1) || rejected == &json!("1"), "{resp}");
    assert!(resp["partialSuccess"]["errorMessage"].as_str().unwrap().contains("logRecords[1]"), "{resp}");
    let ev = poll(|| {
        let e = log_events(&s.url, "apps");
        e.iter().find(|e| e["activity"] == "vpn.connect").cloned()
    });
    assert_eq!(ev["actor"]["user"]["name"], "carol");
    assert_eq!(ev["time"], "2026-11-18T11:06:40Z");

    // Malformed input is refused whole with a reason; nothing is stored.
    let before = log_events(&s.url, "apps").len();
    let (st, resp) = post(&endpoint, "application/x-protobuf", [0xffu8, 0xff, 0xff], &[]);
    assert_eq!(st, 400, "{resp}");
    assert!(resp.to_string().contains("invalid OTLP protobuf"), "{resp}");
    let (st, _) = post(&endpoint, "text/plain", "hi", &[]);
    assert_eq!(st, 415);
    let (st, _) = post_as(&endpoint, Some("nope"), "application/json", "{}", &[]);
    assert_eq!(st, 401);
    assert_eq!(log_events(&s.url, "apps").len(), before);
}

/// OTLP/gRPC over TLS: when the server has a certificate, its gRPC
/// listeners speak TLS (ALPN h2), and the SDK checks the certificate
/// against the CA.
#[test]
fn otlp_grpc_over_tls() {
    let python = otel_python();
    let p = pki();
    let dir = tempfile::tempdir().unwrap();
    let grpc_port = common::pg::free_port();
    let grpc = format!("127.0.0.1:{grpc_port}=apps");
    let s = Server::start(
        dir.path(),
        &["--tls-cert", &p.path("server.pem"), "--tls-key", &p.path("server.key"), "--otlp-grpc", &grpc],
    );
    assert!(s.lines.iter().any(|l| l.starts_with("otlp grpcs on")), "{:?}", s.lines);
    let token = s.admin_token.clone().unwrap();
    let out = Command::new(&python)
        .args(["-c", SENDER, &format!("https://localhost:{grpc_port}"), &token, "grpcs", &p.path("ca.pem")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let es = poll(|| events_with_curl(&p, &s.url, &token, "apps", 2));
    assert!(es.iter().all(|e| e["submitter"]["via"] == "otlp"));
    assert!(es.iter().any(
        |e| e["actor"]["user"]["name"] == "mallory" && e["metadata"]["otel"]["attributes"]["transport"] == "grpcs"
    ));
}
