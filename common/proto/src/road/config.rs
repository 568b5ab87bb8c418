//! The road's configuration: [`RoadConfig`] (identity, acceptance mode, head kind, burst,
//! timers) and its memory bounds, [`Limits`].

use std::net::SocketAddr;
use std::time::Duration;

use crate::keep::AutoMode;
use crate::packet::{BodyKind, HeadKind, MAX_MESSAGE_SIZE};

use super::Timers;
#[cfg(doc)]
use super::{Event, Receipt, Road, RoadError};

/// Configuration of a road estate.
#[derive(Debug, Clone)]
pub struct RoadConfig {
    /// Our estate name (unique on the road).
    pub name: String,
    /// Our role (keys are accepted per role); `None` = our name.
    pub role: Option<String>,
    /// Whether we are a main estate (only a main accepts vacuous joins).
    pub main: bool,
    /// Application kind sent in joins (0..=255).
    pub kind: u8,
    /// Key acceptance mode for remotes joining us or joined by us.
    pub auto: AutoMode,
    /// Whether a remote's name, address, uid, main, kind, role or keys may change on rejoin.
    pub mutable: bool,
    /// Whether a join whose role differs from its name is rejected before the keep is
    /// consulted (`join_role_not_name`). Keys are decided per role: without this, a joiner
    /// can offer another estate's name as its role and have its own keys recorded for it.
    /// Not in the reference (whose roles may be shared); for a road whose keys are decided
    /// per estate name (Salt's minion ids).
    pub role_is_name: bool,
    /// Whether a received message is acknowledged (done) only when the application says it
    /// took it ([`Road::taken`], with the [`Receipt`] of its [`Event::Message`]) instead of
    /// as soon as it is complete: "delivered" then means the receiving application has it.
    /// Copies of a message awaiting that are dropped. The application must answer every
    /// receipt ([`Road::taken`] or [`Road::refused`]).
    pub confirm_messages: bool,
    /// Head kind of the packets we send (receiving auto-detects).
    pub hk: HeadKind,
    /// Body kind of the messages we send: json or msgpack (the reference's stack attribute
    /// `Bk`); a received message is decoded by its own head's body kind.
    pub bk: BodyKind,
    /// Segments sent before waiting for an ack (0 = the whole message at once).
    pub burst: u32,
    /// Our own address (recorded in the keep).
    pub ha: SocketAddr,
    /// Whether the fast profile is offered in our joins and used with peers that offer it
    /// too ([`Profile`]).
    pub profile: Profile,
    /// Protocol timers.
    pub timers: Timers,
    /// Memory bounds.
    pub limits: Limits,
}

/// The protocol profile of a road's message transactions (docs/protocol.md, *The fast
/// profile*).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// The reference's packets only: nothing offered, every peer gets signed packets and
    /// crypto_box coats.
    Compat,
    /// The fast profile offered in every join and used with each peer that offers it too;
    /// the others (the reference) get the compatible profile.
    #[default]
    Auto,
    /// The fast profile required: a join with a peer that does not offer it is refused.
    Fast,
}

impl Profile {
    /// Whether our joins offer the fast profile.
    pub fn offers(self) -> bool {
        self != Self::Compat
    }
}

impl std::str::FromStr for Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "compat" => Ok(Self::Compat),
            "auto" => Ok(Self::Auto),
            "fast" => Ok(Self::Fast),
            _ => Err(format!("unknown profile {s:?} (compat, auto or fast)")),
        }
    }
}

