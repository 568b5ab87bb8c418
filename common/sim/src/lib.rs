//! The simulator: a deterministic in-memory network (seeded loss, duplication, reordering,
//! delay) in virtual time, for the protocol's tests. A dev-dependency only.
//!
//! [`world`] builds road estates on it (keys, keeps, restarts, event logs); [`mutate`]
//! changes real datagrams for the robustness tests and the fuzz target.
//!
//! [`SimNet`] connects sans-IO [`Endpoint`]s (the road core implements it) through a
//! simulated lossy link driven by a **virtual clock**: nothing sleeps and no real time is
//! read after construction. Every random decision (loss, duplication, reordering, jitter)
//! comes from one seeded ChaCha RNG and nodes are visited in address order, so the same
//! seed and the same test code give exactly the same run, datagram for datagram
//! ([`SimNet::trace_hash`] fingerprints a run).
//!
//! One step ([`SimNet::step`]) collects what the endpoints want to send, jumps the clock
//! to the next event (a datagram arrival or an endpoint deadline), delivers every
//! datagram due by then and fires every due timer.
//!
//! ```
//! use raet_sim::{Link, SimNet};
//! # use raet_sim::Endpoint;
//! # use std::time::{Duration, Instant};
//! # struct Idle;
//! # impl Endpoint for Idle {
//! #     fn handle_datagram(&mut self, _: Instant, _: std::net::SocketAddr, _: &[u8]) {}
//! #     fn handle_timeout(&mut self, _: Instant) {}
//! #     fn poll_transmit(&mut self) -> Option<raet_proto::Transmit> { None }
//! #     fn poll_timeout(&self) -> Option<Instant> { None }
//! # }
//! let mut net = SimNet::new(7, Link::impaired(0.1));
//! net.add("127.0.0.1:7530".parse().unwrap(), Idle);
//! let start = net.now();
//! net.run_for(Duration::from_secs(3)).unwrap();
//! assert_eq!(net.now() - start, Duration::from_secs(3));
//! ```

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

use raet_proto::road::Road;
use raet_proto::Transmit;

pub mod mutate;
pub mod world;

/// Anything that can sit on the simulated network (the road core implements it).
///
/// The methods mirror the sans-IO driving interface: bytes and the current time in,
/// datagrams and the next deadline out.
pub trait Endpoint {
    /// A datagram from `from` arrived at virtual time `now`.
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]);
    /// The deadline returned by [`Endpoint::poll_timeout`] has passed (`now` ≥ it).
    fn handle_timeout(&mut self, now: Instant);
    /// The next datagram to send, if any.
    fn poll_transmit(&mut self) -> Option<Transmit>;
    /// When [`Endpoint::handle_timeout`] must be called next, if ever.
    fn poll_timeout(&self) -> Option<Instant>;
}

/// The impairments applied to every datagram sent on the simulated network.
///
/// Probabilities are clamped to `[0, 1]`. A datagram is first subject to loss; one that
/// survives may be duplicated (the copy gets its own delay) and each copy may be
/// reordered, i.e. held back by a random extra delay of up to [`Link::REORDER_SPREAD`]
/// times the link's `delay + jitter` (at least 1 ms).
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a delivered datagram is delivered twice.
    pub duplicate: f64,
    /// Probability that a datagram is held back (delivered after later ones).
    pub reorder: f64,
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Uniform random extra delay in `[0, jitter]`.
    pub jitter: Duration,
    /// At most this many datagrams may be in flight towards one address (a small
    /// receive buffer); further ones are dropped. `None` = unlimited.
    pub queue_limit: Option<usize>,
}

impl Link {
    /// How far (in multiples of `delay + jitter`) a reordered datagram may be held back.
    pub const REORDER_SPREAD: u32 = 8;

    /// A perfect link: 1 ms delay, no loss, no duplication, no reordering, no jitter.
    pub fn perfect() -> Self {
        Self {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            delay: Duration::from_millis(1),
            jitter: Duration::ZERO,
            queue_limit: None,
        }
    }

    /// A bad link: `loss` probability of loss, 5 % duplication, 10 % reordering,
    /// 1 ms delay with 2 ms jitter (so datagrams also overtake each other).
    pub fn impaired(loss: f64) -> Self {
        Self {
            loss,
            duplicate: 0.05,
            reorder: 0.1,
            delay: Duration::from_millis(1),
            jitter: Duration::from_millis(2),
            queue_limit: None,
        }
    }
}

impl Default for Link {
    fn default() -> Self {
        Self::perfect()
    }
}

