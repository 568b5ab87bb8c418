//! Tests of the simulated network with a tiny echo endpoint: determinism by seed, every impairment, partitions, crashes, run limits and livelocks.

use super::*;
use crate::world::addr;
use std::collections::VecDeque;

/// A tiny endpoint: sends `count` numbered pings to `peer`, one every `interval`
/// (driven by its own timer), echoes every ping it receives, records what arrives.
struct Echo {
    peer: Option<SocketAddr>,
    count: u32,
    interval: Duration,
    next_at: Option<Instant>,
    sent: u32,
    out: VecDeque<Transmit>,
    /// (arrival time, sender, payload) of every datagram received.
    received: Vec<(Instant, SocketAddr, Vec<u8>)>,
}

const PING: u8 = b'p';

fn ping(peer: SocketAddr, n: u32) -> Transmit {
    let mut payload = vec![PING];
    payload.extend_from_slice(&n.to_be_bytes());
    Transmit {
        dest: peer,
        payload,
    }
}
const PONG: u8 = b'o';

impl Echo {
    fn responder() -> Self {
        Self {
            peer: None,
            count: 0,
            interval: Duration::ZERO,
            next_at: None,
            sent: 0,
            out: VecDeque::new(),
            received: Vec::new(),
        }
    }

    fn pinger(peer: SocketAddr, count: u32, interval: Duration, start: Instant) -> Self {
        Self {
            peer: Some(peer),
            count,
            interval,
            next_at: Some(start),
            ..Self::responder()
        }
    }

    /// Sequence numbers of the received datagrams of `kind`, in arrival order.
    fn seqs(&self, kind: u8) -> Vec<u32> {
        self.received
            .iter()
            .filter(|(_, _, p)| p.first() == Some(&kind))
            .map(|(_, _, p)| seq_of(p))
            .collect()
    }
}

impl Endpoint for Echo {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.received.push((now, from, data.to_vec()));
        if data.first() == Some(&PING) {
            let mut payload = data.to_vec();
            payload[0] = PONG;
            self.out.push_back(Transmit {
                dest: from,
                payload,
            });
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        let (Some(peer), Some(at)) = (self.peer, self.next_at) else {
            return;
        };
        assert!(at <= now, "timer fired early");
        self.out.push_back(ping(peer, self.sent));
        self.sent += 1;
        self.next_at = (self.sent < self.count).then(|| at + self.interval);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.next_at
    }
}

const A: u16 = 7531;
const B: u16 = 7532;

/// A pinger at A sending `count` pings every 10 ms to a responder at B.
fn ping_pong(seed: u64, link: Link, count: u32) -> SimNet<Echo> {
    let mut net = SimNet::new(seed, link);
    let start = net.now();
    let interval = Duration::from_millis(10);
    net.add(addr(A), Echo::pinger(addr(B), count, interval, start));
    net.add(addr(B), Echo::responder());
    net
}

fn lossy(loss: f64) -> Link {
    Link {
        loss,
        ..Link::perfect()
    }
}

/// [`ping_pong`] run until the network is idle.
fn pinged(seed: u64, link: Link, count: u32) -> SimNet<Echo> {
    let mut net = ping_pong(seed, link, count);
    run_to_idle(&mut net);
    net
}

/// Sequence number of a ping or pong.
fn seq_of(payload: &[u8]) -> u32 {
    u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]])
}

fn run_to_idle(net: &mut SimNet<Echo>) {
    let mut steps = 0u32;
    while net.step() {
        steps += 1;
        assert!(steps < 10_000_000, "never went idle");
    }
}

#[test]
fn perfect_link_delivers_everything_once_in_order_after_the_delay() {
    let net = pinged(1, Link::perfect(), 50);
    let start = net.now() - net.elapsed();
    let expected: Vec<u32> = (0..50).collect();
    assert_eq!(net.node_ref(addr(B)).seqs(PING), expected);
    assert_eq!(net.node_ref(addr(A)).seqs(PONG), expected);
    let stats = net.stats();
    assert_eq!((stats.sent, stats.delivered), (100, 100));
    assert_eq!(stats.delivered_bytes, 500);
    assert_eq!(stats.dropped + stats.duplicated + stats.reordered, 0);
    // Ping n leaves at n*10 ms and arrives 1 ms later; its pong 1 ms after that.
    for (n, (at, from, _)) in net.node_ref(addr(B)).received.iter().enumerate() {
        assert_eq!(*from, addr(A));
        assert_eq!(*at - start, Duration::from_millis(10 * n as u64 + 1));
    }
    assert_eq!(net.elapsed(), Duration::from_millis(10 * 49 + 2));
}

#[test]
fn same_seed_same_run_other_seed_other_run() {
    let run = |seed| {
        let net = pinged(seed, Link::impaired(0.3), 300);
        let received = net.node_ref(addr(A)).seqs(PONG);
        (
            net.trace_hash(),
            net.stats().clone(),
            received,
            net.elapsed(),
        )
    };
    let first = run(42);
    assert_eq!(first, run(42));
    let other = run(43);
    assert_ne!(first.0, other.0);
    assert_ne!(first.2, other.2);
}

