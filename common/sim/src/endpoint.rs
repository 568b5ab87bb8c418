//! What can sit on the simulated network: the [`Endpoint`] trait (bytes and time in,
//! datagrams and deadlines out) and its implementation by the road core.

use std::net::SocketAddr;
use std::time::Instant;

use raet_proto::road::Road;
use raet_proto::Transmit;

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
