//! LaneStack over real Unix datagram sockets in a temporary directory.

use std::os::unix::net::UnixDatagram as StdDatagram;
use std::time::Duration;

use raet::lane::{LaneError, LaneStack};
use serde_json::{json, Map, Value};

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn blob(n: usize) -> Map<String, Value> {
    obj(json!({ "blob": "x".repeat(n) }))
}

/// Yard `name` of lane "lane" in `dir`.
async fn yard(dir: &std::path::Path, name: &str) -> LaneStack {
    LaneStack::bind(dir, "lane", name).await.expect("bind")
}

async fn pair(dir: &std::path::Path) -> (LaneStack, LaneStack) {
    (yard(dir, "alpha").await, yard(dir, "beta").await)
}

#[tokio::test]
async fn small_messages_both_ways() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = pair(dir.path()).await;
    assert_eq!(a.path(), dir.path().join("lane.alpha.uxd"));
    let hello = obj(json!({"subject": "alpha to beta", "n": 1, "é": "ünïcode"}));
    a.send("beta", &hello).await.expect("send");
    assert_eq!(b.recv().await.expect("recv"), ("alpha".to_owned(), hello));
    let reply = obj(json!({"subject": "beta to alpha", "list": [1, 2.5, null, true]}));
    b.send("alpha", &reply).await.expect("reply");
    assert_eq!(a.recv().await.expect("recv"), ("beta".to_owned(), reply));
    let empty = Map::new();
    a.send("beta", &empty).await.expect("empty");
    assert_eq!(b.recv().await.expect("recv"), ("alpha".to_owned(), empty));
    assert_eq!(b.stats().get("received"), Some(&2));
    assert_eq!(a.stats().get("sent"), Some(&2));
}

#[tokio::test]
async fn multi_page_messages_both_ways_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = pair(dir.path()).await;
    let big_a = blob(300_000);
    let big_b = blob(2_000_000); // 31 pages: more than the kernel's default queue of 10
    let (sa, sb, ra, rb) = tokio::join!(
        a.send("beta", &big_a),
        b.send("alpha", &big_b),
        a.recv(),
        b.recv()
    );
    sa.expect("alpha sends");
    sb.expect("beta sends");
    assert_eq!(rb.expect("beta receives"), ("alpha".to_owned(), big_a));
    assert_eq!(ra.expect("alpha receives"), ("beta".to_owned(), big_b));
}

#[tokio::test]
async fn many_messages_arrive_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = pair(dir.path()).await;
    let sending = async {
        for n in 0..300 {
            a.send("beta", &obj(json!({ "n": n }))).await.expect("send");
        }
    };
    let receiving = async {
        let mut got = Vec::new();
        for _ in 0..300 {
            let (from, body) = b.recv().await.expect("recv");
            assert_eq!(from, "alpha");
            got.push(body.get("n").and_then(Value::as_i64).expect("n"));
        }
        got
    };
    let ((), got) = tokio::join!(sending, receiving);
    assert_eq!(got, (0..300).collect::<Vec<i64>>());
}

#[tokio::test]
async fn sending_to_a_missing_yard_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = yard(dir.path(), "alpha").await;
    let err = a.send("nobody", &blob(10)).await.expect_err("no socket");
    match &err {
        LaneError::Unreachable { yard, source, .. } => {
            assert_eq!(yard, "nobody");
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("unexpected {other:?}"),
    }
    // A socket file nobody listens on (left by a dead process).
    let stale = dir.path().join("lane.ghost.uxd");
    drop(StdDatagram::bind(&stale).expect("bind ghost"));
    let err = a
        .send("ghost", &blob(10))
        .await
        .expect_err("nobody listens");
    assert!(
        matches!(&err, LaneError::Unreachable { source, .. }
            if source.kind() == std::io::ErrorKind::ConnectionRefused),
        "{err:?}"
    );
    assert_eq!(a.stats().get("stale_transmit_yard"), Some(&2));
    assert!(matches!(
        a.send("bad/name", &blob(1)).await,
        Err(LaneError::InvalidName(_))
    ));
}

