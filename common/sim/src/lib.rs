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
//!
//! The items live by responsibility: `endpoint` (the [`Endpoint`] trait), `link` (the
//! [`Link`] impairments), `net` (the [`SimNet`] model and its clock) and its `faults`
//! (the seeded loss, duplication, reordering and delay of each datagram).

mod endpoint;
mod link;
pub mod mutate;
mod net;
pub mod world;

pub use endpoint::Endpoint;
pub use link::Link;
pub use net::{Filter, SimNet, SimStats, SimTimeout, Tap};
