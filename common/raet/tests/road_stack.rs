//! `RoadStack` over real loopback UDP: two stacks join, exchange messages,
//! survive garbage, and fail in bounded time when the peer disappears.
//! No sleeps: every wait is on a future, with `tokio::time::timeout` only as
//! a guard against hanging. A keep that fails does not stop the stack.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use raet::keep::{AutoMode, DirKeep, Keep, MemKeep};
use raet::road::{Event, Presence, Profile, RoadConfig, Uid};
use raet::stack::{RoadStack, StackError};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

/// Guard for any single wait: generous, so only a real hang trips it.
const GUARD: Duration = Duration::from_secs(20);

async fn guard<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(GUARD, fut).await {
        Ok(value) => value,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

fn config(name: &str, main: bool) -> RoadConfig {
    let mut config = RoadConfig::new(name, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    config.main = main;
    config.auto = AutoMode::Always;
    config
}

async fn bind(config: RoadConfig) -> RoadStack {
    RoadStack::bind(config, None, Box::new(MemKeep::new()))
        .await
        .expect("bind")
}

async fn stack(name: &str, main: bool) -> RoadStack {
    bind(config(name, main)).await
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn blob(size: usize) -> Map<String, Value> {
    object(json!({"blob": "y".repeat(size), "size": size}))
}

/// Waits for the first event matching `wanted`.
async fn wait_event(
    events: &mut mpsc::UnboundedReceiver<Event>,
    what: &str,
    wanted: impl Fn(&Event) -> bool,
) -> Event {
    guard(what, async {
        loop {
            match events.recv().await {
                Some(event) if wanted(&event) => return event,
                Some(_) => {}
                None => panic!("events closed before {what}"),
            }
        }
    })
    .await
}

/// Stacks "main" and "minion", the minion joined and allowed: with main's uid at the minion
/// and the minion's at main.
async fn joined_pair() -> (RoadStack, RoadStack, Uid, Uid) {
    let main = stack("main", true).await;
    let minion = stack("minion", false).await;
    let mut main_events = main.events();

    let main_uid = guard("join", minion.join(main.local_addr()))
        .await
        .expect("join");
    let allowed = wait_event(
        &mut main_events,
        "main sees minion allowed",
        |e| matches!(e, Event::Allowed { name, .. } if name == "minion"),
    )
    .await;
    let Event::Allowed {
        uid: minion_uid, ..
    } = allowed
    else {
        unreachable!()
    };
    (main, minion, main_uid, minion_uid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_then_small_and_large_messages_both_ways() {
    let (main, minion, main_uid, minion_uid) = joined_pair().await;
    let remotes = guard("remotes", minion.remotes()).await;
    let status = remotes
        .iter()
        .find(|r| r.uid == main_uid)
        .expect("main is a remote");
    assert_eq!(status.name, "main");
    assert_eq!(status.allowed, Some(true));

    for (from, to, receiver, from_name, body) in [
        (
            &minion,
            main_uid,
            &main,
            "minion",
            object(json!({"n": 1, "text": "hi main"})),
        ),
        (
            &main,
            minion_uid,
            &minion,
            "main",
            object(json!({"n": 2, "text": "hi minion"})),
        ),
        (&minion, main_uid, &main, "minion", blob(1_000_000)),
        (&main, minion_uid, &minion, "main", blob(1_000_000)),
    ] {
        let (sent, got) = guard("message", async {
            tokio::join!(from.transmit(to, body.clone()), receiver.recv())
        })
        .await;
        sent.expect("transmit acknowledged");
        let (name, _uid, got) = got.expect("message received");
        assert_eq!(name, from_name);
        assert_eq!(got, body, "message from {from_name} intact");
    }

    main.shutdown().await;
    minion.shutdown().await;
}

/// A publication of large messages to several peers at once: their signatures (compatible
/// profile) or seals (fast) are finished on every core, and every copy arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_is_signed_or_sealed_on_every_core_and_arrives_whole() {
    for profile in [Profile::Compat, Profile::Fast] {
        let profiled = |name: &str, main: bool| {
            let mut config = config(name, main);
            config.profile = profile;
            bind(config)
        };
        let main = profiled("main", true).await;
        let mut minions = Vec::new();
        for i in 0..4 {
            let minion = profiled(&format!("minion{i}"), false).await;
            guard("join", minion.join(main.local_addr()))
                .await
                .expect("join");
            minions.push(minion);
        }
        let body = blob(300_000);
        let uids: Vec<Uid> = guard("remotes", main.remotes())
            .await
            .iter()
            .map(|r| r.uid)
            .collect();
        assert_eq!(uids.len(), minions.len());
        let sends: Vec<_> = uids
            .iter()
            .map(|&uid| main.transmit(uid, body.clone()))
            .collect();
        for minion in &minions {
            let (name, _, got) = guard("fan-out", minion.recv()).await.expect("received");
            assert_eq!((name.as_str(), &got), ("main", &body), "{profile:?}");
        }
        for sent in sends {
            guard("acknowledged", sent).await.expect("delivered");
        }
        let stats = guard("stats", main.stats()).await;
        assert!(
            stats.get("parallel_batches").copied().unwrap_or(0) > 0,
            "{profile:?}: no batch finished on every core: {stats:?}"
        );
        main.shutdown().await;
        for minion in minions {
            minion.shutdown().await;
        }
    }
}

/// A subscriber has the event that completes a request queued by the time the request is
/// answered (`raet road` prints a rejection it stops on: a CI run once lost it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_completing_a_join_is_queued_before_the_join_returns() {
    for round in 0..20 {
        let main = stack("main", true).await;
        let minion = stack("minion", false).await;
        let mut events = minion.events();
        let uid = guard("join", minion.join(main.local_addr()))
            .await
            .expect("join");
        let mut queued = Vec::new();
        while let Ok(event) = events.try_recv() {
            queued.push(event);
        }
        assert!(
            queued
                .iter()
                .any(|e| matches!(e, Event::Allowed { uid: u, .. } if *u == uid)),
            "round {round}: no Allowed queued when the join returned: {queued:?}"
        );
        minion.shutdown().await;
        main.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_events_reach_subscribers() {
    let main = stack("main", true).await;
    let minion = stack("minion", false).await;
    let mut main_events = main.events();
    let mut minion_events = minion.events();

    let main_uid = guard("join", minion.join(main.local_addr()))
        .await
        .expect("join");
    wait_event(
        &mut minion_events,
        "minion: main joined",
        |e| matches!(e, Event::Joined { uid, .. } if *uid == main_uid),
    )
    .await;
    wait_event(&mut main_events, "main: minion alive", |e| {
        matches!(e, Event::Presence { name, presence: Presence::Alive, .. } if name == "minion")
    })
    .await;
    main.shutdown().await;
    minion.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_datagrams_do_not_stop_the_stack() {
    let main = stack("main", true).await;
    let minion = stack("minion", false).await;
    let main_uid = guard("join", minion.join(main.local_addr()))
        .await
        .expect("join");

    let junk = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind junk socket");
    let garbage: [&[u8]; 5] = [
        b"",
        b"\x00\xff\x13garbage",
        b"ri RAET\nvn 0\npk 0\npl ffff\nhl 20\n\n",
        b"{\"ri\":\"RAET\",\"pl\":9999999}\r\n\r\n",
        &[0xAA; 1500],
    ];
    for datagram in garbage {
        junk.send_to(datagram, main.local_addr())
            .expect("send garbage");
    }
    let body = object(json!({"after": "garbage"}));
    let (sent, got) = guard("message after garbage", async {
        tokio::join!(minion.transmit(main_uid, body.clone()), main.recv())
    })
    .await;
    sent.expect("transmit after garbage");
    assert_eq!(got.expect("received").2, body);
    main.shutdown().await;
    minion.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transmit_to_a_vanished_peer_fails_in_bounded_time() {
    let main = stack("main", true).await;
    let mut quick = config("minion", false);
    quick.timers.message_timeout = Duration::from_secs(2);
    let minion = bind(quick).await;
    let main_uid = guard("join", minion.join(main.local_addr()))
        .await
        .expect("join");
    main.shutdown().await;

    let result = guard(
        "the message to fail",
        minion.transmit(main_uid, object(json!({"to": "nobody"}))),
    )
    .await;
    assert!(
        matches!(result, Err(StackError::SendFailed { uid, .. }) if uid == main_uid),
        "{result:?}"
    );
    minion.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_fails_pending_requests_and_later_calls() {
    let lonely = stack("lonely", false).await;
    let nobody = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let handle = lonely.clone();
    let join = tokio::spawn(async move { handle.join(nobody.local_addr().expect("addr")).await });
    let later = lonely.clone();
    lonely.shutdown().await;
    let result = guard("join to fail", join).await.expect("join task");
    assert!(matches!(result, Err(StackError::Closed)), "{result:?}");
    assert!(matches!(later.accept("x").await, Err(StackError::Closed)));
    assert!(later.recv().await.is_none());
    assert!(later.remotes().await.is_empty());
}

/// A keep that cannot be written any more (its `remote/` directory replaced by a file after
/// the bind, which stops root too): the stack's writes fail on its keep thread, are counted
/// as `keep_error`, and the road goes on (joins, messages); what can be written still is (the
/// local estate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_keep_is_counted_and_the_road_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keep = DirKeep::open(dir.path()).expect("open");
    let main = stack("main", true).await;
    let minion = RoadStack::bind(config("minion", false), None, Box::new(keep.clone()))
        .await
        .expect("bind");
    // Broken after the snapshot was read at bind.
    let remote = dir.path().join("remote");
    std::fs::remove_dir(&remote).expect("rmdir");
    std::fs::write(&remote, b"not a directory").expect("write");
    let uid = guard("join", minion.join(main.local_addr()))
        .await
        .expect("join despite the keep");
    let (sent, got) = guard("message", async {
        tokio::join!(minion.transmit(uid, blob(10)), main.recv())
    })
    .await;
    sent.expect("delivered");
    assert!(got.is_some());
    // The writes fail on the keep thread, a moment after the road emitted them.
    guard("keep_error counted", async {
        while !minion.stats().await.contains_key("keep_error") {
            tokio::task::yield_now().await;
        }
    })
    .await;
    minion.shutdown().await;
    assert_eq!(
        keep.load_local().expect("local").map(|l| l.name),
        Some("minion".to_owned()),
        "the local estate was written before the shutdown returned"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_bodies_arrive_untouched_and_mapping_receivers_refuse_them() {
    let (main, minion, main_uid, _) = joined_pair().await;
    // 1 MB of bytes that are neither JSON nor msgpack (many segments).
    let bytes: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    // Queued at the call; acknowledged once the receiver took it.
    let sending = minion.transmit_raw(main_uid, bytes.clone().into());
    let got = guard("raw message", main.recv_any_receipted()).await;
    let ((name, _uid, body), receipt) = got.expect("received");
    assert_eq!(name, "minion");
    assert_eq!(body, raet::stack::Body::Raw(bytes));
    if let Some(receipt) = receipt {
        main.taken(receipt);
    }
    let sent = guard("raw acknowledged", sending).await;
    sent.expect("raw transmit acknowledged");
    // A receiver of mappings (`recv`) refuses a raw body: the sender's transmit fails, and
    // the next mapping still comes through.
    let receiver = main.clone();
    let mapping = tokio::spawn(async move { receiver.recv().await });
    let refused = guard(
        "refused raw",
        minion.transmit_raw(main_uid, vec![1, 2].into()),
    )
    .await;
    let after = object(json!({"after": true}));
    let sent = minion.transmit(main_uid, after.clone());
    let got = guard("mapping", mapping)
        .await
        .expect("task")
        .expect("mapping");
    assert_eq!(got.2, after);
    guard("mapping acknowledged", sent)
        .await
        .expect("acknowledged");
    assert!(
        refused.is_err(),
        "a raw body refused by the application fails"
    );
    main.shutdown().await;
    minion.shutdown().await;
}
