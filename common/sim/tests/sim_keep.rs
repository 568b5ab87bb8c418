//! Restarts on the same keep and lost keeps (catalogue §2, §1.4 restart): a restarted
//! estate keeps its identity and uids and rejoins; an estate that lost its keep is
//! rejected (changed keys) or renewed (the main forgot it).

use std::net::SocketAddr;
use std::time::Duration;

use raet_proto::keep::{Acceptance, AutoMode, Keep, MemKeep};
use raet_proto::road::Event;
use raet_sim::world::{key_hexes, message, Spec, World};
use raet_sim::Link;
use zeroize::Zeroizing;

const LIMIT: Duration = Duration::from_secs(30);

/// alpha (main, `auto`) and beta joined and allowed on a perfect link.
fn joined_pair(auto: AutoMode) -> (World, SocketAddr, SocketAddr) {
    let mut world = World::new(11, Link::perfect());
    let alpha = world.add(Spec::new("alpha", 7530).main().auto(auto));
    let beta = world.add(Spec::new("beta", 7531).auto(auto));
    world.connect(beta, alpha, LIMIT);
    (world, alpha, beta)
}

/// Send one message each way and wait until both are delivered and confirmed.
fn exchange(world: &mut World, alpha: SocketAddr, beta: SocketAddr, n: u32) {
    let to_beta = world.uid(alpha, "beta");
    let to_alpha = world.uid(beta, "alpha");
    let a = world.send(alpha, to_beta, message("alpha", n, 3000));
    let b = world.send(beta, to_alpha, message("beta", n + 1, 3000));
    let outcome = world.run_until(LIMIT, |net| {
        net.node_ref(alpha).delivered(a) && net.node_ref(beta).delivered(b)
    });
    if let Err(e) = outcome {
        panic!("exchange {n} failed: {e}");
    }
    let got = |at: SocketAddr, from: &str, n: u32| {
        world
            .peer_ref(at)
            .messages()
            .filter(|(name, body)| *name == from && body.get("n") == Some(&n.into()))
            .count()
    };
    assert_eq!(got(beta, "alpha", n), 1);
    assert_eq!(got(alpha, "beta", n + 1), 1);
}

#[test]
fn restarted_joiner_keeps_identity_and_uids_and_rejoins() {
    let (mut world, alpha, beta) = joined_pair(AutoMode::Once);
    exchange(&mut world, alpha, beta, 1);
    let before = world.peer_ref(beta).remote("alpha").expect("alpha known");
    let key = world.peer_ref(beta).road.verify_key();
    let alpha_view = world.peer_ref(alpha).remote("beta").expect("beta known");

    world.restart(beta);
    let peer = world.peer_ref(beta);
    assert_eq!(peer.road.verify_key(), key, "same identity after restart");
    let after = peer.remote("alpha").expect("alpha restored from the keep");
    assert_eq!(
        (after.uid, after.fuid),
        (before.uid, before.fuid),
        "same uids"
    );
    assert_eq!(after.joined, Some(true), "joined is persisted");
    assert_ne!(after.allowed, Some(true), "allowed is not persisted");

    // The rejoin is non-vacuous: the main keeps its uid for beta, nothing is renewed.
    world.connect(beta, alpha, LIMIT);
    let again = world
        .peer_ref(alpha)
        .remote("beta")
        .expect("beta still known");
    assert_eq!((again.uid, again.fuid), (alpha_view.uid, alpha_view.fuid));
    assert_eq!(world.peer_ref(alpha).road.remotes().len(), 1);
    exchange(&mut world, alpha, beta, 10);
}

#[test]
fn restarted_main_is_allowed_again_and_messages_flow() {
    let (mut world, alpha, beta) = joined_pair(AutoMode::Once);
    exchange(&mut world, alpha, beta, 1);
    let uid = world.peer_ref(alpha).remote("beta").expect("beta").uid;
    world.restart(alpha);
    assert_eq!(
        world.peer_ref(alpha).remote("beta").map(|r| r.uid),
        Some(uid)
    );
    // Nobody calls join: presence (alive -> unallowed -> re-allow) repairs the session, and
    // a message sent meanwhile by beta is delivered once.
    exchange(&mut world, alpha, beta, 20);
}

#[test]
fn both_restarted_rejoin_from_either_side() {
    let (mut world, alpha, beta) = joined_pair(AutoMode::Once);
    world.restart(alpha);
    world.restart(beta);
    world.connect(beta, alpha, LIMIT);
    exchange(&mut world, alpha, beta, 1);
    // testRejoinFromMain: the main initiates the (non-vacuous) join this time.
    world.restart(alpha);
    world.restart(beta);
    world.connect(alpha, beta, LIMIT);
    exchange(&mut world, alpha, beta, 3);
}

