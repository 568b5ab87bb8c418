//! Road interop over real loopback UDP: `raet road` against the reference `RoadStack`
//! (raet 0.6.8, `tests/interop/refpeer.py`). Each side is main in turn, with both head
//! kinds, messages both ways of 100 bytes, 200 KB and 5 MB; key acceptance: `never`
//! then accepted by the operator (the command's `--control`, i.e. the stack's accept
//! API), and `once` rejecting a changed key of a pinned role.
//! Skipped without the reference (see `support::reference`).

mod support;

use serde_json::{json, Value};
use support::{
    args, assert_messages, port, reference, serial, Outgoing, Peer, Reference, Side, PEER_TIMEOUT,
};

/// Fixed long-term keys (signing seed, curve25519 secret) for the key-pinning tests.
const KEY1: (&str, &str) = (
    "1111111111111111111111111111111111111111111111111111111111111111",
    "2222222222222222222222222222222222222222222222222222222222222222",
);
const KEY2: (&str, &str) = (
    "3333333333333333333333333333333333333333333333333333333333333333",
    "4444444444444444444444444444444444444444444444444444444444444444",
);

const FIVE_MB: usize = 5_000_000;
const TWO_HUNDRED_KB: usize = 200_000;

/// One `road` peer's command line.
struct Road {
    name: &'static str,
    port: u16,
    auto: &'static str,
    hk: &'static str,
    expect: usize,
    out: Outgoing,
    extra: Vec<String>,
}

impl Road {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            port: port(),
            auto: "always",
            hk: "raet",
            expect: 0,
            out: Outgoing::default(),
            extra: Vec::new(),
        }
    }

    fn main(mut self) -> Self {
        self.extra.push("--main".into());
        self
    }

    fn join(mut self, main: &Self) -> Self {
        self.extra
            .extend(args(["--join", &format!("127.0.0.1:{}", main.port)]));
        self
    }

    fn auto(mut self, auto: &'static str) -> Self {
        self.auto = auto;
        self
    }

    fn hk(mut self, hk: &'static str) -> Self {
        self.hk = hk;
        self
    }

    fn expect(mut self, n: usize) -> Self {
        self.expect = n;
        self
    }

    fn sends(mut self, out: Outgoing) -> Self {
        self.out = out;
        self
    }

    fn with(mut self, extra: &[&str]) -> Self {
        self.extra.extend(args(extra));
        self
    }

    /// `--role minion` with fixed keys.
    fn minion(self, key: (&str, &str)) -> Self {
        self.with(&["--role", "minion", "--sighex", key.0, "--prihex", key.1])
    }

    fn args(&self) -> Vec<String> {
        let mut a = args([
            "road",
            "--name",
            self.name,
            "--port",
            &self.port.to_string(),
            "--events",
            "--timeout",
            PEER_TIMEOUT,
            "--auto",
            self.auto,
            "--hk",
            self.hk,
            "--expect",
            &self.expect.to_string(),
        ]);
        a.extend(self.out.args());
        a.extend(self.extra.iter().cloned());
        a
    }

    fn spawn(&self, side: Side, reference: &Reference) -> Peer {
        Peer::spawn(side, reference, &self.args())
    }

    /// Spawns a main and waits until it listens, so joiners find it.
    fn spawn_listening(&self, side: Side, reference: &Reference) -> Peer {
        let mut peer = self.spawn(side, reference);
        peer.wait_event("listening", json!({}));
        peer
    }
}

fn other(side: Side) -> Side {
    match side {
        Side::Rust => Side::Reference,
        Side::Reference => Side::Rust,
    }
}

fn greeting(from: &str) -> Value {
    json!({"greeting": format!("h\u{e9}llo \u{2603} from {from}"), "n": 1, "nested": {"l": [1, 2.5, null, true]}})
}

/// The main (on `main_side`) and a joiner (the other side), both sending `hk` heads,
/// send `to_joiner` and `to_main`; both must exit 0 having printed exactly what the
/// other sent.
fn exchange(main_side: Side, hk: &'static str, to_joiner: Outgoing, to_main: Outgoing) {
    let Some(reference) = reference() else { return };
    let _serial = serial();
    let main = Road::new("main")
        .main()
        .hk(hk)
        .expect(to_main.len())
        .sends(to_joiner.clone());
    let joiner = Road::new("joiner")
        .join(&main)
        .hk(hk)
        .expect(to_joiner.len())
        .sends(to_main.clone());
    let main_peer = main.spawn_listening(main_side, &reference);
    let joiner_peer = joiner.spawn(other(main_side), &reference);
    let joined = joiner_peer.expect_exit(0);
    let served = main_peer.expect_exit(0);
    assert_messages("joiner", &joined, &to_joiner.received_from("main"));
    assert_messages("main", &served, &to_main.received_from("joiner"));
}

/// A greeting, 100 bytes and 200 KB both ways.
fn both_ways(main_side: Side, hk: &'static str) {
    let sizes = [100, TWO_HUNDRED_KB];
    let to_joiner = Outgoing::new(&[greeting("main")], &sizes);
    let to_main = Outgoing::new(&[greeting("joiner")], &sizes);
    exchange(main_side, hk, to_joiner, to_main);
}

#[test]
fn rust_joins_reference_main_raet_head() {
    both_ways(Side::Reference, "raet");
}

#[test]
fn rust_joins_reference_main_json_head() {
    both_ways(Side::Reference, "json");
}

#[test]
fn reference_joins_rust_main_raet_head() {
    both_ways(Side::Rust, "raet");
}

