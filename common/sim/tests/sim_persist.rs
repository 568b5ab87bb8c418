//! The road's persistence as output: the persist ops it emits for a start, a join, an
//! operator's accept or reject, a removal and a restart; a restart from the snapshot those
//! ops build; and its role reads (a pended join noticing a decision written into the keep, a
//! remembered rejection confirmed by the keep before it rejects a join request).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use raet_proto::keep::{apply_now, Acceptance, AutoMode, MemKeep, PersistOp, Snapshot};
use raet_proto::road::{Event, Road, RoadConfig};
use raet_sim::world::{keys, role_record};
use raet_sim::{Link, SimNet};

const LIMIT: Duration = Duration::from_secs(20);
const MAIN: u16 = 7700;
const OTHER: u16 = 7701;
/// The key seeds of the two estates.
const MAIN_KEYS: u8 = 1;
const OTHER_KEYS: u8 = 2;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The road `alpha` (main) or `beta` built from `snapshot`.
fn road(port: u16, auto: AutoMode, snapshot: Snapshot, now: Instant) -> Road {
    road_with(port, auto, snapshot, now, |_| {})
}

/// [`road`] with its configuration changed by `tune`.
fn road_with(
    port: u16,
    auto: AutoMode,
    snapshot: Snapshot,
    now: Instant,
    tune: impl FnOnce(&mut RoadConfig),
) -> Road {
    let main = port == MAIN;
    let name = if main { "alpha" } else { "beta" };
    let mut config = RoadConfig::new(name, addr(port));
    config.main = main;
    config.auto = auto;
    tune(&mut config);
    let seed = if main { MAIN_KEYS } else { OTHER_KEYS };
    Road::new(config, Some(keys(seed)), snapshot, [seed; 32], now).expect("road")
}

/// Every op the road has queued.
fn drain(road: &mut Road) -> Vec<PersistOp> {
    std::iter::from_fn(|| road.poll_persist()).collect()
}

/// Each op as (kind, the name or role it concerns, the acceptance of a saved role).
fn summary(ops: &[PersistOp]) -> Vec<(&'static str, String, Option<Acceptance>)> {
    ops.iter()
        .map(|op| {
            let (key, acceptance) = match op {
                PersistOp::SaveLocal(l) => (l.name.clone(), None),
                PersistOp::SaveRemote(r) => (r.name.clone(), None),
                PersistOp::RemoveRemote { name } => (name.clone(), None),
                PersistOp::SaveRole(r) => (r.role.clone(), Some(r.acceptance)),
                PersistOp::RemoveRole { role } | PersistOp::LoadRole { role } => {
                    (role.clone(), None)
                }
            };
            (op.kind(), key, acceptance)
        })
        .collect()
}

fn op(
    kind: &'static str,
    key: &str,
    acceptance: Option<Acceptance>,
) -> (&'static str, String, Option<Acceptance>) {
    (kind, key.to_owned(), acceptance)
}

/// alpha (main, `auto`) and beta (auto always) on a perfect link, beta's join to alpha
/// started (nothing drained: each road's first op is its local record).
fn pair(auto: AutoMode) -> SimNet<Road> {
    let mut net: SimNet<Road> = SimNet::new(5, Link::perfect());
    let now = net.now();
    net.add(addr(MAIN), road(MAIN, auto, Snapshot::default(), now));
    net.add(
        addr(OTHER),
        road(OTHER, AutoMode::Always, Snapshot::default(), now),
    );
    net.node(addr(OTHER)).join(now, addr(MAIN)).expect("join");
    net
}

/// Runs until beta has alpha allowed.
fn allowed(net: &mut SimNet<Road>) {
    net.run_until(LIMIT, |n| {
        n.node_ref(addr(OTHER))
            .remotes()
            .first()
            .is_some_and(|r| r.allowed == Some(true))
    })
    .expect("allowed");
}

/// Runs until alpha has beta pending.
fn pending(net: &mut SimNet<Road>) {
    net.run_until(LIMIT, |n| {
        n.node_ref(addr(MAIN))
            .remotes()
            .iter()
            .any(|r| r.acceptance == Some(Acceptance::Pending))
    })
    .expect("pending");
}

fn has_event(road: &mut Road, pred: impl Fn(&Event) -> bool) -> bool {
    std::iter::from_fn(|| road.poll_event()).any(|e| pred(&e))
}