/// Counters of what happened to the datagrams on a [`SimNet`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Datagrams handed to the network by endpoints.
    pub sent: u64,
    /// Datagrams (including duplicates) handed to a destination endpoint.
    pub delivered: u64,
    /// Bytes of the delivered datagrams.
    pub delivered_bytes: u64,
    /// Datagrams lost by the link's `loss`.
    pub dropped: u64,
    /// Extra copies made by the link's `duplicate`.
    pub duplicated: u64,
    /// Datagrams (or copies) held back by the link's `reorder`.
    pub reordered: u64,
    /// Datagrams dropped because the destination's queue was full (`queue_limit`).
    pub overflowed: u64,
    /// Datagrams dropped because a partition separates source and destination.
    pub blocked: u64,
    /// Datagrams that arrived where no endpoint is (never added, or removed: a crash).
    pub undeliverable: u64,
}

/// [`SimNet::run_until`] or [`SimNet::run_for`] could not finish.
#[derive(Debug, Clone, thiserror::Error)]
#[error("simulation {reason} after {elapsed:?} of virtual time ({stats:?})")]
pub struct SimTimeout {
    /// What went wrong: the time limit passed, the network went idle, or a livelock.
    pub reason: &'static str,
    /// Virtual time spent in the failed call.
    pub elapsed: Duration,
    /// The network's counters at that moment.
    pub stats: SimStats,
}

/// A datagram in flight, ordered by arrival time then by send order.
struct InFlight {
    at: Instant,
    seq: u64,
    from: SocketAddr,
    to: SocketAddr,
    payload: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// How many consecutive steps may happen without the clock advancing before the
/// run loops declare a livelock (an endpoint whose deadline never moves).
const LIVELOCK_STEPS: u32 = 1_000_000;
/// [`SimTimeout::reason`] of a livelock.
const LIVELOCK: &str = "livelocked (clock stopped)";

/// The simulated network: endpoints by address, datagrams in flight, a virtual clock.
pub struct SimNet<E: Endpoint> {
    rng: ChaCha8Rng,
    link: Link,
    base: Instant,
    elapsed: Duration,
    nodes: BTreeMap<SocketAddr, E>,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    queued: BTreeMap<SocketAddr, usize>,
    partitions: BTreeSet<(SocketAddr, SocketAddr)>,
    seq: u64,
    stats: SimStats,
    trace: u64,
    tap: Option<Tap>,
    filter: Option<Filter>,
}

/// Observer of every delivery: (virtual time since start, from, to, datagram).
pub type Tap = Box<dyn FnMut(Duration, SocketAddr, SocketAddr, &[u8])>;

/// Targeted loss: called for every datagram sent (virtual time since start, from, to,
/// datagram); `true` drops it (counted as `blocked`).
pub type Filter = Box<dyn FnMut(Duration, SocketAddr, SocketAddr, &[u8]) -> bool>;

/// FNV-1a, used to fingerprint a run.
fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn clamp_probability(p: f64) -> f64 {
    if p.is_nan() {
        0.0
    } else {
        p.clamp(0.0, 1.0)
    }
}

fn pair(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

impl<E: Endpoint> SimNet<E> {
    /// A network with no endpoints whose random decisions come from `seed`. The virtual
    /// clock starts at an arbitrary instant (read once from the real clock; only
    /// durations since it matter).
    pub fn new(seed: u64, link: Link) -> Self {
        let mut net = Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            link: Link::perfect(),
            base: Instant::now(),
            elapsed: Duration::ZERO,
            nodes: BTreeMap::new(),
            in_flight: BinaryHeap::new(),
            queued: BTreeMap::new(),
            partitions: BTreeSet::new(),
            seq: 0,
            stats: SimStats::default(),
            trace: 0xcbf2_9ce4_8422_2325,
            tap: None,
            filter: None,
        };
        net.set_link(link);
        net
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.base + self.elapsed
    }

    /// Virtual time elapsed since the network was created.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// The impairments currently applied.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// Change the impairments for datagrams sent from now on (e.g. heal a bad link).
    pub fn set_link(&mut self, mut link: Link) {
        link.loss = clamp_probability(link.loss);
        link.duplicate = clamp_probability(link.duplicate);
        link.reorder = clamp_probability(link.reorder);
        self.link = link;
    }

    /// Put `endpoint` on the network at `addr` (replacing any endpoint already there,
    /// e.g. a restarted stack). Datagrams still in flight to `addr` reach the new one.
    pub fn add(&mut self, addr: SocketAddr, endpoint: E) {
        self.nodes.insert(addr, endpoint);
    }

    /// Take the endpoint at `addr` off the network (a crash): datagrams to it are lost
    /// until an endpoint is added there again.
    pub fn remove(&mut self, addr: SocketAddr) -> Option<E> {
        self.nodes.remove(&addr)
    }

    /// Whether an endpoint sits at `addr`.
    pub fn contains(&self, addr: SocketAddr) -> bool {
        self.nodes.contains_key(&addr)
    }

    /// The addresses of all endpoints, in ascending order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.keys().copied().collect()
    }

