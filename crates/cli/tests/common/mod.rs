//! Helpers for end-to-end tests: a real `custos serve` process on a free
//! loopback port, and a plain HTTP client.
#![allow(dead_code)]

pub mod pg;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use custos_tlog::hash::Hash;
use serde_json::Value;

/// A running server. Killed (SIGKILL) when dropped unless stopped.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub verifier_key: String,
    pub data: PathBuf,
    /// The bootstrap admin token, when this start created it.
    pub admin_token: Option<String>,
    /// Other lines the server printed at start (syslog listeners).
    pub lines: Vec<String>,
}

/// Admin tokens by server URL, so that the plain helpers below send the
/// right one. Data directories keep their token across restarts.
static TOKENS: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());
static DATA_TOKENS: std::sync::Mutex<Vec<(PathBuf, String)>> = std::sync::Mutex::new(Vec::new());

pub fn token_for(url: &str) -> Option<String> {
    TOKENS.lock().unwrap().iter().find(|(u, _)| url.starts_with(u.as_str())).map(|(_, t)| t.clone())
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_custos")
}

impl Server {
    /// Starts `custos serve` on `data` with an OS-chosen port and waits
    /// until it answers `/healthz`.
    pub fn start(data: &Path, extra: &[&str]) -> Server {
        Self::start_with_stderr(data, extra, Stdio::inherit())
    }

    /// [`Server::start`] with the server's log (warnings and errors) going
    /// to `stderr`, such as a file the test reads.
    pub fn start_with_stderr(data: &Path, extra: &[&str], stderr: impl Into<Stdio>) -> Server {
        let listen = if extra.contains(&"--listen") { &[][..] } else { &["--listen", "127.0.0.1:0"][..] };
        let mut child = Command::new(bin())
            .arg("serve")
            .args(listen)
            .arg("--data")
            .arg(data)
            .args(["--checkpoint-interval-ms", "200"])
            .args(extra)
            .env("CUSTOS_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn custos serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut url = String::new();
        let mut verifier_key = String::new();
        let mut admin_token = None;
        let mut printed = Vec::new();
        for line in lines.by_ref() {
            let line = line.expect("server stdout");
            printed.push(line.clone());
            if line.starts_with("bootstrap admin token ") {
                admin_token = line.rsplit(' ').next().map(str::to_string);
            }
            if let Some(u) = line.strip_prefix("custos listening on ") {
                url = u.to_string();
            }
            if let Some(k) = line.strip_prefix("verifier key: ") {
                verifier_key = k.to_string();
                break;
            }
        }
        assert!(!url.is_empty(), "server did not print its address");
        // Keep draining stdout so the server never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        if let Some(t) = &admin_token {
            DATA_TOKENS.lock().unwrap().push((data.to_path_buf(), t.clone()));
        }
        let known = DATA_TOKENS.lock().unwrap().iter().find(|(d, _)| d == data).map(|(_, t)| t.clone());
        if let Some(t) = &known {
            TOKENS.lock().unwrap().push((url.clone(), t.clone()));
        }
        let s = Server { child, url, verifier_key, data: data.to_path_buf(), admin_token: known, lines: printed };
        let deadline = Instant::now() + Duration::from_secs(30);
        let healthy = |url: &str| {
            if url.starts_with("https://") {
                // ureq here speaks plain HTTP only; curl checks TLS servers.
                Command::new("curl")
                    .args(["-s", "-k", &format!("{url}/healthz")])
                    .output()
                    .is_ok_and(|o| o.stdout == b"ok\n")
            } else {
                get(&format!("{url}/healthz")).0 == 200
            }
        };
        while !healthy(&s.url) {
            assert!(Instant::now() < deadline, "server never became healthy");
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        unsafe_kill(self.child.id(), "TERM");
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }

    /// SIGKILL.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        std::mem::forget(self);
    }

