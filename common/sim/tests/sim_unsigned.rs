//! Packets that are not joins must be signed (the reference signs every allow, alive and
//! message packet): an unsigned one, whoever sends it, changes nothing. Before this rule one
//! forged 54-byte alive with a new session id made a road adopt that session and nack every
//! later packet of the real peer as stale, so that peer's messages were lost (issue 10, 1).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use raet_proto::packet::{self, BodyKind, CoatKind, FootKind, Head, PacketKind, TransactionKind};
use raet_proto::road::Profile;
use raet_sim::world::{addr, message, Spec, World};
use raet_sim::Link;

const LIMIT: Duration = Duration::from_secs(30);

/// The head of the first message packet beta sent to alpha (its uids and session).
fn first_message_head(world: &mut World, alpha: SocketAddr, beta: SocketAddr) -> Head {
    let seen: Rc<RefCell<Option<Head>>> = Rc::default();
    let sink = Rc::clone(&seen);
    world.net.set_tap(Some(Box::new(move |_, from, to, data| {
        let mut sink = sink.borrow_mut();
        if sink.is_none() && from == beta && to == alpha {
            if let Ok(p) = packet::parse(data) {
                if p.head.tk == TransactionKind::Message && p.head.pk == PacketKind::Message {
                    *sink = Some(p.head);
                }
            }
        }
    })));
    deliver(world, beta, 0);
    world.net.set_tap(None);
    let head = seen.borrow_mut().take();
    head.expect("beta sent a message")
}

/// Sends message `n` from beta to alpha; true when it was confirmed and alpha got it once.
fn deliver(world: &mut World, beta: SocketAddr, n: u32) -> bool {
    let uid = world.uid(beta, "alpha");
    let id = world.send(beta, uid, message("beta", n, 200));
    let ended = world.run_until(LIMIT, |net| {
        let beta = net.node_ref(beta);
        beta.delivered(id) || beta.send_failed(id).is_some()
    });
    ended.is_ok() && world.peer_ref(beta).delivered(id)
}

#[test]
fn an_unsigned_alive_with_a_new_session_changes_nothing() {
    let mut world = World::new(41, Link::perfect());
    // Compatible profile: the tap reads the uids and session from a text head (alives are
    // the reference's in both profiles).
    let alpha = world.add(Spec::new("alpha", 7530).main().profile(Profile::Compat));
    let beta = world.add(Spec::new("beta", 7531).profile(Profile::Compat));
    world.connect(beta, alpha, LIMIT);
    let real = first_message_head(&mut world, alpha, beta);
    let forged = Head {
        tk: TransactionKind::Alive,
        pk: PacketKind::Request,
        bk: BodyKind::Json,
        ck: CoatKind::Nada,
        fk: FootKind::Nada,
        si: 0x4000_0000,
        ti: 7,
        ..real
    };
    let datagram = packet::pack(&forged, &[], None).unwrap();
    let attacker = addr(9999);
    for from in [attacker, beta] {
        world.net.inject(from, alpha, datagram.clone());
        world.settle(Duration::from_millis(200));
    }
    let dropped = world.peer_ref(alpha).road.stats().unsigned_packet;
    assert_eq!(dropped, 2, "both forged alives counted");
    for n in 1..=5 {
        assert!(deliver(&mut world, beta, n), "message {n} confirmed");
        assert_eq!(
            world.peer_ref(alpha).copies(n),
            1,
            "message {n} received once"
        );
    }
    assert!(world.peer_ref(beta).allowed("alpha"));
}
