//! Kubernetes audit events (`audit.k8s.io/v1` and `v1beta1`), as the API
//! server's webhook backend sends them in an `EventList`.

use serde_json::{Map, Value, json};

/// `raw_data` keeps at most this much of an audit event; RequestResponse
/// events can carry whole objects.
pub const MAX_RAW_BYTES: usize = 16 * 1024;

/// The items of an `EventList`, or the body itself if it is one `Event`.
pub fn items(body: &Value) -> Result<Vec<&Value>, String> {
    match body.get("kind").and_then(Value::as_str) {
        Some("EventList") => Ok(body["items"].as_array().ok_or("EventList has no items array")?.iter().collect()),
        Some("Event") | None if body.get("auditID").is_some() => Ok(vec![body]),
        _ => Err("body is not an audit.k8s.io EventList or Event".into()),
    }
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(*k)).and_then(Value::as_str)
}

/// Maps one audit event into a Custos event. Its `uid` is
/// `auditID/stage`, so the API server's retries are deduplicated.
pub fn map_event(e: &Value) -> Result<Value, String> {
    let audit_id = s(e, &["auditID"]).ok_or("audit event has no auditID")?;
    let stage = s(e, &["stage"]).unwrap_or("ResponseComplete");
    let verb = s(e, &["verb"]).ok_or("audit event has no verb")?;
    let time =
        s(e, &["stageTimestamp"]).or(s(e, &["requestReceivedTimestamp"])).ok_or("audit event has no timestamp")?;
    let user = s(e, &["user", "username"]).unwrap_or("system:anonymous");
    let mut actor = json!({"user": {"name": user}});
    if let Some(uid) = s(e, &["user", "uid"]) {
        actor["user"]["uid"] = json!(uid);
    }
    if let Some(groups) = e["user"].get("groups") {
        actor["user"]["groups"] = groups.clone();
    }
    let code = e["responseStatus"]["code"].as_u64();
    let status = match code {
        Some(c) if c < 400 => "success",
        Some(_) => "failure",
        None => "unknown",
    };
    let mut k8s = Map::new();
    for f in ["auditID", "stage", "level", "requestURI", "verb", "userAgent", "annotations", "apiVersion"] {
        if let Some(v) = e.get(f) {
            k8s.insert(f.into(), v.clone());
        }
    }
    let mut out = json!({
        "time": time,
        "activity": format!("k8s.{verb}"),
        "class_uid": 6003,
        "actor": actor,
        "status": status,
        "uid": format!("{audit_id}/{stage}"),
        "metadata": {"k8s": k8s},
    });
    if let Some(c) = code {
        out["status_code"] = json!(c);
    }
    if let Some(detail) = s(e, &["responseStatus", "message"]).or(s(e, &["responseStatus", "reason"])) {
        out["status_detail"] = json!(detail);
    }
    if let Some(imp) = e.get("impersonatedUser") {
        // The authenticated user acted as someone else: both are kept, the
        // impersonated one as the target of the impersonation.
        out["metadata"]["k8s"]["impersonatedUser"] = imp.clone();
        out["targets"] = json!([{"type": "user", "name": s(imp, &["username"]).unwrap_or("")}]);
        out["actor"]["session"] = json!({"uid": format!("impersonating:{}", s(imp, &["username"]).unwrap_or(""))});
    }
    if let Some(ips) = e["sourceIPs"].as_array() {
        if let Some(ip) = ips.first().and_then(Value::as_str).filter(|ip| ip.parse::<std::net::IpAddr>().is_ok()) {
            out["src_endpoint"] = json!({"ip": ip});
        }
        out["metadata"]["k8s"]["sourceIPs"] = json!(ips);
    }
    if let Some(obj) = e.get("objectRef").and_then(Value::as_object) {
        let mut r = Map::new();
        r.insert("type".into(), json!(obj.get("resource").and_then(Value::as_str).unwrap_or("")));
        if let Some(n) = obj.get("name") {
            r.insert("name".into(), n.clone());
        }
        for f in ["namespace", "apiGroup", "apiVersion", "subresource"] {
            if let Some(v) = obj.get(f) {
                r.insert(f.into(), v.clone());
            }
        }
        out["resource"] = Value::Object(r);
    }
    out["message"] = json!(format!("{user} {verb} {}", s(e, &["requestURI"]).unwrap_or("")));
    let raw = e.to_string();
    out["raw_data"] = json!(if raw.len() > MAX_RAW_BYTES {
        out["metadata"]["raw_data_truncated"] = json!(true);
        raw[..raw.floor_char_boundary(MAX_RAW_BYTES)].to_string()
    } else {
        raw
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_a_create_with_impersonation() {
        let e = json!({"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete",
            "requestURI":"/api/v1/namespaces/default/secrets","verb":"create",
            "user":{"username":"admin","groups":["system:masters"]},"impersonatedUser":{"username":"dev"},
            "sourceIPs":["192.168.64.1"],"userAgent":"kubectl","objectRef":{"resource":"secrets","namespace":"default","name":"s"},
            "responseStatus":{"code":403,"reason":"Forbidden"},"stageTimestamp":"2020-04-21T17:57:05.548299Z"});
        let m = map_event(&e).unwrap();
        assert_eq!(m["activity"], "k8s.create");
        assert_eq!(m["actor"]["user"]["name"], "admin");
        assert_eq!(m["targets"][0]["name"], "dev");
        assert_eq!(m["status"], "failure");
        assert_eq!(m["uid"], "a1/ResponseComplete");
        assert_eq!(m["src_endpoint"]["ip"], "192.168.64.1");
        assert_eq!(m["resource"]["name"], "s");
        let sealed = custos_event::validate(m);
        assert!(sealed.is_ok(), "{sealed:?}");
    }

    #[test]
    fn rejects_what_is_not_an_event_list() {
        assert!(items(&json!({"kind": "Pod"})).is_err());
        assert!(map_event(&json!({"auditID": "x"})).is_err());
    }
}
