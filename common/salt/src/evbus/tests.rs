//! Tests of Salt's event bus framing and connection, against frames as Salt 3008 writes them.

use super::*;

use std::time::UNIX_EPOCH;

use serde_json::json;
use tokio::net::UnixListener;

const WAIT: Duration = Duration::from_secs(5);

fn map(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

#[test]
fn stamp_is_pythons_utc_isoformat() {
    let t = UNIX_EPOCH + Duration::new(1_795_383_043, 123_456_000);
    assert_eq!(stamp(t), "2026-11-22T21:30:43.123456+00:00");
    // Python leaves the fraction out when it is zero.
    assert_eq!(
        stamp(UNIX_EPOCH + Duration::from_secs(951_782_400)),
        "2000-02-29T00:00:00+00:00"
    );
    assert_eq!(stamp(UNIX_EPOCH), "1970-01-01T00:00:00+00:00");
    assert_eq!(
        stamp(UNIX_EPOCH + Duration::from_micros(7)),
        "1970-01-01T00:00:00.000007+00:00"
    );
}

#[test]
fn frame_bytes_are_salts() {
    let body = event_body(
        "salt/key",
        &json!({"act": "accept", "id": "m1", "result": true}),
    );
    assert!(body.starts_with(b"salt/key\n\n\x83\xa3act\xa6accept"));
    let frame = frame(&body);
    // 82 a4 "head" 80 a4 "body" c4 <len> <body>: as captured from Salt's publisher.
    let mut expected = b"\x82\xa4head\x80\xa4body\xc4".to_vec();
    expected.push(u8::try_from(body.len()).unwrap());
    expected.extend_from_slice(&body);
    assert_eq!(frame, expected);
    let pushed = push_frame(&body).unwrap();
    assert_eq!(
        pushed[..4],
        u32::try_from(frame.len()).unwrap().to_be_bytes()
    );
    assert_eq!(pushed[4..], frame[..]);
}

#[test]
fn bodies_parse_back() {
    let data = json!({"act": "pend", "id": "m1", "result": true, "n": [1, 2.5, null]});
    let event = parse_body(&event_body("salt/auth", &data)).unwrap();
    assert_eq!(event.tag, "salt/auth");
    assert_eq!(event.data, data);
    assert_eq!(parse_body(b"tag\n\n").unwrap().data, json!({}));
    assert!(matches!(
        parse_body(b"no separator"),
        Err(BusError::BadBody(_))
    ));
    assert!(matches!(
        parse_body(b"\xff\n\n\x80"),
        Err(BusError::BadBody(_))
    ));
    assert!(matches!(
        parse_body(b"t\n\n\xc1"),
        Err(BusError::BadData { .. })
    ));
    // The tag is read without decoding the data (events are filtered by tag first).
    assert_eq!(split_body(b"t/x\n\n\xc1").unwrap(), ("t/x", &b"\xc1"[..]));
}

#[test]
fn decoder_waits_for_partial_frames_and_splits_streams() {
    let a = frame(b"one\n\n\x80");
    let b = frame(&event_body("two", &json!({"x": "y".repeat(300)})));
    let stream = [a.clone(), b.clone()].concat();
    let mut decoder = FrameDecoder::new();
    let mut bodies = Vec::new();
    for byte in &stream {
        decoder.feed(std::slice::from_ref(byte));
        while let Some(body) = decoder.next_body().unwrap() {
            bodies.push(body);
        }
    }
    assert_eq!(
        bodies,
        vec![parse_frame(&a).unwrap(), parse_frame(&b).unwrap()]
    );
    assert_eq!(decoder.buffered(), 0);
}

#[test]
fn garbage_is_a_typed_error() {
    for bad in [
        &b"\xc1"[..],
        b"\x05",
        b"\xa3abc",
        b"\x81\xa4head\x80",
        b"\x81\xa4body\x05",
    ] {
        let mut decoder = FrameDecoder::new();
        decoder.feed(bad);
        assert!(
            matches!(decoder.next_body(), Err(BusError::Garbage(_))),
            "{bad:?}"
        );
    }
    assert!(matches!(
        parse_frame(&frame(b"x")[1..]),
        Err(BusError::Garbage(_))
    ));
    let mut two = frame(b"x");
    two.push(0x80);
    assert!(matches!(parse_frame(&two), Err(BusError::Garbage(_))));
}

#[test]
fn a_frame_announcing_more_than_max_frame_is_too_large_at_once() {
    // bin32 announcing 4 GiB: refused from its header, nothing more is waited for.
    let mut decoder = FrameDecoder::new();
    decoder.feed(b"\x81\xa4body\xc6\xff\xff");
    assert!(
        decoder.next_body().unwrap().is_none(),
        "length not read yet"
    );
    decoder.feed(b"\xff\xff");
    assert!(matches!(decoder.next_body(), Err(BusError::TooLarge)));
    // A map announcing more items than MAX_FRAME bytes could hold.
    let mut decoder = FrameDecoder::new();
    decoder.feed(b"\xdf\xff\xff\xff\xff\x00");
    assert!(matches!(decoder.next_body(), Err(BusError::TooLarge)));
}

#[test]
fn a_big_frame_is_waited_for_from_its_header_and_decoded_once() {
    let body = event_body("big", &json!({"blob": "b".repeat(4 << 20)}));
    let stream = [frame(&body), frame(b"next\n\n\x80")].concat();
    let total = frame(&body).len();
    let mut decoder = FrameDecoder::new();
    let mut chunks = stream.chunks(64 * 1024);
    decoder.feed(chunks.next().unwrap());
    assert!(decoder.next_body().unwrap().is_none());
    // The whole frame's size is known from its first bytes (the body's bin32 header).
    assert_eq!(decoder.wanted(), total);
    let mut bodies = Vec::new();
    for chunk in chunks {
        decoder.feed(chunk);
        while let Some(body) = decoder.next_body().unwrap() {
            bodies.push(body);
        }
        if bodies.is_empty() {
            assert_eq!(
                decoder.wanted(),
                total,
                "not rescanned before it is all there"
            );
        }
    }
    assert_eq!(bodies, vec![body, b"next\n\n\x80".to_vec()]);
    assert_eq!((decoder.buffered(), decoder.wanted()), (0, 0));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn event() -> impl Strategy<Value = (String, Map<String, Value>)> {
        (
            "[a-z/_0-9]{1,30}",
            proptest::collection::btree_map("[a-z_]{1,8}", ".{0,40}", 0..6),
        )
            .prop_map(|(tag, m)| {
                let data = m.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
                (tag, data)
            })
    }

    proptest! {
        #[test]
        fn framing_round_trips_through_any_split(
            events in proptest::collection::vec(event(), 1..5),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let stream: Vec<u8> = events
                .iter()
                .flat_map(|(tag, data)| frame(&event_body(tag, &Value::Object(data.clone()))))
                .collect();
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len())).collect();
            points.push(stream.len());
            points.sort_unstable();
            let mut decoder = FrameDecoder::new();
            let mut got = Vec::new();
            let mut from = 0;
            for to in points {
                decoder.feed(&stream[from..to]);
                from = to;
                while let Some(body) = decoder.next_body().unwrap() {
                    got.push(parse_body(&body).unwrap());
                }
            }
            let want: Vec<BusEvent> = events
                .into_iter()
                .map(|(tag, data)| BusEvent { tag, data: Value::Object(data) })
                .collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(decoder.buffered(), 0);
        }

        #[test]
        fn any_msgpack_value_is_sized_exactly_and_its_prefixes_are_incomplete(
            data in proptest::collection::btree_map("[a-z_]{1,8}", prop_oneof![
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                ".{0,300}".prop_map(Value::from),
                proptest::collection::vec(any::<u32>(), 0..40).prop_map(Value::from),
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
            ], 0..20),
            bin in proptest::collection::vec(any::<u8>(), 0..70_000),
        ) {
            let data = Value::Object(data.into_iter().collect());
            for packed in [rmp_serde::to_vec_named(&data).unwrap(), frame(&bin)] {
                prop_assert_eq!(scan_value(&packed).unwrap(), Scan::Complete(packed.len()));
                let longer = [packed.clone(), vec![0xc0; 3]].concat();
                prop_assert_eq!(scan_value(&longer).unwrap(), Scan::Complete(packed.len()));
                for cut in [0, 1, packed.len() / 2, packed.len().saturating_sub(1)] {
                    if cut < packed.len() {
                        match scan_value(&packed[..cut]).unwrap() {
                            Scan::Incomplete(need) => prop_assert!(need > cut && need <= packed.len()),
                            other => prop_assert!(false, "cut at {}: {:?}", cut, other),
                        }
                    }
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(chunks in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..64), 1..8)) {
            let mut decoder = FrameDecoder::new();
            'feed: for chunk in &chunks {
                decoder.feed(chunk);
                loop {
                    match decoder.next_body() {
                        Ok(Some(body)) => { let _ = parse_body(&body); }
                        Ok(None) => break,
                        Err(_) => break 'feed,
                    }
                }
            }
            let _ = parse_frame(&chunks.concat());
            let _ = parse_body(&chunks.concat());
        }
    }
}

