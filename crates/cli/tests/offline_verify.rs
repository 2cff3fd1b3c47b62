//! `custos keygen` and `custos verify` as an auditor runs them: on a data
//! directory written by the log, untouched and then tampered with.

use std::path::Path;
use std::process::{Command, Output};

use custos_log::store::{LogStore, StoreConfig};

fn custos(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custos")).args(args).env("CUSTOS_LOG", "error").output().expect("run custos")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A data directory with logs `a` (500 entries, checkpoints at 200 and
/// 500) and `b` (3 entries, one checkpoint).
fn data_dir(dir: &Path) -> String {
    let store = LogStore::open(StoreConfig::new(dir)).unwrap();
    let a = store.get_or_create("a").unwrap();
    let entries: Vec<String> = (0..500).map(|i| format!("{{\"n\":{i}}}")).collect();
    a.append_blocking(&entries[..200]).unwrap();
    a.sign_checkpoint().unwrap();
    a.append_blocking(&entries[200..]).unwrap();
    a.sign_checkpoint().unwrap();
    let b = store.get_or_create("b").unwrap();
    b.append_blocking(&["x", "y", "z"]).unwrap();
    b.sign_checkpoint().unwrap();
    store.verifier().to_key_string()
}

#[test]
fn verify_passes_then_names_a_flipped_entry() {
    let dir = tempfile::tempdir().unwrap();
    let vkey = data_dir(dir.path());
    let d = dir.path().to_str().unwrap();
    let ok = custos(&["verify", "--data", d, "--key", &vkey]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("OK   a: 500 entries"), "{}", text(&ok));
    assert!(text(&ok).contains("2 of 2 logs verified"));

    // Flip one byte inside entry 300's payload: records are 8 bytes of
    // header plus the entry, after a 16-byte file header.
    let path = dir.path().join("logs/a/entries.00000000000000000000");
    let mut bytes = std::fs::read(&path).unwrap();
    let offset = 16 + (0..300).map(|i| 8 + format!("{{\"n\":{i}}}").len()).sum::<usize>() + 10;
    bytes[offset] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let bad = custos(&["verify", "--data", d, "--key", &vkey]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    assert!(text(&bad).contains("FAIL a: entry 300 at byte"), "{}", text(&bad));
    assert!(text(&bad).contains("OK   b"), "{}", text(&bad));
    let only_b = custos(&["verify", "--data", d, "--key", &vkey, "--log", "b"]);
    assert!(only_b.status.success());
}

#[test]
fn verify_with_a_different_key_fails_on_the_first_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    data_dir(dir.path());
    let kg = custos(&["keygen", "--name", "custos.local"]);
    assert!(kg.status.success());
    let out = String::from_utf8(kg.stdout).unwrap();
    let mut lines = out.lines();
    assert!(lines.next().unwrap().starts_with("PRIVATE+KEY+custos.local+"));
    let other = lines.next().unwrap();
    let r = custos(&["verify", "--data", dir.path().to_str().unwrap(), "--key", other]);
    assert_eq!(r.status.code(), Some(1));
    assert!(text(&r).contains("checkpoint 0: no valid signature"), "{}", text(&r));
}

#[test]
fn bad_arguments_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let r = custos(&["verify", "--data", d, "--key", "garbage"]);
    assert_eq!(r.status.code(), Some(2));
    assert!(text(&r).contains("parsing --key"), "{}", text(&r));
    let r = custos(&["verify", "--data", "/nonexistent/custos"]);
    assert_eq!(r.status.code(), Some(2));
    assert!(text(&r).contains("signing key"), "{}", text(&r));
    data_dir(dir.path());
    let r = custos(&["verify", "--data", d, "--log", "nope"]);
    assert_eq!(r.status.code(), Some(2));
    assert!(text(&r).contains("log \"nope\" does not exist"), "{}", text(&r));
    let key = dir.path().join("k");
    assert!(custos(&["keygen", "--out", key.to_str().unwrap()]).status.success());
    let r = custos(&["keygen", "--out", key.to_str().unwrap()]);
    assert!(text(&r).contains("refusing to overwrite"), "{}", text(&r));
}
