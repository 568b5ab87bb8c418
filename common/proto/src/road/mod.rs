//! The sans-IO road core: remotes, transactions (join, allow, alive, message), timers.
//!
//! A [`Road`] is one RAET estate on a UDP "road". It owns no socket, no
//! clock and no storage: the driver builds it from a [`Snapshot`] of its keep,
//! feeds it received datagrams ([`Road::handle_datagram`]) and the current time
//! ([`Road::handle_timeout`]), then drains the datagrams to send
//! ([`Road::poll_transmit`]), the application events ([`Road::poll_event`]),
//! the keep writes ([`Road::poll_persist`]) and the next deadline
//! ([`Road::poll_timeout`]).
//!
//! Persistence: the road keeps its role records (keys and acceptance) in memory and
//! decides every join from them (the reference's `statusRole`), handing each change out as a
//! [`PersistOp`], in order, for the driver to apply where blocking is harmless. Reads of the
//! keep stay where the reference re-reads its role file to notice a decision written there by
//! another program (an operator's tool), as explicit requests: the road emits
//! [`PersistOp::LoadRole`] and the driver answers with [`Road::role_loaded`], never a
//! callback.
//! * While a join waits for an operator (auto `never`, pended), each of its redos asks; an
//!   accepted record completes the join, a rejected one ends it.
//! * A join request that the road's record of its role would reject (a remembered
//!   rejection, or keys other than the recorded ones) is decided only once the keep
//!   confirmed that record (an operator may have changed or deleted it there): the road
//!   asks, holds the request (`join_held`) and processes it again when the answer comes.
//!   Each confirmation serves one request.
//!
//! An answer overtaken by the road's own change of that role (e.g. [`Road::accept`] while
//! the read was queued) is stale and ignored. Decisions of the application go through
//! [`Event::Pending`] (which carries the offered keys) and [`Road::accept`] /
//! [`Road::reject`]; [`Road::forget_role`] drops a decision so that the next join is
//! decided again.
//!
//! Everything on the wire is what raet 0.6.8 emits (see `tests/road_capture.rs`: the join,
//! allow acks, alive and done datagrams of the reference capture are reproduced byte for
//! byte). The transactions follow the reference's `transacting.py`: Joiner/Joinent with the
//! decision matrix (mutable/immutable road, auto modes, pend/accept/reject/refuse/renew,
//! simultaneous joins: the smaller name yields), Allower/Allowent (CurveCP-like handshake),
//! Aliver/Alivent, Messenger/Messengent (segmentation, burst and wait flag, resend of
//! misseds, done, stale nacks, completed ids remembered 600 s), Staler/Stalent, session id
//! rules and the reference's timers ([`Timers`]). Presence runs on the road's own timers:
//! every joined remote gets an alive each period (no `manage()` call).
//!
//! Deliberate differences from the reference (none changes a datagram's format):
//! * a message always ends: [`Event::Delivered`] on done, [`Event::SendFailed`] after
//!   [`Timers::message_timeout`] (30 s) without progress (the reference retries forever);
//! * a message is delivered only on its receiver's done; a nack (not allowed any more, e.g.
//!   restarted; a stale session) means not delivered: the message is queued again and sent
//!   after a new allow (up to 4 attempts), where the reference drops it. A copy of a message
//!   we delivered is answered with done again (the reference nacks it), so a lost done
//!   never turns into a nack;
//! * messages queue while the remote is not allowed (join/allow are started for them) and
//!   are held until the allowent side has the final ack;
//! * a copy of an already answered join request (within 0.5 s) or hello (within the allow
//!   timeout) is dropped instead of restarting a completed handshake;
//! * undecryptable coats, cookies and initiates are counted and dropped or rejected (the
//!   reference raises out of its service loop);
//! * a join whose name or role cannot be a keep file name (`keep::check_name`: empty,
//!   path separators, whitespace, ...) is dropped as invalid (`invalid_join`,
//!   `invalid_accept`);
//! * memory is bounded ([`Limits`]);
//! * an estate moves to another address only by an allow from there, never by a join or
//!   any other packet (`rx`, `allow`).
//!
//! Files: `rx` receives (parse, verify, route to a transaction), `join`, `allow`, `alive`
//! and `message` hold one transaction kind each, `remote` the per-remote state, `core` what
//! every transaction shares (ids, emit, persist ops), `timers` and `transaction` the clocks
//! and the transaction table, `bookkeeping` presence, removal, queues and the transaction
//! table of each remote, `config` and `event` the public configuration and event types,
//! `restore` building a road from its keep's snapshot; this file the public API.

