//! RAET: Reliable Asynchronous Event Transport, the stacks.
//!
//! The protocol itself is sans-IO in [`raet_proto`] (its modules are re-exported here, so
//! `raet::road`, `raet::packet`, ... name the same items). This crate owns what touches the
//! outside world:
//! * [`stack`]: `RoadStack`, the tokio driver of a road over a real UDP socket (feature
//!   `tokio`, on by default);
//! * [`lane`]: `LaneStack` (tokio) and `LaneYard` (poll-driven) over Unix datagram sockets;
//! * [`keep`]: `DirKeep`, the keep on disk.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use raet_proto::{crypto, packet, road, Transmit};

pub mod keep;
pub mod lane;
#[cfg(feature = "tokio")]
pub mod stack;

/// The README's Rust examples, compiled as doctests so the README stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