#[test]
fn a_join_saves_the_remote_and_its_role_on_both_sides() {
    let mut net = pair(AutoMode::Once);
    allowed(&mut net);
    let main_ops = summary(&drain(net.node(addr(MAIN))));
    assert_eq!(
        main_ops.get(..2),
        Some(
            &[
                op("save_local", "alpha", None),
                op("save_role", "beta", Some(Acceptance::Accepted))
            ][..]
        ),
        "{main_ops:?}"
    );
    // Then the remote as the join goes on, and our record again with its new session id.
    let later = [
        op("save_remote", "beta", None),
        op("save_local", "alpha", None),
    ];
    assert!(
        main_ops.iter().skip(2).all(|o| later.contains(o)),
        "{main_ops:?}"
    );
    let other_ops = summary(&drain(net.node(addr(OTHER))));
    assert_eq!(other_ops.first(), Some(&op("save_local", "beta", None)));
    for expected in [
        op("save_role", "alpha", Some(Acceptance::Accepted)),
        op("save_remote", "alpha", None),
    ] {
        assert!(other_ops.contains(&expected), "{other_ops:?}");
    }
    assert!(
        !other_ops
            .iter()
            .any(|o| o.0.starts_with("remove") || o.0 == "load_role"),
        "{other_ops:?}"
    );
}

#[test]
fn pending_accept_reject_and_remove_emit_role_and_remote_ops() {
    let mut net = pair(AutoMode::Never);
    pending(&mut net);
    // A pending first contact is not written: only the pending role, for the operator.
    let ops = summary(&drain(net.node(addr(MAIN))));
    assert_eq!(
        ops,
        [
            op("save_local", "alpha", None),
            op("save_role", "beta", Some(Acceptance::Pending))
        ]
    );
    let now = net.now();
    net.node(addr(MAIN)).accept(now, "beta").expect("accept");
    let ops = summary(&drain(net.node(addr(MAIN))));
    assert_eq!(
        ops.first(),
        Some(&op("save_role", "beta", Some(Acceptance::Accepted))),
        "{ops:?}"
    );
    allowed(&mut net);
    drain(net.node(addr(MAIN)));

    let now = net.now();
    net.node(addr(MAIN)).reject(now, "beta").expect("reject");
    let ops = summary(&drain(net.node(addr(MAIN))));
    assert_eq!(
        ops,
        [
            op("save_role", "beta", Some(Acceptance::Rejected)),
            op("remove_remote", "beta", None)
        ]
    );

    let now = net.now();
    let uid = net.node(addr(OTHER)).remotes()[0].uid;
    drain(net.node(addr(OTHER)));
    net.node(addr(OTHER)).remove(now, uid).expect("remove");
    assert_eq!(
        summary(&drain(net.node(addr(OTHER)))),
        [op("remove_remote", "alpha", None)]
    );
    net.node(addr(MAIN)).forget_role("beta");
    assert_eq!(
        summary(&drain(net.node(addr(MAIN)))),
        [op("remove_role", "beta", None)]
    );
}

#[test]
fn a_restart_from_the_applied_ops_restores_the_same_remotes() {
    let mut net = pair(AutoMode::Once);
    allowed(&mut net);
    let now = net.now();
    for port in [MAIN, OTHER] {
        let mut keep = MemKeep::new();
        let before = net.node_ref(addr(port)).remotes();
        assert_eq!(apply_now(net.node(addr(port)), &mut keep, now), 0);
        let snapshot = Snapshot::load(&keep).expect("keep");
        assert_eq!(snapshot.remotes.len(), 1);
        let mut restarted = road(port, AutoMode::Once, snapshot, now);
        let after = restarted.remotes();
        assert_eq!(after.len(), 1);
        let (b, a) = (&before[0], &after[0]);
        assert_eq!(
            (a.uid, a.fuid, &a.name, &a.role, a.acceptance, a.joined),
            (b.uid, b.fuid, &b.name, &b.role, b.acceptance, b.joined)
        );
        assert_eq!((&a.verhex, &a.pubhex), (&b.verhex, &b.pubhex));
        assert_eq!(a.allowed, None, "a restarted road allows again");
        let name = restarted.name().to_owned();
        assert_eq!(
            summary(&drain(&mut restarted)),
            [
                op("save_local", &name, None),
                op("save_remote", &b.name, None)
            ],
            "the restored remote is saved with its new session"
        );
    }
}

#[test]
fn a_pended_join_asks_the_keep_and_an_accept_written_there_completes_it() {
    let mut net = pair(AutoMode::Never);
    pending(&mut net);
    drain(net.node(addr(MAIN)));
    // The joinent's redo asks for beta's role.
    let read = PersistOp::LoadRole {
        role: "beta".into(),
    };
    net.run_until(LIMIT, |n| {
        n.node(addr(MAIN)).poll_persist() == Some(read.clone())
    })
    .expect("a role read");
    // The keep says accepted (an operator wrote it there): the join is accepted.
    let now = net.now();
    let main = net.node(addr(MAIN));
    let accepted = role_record("beta", Acceptance::Accepted, OTHER_KEYS);
    main.role_loaded(now, "beta", Some(accepted));
    assert_eq!(main.stats().stale_role_load, 0);
    assert!(
        main.poll_transmit().is_some(),
        "the join is answered at once"
    );
    // A second answer, unasked for, is stale and changes nothing.
    main.role_loaded(now, "beta", None);
    assert_eq!(main.stats().stale_role_load, 1);
    assert_eq!(main.remotes()[0].acceptance, Some(Acceptance::Accepted));
    allowed(&mut net);
}

