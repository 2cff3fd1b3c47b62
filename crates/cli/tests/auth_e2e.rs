//! Access control end to end: the authorization matrix, tenant isolation,
//! expiry and revocation, the meta-audit trail, rate limits, TLS and mutual
//! TLS with real certificates, and key file permissions.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

/// Creates a token offline with the CLI, as automation would.
fn token(data: &Path, role: &str, logs: &str, name: &str, extra: &[&str]) -> String {
    let out = Command::new(bin())
        .args(["token", "create", "--data"])
        .arg(data)
        .args(["--role", role, "--logs", logs, "--name", name])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Fields drop in order: the server stops before its directory goes.
struct Setup {
    s: Server,
    tokens: Vec<(&'static str, Option<String>)>,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let admin = s.admin_token.clone().unwrap();
    for log in ["a", "b"] {
        let (st, r) = post_as(&s.events_url(log), Some(&admin), "application/json", event("seed", 1).to_string(), &[]);
        assert_eq!(st, 200, "{r}");
    }
    poll(|| (get_json(&format!("{}/v1/logs/a", s.url)).1["checkpoint"]["size"] == 1).then_some(()));
    let tokens = vec![
        ("ingest", Some(token(dir.path(), "ingest", "a", "ingest-a", &[]))),
        ("reader", Some(token(dir.path(), "reader", "a", "reader-a", &[]))),
        ("auditor", Some(token(dir.path(), "auditor", "*", "auditor", &[]))),
        ("admin", Some(admin)),
        ("none", None),
        ("bogus", Some("custos_0123456789ab_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into())),
    ];
    Setup { s, tokens, _dir: dir }
}

/// Every role × every endpoint × own log / other log / system log.
#[test]
fn authorization_matrix() {
    let Setup { s, tokens, _dir } = setup();
    // (method, path with {log}, body)
    let endpoints: &[(&str, &str)] = &[
        ("POST", "/v1/logs/{log}/events"),
        ("GET", "/v1/logs/{log}"),
        ("GET", "/v1/logs/{log}/entries/0"),
        ("GET", "/v1/logs/{log}/entries?start=0&end=1"),
        ("GET", "/v1/logs/{log}/consistency?from=0"),
        ("GET", "/tlog/{log}/checkpoint"),
        ("GET", "/tlog/{log}/tile/0/000.p/1"),
        ("GET", "/tlog/{log}/tile/entries/000.p/1"),
    ];
    let mut failures = Vec::new();
    for (role, tok) in &tokens {
        for (method, path) in endpoints {
            for log in ["a", "b", "_custos"] {
                let url = format!("{}{}", s.url, path.replace("{log}", log));
                let status = if *method == "POST" {
                    post_as(&url, tok.as_deref(), "application/json", event("m", 2).to_string(), &[]).0
                } else {
                    get_as(&url, tok.as_deref()).0
                };
                let want = expected(role, method, path, log);
                if status != want {
                    failures
                        .push(format!("{role} {method} {} -> {status}, expected {want}", path.replace("{log}", log)));
                }
            }
        }
        // Endpoints without a log.
        for (method, path, want) in [
            ("GET", "/v1/logs", global(role, "list")),
            ("GET", "/v1/tokens", global(role, "manage")),
            ("POST", "/v1/tokens", global(role, "manage_post")),
            ("GET", "/metrics", global(role, "metrics")),
            ("GET", "/healthz", 200),
        ] {
            let url = format!("{}{path}", s.url);
            let status = if method == "POST" {
                post_as(&url, tok.as_deref(), "application/json", r#"{"name":"m","role":"reader","logs":"a"}"#, &[]).0
            } else {
                get_as(&url, tok.as_deref()).0
            };
            if status != want {
                failures.push(format!("{role} {method} {path} -> {status}, expected {want}"));
            }
        }
    }
    assert!(failures.is_empty(), "authorization matrix mismatches:\n{}", failures.join("\n"));
}

fn expected(role: &str, method: &str, path: &str, log: &str) -> u16 {
    let post = method == "POST";
    match role {
        "none" | "bogus" => 401,
        // Nobody appends to a system log through the API; the name itself
        // is reserved, which is no secret.
        _ if post && log == "_custos" => 400,
        // Scoped to log a: b and _custos are indistinguishable from absent.
        "ingest" | "reader" if log != "a" => 404,
        "ingest" if post => 200,
        "ingest" => 403,
        "reader" if post => 403,
        "reader" => 200,
        "auditor" if post => 403,
        "auditor" => 200,
        "admin" if post => 200,
        "admin" if log == "_custos" && path.contains("consistency") => 200,
        "admin" => 200,
        _ => unreachable!("{role}"),
    }
}

fn global(role: &str, what: &str) -> u16 {
    match (role, what) {
        ("none" | "bogus", _) => 401,
        ("ingest", "list") => 403,
        (_, "list") => 200,
        ("admin", "manage") => 200,
        ("admin", "manage_post") => 201,
        (_, "manage" | "manage_post") => 403,
        ("admin" | "auditor", "metrics") => 200,
        (_, "metrics") => 403,
        _ => unreachable!(),
    }
}

/// A token scoped to log a learns nothing about log b: the answers for an
/// existing b and a missing c are byte for byte the same, and lists omit b.
#[test]
fn tenant_isolation() {
    let Setup { s, tokens, _dir } = setup();
    let reader = tokens[1].1.clone();
    for path in
        ["/v1/logs/{log}", "/v1/logs/{log}/entries/0", "/tlog/{log}/checkpoint", "/v1/logs/{log}/entries?start=0&end=1"]
    {
        let b = get_as(&format!("{}{}", s.url, path.replace("{log}", "b")), reader.as_deref());
        let c = get_as(&format!("{}{}", s.url, path.replace("{log}", "c")), reader.as_deref());
        let norm = |x: Vec<u8>, log: &str| String::from_utf8(x).unwrap().replace(log, "LOG");
        assert_eq!((b.0, norm(b.1, "b")), (c.0, norm(c.1, "c")), "{path}");
    }
    let (_, list) = get_json_as(&format!("{}/v1/logs", s.url), reader.as_deref());
    let names: Vec<&str> = list["logs"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a"]);
    let ingest = tokens[0].1.clone();
    let b = post_as(&s.events_url("b"), ingest.as_deref(), "application/json", event("x", 1).to_string(), &[]);
    let c = post_as(&s.events_url("c"), ingest.as_deref(), "application/json", event("x", 1).to_string(), &[]);
    let msg = |v: &Value, log: &str| v["error"].as_str().unwrap().replace(&format!("\"{log}\""), "L");
    assert_eq!((b.0, msg(&b.1, "b")), (c.0, msg(&c.1, "c")));
    assert_eq!(get_json(&format!("{}/v1/logs/c", s.url)).0, 404, "a hidden write must not create the log");
}

fn get_json_as(url: &str, token: Option<&str>) -> (u16, Value) {
    let (s, b) = get_as(url, token);
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

/// Expiry and revocation take effect at once, whether done offline with
/// the CLI or through the API; and every read is recorded in `_custos` with
/// the right actor.
#[test]
fn expiry_revocation_and_meta_audit() {
    let Setup { s, tokens, _dir } = setup();
    let data = s.data.clone();
    let reader = tokens[1].1.clone().unwrap();
    let auditor = tokens[2].1.clone().unwrap();
    assert_eq!(get_as(&format!("{}/v1/logs/a/entries/0", s.url), Some(&reader)).0, 200);
    assert_eq!(get_as(&format!("{}/v1/logs/a/entries/99999", s.url), Some(&reader)).0, 404);
    // Offline revocation, while the server runs.
    let r = Command::new(bin()).args(["token", "revoke", "--data"]).arg(&data).arg("reader-a").output().unwrap();
    assert!(r.status.success());
    assert_eq!(get_as(&format!("{}/v1/logs/a/entries/0", s.url), Some(&reader)).0, 401);
    // A token that expires in one second.
    let short = token(&data, "reader", "a", "short", &["--ttl", "1s"]);
    let first = get_as(&format!("{}/v1/logs/a", s.url), Some(&short)).0;
    assert!(first == 200 || first == 401);
    poll(|| (get_as(&format!("{}/v1/logs/a", s.url), Some(&short)).0 == 401).then_some(()));
    // API: create and revoke.
    let admin = s.admin_token.clone().unwrap();
    let (st, created) = post_as(
        &format!("{}/v1/tokens", s.url),
        Some(&admin),
        "application/json",
        r#"{"name":"api-reader","role":"reader","logs":"a","ttl":"1h"}"#,
        &[],
    );
    assert_eq!(st, 201, "{created}");
    let t = created["token"].as_str().unwrap().to_string();
    assert_eq!(get_as(&format!("{}/v1/logs/a/entries/0", s.url), Some(&t)).0, 200);
    let id = created["record"]["id"].as_str().unwrap();
    let del = agent()
        .delete(&format!("{}/v1/tokens/{id}", s.url))
        .header("Authorization", format!("Bearer {admin}"))
        .call()
        .unwrap();
    assert_eq!(del.status(), 200);
    assert_eq!(get_as(&format!("{}/v1/logs/a/entries/0", s.url), Some(&t)).0, 401);

    // The audit trail of the audit log, read by an auditor.
    let events = poll(|| {
        let (st, info) = get_json_as(&format!("{}/v1/logs/_custos", s.url), Some(&auditor));
        let size = info["size"].as_u64()?;
        (st == 200).then_some(())?;
        let (_, page) =
            get_json_as(&format!("{}/v1/logs/_custos/entries?start=0&end={}", s.url, size.min(1000)), Some(&auditor));
        let evs: Vec<Value> = page["entries"].as_array()?.iter().map(|e| e["event"].clone()).collect();
        let has = |activity: &str, actor: &str, msg: &str| {
            evs.iter().any(|e| {
                e["activity"] == activity
                    && e["actor"]["user"]["name"] == actor
                    && e["message"].as_str().unwrap_or("").contains(msg)
            })
        };
        (has("custos.read", "token:reader-a", "GET /v1/logs/a/entries/0")
            && has("custos.auth.failure", "anonymous", "GET /v1/logs/a/entries/0")
            && has("custos.token.create", "token:bootstrap-admin", "custos.token.create")
            && has("custos.token.revoke", "token:bootstrap-admin", "custos.token.revoke")
            && has("custos.server.start", "custos", "custos.server.start")
            && has("custos.token.revoke", "local:token-store", "seen in the token store")
            && has("custos.token.create", "local:token-store", "seen in the token store")
            && has("custos.read", "token:auditor", "GET /v1/logs/_custos"))
        .then_some(evs)
    });
    // Each entry read is recorded once, with its outcome: the found one
    // while it was read, the missing one after its 404.
    let outcome = |msg: &str| -> Vec<(String, String)> {
        events
            .iter()
            .filter(|e| e["activity"] == "custos.read" && e["actor"]["user"]["name"] == "token:reader-a")
            .filter(|e| e["message"] == msg)
            .map(|e| (e["status"].as_str().unwrap().to_string(), e["status_detail"].as_str().unwrap().to_string()))
            .collect()
    };
    assert_eq!(outcome("GET /v1/logs/a/entries/0"), [("success".to_string(), "HTTP 200".to_string())]);
    assert_eq!(outcome("GET /v1/logs/a/entries/99999"), [("failure".to_string(), "HTTP 404".to_string())]);
    let failure = events.iter().find(|e| e["activity"] == "custos.auth.failure").unwrap();
    assert_eq!(failure["status"], "failure");
    assert!(
        failure["status_detail"].as_str().unwrap().contains("revoked")
            || failure["status_detail"].as_str().unwrap().contains("expired")
    );
    // Stop is recorded too, and the trail verifies offline.
    let vkey = s.verifier_key.clone();
    assert!(s.stop().success());
    let s = Server::start(&data, &[]);
    let (_, info) = get_json_as(&format!("{}/v1/logs/_custos", s.url), Some(&auditor));
    let size = info["size"].as_u64().unwrap();
    let (_, page) =
        get_json_as(&format!("{}/v1/logs/_custos/entries?start=0&end={}", s.url, size.min(1000)), Some(&auditor));
    assert!(page["entries"].as_array().unwrap().iter().any(|e| e["event"]["activity"] == "custos.server.stop"));
    drop(s);
    let v = Command::new(bin())
        .args(["verify", "--data"])
        .arg(&data)
        .args(["--key", &vkey, "--log", "_custos"])
        .output()
        .unwrap();
    assert_eq!(v.status.code(), Some(0), "{}", String::from_utf8_lossy(&v.stdout));
}

#[test]
fn rate_limit_returns_429_then_recovers() {
    let Setup { s, _dir, .. } = setup();
    let t = token(&s.data, "reader", "a", "slow", &["--rate-limit", "5"]);
    let url = format!("{}/v1/logs/a", s.url);
    let mut limited = None;
    for _ in 0..50 {
        let r = agent().get(&url).header("Authorization", format!("Bearer {t}")).call().unwrap();
        if r.status() == 429 {
            limited = Some(r.headers()["retry-after"].to_str().unwrap().to_string());
            break;
        }
    }
    let retry_after: u64 = limited.expect("never rate limited").parse().unwrap();
    assert!(retry_after >= 1);
    poll(|| (get_as(&url, Some(&t)).0 == 200).then_some(()));
}

#[test]
fn world_readable_signing_key_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    drop(Server::start(dir.path(), &[]));
    std::fs::set_permissions(dir.path().join("signing.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out =
        Command::new(bin()).args(["serve", "--listen", "127.0.0.1:0", "--data"]).arg(dir.path()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("readable by others"), "{err}");
}

#[test]
fn tls_and_mutual_tls_with_real_certificates() {
    let p = pki();
    let dir = tempfile::tempdir().unwrap();
    let s = start_mtls(dir.path(), &p, "a");
    assert!(s.url.starts_with("https://"), "{}", s.url);
    let body = event("svc", 1).to_string();
    let events = format!("{}/v1/logs/a/events", s.url);
    // A mapped client certificate is an ingest identity for its logs.
    assert_eq!(curl(&p, &events, Some("client"), None, Some(&body)), (0, 200));
    assert_eq!(curl(&p, &format!("{}/v1/logs/b/events", s.url), Some("client"), None, Some(&body)).1, 404);
    assert_eq!(curl(&p, &format!("{}/v1/logs/a", s.url), Some("client"), None, None).1, 403);
    // A certificate from another CA, or expired, fails the handshake.
    assert_ne!(curl(&p, &events, Some("evil"), None, Some(&body)).0, 0);
    assert_ne!(curl(&p, &events, Some("expired"), None, Some(&body)).0, 0);
    // A valid but unmapped certificate is refused.
    assert_eq!(curl(&p, &events, Some("stranger"), None, Some(&body)), (0, 401));
    // No certificate: a token is needed.
    assert_eq!(curl(&p, &events, None, None, Some(&body)), (0, 401));
    let admin = s.admin_token.clone().unwrap();
    assert_eq!(curl(&p, &events, None, Some(&admin), Some(&body)), (0, 200));
    // The stored event names the certificate identity as its submitter.
    let out = Command::new("curl")
        .args(["-s", "--cacert", &p.path("ca.pem"), "-H", &format!("Authorization: Bearer {admin}")])
        .arg(format!("{}/v1/logs/a/entries/0", s.url))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["event"]["submitter"]["name"], "cert:collector-1", "{v}");
    // Plain HTTP to the TLS port does not work.
    let plain = s.url.replace("https://", "http://");
    assert_ne!(Command::new("curl").args(["-s", "-f", &format!("{plain}/healthz")]).status().unwrap().code(), Some(0));
}

#[test]
fn self_signed_tls_prints_its_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--tls-self-signed", "--data"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut fingerprint = None;
    let mut url = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(fp) = line.split("SHA-256 fingerprint ").nth(1) {
            fingerprint = Some(fp.to_string());
        }
        if let Some(u) = line.strip_prefix("custos listening on ") {
            url = Some(u.to_string());
            break;
        }
    }
    let fp = fingerprint.expect("fingerprint printed");
    assert_eq!(fp.len(), 32 * 3 - 1);
    let url = url.unwrap();
    let cert = dir.path().join("tls/self-signed.pem");
    poll(|| {
        let out =
            Command::new("curl").args(["-s", "--cacert"]).arg(&cert).arg(format!("{url}/healthz")).output().ok()?;
        (out.stdout == b"ok\n").then_some(())
    });
    // The certificate on the wire has the printed fingerprint.
    let out =
        Command::new("openssl").args(["x509", "-noout", "-fingerprint", "-sha256", "-in"]).arg(&cert).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&fp), "{}", String::from_utf8_lossy(&out.stdout));
    let _ = child.kill();
    let _ = child.wait();
}

/// With `--public-hashes`, witnesses read checkpoints and hash tiles with no
/// credentials; entry bundles and entries still need read rights.
#[test]
fn public_hashes_open_only_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--public-hashes"]);
    let admin = s.admin_token.clone().unwrap();
    post_as(&s.events_url("a"), Some(&admin), "application/json", event("x", 1).to_string(), &[]);
    poll(|| (get_as(&format!("{}/tlog/a/checkpoint", s.url), None).0 == 200).then_some(()));
    assert_eq!(get_as(&format!("{}/tlog/a/tile/0/000.p/1", s.url), None).0, 200);
    assert_eq!(get_as(&format!("{}/tlog/a/tile/entries/000.p/1", s.url), None).0, 401);
    assert_eq!(get_as(&format!("{}/v1/logs/a/entries/0", s.url), None).0, 401);
    assert_eq!(get_as(&format!("{}/v1/logs", s.url), None).0, 401);
}

/// Slow or silent clients are cut off: a stalled body gets 408, a silent
/// connection is closed.
#[test]
fn slow_and_silent_clients_are_cut_off() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--idle-timeout-secs", "3", "--body-timeout-secs", "1"]);
    let addr = s.url.trim_start_matches("http://").to_string();
    let token = s.admin_token.clone().unwrap();
    // A body that never finishes.
    let mut c = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        c,
        "POST /v1/logs/a/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"time\""
    )
    .unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    let mut answer = String::new();
    let _ = c.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // A body already over the limit (16 MiB) and still arriving when the
    // time is up: 413, the size being what the client must fix.
    let mut c = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        c,
        "POST /v1/logs/a/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n",
        40 << 20
    )
    .unwrap();
    c.write_all(&vec![b' '; 17 << 20]).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    let mut answer = String::new();
    let _ = c.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // Headers that never finish: the connection is closed.
    let mut c = std::net::TcpStream::connect(&addr).unwrap();
    c.write_all(b"GET /v1/logs HTTP/1.1\r\nHost: x\r\n").unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let n = c.read_to_end(&mut buf);
    assert!(n.is_ok() && buf.is_empty(), "{n:?} {}", String::from_utf8_lossy(&buf));
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    // Slowloris: headers dribbled a byte every 300 ms never go idle, but
    // the whole request must arrive within body timeout + 10 s = 11 s.
    let mut c = std::net::TcpStream::connect(&addr).unwrap();
    let started = std::time::Instant::now();
    let line = b"GET /v1/logs HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut closed = false;
    for b in line {
        if c.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        if started.elapsed() > std::time::Duration::from_secs(25) {
            break;
        }
    }
    assert!(closed, "a dribbling client kept its connection for {:?}", started.elapsed());
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

