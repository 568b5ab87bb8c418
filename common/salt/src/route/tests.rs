//! Tests of the routing table's decisions between lanes and roads.

use serde_json::json;

use super::*;

fn body(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn peers(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn register(table: &mut RouteTable, yard: &str, load: Value) {
    let msg = body(
        json!({"route": {"src": [null, yard, null], "dst": [null, "manor", "register"]}, "load": load}),
    );
    assert_eq!(
        table.from_lane("master", yard, &msg, &peers(&[])),
        Action::Registered(yard.to_owned())
    );
}

fn error_kind(action: &Action) -> Option<String> {
    let env = match action {
        Action::Road(_, env) | Action::Local(_, env) => env,
        _ => return None,
    };
    env.load
        .get("kind")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// `action` answers local yard `yard` with an error of `kind` carrying request id `rid`.
fn assert_error_to_yard(action: Action, kind: &str, yard: &str, rid: &str) {
    assert_eq!(error_kind(&action).as_deref(), Some(kind));
    match action {
        Action::Local(to, reply) => {
            assert_eq!(to, yard);
            assert_eq!(reply.load.get(RID), Some(&json!(rid)));
        }
        other => panic!("error not returned to the sender: {other:?}"),
    }
}

#[test]
fn envelope_round_trips_through_its_body() {
    let msg = body(
        json!({"route": {"src": ["m1", "y", null], "dst": [["a", "b"], null, "cmd"]}, "load": {"x": 1}}),
    );
    let env = Envelope::parse(&msg).unwrap();
    assert_eq!(
        env.dst_estate,
        DstEstate::Many(vec!["a".into(), "b".into()])
    );
    assert_eq!(env.to_body(), msg);
    let all =
        body(json!({"route": {"src": [null, "y", null], "dst": ["*", null, "s"]}, "load": {}}));
    assert_eq!(Envelope::parse(&all).unwrap().dst_estate, DstEstate::All);
}

#[test]
fn malformed_envelopes_are_errors() {
    for bad in [
        json!({}),
        json!({"route": {"src": [null, "y"], "dst": [null, null, "s"]}}),
        json!({"route": {"src": [null, "y", null], "dst": [5, null, "s"]}}),
        json!({"route": {"src": [null, "y", null], "dst": [null, null, "s"]}, "load": 3}),
        json!({"route": {"src": [null, 1, null], "dst": [null, null, "s"]}}),
    ] {
        assert!(Envelope::parse(&body(bad.clone())).is_err(), "{bad}");
    }
}

#[test]
fn lane_message_to_a_joined_minion_goes_over_the_road_with_our_estate() {
    let mut t = RouteTable::new();
    let msg = body(
        json!({"route": {"src": ["spoofed", "x", null], "dst": ["m1", null, "job"]}, "load": {"a": 1}}),
    );
    match t.from_lane("master", "pub", &msg, &peers(&["m1", "m2"])) {
        Action::Road(to, env) => {
            assert_eq!(to, vec!["m1".to_owned()]);
            assert_eq!(env.src[0].as_deref(), Some("master"));
            assert_eq!(env.src[1].as_deref(), Some("pub"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn star_goes_to_every_peer_and_lists_must_all_be_joined() {
    let mut t = RouteTable::new();
    let p = peers(&["m1", "m2"]);
    let all =
        body(json!({"route": {"src": [null, "pub", null], "dst": ["*", null, "job"]}, "load": {}}));
    assert!(
        matches!(t.from_lane("master", "pub", &all, &p), Action::Road(to, _) if to == ["m1", "m2"])
    );
    let list = body(
        json!({"route": {"src": [null, "pub", null], "dst": [["m1", "m9"], null, "job"]}, "load": {}}),
    );
    let action = t.from_lane("master", "pub", &list, &p);
    assert_eq!(error_kind(&action).as_deref(), Some("unknown_estate"));
    assert!(matches!(action, Action::Local(ref y, _) if y == "pub"));
    assert_eq!(t.counters().get("unknown_estate"), Some(&1));
}

#[test]
fn road_message_goes_to_the_yard_registered_for_its_share() {
    let mut t = RouteTable::new();
    register(&mut t, "jobs", json!({"shares": ["job"]}));
    let msg = body(
        json!({"route": {"src": ["liar", "caller", null], "dst": [null, null, "job"]}, "load": {}}),
    );
    match t.from_road("m1", "master", &msg) {
        Action::Local(yard, env) => {
            assert_eq!(yard, "jobs");
            assert_eq!(env.src[0].as_deref(), Some("master"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unregistered_share_is_answered_over_the_road() {
    let mut t = RouteTable::new();
    let msg = body(
        json!({"route": {"src": [null, "caller", null], "dst": [null, null, "nope"]}, "load": {}}),
    );
    let action = t.from_road("m1", "master", &msg);
    assert_eq!(error_kind(&action).as_deref(), Some("unknown_share"));
    match action {
        Action::Road(to, env) => {
            assert_eq!(to, vec!["master".to_owned()]);
            assert_eq!(env.dst_yard.as_deref(), Some("caller"));
            assert_eq!(env.src[0].as_deref(), Some("m1"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn restrictions_refuse_other_sources_and_are_counted() {
    let mut t = RouteTable::new();
    register(
        &mut t,
        "jobs",
        json!({"shares": ["job", "ret"], "accept": {"job": ["m1"]}}),
    );
    let msg = body(
        json!({"route": {"src": [null, "c", null], "dst": [null, "jobs", "job"]}, "load": {}}),
    );
    assert!(matches!(
        t.from_road("master", "m1", &msg),
        Action::Local(..)
    ));
    let refused = t.from_road("master", "m2", &msg);
    assert_eq!(error_kind(&refused).as_deref(), Some("refused"));
    assert_eq!(t.counters().get("refused"), Some(&1));
    // A share not listed in `accept` is open to every source.
    let other = body(
        json!({"route": {"src": [null, "c", null], "dst": [null, "jobs", "ret"]}, "load": {}}),
    );
    assert!(matches!(
        t.from_road("master", "m2", &other),
        Action::Local(..)
    ));
}

#[test]
fn errors_are_never_answered_with_errors() {
    let mut t = RouteTable::new();
    let err = reply_error(
        DstEstate::Local,
        Some("gone".into()),
        "m1",
        ErrorKind::NoSuchYard,
        "x",
    );
    let mut env = err.clone();
    env.dst_yard = None;
    assert_eq!(
        t.from_road("master", "m1", &env.to_body()),
        Action::Drop(ErrorKind::UnknownShare)
    );
}

#[test]
fn bad_lane_envelope_is_answered_to_the_sending_yard() {
    let mut t = RouteTable::new();
    let action = t.from_lane("master", "y", &body(json!({"x": 1})), &peers(&[]));
    assert_eq!(error_kind(&action).as_deref(), Some("bad_envelope"));
    assert!(matches!(action, Action::Local(ref y, _) if y == "y"));
    assert_eq!(
        t.from_road("master", "m1", &body(json!({"x": 1}))),
        Action::Drop(ErrorKind::BadEnvelope)
    );
}

#[test]
fn status_and_register_are_for_the_daemon_and_forget_unregisters() {
    let mut t = RouteTable::new();
    let status = body(
        json!({"route": {"src": [null, "cli", null], "dst": [null, "manor", "status"]}, "load": {}}),
    );
    assert_eq!(
        t.from_lane("master", "cli", &status, &peers(&[])),
        Action::Status("cli".into())
    );
    register(&mut t, "p", json!({"shares": ["presence"]}));
    assert_eq!(t.yards_for("presence"), vec!["p".to_owned()]);
    t.forget("p");
    assert!(t.yards_for("presence").is_empty());
    let bad = body(
        json!({"route": {"src": [null, "q", null], "dst": [null, "manor", "register"]}, "load": {"shares": 1}}),
    );
    assert_eq!(
        error_kind(&t.from_lane("master", "q", &bad, &peers(&[]))).as_deref(),
        Some("bad_envelope")
    );
}

#[test]
fn local_message_to_a_named_yard_is_delivered_locally() {
    let mut t = RouteTable::new();
    let msg =
        body(json!({"route": {"src": [null, "a", null], "dst": ["master", "b", "x"]}, "load": {}}));
    assert!(
        matches!(t.from_lane("master", "a", &msg, &peers(&[])), Action::Local(ref y, _) if y == "b")
    );
}

#[test]
fn requests_are_spread_round_robin_over_the_yards_of_a_share() {
    let mut t = RouteTable::new();
    register(&mut t, "w1", json!({"shares": ["req"]}));
    register(&mut t, "w2", json!({"shares": ["req"]}));
    let msg =
        body(json!({"route": {"src": [null, "c", null], "dst": [null, null, "req"]}, "load": {}}));
    let yards: Vec<String> = (0..4)
        .map(|_| match t.from_lane("master", "c", &msg, &peers(&[])) {
            Action::Local(yard, _) => yard,
            other => panic!("not delivered locally: {other:?}"),
        })
        .collect();
    assert_eq!(yards, ["w1", "w2", "w1", "w2"]);
}

#[test]
fn a_minion_table_sends_unserved_shares_to_its_master() {
    let mut t = RouteTable::with_upstream();
    register(&mut t, "pubyard", json!({"shares": ["pub"]}));
    let req = body(
        json!({"route": {"src": [null, "c", null], "dst": [null, null, "req"]}, "load": {"rid": "r1"}}),
    );
    match t.from_lane("m1", "c", &req, &peers(&["master_a"])) {
        Action::Road(estates, env) => {
            assert_eq!(estates, ["master_a"]);
            assert_eq!(env.src[0].as_deref(), Some("m1"));
        }
        other => panic!("not sent upstream: {other:?}"),
    }
    // a served share stays local, even with a master joined
    let publ =
        body(json!({"route": {"src": [null, "c", null], "dst": [null, null, "pub"]}, "load": {}}));
    assert!(matches!(
        t.from_lane("m1", "c", &publ, &peers(&["master_a"])),
        Action::Local(y, _) if y == "pubyard"
    ));
    // no master joined: held for the next master session
    let action = t.from_lane("m1", "c", &req, &peers(&[]));
    assert!(
        matches!(&action, Action::Hold(env) if env.load["rid"] == "r1"),
        "{action:?}"
    );
    assert_eq!(t.counters().get("held"), Some(&1));
}

#[test]
fn a_master_table_does_not_forward_unserved_shares() {
    let mut t = RouteTable::new();
    let req =
        body(json!({"route": {"src": [null, "c", null], "dst": [null, null, "req"]}, "load": {}}));
    let action = t.from_lane("master", "c", &req, &peers(&["m1"]));
    assert_eq!(error_kind(&action).as_deref(), Some("unknown_share"));
}

#[test]
fn a_share_message_whose_yard_is_gone_goes_to_another_yard_of_the_share() {
    let mut t = RouteTable::new();
    register(&mut t, "dead", json!({"shares": ["pub"]}));
    register(&mut t, "live", json!({"shares": ["pub"]}));
    let publ = body(
        json!({"route": {"src": ["master", "p", null], "dst": [null, null, "pub"]}, "load": {}}),
    );
    let Action::Local(first, env) = t.from_road("m1", "master", &publ) else {
        panic!("not delivered locally");
    };
    assert_eq!(first, "dead");
    t.forget(&first);
    assert!(matches!(t.undelivered("m1", &first, env.clone()), Action::Local(y, _) if y == "live"));
    // the last yard gone too: the sender learns that no yard serves the share
    t.forget("live");
    assert_eq!(
        error_kind(&t.undelivered("m1", "live", env)).as_deref(),
        Some("unknown_share")
    );
    // a message for a named yard is not redirected
    let named = Envelope::parse(&body(
        json!({"route": {"src": ["master", "p", null], "dst": [null, "gone", null]}, "load": {}}),
    ))
    .unwrap();
    assert_eq!(
        error_kind(&t.undelivered("m1", "gone", named)).as_deref(),
        Some("no_such_yard")
    );
}

/// A request from yard `c` of minion `m1` to share `req` (no local yard serves it).
fn upstream_request() -> Map<String, Value> {
    body(
        json!({"route": {"src": [null, "c", null], "dst": [null, null, "req"]}, "load": {"rid": "r9"}}),
    )
}

fn road_targets(action: &Action) -> Option<Vec<String>> {
    match action {
        Action::Road(estates, _) => Some(estates.clone()),
        _ => None,
    }
}

#[test]
fn upstream_goes_to_the_first_joined_master_in_configuration_order() {
    let mut t = RouteTable::with_upstream();
    t.set_upstreams(vec!["zeta".into(), "alpha".into()]);
    let req = upstream_request();
    let to = |t: &mut RouteTable, joined: &[&str]| {
        road_targets(&t.from_lane("m1", "c", &req, &peers(joined)))
    };
    // configuration order, not name order
    assert_eq!(to(&mut t, &["alpha", "zeta"]), Some(vec!["zeta".into()]));
    // the first one not joined (down, rejected, lost): the next one
    assert_eq!(to(&mut t, &["alpha"]), Some(vec!["alpha".into()]));
    // a joined peer not (yet) in the order comes after the listed ones
    assert_eq!(to(&mut t, &["beta", "alpha"]), Some(vec!["alpha".into()]));
    assert_eq!(to(&mut t, &["beta"]), Some(vec!["beta".into()]));
    assert_eq!(t.counters().get("routed_upstream"), Some(&4));
    // none joined: held for the next master session (the daemon bounds the wait)
    let action = t.from_lane("m1", "c", &req, &peers(&[]));
    assert!(matches!(action, Action::Hold(_)), "{action:?}");
}

#[test]
fn a_message_naming_a_master_goes_to_that_master_only() {
    let mut t = RouteTable::with_upstream();
    t.set_upstreams(vec!["zeta".into(), "alpha".into()]);
    let named = body(
        json!({"route": {"src": [null, "c", null], "dst": ["alpha", null, "req"]}, "load": {}}),
    );
    let joined = peers(&["alpha", "zeta"]);
    assert_eq!(
        road_targets(&t.from_lane("m1", "c", &named, &joined)),
        Some(vec!["alpha".into()])
    );
    // not joined: an error, never another master
    let action = t.from_lane("m1", "c", &named, &peers(&["zeta"]));
    assert_eq!(error_kind(&action).as_deref(), Some("unknown_estate"));
    // its send failure is answered, not failed over
    let Action::Road(_, env) = t.from_lane("m1", "c", &named, &joined) else {
        panic!("not routed");
    };
    let action = t.failover("m1", env, "alpha", "to alpha: timed out", &joined);
    assert_eq!(error_kind(&action).as_deref(), Some("send_failed"));
}

#[test]
fn an_upstream_send_failure_fails_over_to_the_next_master_then_answers() {
    let mut t = RouteTable::with_upstream();
    t.set_upstreams(vec!["m_a".into(), "m_b".into(), "m_c".into()]);
    let joined = peers(&["m_a", "m_b", "m_c"]);
    let Action::Road(first, env) = t.from_lane("m1", "c", &upstream_request(), &joined) else {
        panic!("not routed upstream");
    };
    assert_eq!(first, ["m_a"]);
    let cases: [(&str, &[&str], &str); 3] = [
        ("m_a", &["m_a", "m_b", "m_c"], "m_b"),
        // m_b lost meanwhile: straight to m_c
        ("m_a", &["m_a", "m_c"], "m_c"),
        // a failed master no longer joined is skipped too
        ("m_b", &["m_a", "m_c"], "m_c"),
    ];
    for (failed, joined, next) in cases {
        let action = t.failover("m1", env.clone(), failed, "gone", &peers(joined));
        assert_eq!(
            road_targets(&action),
            Some(vec![next.to_owned()]),
            "{failed}"
        );
    }
    assert_eq!(t.counters().get("failover"), Some(&3));
    // the last one failed: the sender gets the error with its request id
    let action = t.failover("m1", env.clone(), "m_c", "to m_c: gone", &joined);
    assert_error_to_yard(action, "send_failed", "c", "r9");
    assert_eq!(t.counters().get("send_failed"), Some(&1));
    // no master joined any more (their sessions ended): held for the next one
    let action = t.failover("m1", env, "m_c", "to m_c: removed", &peers(&[]));
    assert!(matches!(action, Action::Hold(_)), "{action:?}");
}

#[test]
fn a_master_table_never_fails_over() {
    let mut t = RouteTable::new();
    let msg =
        body(json!({"route": {"src": [null, "c", null], "dst": ["m2", null, "job"]}, "load": {}}));
    let Action::Road(_, env) = t.from_lane("master", "c", &msg, &peers(&["m2", "m3"])) else {
        panic!("not routed");
    };
    let action = t.failover("master", env, "m2", "gone", &peers(&["m2", "m3"]));
    assert_eq!(error_kind(&action).as_deref(), Some("send_failed"));
}

/// A road message from `src` (estate ignored, overwritten) to `dst`.
fn road_msg(src: Value, dst: Value, load: Value) -> Map<String, Value> {
    body(json!({"route": {"src": src, "dst": dst}, "load": load}))
}

#[test]
fn a_master_refuses_road_messages_naming_a_yard_that_does_not_serve_their_share() {
    let mut t = RouteTable::new();
    register(&mut t, "mworker1", json!({"shares": ["req"]}));
    // the publisher never registers a share: a minion cannot hand it a job to sign
    let job = json!({"rid": "r1", "salt": "am9i"});
    for dst in [
        json!([null, "publisher", null]),
        json!(["master", "publisher", "req"]),
        json!([null, "mworker1", null]),
        json!([null, "mworker1", "pub"]),
        json!([null, "manor", null]),
        json!([null, "manor", "register"]),
    ] {
        let action = t.from_road(
            "master",
            "m1",
            &road_msg(json!([null, "x", null]), dst.clone(), job.clone()),
        );
        assert_eq!(error_kind(&action).as_deref(), Some("refused"), "{dst}");
        match action {
            Action::Road(to, reply) => {
                assert_eq!(to, vec!["m1".to_owned()], "{dst}");
                assert_eq!(reply.dst_yard.as_deref(), Some("x"));
                assert_eq!(reply.load.get(RID), Some(&json!("r1")));
            }
            other => panic!("{dst}: not answered to the sender: {other:?}"),
        }
    }
    assert_eq!(t.counters().get("refused"), Some(&6));
    assert_eq!(t.counters().get("routed_local"), None);
    // a yard named with a share it serves is reached
    let named = road_msg(
        json!([null, "x", null]),
        json!([null, "mworker1", "req"]),
        json!({}),
    );
    assert!(matches!(t.from_road("master", "m1", &named), Action::Local(y, _) if y == "mworker1"));
    // a minion daemon's error reaches the named yard with its error, kind and rid only
    let mut err = reply_error(
        DstEstate::Local,
        Some("publisher".into()),
        "m1",
        ErrorKind::UnknownShare,
        "x",
    );
    err.load.insert(RID.into(), json!("r2"));
    err.load.insert("salt".into(), json!("am9i"));
    match t.from_road("master", "m1", &err.to_body()) {
        Action::Local(yard, env) => {
            assert_eq!(yard, "publisher");
            let keys: Vec<&str> = env.load.keys().map(String::as_str).collect();
            assert_eq!(keys, ["error", "kind", "rid"]);
        }
        other => panic!("{other:?}"),
    }
    // but never the daemon's own yard (an error is dropped, not answered)
    err.dst_yard = Some(MANOR.into());
    assert_eq!(
        t.from_road("master", "m1", &err.to_body()),
        Action::Drop(ErrorKind::Refused)
    );
}

#[test]
fn a_master_refuses_a_named_yard_whose_restriction_excludes_the_source() {
    let mut t = RouteTable::new();
    register(
        &mut t,
        "jobs",
        json!({"shares": ["job"], "accept": {"job": ["m1"]}}),
    );
    let msg = road_msg(
        json!([null, "c", null]),
        json!([null, "jobs", "job"]),
        json!({}),
    );
    assert!(matches!(
        t.from_road("master", "m1", &msg),
        Action::Local(..)
    ));
    assert_eq!(
        error_kind(&t.from_road("master", "m2", &msg)).as_deref(),
        Some("refused")
    );
}

/// A minion table whose master `master` joined.
fn minion_table() -> RouteTable {
    let mut t = RouteTable::with_upstream();
    t.set_upstreams(vec!["master".into()]);
    register(&mut t, "sub", json!({"shares": ["pub", "presence"]}));
    t
}

#[test]
fn a_minion_delivers_its_masters_replies_to_the_asking_yard() {
    let mut t = minion_table();
    let reply = road_msg(
        json!([null, "mworker1", null]),
        json!(["m1", "req5x0", null]),
        json!({"rid": "r"}),
    );
    assert!(matches!(t.from_road("m1", "master", &reply), Action::Local(y, _) if y == "req5x0"));
    // the master daemon's own error (a transient unknown_share) reaches the asking yard too
    let err = reply_error(
        DstEstate::One("m1".into()),
        Some("req5x0".into()),
        "master",
        ErrorKind::UnknownShare,
        "x",
    );
    assert!(
        matches!(t.from_road("m1", "master", &err.to_body()), Action::Local(y, _) if y == "req5x0")
    );
    // a publication goes to the yard serving pub
    let publ = road_msg(
        json!([null, "pub1", null]),
        json!(["m1", null, "pub"]),
        json!({}),
    );
    assert!(matches!(t.from_road("m1", "master", &publ), Action::Local(y, _) if y == "sub"));
    // an estate that is not one of its masters names no yard, and nobody names the manor
    let stranger = t.from_road("m1", "other", &reply);
    assert_eq!(error_kind(&stranger).as_deref(), Some("refused"));
    let manor = road_msg(
        json!([null, "x", null]),
        json!([null, "manor", "register"]),
        json!({}),
    );
    assert_eq!(
        error_kind(&t.from_road("m1", "master", &manor)).as_deref(),
        Some("refused")
    );
    assert_eq!(t.counters().get("refused"), Some(&2));
}

#[test]
fn a_road_message_from_the_daemons_yard_is_dropped_unless_a_daemon_error() {
    let mut t = RouteTable::new();
    register(&mut t, "mworker1", json!({"shares": ["req"]}));
    // a fake "registered" reply handed to the request workers
    for fake in [
        json!({"estate": "m1", "registered": true}),
        json!({"estate": "m1", "error": 1, "kind": 2}),
    ] {
        let msg = road_msg(
            json!([null, "manor", "register"]),
            json!([null, null, "req"]),
            fake,
        );
        assert_eq!(
            t.from_road("master", "m1", &msg),
            Action::Drop(ErrorKind::ReservedYard)
        );
    }
    let status = road_msg(
        json!(["master", "manor", null]),
        json!([null, null, "req"]),
        json!({}),
    );
    assert_eq!(
        t.from_road("master", "m1", &status),
        Action::Drop(ErrorKind::ReservedYard)
    );
    assert_eq!(t.counters().get("reserved_yard"), Some(&3));
    assert_eq!(t.counters().get("routed_local"), None);
}

#[test]
fn round_robin_positions_exist_only_for_served_shares() {
    let mut t = RouteTable::new();
    for i in 0..50 {
        let msg = road_msg(
            json!([null, "x", null]),
            json!([null, null, format!("s{i}")]),
            json!({}),
        );
        assert_eq!(
            error_kind(&t.from_road("master", "m1", &msg)).as_deref(),
            Some("unknown_share")
        );
    }
    assert!(t.spread.is_empty(), "{:?}", t.spread);
    register(&mut t, "w", json!({"shares": ["req"]}));
    let req = road_msg(
        json!([null, "x", null]),
        json!([null, null, "req"]),
        json!({}),
    );
    assert!(matches!(
        t.from_road("master", "m1", &req),
        Action::Local(..)
    ));
    assert_eq!(t.spread.keys().collect::<Vec<_>>(), ["req"]);
    // the share's last yard gone: its position goes with the next message for it
    t.forget("w");
    assert_eq!(
        error_kind(&t.from_road("master", "m1", &req)).as_deref(),
        Some("unknown_share")
    );
    assert!(t.spread.is_empty());
}

#[test]
fn a_share_goes_to_the_yards_accepting_its_source() {
    // A multi-master minion: one Salt connection per master, each taking its master's
    // publications only; a yard without restriction (`sub`) takes any master's.
    let mut t = minion_table();
    t.set_upstreams(vec!["master".into(), "master2".into()]);
    register(
        &mut t,
        "suba",
        json!({"shares": ["pub"], "accept": {"pub": ["master"]}}),
    );
    register(
        &mut t,
        "subb",
        json!({"shares": ["pub"], "accept": {"pub": ["master2"]}}),
    );
    let publication = road_msg(
        json!([null, "publisher", null]),
        json!([null, null, "pub"]),
        json!({}),
    );
    let to = |t: &mut RouteTable, from: &str| match t.from_road("m1", from, &publication) {
        Action::Local(yard, env) => {
            assert_eq!(env.src[0].as_deref(), Some(from));
            yard
        }
        other => panic!("{other:?}"),
    };
    let spread = |t: &mut RouteTable, from: &str| -> BTreeSet<String> {
        (0..4).map(|_| to(t, from)).collect()
    };
    assert_eq!(spread(&mut t, "master"), peers(&["sub", "suba"]));
    assert_eq!(spread(&mut t, "master2"), peers(&["sub", "subb"]));
    // a source no restricted yard accepts goes to the unrestricted one
    assert_eq!(spread(&mut t, "master3"), peers(&["sub"]));
    t.forget("sub");
    assert_eq!(spread(&mut t, "master2"), peers(&["subb"]));
    // with no yard accepting the source at all, it is refused
    let refused = t.from_road("m1", "master3", &publication);
    assert_eq!(error_kind(&refused).as_deref(), Some("refused"));
}

#[test]
fn a_syndic_master_table_takes_replies_from_its_master_of_masters_only() {
    // a master table (no upstream routing) whose daemon joined the master of masters `top`
    let mut t = RouteTable::new();
    t.set_upstreams(vec!["top".into()]);
    register(&mut t, "mworker1", json!({"shares": ["req"]}));
    let reply = road_msg(
        json!([null, "mworker9", null]),
        json!(["syn", "req5x0", null]),
        json!({"rid": "r"}),
    );
    assert!(matches!(t.from_road("syn", "top", &reply), Action::Local(y, _) if y == "req5x0"));
    // a minion of the syndic names no yard
    let refused = t.from_road("syn", "minion1", &reply);
    assert_eq!(error_kind(&refused).as_deref(), Some("refused"));
    // a request the syndic's Salt addresses to `top` goes there, not to the local workers
    let req = body(
        json!({"route": {"src": [null, "req5x0", null], "dst": ["top", null, "req"]},
        "load": {"rid": "r"}}),
    );
    let joined = peers(&["top", "minion1"]);
    assert_eq!(
        road_targets(&t.from_lane("syn", "req5x0", &req, &joined)),
        Some(vec!["top".into()])
    );
    // a share-only request stays with the local workers
    let local = body(
        json!({"route": {"src": [null, "c", null], "dst": [null, null, "req"]},
        "load": {}}),
    );
    assert!(
        matches!(t.from_lane("syn", "c", &local, &joined), Action::Local(y, _) if y == "mworker1")
    );
    // `*` (the syndic's own publications) goes to its minions, not to the master of masters
    let all = body(
        json!({"route": {"src": [null, "pub", null], "dst": ["*", null, "pub"]},
        "load": {}}),
    );
    assert_eq!(
        road_targets(&t.from_lane("syn", "pub", &all, &joined)),
        Some(vec!["minion1".into()])
    );
}

#[test]
fn a_daemon_message_to_a_gone_yard_is_dropped_not_answered_to_the_daemon() {
    let mut t = RouteTable::new();
    // a presence message of the daemon (yard manor) to a subscriber that is gone
    let presence = Envelope::parse(&body(json!({
        "route": {"src": ["m1", MANOR, "presence"], "dst": [null, "sub9", "presence"]},
        "load": {"change": "lost", "id": "master"}
    })))
    .unwrap();
    assert_eq!(
        t.undelivered("m1", "sub9", presence),
        Action::Drop(ErrorKind::NoSuchYard)
    );
    assert_eq!(t.counters().get("no_such_yard"), Some(&1));
}

#[test]
fn a_message_to_the_daemon_s_yard_for_another_share_is_refused_not_looped() {
    let mut t = RouteTable::new();
    let odd = body(json!({
        "route": {"src": [null, "c", null], "dst": [null, MANOR, "odd"]},
        "load": {"rid": "r1"}
    }));
    assert_error_to_yard(
        t.from_lane("m1", "c", &odd, &peers(&[])),
        "unknown_share",
        "c",
        "r1",
    );
    // what the daemon would have sent itself: dropped
    let own = body(json!({
        "route": {"src": [null, MANOR, null], "dst": [null, MANOR, null]},
        "load": {"error": "yard \"sub9\" is not on the lane", "kind": "no_such_yard"}
    }));
    assert!(matches!(
        t.from_lane("m1", MANOR, &own, &peers(&[])),
        Action::Drop(_)
    ));
    assert_eq!(t.counters().get("routed_local"), None);
}