#[test]
fn a_remembered_rejection_is_confirmed_by_the_keep_before_a_join_uses_it() {
    let mut net: SimNet<Road> = SimNet::new(6, Link::perfect());
    let now = net.now();
    let rejected = Snapshot {
        roles: vec![role_record("beta", Acceptance::Rejected, OTHER_KEYS)],
        ..Snapshot::default()
    };
    net.add(addr(MAIN), road(MAIN, AutoMode::Never, rejected, now));
    net.add(
        addr(OTHER),
        road(OTHER, AutoMode::Always, Snapshot::default(), now),
    );
    drain(net.node(addr(MAIN)));
    net.node(addr(OTHER)).join(now, addr(MAIN)).expect("join");
    net.run_until(LIMIT, |n| n.node_ref(addr(MAIN)).stats().join_held > 0)
        .expect("held");
    let now = net.now();
    let main = net.node(addr(MAIN));
    assert_eq!(summary(&drain(main)), [op("load_role", "beta", None)]);
    // The operator undid the rejection in the keep: the held join is decided again, pending.
    main.role_loaded(now, "beta", None);
    assert!(has_event(
        main,
        |e| matches!(e, Event::Pending { name, verhex, .. } if name == "beta" && !verhex.is_empty())
    ));
    assert_eq!(
        summary(&drain(main)).first(),
        Some(&op("save_role", "beta", Some(Acceptance::Pending)))
    );
}

/// beta's join loop as the daemons run it: the remotes at alpha's address are forgotten and
/// alpha is joined again (vacuously, a new uid).
fn rejoin(net: &mut SimNet<Road>) {
    let now = net.now();
    let beta = net.node(addr(OTHER));
    for remote in beta.remotes() {
        beta.remove(now, remote.uid).expect("remove");
    }
    beta.join(now, addr(MAIN)).expect("join");
}

/// alpha and beta allowed; alpha stops, beta forgets it and joins again while it is down;
/// alpha restarts from its keep with a message queued for beta. Returns the net and the
/// instant of the restart.
fn restart_while_rejoining() -> (SimNet<Road>, Instant) {
    let mut net = pair(AutoMode::Always);
    allowed(&mut net);
    let now = net.now();
    let mut keep = MemKeep::new();
    assert_eq!(apply_now(net.node(addr(MAIN)), &mut keep, now), 0);
    let snapshot = Snapshot::load(&keep).expect("keep");
    net.remove(addr(MAIN));
    rejoin(&mut net);
    net.run_for(Duration::from_secs(2))
        .expect("run while alpha is down");
    let restarted = net.now();
    // mutable, as salt-raet-master's road: a rejoin under a new uid is taken
    let mut alpha = road_with(MAIN, AutoMode::Always, snapshot, restarted, |c| {
        c.mutable = true;
    });
    let beta_uid = alpha.remotes()[0].uid;
    let mut body = serde_json::Map::new();
    body.insert("queued".into(), true.into());
    alpha.send(restarted, beta_uid, body).expect("queue");
    net.add(addr(MAIN), alpha);
    (net, restarted)
}

/// A main restarted after its joiner gave it up and joins it again (the syndic's daemon
/// joining its restarted master of masters, a minion whose master was down longer than
/// presence allows), with messages queued for the joiner: the restored remote's allow,
/// started at once for them, is addressed to the joiner's old session, and it must not
/// outlive the new join (it refused the joiner's own allow, the smaller name winning the
/// race, until it timed out: about 11 s of join and allow failures).
#[test]
fn a_main_restarted_while_its_joiner_rejoins_is_allowed_again_without_a_stale_allow() {
    let (mut net, restarted) = restart_while_rejoining();
    // beta's loop: a failed join or allow is followed by a new join
    let mut failures = 0;
    while !net
        .node_ref(addr(OTHER))
        .remotes()
        .iter()
        .any(|r| r.allowed == Some(true))
    {
        assert!(net.now() - restarted < LIMIT, "beta never allowed");
        net.run_for(Duration::from_millis(100)).expect("run");
        let failed = std::iter::from_fn(|| net.node(addr(OTHER)).poll_event())
            .filter(|e| matches!(e, Event::JoinFailed { .. } | Event::AllowFailed { .. }))
            .count();
        if failed > 0 {
            failures += failed;
            rejoin(&mut net);
        }
    }
    let took = net.now() - restarted;
    assert!(
        took < Duration::from_secs(3),
        "allowed {took:?} after alpha's restart, {failures} failed joins or allows"
    );
    // and the message queued at the restart went once beta's allow completed
    assert!(has_event(net.node(addr(MAIN)), |e| matches!(
        e,
        Event::Delivered { .. }
    )));
}
