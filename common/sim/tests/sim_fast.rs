//! The fast profile (docs/protocol.md, *The fast profile*) on the simulator: negotiated by two
//! roads of this implementation and never with a compatible one; refused where required and
//! not offered; a stripped offer costs speed only; a replayed or altered fast packet changes
//! nothing; a peer without a fast session makes its sender fall back; alives are sealed, and
//! a restarted peer answers a sealed alive so it is allowed again; a bulk transfer keeps its
//! goodput under loss.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use raet_proto::keep::Keep;
use raet_proto::packet::body::{decode_json, encode_json};
use raet_proto::packet::fast::{is_fast, FastHead};
use raet_proto::packet::{self, PacketKind, TransactionKind};
use raet_proto::road::{Event, JoinFailure, Presence, Profile, RejectedBy};
use raet_sim::world::{message, Spec, World};
use raet_sim::Link;

const LIMIT: Duration = Duration::from_secs(60);

/// Datagrams seen on the network: (from, to, bytes).
type Log = Rc<RefCell<Vec<(SocketAddr, SocketAddr, Vec<u8>)>>>;

fn record(world: &mut World) -> Log {
    let log: Log = Rc::default();
    let sink = Rc::clone(&log);
    world.net.set_tap(Some(Box::new(move |_, from, to, data| {
        sink.borrow_mut().push((from, to, data.to_vec()));
    })));
    log
}

/// Whether a datagram is a message-transaction packet of the compatible profile.
fn compat_message(data: &[u8]) -> bool {
    packet::parse(data).is_ok_and(|p| p.head.tk == TransactionKind::Message)
}

/// Alpha (main) and beta in the given profiles.
fn pair(world: &mut World, alpha: Profile, beta: Profile) -> (SocketAddr, SocketAddr) {
    let a = world.add(Spec::new("alpha", 7530).main().profile(alpha));
    let b = world.add(Spec::new("beta", 7531).profile(beta));
    (a, b)
}

/// Sends message `n` of `size` bytes from `from` to its remote `to_name` and waits until it
/// is delivered (panics on a send failure or the limit).
fn deliver(world: &mut World, from: SocketAddr, to_name: &str, n: u32, size: usize) {
    let uid = world.uid(from, to_name);
    let name = world.peer_ref(from).spec.name.clone();
    let id = world.send(from, uid, message(&name, n, size));
    let ended = world.run_until(LIMIT, |net| {
        let p = net.node_ref(from);
        p.delivered(id) || p.send_failed(id).is_some()
    });
    let failed = world.peer_ref(from).send_failed(id);
    assert!(
        ended.is_ok() && failed.is_none(),
        "message {n} ({size} B) {name} -> {to_name}: {ended:?} {failed:?}"
    );
}

#[test]
fn two_roads_negotiate_the_fast_profile_and_sign_no_message_packet() {
    let mut world = World::new(1, Link::perfect());
    let (a, b) = pair(&mut world, Profile::Auto, Profile::Auto);
    world.connect(b, a, LIMIT);
    let log = record(&mut world);
    for (n, size) in [(1, 100), (2, 200_000), (3, 3_000_000)] {
        deliver(&mut world, b, "alpha", n, size);
        deliver(&mut world, a, "beta", n + 10, size);
    }
    let log = log.borrow();
    let fast = log.iter().filter(|(_, _, d)| is_fast(d)).count();
    assert!(fast > 0, "no fast packet");
    assert!(
        !log.iter().any(|(_, _, d)| compat_message(d)),
        "a signed message packet"
    );
    // 3 MB in 64 KB datagrams: 47 segments each way, not 3,000.
    assert!(fast < 400, "{fast} fast packets");
    let largest = log.iter().map(|(_, _, d)| d.len()).max().unwrap_or(0);
    assert!(
        largest > 60_000 && largest <= 65_000,
        "largest datagram {largest}"
    );
    for at in [a, b] {
        let stats = world.peer_ref(at).road.stats();
        assert!(stats.fast_rx > 0 && stats.fast_tx > 0, "{stats:?}");
        assert_eq!((stats.decrypt_error, stats.fast_replay), (0, 0));
    }
    assert_eq!(world.peer_ref(a).copies(1), 1);
}

