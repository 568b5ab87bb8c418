//! The lane's drivers: a yard bound to a Unix datagram socket `<dir>/<lane>.<yard>.uxd`.
//!
//! The pages, books and the state of a yard are sans-IO ([`raet_proto::lane`], re-exported
//! here); this module owns the sockets: the tokio [`LaneStack`] (feature `tokio`) and the
//! poll-driven [`LaneYard`] for callers with their own event loop (the Python extension).

pub use raet_proto::lane::*;

mod socket;
#[cfg(feature = "tokio")]
mod stack;
mod yard;

#[cfg(feature = "tokio")]
pub use stack::LaneStack;
pub use yard::LaneYard;

/// How long a yard's send waits by default for a full destination queue to
/// take one page before giving up with [`LaneError::QueueFull`] (see
/// `LaneStack::set_stall_limit`, [`LaneYard::set_stall_limit`]).
pub const DEFAULT_STALL_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);
