//! OpenTelemetry logs (OTLP) to access events.
//!
//! A log record becomes an event when it names who acted: one of the
//! semantic-convention attributes `user.id`, `user.name`, `enduser.id`
//! (or `enduser.pseudo.id`). Records that do not are rejected one by one
//! and counted in the partial-success answer, which is how OTLP tells a
//! sender that part of a batch was refused and why.
//!
//! Pure: decoded requests in, events out.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;
use serde_json::{Map, Value, json};

/// Log records in one request.
pub const MAX_RECORDS_PER_REQUEST: usize = 100_000;
/// Nesting of attribute values (arrays and maps) followed.
const MAX_VALUE_DEPTH: usize = 16;

/// Decodes a binary protobuf request.
pub fn decode_protobuf(body: &[u8]) -> Result<ExportLogsServiceRequest, String> {
    ExportLogsServiceRequest::decode(body).map_err(|e| format!("invalid OTLP protobuf: {e}"))
}

/// Decodes an OTLP/JSON request (lowerCamelCase names, hex trace IDs,
/// 64-bit integers as strings).
pub fn decode_json(body: &[u8]) -> Result<ExportLogsServiceRequest, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid OTLP JSON: {e}"))
}

fn any_to_json(v: &AnyValue, depth: usize) -> Value {
    use any_value::Value as V;
    if depth > MAX_VALUE_DEPTH {
        return Value::String("(nested too deep)".into());
    }
    match &v.value {
        None => Value::Null,
        Some(V::StringValue(s)) => Value::String(s.clone()),
        Some(V::BoolValue(b)) => Value::Bool(*b),
        // JSON numbers are doubles in the canonical form; beyond 2^53 keep the digits.
        Some(V::IntValue(i)) if i.unsigned_abs() <= 1 << 53 => json!(i),
        Some(V::IntValue(i)) => Value::String(i.to_string()),
        Some(V::DoubleValue(d)) if d.is_finite() => json!(d),
        Some(V::DoubleValue(d)) => Value::String(d.to_string()),
        Some(V::ArrayValue(a)) => Value::Array(a.values.iter().map(|x| any_to_json(x, depth + 1)).collect()),
        Some(V::KvlistValue(kv)) => Value::Object(attrs_to_json(&kv.values, depth + 1)),
        Some(V::BytesValue(b)) => Value::String(b.iter().map(|x| format!("{x:02x}")).collect()),
        // An index into a profile's string table: meaningless in a log.
        Some(V::StringValueStrindex(i)) => Value::String(format!("(string table index {i})")),
    }
}

fn attrs_to_json(attrs: &[KeyValue], depth: usize) -> Map<String, Value> {
    attrs.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, |v| any_to_json(v, depth)))).collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The first string attribute among `keys`.
fn string_attr<'a>(attrs: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| attrs.get(*k).and_then(Value::as_str)).filter(|s| !s.is_empty())
}

/// What a request became: events, and the records rejected with why.
pub struct Converted {
    /// One event per accepted record, in order.
    pub events: Vec<Value>,
    /// Rejected records: how many, and the first reasons.
    pub rejected: usize,
    /// A message naming the first rejected records.
    pub error_message: String,
}