#[test]
fn a_compatible_peer_gets_the_compatible_profile_both_ways() {
    for (alpha, beta) in [
        (Profile::Auto, Profile::Compat),
        (Profile::Compat, Profile::Auto),
    ] {
        let mut world = World::new(2, Link::perfect());
        let (a, b) = pair(&mut world, alpha, beta);
        world.connect(b, a, LIMIT);
        let log = record(&mut world);
        deliver(&mut world, b, "alpha", 1, 5_000);
        deliver(&mut world, a, "beta", 2, 5_000);
        let log = log.borrow();
        assert!(
            !log.iter().any(|(_, _, d)| is_fast(d)),
            "{alpha:?}/{beta:?}"
        );
        assert!(log.iter().any(|(_, _, d)| compat_message(d)));
    }
}

#[test]
fn a_road_that_requires_the_fast_profile_refuses_one_that_does_not_offer_it() {
    // The joiner requires it, the main does not offer it: the joiner refuses the accept.
    let mut world = World::new(3, Link::perfect());
    let (a, b) = pair(&mut world, Profile::Compat, Profile::Fast);
    world.join(b, a);
    let refused = |e: &Event| {
        matches!(
            e,
            Event::JoinFailed {
                reason: JoinFailure::ProfileRefused,
                ..
            }
        )
    };
    world.wait_for(b, LIMIT, refused).expect("join refused");
    assert_eq!(world.peer_ref(b).road.stats().join_profile_refused, 1);
    assert!(!world.peer_ref(b).allowed("alpha"));

    // The main requires it, the joiner does not offer it: the main rejects the request.
    let mut world = World::new(4, Link::perfect());
    let (a, b) = pair(&mut world, Profile::Fast, Profile::Compat);
    world.join(b, a);
    let rejected = |e: &Event| {
        matches!(
            e,
            Event::Rejected {
                by: RejectedBy::Them,
                ..
            }
        )
    };
    world.wait_for(b, LIMIT, rejected).expect("join rejected");
    assert!(world.peer_ref(a).road.stats().join_profile_refused >= 1);
    assert!(world.peer_ref(a).road.remotes().is_empty());

    // Both require it: fast.
    let mut world = World::new(5, Link::perfect());
    let (a, b) = pair(&mut world, Profile::Fast, Profile::Fast);
    world.connect(b, a, LIMIT);
    deliver(&mut world, b, "alpha", 1, 1_000);
    assert!(world.peer_ref(a).road.stats().fast_rx > 0);
}

/// Joins travel unsigned: an attacker on the path can remove the offer. Whichever side loses
/// it, the two roads still exchange every message (the side that believes in the fast profile
/// is answered with a compatible nack and falls back); only speed is lost.
#[test]
fn a_stripped_offer_costs_speed_only() {
    for strip in [PacketKind::Request, PacketKind::Response] {
        let mut world = World::new(6, Link::perfect());
        let (a, b) = pair(&mut world, Profile::Auto, Profile::Auto);
        let stash: Log = Rc::default();
        let sink = Rc::clone(&stash);
        world
            .net
            .set_filter(Some(Box::new(move |_, from, to, data| {
                let Ok(p) = packet::parse(data) else {
                    return false;
                };
                if p.head.tk != TransactionKind::Join || p.head.pk != strip {
                    return false;
                }
                let Ok(mut body) = decode_json(p.coat) else {
                    return false;
                };
                if body.remove("fast").is_none() {
                    return false;
                }
                let stripped = packet::pack(&p.head, &encode_json(&body), None).expect("pack");
                sink.borrow_mut().push((from, to, stripped));
                true
            })));
        world.join(b, a);
        let done =
            |world: &World| world.peer_ref(b).allowed("alpha") && world.peer_ref(a).allowed("beta");
        while !done(&world) {
            world
                .run_until(LIMIT, |net| {
                    !stash.borrow().is_empty()
                        || (net.node_ref(b).allowed("alpha") && net.node_ref(a).allowed("beta"))
                })
                .expect("joined and allowed");
            for (from, to, data) in stash.borrow_mut().drain(..) {
                world.net.inject(from, to, data);
            }
        }
        world.net.set_filter(None);
        for n in 0..3 {
            deliver(&mut world, b, "alpha", n, 3_000);
            deliver(&mut world, a, "beta", n + 10, 3_000);
        }
        let downgrades = world.peer_ref(a).road.stats().fast_downgrade
            + world.peer_ref(b).road.stats().fast_downgrade;
        assert_eq!(
            downgrades, 1,
            "stripped {strip:?}: the believing side fell back once"
        );
        assert_eq!(world.peer_ref(a).copies(0), 1);
        assert_eq!(world.peer_ref(b).copies(10), 1);
    }
}

