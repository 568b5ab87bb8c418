//! Session ids (spec §2.5, §6): a packet from an older session is answered with a nack and
//! never delivered; a copy of a completed message is answered done again, never delivered twice;
//! ids roll over 0xffffffff -> 1 without breaking the road.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use raet_proto::keep::{Acceptance, AutoMode, RemoteRecord};
use raet_proto::packet::fast::FastHead;
use raet_proto::packet::{PacketKind, TransactionKind};
use raet_proto::road::Profile;
use raet_sim::world::{message, preset_keep, remote_record, role_record, Spec, World};
use raet_sim::Link;

const LIMIT: Duration = Duration::from_secs(30);

/// A delivered datagram as seen by the tap.
#[derive(Debug, Clone)]
struct Seen {
    from: u16,
    tk: TransactionKind,
    pk: PacketKind,
    si: u32,
    ti: u32,
    data: Vec<u8>,
}

type Log = Rc<RefCell<Vec<Seen>>>;

/// The session id of the last message packet beta (port 7531) sent.
fn last_message_sid(log: &Log) -> u32 {
    log.borrow()
        .iter()
        .rev()
        .find(|s| s.from == 7531 && s.tk == TransactionKind::Message)
        .map(|s| s.si)
        .expect("a message of beta seen")
}

/// Record every parsable datagram delivered on the network (signed, or sealed in a fast
/// session: since alives are sealed too, a fast session's steady traffic is all sealed).
fn record(world: &mut World) -> Log {
    let log: Log = Rc::default();
    let sink = Rc::clone(&log);
    world.net.set_tap(Some(Box::new(move |_, from, _, data| {
        let head = match raet_proto::packet::parse(data) {
            Ok(p) => Some((p.head.tk, p.head.pk, p.head.si, p.head.ti)),
            Err(_) => FastHead::parse(data)
                .ok()
                .map(|(f, _, _)| (f.tk, f.pk, f.si, f.ti)),
        };
        if let Some((tk, pk, si, ti)) = head {
            sink.borrow_mut().push(Seen {
                from: from.port(),
                tk,
                pk,
                si,
                ti,
                data: data.to_vec(),
            });
        }
    })));
    log
}

/// Alpha and beta joined and allowed, in the compatible profile: these tests replay its
/// signed datagrams (the fast profile's replay window is tested in sim_fast.rs).
fn pair(world: &mut World) -> (SocketAddr, SocketAddr) {
    let alpha = world.add(Spec::new("alpha", 7530).main().profile(Profile::Compat));
    let beta = world.add(Spec::new("beta", 7531).profile(Profile::Compat));
    world.connect(beta, alpha, LIMIT);
    (alpha, beta)
}

/// Send message `n` from beta to alpha and wait for its confirmation.
fn deliver(world: &mut World, beta: SocketAddr, n: u32) {
    let uid = world.uid(beta, "alpha");
    let id = world.send(beta, uid, message("beta", n, 200));
    if let Err(e) = world.run_until(LIMIT, |net| net.node_ref(beta).delivered(id)) {
        panic!("message {n} not confirmed: {e}");
    }
}

/// The (only) single-packet message datagram beta sent, and its session id.
fn captured_message(log: &Log) -> Seen {
    let seen = log.borrow();
    let mut messages = seen.iter().filter(|s| {
        s.from == 7531 && s.tk == TransactionKind::Message && s.pk == PacketKind::Message
    });
    let first = messages
        .next()
        .expect("beta's message was delivered")
        .clone();
    assert!(
        messages.all(|s| s.data == first.data),
        "one distinct message datagram"
    );
    first
}

/// Whether alpha answered (si, ti) with `pk` after position `after` in the log.
fn answered(log: &Log, after: usize, pk: PacketKind, si: u32, ti: u32) -> bool {
    log.borrow()[after..].iter().any(|s| {
        s.from == 7530 && s.tk == TransactionKind::Message && s.pk == pk && s.si == si && s.ti == ti
    })
}

