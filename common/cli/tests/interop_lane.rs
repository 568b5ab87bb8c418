//! Lane interop: `raet lane` and the reference `LaneStack` (raet 0.6.8) exchange
//! messages over Unix datagram sockets, both ways, including multi-page ones.
//! Skipped without the reference (see `support::reference`).

mod support;

use serde_json::json;
use support::{args, assert_messages, reference, serial, Outgoing, Peer, Side, PEER_TIMEOUT};

/// More than one 65535-byte page: the reference splits it into 4 pages.
const MULTI_PAGE: usize = 200_000;

/// `lane --name NAME --dir DIR --lane maple --to TO --expect N` sending `out`.
fn yard(name: &str, dir: &std::path::Path, to: &str, expect: usize, out: &Outgoing) -> Vec<String> {
    let dir = dir.to_str().expect("utf-8 temp path");
    let mut a = args([
        "lane",
        "--name",
        name,
        "--dir",
        dir,
        "--lane",
        "maple",
        "--to",
        to,
        "--expect",
        &expect.to_string(),
        "--timeout",
        PEER_TIMEOUT,
    ]);
    a.extend(out.args());
    a
}

/// Yard `rust` (our command) and yard `ref` (the reference) send each other `to_ref` and
/// `to_rust`; each must print exactly what the other sent. `first` starts first.
fn exchange(first: Side, to_ref: &Outgoing, to_rust: &Outgoing) {
    let Some(reference) = reference() else { return };
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let rust_args = yard("rust", dir.path(), "ref", to_rust.len(), to_ref);
    let ref_args = yard("ref", dir.path(), "rust", to_ref.len(), to_rust);
    // Either may start first: each sends once the other's socket exists.
    let (rust, refpeer) = if first == Side::Rust {
        let rust = Peer::spawn(Side::Rust, &reference, &rust_args);
        (rust, Peer::spawn(Side::Reference, &reference, &ref_args))
    } else {
        let refpeer = Peer::spawn(Side::Reference, &reference, &ref_args);
        (Peer::spawn(Side::Rust, &reference, &rust_args), refpeer)
    };
    let rust = rust.expect_exit(0);
    let refpeer = refpeer.expect_exit(0);
    assert_messages("rust yard", &rust, &to_rust.received_from("ref"));
    assert_messages("reference yard", &refpeer, &to_ref.received_from("rust"));
}

#[test]
fn small_messages_both_ways() {
    let greeting =
        json!({"greeting": "h\u{e9}llo \u{2603}", "n": 1, "nested": {"l": [1, 2.5, null, true]}});
    exchange(
        Side::Rust,
        &Outgoing::new(&[greeting], &[]),
        &Outgoing::new(&[json!({"reply": "from the reference"})], &[100]),
    );
}

#[test]
fn multi_page_messages_both_ways() {
    exchange(
        Side::Reference,
        &Outgoing::new(&[json!({"before": "the big one"})], &[MULTI_PAGE]),
        &Outgoing::new(&[], &[MULTI_PAGE, 3 * MULTI_PAGE]),
    );
}