/// The first fast message datagram beta sends to alpha after `log` started.
fn first_fast_message(log: &Log, beta: SocketAddr) -> Vec<u8> {
    log.borrow()
        .iter()
        .find(|(from, _, d)| {
            *from == beta && FastHead::parse(d).is_ok_and(|(f, _, _)| f.pk == PacketKind::Message)
        })
        .map(|(_, _, d)| d.clone())
        .expect("a fast message packet")
}

#[test]
fn a_replayed_or_altered_fast_packet_changes_nothing() {
    let mut world = World::new(7, Link::perfect());
    let (a, b) = pair(&mut world, Profile::Auto, Profile::Auto);
    world.connect(b, a, LIMIT);
    let log = record(&mut world);
    deliver(&mut world, b, "alpha", 1, 300);
    let datagram = first_fast_message(&log, b);
    let before = world.peer_ref(a).road.stats().clone();

    world.net.inject(b, a, datagram.clone());
    world.settle(Duration::from_secs(2));
    let after = world.peer_ref(a).road.stats().clone();
    assert_eq!(after.fast_replay, before.fast_replay + 1);
    assert_eq!(world.peer_ref(a).copies(1), 1, "delivered once");

    // Another transaction id in the head (the associated data): does not open. The same with
    // a fresh packet number (past the replay window's check), and with a bent body.
    let mut bent = datagram.clone();
    bent[23] ^= 0x40;
    bent[43] = bent[43].wrapping_add(100);
    let mut body = datagram.clone();
    body[44] ^= 1;
    body[43] = body[43].wrapping_add(101);
    for d in [bent, body] {
        world.net.inject(b, a, d);
    }
    world.settle(Duration::from_secs(2));
    let last = world.peer_ref(a).road.stats();
    assert_eq!(last.decrypt_error, before.decrypt_error + 2);
    // Alpha's heartbeats went on meanwhile: one sealed packet opened per alive.
    assert_eq!(
        last.fast_rx - after.fast_rx,
        last.alive_complete - after.alive_complete,
        "nothing else opened"
    );
    assert_eq!(world.peer_ref(a).messages().count(), 1);
    deliver(&mut world, b, "alpha", 2, 300);
}

/// Beta restarts from a keep that no longer says its last join with alpha negotiated the fast
/// profile (a keep restored from elsewhere): alpha's fast packets are answered with a signed
/// compatible nack, alpha falls back, and every message arrives.
#[test]
fn a_peer_without_a_fast_session_makes_its_sender_fall_back() {
    let mut world = World::new(8, Link::perfect());
    let (a, b) = pair(&mut world, Profile::Auto, Profile::Auto);
    world.connect(b, a, LIMIT);
    deliver(&mut world, a, "beta", 1, 2_000);
    let mut old = world.crash(b);
    let mut records = old.keep.load_remotes().expect("remotes");
    for record in &mut records {
        assert!(record.fast, "the keep remembers the negotiation");
        record.fast = false;
        old.keep.save_remote(record).expect("save");
    }
    world.add_on(old.spec, old.keep);
    // Beta's message starts an allow (no join: the keep says joined); it goes compatible.
    deliver(&mut world, b, "alpha", 2, 2_000);
    for n in 3..6 {
        deliver(&mut world, a, "beta", n, 2_000);
    }
    assert_eq!(world.peer_ref(a).road.stats().fast_downgrade, 1);
    assert!(world.peer_ref(b).road.stats().fast_refused >= 1);
    assert_eq!(world.peer_ref(b).copies(5), 1);
    assert_eq!(world.peer_ref(a).copies(2), 1);
}

/// Whether a datagram is an alive packet: of the compatible profile (signed), or sealed.
fn alive_packet(data: &[u8], sealed: bool) -> bool {
    if sealed {
        FastHead::parse(data).is_ok_and(|(f, _, _)| f.tk == TransactionKind::Alive)
    } else {
        packet::parse(data).is_ok_and(|p| p.head.tk == TransactionKind::Alive)
    }
}