/// A nack from alpha answering (si, ti) after position `after` in the log.
fn nacked(log: &Log, after: usize, si: u32, ti: u32) -> bool {
    answered(log, after, PacketKind::Nack, si, ti)
}

/// A copy of a message alpha delivered (its done lost, say) is answered with done again, the
/// sender's proof of receipt, and not delivered twice.
#[test]
fn a_duplicate_of_a_completed_message_is_answered_done_not_delivered_again() {
    let mut world = World::new(31, Link::perfect());
    let (alpha, beta) = pair(&mut world);
    let log = record(&mut world);
    deliver(&mut world, beta, 1);
    let old = captured_message(&log);
    let mark = log.borrow().len();
    world.net.inject(beta, alpha, old.data.clone());
    world.settle(Duration::from_secs(1));
    assert_eq!(world.peer_ref(alpha).copies(1), 1, "delivered again");
    assert!(
        answered(&log, mark, PacketKind::Done, old.si, old.ti),
        "no done for the duplicate"
    );
    assert!(
        !nacked(&log, mark, old.si, old.ti),
        "a delivered message was nacked"
    );
}

#[test]
fn a_message_from_an_older_session_is_nacked_not_delivered() {
    let mut world = World::new(32, Link::perfect());
    let (alpha, beta) = pair(&mut world);
    let log = record(&mut world);
    deliver(&mut world, beta, 1);
    let old = captured_message(&log);

    // A new session: beta restarts (sid + 1) and is allowed again (sid + 1 on both sides).
    world.restart(beta);
    world.connect(beta, alpha, LIMIT);
    deliver(&mut world, beta, 2);
    let newer = last_message_sid(&log);
    assert_ne!(newer, old.si, "the session changed");

    let mark = log.borrow().len();
    world.net.inject(beta, alpha, old.data.clone());
    world.settle(Duration::from_secs(1));
    assert_eq!(
        world.peer_ref(alpha).copies(1),
        1,
        "an old session's message was delivered again"
    );
    assert!(
        nacked(&log, mark, old.si, old.ti),
        "no stale nack for the old session"
    );
    // The current session is unharmed.
    deliver(&mut world, beta, 3);
    assert_eq!(world.peer_ref(alpha).copies(3), 1);
}

/// Records of two estates that joined before, with session ids at `sid`.
fn joined_records(alpha: &Spec, beta: &Spec, sid: u32) -> (RemoteRecord, RemoteRecord) {
    let mut of_beta = remote_record(beta, 2, 2);
    let mut of_alpha = remote_record(alpha, 2, 2);
    for record in [&mut of_beta, &mut of_alpha] {
        record.sid = sid;
        record.joined = Some(true);
    }
    (of_beta, of_alpha)
}

#[test]
fn session_ids_roll_over_to_one() {
    let alpha = Spec::new("alpha", 7530).main().auto(AutoMode::Once);
    let beta = Spec::new("beta", 7531).auto(AutoMode::Once);
    // Restored remotes start a new session (sid + 1 = 0xffffffff); the allow then rolls over.
    let (of_beta, of_alpha) = joined_records(&alpha, &beta, 0xffff_fffe);
    let alpha_keep = preset_keep(
        &[of_beta],
        &[role_record("beta", Acceptance::Accepted, beta.keys)],
    );
    let beta_keep = preset_keep(
        &[of_alpha],
        &[role_record("alpha", Acceptance::Accepted, alpha.keys)],
    );
    let mut world = World::new(33, Link::perfect());
    let log = record(&mut world);
    let a = world.add_on(alpha, alpha_keep);
    let b = world.add_on(beta, beta_keep);
    world.connect(b, a, LIMIT);
    for n in 1..4 {
        deliver(&mut world, b, n);
        assert_eq!(world.peer_ref(a).copies(n), 1);
    }
    let sids: Vec<u32> = log
        .borrow()
        .iter()
        .filter(|s| s.from == 7531 && s.tk != TransactionKind::Join)
        .map(|s| s.si)
        .collect();
    assert!(
        sids.contains(&0xffff_ffff),
        "never used the last session id: {sids:?}"
    );
    assert!(
        sids.iter().any(|s| (1..=2).contains(s)),
        "did not roll over to 1: {sids:?}"
    );
    assert!(!sids.contains(&0), "session id 0 outside a join: {sids:?}");
}

