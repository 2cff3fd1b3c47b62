//! `custos demo`: fill a log with realistic access events, so a newcomer
//! sees something real at once: logins with a failed-login burst, database
//! queries, admin changes and file reads.

use anyhow::bail;
use serde_json::{Value, json};

use crate::http;

/// Arguments of `custos demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Server URL.
    #[arg(long, env = "CUSTOS_URL", default_value = "http://127.0.0.1:7600")]
    url: String,
    /// The log to fill.
    #[arg(long, default_value = "demo")]
    log: String,
    /// How many events.
    #[arg(long, default_value_t = 2000)]
    count: usize,
}

const USERS: [&str; 8] = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "mallory"];
const TABLES: [&str; 5] = ["payments.card", "public.orders", "public.customers", "hr.salaries", "public.products"];
const FILES: [&str; 4] =
    ["/srv/reports/q3.pdf", "/etc/ssl/private/server.key", "/home/alice/notes.txt", "/srv/exports/customers.csv"];

/// A deterministic generator of demo events.
pub fn events(count: usize, start_ms: i64) -> Vec<Value> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let t = start_ms + i as i64 * 1500;
        let user = USERS[rnd(USERS.len() as u64 - 1) as usize];
        let ip = format!("10.{}.{}.{}", rnd(4), rnd(255), 1 + rnd(250));
        let kind = rnd(100);
        let e = if (i / 50) % 10 == 7 && i % 50 < 20 {
            // A burst of failed logins by one attacker against many users.
            json!({"time": t, "activity": "user.login", "class_uid": 3002,
                "actor": {"user": {"name": USERS[i % USERS.len()]}},
                "src_endpoint": {"ip": "203.0.113.66", "port": 40000 + i % 1000},
                "dst_endpoint": {"hostname": "ssh.prod.example.com", "port": 22},
                "status": "failure", "status_detail": "invalid password",
                "message": format!("Failed password for {} from 203.0.113.66", USERS[i % USERS.len()])})
        } else if kind < 30 {
            let ok = rnd(100) < 95;
            json!({"time": t, "activity": "user.login", "class_uid": 3002,
                "actor": {"user": {"name": user}, "session": {"uid": format!("s-{}", rnd(1 << 30))}},
                "src_endpoint": {"ip": ip}, "dst_endpoint": {"hostname": "vpn.example.com"},
                "status": if ok { "success" } else { "failure" },
                "status_detail": if ok { "mfa passed" } else { "mfa timeout" }})
        } else if kind < 75 {
            let table = TABLES[rnd(TABLES.len() as u64) as usize];
            let write = rnd(10) < 3;
            json!({"time": t, "activity": "db.query", "class_uid": 6005,
                "actor": {"user": {"name": user}},
                "src_endpoint": {"ip": ip}, "dst_endpoint": {"hostname": "prod-db", "port": 5432},
                "resource": {"type": "table", "name": table},
                "status": "success",
                "message": if write { format!("UPDATE {table} SET note = $1 WHERE id = $2") } else { format!("SELECT * FROM {table} WHERE id = $1") },
                "metadata": {"statement_class": if write { "write" } else { "read" }, "rows": rnd(40)}})
        } else if kind < 90 {
            let f = FILES[rnd(FILES.len() as u64) as usize];
            let allowed = !f.contains("private") || user == "alice";
            json!({"time": t, "activity": "file.read", "class_uid": 1001,
                "actor": {"user": {"name": user}}, "src_endpoint": {"hostname": "files01"},
                "resource": {"type": "file", "name": f},
                "status": if allowed { "success" } else { "failure" },
                "status_detail": if allowed { "ok" } else { "permission denied" }})
        } else {
            json!({"time": t, "activity": "admin.role.grant", "class_uid": 3005,
                "actor": {"user": {"name": "grace"}},
                "src_endpoint": {"ip": "10.0.0.5"},
                "targets": [{"type": "user", "name": user}],
                "resource": {"type": "role", "name": if rnd(2) == 0 { "db-readonly" } else { "db-admin" }},
                "status": "success"})
        };
        out.push(e);
    }
    out
}

/// Runs the command.
pub fn run(a: Args) -> anyhow::Result<i32> {
    let agent = http::agent();
    let url = format!("{}/v1/logs/{}/events", a.url.trim_end_matches('/'), a.log);
    let start = custos_event::time::now_nanos() / 1_000_000 - a.count as i64 * 1500;
    let all = events(a.count, start);
    let chunks = all.chunks(1000).count();
    for (i, chunk) in all.chunks(1000).enumerate() {
        let body: Vec<String> = chunk.iter().map(Value::to_string).collect();
        // The last batch returns once searches find every event, so that a
        // search right after the demo sees them all.
        let url = if i + 1 == chunks { format!("{url}?wait=searchable") } else { url.clone() };
        let (status, resp) = http::post(&agent, &url, "application/x-ndjson", body.join("\n").as_bytes())?;
        if status != 200 {
            bail!("HTTP {status}: {}", String::from_utf8_lossy(&resp).trim());
        }
    }
    println!("wrote {} demo events to log {:?} at {}", a.count, a.log, a.url);
    println!("try: curl -s {}/v1/logs/{}/entries?start=0\\&end=3", a.url.trim_end_matches('/'), a.log);
    Ok(0)
}
