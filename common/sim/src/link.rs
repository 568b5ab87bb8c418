//! The impairments of the simulated link ([`Link`]): loss, duplication, reordering,
//! delay, jitter, the receive queue limit and the senders' rate.

use std::time::Duration;

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
    /// Each sender's uplink in bytes per second: a datagram leaves once the ones before it
    /// were serialised (a queue, never a drop). `None` = infinitely fast.
    pub rate: Option<u64>,
    /// With `rate`: at most this many bytes wait in a sender's uplink (a router's buffer
    /// before a bottleneck); a datagram that finds it full is dropped (counted as
    /// `overflowed`). `None` = unlimited.
    pub buffer: Option<usize>,
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
            rate: None,
            buffer: None,
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
            rate: None,
            buffer: None,
        }
    }
}

impl Default for Link {
    fn default() -> Self {
        Self::perfect()
    }
}
