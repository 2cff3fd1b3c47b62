//! Real senders into Custos: util-linux `logger` over UDP and TCP (both
//! framings, RFC 5424 and RFC 3164), the Kubernetes audit webhook over
//! mutual TLS with the recorded fixtures, and source health.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

fn syslog_port(s: &Server, proto: &str) -> String {
    let line = s.lines.iter().find(|l| l.starts_with(&format!("syslog {proto} on "))).expect("syslog listener line");
    line.split_whitespace().nth(3).unwrap().rsplit(':').next().unwrap().to_string()
}

fn logger(port: &str, args: &[&str], msg: &str) {
    let st = Command::new("logger").args(["-n", "127.0.0.1", "-P", port]).args(args).arg(msg).status().unwrap();
    assert!(st.success(), "logger {args:?} failed");
}

/// All events of a log, once it holds at least `n`.
fn events(s: &Server, log: &str, n: u64) -> Vec<Value> {
    poll(|| {
        let es = log_events(&s.url, log);
        (es.len() as u64 >= n).then_some(es)
    })
}

#[test]
fn logger_over_udp_and_tcp_in_both_framings() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--syslog-udp", "127.0.0.1:0=syslog", "--syslog-tcp", "127.0.0.1:0=syslog"]);
    let (udp, tcp) = (syslog_port(&s, "udp"), syslog_port(&s, "tcp"));
    logger(
        &udp,
        &["-d", "--rfc5424", "-t", "sshd", "--msgid", "AUTH"],
        "Failed password for bob from 203.0.113.9 port 4444 ssh2",
    );
    logger(
        &udp,
        &["-d", "--rfc3164", "-t", "sudo"],
        "alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id",
    );
    logger(&tcp, &["-T", "--rfc5424", "-t", "sshd"], "Accepted publickey for carol from 10.9.8.7 port 50022 ssh2");
    logger(&tcp, &["-T", "--octet-count", "--rfc5424", "-t", "su"], "FAILED SU (to root) dave on pts/3");
    logger(&tcp, &["-T", "--octet-count", "--rfc3164", "-t", "app"], "an ordinary message");
    let es = events(&s, "syslog", 5);
    let find = |activity: &str, user: &str| {
        es.iter()
            .find(|e| e["activity"] == activity && e["actor"]["user"]["name"] == user)
            .unwrap_or_else(|| panic!("{activity} {user} missing: {es:#?}"))
    };
    let bob = find("user.login", "bob");
    assert_eq!((bob["status"].as_str(), bob["src_endpoint"]["ip"].as_str()), (Some("failure"), Some("203.0.113.9")));
    assert_eq!(bob["metadata"]["syslog"]["msgid"], "AUTH");
    assert_eq!(bob["submitter"]["via"], "syslog");
    assert!(bob["raw_data"].as_str().unwrap().contains("Failed password"));
    assert_eq!(find("user.sudo", "alice")["targets"][0]["name"], "root");
    assert_eq!(find("user.login", "carol")["status"], "success");
    assert_eq!(find("user.su", "dave")["status"], "failure");
    assert_eq!(find("syslog.message", "app")["message"], "an ordinary message");
    // Garbage on a stream is kept, flagged unparsed.
    use std::io::Write;
    let mut c = std::net::TcpStream::connect(format!("127.0.0.1:{tcp}")).unwrap();
    c.write_all(b"this is not syslog\n").unwrap();
    drop(c);
    let es = events(&s, "syslog", 6);
    assert!(es.iter().any(|e| e["activity"] == "syslog.unparsed" && e["raw_data"] == "this is not syslog"));
}

