//! LaneYard (the poll-driven yard) over real Unix datagram sockets, with a LaneStack and
//! another LaneYard. Readiness is awaited on the yard's socket with tokio (epoll, through a
//! duplicate of its descriptor), never by sleeping.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram as StdDatagram;
use std::time::Duration;

use raet::lane::{LaneError, LaneStack, LaneYard, Message};
use serde_json::{json, Map, Value};
use tokio::io::Interest;

const LIMIT: Duration = Duration::from_secs(20);

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// Waits until `yard` has completed at least `n` messages and returns them.
async fn recv_n(yard: &LaneYard, n: usize) -> Vec<Message> {
    let fd = yard.as_fd().try_clone_to_owned().expect("dup");
    let watch = tokio::net::UnixDatagram::from_std(StdDatagram::from(fd)).expect("register");
    let mut got = Vec::new();
    tokio::time::timeout(LIMIT, async {
        while got.len() < n {
            watch.readable().await.expect("readable");
            // Drain through the yard, then report "would block" so tokio clears readiness.
            let _ = watch.try_io(Interest::READABLE, || {
                got.extend(yard.recv());
                Err::<(), _>(io::ErrorKind::WouldBlock.into())
            });
        }
    })
    .await
    .expect("messages in time");
    got
}

#[tokio::test]
async fn lane_yard_and_lane_stack_talk_both_ways() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yard = LaneYard::bind(dir.path(), "salt", "py").expect("bind");
    let stack = LaneStack::bind(dir.path(), "salt", "manor")
        .await
        .expect("bind");
    assert_eq!(yard.path(), dir.path().join("salt.py.uxd"));
    assert_eq!(yard.name(), "py");
    let hello = obj(json!({"route": {"src": [null, "py", null]}, "n": 1}));
    yard.send("manor", &hello).expect("send");
    assert_eq!(stack.recv().await.expect("recv"), ("py".to_owned(), hello));
    let big = obj(json!({"blob": "y".repeat(1_500_000)}));
    let (sent, got) = tokio::join!(stack.send("py", &big), recv_n(&yard, 1));
    sent.expect("stack sends");
    assert_eq!(got, vec![("manor".to_owned(), big)]);
    let stats = yard.stats();
    assert_eq!(stats.get("sent"), Some(&1), "{stats:?}");
    assert_eq!(stats.get("received"), Some(&1), "{stats:?}");
}

#[tokio::test]
async fn multi_page_message_between_two_lane_yards_with_a_sending_thread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = LaneYard::bind(dir.path(), "salt", "a").expect("bind a");
    let b = LaneYard::bind(dir.path(), "salt", "b").expect("bind b");
    let big = obj(json!({"blob": "z".repeat(3_000_000)}));
    let sent = big.clone();
    // 47 pages: more than the receiving queue holds, so the sender waits for the reader.
    let sender = std::thread::spawn(move || a.send("b", &sent).map(|()| a.stats()));
    let got = recv_n(&b, 1).await;
    let stats = sender.join().expect("thread").expect("send");
    assert_eq!(got, vec![("a".to_owned(), big)]);
    assert_eq!(stats.get("sent"), Some(&1), "{stats:?}");
}

#[test]
fn a_queue_nobody_drains_fails_the_send_after_the_stall_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = LaneYard::bind(dir.path(), "salt", "a").expect("bind a");
    let b = LaneYard::bind(dir.path(), "salt", "b").expect("bind b");
    a.set_stall_limit(Duration::from_millis(50));
    let big = obj(json!({"blob": "q".repeat(3_000_000)}));
    let err = a.send("b", &big);
    assert!(
        matches!(err, Err(LaneError::QueueFull { ref yard, .. }) if yard == "b"),
        "{err:?}"
    );
    assert_eq!(a.stats().get("full_transmit_yard"), Some(&1));
    assert!(b.recv().is_empty(), "an incomplete book is not delivered");
    // The session survives: the next message gets through.
    a.send("b", &obj(json!({"after": true}))).expect("send");
    let got = b.recv();
    assert_eq!(got.len(), 1, "{got:?}");
}

#[test]
fn errors_garbage_and_socket_file_lifecycle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = LaneYard::bind(dir.path(), "salt", "a").expect("bind a");
    let err = a.send("ghost", &Map::new());
    assert!(matches!(err, Err(LaneError::Unreachable { .. })), "{err:?}");
    assert_eq!(a.stats().get("stale_transmit_yard"), Some(&1));
    let again = LaneYard::bind(dir.path(), "salt", "a");
    assert!(matches!(again, Err(LaneError::InUse(_))), "{again:?}");
    let bad = LaneYard::bind(dir.path(), "salt", "a/b");
    assert!(matches!(bad, Err(LaneError::InvalidName(_))), "{bad:?}");

    let raw = StdDatagram::unbound().expect("socket");
    for garbage in [&b"garbage"[..], b"", b"ri RAET\nxx\n\n{}"] {
        raw.send_to(garbage, a.path()).expect("send garbage");
    }
    assert!(a.recv().is_empty());
    let stats = a.stats();
    assert_eq!(stats.get("invalid_page_header"), Some(&3), "{stats:?}");

    let path = a.path().to_owned();
    assert!(path.exists());
    drop(a);
    assert!(!path.exists(), "dropping the yard removes its socket file");
}
