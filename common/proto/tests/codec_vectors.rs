//! The packet codec and crypto against real datagrams of the reference
//! implementation (`tests/data/raet-capture`: 112 datagrams of raet 0.6.8 with
//! every long-term and short-term secret of the throw-away test stacks).
//!
//! For every datagram: parse, re-encode byte for byte (head and, since ed25519
//! is deterministic, the signature too), verify the foot with the sender's key,
//! open the Allow boxes, learn the session keys from them, decrypt the coats,
//! decode the bodies and re-encode them byte for byte, reassemble and
//! re-segment the segmented messages.

use std::collections::HashMap;

use raet_proto::crypto::{PrivateKey, PublicKey, SharedBox, Signer, VerifyKey};
use raet_proto::packet::{
    self, body, BodyKind, CoatKind, Flags, FootKind, Head, HeadKind, PacketError, PacketKind,
    Reassembler, Segmenter, TransactionKind,
};
use serde_json::Value;

const DATAGRAMS: &str = include_str!("data/raet-capture/datagrams.jsonl");
const KEYS: &str = include_str!("data/raet-capture/keys.json");

struct Capture {
    scenario: String,
    seq: u64,
    src: String,
    src_port: u16,
    dst_port: u16,
    bytes: Vec<u8>,
}

struct Stack {
    name: String,
    port: u16,
    instance: u64,
    signer: Signer,
    verify: VerifyKey,
    private: PrivateKey,
}

struct Keys {
    stacks: Vec<Stack>,
    short: Vec<PrivateKey>,
}

fn port(v: &Value) -> u16 {
    v[1].as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .expect("port")
}

fn captures() -> Vec<Capture> {
    DATAGRAMS
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("jsonl line");
            Capture {
                scenario: v["scenario"].as_str().expect("scenario").to_owned(),
                seq: v["seq"].as_u64().expect("seq"),
                src: v["src"].as_str().expect("src").to_owned(),
                src_port: port(&v["src_ha"]),
                dst_port: port(&v["dst_ha"]),
                bytes: hex::decode(v["hex"].as_str().expect("hex")).expect("hex payload"),
            }
        })
        .collect()
}

fn key32(v: &Value) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex::decode_to_slice(v.as_str().expect("hex key"), &mut out).expect("32-byte key");
    out
}

fn keys() -> Keys {
    let v: Value = serde_json::from_str(KEYS).expect("keys.json");
    let stacks = v["stacks"]
        .as_array()
        .expect("stacks")
        .iter()
        .map(|s| {
            let signer = Signer::from_seed(&key32(&s["sighex"]));
            let private = PrivateKey::from_bytes(&key32(&s["prihex"]));
            // The recorded public halves must be what our crypto derives.
            assert_eq!(signer.verify_key().to_hex(), s["verhex"].as_str().unwrap());
            assert_eq!(private.public_key().to_hex(), s["pubhex"].as_str().unwrap());
            Stack {
                name: s["name"].as_str().expect("name").to_owned(),
                port: s["port"]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .expect("port"),
                instance: s["instance"].as_u64().expect("instance"),
                verify: signer.verify_key(),
                signer,
                private,
            }
        })
        .collect();
    let short = v["short"]
        .as_array()
        .expect("short")
        .iter()
        .map(|k| PrivateKey::from_bytes(&key32(k)))
        .collect();
    Keys { stacks, short }
}

impl Keys {
    /// The stack listening on `port` in `scenario`: two stacks named beta share
    /// a port; the second instance is the one that lost its keep in S5.
    fn at(&self, port: u16, scenario: &str) -> &Stack {
        let mut found = self.stacks.iter().filter(|s| s.port == port);
        let first = found.next().expect("stack for port");
        match found.next() {
            Some(second) if scenario.starts_with("S5") => second,
            _ => first,
        }
    }

    fn sender(&self, c: &Capture) -> &Stack {
        let s = self.at(c.src_port, &c.scenario);
        assert_eq!(s.name, c.src);
        s
    }

    fn short_for(&self, public: &[u8]) -> &PrivateKey {
        self.short
            .iter()
            .find(|k| k.public_key().as_bytes() == public)
            .expect("short-term secret recorded for this public key")
    }
}

fn by_seq(caps: &[Capture], seq: u64) -> &Capture {
    caps.iter().find(|c| c.seq == seq).expect("seq present")
}

