//! The PostgreSQL access gateway against a real PostgreSQL 15 with
//! pgAudit, driven by psql, pgbench and tokio-postgres (prepared
//! statements), recording into a real `custos serve`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::pg::{PGBIN, Pg, free_port, gateway_users, one_gateway_config};
use common::*;
use serde_json::Value;

/// A running `custos gateway postgres`. Killed when dropped.
struct Gw {
    child: Child,
    port: u16,
}

impl Drop for Gw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn token(data: &Path, role: &str, name: &str) -> String {
    let out = Command::new(bin())
        .args(["token", "create", "--data"])
        .arg(data)
        .args(["--role", role, "--logs", "db", "--name", name])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn start_gateway(server_url: &str, token: &str, upstream: &str, users: &Path, extra: &[&str]) -> Gw {
    start_gateway_env(server_url, token, upstream, users, extra, &[])
}

fn start_gateway_env(
    server_url: &str,
    token: &str,
    upstream: &str,
    users: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Gw {
    let mut child = Command::new(bin())
        .args(["gateway", "postgres", "--listen", "127.0.0.1:0", "--log", "db", "--server", server_url])
        .args(["--upstream", upstream])
        // No token: the gateway shows a client certificate instead.
        .args(if token.is_empty() { vec![] } else { vec!["--token", token] })
        .arg("--users")
        .arg(users)
        .args(extra)
        .envs(env.iter().copied())
        .env("CUSTOS_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn custos gateway");
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut port = 0;
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() > 0 {
        eprint!("gateway: {line}");
        if let Some(rest) = line.strip_prefix("gateway listening on ") {
            let addr = rest.split(';').next().unwrap();
            port = addr.rsplit(':').next().unwrap().parse().unwrap();
            break;
        }
        line.clear();
    }
    assert!(port > 0, "the gateway did not print its address");
    std::thread::spawn(move || {
        for l in std::io::BufRead::lines(stderr).map_while(Result::ok) {
            eprintln!("gateway: {l}");
        }
    });
    Gw { child, port }
}

/// psql through the gateway, one `-c` per statement, stdin for COPY.
fn psql(port: u16, user: &str, password: &str, sslmode: &str, sqls: &[&str], stdin: &str) -> Output {
    let mut c = Command::new(format!("{PGBIN}/psql"));
    c.args(["-X", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", user, "-d", "app"]);
    for s in sqls {
        c.args(["-c", s]);
    }
    c.env("PGPASSWORD", password).env("PGSSLMODE", sslmode).env("PGCONNECT_TIMEOUT", "10");
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Every event of the log `db`, in order, read with an auditor token.
fn events(url: &str, reader: &str) -> Vec<Value> {
    let reader = Some(reader);
    let mut out = Vec::new();
    loop {
        let (status, body) = get_as(&format!("{url}/v1/logs/db/entries?start={}", out.len()), reader);
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let Some(entries) = body["entries"].as_array().filter(|e| status == 200 && !e.is_empty()) else { break };
        for e in entries {
            out.push(serde_json::from_str(e["entry"].as_str().unwrap()).unwrap());
        }
    }
    out
}

fn user_of(e: &Value) -> &str {
    e["actor"]["user"]["name"].as_str().unwrap_or("")
}

fn session_of(e: &Value) -> &str {
    e["actor"]["session"]["uid"].as_str().unwrap_or("")
}

/// One CSV record (pgAudit's format); `None` if the line ends inside a
/// quoted field.
fn csv(line: &str) -> Option<Vec<String>> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().unwrap().push('"');
            }
            (true, '"') => quoted = false,
            (false, '"') => quoted = true,
            (false, ',') => fields.push(String::new()),
            (_, c) => fields.last_mut().unwrap().push(c),
        }
    }
    (!quoted).then_some(fields)
}

/// (gateway session, statement) for every statement pgAudit logged for a
/// session that came through the gateway.
fn pgaudit_statements(log: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in log.lines() {
        let Some((prefix, audit)) = line.split_once("AUDIT: SESSION,") else { continue };
        let Some(sid) = prefix.split("[custos ").nth(1).and_then(|r| r.split(']').next()) else { continue };
        let Some(fields) = csv(audit) else { continue };
        // statement id, substatement id, class, command, object type, object name, statement, parameter
        if let Some(stmt) = fields.get(6) {
            out.push((sid.to_string(), stmt.clone()));
        }
    }
    out
}

fn wait_for(url: &str, reader: &str, what: &str, mut pred: impl FnMut(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ev = events(url, reader);
        if pred(&ev) {
            return ev;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; events: {}", ev.len());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn find(ev: &[Value], pred: impl Fn(&Value) -> bool) -> Vec<&Value> {
    ev.iter().filter(|e| pred(e)).collect()
}

const DENY_RULES: &str = r#"
[[deny]]
name = "no-ddl-for-analysts"
roles = ["analyst"]
classes = ["ddl"]

[[deny]]
name = "no-cards-for-support"
roles = ["support"]
tables = ["payments.card"]
"#;

#[test]
fn gateway_records_every_statement_and_agrees_with_pgaudit() {
    let pki = pki();
    let pg = Pg::start_tls(
        &["shared_preload_libraries = 'pgaudit'", "pgaudit.log = 'all'", "pgaudit.log_parameter = on"],
        Some((&pki.path("server.pem"), &pki.path("server.key"))),
    );
    pg.exec("postgres", "create role svc login superuser password 'svc-pw'");
    pg.exec("postgres", "create database app owner svc");
    pg.exec(
        "app",
        "create schema payments; create table payments.card(id int, number text); \
         insert into payments.card values (1, '4111111111111111'); \
         create table accounts(id int primary key, owner text, balance int); \
         insert into accounts select g, 'owner' || g, 100 from generate_series(1, 5) g",
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let gw_token = token(&data, "ingest", "pg-gateway");
    let reader = token(&data, "auditor", "test-reader");
    let dora = token(&data, "reader", "dora");
    let server = Server::start(&data, &[]);
    let people: &[(&str, &str, &[&str])] =
        &[("alice", "alice-pw", &["analyst"]), ("bob", "bob-pw", &["support"]), ("carol", "carol-pw", &[])];
    let users = gateway_users(dir.path(), people);
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, DENY_RULES).unwrap();
    let upstream = format!(
        "postgres://svc:svc-pw@127.0.0.1:{}/app?sslmode=verify-full&sslrootcert={}",
        pg.port,
        pki.path("ca.pem")
    );
    let gw = start_gateway(
        &server.url,
        &gw_token,
        &upstream,
        &users,
        &[
            "--config",
            config.to_str().unwrap(),
            "--tls-cert",
            &pki.path("server.pem"),
            "--tls-key",
            &pki.path("server.key"),
        ],
    );

    // alice, over TLS, with psql: reads, a write, an error, a denied DDL, COPY.
    let o = psql(
        gw.port,
        "alice",
        "alice-pw",
        "require",
        &[
            "select id, owner from accounts where id = 1",
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
            "update accounts set balance = balance + 1 where id = 2",
            "select * from no_such_table",
            "create table alice_t(a int)",
            "copy accounts (id, owner, balance) from stdin",
        ],
        "10\tzed\t7\n\\.\n",
    );
    let out = text(&o);
    assert!(out.contains("owner1"), "{out}");
    assert!(out.contains("SSL connection") || out.lines().any(|l| l.trim() == "t"), "upstream TLS: {out}");
    assert!(out.contains("UPDATE 1"), "{out}");
    assert!(out.contains("relation \"no_such_table\" does not exist"), "{out}");
    assert!(out.contains("custos: statement denied by rule \"no-ddl-for-analysts\""), "{out}");
    assert!(out.contains("COPY 1"), "{out}");
    assert!(
        !String::from_utf8_lossy(
            &pg.psql_super("app", "select count(*) from pg_tables where tablename = 'alice_t'").stdout
        )
        .contains(" 1"),
        "the denied table must not exist"
    );

    // bob: denied the card table, allowed the rest; pgbench through the gateway.
    let o = psql(
        gw.port,
        "bob",
        "bob-pw",
        "disable",
        &["select number from payments.card", "select count(*) from accounts"],
        "",
    );
    let out = text(&o);
    assert!(out.contains("custos: statement denied by rule \"no-cards-for-support\" (table payments.card)"), "{out}");
    assert!(!out.contains("4111111111111111"), "{out}");
    assert!(out.contains(" 6\n"), "{out}");
    let pgbench = |args: &[&str]| {
        let o = Command::new(format!("{PGBIN}/pgbench"))
            .args(["-h", "127.0.0.1", "-p", &gw.port.to_string(), "-U", "bob"])
            .args(args)
            .arg("app")
            .env("PGPASSWORD", "bob-pw")
            .env("PGSSLMODE", "disable")
            .output()
            .unwrap();
        assert!(o.status.success(), "pgbench {args:?}: {}", text(&o));
        text(&o)
    };
    pgbench(&["-i", "-s", "1", "-q"]);
    let out = pgbench(&["-n", "-S", "-M", "prepared", "-c", "2", "-t", "50"]);
    assert!(out.contains("number of failed transactions: 0"), "{out}");
    let out = pgbench(&["-n", "-c", "2", "-t", "20"]);
    assert!(out.contains("number of failed transactions: 0"), "{out}");

    // carol, with a driver: prepared statements with parameters, and a cancel.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let conn = format!("host=127.0.0.1 port={} user=carol password=carol-pw dbname=app sslmode=disable", gw.port);
        let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        let stmt = client.prepare("select owner from accounts where id = $1 and balance >= $2").await.unwrap();
        let rows = client.query(&stmt, &[&3i32, &50i32]).await.unwrap();
        assert_eq!(rows[0].get::<_, &str>(0), "owner3");
        let n =
            client.execute("update accounts set owner = $1 where id = $2", &[&"carol-was-here", &4i32]).await.unwrap();
        assert_eq!(n, 1);
        let cancel = client.cancel_token();
        let sleeper = tokio::spawn(async move { client.simple_query("select pg_sleep(30)").await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(500)).await;
        cancel.cancel_query(tokio_postgres::NoTls).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(10), sleeper).await.expect("cancel took effect").unwrap();
        let code = r.unwrap_err().code().cloned();
        assert_eq!(code, Some(tokio_postgres::error::SqlState::QUERY_CANCELED));
    });

    // A Custos token as the password, over TLS: the standalone gateway asks
    // the server whose it is.
    let o = psql(gw.port, "dora", &dora, "require", &["select 'dora was here' as x"], "");
    assert!(text(&o).contains("dora was here"), "{}", text(&o));
    let o = psql(gw.port, "dora", &dora, "disable", &["select 1"], "");
    assert!(text(&o).contains("token logins need TLS"), "{}", text(&o));

    // Failed logins: a wrong password, and someone unknown.
    let o = psql(gw.port, "alice", "wrong", "disable", &["select 1"], "");
    assert!(text(&o).contains("password authentication failed for user \"alice\""), "{}", text(&o));
    let o = psql(gw.port, "mallory", "x", "require", &["select 1"], "");
    assert!(text(&o).contains("password authentication failed for user \"mallory\""), "{}", text(&o));

    let ev = wait_for(&server.url, &reader, "carol's session to end", |ev| {
        ev.iter().any(|e| e["activity"] == "db.disconnect" && user_of(e) == "carol")
            && ev.iter().filter(|e| e["activity"] == "db.login" && e["status"] == "failure").count() >= 2
    });

    let dora_login = find(&ev, |e| e["activity"] == "db.login" && user_of(e) == "dora" && e["status"] == "success");
    assert_eq!(dora_login[0]["status_detail"], "Custos token over TLS");
    assert!(ev.iter().any(|e| user_of(e) == "dora" && e["message"] == "select 'dora was here' as x"));
    // Every event came from the gateway's token.
    assert!(ev.iter().all(|e| e["submitter"]["name"] == "token:pg-gateway"));
    let q = |user: &str, needle: &str| {
        find(&ev, |e| {
            e["activity"] == "db.query" && user_of(e) == user && e["message"].as_str().unwrap_or("").contains(needle)
        })
    };
    let result_of = |e: &Value| -> Value {
        let seq = &e["metadata"]["gateway"]["seq"];
        ev.iter()
            .find(|r| {
                r["activity"] == "db.query.result"
                    && session_of(r) == session_of(e)
                    && &r["metadata"]["gateway"]["seq"] == seq
            })
            .cloned()
            .unwrap_or(Value::Null)
    };
    // alice's statements, with classes, tables and outcomes.
    let sel = q("alice", "select id, owner from accounts");
    assert_eq!(sel.len(), 1);
    assert_eq!(sel[0]["metadata"]["gateway"]["classes"], serde_json::json!(["read"]));
    assert_eq!(sel[0]["targets"][0]["name"], "accounts");
    assert_eq!(sel[0]["src_endpoint"]["ip"], "127.0.0.1");
    assert_eq!(sel[0]["metadata"]["gateway"]["application_name"], "psql");
    assert_eq!(result_of(sel[0])["metadata"]["gateway"]["tags"], serde_json::json!(["SELECT 1"]));
    let upd = q("alice", "update accounts");
    assert_eq!(upd[0]["metadata"]["gateway"]["classes"], serde_json::json!(["write"]));
    assert_eq!(result_of(upd[0])["metadata"]["gateway"]["rows"], 1);
    let bad = q("alice", "no_such_table");
    assert_eq!(result_of(bad[0])["status"], "failure");
    assert_eq!(result_of(bad[0])["status_code"], "42P01");
    let ddl = q("alice", "create table alice_t");
    assert_eq!(ddl[0]["status"], "failure");
    assert_eq!(ddl[0]["metadata"]["gateway"]["denied"], true);
    let copy = q("alice", "copy accounts");
    assert_eq!(result_of(copy[0])["metadata"]["gateway"]["tags"], serde_json::json!(["COPY 1"]));
    let login = find(&ev, |e| e["activity"] == "db.login" && user_of(e) == "alice" && e["status"] == "success");
    assert!(login[0]["status_detail"].as_str().unwrap().contains("over TLS"), "{}", login[0]);
    // bob's denial names the table; carol's prepared statements carry their parameters.
    let card = q("bob", "payments.card");
    assert_eq!(card[0]["status"], "failure");
    assert_eq!(card[0]["targets"][0]["name"], "payments.card");
    let prep = q("carol", "select owner from accounts where id = $1");
    let executed = prep.iter().find(|e| e["metadata"]["gateway"]["params"].is_array()).expect("an Execute event");
    assert_eq!(executed["metadata"]["gateway"]["protocol"], "extended");
    assert_eq!(executed["metadata"]["gateway"]["params"], serde_json::json!(["3", "50"]));
    let upd = q("carol", "update accounts set owner = $1");
    assert!(upd.iter().any(|e| e["metadata"]["gateway"]["params"] == serde_json::json!(["carol-was-here", "4"])));
    let sleep = q("carol", "pg_sleep(30)");
    assert_eq!(result_of(sleep[0])["status_code"], "57014");
    assert!(ev.iter().any(|e| e["activity"] == "db.cancel" && user_of(e) == "carol"));
    // Failed logins are on record, known user or not.
    for who in ["alice", "mallory"] {
        let f = find(&ev, |e| e["activity"] == "db.login" && user_of(e) == who && e["status"] == "failure");
        assert_eq!(f.len(), 1, "{who}");
        assert_eq!(f[0]["status_code"], "28P01");
    }

    // Cross-check: everything pgAudit saw from a gateway session is in the
    // log, in that session, attributed to a person.
    let audited = pgaudit_statements(&pg.log_text());
    assert!(audited.len() > 200, "pgAudit logged only {} statements", audited.len());
    let mut people_seen = std::collections::BTreeSet::new();
    for (sid, stmt) in &audited {
        let hit = ev.iter().find(|e| {
            e["activity"] == "db.query"
                && session_of(e) == sid
                && e["message"].as_str().is_some_and(|m| m.contains(stmt.as_str()))
        });
        let hit = hit.unwrap_or_else(|| panic!("pgAudit logged {stmt:?} in session {sid}, Custos did not"));
        people_seen.insert(user_of(hit).to_string());
    }
    assert_eq!(people_seen.into_iter().collect::<Vec<_>>(), ["alice", "bob", "carol", "dora"]);
}

/// Runs the SCRAM login by hand, for tests that then misbehave.
fn raw_login(port: u16, user: &str, password: &str) -> TcpStream {
    use custos_gateway::{scram::ClientExchange, wire};
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut b = Vec::new();
    wire::startup_message(&mut b, &[("user", user), ("database", "app")]);
    s.write_all(&b).unwrap();
    let read_msg = |s: &mut TcpStream| -> (u8, Vec<u8>) {
        let mut h = [0u8; 5];
        s.read_exact(&mut h).unwrap();
        let len = i32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        s.read_exact(&mut body).unwrap();
        (h[0], body)
    };
    assert_eq!(read_msg(&mut s).0, b'R');
    let (mut ex, first) = ClientExchange::start(password);
    b.clear();
    wire::sasl_initial(&mut b, "SCRAM-SHA-256", first.as_bytes());
    s.write_all(&b).unwrap();
    let (_, body) = read_msg(&mut s);
    let fin = ex.respond(&body[4..]).unwrap();
    b.clear();
    wire::password_message(&mut b, fin.as_bytes());
    s.write_all(&b).unwrap();
    loop {
        if read_msg(&mut s).0 == b'Z' {
            return s;
        }
    }
}

fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn fail_closed_refuses_when_the_log_is_down_and_bad_clients_are_recorded() {
    let pg = Pg::start_app(&[]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let gw_token = token(&data, "ingest", "pg-gateway");
    let reader = token(&data, "auditor", "test-reader");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let server = Server::start(&data, &["--listen", &listen]);
    let url = server.url.clone();
    let users = gateway_users(dir.path(), &[("alice", "alice-pw", &[])]);
    let upstream = format!("postgres://svc:svc-pw@127.0.0.1:{}/app?sslmode=disable", pg.port);
    let gw = start_gateway(&url, &gw_token, &upstream, &users, &["--auth-timeout-secs", "2"]);
    let spool = start_gateway(&url, &gw_token, &upstream, &users, &["--audit-mode", "async", "--redact-params"]);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let conn = format!("host=127.0.0.1 port={} user=alice password=alice-pw dbname=app sslmode=disable", gw.port);
    let client = rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client.simple_query("select 'before the outage'").await.unwrap();
        client
    });