/// Waits (bounded) until the bus counters satisfy `cond`.
async fn stats_until(bus: &EventBus, cond: impl Fn(&BusStats) -> bool) -> BusStats {
    let mut watch = bus.watch_stats();
    let got = tokio::time::timeout(WAIT, watch.wait_for(|s| cond(s)))
        .await
        .expect("bus counters in time")
        .expect("bus alive")
        .clone();
    got
}

async fn read_push(conn: &mut UnixStream) -> BusEvent {
    let mut len = [0u8; 4];
    tokio::time::timeout(WAIT, conn.read_exact(&mut len))
        .await
        .unwrap()
        .unwrap();
    let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
    tokio::time::timeout(WAIT, conn.read_exact(&mut frame))
        .await
        .unwrap()
        .unwrap();
    parse_body(&parse_frame(&frame).unwrap()).unwrap()
}

#[tokio::test]
async fn fires_into_a_listening_pull_socket() {
    let dir = tempfile::tempdir().unwrap();
    let listener = UnixListener::bind(dir.path().join(PULL_SOCKET)).unwrap();
    let (bus, _events) = EventBus::spawn(dir.path(), &[]);
    bus.fire(
        "salt/auth",
        map(json!({"result": true, "act": "pend", "id": "m1"})),
    );
    bus.fire(
        "salt/auth",
        map(json!({"result": false, "act": "reject", "id": "m2"})),
    );
    let (mut conn, _) = tokio::time::timeout(WAIT, listener.accept())
        .await
        .unwrap()
        .unwrap();
    let first = read_push(&mut conn).await;
    assert_eq!(first.tag, "salt/auth");
    assert_eq!(first.data["act"], "pend");
    assert_eq!(first.data["id"], "m1");
    let stamp = first.data["_stamp"].as_str().unwrap();
    assert!(stamp.ends_with("+00:00") && stamp.len() >= 25, "{stamp}");
    assert_eq!(read_push(&mut conn).await.data["result"], false);
    let stats = stats_until(&bus, |s| s.published == 2).await;
    assert!(stats.publishing && stats.dropped == 0, "{stats:?}");
}

