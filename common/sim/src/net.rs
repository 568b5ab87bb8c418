//! The network model: [`SimNet`] holds the endpoints by address, the datagrams in
//! flight and the virtual clock, steps time from event to event and delivers; its
//! counters ([`SimStats`]) and run errors ([`SimTimeout`]). What happens to a datagram
//! on the way is in `faults`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

use raet_proto::schedule::Schedule;
use raet_proto::Transmit;

use crate::{Endpoint, Link};
use faults::{clamp_probability, pair};

mod faults;

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
    /// Datagrams dropped because the destination's queue was full (`queue_limit`) or the
    /// sender's uplink buffer (`buffer`).
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
    /// Each endpoint's deadline as last read (so a step never asks every endpoint for its
    /// deadline); pending: the endpoints touched since (their transmits not yet taken).
    timers: Schedule<SocketAddr>,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    queued: BTreeMap<SocketAddr, usize>,
    /// When each sender's uplink is free again (with [`Link::rate`]).
    uplink_free: BTreeMap<SocketAddr, Duration>,
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
            timers: Schedule::new(),
            in_flight: BinaryHeap::new(),
            queued: BTreeMap::new(),
            uplink_free: BTreeMap::new(),
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
        self.timers.touch(addr);
    }

    /// Take the endpoint at `addr` off the network (a crash): datagrams to it are lost
    /// until an endpoint is added there again.
    pub fn remove(&mut self, addr: SocketAddr) -> Option<E> {
        self.timers.remove(&addr);
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
        self.timers.touch(addr);
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
        self.timers.touch(addr);
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
        self.settle();
        let next_arrival = self.in_flight.peek().map(|Reverse(d)| d.at);
        let next_timer = self.timers.peek();
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
        self.settle();
        let mut due = self.timers.due(now);
        // In address order, as a scan of every endpoint would fire them.
        due.sort_unstable();
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
        self.timers.touch(datagram.to);
        self.stats.delivered += 1;
        self.stats.delivered_bytes += datagram.payload.len() as u64;
        let mut trace = fnv1a(self.trace, &self.elapsed.as_nanos().to_le_bytes());
        trace = fnv1a(trace, datagram.from.to_string().as_bytes());
        trace = fnv1a(trace, datagram.to.to_string().as_bytes());
        self.trace = fnv1a(trace, &datagram.payload);
        self.flush(datagram.to);
    }

    /// Takes the transmits of every endpoint touched since the last look and reads its
    /// deadline again.
    fn settle(&mut self) {
        for addr in self.timers.take_pending() {
            self.flush(addr);
            let at = self.nodes.get(&addr).and_then(Endpoint::poll_timeout);
            self.timers.set(addr, at);
        }
    }

    /// Take every datagram the endpoint at `from` wants to send and put it on the link.
    fn flush(&mut self, from: SocketAddr) {
        while let Some(transmit) = self.nodes.get_mut(&from).and_then(Endpoint::poll_transmit) {
            self.send(from, transmit);
        }
    }
}

#[cfg(test)]
mod tests;