/// Turns a request into events. `now_nanos` stands in for records with
/// neither a time nor an observed time.
pub fn to_events(req: &ExportLogsServiceRequest, now_nanos: i64) -> Result<Converted, String> {
    let total: usize = req.resource_logs.iter().flat_map(|r| &r.scope_logs).map(|s| s.log_records.len()).sum();
    if total > MAX_RECORDS_PER_REQUEST {
        return Err(format!("{total} log records in one request; the limit is {MAX_RECORDS_PER_REQUEST}"));
    }
    let mut out = Converted { events: Vec::new(), rejected: 0, error_message: String::new() };
    let mut reasons = Vec::new();
    for (ri, rl) in req.resource_logs.iter().enumerate() {
        let resource = rl.resource.as_ref().map(|r| attrs_to_json(&r.attributes, 0)).unwrap_or_default();
        for (si, sl) in rl.scope_logs.iter().enumerate() {
            let scope = sl.scope.as_ref().map(|s| json!({"name": s.name, "version": s.version}));
            for (li, rec) in sl.log_records.iter().enumerate() {
                match record_to_event(rec, &resource, scope.as_ref(), now_nanos) {
                    Ok(e) => out.events.push(e),
                    Err(why) => {
                        out.rejected += 1;
                        if reasons.len() < 3 {
                            reasons.push(format!("resourceLogs[{ri}].scopeLogs[{si}].logRecords[{li}]: {why}"));
                        }
                    }
                }
            }
        }
    }
    if out.rejected > 0 {
        out.error_message = format!("{} log record(s) rejected: {}", out.rejected, reasons.join("; "));
    }
    Ok(out)
}

fn record_to_event(
    rec: &LogRecord,
    resource: &Map<String, Value>,
    scope: Option<&Value>,
    now_nanos: i64,
) -> Result<Value, String> {
    let attrs = attrs_to_json(&rec.attributes, 0);
    let user_name = string_attr(&attrs, &["user.name", "enduser.id", "user.id", "enduser.pseudo.id"])
        .or_else(|| string_attr(resource, &["user.name"]))
        .ok_or("no user.id, user.name or enduser.id attribute: not an access event")?;
    let mut user = Map::new();
    user.insert("name".into(), user_name.into());
    if let Some(uid) = string_attr(&attrs, &["user.id", "enduser.id"]) {
        user.insert("uid".into(), uid.into());
    }
    let nanos = [rec.time_unix_nano, rec.observed_time_unix_nano]
        .into_iter()
        .find(|&t| t > 0 && t <= i64::MAX as u64)
        .map_or(now_nanos, |t| t as i64);
    let activity = Some(rec.event_name.as_str())
        .filter(|s| !s.is_empty())
        .or_else(|| string_attr(&attrs, &["event.name", "event.action"]))
        .map(sanitize_activity)
        .unwrap_or_else(|| "otel.log".into());
    let status = match string_attr(&attrs, &["event.outcome", "outcome"]).map(str::to_ascii_lowercase).as_deref() {
        Some("success" | "ok" | "allowed") => "success",
        Some("failure" | "fail" | "failed" | "denied" | "error") => "failure",
        _ if rec.severity_number >= 17 => "failure", // ERROR and above
        _ => "unknown",
    };
    let mut e = Map::new();
    e.insert("time".into(), custos_event::time::format_rfc3339(nanos).into());
    e.insert("activity".into(), activity.into());
    e.insert("actor".into(), json!({ "user": user }));
    e.insert("status".into(), status.into());
    if let Some(ip) =
        string_attr(&attrs, &["client.address", "source.address"]).filter(|a| a.parse::<std::net::IpAddr>().is_ok())
    {
        let mut src = Map::new();
        src.insert("ip".into(), ip.into());
        if let Some(p) =
            attrs.get("client.port").or(attrs.get("source.port")).and_then(Value::as_u64).filter(|p| *p <= 65535)
        {
            src.insert("port".into(), p.into());
        }
        e.insert("src_endpoint".into(), src.into());
    }
    if let Some(body) = &rec.body {
        let body = any_to_json(body, 0);
        let text = match body {
            Value::String(s) => s,
            other => other.to_string(),
        };
        e.insert("message".into(), text.into());
    }
    if !rec.severity_text.is_empty() {
        e.insert("severity".into(), rec.severity_text.clone().into());
    }
    let mut metadata = Map::new();
    if let Some(ua) = string_attr(&attrs, &["user_agent.original"]) {
        metadata.insert("user_agent".into(), ua.into());
    }
    let mut otel = Map::new();
    otel.insert("attributes".into(), attrs.into());
    otel.insert("resource".into(), resource.clone().into());
    if let Some(s) = scope {
        otel.insert("scope".into(), s.clone());
    }
    otel.insert("severity_number".into(), rec.severity_number.into());
    if !rec.trace_id.is_empty() {
        otel.insert("trace_id".into(), hex(&rec.trace_id).into());
    }
    if !rec.span_id.is_empty() {
        otel.insert("span_id".into(), hex(&rec.span_id).into());
    }
    if let Some(svc) = string_attr(resource, &["service.name"]) {
        metadata.insert("service".into(), svc.into());
    }
    metadata.insert("otel".into(), otel.into());
    e.insert("metadata".into(), metadata.into());
    Ok(Value::Object(e))
}

