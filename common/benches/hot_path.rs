//! Micro-benchmarks of the per-packet hot path (`cargo bench -p raet --bench hot_path`):
//! ed25519 sign / verify / verify_strict, SharedBox seal / open of 1 KiB, pack + parse of a
//! signed 1 KiB packet, the segmentation of 1 MB, and a whole in-memory Road to Road
//! exchange (no sockets, virtual time) of N 1 KiB messages and of one 1 MB message.
//!
//! Plain `harness = false` timing loops (best of several rounds), no extra dependency.
//! Optional argument: a substring; only the benchmarks whose name contains it run.

use std::collections::VecDeque;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer as _, SigningKey};
use raet::crypto::{PrivateKey, SharedBox, Signer};
use raet::keep::{AutoMode, MemKeep};
use raet::packet::{
    pack, parse, BodyKind, CoatKind, Flags, Head, Reassembler, Segmenter, TransactionKind,
};
use raet::road::{Event, Road, RoadConfig};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde_json::{Map, Value};

/// Runs `f` `iters` times per round, for `rounds` rounds; prints the best per-call time.
fn bench(filter: &str, name: &str, iters: u32, rounds: u32, mut f: impl FnMut()) {
    if !name.contains(filter) {
        return;
    }
    let mut best = Duration::MAX;
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..iters {
            f();
        }
        best = best.min(start.elapsed() / iters);
    }
    println!("{name:<40} {:>10.2} µs", best.as_secs_f64() * 1e6);
}

fn template() -> Head {
    Head {
        se: 2,
        de: 3,
        si: 7,
        ti: 9,
        tk: TransactionKind::Message,
        bk: BodyKind::Json,
        ck: CoatKind::Nacl,
        ..Head::default()
    }
}

fn crypto_benches(filter: &str) {
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let signer = Signer::generate(&mut rng);
    let key = signer.verify_key();
    let dalek = SigningKey::from_bytes(&signer.seed());
    let dalek_vk = dalek.verifying_key();
    let datagram = [0x5a_u8; 1024];
    let sig = signer.sign(&datagram);
    let dalek_sig = dalek.sign(&datagram);
    bench(filter, "ed25519 sign 1 KiB", 300, 5, || {
        black_box(signer.sign(black_box(&datagram)));
    });
    bench(filter, "ed25519 verify (raet) 1 KiB", 300, 5, || {
        black_box(key.verify(black_box(&datagram), &sig)).ok();
    });
    bench(
        filter,
        "ed25519 verify_strict (dalek) 1 KiB",
        300,
        5,
        || {
            black_box(dalek_vk.verify_strict(black_box(&datagram), &dalek_sig)).ok();
        },
    );
    bench(filter, "ed25519 verify (dalek, lax) 1 KiB", 300, 5, || {
        black_box(ed25519_dalek::Verifier::verify(
            &dalek_vk,
            black_box(&datagram),
            &dalek_sig,
        ))
        .ok();
    });

    let a = PrivateKey::generate(&mut rng);
    let b = PrivateKey::generate(&mut rng);
    let ab = SharedBox::new(&b.public_key(), &a);
    let ba = SharedBox::new(&a.public_key(), &b);
    let plain = [0x41_u8; 1024];
    let coat = ab.seal(&mut rng, &plain);
    bench(filter, "SharedBox seal 1 KiB", 2000, 5, || {
        black_box(ab.seal(&mut rng, black_box(&plain)));
    });
    bench(filter, "SharedBox open 1 KiB", 2000, 5, || {
        black_box(ba.open(black_box(&coat))).ok();
    });
    bench(filter, "SharedBox::new (beforenm)", 300, 5, || {
        black_box(SharedBox::new(&b.public_key(), &a));
    });

    let head = template();
    let small = vec![0x33_u8; 900];
    let packet = pack(&head, &small, Some(&signer)).unwrap_or_default();
    bench(filter, "pack signed ~1 KiB packet", 300, 5, || {
        black_box(pack(&head, black_box(&small), Some(&signer))).ok();
    });
    bench(filter, "parse + verify ~1 KiB packet", 300, 5, || {
        if let Ok(rx) = parse(black_box(&packet)) {
            black_box(rx.verify(&key)).ok();
        }
    });
    bench(filter, "parse only ~1 KiB packet", 20_000, 5, || {
        black_box(parse(black_box(&packet))).ok();
    });

    let big = vec![0x77_u8; 1_000_040];
    bench(filter, "Segmenter 1 MB: pack all segments", 1, 3, || {
        if let Ok(seg) = Segmenter::new(&head, big.len()) {
            for sn in 0..seg.count() {
                black_box(seg.pack_segment(&head, &big, sn, Flags(0), &signer)).ok();
            }
        }
    });
    let name = "Reassembler 1 MB: parse+insert+assemble";
    if !name.contains(filter) {
        return;
    }
    let seg = Segmenter::new(&head, big.len()).ok();
    let segments: Vec<Vec<u8>> = seg
        .iter()
        .flat_map(|s| {
            (0..s.count()).filter_map(|sn| s.pack_segment(&head, &big, sn, Flags(0), &signer).ok())
        })
        .collect();
    bench(filter, name, 1, 3, || {
        let Some(seg) = &seg else { return };
        let Ok(mut r) = Reassembler::new(seg.count(), big.len() as u32) else {
            return;
        };
        for s in &segments {
            if let Ok(rx) = parse(s) {
                r.insert(rx.head.sn, rx.coat).ok();
            }
        }
        black_box(r.assemble()).ok();
    });
}