#[test]
fn reference_joins_rust_main_json_head() {
    both_ways(Side::Rust, "json");
}

// 5 MB one direction at a time, the other side sending nothing: the reference has no
// flow control (burst 0) and floods its peer with ~5,000 segments; while flooded, its
// own handshakes and messages fail even between two reference peers.

fn five_megabytes(main_side: Side, hk: &'static str, from_main: bool) {
    let big = Outgoing::new(&[], &[FIVE_MB]);
    if from_main {
        exchange(main_side, hk, big, Outgoing::default());
    } else {
        exchange(main_side, hk, Outgoing::default(), big);
    }
}

#[test]
fn five_megabytes_rust_joiner_to_reference_main() {
    five_megabytes(Side::Reference, "raet", false);
}

#[test]
fn five_megabytes_reference_main_to_rust_joiner() {
    five_megabytes(Side::Reference, "json", true);
}

#[test]
fn five_megabytes_reference_joiner_to_rust_main() {
    five_megabytes(Side::Rust, "json", false);
}

#[test]
fn five_megabytes_rust_main_to_reference_joiner() {
    five_megabytes(Side::Rust, "raet", true);
}

/// Auto `never`: the main pends the joiner's keys; nothing arrives until the operator
/// accepts them through the main's control input; then the message flows.
fn never_then_accepted(main_side: Side) {
    let Some(reference) = reference() else { return };
    let _serial = serial();
    let note = json!({"sent": "before the accept"});
    let main = Road::new("main")
        .main()
        .auto("never")
        .expect(1)
        .with(&["--control"]);
    let joiner = Road::new("joiner")
        .join(&main)
        .sends(Outgoing::new(std::slice::from_ref(&note), &[]));
    let mut main_peer = main.spawn_listening(main_side, &reference);
    let joiner_peer = joiner.spawn(other(main_side), &reference);
    main_peer.wait_event("pending", json!({"name": "joiner", "by": "us"}));
    assert!(
        main_peer.messages.is_empty(),
        "a message arrived from a pending remote"
    );
    main_peer.control("accept joiner");
    main_peer.wait_event("accepted", json!({"name": "joiner"}));
    let joined = joiner_peer.expect_exit(0);
    let served = main_peer.expect_exit(0);
    assert_messages("main", &served, &[support::received("joiner", &note)]);
    if main_side == Side::Rust {
        // the reference joiner saw the pend packet before the accept
        assert!(
            joined.has_event("pending", json!({"by": "them"})),
            "{}",
            joined.stderr
        );
    }
}

/// A Rust main with no handshake slot free (`--max-handshakes 0`) refuses the reference
/// joiner's join at once (admission control, issue 11): the reference takes the `refuse` as
/// a failed join, without an exception, and is not joined.
#[test]
fn busy_rust_main_refuses_reference_joiner() {
    let Some(reference) = reference() else { return };
    let _serial = serial();
    let main = Road::new("main").main().with(&["--max-handshakes", "0"]);
    let joiner = Road::new("joiner").join(&main);
    let _main_peer = main.spawn_listening(Side::Rust, &reference);
    let mut joiner_peer = joiner.spawn(Side::Reference, &reference);
    joiner_peer.wait_event("refused", json!({"by": "them"}));
    assert!(!joiner_peer.saw_event("joined", json!({})));
    assert!(!joiner_peer.saw_event("exception", json!({})));
}

#[test]
fn auto_never_rust_main_accepts_reference_joiner() {
    never_then_accepted(Side::Rust);
}

#[test]
fn auto_never_reference_main_accepts_rust_joiner() {
    never_then_accepted(Side::Reference);
}

/// Auto `once` on the main: the first key of role `minion` is pinned; a joiner of that
/// role with another key is rejected (exit 1, nothing delivered); one with the pinned
/// key is accepted again.
fn once_rejects_changed_key(main_side: Side) {
    let Some(reference) = reference() else { return };
    let _serial = serial();
    let joiner_side = other(main_side);
    let main = Road::new("main").main().auto("once").expect(2);
    let mut main_peer = main.spawn_listening(main_side, &reference);
    let note = |n: u32| Outgoing::new(&[json!({ "n": n })], &[]);

    let first = Road::new("alpha").join(&main).minion(KEY1).sends(note(1));
    first.spawn(joiner_side, &reference).expect_exit(0);

    let changed = Road::new("gamma").join(&main).minion(KEY2).sends(note(2));
    let changed = changed.spawn(joiner_side, &reference).expect_exit(1);
    // The reference reports who rejected: the main (as main) or the main's reject packet
    // (as joiner). (`raet road` emits no event for a rejected first-contact joiner.)
    if main_side == Side::Reference {
        main_peer.wait_event("rejected", json!({"name": "gamma", "by": "us"}));
    } else {
        assert!(
            changed.has_event("rejected", json!({"by": "them"})),
            "{}",
            changed.stderr
        );
    }

    let same = Road::new("delta").join(&main).minion(KEY1).sends(note(3));
    same.spawn(joiner_side, &reference).expect_exit(0);
    let served = main_peer.expect_exit(0);
    let expected = [
        support::received("alpha", &json!({"n": 1})),
        support::received("delta", &json!({"n": 3})),
    ];
    assert_messages("main", &served, &expected);
}

#[test]
fn auto_once_rust_main_rejects_changed_key() {
    once_rejects_changed_key(Side::Rust);
}

#[test]
fn auto_once_reference_main_rejects_changed_key() {
    once_rejects_changed_key(Side::Reference);
}