/// Counts a dropped packet in the road's stats field `$counter` and logs why.
macro_rules! drop_packet {
    ($core:expr, $counter:ident, $from:expr) => {{
        let core = &mut $core;
        core.stats.$counter += 1;
        core.log_drop(stringify!($counter), $from);
    }};
}

mod alive;
mod allow;
mod bookkeeping;
mod budget;
mod config;
mod congestion;
mod core;
mod event;
mod failure;
mod fast;
mod first_contact;
mod join;
mod message;
mod outbound;
mod receipt;
mod registry;
mod remote;
mod restore;
mod rx;
mod stats;
mod timers;
mod transaction;

pub use config::{Limits, Profile, RoadConfig};
pub use event::{Event, Presence, Receipt, RemoteStatus};
pub use failure::{AllowFailure, JoinFailure, RejectedBy, SendFailure};
pub use message::CHUNK;
pub use outbound::Outbound;
pub use stats::RoadStats;
pub use timers::Timers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value};

use crate::crypto::{PublicKey, VerifyKey};
#[cfg(doc)]
use crate::keep::Snapshot;
use crate::keep::{Acceptance, PersistOp, RoleRecord};
use crate::packet::{BodyKind, Head, PacketKind, MAX_MESSAGE_SIZE};
use crate::Transmit;

use self::core::Core;
use self::registry::Registry;
use self::remote::{Outgoing, Remote};
use self::transaction::{earliest, Transaction, TxIndex};

/// Our uid for a remote estate (its `nuid`; the `se` we put in our heads).
pub type Uid = u32;

/// Identifies one message queued with [`Road::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub u64);

/// Errors of the road API.
#[derive(Debug, thiserror::Error)]
pub enum RoadError {
    /// No remote with that uid or name.
    #[error("unknown remote")]
    UnknownRemote,
    /// A vacuous join needs a main estate at the other end; refused by configuration.
    #[error("vacuous joins are only accepted by a main estate")]
    NotMain,
    /// The encoded message exceeds the reference's limit.
    #[error("message too large: {size} bytes (limit {limit})")]
    MessageTooLarge {
        /// Size of the sealed message.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The message cannot be sent (encoding failed).
    #[error("invalid message: {0}")]
    InvalidMessage(String),
    /// Too many messages are already queued for this remote.
    #[error("send queue full for remote {0}")]
    QueueFull(Uid),
    /// The keep's local record or a key is unusable.
    #[error("invalid identity: {0}")]
    InvalidIdentity(String),
    /// The configuration is unusable (e.g. a name that cannot be sent).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A decision on keys the remote no longer holds ([`Road::decide_offered`]).
    #[error("the remote's keys changed since the decision was asked for")]
    KeysChanged,
}

/// A received packet, its head decoded (the coat still sealed).
pub(crate) struct Rx<'a> {
    /// The decoded head.
    pub head: Head,
    /// The coat bytes (body, possibly encrypted; a segment of a message).
    pub coat: &'a [u8],
    /// Where it came from.
    pub from: SocketAddr,
}

/// A join request held until the keep confirms the rejection of its role.
struct HeldJoin {
    /// The role it offers.
    role: String,
    /// Its head.
    head: Head,
    /// Its coat.
    coat: Vec<u8>,
    /// Where it came from.
    from: SocketAddr,
}

/// One RAET road estate: a sans-IO state machine (see the module documentation).
pub struct Road {
    core: Core,
    remotes: Registry,
    /// Remotes of vacuous joins in progress, by address (the reference's `joinees`).
    joinees: HashMap<SocketAddr, Uid>,
    /// Join requests waiting for the keep's answer about their role (at most
    /// [`Limits::max_joinees`]).
    held_joins: Vec<HeldJoin>,
    /// When each source address last made a new first contact (bounded, see
    /// [`Limits::first_contact_interval`]).
    first_contact_sources: HashMap<SocketAddr, Instant>,
    /// Received messages the application has not yet said it took, with the head of their
    /// answer ([`RoadConfig::confirm_messages`]).
    awaiting: HashMap<Receipt, Head>,
}