    /// The endpoint at `addr`, mutably (to call its application API).
    ///
    /// # Panics
    /// If no endpoint is at `addr` (a bug in the test).
    pub fn node(&mut self, addr: SocketAddr) -> &mut E {
        match self.nodes.get_mut(&addr) {
            Some(node) => node,
            None => panic!("no simulated endpoint at {addr}"),
        }
    }

    /// The endpoint at `addr`.
    ///
    /// # Panics
    /// If no endpoint is at `addr` (a bug in the test).
    pub fn node_ref(&self, addr: SocketAddr) -> &E {
        match self.nodes.get(&addr) {
            Some(node) => node,
            None => panic!("no simulated endpoint at {addr}"),
        }
    }

    /// The endpoint at `addr`, if any.
    pub fn get_mut(&mut self, addr: SocketAddr) -> Option<&mut E> {
        self.nodes.get_mut(&addr)
    }

    /// Cut (`blocked` = true) or restore the path between `a` and `b`, both directions.
    /// Datagrams sent across a cut are dropped (counted as `blocked`).
    pub fn partition(&mut self, a: SocketAddr, b: SocketAddr, blocked: bool) {
        if blocked {
            self.partitions.insert(pair(a, b));
        } else {
            self.partitions.remove(&pair(a, b));
        }
    }

    /// Put a datagram on the link as if the endpoint at `from` had sent it (e.g. replay a
    /// captured one); it is subject to the link's impairments like any other.
    pub fn inject(&mut self, from: SocketAddr, to: SocketAddr, payload: Vec<u8>) {
        self.send(from, Transmit { dest: to, payload });
    }

    /// Observe every datagram delivered from now on (e.g. to log a failing scenario).
    pub fn set_tap(&mut self, tap: Option<Tap>) {
        self.tap = tap;
    }

    /// Drop the datagrams `filter` selects, from now on (e.g. "the first join response").
    pub fn set_filter(&mut self, filter: Option<Filter>) {
        self.filter = filter;
    }

    /// The counters so far.
    pub fn stats(&self) -> &SimStats {
        &self.stats
    }

    /// Number of datagrams currently in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// A fingerprint of every delivery so far (time, addresses, bytes): equal seeds and
    /// equal test code must give equal hashes.
    pub fn trace_hash(&self) -> u64 {
        self.trace
    }

    /// One step: collect pending transmissions, jump the clock to the next event (an
    /// arrival or an endpoint deadline), deliver every datagram due by then and fire
    /// every due timer. Returns false when nothing is left to happen (idle).
    pub fn step(&mut self) -> bool {
        self.step_bounded(None)
    }

