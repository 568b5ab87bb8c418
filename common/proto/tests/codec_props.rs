//! Property tests of the packet codec: head round trips in both head kinds,
//! no panic on arbitrary input, segmentation/reassembly round trips, JSON
//! body round trips.

use proptest::prelude::*;
use raet_proto::crypto::Signer;
use raet_proto::packet::{
    self, body, BodyKind, CoatKind, Flags, FootKind, Head, HeadKind, PacketError, PacketKind,
    Reassembler, Segmenter, TransactionKind, MAX_HEAD_SIZE, MAX_PACKET_SIZE,
};
use serde_json::{Map, Value};

fn signer() -> Signer {
    Signer::from_seed(&[42; 32])
}

fn kind<K: Copy + std::fmt::Debug + 'static>(all: &'static [K]) -> impl Strategy<Value = K> {
    proptest::sample::select(all)
}

/// u32 values biased to the defaults and to small numbers, so that most heads fit.
fn num() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), Just(1u32), 0u32..0x100, any::<u32>()]
}

fn head_strategy() -> impl Strategy<Value = Head> {
    let kinds = (
        kind(&[HeadKind::Raet, HeadKind::Json]),
        kind(&[
            PacketKind::Message,
            PacketKind::Ack,
            PacketKind::Nack,
            PacketKind::Resend,
            PacketKind::Request,
            PacketKind::Response,
            PacketKind::Hello,
            PacketKind::Cookie,
            PacketKind::Initiate,
            PacketKind::Unjoined,
            PacketKind::Unallowed,
            PacketKind::Renew,
            PacketKind::Refuse,
            PacketKind::Reject,
            PacketKind::Pend,
            PacketKind::Done,
            PacketKind::Unknown,
        ]),
        kind(&[
            TransactionKind::Message,
            TransactionKind::Join,
            TransactionKind::Bind,
            TransactionKind::Allow,
            TransactionKind::Alive,
            TransactionKind::Unknown,
        ]),
        kind(&[
            BodyKind::Nada,
            BodyKind::Json,
            BodyKind::Raw,
            BodyKind::Msgpack,
            BodyKind::Unknown,
        ]),
        kind(&[
            CoatKind::Nada,
            CoatKind::Nacl,
            CoatKind::Crc16,
            CoatKind::Crc64,
            CoatKind::Unknown,
        ]),
    );
    let ids = (num(), num(), num(), num(), num(), num(), num(), num());
    // dt: multiples of 1/64 print exactly with six decimals and in repr form.
    let dt = prop_oneof![
        Just(0.0f64),
        (-100_000i64..100_000).prop_map(|k| k as f64 / 64.0)
    ];
    (kinds, ids, dt, any::<u8>()).prop_map(
        |((hk, pk, tk, bk, ck), (se, de, si, ti, oi, sn, sc, ml), dt, fg)| Head {
            hk,
            pk,
            tk,
            bk,
            ck,
            se,
            de,
            si,
            ti,
            oi,
            sn,
            sc,
            ml,
            dt,
            fg: Flags(fg),
            ..Head::default()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// pack -> parse gives back the head (with pl, hl, fk, fl filled in), in both head kinds.
    #[test]
    fn head_round_trips(head in head_strategy(), coat in proptest::collection::vec(any::<u8>(), 0..300), signed in any::<bool>()) {
        let s = signer();
        let bytes = match packet::pack(&head, &coat, signed.then_some(&s)) {
            Ok(bytes) => bytes,
            Err(e) => {
                // Only refusal: a head over MAX_HEAD_SIZE.
                prop_assert_eq!(e, PacketError::HeadTooLong);
                let mut scratch = Vec::new();
                prop_assert!(head.encode_into(0, &mut scratch).is_err());
                return Ok(());
            }
        };
        let rx = packet::parse(&bytes).expect("our own datagram parses");
        let mut want = head.clone();
        want.hl = rx.head.hl;
        want.pl = bytes.len();
        (want.fk, want.fl) = if signed { (FootKind::Nacl, 64) } else { (FootKind::Nada, 0) };
        prop_assert_eq!(&rx.head, &want);
        prop_assert!(rx.head.hl <= MAX_HEAD_SIZE);
        prop_assert_eq!(rx.coat, &coat[..]);
        prop_assert_eq!(rx.verify(&s.verify_key()), Ok(()));
        // Re-encoding the parsed head is byte-identical.
        prop_assert_eq!(packet::pack(&rx.head, rx.coat, signed.then_some(&s)).unwrap(), bytes);
    }

    /// Arbitrary bytes never panic, whatever the prefix.
    #[test]
    fn parse_never_panics(
        prefix in prop_oneof![Just(&b""[..]), Just(&b"ri RAET\n"[..]), Just(&b"{\"ri\":\"RAET\","[..])],
        tail in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut bytes = prefix.to_vec();
        bytes.extend_from_slice(&tail);
        if let Ok(rx) = packet::parse(&bytes) {
            let _ = rx.verify(&signer().verify_key());
            let _ = body::decode(rx.head.bk, rx.coat);
        }
        let _ = body::decode_json(&tail);
        let _ = body::decode_msgpack(&tail);
    }

    /// Mutating one byte of a valid datagram never panics and never verifies.
    #[test]
    fn mutated_datagrams_are_refused_cleanly(head in head_strategy(), at in any::<prop::sample::Index>(), xor in 1u8..=255) {
        let s = signer();
        let Ok(mut bytes) = packet::pack(&head, b"coat bytes", Some(&s)) else { return Ok(()); };
        let i = at.index(bytes.len());
        bytes[i] ^= xor;
        if let Ok(rx) = packet::parse(&bytes) {
            if rx.is_signed() {
                prop_assert_eq!(rx.verify(&s.verify_key()), Err(PacketError::BadSignature));
            }
        }
    }

    /// JSON bodies: encode -> decode is the identity, output is pure ASCII.
    #[test]
    fn json_bodies_round_trip(map in json_object()) {
        let bytes = body::encode_json(&map);
        prop_assert!(bytes.is_ascii());
        prop_assert_eq!(bytes.is_empty(), map.is_empty());
        prop_assert_eq!(body::decode_json(&bytes).unwrap(), map);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Segment (reference formula), shuffle and duplicate, parse, reassemble.
    #[test]
    fn segments_reassemble_in_any_order(
        len in prop_oneof![0usize..2_000, 2_000usize..300_000],
        hk in kind(&[HeadKind::Raet, HeadKind::Json]),
        ti in num(),
        seed in any::<u64>(),
    ) {
        let s = signer();
        let template = Head { hk, se: 2, de: 3, si: 4, ti, bk: BodyKind::Json, ck: CoatKind::Nacl, ..Head::default() };
        let coat: Vec<u8> = (0..len).map(|i| (i as u64).wrapping_mul(seed | 1).to_le_bytes()[3]).collect();
        let seg = Segmenter::new(&template, coat.len()).unwrap();
        let mut grams: Vec<Vec<u8>> = (0..seg.count())
            .map(|sn| {
                let mut gram = seg.pack_segment(&template, &coat, sn, Flags(0)).unwrap();
                packet::sign_foot(&mut gram, &s);
                gram
            })
            .collect();
        for g in &grams {
            prop_assert!(g.len() <= MAX_PACKET_SIZE);
        }
        // Deterministic shuffle plus a few duplicates.
        let n = grams.len();
        for i in (1..n).rev() {
            grams.swap(i, (seed.rotate_left(i as u32) as usize) % (i + 1));
        }
        let dups: Vec<Vec<u8>> = grams.iter().step_by(7).cloned().collect();
        grams.extend(dups);
        let first = packet::parse(&grams[0]).unwrap().head;
        if seg.count() == 1 {
            prop_assert_eq!(grams.len(), 2);
            prop_assert_eq!(packet::parse(&grams[0]).unwrap().coat, &coat[..]);
            prop_assert!(!first.fg.has(Flags::SF));
            return Ok(());
        }
        let mut tray = Reassembler::new(first.sc, first.ml).unwrap();
        let mut new = 0;
        for g in &grams {
            let rx = packet::parse(g).unwrap();
            prop_assert_eq!(rx.verify(&s.verify_key()), Ok(()));
            prop_assert!(rx.head.fg.has(Flags::SF));
            prop_assert_eq!((rx.head.sc, rx.head.ml as usize), (seg.count(), len));
            if tray.insert(rx.head.sn, rx.coat).unwrap() {
                new += 1;
            }
        }
        prop_assert_eq!(new, seg.count());
        prop_assert!(tray.is_complete());
        prop_assert!(tray.missing().is_empty());
        prop_assert_eq!(tray.assemble().unwrap(), coat);
    }
}

proptest! {
    /// The missing segments from a point are those of the whole list from there.
    #[test]
    fn missing_from_is_the_tail_of_missing(
        present in proptest::collection::vec(any::<bool>(), 1..200),
        from in 0u32..220,
    ) {
        let sc = present.len() as u32;
        let mut tray = Reassembler::new(sc, sc * 1_000).unwrap();
        for (sn, _) in present.iter().enumerate().filter(|(_, p)| **p) {
            tray.insert(sn as u32, &[0; 1_000]).unwrap();
        }
        let tail: Vec<u32> = tray.missing().into_iter().filter(|&sn| sn >= from).collect();
        prop_assert_eq!(tray.missing_from(from), tail);
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Finite floats whose repr round-trips through serde_json's parser.
        (-1_000_000i64..1_000_000, -30i32..30)
            .prop_map(|(m, e)| Value::from(m as f64 * 2f64.powi(e))),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::vec((any::<String>(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Map<String, Value>> {
    proptest::collection::vec((any::<String>(), json_value()), 0..8)
        .prop_map(|kv| kv.into_iter().collect())
}