/// An activity name keeps to the schema's alphabet (`A-Z a-z 0-9 . _ - : /`)
/// and length.
fn sanitize_activity(s: &str) -> String {
    let mut a: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || ".-_:/".contains(c) { c } else { '_' }).take(128).collect();
    if a.is_empty() {
        a.push_str("otel.log");
    }
    a
}

/// The answer to an export: partial success when records were rejected,
/// encoded as the request was (protobuf, or OTLP/JSON).
pub fn encode_response(rejected: usize, error_message: &str, as_json: bool) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsPartialSuccess, ExportLogsServiceResponse};
    let resp = ExportLogsServiceResponse {
        partial_success: (rejected > 0).then(|| ExportLogsPartialSuccess {
            rejected_log_records: rejected as i64,
            error_message: error_message.to_string(),
        }),
    };
    if as_json { serde_json::to_vec(&resp).expect("a response serialises") } else { resp.encode_to_vec() }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"billing"}}]},
      "scopeLogs":[{"scope":{"name":"audit","version":"1"},"logRecords":[
        {"timeUnixNano":"1795000000000000000","severityNumber":9,"severityText":"INFO","body":{"stringValue":"login ok"},
         "eventName":"user.login",
         "attributes":[{"key":"user.id","value":{"stringValue":"u-42"}},{"key":"client.address","value":{"stringValue":"203.0.113.9"}},
                       {"key":"client.port","value":{"intValue":"5555"}},{"key":"event.outcome","value":{"stringValue":"success"}},
                       {"key":"user_agent.original","value":{"stringValue":"curl/8"}}],
         "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"},
        {"timeUnixNano":"1795000000000000000","body":{"stringValue":"cache warmed"}}
      ]}]}]}"#;

    #[test]
    fn json_records_map_and_strangers_are_rejected() {
        let req = decode_json(JSON.as_bytes()).unwrap();
        let c = to_events(&req, 0).unwrap();
        assert_eq!(c.rejected, 1);
        assert!(c.error_message.contains("logRecords[1]: no user.id"), "{}", c.error_message);
        let e = &c.events[0];
        assert_eq!(e["actor"]["user"]["uid"], "u-42");
        assert_eq!(e["activity"], "user.login");
        assert_eq!(e["status"], "success");
        assert_eq!(e["src_endpoint"], json!({"ip": "203.0.113.9", "port": 5555}));
        assert_eq!(e["metadata"]["user_agent"], "curl/8");
        assert_eq!(e["metadata"]["service"], "billing");
        assert_eq!(e["metadata"]["otel"]["trace_id"], "5b8efff798038103d269b633813fc60c");
        assert_eq!(e["time"], "2026-11-18T11:06:40Z");
        assert!(custos_event::validate(e.clone()).is_ok());
        // The same request as protobuf converts the same way.
        let bin = req.encode_to_vec();
        let again = to_events(&decode_protobuf(&bin).unwrap(), 0).unwrap();
        assert_eq!(again.events, c.events);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode_protobuf(&[0xff, 0xff, 0xff]).is_err());
        assert!(decode_json(b"{\"resourceLogs\": 5}").is_err());
    }
}