#[test]
fn capture_is_complete() {
    let caps = captures();
    assert_eq!(caps.len(), 112);
    let k = keys();
    assert_eq!(k.stacks.len(), 11);
    assert_eq!(
        k.stacks
            .iter()
            .filter(|s| s.name == "beta")
            .map(|s| s.instance)
            .collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(k.short.len(), 15);
}

#[test]
fn every_datagram_parses_and_reencodes_byte_for_byte() {
    let caps = captures();
    let k = keys();
    let mut json_heads = 0;
    for c in &caps {
        let rx = packet::parse(&c.bytes).unwrap_or_else(|e| panic!("#{} parse: {e}", c.seq));
        let h = &rx.head;
        assert_eq!(h.pl, c.bytes.len(), "#{}", c.seq);
        let detected = if c.bytes.starts_with(b"ri RAET\n") {
            HeadKind::Raet
        } else {
            json_heads += 1;
            HeadKind::Json
        };
        assert_eq!(h.hk, detected, "#{}", c.seq);
        assert_eq!(rx.coat.len() + rx.foot.len() + h.hl, c.bytes.len());
        assert_eq!(rx.datagram(), &c.bytes[..]);
        // Join packets are never signed; everything else always is.
        assert_eq!(h.tk != TransactionKind::Join, rx.is_signed(), "#{}", c.seq);
        if rx.is_signed() {
            assert_eq!((h.fk, h.fl), (FootKind::Nacl, 64));
        } else {
            assert_eq!((h.fk, h.fl, rx.foot.len()), (FootKind::Nada, 0, 0));
        }
        // Re-encoding from the parsed head (and re-signing with the sender's
        // key: ed25519 is deterministic) must give the identical datagram.
        let signer = rx.is_signed().then(|| &k.sender(c).signer);
        let again = packet::pack(h, rx.coat, signer).expect("pack");
        assert_eq!(again, c.bytes, "#{} re-encode", c.seq);
        // And the head alone re-encodes to the same prefix.
        let mut head_only = Vec::new();
        let hl = h
            .encode_into(rx.coat.len(), &mut head_only)
            .expect("encode head");
        assert_eq!(hl, h.hl);
        assert_eq!(&head_only[..], &c.bytes[..hl]);
    }
    // Scenario S2: alpha sends json heads (2 messages: 1 + 4 segments), beta answers raet.
    assert_eq!(json_heads, 5);
    for c in caps.iter().filter(|c| c.scenario.starts_with("S2")) {
        let json = c.bytes.starts_with(b"{\"ri\":\"RAET\",");
        assert_eq!(json, c.src == "alpha", "#{}", c.seq);
    }
}

#[test]
fn signatures_verify_with_the_senders_key_only() {
    let caps = captures();
    let k = keys();
    let mut signed = 0;
    for c in &caps {
        let rx = packet::parse(&c.bytes).expect("parse");
        if !rx.is_signed() {
            // fk = 0: nothing to verify, whatever the key.
            assert_eq!(rx.verify(&k.stacks[0].verify), Ok(()));
            continue;
        }
        signed += 1;
        let sender = k.sender(c);
        assert_eq!(rx.verify(&sender.verify), Ok(()), "#{}", c.seq);
        let other = k.at(c.dst_port, &c.scenario);
        assert_eq!(
            rx.verify(&other.verify),
            Err(PacketError::BadSignature),
            "#{}",
            c.seq
        );
        // Any flipped bit in head, coat or foot breaks it.
        for at in [5, rx.head.hl, c.bytes.len() - 1] {
            let mut bad = c.bytes.clone();
            bad[at] ^= 0x01;
            if let Ok(rx) = packet::parse(&bad) {
                assert_eq!(
                    rx.verify(&sender.verify),
                    Err(PacketError::BadSignature),
                    "#{} at {at}",
                    c.seq
                );
            }
        }
    }
    // 81 datagrams carry "fk 1" (counted independently of this codec).
    assert_eq!(signed, 81);
}

/// The annotated examples of the spec (§15), field by field.
#[test]
fn annotated_examples_have_the_documented_fields() {
    let caps = captures();
    let head = |seq| {
        packet::parse(&by_seq(&caps, seq).bytes)
            .expect("parse")
            .head
    };

    let h = head(0);
    assert_eq!(
        h,
        Head {
            pk: PacketKind::Request,
            pl: 255,
            hl: 54,
            se: 2,
            ti: 1,
            tk: TransactionKind::Join,
            bk: BodyKind::Json,
            ..Head::default()
        }
    );
    let h = head(1);
    assert_eq!(
        (h.pk, h.se, h.de, h.fg),
        (PacketKind::Response, 0, 2, Flags(Flags::CF))
    );
    let h = head(3);
    assert_eq!(
        (h.pk, h.si, h.ti, h.tk, h.bk, h.ck, h.fk, h.fl),
        (
            PacketKind::Hello,
            1,
            2,
            TransactionKind::Allow,
            BodyKind::Raw,
            CoatKind::Nada,
            FootKind::Nacl,
            64
        )
    );
    let h = head(10);
    assert_eq!(
        (h.pk, h.fg, h.ck),
        (PacketKind::Message, Flags(Flags::WF), CoatKind::Nacl)
    );
    assert_eq!(head(11).fg, Flags(Flags::WF | Flags::CF));
    assert_eq!(head(11).pk, PacketKind::Done);
    let h = head(14);
    assert_eq!((h.sn, h.sc, h.ml, h.fg), (0, 4, 3051, Flags(Flags::SF)));
    let h = head(17);
    assert_eq!(
        (h.sn, h.sc, h.ml, h.fg),
        (3, 4, 3051, Flags(Flags::SF | Flags::WF))
    );
    let h = head(21);
    assert_eq!(
        (h.pk, h.sn, h.ti, h.fg),
        (PacketKind::Ack, 1, 6, Flags(Flags::CF))
    );
    assert_eq!(head(264).pk, PacketKind::Resend);
    let h = head(267);
    assert_eq!(
        (h.sn, h.sc, h.ml, h.fg),
        (92, 232, 200_051, Flags(Flags::AF | Flags::SF))
    );
    assert_eq!(head(496).pk, PacketKind::Nack);
    let h = head(509);
    assert_eq!(
        (h.hk, h.hl, h.pl, h.ti, h.fg),
        (HeadKind::Json, 116, 249, 8, Flags(Flags::WF))
    );
    let h = head(511);
    assert_eq!(
        (h.hk, h.hl, h.sc, h.ml, h.fg),
        (HeadKind::Json, 133, 4, 2551, Flags(Flags::SF))
    );
    let h = head(517);
    assert_eq!(
        (h.pk, h.tk, h.ti),
        (PacketKind::Unallowed, TransactionKind::Alive, 10)
    );
    assert_eq!((head(524).pk, head(524).si), (PacketKind::Unjoined, 3));
    assert_eq!((head(535).pk, head(535).fg), (PacketKind::Refuse, Flags(0)));
    assert_eq!((head(540).pk, head(540).ti), (PacketKind::Renew, 16));
    let h = head(545);
    assert_eq!((h.pk, h.se, h.de), (PacketKind::Pend, 0, 2));
    let h = head(551);
    assert_eq!((h.pk, h.se, h.de, h.fg), (PacketKind::Pend, 2, 0, Flags(0)));
    assert_eq!(head(555).pk, PacketKind::Reject);
}

/// Session state learned from one Allow handshake between two stacks.
struct Allow {
    allower_short: Option<[u8; 32]>,
}

fn array<const N: usize>(b: &[u8]) -> [u8; N] {
    b.try_into().expect("fixed-size field")
}

/// Walks the capture in order like a receiver that holds every secret: opens
/// the Allow boxes, derives each session's shared box from them, decrypts the
/// coats (reassembling segmented messages) and decodes the bodies.
#[derive(Default)]
struct Walk {
    hellos: usize,
    cookies: usize,
    initiates: usize,
    coats_opened: usize,
    bodies: Vec<(u64, serde_json::Map<String, Value>)>,
    reassembled: Vec<(u64, Head, Vec<u8>)>,
}

fn walk(caps: &[Capture], k: &Keys) -> Walk {
    let mut w = Walk::default();
    let pair = |a: u16, b: u16| (a.min(b), a.max(b));
    let mut allows: HashMap<(u16, u16), Allow> = HashMap::new();
    let mut sessions: HashMap<(u16, u16), SharedBox> = HashMap::new();
    let mut trays: HashMap<(u16, u32, u32), (Reassembler, Head)> = HashMap::new();
    for c in caps {
        let rx = packet::parse(&c.bytes).expect("parse");
        let h = &rx.head;
        let me = k.sender(c);
        let peer = k.at(c.dst_port, &c.scenario);
        if h.tk == TransactionKind::Allow {
            let b = rx.coat;
            match h.pk {
                PacketKind::Hello => {
                    assert_eq!(b.len(), 200);
                    let (plain, short_pub, boxed, nonce) =
                        (&b[..64], &b[64..96], &b[96..176], &b[176..]);
                    assert_eq!(plain, [b'0'; 64]);
                    let short = k.short_for(short_pub);
                    // box(plain, n1, Bl.pub, As.sec): open with (Bl.pub, As.sec).
                    let opened = SharedBox::new(&peer.private.public_key(), short)
                        .open_with_nonce(&array(nonce), boxed)
                        .expect("hello box");
                    assert_eq!(opened, plain);
                    // The allowent opens it the other way round: (As.pub, Bl.sec).
                    let their =
                        SharedBox::new(&PublicKey::from_bytes(short_pub).unwrap(), &peer.private);
                    assert_eq!(their.open_with_nonce(&array(nonce), boxed).unwrap(), plain);
                    allows.insert(
                        pair(c.src_port, c.dst_port),
                        Allow {
                            allower_short: Some(array(short_pub)),
                        },
                    );
                    w.hellos += 1;
                }
                PacketKind::Cookie => {
                    assert_eq!(b.len(), 104);
                    let allow = allows
                        .get(&pair(c.src_port, c.dst_port))
                        .expect("hello before cookie");
                    let a_short = k.short_for(&allow.allower_short.unwrap());
                    // box(stuff, n2, As.pub, Bl.sec), opened by the allower with (Bl.pub, As.sec).
                    let stuff = SharedBox::new(&me.private.public_key(), a_short)
                        .open(b)
                        .expect("cookie box");
                    assert_eq!(stuff.len(), 64);
                    let b_short_pub = PublicKey::from_bytes(&stuff[..32]).unwrap();
                    let uids = (
                        u32::from_be_bytes(array(&stuff[32..36])),
                        u32::from_be_bytes(array(&stuff[36..40])),
                    );
                    assert_eq!(uids, (h.se, h.de), "#{} cookie uids", c.seq);
                    // The allowent's short secret is recorded too: both directions agree.
                    let b_short = k.short_for(b_short_pub.as_bytes());
                    let from_a = SharedBox::new(&b_short_pub, a_short);
                    let from_b = SharedBox::new(&a_short.public_key(), b_short);
                    let probe = from_a.seal(&mut rand_core::OsRng, b"probe");
                    assert_eq!(from_b.open(&probe).unwrap(), b"probe");
                    sessions.insert(pair(c.src_port, c.dst_port), from_a);
                    w.cookies += 1;
                }
                PacketKind::Initiate => {
                    assert_eq!(b.len(), 328);
                    let (short_pub, boxed) = (&b[..32], &b[56..]);
                    let session = sessions
                        .get(&pair(c.src_port, c.dst_port))
                        .expect("cookie before initiate");
                    let inner = session.open(boxed).expect("initiate box");
                    assert_eq!(inner.len(), 232);
                    // Al.pub || vouch[48] || vnonce[24] || fqdn[128]
                    assert_eq!(&inner[..32], me.private.public_key().as_bytes());
                    let vouch = SharedBox::new(&peer.private.public_key(), &me.private)
                        .open_with_nonce(&array(&inner[80..104]), &inner[32..80])
                        .expect("vouch box");
                    assert_eq!(vouch, short_pub);
                    assert_eq!(
                        std::str::from_utf8(&inner[104..]).unwrap().trim_end(),
                        "localhost"
                    );
                    w.initiates += 1;
                }
                _ => assert!(rx.coat.is_empty(), "#{} allow ack body", c.seq),
            }
            continue;
        }
        let coat = if h.sc > 1 || h.fg.has(Flags::SF) {
            let key = (c.src_port, h.si, h.ti);
            let (tray, _) = trays
                .entry(key)
                .or_insert_with(|| (Reassembler::new(h.sc, h.ml).expect("tray"), h.clone()));
            tray.insert(h.sn, rx.coat).expect("segment");
            if !tray.is_complete() {
                continue;
            }
            let (tray, first) = trays.remove(&key).expect("tray");
            let whole = tray.assemble().expect("assemble");
            w.reassembled.push((c.seq, first, whole.clone()));
            whole
        } else {
            rx.coat.to_vec()
        };
        let plain = if h.ck == CoatKind::Nacl && !coat.is_empty() {
            let session = sessions
                .get(&pair(c.src_port, c.dst_port))
                .expect("allowed before coat");
            w.coats_opened += 1;
            session
                .open(&coat)
                .unwrap_or_else(|e| panic!("#{} coat: {e}", c.seq))
        } else {
            coat
        };
        assert_eq!(h.bk, BodyKind::Json, "#{}", c.seq);
        let decoded = body::decode_json(&plain).unwrap_or_else(|e| panic!("#{} body: {e}", c.seq));
        // Our encoder reproduces the reference's json.dumps byte for byte.
        assert_eq!(
            body::encode_json(&decoded),
            plain,
            "#{} body re-encode",
            c.seq
        );
        w.bodies.push((c.seq, decoded));
    }
    // The 200 KB message was thinned in the capture: it stays incomplete.
    assert_eq!(trays.len(), 1);
    w
}

#[test]
fn allow_boxes_coats_and_bodies_decrypt_with_the_recorded_keys() {
    let caps = captures();
    let k = keys();
    let w = walk(&caps, &k);
    assert_eq!((w.hellos, w.cookies, w.initiates), (3, 3, 3));
    // Every non-empty message coat: 2 small + 3 reassembled + 1 json + resends.
    // 2 small messages, 3 reassembled ones, the json-head one, 6 resend requests.
    assert_eq!(w.coats_opened, 12);
    let body = |seq| &w.bodies.iter().find(|(s, _)| *s == seq).expect("body").1;
    assert_eq!(body(0)["name"], "alpha");
    assert_eq!(body(0)["verhex"], k.stacks[0].verify.to_hex());
    assert_eq!(body(1)["uid"], 2);
    // The renewed beta (S5) announces its new keys.
    assert_eq!(body(542)["verhex"], k.stacks[2].verify.to_hex());
    assert_eq!(body(509)["subject"], "json head");
    assert_eq!(body(509)["n"], 5);
    let misseds = body(264)["misseds"].as_array().expect("misseds");
    assert_eq!(misseds.first(), Some(&Value::from(92)));
    assert!(misseds.len() <= 64);
    assert!(body(11).is_empty());
    // Three complete segmented messages: 3 000 B, 6 000 B (burst 2), json head.
    let lens: Vec<u32> = w.reassembled.iter().map(|(_, h, _)| h.ml).collect();
    assert_eq!(lens, [3051, 6051, 2551]);
}

#[test]
fn segmenter_reproduces_the_captured_segments() {
    let caps = captures();
    let k = keys();
    let w = walk(&caps, &k);
    for (_, first, coat_all) in &w.reassembled {
        let template = Head {
            sn: 0,
            sc: 1,
            ml: 0,
            ..first.clone()
        };
        let seg = Segmenter::new(&template, coat_all.len()).expect("segmenter");
        assert_eq!(seg.count(), first.sc);
        let segments: Vec<&Capture> = caps
            .iter()
            .filter(|c| {
                let h = packet::parse(&c.bytes).unwrap().head;
                h.ti == first.ti
                    && h.si == first.si
                    && h.pk == PacketKind::Message
                    && c.src_port == k.stacks[0].port
            })
            .collect();
        assert_eq!(segments.len(), first.sc as usize);
        for c in segments {
            let h = packet::parse(&c.bytes).unwrap().head;
            let mut again = seg
                .pack_segment(&template, coat_all, h.sn, h.fg)
                .expect("pack segment");
            packet::sign_foot(&mut again, &k.sender(c).signer);
            assert_eq!(again, c.bytes, "#{} segment {}", c.seq, h.sn);
        }
    }
    // The 3 000-byte message of the spec's worked example.
    let sizes: Vec<usize> = (14..=17).map(|s| by_seq(&caps, s).bytes.len()).collect();
    assert_eq!(sizes, [1009, 1014, 1014, 613]);
    // The thinned 200 KB message: same count and slice size from ml alone.
    let rx = packet::parse(&by_seq(&caps, 32).bytes).unwrap();
    let template = Head {
        sn: 0,
        sc: 1,
        ml: 0,
        ..rx.head.clone()
    };
    let seg = Segmenter::new(&template, rx.head.ml as usize).unwrap();
    assert_eq!((seg.count(), seg.segment_size()), (232, rx.coat.len()));
}

/// Bodies written by CPython's `json.dumps(separators=(',', ':'))` (see
/// tests/data/python-json/README.md) re-encode byte for byte.
#[test]
fn python_json_dumps_vectors_reencode_byte_for_byte() {
    let lines = include_str!("data/python-json/dumps.jsonl");
    let mut n = 0;
    for line in lines.lines() {
        let map = body::decode_json(line.as_bytes()).expect("python output decodes");
        assert_eq!(String::from_utf8(body::encode_json(&map)).unwrap(), line);
        n += 1;
    }
    assert_eq!(n, 400);
}