/// Presence in a fast session costs no signature: the alives and their acks are sealed.
#[test]
fn alives_between_fast_peers_are_sealed_not_signed() {
    let mut world = World::new(9, Link::perfect());
    let (a, b) = pair(&mut world, Profile::Auto, Profile::Auto);
    world.connect(b, a, LIMIT);
    let log = record(&mut world);
    let before = world.peer_ref(b).road.stats().alive_complete;
    world.settle(Duration::from_secs(10));
    let log = log.borrow();
    let sealed = log.iter().filter(|(_, _, d)| alive_packet(d, true)).count();
    assert!(sealed >= 10, "{sealed} sealed alive packets in 10 s");
    assert!(!log.iter().any(|(_, _, d)| alive_packet(d, false)));
    assert!(world.peer_ref(b).road.stats().alive_complete >= before + 5);
    for at in [a, b] {
        let stats = world.peer_ref(at).road.stats();
        assert_eq!(
            (stats.aliver_timeout, stats.fast_refused),
            (0, 0),
            "{stats:?}"
        );
    }
}

/// Beta restarts: its keep holds alpha joined, without a session, so alpha's next sealed
/// alive cannot open there. Beta answers it, signed, as unallowed (not with the nack that
/// would make alpha give up the profile): alpha allows again, and the new allow gives both
/// a fast session; alpha never saw beta lost.
#[test]
fn a_restarted_peer_answers_a_sealed_alive_so_it_is_allowed_again() {
    let mut world = World::new(10, Link::perfect());
    let (a, b) = pair(&mut world, Profile::Auto, Profile::Auto);
    world.connect(b, a, LIMIT);
    world.restart(b);
    let log = record(&mut world);
    world.settle(Duration::from_secs(5));
    let stats = world.peer_ref(a).road.stats().clone();
    assert!(stats.aliver_rx_unallowed >= 1, "{stats:?}");
    assert_eq!(stats.fast_downgrade, 0);
    assert!(world.peer_ref(b).road.stats().fast_refused >= 1);
    let lost = |e: &Event| {
        matches!(
            e,
            Event::Presence {
                presence: Presence::Lost,
                ..
            }
        )
    };
    assert_eq!(world.peer_ref(a).count(lost), 0);
    deliver(&mut world, a, "beta", 1, 2_000);
    let log = log.borrow();
    assert!(!log.iter().any(|(_, _, d)| compat_message(d)));
    assert_eq!(world.peer_ref(b).copies(1), 1);
}

/// Goodput of one 64 MB message (virtual time from send to delivered) over 100 MB/s uplinks
/// with 10 ms delay and 2 ms jitter, at `loss`.
/// A 100 MB/s uplink with 10 ms delay, 2 ms jitter and `loss`.
fn path(loss: f64) -> Link {
    Link {
        loss,
        delay: Duration::from_millis(10),
        jitter: Duration::from_millis(2),
        rate: Some(100_000_000),
        ..Link::perfect()
    }
}

/// Sends 64 MB from beta to alpha over `link`; the goodput (B/s) and the network's counters.
fn transfer(link: Link, seed: u64) -> (f64, raet_sim::SimStats) {
    let mut world = World::new(seed, Link::perfect());
    let (a, b) = pair(&mut world, Profile::Auto, Profile::Auto);
    world.connect(b, a, LIMIT);
    world.net.set_link(link);
    let before = world.net.stats().clone();
    let size = 64_000_000;
    let start = world.net.elapsed();
    deliver(&mut world, b, "alpha", 1, size);
    let secs = (world.net.elapsed() - start).as_secs_f64().max(1e-3);
    let after = world.net.stats().clone();
    let stats = raet_sim::SimStats {
        sent: after.sent - before.sent,
        overflowed: after.overflowed - before.overflowed,
        ..after
    };
    (size as f64 / secs, stats)
}

fn goodput(loss: f64, seed: u64) -> f64 {
    transfer(path(loss), seed).0
}