    // The log goes away: statements are refused, the session survives.
    server.kill9();
    let err = rt.block_on(client.simple_query("select 'during the outage'")).unwrap_err();
    let db = err.as_db_error().expect("a PostgreSQL error");
    assert_eq!(db.code().code(), "55000", "{db:?}");
    assert!(db.message().contains("could not be recorded"), "{}", db.message());
    let o = psql(gw.port, "alice", "alice-pw", "disable", &["select 1"], "");
    assert!(!o.status.success());
    assert!(text(&o).contains("connection refused (fail-closed)"), "{}", text(&o));
    // In async mode statements still run; their events wait in the spool.
    let o = psql(spool.port, "alice", "alice-pw", "disable", &["select 'spooled' as x"], "");
    assert!(text(&o).contains("spooled"), "{}", text(&o));

    // The log is back on the same address: the same session goes on.
    let server = Server::start(&data, &["--listen", &listen]);
    rt.block_on(client.simple_query("select 'after the outage'")).unwrap();
    // Bound parameters can be kept out of the log (--redact-params).
    rt.block_on(async {
        let conn =
            format!("host=127.0.0.1 port={} user=alice password=alice-pw dbname=app sslmode=disable", spool.port);
        let (c, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        let row = c.query_one("select $1::text as secret_echo", &[&"hunter2"]).await.unwrap();
        assert_eq!(row.get::<_, &str>(0), "hunter2");
    });

    // Bad clients: garbage, silence, a kill mid-query, a malformed message.
    let mut garbage = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    garbage.write_all(&[0, 0, 0, 3, 1, 2, 3, 4]).unwrap();
    let answer = read_all(&mut garbage);
    assert_eq!(answer.first(), Some(&b'E'));
    assert!(String::from_utf8_lossy(&answer).contains("invalid startup packet"));
    let mut silent = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    let started = Instant::now();
    let _ = read_all(&mut silent);
    assert!(started.elapsed() < Duration::from_secs(10), "the gateway must close a silent client");
    let mut killed = Command::new(format!("{PGBIN}/psql"))
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            &gw.port.to_string(),
            "-U",
            "alice",
            "-d",
            "app",
            "-c",
            "select pg_sleep(5)",
        ])
        .env("PGPASSWORD", "alice-pw")
        .env("PGSSLMODE", "disable")
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    killed.kill().unwrap();
    killed.wait().unwrap();
    let mut s = raw_login(gw.port, "alice", "alice-pw");
    // A Bind whose parameter count runs past its end.
    s.write_all(&[b'B', 0, 0, 0, 8, 0, 0, 0x7f, 0x7f]).unwrap();
    let answer = read_all(&mut s);
    assert!(String::from_utf8_lossy(&answer).contains("invalid 'B' message"), "{}", String::from_utf8_lossy(&answer));
    let mut s = raw_login(gw.port, "alice", "alice-pw");
    // A Query longer than the gateway reads whole.
    s.write_all(&[b'Q', 0x10, 0, 0, 0]).unwrap();
    let answer = read_all(&mut s);
    assert!(
        String::from_utf8_lossy(&answer).contains("exceeds the gateway's limit"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    let ev = wait_for(&server.url, &reader, "the bad clients' events", |ev| {
        ev.iter().filter(|e| e["activity"] == "db.protocol_error").count() >= 2
            && ev.iter().any(|e| e["status_detail"] == "authentication timed out")
            && ev.iter().any(|e| e["status_detail"] == "client closed the connection without terminating")
            && ev.iter().any(|e| e["message"] == "select 'spooled' as x")
            && ev.iter().any(|e| e["message"] == "select $1::text as secret_echo")
    });
    let redacted = find(&ev, |e| e["message"] == "select $1::text as secret_echo");
    assert_eq!(redacted[0]["metadata"]["gateway"]["params"], serde_json::json!(["<redacted>"]));
    assert!(!serde_json::to_string(&ev).unwrap().contains("hunter2"), "a redacted value reached the log");
    let msgs: Vec<&str> = ev.iter().filter_map(|e| e["message"].as_str()).collect();
    assert!(msgs.contains(&"select 'before the outage'"));
    assert!(msgs.contains(&"select 'after the outage'"));
    assert!(!msgs.contains(&"select 'during the outage'"), "a refused statement cannot have been recorded");
    assert!(ev.iter().any(|e| e["status_code"] == "08P01" && e["activity"] == "db.login"), "garbage startup recorded");
    let killed = find(&ev, |e| e["message"] == "select pg_sleep(5)");
    assert_eq!(killed.len(), 1);
    // The gateway is still up and serving.
    let o = psql(gw.port, "alice", "alice-pw", "disable", &["select 'still here'"], "");
    assert!(text(&o).contains("still here"), "{}", text(&o));
    drop(server);
}

/// A gateway inside `custos serve` (`[[gateway]]`), recording straight
/// into the log, where people may also log in with a Custos token as the
/// password, over TLS only.
#[test]
fn gateway_inside_the_server_takes_custos_tokens_over_tls() {
    let pki = pki();
    let pg = Pg::start_app(&[]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let dora = token(&data, "reader", "dora");
    let reader = token(&data, "auditor", "test-reader");
    let users = gateway_users(dir.path(), &[("alice", "alice-pw", &[])]);
    let port = free_port();
    // A second gateway reaches PostgreSQL over its Unix socket, as one
    // beside the database would.
    let local_port = free_port();
    let socket_dir = pg.dir.path().display().to_string();
    let config = dir.path().join("custos.toml");
    std::fs::write(
        &config,
        format!(
            "[[gateway]]\nlisten = \"127.0.0.1:{port}\"\nupstream = \"postgres://svc:svc-pw@127.0.0.1:{}/app?sslmode=disable\"\n\
             log = \"db\"\nusers = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\
             [[gateway.deny]]\nname = \"readers-read-only\"\nroles = [\"reader\"]\nclasses = [\"write\", \"ddl\"]\n\
             [[gateway]]\nname = \"local\"\nlisten = \"127.0.0.1:{local_port}\"\n\
             upstream = \"postgres://svc@/app?host={socket_dir}&port={}\"\nlog = \"db\"\nusers = \"{}\"\n",
            pg.port,
            users.display(),
            pki.path("server.pem"),
            pki.path("server.key"),
            pg.port,
            users.display(),
        ),
    )
    .unwrap();
    let server = Server::start(&data, &["--config", config.to_str().unwrap()]);
    assert!(
        server.lines.iter().any(|l| l.starts_with(&format!("gateway listening on 127.0.0.1:{port}"))),
        "{:?}",
        server.lines
    );

    let o = psql(port, "dora", &dora, "require", &["select current_user", "create table t(a int)"], "");
    let out = text(&o);
    assert!(out.contains(" svc\n"), "the service role runs the statement: {out}");
    assert!(out.contains("custos: statement denied by rule \"readers-read-only\""), "{out}");
    let o = psql(port, "dora", &dora, "disable", &["select 1"], "");
    assert!(text(&o).contains("token logins need TLS"), "{}", text(&o));
    let o = psql(port, "erin", &dora, "require", &["select 1"], "");
    assert!(text(&o).contains("password authentication failed for user \"erin\""), "{}", text(&o));
    let o = psql(port, "dora", "custos_wrong", "require", &["select 1"], "");
    assert!(text(&o).contains("password authentication failed for user \"dora\""), "{}", text(&o));
    let o = psql(port, "alice", "alice-pw", "disable", &["select 'scram inside' as x"], "");
    assert!(text(&o).contains("scram inside"), "{}", text(&o));
    // inet_server_addr() is NULL only on a Unix-socket connection.
    let via = "select coalesce(host(inet_server_addr()), 'unix socket') as via, current_user";
    let o = psql(local_port, "alice", "alice-pw", "disable", &[via, "select pg_sleep(0.3)"], "");
    assert!(text(&o).contains("unix socket | svc"), "{}", text(&o));

    let ev = wait_for(&server.url, &reader, "alice's two sessions to end", |ev| {
        ev.iter().filter(|e| e["activity"] == "db.disconnect" && user_of(e) == "alice").count() == 2
    });
    let submitter = |e: &Value| e["metadata"]["gateway"]["name"].as_str().map(|n| format!("gateway:{n}"));
    assert!(ev.iter().all(|e| Some(e["submitter"]["name"].as_str().unwrap().to_string()) == submitter(e)
        && e["submitter"]["via"] == "gateway"));
    let login = find(&ev, |e| e["activity"] == "db.login" && user_of(e) == "dora" && e["status"] == "success");
    assert_eq!(login[0]["status_detail"], "Custos token over TLS");
    let fails: Vec<&str> =
        find(&ev, |e| e["activity"] == "db.login" && e["status"] == "failure").iter().map(|e| user_of(e)).collect();
    assert_eq!(fails.iter().filter(|u| **u == "dora").count(), 2, "{fails:?}");
    assert!(fails.contains(&"erin"), "{fails:?}");
    assert!(
        ev.iter().any(|e| e["activity"] == "db.query" && user_of(e) == "dora" && e["message"] == "select current_user")
    );
    assert!(ev.iter().any(|e| e["metadata"]["gateway"]["denied"] == true && user_of(e) == "dora"));
    assert!(ev.iter().any(|e| e["message"] == "select 'scram inside' as x" && user_of(e) == "alice"));
    let local = find(&ev, |e| e["message"] == via);
    assert_eq!(local.len(), 1, "{local:?}");
    assert_eq!(local[0]["dst_endpoint"]["hostname"], socket_dir.as_str());
    assert_eq!(local[0]["submitter"]["name"], "gateway:local");

    // "Which statements took longer than a quarter of a second?": durations
    // have fractions of a millisecond and compare as numbers. Fail-closed,
    // a statement's outcome is its own event, tied to it by session and seq.
    let q = "duration_ms:%3E250%20AND%20activity:db.query.result%20AND%20actor.user.name:alice";
    let slow = poll(|| {
        let (st, body) = get_as(&format!("{}/v1/logs/db/search?q={q}", server.url), Some(&reader));
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (st == 200 && v["total"].as_u64() > Some(0)).then_some(v)
    });
    assert_eq!(slow["total"], 1, "{slow}");
    let result = &slow["hits"][0]["event"];
    let ms = result["duration_ms"].as_f64().unwrap();
    assert!(ms > 250.0 && ms.fract() != 0.0, "{ms}");
    // Its statement, as docs/gateway.md says to find it: by uid.
    let g = &result["metadata"]["gateway"];
    let uid = format!("{}:{}", g["session"].as_str().unwrap(), g["seq"]);
    assert_eq!(result["uid"], format!("{uid}:result"));
    let q = format!("uid:%22{uid}%22");
    let (st, body) = get_as(&format!("{}/v1/logs/db/search?q={q}", server.url), Some(&reader));
    let found: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((st, &found["total"]), (200, &Value::from(1)), "{found}");
    let statement = &found["hits"][0]["event"];
    assert_eq!(statement["activity"], "db.query");
    assert_eq!(statement["message"], "select pg_sleep(0.3)");
    // Both at once, with a field group.
    let q = format!("uid:(%22{uid}%22%20OR%20%22{uid}:result%22)");
    let (st, body) = get_as(&format!("{}/v1/logs/db/search?q={q}", server.url), Some(&reader));
    let both: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((st, &both["total"]), (200, &Value::from(2)), "{both}");
    // The tables a person touched, counted: dora's denied CREATE TABLE.
    let (st, body) =
        get_as(&format!("{}/v1/logs/db/aggregate?by=targets.name&q=actor.user.name:dora", server.url), Some(&reader));
    let top: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((st, &top["buckets"]), (200, &serde_json::json!([{"key": "t", "count": 1}])), "{top}");
}

/// psql through the gateway over TLS, presenting a client certificate.
fn psql_cert(port: u16, user: &str, password: &str, cert: Option<(&str, &str)>, sql: &str) -> Output {
    let mut c = Command::new(format!("{PGBIN}/psql"));
    c.args(["-X", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", user, "-d", "app", "-c", sql]);
    c.env("PGPASSWORD", password).env("PGSSLMODE", "require").env("PGCONNECT_TIMEOUT", "10");
    // A missing file means no certificate (and libpq does not look in ~/.postgresql/).
    let (crt, key) = cert.unwrap_or(("/nonexistent.crt", "/nonexistent.key"));
    c.env("PGSSLCERT", crt).env("PGSSLKEY", key);
    c.stdin(Stdio::null()).output().unwrap()
}

/// Client certificates both ways: the gateway logs in upstream as a role
/// that only a certificate admits (pg_hba `cert`), and people must show a
/// certificate naming them (`tls_client_ca`), besides their password.
/// Each refusal is recorded, and a login names the certificate used.
#[test]
fn client_certificates_toward_the_gateway_and_the_upstream() {
    let pki = pki();
    let pg = Pg::start_client_certs(
        &[],
        &pki.path("server.pem"),
        &pki.path("server.key"),
        &pki.path("ca.pem"),
        &["hostssl app svc 127.0.0.1/32 cert"],
    );
    // No password: only its certificate logs the service role in.
    pg.exec("postgres", "create role svc login");
    pg.exec("postgres", "create database app owner svc");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let gw_token = token(&data, "ingest", "pg-gateway");
    let reader = token(&data, "auditor", "test-reader");
    let server = Server::start(&data, &[]);
    let users = gateway_users(dir.path(), &[("alice", "alice-pw", &[]), ("bob", "bob-pw", &[])]);
    let base =
        format!("postgres://svc@127.0.0.1:{}/app?sslmode=verify-full&sslrootcert={}", pg.port, pki.path("ca.pem"));
    let tls = ["--tls-cert", &pki.path("server.pem"), "--tls-key", &pki.path("server.key")].map(String::from);
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    let alice = (pki.path("alice.pem"), pki.path("alice.key"));
    let alice = Some((alice.0.as_str(), alice.1.as_str()));

    // Without its certificate, the service role is refused upstream.
    let gw = start_gateway(&server.url, &gw_token, &base, &users, &tls);
    let o = psql_cert(gw.port, "alice", "alice-pw", None, "select 1");
    assert!(text(&o).contains("custos: cannot reach the upstream database"), "{}", text(&o));
    drop(gw);

    let upstream = format!("{base}&sslcert={}&sslkey={}", pki.path("svc.pem"), pki.path("svc.key"));
    // A revocation list that revokes the upstream's certificate.
    let revoked_upstream = format!("{upstream}&sslcrl={}", pki.path("crl-server.pem"));
    let gw = start_gateway(&server.url, &gw_token, &revoked_upstream, &users, &tls);
    let o = psql_cert(gw.port, "alice", "alice-pw", None, "select 1");
    assert!(text(&o).contains("custos: cannot reach the upstream database"), "{}", text(&o));
    assert!(text(&o).to_lowercase().contains("revoked"), "{}", text(&o));
    drop(gw);

    let upstream = format!("{upstream}&sslcrl={}", pki.path("crl.pem"));
    let mut with_ca = tls.clone();
    let (ca, crl) = (pki.path("ca.pem"), pki.path("crl.pem"));
    with_ca.extend(["--tls-client-ca", &ca, "--tls-client-crl", &crl]);
    let gw = start_gateway(&server.url, &gw_token, &upstream, &users, &with_ca);
    let o = psql_cert(
        gw.port,
        "alice",
        "alice-pw",
        alice,
        "select client_dn from pg_stat_ssl where pid = pg_backend_pid()",
    );
    assert!(o.status.success() && text(&o).contains("/CN=svc"), "{}", text(&o));
    // Refused: no certificate; someone else's; one from another CA; a right
    // certificate with a wrong password.
    let o = psql_cert(gw.port, "alice", "alice-pw", None, "select 1");
    assert!(text(&o).contains("the gateway requires a client certificate"), "{}", text(&o));
    let o = psql_cert(gw.port, "bob", "bob-pw", alice, "select 1");
    assert!(text(&o).contains("certificate authentication failed for user \"bob\""), "{}", text(&o));
    let evil = (pki.path("evil-alice.pem"), pki.path("evil-alice.key"));
    let o = psql_cert(gw.port, "alice", "alice-pw", Some((&evil.0, &evil.1)), "select 1");
    assert!(!o.status.success(), "{}", text(&o));
    let revoked = (pki.path("revoked-alice.pem"), pki.path("revoked-alice.key"));
    let o = psql_cert(gw.port, "alice", "alice-pw", Some((&revoked.0, &revoked.1)), "select 1");
    assert!(!o.status.success(), "{}", text(&o));
    let o = psql_cert(gw.port, "alice", "wrong", alice, "select 1");
    assert!(text(&o).contains("password authentication failed for user \"alice\""), "{}", text(&o));

    let ev = wait_for(&server.url, &reader, "five refused logins", |ev| {
        ev.iter().filter(|e| e["activity"] == "db.login" && e["status"] == "failure").count() >= 5
    });
    let fingerprint = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in", &pki.path("alice.pem")])
        .output()
        .unwrap();
    let fingerprint = String::from_utf8(fingerprint.stdout).unwrap();
    let fingerprint = fingerprint.trim().rsplit('=').next().unwrap().replace(':', "").to_lowercase();
    // Three logins succeeded: at the two gateways without a CA (whose
    // upstreams then failed), and alice's with her certificate.
    let ok = find(&ev, |e| e["activity"] == "db.login" && e["status"] == "success");
    assert_eq!(ok.len(), 3, "{ok:?}");
    assert!(ok[..2].iter().all(|e| e["metadata"]["gateway"]["client_cert"].is_null()), "{ok:?}");
    let ok = &ok[2..];
    assert_eq!(user_of(ok[0]), "alice");
    assert_eq!(ok[0]["status_detail"], "SCRAM-SHA-256 over TLS with a client certificate");
    assert_eq!(
        ok[0]["metadata"]["gateway"]["client_cert"],
        serde_json::json!({"sha256": fingerprint, "common_name": "alice"})
    );
    assert!(ev.iter().any(|e| e["message"] == "select client_dn from pg_stat_ssl where pid = pg_backend_pid()"));
    let failed = |user: &str, detail: &str| {
        find(&ev, |e| {
            e["activity"] == "db.login"
                && e["status"] == "failure"
                && user_of(e) == user
                && e["status_detail"].as_str().unwrap_or("").contains(detail)
        })
        .len()
    };
    assert_eq!(failed("alice", "requires a client certificate"), 1);
    assert_eq!(failed("bob", "the certificate is for \"alice\""), 1);
    assert_eq!(failed("unknown", "TLS handshake failed"), 2);
    assert_eq!(failed("unknown", "Revoked"), 1);
    assert_eq!(failed("alice", "password authentication failed"), 1);
    let bob = find(&ev, |e| e["activity"] == "db.login" && user_of(e) == "bob");
    assert_eq!(bob[0]["metadata"]["gateway"]["client_cert"]["sha256"], fingerprint.as_str());
    // The upstream refused the gateway that had no certificate, and the
    // gateway refused the upstream whose certificate was revoked.
    let connect_failures: Vec<&str> = find(&ev, |e| e["activity"] == "db.connect" && e["status"] == "failure")
        .iter()
        .map(|e| e["status_detail"].as_str().unwrap())
        .collect();
    assert_eq!(connect_failures.len(), 2, "{connect_failures:?}");
    assert!(connect_failures[1].to_lowercase().contains("revoked"), "{connect_failures:?}");
}

/// A standalone gateway and the CLI reach a server whose certificate
/// comes from a private CA, once told to trust it (`CUSTOS_CA_FILE`);
/// without it, fail-closed refuses the login. With a client certificate
/// (`CUSTOS_CLIENT_CERT`/`KEY`) the gateway needs no token.
#[test]
fn the_cli_and_a_standalone_gateway_use_a_private_ca_and_a_client_certificate() {
    let pki = pki();
    let pg = Pg::start_app(&[]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let gw_token = token(&data, "ingest", "pg-gateway");
    let reader = token(&data, "auditor", "test-reader");
    let server = Server::start(&data, &["--tls-cert", &pki.path("server.pem"), "--tls-key", &pki.path("server.key")]);
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let users = gateway_users(dir.path(), &[("alice", "alice-pw", &[])]);
    let upstream = format!("postgres://svc:svc-pw@127.0.0.1:{}/app?sslmode=disable", pg.port);
    let ca = pki.path("ca.pem");

    let gw = start_gateway(&server.url, &gw_token, &upstream, &users, &[]);
    // Fail-closed: even the login is refused, since it cannot be recorded.
    let o = psql(gw.port, "alice", "alice-pw", "disable", &["select 'unseen' as x"], "");
    assert!(text(&o).contains("invalid peer certificate: UnknownIssuer"), "{}", text(&o));
    assert!(!text(&o).contains("unseen"), "{}", text(&o));
    drop(gw);

    let gw = start_gateway_env(&server.url, &gw_token, &upstream, &users, &[], &[("CUSTOS_CA_FILE", &ca)]);
    let o = psql(gw.port, "alice", "alice-pw", "disable", &["select 'trusted' as x"], "");
    assert!(text(&o).contains("trusted"), "{}", text(&o));
    let ev = poll(|| events_with_curl(&pki, &server.url, &reader, "db", 1));
    assert!(ev.iter().any(|e| e["message"] == "select 'trusted' as x"), "{ev:?}");

    // The CLI too: a search over HTTPS, then a CA file that is not one.
    let search = |ca: &str| {
        Command::new(bin())
            .args(["search", "--url", &server.url, "--log", "db", "--output", "ndjson", "trusted"])
            .env("CUSTOS_TOKEN", &reader)
            .env("CUSTOS_CA_FILE", ca)
            .output()
            .unwrap()
    };
    let last = std::cell::RefCell::new(String::new());
    let o = poll_or(
        || {
            let o = search(&ca);
            *last.borrow_mut() = text(&o);
            String::from_utf8_lossy(&o.stdout).contains("select 'trusted' as x").then_some(o)
        },
        || last.borrow().clone(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = search(&pki.path("server.key"));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("holds no PEM certificate"), "{}", text(&o));
    drop(gw);

    // With no token at all: a client certificate that the server maps to
    // an ingest identity for the log (mutual TLS).
    let data = dir.path().join("mtls-data");
    let reader = token(&data, "auditor", "test-reader");
    let server = start_mtls(&data, &pki, "db");
    let (cert, key) = (pki.path("client.pem"), pki.path("client.key"));
    let env = [("CUSTOS_CA_FILE", ca.as_str()), ("CUSTOS_CLIENT_CERT", &cert), ("CUSTOS_CLIENT_KEY", &key)];
    let gw = start_gateway_env(&server.url, "", &upstream, &users, &[], &env);
    let o = psql(gw.port, "alice", "alice-pw", "disable", &["select 'by certificate' as x"], "");
    assert!(text(&o).contains("by certificate"), "{}", text(&o));
    let ev = poll(|| events_with_curl(&pki, &server.url, &reader, "db", 1));
    let e = ev.iter().find(|e| e["message"] == "select 'by certificate' as x").expect("recorded");
    // The server names who posted it: the certificate's identity.
    assert_eq!(e["submitter"]["name"], "cert:collector-1", "{e}");
    assert!(ev.iter().any(|e| e["activity"] == "db.login" && e["status"] == "success"));
}

/// People added to or removed from the users file while the gateway runs
/// can, or can no longer, log in, with no restart; each change is
/// recorded, and a broken file changes nothing but is recorded too.
#[test]
fn users_file_changes_apply_without_a_restart_and_are_recorded() {
    let pg = Pg::start_app(&[]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let gw_token = token(&data, "ingest", "pg-gateway");
    let reader = token(&data, "auditor", "test-reader");
    let server = Server::start(&data, &[]);
    let users = gateway_users(dir.path(), &[("alice", "alice-pw", &[])]);
    let upstream = format!("postgres://svc:svc-pw@127.0.0.1:{}/app?sslmode=disable", pg.port);
    let gw = start_gateway(&server.url, &gw_token, &upstream, &users, &[]);
    let login = |user: &str, password: &str| psql(gw.port, user, password, "disable", &["select 'in' as x"], "");
    // Someone not in the file is asked for a token, which needs TLS.
    let refused = |o: &Output| !o.status.success() && text(o).contains("token logins need TLS");

    assert!(refused(&login("erin", "erin-pw")));
    gateway_users(dir.path(), &[("erin", "erin-pw", &["analyst"])]);
    poll(|| login("erin", "erin-pw").status.success().then_some(()));
    let o = Command::new(bin()).args(["gateway", "user", "alice", "--remove", "--users"]).arg(&users).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    poll(|| refused(&login("alice", "alice-pw")).then_some(()));
    let o = Command::new(bin()).args(["gateway", "user", "alice", "--remove", "--users"]).arg(&users).output().unwrap();
    assert!(!o.status.success() && text(&o).contains("has no user alice"), "{}", text(&o));
    // A file that does not parse: the people stay as they were.
    std::fs::write(&users, "{not json").unwrap();
    // (Written in place, the broken file may be seen twice: empty, then whole.)
    let ev = wait_for(&server.url, &reader, "three reloads", |ev| {
        ev.iter().filter(|e| e["activity"] == "gateway.users.reload").count() >= 3
    });
    assert!(login("erin", "erin-pw").status.success());
    let reloads = find(&ev, |e| e["activity"] == "gateway.users.reload");
    let g = |i: usize| &reloads[i]["metadata"]["gateway"];
    assert_eq!(g(0)["added"], serde_json::json!(["erin"]), "{:?}", reloads[0]);
    assert_eq!(reloads[0]["targets"], serde_json::json!([{"type": "user", "name": "erin"}]));
    assert_eq!((&g(0)["users"], &reloads[0]["status"]), (&Value::from(2), &Value::from("success")));
    assert_eq!(g(1)["removed"], serde_json::json!(["alice"]), "{:?}", reloads[1]);
    assert_eq!(reloads[2]["status"], "failure", "{:?}", reloads[2]);
    assert!(reloads[2]["status_detail"].as_str().unwrap().contains("keeps the people it had"), "{:?}", reloads[2]);
    assert_eq!(reloads[0]["actor"]["user"]["name"], "gateway:postgres");
}

/// Deny rules changed in the configuration file apply to running sessions'
/// next statements, with no restart, inside the server; each change is
/// recorded, and a file with a bad rule changes nothing.
#[test]
fn deny_rules_follow_the_configuration_file_and_changes_are_recorded() {
    let pg = Pg::start_app(&[]);
    pg.exec("app", "create table secrets(a int); alter table secrets owner to svc");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let reader = token(&data, "auditor", "test-reader");
    let users = gateway_users(dir.path(), &[("alice", "alice-pw", &["analyst"])]);
    let (config, port) = one_gateway_config(dir.path(), &pg, &users);
    let base = std::fs::read_to_string(&config).unwrap();
    // Written whole and renamed over, as configuration tools do: a watcher
    // never sees half a file.
    let with = |rules: &str| {
        let tmp = config.with_extension("tmp");
        std::fs::write(&tmp, format!("{base}{rules}")).unwrap();
        std::fs::rename(&tmp, &config).unwrap();
    };
    let no_ddl = "[[gateway.deny]]\nname = \"no-ddl\"\nroles = [\"analyst\"]\nclasses = [\"ddl\"]\n";
    let no_secrets = "[[gateway.deny]]\nname = \"no-secrets\"\nroles = [\"analyst\"]\ntables = [\"secrets\"]\n";
    with(no_ddl);
    let server = Server::start(&data, &["--config", config.to_str().unwrap()]);
    let run = |sql: &str| text(&psql(port, "alice", "alice-pw", "disable", &[sql], ""));
    assert!(run("create table t1(a int)").contains("denied by rule \"no-ddl\""));
    assert!(run("select count(*) from secrets").contains("(1 row)"));

    with(no_secrets);
    poll(|| run("select count(*) from secrets").contains("denied by rule \"no-secrets\"").then_some(()));
    assert!(run("create table t1(a int)").contains("CREATE TABLE"));
    // A rule that names no class and no table would deny everything: the
    // file is refused as a whole, and the rules stay.
    with("[[gateway.deny]]\nname = \"everything\"\nroles = [\"analyst\"]\n");
    let ev = wait_for(&server.url, &reader, "two rule reloads", |ev| {
        ev.iter().filter(|e| e["activity"] == "gateway.rules.reload").count() == 2
    });
    assert!(run("select count(*) from secrets").contains("denied by rule \"no-secrets\""));
    assert!(run("select 1 as still").contains("still"));
    let reloads = find(&ev, |e| e["activity"] == "gateway.rules.reload");
    let g = &reloads[0]["metadata"]["gateway"];
    assert_eq!((&g["added"], &g["removed"]), (&serde_json::json!(["no-secrets"]), &serde_json::json!(["no-ddl"])));
    assert_eq!((&g["rules"], &reloads[0]["status"]), (&Value::from(1), &Value::from("success")));
    assert_eq!(reloads[1]["status"], "failure", "{:?}", reloads[1]);
    assert!(reloads[1]["status_detail"].as_str().unwrap().contains("would deny everything"), "{:?}", reloads[1]);
}

/// The statements of `sql`'s events in the log, each with how often.
fn statement_counts(ev: &[Value], prefix: &str) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for e in ev.iter().filter(|e| e["activity"] == "db.query") {
        if let Some(m) = e["message"].as_str().filter(|m| m.starts_with(prefix)) {
            *counts.entry(m.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

/// An async gateway with a spool on disk rides out an outage of its
/// server, and loses nothing to a kill -9 of its own during one: what
/// the spool wrote is posted by the gateway that starts after it, each
/// event once.
#[test]
fn async_spool_on_disk_survives_a_server_outage_and_kill_9_of_the_gateway() {
    let pg = Pg::start_app(&[]);
    pg.exec("app", "create table marks(v int); alter table marks owner to svc");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let spool = dir.path().join("spool");
    let gw_token = token(&data, "ingest", "pg-gateway");
    let reader = token(&data, "auditor", "test-reader");
    let port = free_port().to_string();
    let listen = ["--listen", &format!("127.0.0.1:{port}")];
    let server = Server::start(&data, &listen);
    let users = gateway_users(dir.path(), &[("alice", "alice-pw", &[])]);
    let upstream = format!("postgres://svc:svc-pw@127.0.0.1:{}/app?sslmode=disable", pg.port);
    let args = ["--audit-mode", "async", "--spool-dir", spool.to_str().unwrap()];
    let gw = start_gateway(&server.url, &gw_token, &upstream, &users, &args);
    let marks =
        |from: i32, to: i32| -> Vec<String> { (from..to).map(|i| format!("insert into marks values ({i})")).collect() };
    let run = |port: u16, sqls: &[String]| {
        let sqls: Vec<&str> = sqls.iter().map(String::as_str).collect();
        let o = psql(port, "alice", "alice-pw", "disable", &sqls, "");
        assert!(o.status.success(), "{}", text(&o));
    };
    let spooled = |needle: &str| {
        std::fs::read_dir(&spool)
            .unwrap()
            .filter_map(Result::ok)
            .any(|f| std::fs::read(f.path()).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes())))
    };

    // The server goes away; statements run all the same (async), and their
    // events wait on disk, then reach the log once it is back.
    drop(server);
    run(gw.port, &marks(0, 20));
    let server = Server::start(&data, &listen);
    let ev = wait_for(&server.url, &reader, "the first 20 statements", |ev| {
        statement_counts(ev, "insert into marks").len() == 20
    });
    assert!(statement_counts(&ev, "insert into marks").values().all(|&n| n == 1));

    // Again, and this time the gateway is killed before the server is back.
    drop(server);
    run(gw.port, &marks(20, 40));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !spooled("insert into marks values (39)") {
        assert!(Instant::now() < deadline, "the last statement never reached the spool");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(gw); // SIGKILL
    let server = Server::start(&data, &listen);
    let gw = start_gateway(&server.url, &gw_token, &upstream, &users, &args);
    let ev =
        wait_for(&server.url, &reader, "all 40 statements", |ev| statement_counts(ev, "insert into marks").len() == 40);
    let counts = statement_counts(&ev, "insert into marks");
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    let rows = pg.psql_super("app", "select count(*) from marks");
    assert!(String::from_utf8_lossy(&rows.stdout).contains(" 40\n"), "{rows:?}");
    // Once more after a clean restart: each event still once in the log
    // (the server also drops repeated uids, so this holds either way).
    drop(gw);
    let gw = start_gateway(&server.url, &gw_token, &upstream, &users, &args);
    run(gw.port, &marks(40, 41));
    let ev = wait_for(&server.url, &reader, "the 41st statement", |ev| {
        statement_counts(ev, "insert into marks").len() == 41
    });
    let counts = statement_counts(&ev, "insert into marks");
    assert!(counts.values().all(|&n| n == 1), "a restart posted events again: {counts:?}");

    // A full spool refuses statements rather than run them unrecorded: a
    // 1 MiB spool, the server down, and statements of 32 KiB each.
    drop(gw);
    let small = dir.path().join("small-spool");
    let small_args = ["--audit-mode", "async", "--spool-dir", small.to_str().unwrap(), "--spool-max-mb", "1"];
    let gw = start_gateway(&server.url, &gw_token, &upstream, &users, &small_args);
    drop(server);
    let pad = "p".repeat(32 << 10);
    let script: String = (0..64).map(|i| format!("select {i} as n, '{pad}' as pad;\n")).collect();
    let mut c = Command::new(format!("{PGBIN}/psql"));
    c.args(["-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &gw.port.to_string(), "-U", "alice", "-d", "app"]);
    c.env("PGPASSWORD", "alice-pw").env("PGSSLMODE", "disable");
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || stdin.write_all(script.as_bytes()));
    let o = child.wait_with_output().unwrap();
    let out = text(&o);
    assert!(
        out.contains("could not be recorded (the audit spool on disk is full"),
        "{}",
        &out[out.len().saturating_sub(2000)..]
    );
    let ran = String::from_utf8_lossy(&o.stdout).matches(" row)").count();
    assert!((16..40).contains(&ran), "{ran} statements ran before the 1 MiB spool was full");
    // The server comes back; the spool drains, and statements run again.
    let server = Server::start(&data, &listen);
    // (Their text is cut at 32 KiB in the events.)
    let ev = wait_for(&server.url, &reader, "the spooled big statements", |ev| {
        statement_counts(ev, "select ").keys().filter(|m| m.contains(" as n, 'ppp")).count() >= ran
    });
    // The refused statement did not run, and no event says it did.
    let refused = format!("select {ran} as n");
    let claims =
        find(&ev, |e| e["message"].as_str().is_some_and(|m| m.starts_with(&refused)) && e["status"] == "success");
    assert!(claims.is_empty(), "{claims:?}");
    run(gw.port, &marks(41, 42));
    wait_for(&server.url, &reader, "a statement after the spool drained", |ev| {
        statement_counts(ev, "insert into marks").len() == 42
    });
}

/// Fail-closed means a statement runs only once its record is durable. So
/// after a kill -9 of the server hosting the gateway, in the middle of
/// pgbench inserting rows (simple and extended protocol), every row that
/// PostgreSQL committed has its INSERT in the log, and the log verifies.
#[test]
fn fail_closed_records_survive_kill_9_of_the_server_under_load() {
    let pg = Pg::start_app(&[]);
    pg.exec("app", "create table marks(v bigint); alter table marks owner to svc");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let reader = token(&data, "auditor", "test-reader");
    let users = gateway_users(dir.path(), &[("alice", "alice-pw", &[])]);
    let (config, port) = one_gateway_config(dir.path(), &pg, &users);
    let server = Server::start(&data, &["--config", config.to_str().unwrap()]);
    // Each client inserts values of its own (client_id apart), so that a
    // row names the one statement that made it.
    let script = dir.path().join("insert.sql");
    std::fs::write(&script, "\\set v :client_id + 10 * random(1, 100000000)\nINSERT INTO marks VALUES (:v);\n")
        .unwrap();
    let pgbench = |mode: &str| {
        Command::new(format!("{PGBIN}/pgbench"))
            .args(["-n", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "alice", "-c", "3", "-T", "60"])
            .args(["-M", mode, "-f"])
            .arg(&script)
            .arg("app")
            .env("PGPASSWORD", "alice-pw")
            .env("PGSSLMODE", "disable")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut runs = [pgbench("simple"), pgbench("prepared")];
    let count = || {
        let o = pg.psql_super("app", "select count(*) from marks");
        String::from_utf8_lossy(&o.stdout).lines().nth(2).and_then(|l| l.trim().parse::<u64>().ok())
    };
    poll(|| count().filter(|n| *n >= 500));
    server.kill9();
    for r in &mut runs {
        r.wait().unwrap();
    }
    let o = pg.psql_super("app", "copy marks to stdout");
    let rows: Vec<String> = String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect();
    assert!(rows.len() >= 500, "{}", rows.len());

    let server = Server::start(&data, &[]);
    let ev = events(&server.url, &reader);
    let mut recorded = std::collections::HashSet::new();
    for e in ev.iter().filter(|e| e["activity"] == "db.query") {
        let g = &e["metadata"]["gateway"];
        match g["protocol"].as_str() {
            Some("simple") => {
                if let Some(v) = e["message"].as_str().and_then(|m| m.strip_prefix("INSERT INTO marks VALUES (")) {
                    recorded.insert(v.trim_end_matches([';', ')']).to_string());
                }
            }
            Some("extended") if g["params"].is_array() => {
                recorded.insert(g["params"][0].as_str().unwrap().to_string());
            }
            _ => {}
        }
    }
    let missing: Vec<&String> = rows.iter().filter(|r| !recorded.contains(*r)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} committed rows have no record: {:?}",
        missing.len(),
        rows.len(),
        &missing[..missing.len().min(5)]
    );
    // Both protocols were cut off mid-run, and the log is whole.
    assert!(ev.iter().any(|e| e["metadata"]["gateway"]["protocol"] == "extended"));
    assert!(ev.iter().any(|e| e["metadata"]["gateway"]["protocol"] == "simple"));
    server.stop();
    let out = Command::new(bin()).args(["verify", "--data"]).arg(&data).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// Peak resident memory of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

#[test]
fn long_and_odd_statements_are_recorded_within_bounds() {
    let pg = Pg::start_app(&[]);
    pg.exec("app", "create table victim(a int); create table other(a int); create table bulk(id int, v text)");
    pg.exec("app", "alter table victim owner to svc; alter table other owner to svc; alter table bulk owner to svc");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let gw_token = token(&data, "ingest", "pg-gateway");
    let reader = token(&data, "auditor", "test-reader");
    let server = Server::start(&data, &[]);
    let users = gateway_users(dir.path(), &[("alice", "alice-pw", &["analyst"]), ("bob", "bob-pw", &[])]);
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, DENY_RULES).unwrap();
    let upstream = format!("postgres://svc:svc-pw@127.0.0.1:{}/app?sslmode=disable", pg.port);
    let closed = start_gateway(&server.url, &gw_token, &upstream, &users, &["--config", config.to_str().unwrap()]);
    let spool = start_gateway(&server.url, &gw_token, &upstream, &users, &["--audit-mode", "async"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let connect = |port: u16, user: &str| {
        let conn = format!("host=127.0.0.1 port={port} user={user} password={user}-pw dbname=app sslmode=disable");
        rt.block_on(async move {
            let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            client
        })
    };
    let sha = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(custos_tlog::hash::sha256(s.as_bytes()))
    };

    // JSON doubles every quote and makes a control character six bytes:
    // such text within the gateway's byte limits once made its events too
    // large for the log, which refused the statement (fail-closed) or
    // dropped the whole batch (async).
    let quotes = format!("select '{}' as q", "\"".repeat(40_000));
    let alice = connect(closed.port, "alice");
    rt.block_on(alice.simple_query(&quotes)).expect("a statement full of quotes runs, recorded");
    let control = "\u{1}".repeat(300);
    let row =
        rt.block_on(alice.query_one("select length($1::text) as n, $2::text as t", &[&control, &"x".repeat(20_000)]));
    assert_eq!(row.unwrap().get::<_, i32>(0), 300);
    let async_alice = connect(spool.port, "alice");
    rt.block_on(async_alice.simple_query(&quotes)).unwrap();
    rt.block_on(connect(spool.port, "bob").simple_query("select 'neighbour'")).unwrap();

    // Statements after the first of a text the parser does not follow
    // (TABLE is PostgreSQL's, not sqlparser's) are seen by deny rules.
    let err = rt.block_on(alice.simple_query("select 1; drop table victim; table other")).unwrap_err();
    assert_eq!(err.as_db_error().map(|e| e.code().code()), Some("42501"), "{err:?}");
    let still = pg.psql_super("app", "select count(*) from pg_tables where tablename = 'victim'");
    assert!(String::from_utf8_lossy(&still.stdout).contains(" 1"), "the table must still exist");

    // A 16 MiB INSERT: the parser would take about 1.8 GB for it; it is
    // analysed by its words instead.
    let mut bulk = String::from("insert into bulk values ");
    let mut rows = 0;
    while bulk.len() < 16 << 20 {
        bulk.push_str(&format!("({rows}, 'create or drop, as text {rows}'),"));
        rows += 1;
    }
    bulk.pop();
    let out = rt.block_on(alice.simple_query(&bulk)).expect("a bulk insert by an analyst is not DDL");
    assert!(matches!(out.first(), Some(tokio_postgres::SimpleQueryMessage::CommandComplete(n)) if *n == rows as u64));
    let peak = peak_rss(closed.child.id());
    eprintln!("gateway peak RSS after a 16 MiB INSERT: {} MB", peak >> 20);
    assert!(peak < 400 << 20, "the gateway peaked at {} MB for a 16 MiB statement", peak >> 20);

    // Sessions sending 30 MiB statements at once share 256 MiB of room
    // for long messages: they all go through, and memory stays bounded.
    let big = std::sync::Arc::new(format!("select length('{}') as n", "y".repeat(30 << 20)));
    let runs: Vec<_> = (0..16)
        .map(|_| {
            let (client, big) = (connect(closed.port, "bob"), big.clone());
            rt.spawn(async move { client.simple_query(&big).await })
        })
        .collect();
    for run in runs {
        let msgs = rt.block_on(run).unwrap().expect("a 30 MiB statement goes through");
        let n = msgs.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        });
        assert_eq!(n.as_deref(), Some(&*(30usize << 20).to_string()));
    }
    let peak = peak_rss(closed.child.id());
    eprintln!("gateway peak RSS after 16 sessions sent 30 MiB statements at once: {} MB", peak >> 20);
    assert!(peak < 900 << 20, "16 sessions with 30 MiB statements took the gateway to {} MB", peak >> 20);

    // A session's prepared statements hold at most 4 MiB of text: past
    // that, a Parse is refused, and closing some makes room again.
    let carol = connect(closed.port, "bob");
    let mut kept = Vec::new();
    let refused = (0..400).find_map(|i| {
        let text = format!("select {i} as n, '{}' as pad", "p".repeat(40_000));
        match rt.block_on(carol.prepare(&text)) {
            Ok(st) => {
                kept.push(st);
                None
            }
            Err(e) => Some((i, e)),
        }
    });
    let (i, e) = refused.expect("a Parse past the session's 4 MiB is refused");
    assert_eq!(e.as_db_error().map(|e| e.code().code()), Some("54000"), "{e:?}");
    assert!((100..140).contains(&i), "refused after {i} statements of 32 KiB kept");
    kept.truncate(10);
    rt.block_on(carol.simple_query("select 'closes the dropped statements'")).unwrap();
    rt.block_on(carol.prepare(&format!("select '{}' as pad", "q".repeat(40_000)))).expect("room again");

    let ev = wait_for(&server.url, &reader, "the events", |ev| {
        find(ev, |e| e["message"].as_str().is_some_and(|m| m.starts_with("select 'neighbour'"))).len() == 1
            && find(ev, |e| e["metadata"]["gateway"]["sql_bytes"] == big.len()).len() == 16
    });
    let quoted = find(&ev, |e| {
        e["activity"] == "db.query" && e["message"].as_str().is_some_and(|m| m.starts_with("select '\"\"\""))
    });
    assert!(quoted.len() >= 2, "both gateways recorded the quotes: {}", quoted.len());
    for e in &quoted {
        let g = &e["metadata"]["gateway"];
        assert_eq!(g["sql_bytes"], quotes.len(), "{g}");
        assert_eq!(g["sql_sha256"], sha(&quotes), "{g}");
        assert!(quotes.starts_with(e["message"].as_str().unwrap()));
    }
    let params = find(&ev, |e| e["message"].as_str().is_some_and(|m| m.starts_with("select length($1::text)")));
    assert!(!params.is_empty());
    let denied = find(&ev, |e| e["message"] == "select 1; drop table victim; table other");
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["status"], "failure");
    assert_eq!(denied[0]["metadata"]["gateway"]["parsed"], false);
    let classes = denied[0]["metadata"]["gateway"]["classes"].as_array().unwrap();
    assert!(classes.iter().any(|c| c == "ddl"), "{classes:?}");
    let bulk_ev = find(&ev, |e| e["metadata"]["gateway"]["sql_bytes"] == bulk.len());
    assert!(!bulk_ev.is_empty());
    assert_eq!(bulk_ev[0]["metadata"]["gateway"]["sql_sha256"], sha(&bulk));
    assert_eq!(bulk_ev[0]["metadata"]["gateway"]["classes"], serde_json::json!(["write"]));
    // Too long to parse, yet its table is named by its leading words.
    assert_eq!(bulk_ev[0]["targets"], serde_json::json!([{"type": "table", "name": "bulk"}]));
    assert_eq!(denied[0]["targets"], serde_json::json!([{"type": "table", "name": "other"}]));
    drop(server);
}