#[test]
fn sequence_gaps_and_silent_sources_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--syslog-tcp", "127.0.0.1:0=syslog", "--source-silence-secs", "2"]);
    let tcp = syslog_port(&s, "tcp");
    // rsyslog-style: one connection, RFC 5424 with `meta sequenceId`.
    use std::io::Write;
    let mut c = std::net::TcpStream::connect(format!("127.0.0.1:{tcp}")).unwrap();
    for seq in [1, 2, 5] {
        writeln!(c, "<14>1 2026-11-27T10:00:00Z web01 app 1 - [meta sequenceId=\"{seq}\"] tick {seq}").unwrap();
    }
    drop(c);
    // A JSON source with its own seq numbers, via the HTTP API.
    for seq in [10u64, 11, 13] {
        let mut e = event("svc", seq);
        e["seq"] = serde_json::json!(seq);
        post(&s.events_url("api"), "application/json", e.to_string(), &[]);
    }
    let sources = poll(|| {
        let (_, v) = get_json(&format!("{}/v1/sources", s.url));
        let list = v["sources"].as_array()?.clone();
        (list.len() >= 2).then_some(list)
    });
    let syslog = sources.iter().find(|x| x["source"] == "syslog:127.0.0.1").expect("syslog source");
    assert_eq!(syslog["gaps"], 2, "{sources:?}");
    let api = sources.iter().find(|x| x["source"].as_str().unwrap().starts_with("token:")).expect("token source");
    assert_eq!(api["gaps"], 1);
    // Both fall silent; it is reported by the API, the CLI and in _custos.
    poll(|| {
        let (_, v) = get_json(&format!("{}/v1/sources", s.url));
        v["sources"].as_array()?.iter().all(|x| x["silent"] == true).then_some(())
    });
    let cli = Command::new(bin())
        .args(["sources", "--url", &s.url])
        .env("CUSTOS_TOKEN", s.admin_token.as_deref().unwrap())
        .output()
        .unwrap();
    assert_eq!(cli.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&cli.stdout).contains("SILENT"));
    poll(|| {
        let (_, page) = get_json(&format!("{}/v1/logs/_custos/entries?start=0", s.url));
        let es = page["entries"].as_array()?;
        let has = |a: &str, who: &str| {
            es.iter().any(|e| e["event"]["activity"] == a && e["event"]["actor"]["user"]["name"] == who)
        };
        (has("custos.source.gap", "syslog:127.0.0.1") && has("custos.source.silent", "syslog:127.0.0.1")).then_some(())
    });
}

#[test]
fn kubernetes_audit_webhook_over_mutual_tls() {
    let p = pki();
    let dir = tempfile::tempdir().unwrap();
    let s = start_mtls(dir.path(), &p, "k8s");
    // The recorded fixtures, wrapped as the API server's webhook sends them.
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/k8s-audit");
    let mut items: Vec<Value> = Vec::new();
    for entry in std::fs::read_dir(&fixtures).unwrap() {
        for line in std::fs::read_to_string(entry.unwrap().path()).unwrap().lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line).unwrap();
            // fal_01_003.json holds `{"kind": 0}`, not an audit event; a
            // batch with it is rejected whole (checked below).
            if v.get("auditID").is_some() {
                items.push(v);
            }
        }
    }
    assert!(items.len() >= 30, "fixtures missing: {}", items.len());
    // One impersonated request, as kubectl --as sends it.
    let mut imp = items[0].clone();
    imp["auditID"] = serde_json::json!("impersonation-1");
    imp["impersonatedUser"] = serde_json::json!({"username": "dev-bob", "groups": ["dev"]});
    items.push(imp);
    let body = serde_json::json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items}).to_string();
    let url = format!("{}/v1/k8s/k8s/audit", s.url);
    let send = || {
        let out = Command::new("curl")
            .args([
                "-s",
                "--cacert",
                &p.path("ca.pem"),
                "--cert",
                &p.path("client.pem"),
                "--key",
                &p.path("client.key"),
            ])
            .args(["-H", "Content-Type: application/json", "--data-binary", &body, &url])
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stdout)))
    };
    // Some fixtures repeat an auditID and stage (the same event recorded
    // twice): those are duplicates from the start.
    let unique = items
        .iter()
        .map(|i| format!("{}/{}", i["auditID"], i["stage"]))
        .collect::<std::collections::HashSet<_>>()
        .len() as u64;
    let first = send();
    assert_eq!(first["accepted"].as_u64(), Some(unique), "{first}");
    assert_eq!(first["duplicates"].as_u64(), Some(items.len() as u64 - unique), "{first}");
    // The API server retries on any error: the same batch again stores nothing.
    let retry = send();
    assert_eq!(
        (retry["accepted"].as_u64(), retry["duplicates"].as_u64()),
        (Some(0), Some(items.len() as u64)),
        "{retry}"
    );
    let admin = s.admin_token.clone().unwrap();
    let get = |path: &str| -> Value {
        let out = Command::new("curl")
            .args(["-s", "--cacert", &p.path("ca.pem"), "-H", &format!("Authorization: Bearer {admin}")])
            .arg(format!("{}{path}", s.url))
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(get("/v1/logs/k8s")["size"].as_u64(), Some(unique));
    let page = get("/v1/logs/k8s/entries?start=0");
    let es: Vec<&Value> = page["entries"].as_array().unwrap().iter().map(|e| &e["event"]).collect();
    let secret = es
        .iter()
        .find(|e| e["resource"]["name"] == "example-secret" && e["activity"] == "k8s.create")
        .expect("create_secret fixture");
    assert_eq!(secret["actor"]["user"]["name"], "minikube-user");
    assert_eq!(secret["status"], "success");
    assert_eq!(secret["src_endpoint"]["ip"], "192.168.64.1");
    assert_eq!(secret["submitter"]["name"], "cert:collector-1");
    assert_eq!(secret["metadata"]["k8s"]["userAgent"], "kubectl/v1.17.3 (darwin/amd64) kubernetes/06ad960");
    let imp = es.iter().find(|e| e["metadata"]["k8s"]["auditID"] == "impersonation-1").unwrap();
    assert_eq!(imp["targets"][0]["name"], "dev-bob");
    for level in ["Metadata", "Request", "RequestResponse"] {
        assert!(es.iter().any(|e| e["metadata"]["k8s"]["level"] == level), "no {level} event");
    }
    // A bad item rejects the batch and stores nothing.
    let bad = serde_json::json!({"kind": "EventList", "items": [{"auditID": "x"}]}).to_string();
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            &p.path("ca.pem"),
            "--cert",
            &p.path("client.pem"),
        ])
        .args(["--key", &p.path("client.key"), "-H", "Content-Type: application/json", "--data-binary", &bad, &url])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "400");
}