#[tokio::test]
async fn stale_socket_is_replaced_but_a_live_one_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("lane.alpha.uxd");
    drop(StdDatagram::bind(&path).expect("stale socket"));
    let a = yard(dir.path(), "alpha").await;
    let again = LaneStack::bind(dir.path(), "lane", "alpha").await;
    assert!(matches!(again, Err(LaneError::InUse(_))), "{again:?}");
    let plain = dir.path().join("lane.file.uxd");
    std::fs::write(&plain, b"not a socket").expect("write");
    let err = LaneStack::bind(dir.path(), "lane", "file").await;
    assert!(matches!(err, Err(LaneError::Io { .. })), "{err:?}");
    assert_eq!(std::fs::read(&plain).expect("kept"), b"not a socket");
    drop(a);
    assert!(!path.exists(), "dropping the stack removes its socket");
}

#[tokio::test]
async fn missing_directory_is_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nested = dir.path().join("a/b");
    let a = LaneStack::bind(&nested, "cherry", "main")
        .await
        .expect("bind");
    assert!(a.path().ends_with("a/b/cherry.main.uxd"));
    assert!(a.path().is_absolute());
}

#[tokio::test]
async fn garbage_does_not_stop_the_stack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = pair(dir.path()).await;
    let rogue = StdDatagram::unbound().expect("socket");
    for junk in [
        &b""[..],
        b"garbage",
        b"ri RAET\nvn 0\nzz 1\n\n{}",
        b"ri RAET\nsn alpha\ndn beta\nbi 1\npn 0001\npc 0002\n\nxx",
        b"ri RAET\nsn alpha\ndn beta\n\n[1]",
        b"ri RAET\nsn alpha\ndn gamma\n\n{}",
        b"ri RAET\nsn ../x\ndn beta\n\n{}",
    ] {
        rogue.send_to(junk, b.path()).expect("send junk");
    }
    // From a named socket whose file name is not the claimed yard.
    let liar_path = dir.path().join("lane.mallory.uxd");
    let liar = StdDatagram::bind(&liar_path).expect("liar");
    liar.send_to(b"ri RAET\nsn alice\ndn beta\n\n{}", b.path())
        .expect("send");
    a.send("beta", &obj(json!({"after": "garbage"})))
        .await
        .expect("send");
    let (from, body) = b.recv().await.expect("still serving");
    assert_eq!(from, "alpha");
    assert_eq!(body, obj(json!({"after": "garbage"})));
    let stats = b.stats();
    assert_eq!(stats.get("invalid_page_header"), Some(&3), "{stats:?}");
    assert_eq!(stats.get("missed_page"), Some(&1), "{stats:?}");
    assert_eq!(stats.get("invalid_page_body"), Some(&1), "{stats:?}");
    assert_eq!(stats.get("invalid_destination"), Some(&1), "{stats:?}");
    assert_eq!(stats.get("invalid_source_yard"), Some(&2), "{stats:?}");
    assert_eq!(stats.get("received"), Some(&1), "{stats:?}");
}

#[tokio::test]
async fn restarted_yard_discards_its_stale_partial_book() {
    use raet::lane::page::{paginate, BookAddress, PackKind};
    let dir = tempfile::tempdir().expect("tempdir");
    let b = yard(dir.path(), "beta").await;
    // The first page of a 3-page book from "alpha", which then dies.
    let addr = BookAddress {
        sn: "alpha".into(),
        dn: "beta".into(),
        si: "000000000000000001".into(),
        bi: 1,
    };
    let pages = paginate(&addr, PackKind::Json, &blob(150_000)).expect("pages");
    assert_eq!(pages.len(), 3);
    let old = StdDatagram::bind(dir.path().join("lane.alpha.uxd")).expect("old alpha");
    old.send_to(&pages[0], b.path()).expect("first page");
    drop(old);
    // Restarted alpha: a new session; beta drops the stale book and serves it.
    let a = yard(dir.path(), "alpha").await;
    a.send("beta", &blob(100_000)).await.expect("send");
    assert_eq!(
        b.recv().await.expect("recv"),
        ("alpha".to_owned(), blob(100_000))
    );
    assert_eq!(b.stats().get("stale_book"), Some(&1));
    // The rest of the dead session's book is dropped, not delivered.
    let late = StdDatagram::unbound().expect("socket");
    late.send_to(&pages[1], b.path()).expect("late page");
    a.send("beta", &obj(json!({"after": "restart"})))
        .await
        .expect("send");
    assert_eq!(
        b.recv().await.expect("recv").1,
        obj(json!({"after": "restart"}))
    );
    assert_eq!(b.stats().get("missed_page"), Some(&1));
}