/// testStaleNack: a nack for a transaction the receiver no longer has is not answered
/// (a nack is never nacked, or two estates would nack each other forever).
#[test]
fn a_stale_nack_is_not_answered() {
    let mut world = World::new(34, Link::perfect());
    let (alpha, beta) = pair(&mut world);
    let log = record(&mut world);
    deliver(&mut world, beta, 1);
    world.settle(Duration::from_secs(1));
    // A new session of beta, then a replay of the old session's message: collect alpha's
    // stale nack, and send that nack to alpha again.
    let old = captured_message(&log);
    world.restart(beta);
    world.connect(beta, alpha, LIMIT);
    let mark = log.borrow().len();
    world.net.inject(beta, alpha, old.data.clone());
    world.settle(Duration::from_millis(100));
    let nack = log.borrow()[mark..]
        .iter()
        .find(|s| s.from == 7530 && s.pk == PacketKind::Nack)
        .map(|s| s.data.clone())
        .expect("alpha nacked the replay");
    let before = log.borrow().len();
    world.net.inject(alpha, beta, nack.clone());
    world.net.inject(beta, alpha, nack);
    world.settle(Duration::from_millis(100));
    let answers = log.borrow()[before..]
        .iter()
        .filter(|s| s.tk == TransactionKind::Message && s.ti == old.ti)
        .count();
    // The two injected nacks themselves, and nothing in reply.
    assert_eq!(answers, 2, "a nack was answered");
}

/// Issue 10, findings 3 and 5: beta forgets alpha and joins again (as the minion's join loop
/// does after a failure), so its session ids start over; a replayed datagram of its older,
/// higher session moves alpha onto that session, and alpha nacks beta's current messages as
/// stale. Beta must never report such a message delivered (it was nacked, not done), and
/// its session ids must not start over below the ones it used before.
#[test]
fn a_replayed_older_session_cannot_make_a_message_look_delivered() {
    let mut world = World::new(35, Link::perfect());
    let mut main = Spec::new("alpha", 7530).main().profile(Profile::Compat);
    main.mutable = true;
    let alpha = world.add(main);
    let beta = world.add(Spec::new("beta", 7531).profile(Profile::Compat));
    world.connect(beta, alpha, LIMIT);
    let log = record(&mut world);
    // A later session of beta: restart (sid + 1) and a new allow (sid + 1).
    world.restart(beta);
    world.connect(beta, alpha, LIMIT);
    deliver(&mut world, beta, 1);
    let old = captured_message(&log);

    // Beta forgets alpha and joins again from scratch.
    let now = world.net.now();
    let uid = world.uid(beta, "alpha");
    world
        .peer(beta)
        .road
        .remove(now, uid)
        .expect("beta forgets alpha");
    world.connect(beta, alpha, LIMIT);
    world.settle(Duration::from_secs(1));

    world.net.inject(beta, alpha, old.data.clone());
    world.settle(Duration::from_millis(100));
    let uid = world.uid(beta, "alpha");
    let id = world.send(beta, uid, message("beta", 2, 200));
    world
        .run_until(Duration::from_secs(120), |net| {
            let b = net.node_ref(beta);
            b.delivered(id) || b.send_failed(id).is_some()
        })
        .expect("message 2 has an outcome");
    let arrived = world.peer_ref(alpha).copies(2);
    assert!(
        !world.peer_ref(beta).delivered(id) || arrived == 1,
        "message 2 reported delivered but alpha never got it"
    );
    assert_eq!(
        arrived, 1,
        "a replay of an older session blocked beta's messages"
    );
    let current = last_message_sid(&log);
    assert!(
        current > old.si,
        "beta's session ids started over: {current} after {}",
        old.si
    );
    assert_eq!(
        world.peer_ref(beta).road.stats().message_requeued,
        0,
        "message 2 was refused as stale"
    );
}