    pub fn events_url(&self, log: &str) -> String {
        format!("{}/v1/logs/{log}/events", self.url)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_kill(pid: u32, sig: &str) {
    Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().unwrap();
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

fn read(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Vec<u8>) {
    let mut r = r.expect("http request");
    let status = r.status().as_u16();
    (status, r.body_mut().with_config().limit(1 << 30).read_to_vec().unwrap())
}

pub fn get(url: &str) -> (u16, Vec<u8>) {
    get_as(url, token_for(url).as_deref())
}

/// GET with a given bearer token, or none.
pub fn get_as(url: &str, token: Option<&str>) -> (u16, Vec<u8>) {
    let mut req = agent().get(url);
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    match req.call() {
        Ok(r) => read(Ok(r)),
        Err(_) => (0, Vec::new()),
    }
}

pub fn get_json(url: &str) -> (u16, Value) {
    let (s, b) = get(url);
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

pub fn post(url: &str, content_type: &str, body: impl AsRef<[u8]>, headers: &[(&str, &str)]) -> (u16, Value) {
    post_as(url, token_for(url).as_deref(), content_type, body, headers)
}

/// POST with a given bearer token, or none.
pub fn post_as(
    url: &str,
    token: Option<&str>,
    content_type: &str,
    body: impl AsRef<[u8]>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut req = agent().post(url).header("Content-Type", content_type);
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let (s, b) = read(req.send(body.as_ref()));
    (s, serde_json::from_slice(&b).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&b).into())))
}

/// A valid event for user `user`, numbered `n`.
pub fn event(user: &str, n: u64) -> Value {
    serde_json::json!({
        "time": "2026-11-27T09:00:00Z",
        "activity": "db.query",
        "actor": {"user": {"name": user}},
        "status": if n.is_multiple_of(7) { "failure" } else { "success" },
        "src_endpoint": {"ip": "10.0.0.1", "port": 5000 + n % 1000},
        "message": format!("SELECT {n}"),
    })
}

pub fn ndjson(events: &[Value]) -> String {
    events.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")
}

pub fn hash(b64: &Value) -> Hash {
    Hash::from_slice(&B64.decode(b64.as_str().expect("base64 string")).unwrap()).unwrap()
}

/// Polls until `f` returns Some, up to 30 s.
pub fn poll<T>(f: impl FnMut() -> Option<T>) -> T {
    poll_or(f, String::new)
}

/// Like `poll`, naming what `why` returns when the condition never holds.
pub fn poll_or<T>(mut f: impl FnMut() -> Option<T>, why: impl Fn() -> String) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "condition never held; {}", why());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Fetches entry `index` once a checkpoint covers it and checks its
/// inclusion proof and signature with client-side code only.
pub fn prove(url: &str, log: &str, index: u64, leaf: &Hash, vkey: &str) {
    let v = poll(|| {
        let (s, v) = get_json(&format!("{url}/v1/logs/{log}/entries/{index}"));
        (s == 200 && !v["inclusion_proof"].is_null()).then_some(v)
    });
    let entry = v["entry"].as_str().unwrap();
    assert_eq!(&custos_tlog::leaf_hash(entry.as_bytes()), leaf, "entry {index} bytes do not hash to its receipt");
    let verifier = custos_tlog::note::NoteVerifier::parse(vkey).unwrap();
    let text = verifier.open(v["checkpoint"].as_str().unwrap()).unwrap();
    let cp = custos_tlog::Checkpoint::parse(text).unwrap();
    let proof: Vec<Hash> = v["inclusion_proof"].as_array().unwrap().iter().map(hash).collect();
    custos_tlog::proof::verify_inclusion(index, cp.size, leaf, &proof, &cp.root).unwrap();
}

/// Certificates for the TLS tests, written as PEM files.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }
}