    /// Step until `done` holds or `limit` of virtual time has passed. Fails fast (in
    /// virtual time) when the protocol is stuck: the error says whether the limit passed,
    /// the network went idle with `done` still false, or the clock stopped advancing.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&mut Self) -> bool,
    ) -> Result<(), SimTimeout> {
        let start = self.elapsed;
        let deadline = self.now() + limit;
        let mut still = 0u32;
        loop {
            if done(self) {
                return Ok(());
            }
            if self.now() >= deadline {
                return Err(self.timeout("time limit passed", start));
            }
            let before = self.elapsed;
            if !self.step_bounded(Some(deadline)) {
                return if done(self) {
                    Ok(())
                } else {
                    Err(self.timeout("went idle", start))
                };
            }
            still = if self.elapsed == before { still + 1 } else { 0 };
            if still > LIVELOCK_STEPS {
                return Err(self.timeout(LIVELOCK, start));
            }
        }
    }

    /// Run every event for exactly `duration` of virtual time (the clock ends at
    /// `now + duration` even if the network goes idle earlier). Fails only on a livelock.
    pub fn run_for(&mut self, duration: Duration) -> Result<(), SimTimeout> {
        let deadline = self.now() + duration;
        match self.run_until(duration, |_| false) {
            Err(e) if e.reason == LIVELOCK => Err(e),
            _ => {
                self.advance_to(deadline);
                Ok(())
            }
        }
    }

    fn timeout(&self, reason: &'static str, start: Duration) -> SimTimeout {
        SimTimeout {
            reason,
            elapsed: self.elapsed.saturating_sub(start),
            stats: self.stats.clone(),
        }
    }

    fn step_bounded(&mut self, deadline: Option<Instant>) -> bool {
        self.flush_all();
        let next_arrival = self.in_flight.peek().map(|Reverse(d)| d.at);
        let next_timer = self.nodes.values().filter_map(Endpoint::poll_timeout).min();
        let next = match (next_arrival, next_timer) {
            (Some(a), Some(t)) => a.min(t),
            (Some(a), None) => a,
            (None, Some(t)) => t,
            (None, None) => return false,
        };
        if let Some(deadline) = deadline {
            if next > deadline {
                self.advance_to(deadline);
                return true;
            }
        }
        self.advance_to(next);
        let now = self.now();
        while self.in_flight.peek().is_some_and(|Reverse(d)| d.at <= now) {
            if let Some(Reverse(datagram)) = self.in_flight.pop() {
                self.deliver(datagram);
            }
        }
        let due: Vec<SocketAddr> = self
            .nodes
            .iter()
            .filter(|(_, node)| node.poll_timeout().is_some_and(|t| t <= now))
            .map(|(addr, _)| *addr)
            .collect();
        for addr in due {
            if let Some(node) = self.nodes.get_mut(&addr) {
                node.handle_timeout(now);
            }
            self.flush(addr);
        }
        true
    }

    /// Move the clock forward (never backwards) to `at`.
    fn advance_to(&mut self, at: Instant) {
        let target = at.saturating_duration_since(self.base);
        if target > self.elapsed {
            self.elapsed = target;
        }
    }

    fn deliver(&mut self, datagram: InFlight) {
        if let Some(count) = self.queued.get_mut(&datagram.to) {
            *count = count.saturating_sub(1);
        }
        let now = self.now();
        let Some(node) = self.nodes.get_mut(&datagram.to) else {
            self.stats.undeliverable += 1;
            return;
        };
        if let Some(tap) = self.tap.as_mut() {
            tap(self.elapsed, datagram.from, datagram.to, &datagram.payload);
        }
        node.handle_datagram(now, datagram.from, &datagram.payload);
        self.stats.delivered += 1;
        self.stats.delivered_bytes += datagram.payload.len() as u64;
        let mut trace = fnv1a(self.trace, &self.elapsed.as_nanos().to_le_bytes());
        trace = fnv1a(trace, datagram.from.to_string().as_bytes());
        trace = fnv1a(trace, datagram.to.to_string().as_bytes());
        self.trace = fnv1a(trace, &datagram.payload);
        self.flush(datagram.to);
    }

    fn flush_all(&mut self) {
        let addrs = self.addrs();
        for addr in addrs {
            self.flush(addr);
        }
    }

    /// Take every datagram the endpoint at `from` wants to send and put it on the link.
    fn flush(&mut self, from: SocketAddr) {
        while let Some(transmit) = self.nodes.get_mut(&from).and_then(Endpoint::poll_transmit) {
            self.send(from, transmit);
        }
    }

    fn send(&mut self, from: SocketAddr, transmit: Transmit) {
        self.stats.sent += 1;
        let elapsed = self.elapsed;
        let filtered = self
            .filter
            .as_mut()
            .is_some_and(|f| f(elapsed, from, transmit.dest, &transmit.payload));
        if filtered || self.partitions.contains(&pair(from, transmit.dest)) {
            self.stats.blocked += 1;
            return;
        }
        if self.rng.gen_bool(self.link.loss) {
            self.stats.dropped += 1;
            return;
        }
        if self.rng.gen_bool(self.link.duplicate) {
            self.stats.duplicated += 1;
            self.enqueue(from, transmit.dest, transmit.payload.clone());
        }
        self.enqueue(from, transmit.dest, transmit.payload);
    }

    fn enqueue(&mut self, from: SocketAddr, to: SocketAddr, payload: Vec<u8>) {
        let queued = self.queued.entry(to).or_insert(0);
        if self.link.queue_limit.is_some_and(|limit| *queued >= limit) {
            self.stats.overflowed += 1;
            return;
        }
        *queued += 1;
        let mut delay = self.link.delay + self.random_up_to(self.link.jitter);
        if self.rng.gen_bool(self.link.reorder) {
            self.stats.reordered += 1;
            let spread = (self.link.delay + self.link.jitter).max(Duration::from_millis(1))
                * Link::REORDER_SPREAD;
            delay += self.random_up_to(spread);
        }
        self.seq += 1;
        self.in_flight.push(Reverse(InFlight {
            at: self.now() + delay,
            seq: self.seq,
            from,
            to,
            payload,
        }));
    }

    fn random_up_to(&mut self, max: Duration) -> Duration {
        let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(self.rng.gen_range(0..=nanos))
        }
    }
}

impl Endpoint for Road {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        Self::handle_datagram(self, now, from, data);
    }

    fn handle_timeout(&mut self, now: Instant) {
        Self::handle_timeout(self, now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        Self::poll_transmit(self)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Self::poll_timeout(self)
    }
}

#[cfg(test)]
mod tests {
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
}
