//! A real full disk: the data directory on a small tmpfs. Every
//! acknowledged event survives it, nothing of a refused batch is stored,
//! and the search index is kept as of its last commit (not deleted and
//! rebuilt) and catches up once there is space again.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A tmpfs of a few MiB, unmounted when dropped.
struct Tmpfs {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Tmpfs {
    fn mount(mib: u32) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root, as the PostgreSQL tests do: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { _dir: dir, path }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Writes zeros to `path` until the filesystem is full.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

fn post_batch(s: &Server, first: u64) -> (u16, Value) {
    let batch: Vec<Value> = (first..first + 200)
        .map(|n| {
            let mut e = event("filler", n);
            e["message"] = Value::String(format!("{n} {}", "x".repeat(1000)));
            e
        })
        .collect();
    post(&s.events_url("full"), "application/x-ndjson", ndjson(&batch), &[])
}

#[test]
fn a_full_disk_loses_no_acknowledged_event_and_keeps_the_index() {
    let fs = Tmpfs::mount(24);
    let data = fs.path.join("data");
    let logs = tempfile::tempdir().unwrap();
    let err_path = logs.path().join("server.err");
    let err_log = || std::fs::read_to_string(&err_path).unwrap_or_default();
    let s = Server::start_with_stderr(&data, &[], std::fs::File::create(&err_path).unwrap());
    // Some events, searchable: the index has a commit to keep.
    let (st, r) =
        post(&format!("{}?wait=searchable", s.events_url("full")), "application/json", event("a", 0).to_string(), &[]);
    assert_eq!(st, 200, "{r}");
    let mut acked: BTreeMap<u64, Value> = BTreeMap::from([(0, r["receipts"][0]["leaf_hash"].clone())]);
    // Room that is given back later.
    std::fs::write(fs.path.join("spare"), vec![1u8; 4 << 20]).unwrap();

    // Ingest until the disk is full: every batch is either acknowledged
    // whole or refused with nothing stored.
    let (mut n, mut refused) = (1u64, 0);
    while refused < 3 {
        assert!(n < 1_000_000, "the disk never filled");
        let (st, r) = post_batch(&s, n);
        n += 200;
        match st {
            200 => {
                for x in r["receipts"].as_array().unwrap() {
                    acked.insert(x["index"].as_u64().unwrap(), x["leaf_hash"].clone());
                }
            }
            503 => {
                assert!(r["error"].as_str().unwrap().contains("nothing was stored"), "{r}");
                refused += 1;
            }
            _ => panic!("{st} {r}"),
        }
    }
    assert!(acked.len() >= 2000, "{} acknowledged", acked.len());
    let size = |s: &Server| get_json(&format!("{}/v1/logs/full", s.url)).1["size"].as_u64().unwrap();
    assert_eq!(size(&s), acked.len() as u64, "a refused batch stored something");
    assert_eq!(*acked.keys().last().unwrap() + 1, acked.len() as u64);
    // Whatever room a failed write gave back is taken too, so that the
    // index cannot commit either; it keeps its last commit.
    fill(&fs.path.join("last-bytes"));
    poll_or(|| err_log().contains("keeping the index as of its last commit").then_some(()), err_log);

    // Space is back: appends and indexing carry on.
    std::fs::remove_file(fs.path.join("spare")).unwrap();
    std::fs::remove_file(fs.path.join("last-bytes")).unwrap();
    let (st, r) = post_batch(&s, n);
    assert_eq!(st, 200, "{r}");
    for x in r["receipts"].as_array().unwrap() {
        acked.insert(x["index"].as_u64().unwrap(), x["leaf_hash"].clone());
    }
    let all = acked.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (st, v) = get_json(&format!("{}/v1/logs/full/search?q=activity%3Adb.query&limit=1", s.url));
        if st == 200 && v["indexed"] == all && v["total"] == all {
            break;
        }
        assert!(Instant::now() < deadline, "the index never caught up: {st} {v}\n{}", err_log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = err_log();
    assert!(!log.contains("rebuilding"), "the index was rebuilt rather than kept:\n{log}");

    // After kill -9 and a restart, every acknowledged event is where its
    // receipt put it, and the data directory verifies offline.
    s.kill9();
    let s = Server::start(&data, &[]);
    assert_eq!(size(&s), all);
    for start in (0..all).step_by(1000) {
        let end = (start + 1000).min(all);
        let (st, page) = get_json(&format!("{}/v1/logs/full/entries?start={start}&end={end}", s.url));
        assert_eq!(st, 200, "{page}");
        for e in page["entries"].as_array().unwrap() {
            assert_eq!(e["leaf_hash"], acked[&e["index"].as_u64().unwrap()], "entry {}", e["index"]);
        }
    }
    assert!(s.stop().success());
    let v = Command::new(bin()).args(["verify", "--data"]).arg(&data).output().unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
}

/// Fail-closed on a full disk: a gateway inside the server refuses a
/// statement whose record cannot be written (SQLSTATE 55000), PostgreSQL
/// never runs it, and the same session carries on once there is room.
#[test]
fn a_full_disk_refuses_gateway_statements_until_there_is_room() {
    let pg = common::pg::Pg::start_app(&[]);
    pg.exec("app", "create table t(v int); alter table t owner to svc");
    let fs = Tmpfs::mount(24);
    let data = fs.path.join("data");
    let conf = tempfile::tempdir().unwrap();
    let users = common::pg::gateway_users(conf.path(), &[("alice", "alice-pw", &[])]);
    let (config, port) = common::pg::one_gateway_config(conf.path(), &pg, &users);
    let s = Server::start(&data, &["--config", config.to_str().unwrap()]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let conn = format!("host=127.0.0.1 port={port} user=alice password=alice-pw dbname=app sslmode=disable");
    let client = rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client.simple_query("insert into t values (1)").await.unwrap();
        client
    });

    // Fill the disk, then the gateway's log: big batches, then single
    // events, until even one is refused.
    std::fs::write(fs.path.join("spare"), vec![1u8; 4 << 20]).unwrap();
    fill(&fs.path.join("filler"));
    let (mut n, mut size) = (0u64, 200u64);
    while size > 0 {
        let batch: Vec<Value> = (n..n + size).map(|k| event("filler", k)).collect();
        n += size;
        assert!(n < 1_000_000, "the disk never filled");
        let (st, r) = post(&s.events_url("db"), "application/x-ndjson", ndjson(&batch), &[]);
        match st {
            200 => {}
            503 => size /= 10,
            _ => panic!("{st} {r}"),
        }
    }
    // Whatever room the failed writes gave back is taken too.
    fill(&fs.path.join("last-bytes"));
    let err = rt.block_on(client.simple_query("insert into t values (2)")).unwrap_err();
    let db = err.as_db_error().expect("a PostgreSQL error");
    assert_eq!(db.code().code(), "55000", "{db:?}");
    assert!(db.message().contains("could not be recorded"), "{}", db.message());

    // Room again: the same session goes on.
    std::fs::remove_file(fs.path.join("spare")).unwrap();
    std::fs::remove_file(fs.path.join("filler")).unwrap();
    std::fs::remove_file(fs.path.join("last-bytes")).unwrap();
    rt.block_on(client.simple_query("insert into t values (3)")).unwrap();
    let o = pg.psql_super("app", "copy t to stdout");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "1\n3\n", "only recorded statements ran");
    let size = get_json(&format!("{}/v1/logs/db", s.url)).1["size"].as_u64().unwrap();
    let (st, page) = get_json(&format!("{}/v1/logs/db/entries?start={}&end={size}", s.url, size.saturating_sub(50)));
    assert_eq!(st, 200, "{page}");
    let inserts: Vec<String> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e["entry"].as_str()?).ok())
        .filter(|e| e["activity"] == "db.query")
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect();
    assert!(inserts.contains(&"insert into t values (3)".to_string()), "{inserts:?}");
    assert!(!inserts.contains(&"insert into t values (2)".to_string()), "{inserts:?}");
    drop(client);
    assert!(s.stop().success());
    let v = Command::new(bin()).args(["verify", "--data"]).arg(&data).output().unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
}