pub fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let w = |name: &str, s: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, s).unwrap();
        // Keys private to their owner, as libpq insists for sslkey.
        if name.ends_with(".key") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    };
    let ca = |cn: &str| {
        let mut p = CertificateParams::new(vec![]).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, cn);
        CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
    };
    let good_ca = ca("Custos Test CA");
    let evil_ca = ca("Evil CA");
    w("ca.pem", good_ca.pem());
    // Serial numbers, for the revocation lists below.
    let serial = std::cell::Cell::new(100u64);
    let leaf = |issuer: &CertifiedIssuer<KeyPair>, cn: &str, names: Vec<String>, expired: bool| {
        let mut p = CertificateParams::new(names).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        serial.set(serial.get() + 1);
        p.serial_number = Some(serial.get().into());
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    // FILE.pem and FILE.key, from a leaf certificate and its key.
    let pair = |file: &str, (c, k): (String, String)| {
        w(&format!("{file}.pem"), c);
        w(&format!("{file}.key"), k);
    };
    pair("server", leaf(&good_ca, "custos-server", vec!["127.0.0.1".into(), "localhost".into()], false));
    let server_serial = serial.get();
    pair("client", leaf(&good_ca, "collector-1", vec![], false));
    pair("evil", leaf(&evil_ca, "collector-1", vec![], false));
    pair("expired", leaf(&good_ca, "collector-1", vec![], true));
    pair("stranger", leaf(&good_ca, "stranger", vec![], false));
    // People and a service role, for the gateway's client certificates.
    pair("alice", leaf(&good_ca, "alice", vec![], false));
    pair("svc", leaf(&good_ca, "svc", vec![], false));
    pair("evil-alice", leaf(&evil_ca, "alice", vec![], false));
    pair("revoked-alice", leaf(&good_ca, "alice", vec![], false));
    // crl.pem revokes revoked-alice.pem; crl-server.pem revokes server.pem.
    let crl = |revoked: u64| {
        let params = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2025, 1, 1),
            next_update: rcgen::date_time_ymd(2035, 1, 1),
            crl_number: revoked.into(),
            issuing_distribution_point: None,
            revoked_certs: vec![rcgen::RevokedCertParams {
                serial_number: revoked.into(),
                revocation_time: rcgen::date_time_ymd(2025, 6, 1),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            }],
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        params.signed_by(&good_ca).unwrap().pem().unwrap()
    };
    w("crl.pem", crl(serial.get()));
    w("crl-server.pem", crl(server_serial));
    Pki { dir }
}

/// The parsed events of a log so far (none if it does not exist yet).
pub fn log_events(url: &str, log: &str) -> Vec<Value> {
    let (status, page) = get_json(&format!("{url}/v1/logs/{log}/entries?start=0"));
    match page["entries"].as_array() {
        Some(entries) if status == 200 => entries.iter().map(|e| e["event"].clone()).collect(),
        _ => Vec::new(),
    }
}

/// The parsed events of a log read with curl (which speaks HTTPS, unlike
/// the plain helpers), once there are at least `n`.
pub fn events_with_curl(pki: &Pki, url: &str, token: &str, log: &str, n: usize) -> Option<Vec<Value>> {
    let out = Command::new("curl")
        .args(["-s", "--cacert", &pki.path("ca.pem"), "-H", &format!("Authorization: Bearer {token}")])
        .arg(format!("{url}/v1/logs/{log}/entries?start=0"))
        .output()
        .ok()?;
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    let es: Vec<Value> = v["entries"].as_array()?.iter().map(|e| e["event"].clone()).collect();
    (es.len() >= n).then_some(es)
}

/// curl over TLS: returns (curl exit code, HTTP status).
pub fn curl(pki: &Pki, url: &str, cert: Option<&str>, token: Option<&str>, body: Option<&str>) -> (i32, u16) {
    let mut c = Command::new("curl");
    c.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", &pki.path("ca.pem"), url]);
    if let Some(name) = cert {
        c.args(["--cert", &pki.path(&format!("{name}.pem")), "--key", &pki.path(&format!("{name}.key"))]);
    }
    if let Some(t) = token {
        c.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    let out = c.output().expect("curl is installed");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0))
}

/// Starts a server with TLS and client-certificate verification from
/// `pki`, mapping the client certificate CN `collector-1` to `logs`.
pub fn start_mtls(data: &Path, pki: &Pki, logs: &str) -> Server {
    let mapping = format!("collector-1={logs}");
    Server::start(
        data,
        &[
            "--tls-cert",
            &pki.path("server.pem"),
            "--tls-key",
            &pki.path("server.key"),
            "--tls-client-ca",
            &pki.path("ca.pem"),
            "--cert-identity",
            &mapping,
        ],
    )
}