/// Memory bounds of a road (not in the reference, which has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Messages queued for one remote (waiting for it to be allowed or for a free slot);
    /// beyond this [`Road::send`] fails with [`RoadError::QueueFull`].
    pub max_queued_messages: usize,
    /// Body bytes queued for one remote; beyond this [`Road::send`] fails with
    /// [`RoadError::QueueFull`].
    pub max_queued_bytes: usize,
    /// Messages in flight (open Messengers) to one remote; the rest wait in the queue.
    pub max_messengers: usize,
    /// Bytes of the messages in flight to one remote: a message that would exceed it waits
    /// in the queue while another is in flight (one message always may, whatever its size).
    /// Each message leaves as one burst, so this keeps what a receiver must buffer under its
    /// socket's receive buffer (`raet` asks for 4 MiB).
    pub max_inflight_bytes: usize,
    /// Sealed bytes of the messages in flight, road-wide (each open Messenger holds its
    /// message sealed for its remote); a message that does not fit waits in its queue until
    /// others are done (one message always may, whatever its size), without counting against
    /// its message timeout (`sealed_budget_wait`). It bounds the memory of a fan-out: 100 KB
    /// to 10,000 remotes holds at most this much sealed at once.
    pub max_sealed_bytes: usize,
    /// Open transactions started by one remote (segmented messages being received, joins,
    /// allows); packets that would open more are dropped (`transaction_limit`).
    pub max_correspondents: usize,
    /// Bytes reserved by all messages being reassembled (road-wide); a segmented message
    /// that does not fit is nacked (`reassembly_limit`).
    pub max_reassembly_bytes: usize,
    /// Remotes being joined vacuously by unknown estates at once (each one created from a
    /// single unauthenticated request); more requests are dropped (`joinee_limit`).
    pub max_joinees: usize,
    /// Handshakes (joins and allows) remotes started that may be under way at once; a join
    /// request that would start another is refused unheard (`join_busy`) and its joiner
    /// asks again later. A join waiting for a decision on keys that were already pending at
    /// the remote's previous join (an operator's, or a slow one) does not count.
    pub max_handshakes: usize,
    /// Completed message ids remembered per remote for duplicate suppression.
    pub max_done_ids: usize,
    /// First contacts (estates that joined vacuously and never completed a join here, e.g.
    /// pending an operator's decision) kept at once; a new one beyond this drops the one
    /// that asked least recently ([`Event::FirstContactDropped`], `first_contact_evicted`).
    /// They live in memory only: nothing of them is written until their join completes.
    pub max_first_contacts: usize,
    /// One new first contact per source address per this interval; more are dropped
    /// (`first_contact_rate_limited`). A first contact asking again is not new, nor are keys
    /// a role record holds (an estate decided before, joining again).
    pub first_contact_interval: Duration,
    /// Largest fast-profile datagram to a remote off this host (bytes): the 1,400-byte class
    /// that crosses common paths without IP fragmentation.
    pub fast_datagram: usize,
    /// Largest fast-profile datagram to a loopback address (bytes; UDP's limit is 65,507).
    pub fast_datagram_loopback: usize,
    /// A first contact that has not asked again (joined again) for this long is dropped
    /// ([`Event::FirstContactDropped`], `first_contact_expired`).
    pub first_contact_ttl: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_queued_messages: 100_000,
            max_queued_bytes: 512 * 1024 * 1024,
            max_messengers: 64,
            max_inflight_bytes: 2 * 1024 * 1024,
            max_sealed_bytes: 64 * 1024 * 1024,
            max_correspondents: 1024,
            max_reassembly_bytes: 4 * MAX_MESSAGE_SIZE,
            max_joinees: 1024,
            max_handshakes: 256,
            max_done_ids: 65_536,
            max_first_contacts: 512,
            first_contact_interval: Duration::from_secs(10),
            first_contact_ttl: Duration::from_secs(30),
            fast_datagram: 1400,
            fast_datagram_loopback: 65_000,
        }
    }
}

impl RoadConfig {
    /// Defaults: non-main, auto `never`, immutable, kind 0, raet heads, burst 0, reference timers.
    pub fn new(name: impl Into<String>, ha: SocketAddr) -> Self {
        Self {
            name: name.into(),
            role: None,
            main: false,
            kind: 0,
            auto: AutoMode::Never,
            mutable: false,
            role_is_name: false,
            confirm_messages: false,
            hk: HeadKind::Raet,
            bk: BodyKind::Json,
            burst: 0,
            profile: Profile::Auto,
            ha,
            timers: Timers::default(),
            limits: Limits::default(),
        }
    }
}
