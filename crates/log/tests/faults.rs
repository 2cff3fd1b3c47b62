//! Injected I/O errors: a failed fsync makes the log refuse appends until
//! it is reopened and is never acknowledged; a failed write (full disk) is
//! undone and reported, and the log carries on.

mod common;

use std::sync::Arc;

use common::*;
use custos_log::AppendError;
use custos_log::sim::{FaultOp, SimStorage};

#[test]
fn failed_fsync_refuses_appends_until_reopen() {
    let storage = Arc::new(SimStorage::new(11));
    let log = open(storage.clone());
    log.append_blocking(&[b"a".to_vec()]).unwrap();
    storage.fail(FaultOp::Sync, 0);
    let err = log.append_blocking(&[b"b".to_vec()]).unwrap_err();
    assert!(matches!(err, AppendError::Failed(ref m) if m.contains("fsync")), "{err}");
    assert_eq!(log.size(), 1, "the failed entry is not visible");
    // Even though the disk works again, the log stays read-only.
    let err = log.append_blocking(&[b"c".to_vec()]).unwrap_err();
    assert!(matches!(err, AppendError::Failed(_)), "{err}");
    assert!(log.failure().is_some());
    assert_eq!(log.entry(0).unwrap(), b"a");
    drop(log);
    let log = open(storage.clone());
    let r = log.append_blocking(&[b"d".to_vec()]).unwrap();
    assert_eq!(log.entry(r.start).unwrap(), b"d");
    assert_eq!(log.entry(0).unwrap(), b"a");
    drop(log);
    verify(&*storage).unwrap();
}

#[test]
fn full_disk_write_is_undone_and_log_carries_on() {
    let storage = Arc::new(SimStorage::new(12));
    let log = open(storage.clone());
    log.append_blocking(&[b"a".to_vec()]).unwrap();
    storage.fail(FaultOp::Append, 0);
    let err = log.append_blocking(&[vec![b'x'; 5000]]).unwrap_err();
    assert!(matches!(err, AppendError::Io(ref m) if m.contains("No space")), "{err}");
    assert!(log.failure().is_none());
    let r = log.append_blocking(&[b"b".to_vec()]).unwrap();
    assert_eq!(r, 1..2);
    log.sign_checkpoint().unwrap();
    drop(log);
    verify(&*storage).unwrap();
    assert_eq!(open(storage).size(), 2);
}

#[test]
fn failed_checkpoint_sync_makes_log_read_only() {
    let storage = Arc::new(SimStorage::new(13));
    let log = open(storage.clone());
    log.append_blocking(&[b"a".to_vec()]).unwrap();
    storage.fail(FaultOp::Sync, 0);
    assert!(log.sign_checkpoint().is_err());
    assert!(log.append_blocking(&[b"b".to_vec()]).is_err());
}