#[tokio::test]
async fn an_absent_bus_drops_events_and_backs_off() {
    let dir = tempfile::tempdir().unwrap();
    let (bus, _events) = EventBus::spawn(dir.path(), &[]);
    bus.fire("salt/auth", Map::new());
    let stats = stats_until(&bus, |s| s.dropped == 1).await;
    assert_eq!(stats.connect_failures, 1);
    // Within the backoff no new connection is tried: dropped at once.
    bus.fire("salt/auth", Map::new());
    let stats = stats_until(&bus, |s| s.dropped == 2).await;
    assert_eq!(stats.connect_failures, 1, "{stats:?}");
    assert_eq!(stats.published, 0);
}

#[tokio::test]
async fn subscribes_filters_and_reconnects_after_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let listener = UnixListener::bind(dir.path().join(PUB_SOCKET)).unwrap();
    let (bus, mut events) = EventBus::spawn(dir.path(), &["salt/key"]);
    let (mut conn, _) = tokio::time::timeout(WAIT, listener.accept())
        .await
        .unwrap()
        .unwrap();
    let job = frame(&event_body("salt/job/1/ret/m1", &json!({"return": true})));
    let key = frame(&event_body(
        "salt/key",
        &json!({"act": "accept", "id": "m1"}),
    ));
    let stream = [job, key].concat();
    let (a, b) = stream.split_at(stream.len() - 7);
    conn.write_all(a).await.unwrap();
    conn.write_all(b).await.unwrap();
    let got = tokio::time::timeout(WAIT, events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.tag, "salt/key");
    assert_eq!(got.data["act"], "accept");
    let stats = stats_until(&bus, |s| s.received == 1).await;
    assert!(stats.subscribed, "{stats:?}");

    conn.write_all(b"\xc1garbage").await.unwrap();
    stats_until(&bus, |s| s.garbage == 1).await;
    // It reconnects and reads the new stream.
    let (mut conn, _) = tokio::time::timeout(WAIT, listener.accept())
        .await
        .unwrap()
        .unwrap();
    let del = frame(&event_body(
        "salt/key",
        &json!({"act": "delete", "id": "m2"}),
    ));
    conn.write_all(&del).await.unwrap();
    let got = tokio::time::timeout(WAIT, events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.data["id"], "m2");
}