/// Two roads wired directly in memory; time is virtual (advanced only when both are idle).
struct Pair {
    a: Road,
    b: Road,
    a_addr: SocketAddr,
    b_addr: SocketAddr,
    now: Instant,
    packets: u64,
}

impl Pair {
    fn new() -> Pair {
        let now = Instant::now();
        let a_addr: SocketAddr = "127.0.0.1:7001".parse().unwrap_or_else(|_| unreachable!());
        let b_addr: SocketAddr = "127.0.0.1:7002".parse().unwrap_or_else(|_| unreachable!());
        let road = |name: &str, ha: SocketAddr, main: bool, seed: u8| {
            let mut config = RoadConfig::new(name, ha);
            config.main = main;
            config.auto = AutoMode::Always;
            config.limits.max_messengers = 256;
            let keys = (
                Signer::from_seed(&[seed; 32]),
                PrivateKey::from_bytes(&[seed.wrapping_add(1); 32]),
            );
            Road::new(
                config,
                Some(keys),
                Box::new(MemKeep::new()),
                [seed; 32],
                now,
            )
        };
        let (Ok(a), Ok(b)) = (
            road("alpha", a_addr, false, 3),
            road("beta", b_addr, true, 9),
        ) else {
            panic!("road setup failed");
        };
        let mut pair = Pair {
            a,
            b,
            a_addr,
            b_addr,
            now,
            packets: 0,
        };
        if pair.a.join(now, b_addr).is_err() {
            panic!("join failed");
        }
        pair.run(|ev| matches!(ev, Event::Allowed { .. }), 1);
        pair
    }

    /// Moves datagrams until `want` events of the sender side satisfy `done` (events of
    /// both roads are drained; `done` sees those of `a` and of `b`).
    fn run(&mut self, done: impl Fn(&Event) -> bool, want: usize) {
        let mut seen = 0;
        let mut wire: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)> = VecDeque::new();
        while seen < want {
            while let Some(t) = self.a.poll_transmit() {
                wire.push_back((self.a_addr, t.dest, t.payload));
            }
            while let Some(t) = self.b.poll_transmit() {
                wire.push_back((self.b_addr, t.dest, t.payload));
            }
            if let Some((from, to, bytes)) = wire.pop_front() {
                self.packets += 1;
                if to == self.a_addr {
                    self.a.handle_datagram(self.now, from, &bytes);
                } else {
                    self.b.handle_datagram(self.now, from, &bytes);
                }
            } else {
                let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min();
                let Some(next) = next else { panic!("stalled") };
                self.now = self.now.max(next);
                self.a.handle_timeout(self.now);
                self.b.handle_timeout(self.now);
            }
            while let Some(ev) = self.a.poll_event() {
                seen += usize::from(done(&ev));
            }
            while let Some(ev) = self.b.poll_event() {
                seen += usize::from(done(&ev));
            }
        }
    }
}

fn blob(size: usize) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("blob".into(), Value::String("x".repeat(size)));
    map
}

fn road_benches(filter: &str, count: usize) {
    let name = "road exchange 1 KiB messages";
    if name.contains(filter) {
        let mut pair = Pair::new();
        let Some(to) = pair.a.uid_by_name("beta") else {
            panic!("no remote")
        };
        let start = Instant::now();
        let packets = pair.packets;
        for _ in 0..count {
            if pair.a.send(pair.now, to, blob(1024)).is_err() {
                panic!("send failed");
            }
        }
        pair.run(|ev| matches!(ev, Event::Delivered { .. }), count);
        let took = start.elapsed();
        println!(
            "{name:<40} {:>10.0} msgs/s  ({count} msgs, {} datagrams, {:.1} µs/msg)",
            count as f64 / took.as_secs_f64(),
            pair.packets - packets,
            took.as_secs_f64() * 1e6 / count as f64
        );
    }
    let name = "road exchange one 1 MB message";
    if name.contains(filter) {
        let mut pair = Pair::new();
        let Some(to) = pair.a.uid_by_name("beta") else {
            panic!("no remote")
        };
        let mut best = Duration::MAX;
        let mut packets = 0;
        for _ in 0..3 {
            let before = pair.packets;
            let start = Instant::now();
            if pair.a.send(pair.now, to, blob(1_000_000)).is_err() {
                panic!("send failed");
            }
            pair.run(|ev| matches!(ev, Event::Delivered { .. }), 1);
            best = best.min(start.elapsed());
            packets = pair.packets - before;
        }
        println!(
            "{name:<40} {:>10.2} MB/s  ({packets} datagrams, {:.1} ms)",
            1.0 / best.as_secs_f64(),
            best.as_secs_f64() * 1e3
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument filters by name.
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .unwrap_or_default();
    let count = std::env::var("RAET_BENCH_COUNT")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(5000);
    crypto_benches(&filter);
    road_benches(&filter, count);
}
