//! RAET's sans-IO protocol: what a Reliable Asynchronous Event Transport peer says and decides.
//!
//! A wire-compatible implementation of the reference Python `raet` 0.6.8: a *road* (UDP
//! between hosts, with joins, a CurveCP-style allow handshake, signed and encrypted packets,
//! reliable segmented messages) and a *lane* (Unix datagram sockets between processes of one
//! host).
//!
//! Nothing here owns a socket, a clock, a thread or a runtime: the state machines take bytes
//! and the current time and return datagrams to send, events and the next deadline. The
//! drivers (crate `raet`: tokio `RoadStack`/`LaneStack`, poll-driven `LaneYard`, the on-disk
//! `DirKeep`) do the I/O; the simulator (crate `raet-sim`) drives the same cores in virtual
//! time for the tests.
//!
//! * [`packet`]: the road's wire (heads, bodies, coats, feet, segmentation);
//! * [`crypto`]: Ed25519 signing and curve25519 `crypto_box` (libraries, nothing hand-rolled);
//! * [`keep`]: the records a road persists, the snapshot it is built from and the persist ops
//!   it hands out, and the reference's key acceptance table;
//! * [`road`]: the road state machine (join, allow, alive, messages);
//! * [`lane`]: the lane's pages and books, and the sans-IO state of one yard;
//! * [`schedule`]: the deadline schedule the road keeps over its remotes (and the simulator
//!   over its endpoints).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod crypto;
pub mod keep;
pub mod lane;
pub mod packet;
pub mod road;
pub mod schedule;

/// A datagram the caller must send: produced by the sans-IO cores, sent by
/// the drivers (or by the simulated network in tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub dest: std::net::SocketAddr,
    /// The whole datagram.
    pub payload: Vec<u8>,
}
