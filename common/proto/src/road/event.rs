//! What the road tells the application: [`Event`]s (with the [`Presence`] changes and the
//! [`Receipt`] of a message to confirm) and the [`RemoteStatus`] snapshot of a remote.

use std::net::SocketAddr;
use std::time::Instant;

use serde_json::{Map, Value};

use crate::keep::Acceptance;

use super::remote::Remote;
use super::{AllowFailure, JoinFailure, MessageId, RejectedBy, SendFailure, Uid};
#[cfg(doc)]
use super::{Road, RoadConfig};

/// Presence of a remote as seen by us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Presence {
    /// The join completed.
    Joined,
    /// The allow handshake completed (messages can flow).
    Allowed,
    /// The remote answered (alive ack or any valid traffic) after being lost or unknown.
    Alive,
    /// The alive timed out or the join was lost.
    Lost,
}

/// Something the application should know.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The join with this remote completed.
    Joined {
        /// Our uid for it.
        uid: Uid,
        /// Its name.
        name: String,
        /// Its verify key (hex) as the join recorded it.
        verhex: String,
    },
    /// The remote's keys await our operator's decision (auto `never`): see [`Road::accept`].
    Pending {
        /// Our uid for it.
        uid: Uid,
        /// Its name.
        name: String,
        /// Its role (the keys are decided per role).
        role: String,
        /// The verify key it offers (hex).
        verhex: String,
        /// The public key it offers (hex).
        pubhex: String,
    },
    /// The join was rejected (by us or by them).
    Rejected {
        /// Our uid for it.
        uid: Uid,
        /// Its name.
        name: String,
        /// Who rejected it.
        by: RejectedBy,
    },
    /// The remote pended our join: its operator has not decided on our keys yet. The join
    /// goes on (their accept completes it) until it times out with
    /// [`JoinFailure::Pended`](super::JoinFailure::Pended). Emitted once per join, at the
    /// first pend. The pend is not authenticated (it comes before any key is trusted): it
    /// is a hint for the application's status and changes no state of the road.
    JoinPended {
        /// Our uid for it.
        uid: Uid,
        /// Its name as we know it (before a first join completes, its address).
        name: String,
    },
    /// The join timed out or was refused.
    JoinFailed {
        /// Our uid for it.
        uid: Uid,
        /// Why.
        reason: JoinFailure,
    },
    /// The allow handshake completed.
    Allowed {
        /// Our uid for it.
        uid: Uid,
        /// Its name.
        name: String,
        /// Its address (the application needs not ask the road for it).
        ha: SocketAddr,
    },
    /// An allow handshake with this remote ended without success (timed out, refused,
    /// rejected, invalid cookie or initiate) while no other allow or join with it was under
    /// way: it is not allowed. Presence retries (the next alive to a joined remote that is
    /// not allowed starts a new allow); `RoadStack::join` fails with it.
    AllowFailed {
        /// Our uid for it.
        uid: Uid,
        /// Why.
        reason: AllowFailure,
    },
    /// A presence change.
    Presence {
        /// Our uid for it.
        uid: Uid,
        /// Its name.
        name: String,
        /// The new presence.
        presence: Presence,
    },
    /// A message arrived.
    Message {
        /// Our uid for the sender.
        uid: Uid,
        /// The sender's name.
        name: String,
        /// The JSON object (empty for a raw body).
        body: Map<String, Value>,
        /// The bytes of a message of body kind raw ([`Road::send_raw`]), untouched.
        raw: Option<Vec<u8>>,
        /// With [`RoadConfig::confirm_messages`]: what to hand to [`Road::taken`] once the
        /// application has the message (the sender is told only then).
        receipt: Option<Receipt>,
    },
    /// The peer confirmed the whole message (done).
    Delivered {
        /// What [`Road::send`] returned.
        id: MessageId,
        /// The destination.
        uid: Uid,
    },
    /// The message could not be delivered.
    SendFailed {
        /// What [`Road::send`] returned.
        id: MessageId,
        /// The destination.
        uid: Uid,
        /// Why (timeout, nack, remote removed...).
        reason: SendFailure,
    },
    /// The remote was removed from our road.
    Removed {
        /// Our former uid for it.
        uid: Uid,
        /// Its name.
        name: String,
    },
    /// A first contact was dropped (too many, or it stopped asking) before its join
    /// completed: the application may forget what it recorded for it (the master removes
    /// the pending key it wrote for that join).
    FirstContactDropped {
        /// Our uid for it (no longer valid).
        uid: Uid,
        /// The name it claimed.
        name: String,
        /// The verify key it offered (hex).
        verhex: String,
    },
    /// A join request naming a remote we know (ours `uid`, `name`) offered a role or keys
    /// other than its recorded ones and was rejected: the sender may be an impostor, or the
    /// estate itself with new keys. The known remote (its keys, address and session) is left
    /// as it was; it is not a [`Event::Rejected`] of that remote.
    KeysRejected {
        /// Our uid for the known remote the join named.
        uid: Uid,
        /// The name the join claimed.
        name: String,
        /// Where the join came from.
        from: SocketAddr,
        /// The role the join offered.
        role: String,
        /// The verify key the join offered (hex).
        verhex: String,
        /// The public key the join offered (hex).
        pubhex: String,
    },
}

/// A received message awaiting the application's word ([`RoadConfig::confirm_messages`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Receipt {
    pub(super) uid: Uid,
    pub(super) si: u32,
    pub(super) ti: u32,
}

/// A snapshot of one remote estate.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteStatus {
    /// Our uid for it (nuid).
    pub uid: Uid,
    /// Its uid for us (fuid; 0 = unknown).
    pub fuid: u32,
    /// Its name.
    pub name: String,
    /// Its address.
    pub ha: SocketAddr,
    /// Its role.
    pub role: String,
    /// Acceptance of its role's keys, if known.
    pub acceptance: Option<Acceptance>,
    /// Its verify key (hex; empty until a join told it).
    pub verhex: String,
    /// Its public key (hex; empty until a join told it).
    pub pubhex: String,
    /// Join state (`None` = in progress or never tried).
    pub joined: Option<bool>,
    /// Allow state (`None` = in progress or never tried).
    pub allowed: Option<bool>,
    /// Alive state (`None` = never checked).
    pub alive: Option<bool>,
    /// Whether it is a main estate.
    pub main: bool,
    /// Its application kind.
    pub kind: u8,
    /// When we last received a valid packet from it.
    pub last_heard: Option<Instant>,
}

impl RemoteStatus {
    /// The snapshot of `r`.
    pub(super) fn of(r: &Remote) -> Self {
        Self {
            uid: r.uid,
            fuid: r.fuid,
            name: r.name.clone(),
            ha: r.ha,
            role: r.role.clone(),
            acceptance: r.acceptance,
            verhex: r.verhex.clone(),
            pubhex: r.pubhex.clone(),
            joined: r.joined,
            allowed: r.allowed,
            alive: r.alived,
            main: r.main,
            kind: r.kind,
            last_heard: r.last_heard,
        }
    }
}