/// testLostOtherKeep: beta loses everything and comes back with new keys; the main (auto
/// once) still remembers beta's old keys and rejects it. With its old keys beta is accepted.
#[test]
fn joiner_that_lost_its_keep_with_new_keys_is_rejected_by_once() {
    let (mut world, alpha, beta) = joined_pair(AutoMode::Once);
    let old = world.crash(beta);
    let mut spec = old.spec.clone();
    spec.keys = spec.keys.wrapping_add(1);
    world.add_on(spec, MemKeep::new());
    world.join(beta, alpha);
    world.settle(Duration::from_secs(3));
    assert!(
        world.peer_ref(beta).road.remotes().is_empty(),
        "rejected: beta drops alpha"
    );
    assert!(
        world
            .peer_ref(beta)
            .count(|e| matches!(e, Event::Rejected { .. }))
            > 0,
        "beta is told"
    );
    assert!(
        world.peer_ref(alpha).remote("beta").is_some(),
        "the main remembers beta"
    );
    let pinned = world
        .peer_ref(alpha)
        .keep
        .load_role("beta")
        .expect("keep readable");
    assert_eq!(
        pinned.map(|r| r.verhex),
        Some(key_hexes(old.spec.keys).0),
        "the pinned keys are not replaced by the rejected ones"
    );

    // Same name, old keys, fresh keep: accepted again.
    world.crash(beta);
    world.add_on(old.spec, MemKeep::new());
    world.connect(beta, alpha, LIMIT);
    exchange(&mut world, alpha, beta, 1);
}

/// testLostMainKeep: the main loses its road data (same keys): beta's non-vacuous join is
/// answered with renew; an immutable beta refuses it, a mutable one renews (vacuous join)
/// and is joined again.
#[test]
fn main_that_lost_its_keep_is_renewed_by_a_mutable_joiner_only() {
    let (mut world, alpha, beta) = joined_pair(AutoMode::Once);
    let main = world.crash(alpha);
    world.add_on(main.spec.clone(), MemKeep::new());
    world.join(beta, alpha);
    world.settle(Duration::from_secs(3));
    assert!(
        world
            .peer_ref(beta)
            .count(|e| matches!(e, Event::JoinFailed { .. }))
            > 0,
        "immutable beta refuses the renew"
    );
    assert!(!world.peer_ref(beta).allowed("alpha"));

    // beta restarts as a mutable road on its own keep (it still knows alpha's old uids).
    let old = world.crash(beta);
    let mut spec = old.spec;
    spec.mutable = true;
    world.add_on(spec, old.keep);
    world.connect(beta, alpha, LIMIT);
    exchange(&mut world, alpha, beta, 1);
    assert_eq!(world.peer_ref(alpha).road.remotes().len(), 1);
    drop(main);
}

/// testPendingSavedKeep: a join pending on the main's operator (auto never) survives a
/// restart of both estates as the pending role record; the joiner, a first contact, lives
/// in memory only (nothing of it is written before its join completes), so after the
/// restart it asks again, and accepting then lets the join complete.
#[test]
fn a_pending_role_survives_restarts_and_the_join_completes_when_accepted() {
    let mut world = World::new(12, Link::perfect());
    let alpha = world.add(Spec::new("alpha", 7530).main().auto(AutoMode::Never));
    let beta = world.add(Spec::new("beta", 7531));
    world.join(beta, alpha);
    world.settle(Duration::from_secs(1));
    let pending = |world: &World| {
        world
            .peer_ref(alpha)
            .remote("beta")
            .and_then(|r| r.acceptance)
    };
    assert_eq!(pending(&world), Some(Acceptance::Pending));
    assert!(!world.peer_ref(beta).joined("alpha"));
    let keep = world.peer_ref(alpha).keep.clone();
    assert_eq!(
        keep.load_remotes().expect("keep").len(),
        0,
        "a first contact was written"
    );

    world.restart(alpha);
    world.restart(beta);
    assert_eq!(
        pending(&world),
        None,
        "a first contact came back from the keep"
    );
    let role = keep
        .load_role("beta")
        .expect("keep")
        .expect("pending role kept");
    assert_eq!(role.acceptance, Acceptance::Pending);
    world.join(beta, alpha);
    let asked = |ev: &Event| matches!(ev, Event::Pending { name, .. } if name == "beta");
    world
        .wait_for(alpha, LIMIT, asked)
        .expect("beta pending again");
    let now = world.net.now();
    world
        .peer(alpha)
        .road
        .accept(now, "beta")
        .expect("operator accepts");
    world.connect(beta, alpha, LIMIT);
    assert_eq!(pending(&world), Some(Acceptance::Accepted));
    assert_eq!(
        keep.load_remotes().expect("keep").len(),
        1,
        "beta written once joined"
    );
    exchange(&mut world, alpha, beta, 1);
}

/// testLostMainKeepLocal: the main comes back with new long-term keys (its keep's local
/// keys replaced); beta (auto once) pinned the old ones and rejects the main.
#[test]
fn a_main_with_new_keys_is_rejected_by_a_once_joiner() {
    let (mut world, alpha, beta) = joined_pair(AutoMode::Once);
    let mut main = world.crash(alpha);
    let mut local = main
        .keep
        .load_local()
        .expect("keep readable")
        .expect("local estate saved");
    local.sign_seed = Zeroizing::new([0xa5; 32]);
    local.private_key = Zeroizing::new([0x5a; 32]);
    main.keep.save_local(&local).expect("keep writable");
    world.add_on(main.spec, main.keep);
    world.join(beta, alpha);
    world.settle(Duration::from_secs(3));
    assert!(
        !world.peer_ref(beta).allowed("alpha"),
        "a rejected main is not allowed"
    );
    assert!(
        world
            .peer_ref(beta)
            .count(|e| matches!(e, Event::Rejected { .. }))
            > 0,
        "beta rejects the main's changed keys"
    );
}
