//! RAET: Reliable Asynchronous Event Transport.
//!
//! A wire-compatible implementation of the reference Python `raet` 0.6.8:
//! a *road* (UDP between hosts, with joins, a CurveCP-style allow handshake,
//! signed and encrypted packets, reliable segmented messages) and a *lane*
//! (Unix datagram sockets between processes of one host).
//!
//! The protocol core is sans-IO: state machines take bytes and the current
//! time and return datagrams to send, events and the next deadline. The
//! tokio drivers own the sockets and the clock.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod crypto;
pub mod keep;
pub mod lane;
pub mod packet;
pub mod road;
#[cfg(feature = "salt")]
pub mod salt;
pub mod sim;
pub mod stack;

/// A datagram the caller must send: produced by the sans-IO cores, sent by
/// the drivers (or by the simulated network in tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub dest: std::net::SocketAddr,
    /// The whole datagram.
    pub payload: Vec<u8>,
}

/// The README's Rust examples, compiled as doctests so the README stays true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