impl std::fmt::Debug for Road {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Road")
            .field("name", &self.core.config.name)
            .field("uid", &self.core.uid)
            .field("remotes", &self.remotes.len())
            .finish()
    }
}

impl Road {
    /// The first presence and reap deadlines of a new remote (period + offset on a non-main).
    fn first_presence(&self, now: Instant) -> (Instant, Instant) {
        let t = &self.core.config.timers;
        let mut first = t.presence_period;
        if !self.core.config.main {
            first += t.presence_offset;
        }
        (
            now.checked_add(first).unwrap_or(now),
            now.checked_add(t.reap_interim).unwrap_or(now),
        )
    }

    /// Our estate name.
    pub fn name(&self) -> &str {
        &self.core.config.name
    }

    /// Our long-term ed25519 verify key (join `verhex`).
    pub fn verify_key(&self) -> VerifyKey {
        self.core.signer.verify_key()
    }

    /// Our long-term curve25519 public key (join `pubhex`).
    pub fn public_key(&self) -> PublicKey {
        self.core.private.public_key()
    }

    /// Join (cascade: allow, then alive) the estate at `ha`: vacuous if unknown there, else
    /// non-vacuous. Returns our uid for it (provisional name until the join completes).
    pub fn join(&mut self, now: Instant, ha: SocketAddr) -> Result<Uid, RoadError> {
        let known = self
            .remotes
            .values()
            .find(|r| !r.ephemeral && r.ha == ha)
            .map(|r| (r.uid, r.fuid, r.main, r.joined));
        let uid = match known {
            Some((uid, fuid, main, joined)) => {
                if fuid == 0 && joined == Some(true) && !main {
                    return Err(RoadError::NotMain);
                }
                uid
            }
            None => {
                let remotes = &self.remotes;
                let uid = self.core.next_uid(|u| remotes.contains_key(&u));
                let (presence_due, reap_due) = self.first_presence(now);
                let remote = Remote::new(uid, 0, ha.to_string(), ha, presence_due, reap_due);
                self.remotes.insert(uid, remote);
                uid
            }
        };
        self.start_join(now, uid, true, false, None);
        Ok(uid)
    }

    /// Queue a JSON-object message; if the remote is not yet allowed it waits (join/allow are started).
    ///
    /// The message ends with [`Event::Delivered`] (the peer sent done) or
    /// [`Event::SendFailed`] (nacked, remote removed, or no progress for
    /// [`Timers::message_timeout`]).
    pub fn send(
        &mut self,
        now: Instant,
        to: Uid,
        body: Map<String, Value>,
    ) -> Result<MessageId, RoadError> {
        let plain = crate::packet::body::encode(self.core.config.bk, &body)
            .map_err(|e| RoadError::InvalidMessage(e.to_string()))?;
        self.send_encoded(now, to, plain.into())
    }

    /// [`Road::send`] of a body already encoded in the road's body kind
    /// ([`RoadConfig::bk`], [`crate::packet::body::encode`]): a message to many remotes is
    /// encoded once and its copies share it.
    pub fn send_encoded(
        &mut self,
        now: Instant,
        to: Uid,
        plain: Arc<[u8]>,
    ) -> Result<MessageId, RoadError> {
        self.send_as(now, to, plain, self.core.config.bk)
    }

    /// [`Road::send`] of opaque bytes, body kind raw: the receiver's application gets them
    /// untouched ([`Event::Message`] `raw`). Only for peers known to take raw bodies (this
    /// implementation; the reference refuses them).
    pub fn send_raw(
        &mut self,
        now: Instant,
        to: Uid,
        bytes: Arc<[u8]>,
    ) -> Result<MessageId, RoadError> {
        self.send_as(now, to, bytes, BodyKind::Raw)
    }

