//! Session ids (spec §2.5, §6): a packet from an older session is answered with a nack and
//! never delivered; a duplicate of a completed message is not delivered again; session
//! ids roll over 0xffffffff -> 1 without breaking the road.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use raet_proto::keep::{Acceptance, AutoMode, RemoteRecord};
use raet_proto::packet::{PacketKind, TransactionKind};
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

/// Record every parsable datagram delivered on the network.
fn record(world: &mut World) -> Log {
    let log: Log = Rc::default();
    let sink = Rc::clone(&log);
    world.net.set_tap(Some(Box::new(move |_, from, _, data| {
        if let Ok(p) = raet_proto::packet::parse(data) {
            sink.borrow_mut().push(Seen {
                from: from.port(),
                tk: p.head.tk,
                pk: p.head.pk,
                si: p.head.si,
                ti: p.head.ti,
                data: data.to_vec(),
            });
        }
    })));
    log
}

fn pair(world: &mut World) -> (SocketAddr, SocketAddr) {
    let alpha = world.add(Spec::new("alpha", 7530).main());
    let beta = world.add(Spec::new("beta", 7531));
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

/// A nack from alpha answering (si, ti) after position `after` in the log.
fn nacked(log: &Log, after: usize, si: u32, ti: u32) -> bool {
    log.borrow()[after..].iter().any(|s| {
        s.from == 7530
            && s.tk == TransactionKind::Message
            && s.pk == PacketKind::Nack
            && s.si == si
            && s.ti == ti
    })
}

#[test]
fn a_duplicate_of_a_completed_message_is_nacked_not_delivered_again() {
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
        nacked(&log, mark, old.si, old.ti),
        "no stale nack for the duplicate"
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
    let newer = log
        .borrow()
        .iter()
        .rev()
        .find(|s| s.from == 7531 && s.tk == TransactionKind::Message)
        .map(|s| s.si)
        .expect("message 2 seen");
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
    // Replay the old message, collect alpha's stale nack, and send that nack to alpha again.
    let old = captured_message(&log);
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