/// Syslog over TLS (RFC 5425), sent by `openssl s_client` octet-counted;
/// a plaintext sender on the TLS port gets nothing stored.
#[test]
fn syslog_over_tls() {
    let p = pki();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        dir.path(),
        &[
            "--tls-cert",
            &p.path("server.pem"),
            "--tls-key",
            &p.path("server.key"),
            "--syslog-tls",
            "127.0.0.1:0=secure",
        ],
    );
    let port = syslog_port(&s, "tls");
    let msgs = [
        "<38>1 2026-11-27T10:00:00Z bastion sshd 7 - - Failed password for eve from 198.51.100.7 port 5000 ssh2",
        "<38>1 2026-11-27T10:00:01Z bastion sshd 7 - - Accepted publickey for frank from 198.51.100.8 port 5001 ssh2",
    ];
    let framed: String = msgs.iter().map(|m| format!("{} {m}", m.len())).collect();
    let mut c = Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-no_ign_eof",
            "-CAfile",
            &p.path("ca.pem"),
            "-connect",
            &format!("127.0.0.1:{port}"),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    c.stdin.take().unwrap().write_all(framed.as_bytes()).unwrap();
    let _ = c.wait();
    // Plain text on the TLS port: the handshake fails, nothing is stored.
    let mut plain = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    let _ = plain.write_all(b"<38>1 2026-11-27T10:00:02Z h app - - - should not be stored\n");
    drop(plain);
    let admin = s.admin_token.clone().unwrap();
    let es = poll(|| events_with_curl(&p, &s.url, &admin, "secure", 2));
    assert_eq!(es.len(), 2, "{es:?}");
    assert_eq!(es[0]["actor"]["user"]["name"], "eve");
    assert_eq!(es[0]["status"], "failure");
    assert_eq!(es[1]["actor"]["user"]["name"], "frank");
}

/// rsyslog forwards with omfwd, octet-counted, in RFC 5424 format, as a
/// relay in front of Custos would.
#[test]
fn rsyslog_omfwd_octet_counted() {
    rsyslog_forward(false);
}

/// The same over TLS (RFC 5425): rsyslog's gtls driver checks the
/// server's certificate against the CA and the name `localhost`.
#[test]
fn rsyslog_omfwd_over_tls() {
    rsyslog_forward(true);
}