    fn send_as(
        &mut self,
        now: Instant,
        to: Uid,
        plain: Arc<[u8]>,
        bk: BodyKind,
    ) -> Result<MessageId, RoadError> {
        // A fan-out sends to many remotes between two datagrams: settle the ones changed so
        // far so that `poll_timeout` stays O(1) (it reads the unsettled ones).
        self.settle();
        self.release_budget(now);
        let limits = self.core.config.limits.clone();
        let remote = self
            .remotes
            .get(&to)
            .filter(|r| !r.ephemeral)
            .ok_or(RoadError::UnknownRemote)?;
        let sealed = if plain.is_empty() {
            0
        } else {
            plain.len() + message::SEAL_OVERHEAD
        };
        if sealed > MAX_MESSAGE_SIZE {
            return Err(RoadError::MessageTooLarge {
                size: sealed,
                limit: MAX_MESSAGE_SIZE,
            });
        }
        message::check_segmentable(&self.core, remote, sealed)?;
        if remote.outbox.len() >= limits.max_queued_messages
            || remote.outbox_bytes.saturating_add(plain.len()) > limits.max_queued_bytes
        {
            self.core.stats.queue_full += 1;
            return Err(RoadError::QueueFull(to));
        }
        self.core.last_message_id += 1;
        let id = MessageId(self.core.last_message_id);
        if let Some(remote) = self.remotes.get_mut(&to) {
            remote.outbox_bytes += plain.len();
            remote.outbox.push_back(Outgoing {
                id,
                body: plain,
                bk,
                queued: now,
                attempts: 0,
            });
        }
        self.pump(now, to);
        Ok(id)
    }

    /// Operator decision for auto `never` (by remote name): accept its role's keys. A join
    /// pending on this decision completes now.
    pub fn accept(&mut self, now: Instant, name: &str) -> Result<(), RoadError> {
        self.decide(now, name, Acceptance::Accepted, None)
    }

    /// Operator decision (by remote name): reject its role's keys (also later). The remote is
    /// removed.
    pub fn reject(&mut self, now: Instant, name: &str) -> Result<(), RoadError> {
        self.decide(now, name, Acceptance::Rejected, None)
    }

    /// A decision on the keys (`verhex`, `pubhex`) that remote `name` offered (its
    /// [`Event::Pending`]), made elsewhere while the road went on: applied as
    /// [`Road::accept`] (`accept`) or [`Road::reject`] only while the remote still holds
    /// those keys. A later join may have put other keys there (a first contact's keys are not
    /// proven): then nothing changes and the answer is [`RoadError::KeysChanged`], counted as
    /// `decision_keys_changed`. When the remote is gone (a first contact dropped to make room
    /// in a join storm) and roles are names, the decision is still recorded for those keys,
    /// so that the estate's next join is decided at once, unrationed, as after a restart.
    pub fn decide_offered(
        &mut self,
        now: Instant,
        name: &str,
        verhex: &str,
        pubhex: &str,
        accept: bool,
    ) -> Result<(), RoadError> {
        let acceptance = match accept {
            true => Acceptance::Accepted,
            false => Acceptance::Rejected,
        };
        if self.uid_by_name(name).is_none() && self.core.config.role_is_name {
            self.core.stats.decision_recorded += 1;
            self.core.save_role(RoleRecord {
                role: name.to_owned(),
                acceptance,
                verhex: verhex.to_owned(),
                pubhex: pubhex.to_owned(),
            });
            return Ok(());
        }
        self.decide(now, name, acceptance, Some(verhex))
    }

    /// Records an operator decision for the role of remote `name` (on the keys `offered`, if
    /// given) and applies it.
    fn decide(
        &mut self,
        now: Instant,
        name: &str,
        acceptance: Acceptance,
        offered: Option<&str>,
    ) -> Result<(), RoadError> {
        let uid = self.uid_by_name(name).ok_or(RoadError::UnknownRemote)?;
        let Some(remote) = self.remotes.get_mut(&uid) else {
            return Err(RoadError::UnknownRemote);
        };
        if remote.verhex.is_empty() {
            return Err(RoadError::UnknownRemote);
        }
        if offered.is_some_and(|verhex| verhex != remote.verhex) {
            self.core.stats.decision_keys_changed += 1;
            return Err(RoadError::KeysChanged);
        }
        let record = RoleRecord {
            role: remote.role.clone(),
            acceptance,
            verhex: remote.verhex.clone(),
            pubhex: remote.pubhex.clone(),
        };
        remote.acceptance = Some(acceptance);
        self.core.save_role(record);
        match acceptance {
            Acceptance::Rejected => {
                self.core.event(Event::Rejected {
                    uid,
                    name: name.to_owned(),
                    by: RejectedBy::Us,
                });
                self.remove_remote(now, uid);
            }
            _ => self.resolve_pending(now, uid),
        }
        Ok(())
    }

