//! Tests of the keep writer: ops applied in order, role reads answered after the writes
//! queued before them, a failing keep counted without stopping the writer.

use std::fs;

use raet_proto::keep::testutil;

use super::*;
use crate::keep::{Acceptance, DirKeep, MemKeep, Snapshot};

fn role(acceptance: Acceptance) -> RoleRecord {
    testutil::role("beta", acceptance, 4)
}

fn load(role: &str) -> PersistOp {
    PersistOp::LoadRole {
        role: role.to_owned(),
    }
}

#[tokio::test]
async fn ops_are_applied_in_order_and_reads_see_earlier_writes() {
    let keep = MemKeep::new();
    let (answers, mut rx) = mpsc::unbounded_channel();
    let mut writer = KeepWriter::spawn("alpha", Box::new(keep.clone()), answers).expect("spawn");
    writer.push(PersistOp::SaveLocal(testutil::local("alpha")));
    writer.push(PersistOp::SaveRemote(testutil::remote("beta", 2)));
    writer.push(PersistOp::SaveRole(role(Acceptance::Pending)));
    writer.push(PersistOp::SaveRole(role(Acceptance::Accepted)));
    writer.push(load("beta"));
    writer.push(PersistOp::RemoveRole {
        role: "beta".to_owned(),
    });
    writer.push(load("beta"));
    writer.push(PersistOp::RemoveRemote {
        name: "beta".to_owned(),
    });
    writer.finish().await;
    assert_eq!(
        rx.recv().await,
        Some(("beta".to_owned(), Some(role(Acceptance::Accepted))))
    );
    assert_eq!(rx.recv().await, Some(("beta".to_owned(), None)));
    assert_eq!(rx.recv().await, None, "the thread ended");
    assert_eq!(writer.errors(), 0);
    let snapshot = Snapshot::load(&keep).expect("keep");
    assert_eq!(snapshot.local, Some(testutil::local("alpha")));
    assert!(snapshot.remotes.is_empty() && snapshot.roles.is_empty());
}

#[tokio::test]
async fn a_failing_keep_is_counted_and_the_writer_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keep = DirKeep::open(dir.path()).expect("open");
    // Works for root too (a read-only directory would not stop root): `remote/` is a file.
    let remote = dir.path().join("remote");
    fs::remove_dir(&remote).expect("rmdir");
    fs::write(&remote, b"not a directory").expect("write");
    let (answers, mut rx) = mpsc::unbounded_channel();
    let mut writer = KeepWriter::spawn("alpha", Box::new(keep.clone()), answers).expect("spawn");
    writer.push(PersistOp::SaveRemote(testutil::remote("beta", 2)));
    writer.push(PersistOp::SaveRole(role(Acceptance::Accepted)));
    writer.push(load("beta"));
    writer.finish().await;
    assert_eq!(writer.errors(), 1, "the remote write failed");
    assert_eq!(
        rx.recv().await,
        Some(("beta".to_owned(), Some(role(Acceptance::Accepted)))),
        "later ops still applied"
    );
    writer.push(load("beta"));
    assert_eq!(rx.recv().await, None, "nothing after finish");
}