fn rsyslog_forward(tls: bool) {
    let p = pki();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (p.path("server.pem"), p.path("server.key"));
    let s = if tls {
        Server::start(dir.path(), &["--tls-cert", &cert, "--tls-key", &key, "--syslog-tls", "127.0.0.1:0=relay"])
    } else {
        Server::start(dir.path(), &["--syslog-tcp", "127.0.0.1:0=relay"])
    };
    let port = syslog_port(&s, if tls { "tls" } else { "tcp" });
    let rs = dir.path().join("rsyslog");
    std::fs::create_dir_all(&rs).unwrap();
    let sock = rs.join("log.sock");
    let conf = rs.join("rsyslog.conf");
    let (global_tls, action_tls) = if tls {
        (
            format!(" DefaultNetstreamDriverCAFile=\"{}\"", p.path("ca.pem")),
            " StreamDriver=\"gtls\" StreamDriverMode=\"1\" StreamDriverAuthMode=\"x509/name\" StreamDriverPermittedPeers=\"localhost\"",
        )
    } else {
        (String::new(), "")
    };
    std::fs::write(
        &conf,
        format!(
            "global(workDirectory=\"{d}\"{global_tls})\nmodule(load=\"imuxsock\" SysSock.Use=\"off\")\ninput(type=\"imuxsock\" Socket=\"{s}\")\naction(type=\"omfwd\" target=\"127.0.0.1\" port=\"{port}\" protocol=\"tcp\" TCP_Framing=\"octet-counted\" template=\"RSYSLOG_SyslogProtocol23Format\"{action_tls})\nsyslog.* action(type=\"omfile\" file=\"{d}/internal.log\")\n",
            d = rs.display(),
            s = sock.display()
        ),
    )
    .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _rsyslogd = Kill(
        Command::new("rsyslogd")
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(rs.join("rsyslogd.pid"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("rsyslogd is installed (scripts/test installs it)"),
    );
    poll(|| sock.exists().then_some(()));
    let st = Command::new("logger")
        .arg("-u")
        .arg(&sock)
        .args(["-t", "sshd", "Failed password for invalid user oscar from 198.51.100.23 port 40404 ssh2"])
        .status()
        .unwrap();
    assert!(st.success());
    let internal = rs.join("internal.log");
    // curl reads back over HTTP or HTTPS alike.
    let admin = s.admin_token.clone().unwrap();
    let es = poll_or(
        || events_with_curl(&p, &s.url, &admin, "relay", 1),
        || format!("rsyslog said: {}", std::fs::read_to_string(&internal).unwrap_or_default()),
    );
    let e = &es[0];
    assert_eq!(e["actor"]["user"]["name"], "oscar", "{e}");
    assert_eq!(e["status"], "failure");
    assert_eq!(e["src_endpoint"]["ip"], "198.51.100.23");
    assert_eq!(e["metadata"]["syslog"]["app_name"], "sshd");
    assert_eq!(e["metadata"]["syslog"]["parsed"], true);
}

/// UDP loss cannot be prevented, but it must show: with the server stopped
/// (SIGSTOP), a flood overflows the socket's receive buffer, and the
/// kernel's drop count appears in /metrics once it runs again.
#[test]
fn udp_drops_are_counted_in_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--syslog-udp", "127.0.0.1:0=udp"]);
    let port = syslog_port(&s, "udp");
    let pid = s.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let msg = format!("<13>1 2026-11-27T10:00:00Z host app - - - {}", "x".repeat(1000));
    for _ in 0..20_000 {
        let _ = sock.send_to(msg.as_bytes(), format!("127.0.0.1:{port}"));
    }
    assert!(std::process::Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    let dropped = poll(|| {
        let (_, body) = get(&format!("{}/metrics", s.url));
        let text = String::from_utf8_lossy(&body).to_string();
        let n: u64 = text
            .lines()
            .find(|l| l.starts_with("custos_syslog_udp_dropped_total{"))?
            .rsplit(' ')
            .next()?
            .parse()
            .ok()?;
        (n > 0).then_some(n)
    });
    // What was not dropped was stored: together they account for the flood.
    let stored = poll(|| {
        let (st, body) = get_json(&format!("{}/v1/logs/udp", s.url));
        let n = body["size"].as_u64()?;
        (st == 200 && n + dropped >= 20_000).then_some(n)
    });
    assert!(stored > 0 && stored + dropped >= 20_000, "stored {stored}, dropped {dropped}");
}