    /// Forget a remote (and its keep record); its open transactions are nacked and its
    /// queued messages fail.
    pub fn remove(&mut self, now: Instant, uid: Uid) -> Result<(), RoadError> {
        if self.remotes.get(&uid).is_none_or(|r| r.ephemeral) {
            return Err(RoadError::UnknownRemote);
        }
        self.remove_remote(now, uid);
        self.release_budget(now);
        Ok(())
    }

    /// Forgets the decision on `role`'s keys (in memory and in the keep): the next join
    /// offering it is decided again by the auto mode. Known remotes of that role keep their
    /// sessions.
    pub fn forget_role(&mut self, role: &str) {
        self.core.forget_role(role);
    }

    /// The keep's answer to [`PersistOp::LoadRole`]: its record of `role` now (`None`: it has
    /// none). Unless the road changed that role since it asked (then the answer is stale and
    /// ignored, counted as `stale_role_load`), the record replaces the road's (confirmed for
    /// the next join request of that role that it would reject), and joins pending on that role
    /// are decided again: an accepted record completes them, a rejected one removes their
    /// remotes. Either way the join requests held for that role are processed again.
    pub fn role_loaded(&mut self, now: Instant, role: &str, record: Option<RoleRecord>) {
        if !self.core.role_loads.remove(role) {
            self.core.stats.stale_role_load += 1;
            self.release_held_joins(now, role);
            return;
        }
        match record {
            Some(record) => {
                self.core.confirmed_roles.insert(role.to_owned());
                self.core.roles.insert(role.to_owned(), record);
            }
            None => {
                self.core.roles.remove(role);
            }
        }
        for uid in self.remotes.with_role(role) {
            self.recheck_pending(now, uid);
        }
        self.release_held_joins(now, role);
    }

    /// Holds a join request offering `role` until the keep answers about it (dropped, and
    /// counted as `held_join_limit`, beyond [`Limits::max_joinees`]: the joiner's redo comes
    /// again).
    pub(crate) fn hold_join(&mut self, role: &str, rx: &Rx<'_>) {
        if self.held_joins.len() >= self.core.config.limits.max_joinees {
            drop_packet!(self.core, held_join_limit, rx.from);
            return;
        }
        self.core.stats.join_held += 1;
        self.held_joins.push(HeldJoin {
            role: role.to_owned(),
            head: rx.head.clone(),
            coat: rx.coat.to_vec(),
            from: rx.from,
        });
    }

    /// Processes again the join requests held for `role` (now decided from the keep's answer).
    fn release_held_joins(&mut self, now: Instant, role: &str) {
        let (released, held) = std::mem::take(&mut self.held_joins)
            .into_iter()
            .partition(|h| h.role == role);
        self.held_joins = held;
        for join in released {
            let rx = Rx {
                head: join.head,
                coat: &join.coat,
                from: join.from,
            };
            self.process_rx(now, &rx);
        }
    }

    /// Our uid for the remote called `name`.
    pub fn uid_by_name(&self, name: &str) -> Option<Uid> {
        self.remotes.uid_by_name(name)
    }

    /// Panics unless the road's lookups of remotes by name, ephemerality and first contact
    /// agree with the remotes (for tests: after a storm of joins, renames and removals).
    #[cfg(feature = "testutil")]
    pub fn check_index(&mut self) {
        self.remotes.check_index();
    }

    /// Snapshots of every remote.
    pub fn remotes(&self) -> Vec<RemoteStatus> {
        self.remotes
            .values()
            .filter(|r| !r.ephemeral)
            .map(RemoteStatus::of)
            .collect()
    }

    /// A snapshot of the remote `uid` (not of a first contact still joining).
    pub fn remote(&self, uid: Uid) -> Option<RemoteStatus> {
        self.remotes
            .get(&uid)
            .filter(|r| !r.ephemeral)
            .map(RemoteStatus::of)
    }

    /// Sealed bytes of the messages being sent now (bounded by [`Limits::max_sealed_bytes`],
    /// but for one message larger than it).
    #[must_use]
    pub fn sealed_bytes(&self) -> usize {
        self.core.budget.used()
    }