/// Through a bottleneck whose buffer holds an eighth of the path's bandwidth-delay product,
/// a bulk transfer neither stalls nor floods: the sender paces at the rate the path
/// delivers, so most datagrams fit in the buffer (a sender that sent the whole message at
/// once would lose all but the first 256 KiB of it) and the goodput stays well above half
/// the rate. The start-up's last doubling and the probing for bandwidth still overflow it
/// now and then (as BBR does in shallow buffers).
#[test]
#[cfg_attr(debug_assertions, ignore = "64 MB: release only (scripts/test-all.sh)")]
fn a_bulk_transfer_through_a_shallow_buffer_neither_stalls_nor_floods() {
    let segments = 64_000_000 / 64_900;
    for seed in [14, 15, 16] {
        let link = Link {
            buffer: Some(256 * 1024),
            ..path(0.0)
        };
        let (rate, stats) = transfer(link, seed);
        eprintln!(
            "64 MB through 100 MB/s with a 256 KiB buffer: {:.1} MB/s, {} datagrams sent, {} overflowed",
            rate / 1e6,
            stats.sent,
            stats.overflowed
        );
        assert!(rate > 50e6, "goodput {rate:.0} B/s");
        assert!(
            stats.overflowed * 3 < segments,
            "{} of about {segments} segments overflowed the buffer",
            stats.overflowed
        );
    }
}

/// A bulk transfer keeps at least half its lossless goodput at 5 % loss, and completes at 1 %
/// and 20 % (virtual time; the figures are printed).
#[test]
#[cfg_attr(debug_assertions, ignore = "64 MB: release only (scripts/test-all.sh)")]
fn a_bulk_transfer_keeps_half_its_goodput_at_5_percent_loss() {
    let clean = goodput(0.0, 9);
    let mut lossy = Vec::new();
    for (loss, seed) in [(0.01, 10), (0.05, 11), (0.2, 12)] {
        lossy.push(goodput(loss, seed));
    }
    eprintln!(
        "goodput of 64 MB at 100 MB/s, 10 ms: lossless {:.1} MB/s; 1 % {:.1}; 5 % {:.1}; 20 % {:.1}",
        clean / 1e6,
        lossy[0] / 1e6,
        lossy[1] / 1e6,
        lossy[2] / 1e6
    );
    assert!(clean > 50e6, "lossless {clean:.0} B/s");
    assert!(
        lossy[1] >= clean / 2.0,
        "5 %: {:.0} < half of {clean:.0}",
        lossy[1]
    );
}

/// Messages in msgpack (the reference's `Bk`) from one side, json from the other, in both
/// profiles: each body is decoded by its own packets' body kind and arrives as sent.
#[test]
fn msgpack_and_json_bodies_cross_in_both_profiles() {
    use raet_proto::packet::BodyKind;
    for profile in [Profile::Compat, Profile::Auto] {
        let mut world = World::new(13, Link::perfect());
        let mut alpha = Spec::new("alpha", 7530).main().profile(profile);
        alpha.bk = BodyKind::Msgpack;
        let a = world.add(alpha);
        let b = world.add(Spec::new("beta", 7531).profile(profile));
        world.connect(b, a, LIMIT);
        let log = record(&mut world);
        for (n, size) in [(1, 100), (2, 200_000)] {
            deliver(&mut world, a, "beta", n, size);
            deliver(&mut world, b, "alpha", n + 10, size);
        }
        let sent = message("alpha", 2, 200_000);
        let got: Vec<_> = world
            .peer_ref(b)
            .messages()
            .map(|(_, m)| m.clone())
            .collect();
        assert!(
            got.contains(&sent),
            "{profile:?}: the 200 KB msgpack message as sent"
        );
        let kinds: Vec<BodyKind> = log
            .borrow()
            .iter()
            .filter(|(from, _, _)| *from == a)
            .filter_map(|(_, _, d)| match FastHead::parse(d) {
                Ok((f, _, _)) => (f.pk == PacketKind::Message).then_some(f.bk),
                Err(_) => packet::parse(d)
                    .ok()
                    .filter(|p| p.head.tk == TransactionKind::Message)
                    .filter(|p| p.head.pk == PacketKind::Message)
                    .map(|p| p.head.bk),
            })
            .collect();
        assert!(
            !kinds.is_empty() && kinds.iter().all(|k| *k == BodyKind::Msgpack),
            "{kinds:?}"
        );
        assert_eq!(world.peer_ref(a).copies(11), 1);
    }
}