#[test]
fn loss_rate_matches_the_link() {
    let net = pinged(7, lossy(0.3), 10_000);
    let stats = net.stats().clone();
    assert_eq!(stats.sent, stats.delivered + stats.dropped);
    let pings_arrived = net.node_ref(addr(B)).seqs(PING).len() as u64;
    assert_eq!(stats.sent, 10_000 + pings_arrived);
    let rate = stats.dropped as f64 / stats.sent as f64;
    assert!((0.27..0.33).contains(&rate), "loss rate {rate}");
}

#[test]
fn total_loss_delivers_nothing() {
    let net = pinged(3, lossy(1.0), 20);
    assert!(net.node_ref(addr(B)).received.is_empty());
    assert_eq!(net.stats().dropped, 20);
    assert_eq!(net.stats().delivered, 0);
}

#[test]
fn duplication_delivers_twice() {
    let net = pinged(
        3,
        Link {
            duplicate: 1.0,
            ..Link::perfect()
        },
        10,
    );
    // Each ping arrives twice, each copy is echoed and each pong duplicated again.
    let pings = net.node_ref(addr(B)).seqs(PING);
    assert_eq!(pings.len(), 20);
    for n in 0..10 {
        assert_eq!(pings.iter().filter(|s| **s == n).count(), 2);
    }
    assert_eq!(net.node_ref(addr(A)).seqs(PONG).len(), 40);
    assert_eq!(net.stats().duplicated, 30);
}

#[test]
fn reordering_lets_later_datagrams_overtake() {
    let link = Link {
        reorder: 0.5,
        delay: Duration::from_millis(5),
        ..Link::perfect()
    };
    let net = pinged(5, link, 200);
    let pings = net.node_ref(addr(B)).seqs(PING);
    assert_eq!(pings.len(), 200, "reordering must not lose anything");
    let inversions = pings.windows(2).filter(|w| w[0] > w[1]).count();
    assert!(inversions > 10, "only {inversions} inversions");
    assert!(net.stats().reordered > 100);
    // Held back by at most REORDER_SPREAD * (delay + jitter) beyond the delay.
    let start = net.now() - net.elapsed();
    for (at, _, payload) in &net.node_ref(addr(B)).received {
        let sent_at = start + Duration::from_millis(10 * u64::from(seq_of(payload)));
        assert!(*at - sent_at <= Duration::from_millis(5 + 8 * 5));
    }
}

#[test]
fn jitter_stays_within_bounds() {
    let link = Link {
        delay: Duration::from_millis(5),
        jitter: Duration::from_millis(3),
        ..Link::perfect()
    };
    let net = pinged(9, link, 100);
    let start = net.now() - net.elapsed();
    let delays: Vec<Duration> = net
        .node_ref(addr(B))
        .received
        .iter()
        .map(|(at, _, p)| *at - (start + Duration::from_millis(10 * u64::from(seq_of(p)))))
        .collect();
    assert!(delays
        .iter()
        .all(|d| (Duration::from_millis(5)..=Duration::from_millis(8)).contains(d)));
    assert!(delays.iter().any(|d| *d != delays[0]), "no jitter at all");
}

/// Sends `count` datagrams at once to `peer` on its first timeout.
fn blaster(peer: SocketAddr, count: u32, start: Instant) -> Echo {
    let mut echo = Echo::pinger(peer, 1, Duration::ZERO, start);
    echo.out.extend((1..count).map(|n| ping(peer, n)));
    echo
}

#[test]
fn queue_limit_drops_what_does_not_fit() {
    let mut link = Link::perfect();
    link.queue_limit = Some(10);
    let mut net = SimNet::new(1, link);
    let start = net.now();
    net.add(addr(A), blaster(addr(B), 100, start));
    net.add(addr(B), Echo::responder());
    run_to_idle(&mut net);
    assert_eq!(net.node_ref(addr(B)).seqs(PING).len(), 10);
    assert_eq!(net.stats().overflowed, 90);
    // The queue drains as datagrams arrive: the 10 echoes all fit on the way back.
    assert_eq!(net.node_ref(addr(A)).seqs(PONG).len(), 10);
}

#[test]
fn a_removed_node_loses_its_traffic_and_can_come_back() {
    let mut net = ping_pong(2, Link::perfect(), 100);
    net.run_for(Duration::from_millis(205)).unwrap();
    let crashed = net.remove(addr(B)).expect("B was there");
    assert_eq!(crashed.seqs(PING), (0..21).collect::<Vec<_>>());
    assert!(!net.contains(addr(B)));
    net.run_for(Duration::from_millis(300)).unwrap();
    assert_eq!(net.stats().undeliverable, 30);
    net.add(addr(B), Echo::responder());
    run_to_idle(&mut net);
    let after = net.node_ref(addr(B)).seqs(PING);
    assert_eq!(after, (51..100).collect::<Vec<_>>());
    assert_eq!(net.node_ref(addr(A)).seqs(PONG).len(), 21 + 49);
}