/// People through single sign-on: RS256 JWTs made with openssl, as an
/// identity provider would, checked against the issuer's JWKS and mapped
/// from their groups claim to roles.
#[test]
fn oidc_jwts_map_to_roles() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("idp.pem");
    assert!(Command::new("openssl").args(["genrsa", "-out"]).arg(&key).arg("2048").output().unwrap().status.success());
    let modulus = Command::new("openssl").args(["rsa", "-noout", "-modulus", "-in"]).arg(&key).output().unwrap();
    let hex = String::from_utf8(modulus.stdout).unwrap().trim().trim_start_matches("Modulus=").to_string();
    let n: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    let jwks = serde_json::json!({"keys": [{"kty": "RSA", "kid": "r1", "use": "sig", "alg": "RS256", "n": B64URL.encode(&n), "e": "AQAB"}]});
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, jwks.to_string()).unwrap();
    let sign = |claims: Value| {
        let h = B64URL.encode(r#"{"alg":"RS256","kid":"r1","typ":"JWT"}"#);
        let p = B64URL.encode(claims.to_string());
        let input = dir.path().join("input");
        std::fs::write(&input, format!("{h}.{p}")).unwrap();
        let sig = Command::new("openssl").args(["dgst", "-sha256", "-sign"]).arg(&key).arg(&input).output().unwrap();
        format!("{h}.{p}.{}", B64URL.encode(sig.stdout))
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = |user: &str, groups: Value, iss: &str, exp: u64| serde_json::json!({"iss": iss, "aud": "custos", "sub": user, "preferred_username": user, "exp": exp, "groups": groups});
    let data = dir.path().join("data");
    let s = Server::start(
        &data,
        &[
            "--oidc-issuer",
            "https://idp.test",
            "--oidc-jwks",
            jwks_path.to_str().unwrap(),
            "--oidc-audience",
            "custos",
            "--oidc-map",
            "custos-auditors=auditor:*;db-team=reader:a",
        ],
    );
    let admin = s.admin_token.clone().unwrap();
    post_as(&s.events_url("a"), Some(&admin), "application/json", event("x", 1).to_string(), &[]);
    let alice = sign(claims("alice", serde_json::json!(["staff", "custos-auditors"]), "https://idp.test", now + 600));
    let bob = sign(claims("bob", serde_json::json!(["db-team"]), "https://idp.test", now + 600));
    assert_eq!(get_as(&format!("{}/v1/logs/_custos", s.url), Some(&alice)).0, 200);
    assert_eq!(get_as(&format!("{}/v1/logs/a", s.url), Some(&bob)).0, 200);
    assert_eq!(get_as(&format!("{}/v1/logs/_custos", s.url), Some(&bob)).0, 404);
    assert_eq!(post_as(&s.events_url("a"), Some(&bob), "application/json", event("x", 1).to_string(), &[]).0, 403);
    for bad in [
        sign(claims("eve", serde_json::json!(["custos-auditors"]), "https://evil.test", now + 600)),
        sign(claims("eve", serde_json::json!(["custos-auditors"]), "https://idp.test", now - 3600)),
        sign(claims("eve", serde_json::json!(["nobody"]), "https://idp.test", now + 600)),
        bob.replacen('.', ".e30", 1),
    ] {
        assert_eq!(get_as(&format!("{}/v1/logs/a", s.url), Some(&bad)).0, 401, "{bad}");
    }
    // Reads by a person are recorded under their single sign-on name.
    poll(|| {
        let (_, page) = get_json(&format!("{}/v1/logs/_custos/entries?start=0", s.url));
        let found = page["entries"].as_array()?.iter().any(|e| e["event"]["actor"]["user"]["name"] == "oidc:bob");
        found.then_some(())
    });
    // The same single sign-on set-up from the TOML config file.
    drop(s);
    let config = dir.path().join("custos.toml");
    std::fs::write(
        &config,
        format!(
            "[oidc]\nissuer = \"https://idp.test\"\njwks = \"{}\"\naudience = \"custos\"\n[oidc.map]\ncustos-auditors = \"auditor:*\"\n",
            jwks_path.display()
        ),
    )
    .unwrap();
    let s = Server::start(&data, &["--config", config.to_str().unwrap()]);
    assert_eq!(get_as(&format!("{}/v1/logs/_custos", s.url), Some(&alice)).0, 200);
    assert_eq!(get_as(&format!("{}/v1/logs/a", s.url), Some(&bob)).0, 401, "db-team is not mapped in the file");
}