#[tokio::test]
async fn more_short_lived_yards_than_the_table_holds_are_all_heard() {
    // As Salt makes a yard per command (req<pid>x<n>): each sends once and exits.
    const YARDS: usize = 1030; // the remote-yard table holds 1024
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = yard(dir.path(), "manor").await;
    for n in 0..YARDS {
        let name = format!("req{n}");
        let client = yard(dir.path(), &name).await;
        client
            .send("manor", &obj(json!({ "n": n })))
            .await
            .expect("send");
        let (from, body) = within(hub.recv()).await.expect("recv");
        assert_eq!(
            (from.as_str(), body.get("n")),
            (name.as_str(), Some(&json!(n)))
        );
        if n + 1 == YARDS {
            // The hub still answers a yard it learnt after evicting others.
            hub.send(&name, &obj(json!({"reply": n})))
                .await
                .expect("reply");
            assert_eq!(client.recv().await.expect("reply").0, "manor");
        }
    }
    let stats = hub.stats();
    assert_eq!(stats.get("received"), Some(&(YARDS as u64)), "{stats:?}");
    assert_eq!(stats.get("yards_evicted"), Some(&6), "{stats:?}");
    assert_eq!(stats.get("invalid_source_yard"), None, "{stats:?}");
}

/// `what`'s outcome, failing the test if it takes more than 20 s.
async fn within<F: std::future::Future>(what: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), what)
        .await
        .expect("in time")
}

#[tokio::test]
async fn a_yard_that_never_reads_fails_sends_after_the_stall_limit_while_others_receive() {
    const LIMIT: Duration = Duration::from_millis(200);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = yard(dir.path(), "alpha").await;
    a.set_stall_limit(LIMIT);
    let other = yard(dir.path(), "gamma").await;
    // A hung process: its socket exists, nobody reads it.
    let stuck = StdDatagram::bind(dir.path().join("lane.stuck.uxd")).expect("bind stuck");
    let note = obj(json!({"to": "stuck"}));
    let mut taken = 0;
    let (err, waited) = loop {
        let started = std::time::Instant::now();
        match within(a.send("stuck", &note)).await {
            Ok(()) => taken += 1,
            Err(e) => break (e, started.elapsed()),
        }
        assert!(taken < 10_000, "the queue never filled");
    };
    assert!(
        matches!(&err, LaneError::QueueFull { yard, .. } if yard == "stuck"),
        "{err:?}"
    );
    assert!(
        waited >= LIMIT,
        "gave up after {waited:?}, before the limit"
    );
    // The sender moves on: another yard still gets its messages.
    a.send("gamma", &obj(json!({"n": 1}))).await.expect("send");
    assert_eq!(within(other.recv()).await.expect("recv").0, "alpha");
    // A yard known to be stuck is not waited for again, however long the limit.
    a.set_stall_limit(Duration::from_secs(3600));
    let again = within(a.send("stuck", &note)).await;
    assert!(
        matches!(again, Err(LaneError::QueueFull { .. })),
        "{again:?}"
    );
    // Once it reads, sends to it go through again.
    let mut buf = vec![0; 70_000];
    stuck.recv(&mut buf).expect("one page");
    within(a.send("stuck", &note)).await.expect("taken");
    stuck.set_nonblocking(true).expect("nonblocking");
    let queued = std::iter::from_fn(|| stuck.recv(&mut buf).ok()).count();
    assert_eq!(
        queued, taken,
        "every page taken is there, the last one included"
    );
    assert_eq!(a.stats().get("full_transmit_yard"), Some(&2));
}

#[tokio::test]
async fn packed_books_travel_in_large_pages_both_ways() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = pair(dir.path()).await;
    let packed: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let (sent, got) = tokio::join!(a.send_packed("beta", &packed), b.recv_any());
    sent.expect("send packed");
    assert_eq!(
        got.expect("recv"),
        ("alpha".to_owned(), raet::lane::Body::Packed(packed.clone()))
    );
    let b_stats = b.stats();
    assert_eq!(b_stats.get("received"), Some(&1));
    // A mapping receiver (`recv`) skips a packed book, counted, and takes the next mapping.
    b.send_packed("alpha", b"\x80").await.expect("send");
    let hello = obj(json!({"after": "packed"}));
    b.send("alpha", &hello).await.expect("send");
    assert_eq!(a.recv().await.expect("recv"), ("beta".to_owned(), hello));
    assert_eq!(a.stats().get("packed_dropped"), Some(&1));
}
