//! The seeded fault injection: every datagram sent goes through the partitions, the
//! targeted filter and the link's random loss, duplication, reordering and delay, all
//! drawn from the network's one seeded RNG.

use std::cmp::Reverse;
use std::net::SocketAddr;
use std::time::Duration;

use rand::Rng;

use raet_proto::Transmit;

use super::{InFlight, SimNet};
use crate::{Endpoint, Link};

pub(super) fn clamp_probability(p: f64) -> f64 {
    if p.is_nan() {
        0.0
    } else {
        p.clamp(0.0, 1.0)
    }
}

pub(super) fn pair(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

impl<E: Endpoint> SimNet<E> {
    pub(super) fn send(&mut self, from: SocketAddr, transmit: Transmit) {
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
        let Some(sent) = self.serialise(from, transmit.payload.len()) else {
            self.stats.overflowed += 1;
            return;
        };
        if self.rng.gen_bool(self.link.loss) {
            self.stats.dropped += 1;
            return;
        }
        if self.rng.gen_bool(self.link.duplicate) {
            self.stats.duplicated += 1;
            self.enqueue(from, transmit.dest, transmit.payload.clone(), sent);
        }
        self.enqueue(from, transmit.dest, transmit.payload, sent);
    }

    /// When a datagram of `len` bytes sent now by `from` has left its uplink (now without a
    /// rate; lost datagrams take their time on the uplink too); None when the uplink's
    /// buffer is full (the datagram is dropped).
    fn serialise(&mut self, from: SocketAddr, len: usize) -> Option<Duration> {
        let Some(rate) = self.link.rate.filter(|&r| r > 0) else {
            return Some(self.elapsed);
        };
        let free = self.uplink_free.get(&from).copied().unwrap_or_default();
        let backlog = free.saturating_sub(self.elapsed).as_secs_f64() * rate as f64;
        if self
            .link
            .buffer
            .is_some_and(|b| backlog + len as f64 > b as f64)
        {
            return None;
        }
        let nanos = u64::try_from(len)
            .unwrap_or(u64::MAX)
            .saturating_mul(1_000_000_000)
            / rate;
        let done = free.max(self.elapsed) + Duration::from_nanos(nanos);
        self.uplink_free.insert(from, done);
        Some(done)
    }

    fn enqueue(&mut self, from: SocketAddr, to: SocketAddr, payload: Vec<u8>, sent: Duration) {
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
            at: self.base + sent + delay,
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