    /// Handshakes (joins and allows) remotes started that are under way and count against
    /// [`Limits::max_handshakes`].
    #[must_use]
    pub fn handshakes(&self) -> usize {
        self.remotes.handshakes()
    }

    /// Counters: `rx_packets`, `tx_packets`, and one per drop reason or protocol event
    /// (names follow the reference's stats where one exists, e.g. `parse_error`,
    /// `bad_signature`, `decrypt_error`, `stale_session`, `unknown_remote`, `redo_segment`).
    pub fn stats(&self) -> &RoadStats {
        &self.core.stats
    }

    /// Fire every timer due at `now`: only the remotes whose next deadline has come are
    /// visited.
    pub fn handle_timeout(&mut self, now: Instant) {
        let config = &self.core.config;
        let due = self
            .remotes
            .take_due(now, |remote| remote_deadline(config, remote));
        for uid in due {
            self.core.stats.timer_remotes += 1;
            let due: Vec<TxIndex> = match self.remotes.get_mut(&uid) {
                Some(remote) => {
                    remote.expire_done(now);
                    remote.transactions.due(now)
                }
                None => continue,
            };
            for index in due {
                let Some(txn) = self.take_txn(uid, &index) else {
                    continue;
                };
                match txn {
                    Transaction::Joiner(t) => self.joiner_timer(now, uid, index, t),
                    Transaction::Joinent(t) => self.joinent_timer(now, uid, index, t),
                    Transaction::Allower(t) => self.allower_timer(now, uid, index, t),
                    Transaction::Allowent(t) => self.allowent_timer(now, uid, index, t),
                    Transaction::Aliver(t) => self.aliver_timer(now, uid, index, t),
                    Transaction::Messenger(t) => self.messenger_timer(now, uid, index, t),
                    Transaction::Messengent(t) => self.messengent_timer(now, uid, index, t),
                }
            }
            self.expire_outbox(now, uid);
            self.presence_timer(now, uid);
            self.collect(uid);
        }
        self.release_budget(now);
        self.settle();
    }

    /// Brings the timer schedule up to date with the remotes changed since the last look.
    fn settle(&mut self) {
        let config = &self.core.config;
        self.remotes
            .settle(|remote| remote_deadline(config, remote));
    }

    /// The next datagram to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.poll_outbound().map(Outbound::finish)
    }

    /// The next datagram to send, its signature or seal possibly still to do: a driver
    /// finishes a batch of them on every core ([`Outbound::finish`]), then sends them in
    /// this order.
    #[must_use]
    pub fn poll_outbound(&mut self) -> Option<Outbound> {
        self.core.transmits.pop_front()
    }

    /// The next event for the application.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.core.events.pop_front()
    }

    /// The next thing to do to the keep, in the order the road decided them: apply every op
    /// in this order ([`PersistOp::apply`]) and answer [`PersistOp::LoadRole`] with
    /// [`Road::role_loaded`]. The queue is unbounded: a driver drains it after every input,
    /// as it drains the datagrams to send.
    #[must_use]
    pub fn poll_persist(&mut self) -> Option<PersistOp> {
        self.core.persist.pop_front()
    }

    /// When [`Road::handle_timeout`] must be called next (possibly a little early, never
    /// late). Costs O(1) plus the remotes changed since the last datagram or timeout.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let config = &self.core.config;
        self.remotes.next(|remote| remote_deadline(config, remote))
    }
}

/// The next deadline of one remote: its transactions' timers, the expiry of its oldest
/// completed message id and of its oldest queued message, its presence and reap timers.
fn remote_deadline(config: &RoadConfig, remote: &Remote) -> Option<Instant> {
    let mut next = earliest(
        remote.next_done_expiry(),
        remote.transactions.next_deadline(),
    );
    if let Some(first) = remote.outbox.front() {
        next = earliest(
            next,
            first.queued.checked_add(config.timers.message_limit()),
        );
    }
    if !remote.ephemeral {
        next = earliest(next, Some(remote.presence_due));
        if config.main {
            next = earliest(next, Some(remote.reap_due));
        }
    }
    next
}

/// Nack-like packet kinds, never answered with a stale nack.
fn is_nack_kind(pk: PacketKind) -> bool {
    matches!(
        pk,
        PacketKind::Nack
            | PacketKind::Unjoined
            | PacketKind::Unallowed
            | PacketKind::Refuse
            | PacketKind::Reject
    )
}