#[test]
fn partition_blocks_both_ways_until_healed() {
    let mut net = ping_pong(2, Link::perfect(), 30);
    net.partition(addr(B), addr(A), true);
    net.run_for(Duration::from_millis(100)).unwrap();
    assert!(net.node_ref(addr(B)).received.is_empty());
    // Pings at 0, 10, ..., 100 ms.
    assert_eq!(net.stats().blocked, 11);
    net.partition(addr(A), addr(B), false);
    run_to_idle(&mut net);
    assert_eq!(
        net.node_ref(addr(B)).seqs(PING),
        (11..30).collect::<Vec<_>>()
    );
}

#[test]
fn run_until_stops_when_done_and_fails_fast_when_stuck() {
    let mut net = ping_pong(4, Link::perfect(), 1000);
    let start = net.now();
    net.run_until(Duration::from_secs(60), |net| {
        net.node_ref(addr(A)).seqs(PONG).len() == 5
    })
    .unwrap();
    assert_eq!(net.now() - start, Duration::from_millis(42));

    // Never true: fails exactly at the limit, having run nothing beyond it.
    let err = net
        .run_until(Duration::from_secs(2), |net| {
            net.node_ref(addr(A)).seqs(PONG).contains(&5000)
        })
        .unwrap_err();
    assert_eq!(err.reason, "time limit passed");
    assert_eq!(err.elapsed, Duration::from_secs(2));
    assert_eq!(net.now() - start, Duration::from_millis(2042));
    assert!(net.node_ref(addr(B)).seqs(PING).len() <= 205);
    assert!(err.to_string().contains("time limit passed"));

    // Everything sent, then idle: reported as such, without waiting for the limit.
    let err = net
        .run_until(Duration::from_secs(3600), |_| false)
        .unwrap_err();
    assert_eq!(err.reason, "went idle");
    assert!(net.elapsed() < Duration::from_secs(11));
}

#[test]
fn tap_sees_every_delivery_and_inject_replays() {
    use std::cell::RefCell;
    use std::rc::Rc;
    let seen = Rc::new(RefCell::new(Vec::new()));
    let mut net = ping_pong(8, Link::perfect(), 3);
    let log = Rc::clone(&seen);
    net.set_tap(Some(Box::new(move |at, from, to, data: &[u8]| {
        log.borrow_mut()
            .push((at, from.port(), to.port(), data.to_vec()));
    })));
    run_to_idle(&mut net);
    let first = seen.borrow()[0].clone();
    assert_eq!(seen.borrow().len(), 6);
    assert_eq!(
        first,
        (Duration::from_millis(1), A, B, ping(addr(B), 0).payload)
    );
    net.inject(addr(A), addr(B), first.3.clone());
    run_to_idle(&mut net);
    assert_eq!(net.node_ref(addr(B)).seqs(PING), vec![0, 1, 2, 0]);
    assert_eq!(net.node_ref(addr(A)).seqs(PONG), vec![0, 1, 2, 0]);
    assert_eq!(seen.borrow().len(), 8);
}

#[test]
fn filter_drops_exactly_what_it_selects() {
    let mut net = ping_pong(8, Link::perfect(), 10);
    // Drop odd pings and every pong of ping 4.
    net.set_filter(Some(Box::new(|_, _, _, data: &[u8]| {
        let n = seq_of(data);
        (data[0] == PING && n % 2 == 1) || (data[0] == PONG && n == 4)
    })));
    run_to_idle(&mut net);
    assert_eq!(net.node_ref(addr(B)).seqs(PING), vec![0, 2, 4, 6, 8]);
    assert_eq!(net.node_ref(addr(A)).seqs(PONG), vec![0, 2, 6, 8]);
    assert_eq!(net.stats().blocked, 6);
    net.set_filter(None);
}

/// An endpoint whose deadline never moves.
struct Stuck(Instant);

impl Endpoint for Stuck {
    fn handle_datagram(&mut self, _: Instant, _: SocketAddr, _: &[u8]) {}
    fn handle_timeout(&mut self, _: Instant) {}
    fn poll_transmit(&mut self) -> Option<Transmit> {
        None
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Some(self.0)
    }
}

#[test]
fn a_deadline_that_never_moves_is_a_livelock_not_a_hang() {
    let mut net = SimNet::new(0, Link::perfect());
    let now = net.now();
    net.add(addr(A), Stuck(now));
    let err = net.run_for(Duration::from_secs(1)).unwrap_err();
    assert_eq!(err.reason, LIVELOCK);
    assert_eq!(err.elapsed, Duration::ZERO);
}

#[test]
fn probabilities_are_clamped() {
    let mut link = Link::impaired(7.0);
    link.duplicate = f64::NAN;
    link.reorder = -1.0;
    let net: SimNet<Echo> = SimNet::new(0, link);
    assert_eq!(
        (net.link().loss, net.link().duplicate, net.link().reorder),
        (1.0, 0.0, 0.0)
    );
}
