//! Join transaction (tk 1): Joiner and Joinent (spec §7), the join part of `processRx`
//! (spec §6 step 3) and the key acceptance decision (spec §11.2).
//!
//! This file owns what both sides share: the [`Joiner`] and [`Joinent`] states, join body
//! validation and comparison, routing a join packet to its remote, our join body, nacks,
//! completion and its events, pending decisions (rechecked, resolved) and applying a join
//! body to a remote. `joiner` is our side of a join we start, `joinent` our answer to a
//! join request.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::keep::{Acceptance, KeepError};
use crate::packet::body::BodyMap;
use crate::packet::{Flags, Head, JoinError, JoinRepr, PacketKind};

#[cfg(doc)]
use super::remote::Proposal;
use super::remote::Remote;
use super::timers::Redo;
use super::transaction::{earliest, Transaction};
use super::{Event, Presence, Road, Rx, Uid};

mod joinent;
mod joiner;

/// Our side of a join we initiated.
pub(crate) struct Joiner {
    /// Head of every packet we send (the reference's `txData`: `se`/`de` as at request time).
    pub head: Head,
    /// Where the request went.
    dest: SocketAddr,
    /// We did not know the joinent's uid for us.
    vacuous: bool,
    /// A vacuous rejoin after a renew (keeps name and keys).
    renewal: bool,
    /// The joinent said pend.
    pended: bool,
    /// Allow (then alive) follows a successful join.
    cascade: bool,
    /// The transaction timeout (handed down the cascade).
    timeout: Duration,
    deadline: Option<Instant>,
    redo: Redo,
    /// Last packet sent (kind, datagram).
    last: Option<(PacketKind, Vec<u8>)>,
    /// The joinent's accept offered the fast profile.
    peer_fast: bool,
}

impl Joiner {
    /// Next timer.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        earliest(self.deadline, self.redo.due())
    }

    /// Whether it waits for our decision on the joinent's keys (its request was answered).
    pub(crate) fn awaits_decision(&self) -> bool {
        !matches!(self.last, Some((PacketKind::Request, _)))
    }
}

/// Our side of a join the remote initiated.
pub(crate) struct Joinent {
    /// Head of every packet we send (`se`/`de` swapped from the request).
    pub head: Head,
    /// The joiner's address.
    dest: SocketAddr,
    /// The joiner did not know our uid for it.
    vacuous: bool,
    /// The joiner said pend.
    pended: bool,
    /// The remote's keys were pending before this join (see
    /// [`Transaction::is_admitted_handshake`]).
    pub(super) repended: bool,
    /// A known remote joining from a new address: completing it records the move as
    /// proposed, the allow from there makes it ([`Proposal`]).
    moving: bool,
    /// The joiner's request offered the fast profile.
    peer_fast: bool,
    /// It won the race against a join of ours (`joinent_race`), which ended unannounced:
    /// if this one fails, that join failed (`Event::JoinFailed`), else whoever started it
    /// (an application's `join`) would wait for its end forever.
    superseded: bool,
    deadline: Option<Instant>,
    redo: Redo,
    /// Last packet sent (kind, datagram) and when.
    last: Option<(PacketKind, Vec<u8>)>,
    answered: Option<Instant>,
}

impl Joinent {
    /// Next timer.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        earliest(self.deadline, self.redo.due())
    }

    /// Whether it waits for our decision on the joiner's keys (no response sent yet).
    pub(crate) fn awaits_decision(&self) -> bool {
        !matches!(self.last, Some((PacketKind::Response, _)))
    }
}

/// Why a received join body is refused (logged; counted as `invalid_join` or
/// `invalid_accept`).
#[derive(Debug, thiserror::Error)]
enum InvalidJoin {
    /// A field is missing or malformed.
    #[error(transparent)]
    Body(#[from] JoinError),
    /// The name or role cannot be a keep file name.
    #[error(transparent)]
    Name(#[from] KeepError),
}

/// A parsed join body whose name and role can name keep records.
fn valid_join(parsed: Result<JoinRepr, JoinError>) -> Result<JoinRepr, InvalidJoin> {
    let jb = parsed?;
    crate::keep::check_name("name", &jb.name)?;
    crate::keep::check_name("role", &jb.role)?;
    Ok(jb)
}

/// How a join body compares with what we know of the remote.
struct Sameness {
    role_keys: bool,
    all: bool,
}

fn compare(remote: &Remote, jb: &JoinRepr, rha: SocketAddr, fuid: u32) -> Sameness {
    let role_keys =
        jb.role == remote.role && jb.verhex == remote.verhex && jb.pubhex == remote.pubhex;
    let all = role_keys
        && jb.name == remote.name
        && rha == remote.ha
        && fuid == remote.fuid
        && jb.main() == remote.main
        && jb.kind == remote.kind;
    Sameness { role_keys, all }
}

impl Road {
    /// The join part of `processRx`: the remote a join packet belongs to. `Ok(None)`: none
    /// (a stale reply, nacked by the caller); `Err`: dropped or already answered.
    pub(super) fn join_remote(&mut self, now: Instant, rx: &Rx<'_>) -> Result<Option<Uid>, ()> {
        let h = &rx.head;
        if h.si != 0 {
            drop_packet!(self.core, join_invalid_sid, rx.from);
            return Err(());
        }
        if h.fg.has(Flags::CF) {
            if h.de == 0 {
                drop_packet!(self.core, join_invalid_nuid, rx.from);
                return Err(());
            }
            if h.se == 0 {
                return match self.joinees.get(&rx.from) {
                    Some(&uid) if uid != h.de => {
                        drop_packet!(self.core, join_mismatch_nuid, rx.from);
                        Err(())
                    }
                    found => Ok(found.copied()),
                };
            }
            return Ok(self
                .remotes
                .get(&h.de)
                .filter(|r| !r.ephemeral)
                .map(|r| r.uid));
        }
        if h.se == 0 {
            drop_packet!(self.core, join_invalid_fuid, rx.from);
            return Err(());
        }
        if h.de != 0 {
            if self.remotes.get(&h.de).is_some_and(|r| !r.ephemeral) {
                return Ok(Some(h.de));
            }
            self.core.stats.stale_nuid += 1;
            self.reply_stale(rx, PacketKind::Renew);
            return Err(());
        }
        let mut found = self.joinees.get(&rx.from).copied();
        if let Some(uid) = found {
            let fuid = self.remotes.get(&uid).map_or(0, |r| r.fuid_at(rx.from));
            if fuid != h.se && fuid != 0 {
                self.joinees.remove(&rx.from);
                self.collect(uid);
                found = None;
            }
        }
        if found.is_some() {
            return Ok(found);
        }
        if h.pk != PacketKind::Request {
            drop_packet!(self.core, join_stale, rx.from);
            return Err(());
        }
        if self.refuse_busy(rx, None) {
            return Err(());
        }
        if self.remotes.ephemerals() >= self.core.config.limits.max_joinees {
            drop_packet!(self.core, joinee_limit, rx.from);
            return Err(());
        }
        let remotes = &self.remotes;
        let uid = self.core.next_uid(|u| remotes.contains_key(&u));
        let (presence_due, reap_due) = self.first_presence(now);
        let mut remote = Remote::new(
            uid,
            0,
            format!("ephemeral-{uid}"),
            rx.from,
            presence_due,
            reap_due,
        );
        remote.ephemeral = true;
        self.remotes.insert(uid, remote);
        Ok(Some(uid))
    }

    /// Admission control (issue 11): a join request that would start a handshake while
    /// [`Limits::max_handshakes`](super::Limits::max_handshakes) are under way is answered
    /// `refuse` unheard and nothing of it is kept (the reference joiner, as ours, takes it as
    /// a failed join and asks again later), so that a storm completes joins at the rate this
    /// road sustains instead of starting all and finishing none. A join from `remote` (a known
    /// one) already in a handshake, or whose keys were pending at its last join, adds no
    /// handshake and is heard. `true`: refused. The answer goes where the request came from,
    /// as one packet no larger than the request, and changes nothing here: a forged request
    /// gains nothing (and a forged refuse only fails a joiner's attempt, as any refuse can).
    pub(super) fn refuse_busy(&mut self, rx: &Rx<'_>, remote: Option<Uid>) -> bool {
        let adds = remote
            .and_then(|uid| self.remotes.get(&uid))
            .is_none_or(|r| !r.handshaking() && !r.pended());
        if !adds || self.remotes.handshakes() < self.core.config.limits.max_handshakes {
            return false;
        }
        drop_packet!(self.core, join_busy, rx.from);
        let h = &rx.head;
        let head = self.stale_head(h, h.de, true);
        self.emit_to(h.de, rx.from, &head, PacketKind::Refuse, &[]);
        true
    }

    /// Our join body; `uid` (our uid for the joiner) only in a response.
    fn join_body(&self, uid: Option<Uid>) -> BodyMap {
        JoinRepr {
            name: self.core.config.name.clone(),
            mode: self.core.mode(),
            kind: self.core.config.kind,
            uid,
            verhex: self.core.verhex.clone(),
            pubhex: self.core.pubhex.clone(),
            role: self.core.role.clone(),
            fast: self.core.config.profile.offers(),
        }
        .emit()
    }

    /// Sends `kind` on a joiner's addressing (its transaction ends with the caller).
    pub(super) fn joiner_nack(&mut self, _uid: Uid, j: &Joiner, kind: PacketKind) {
        self.core.stats.joiner_transaction_failure += 1;
        let _ = self.core.emit(j.dest, &j.head, kind, &[]);
    }

    /// Sends `kind` on a joinent's addressing, to the joiner's address.
    pub(super) fn joinent_nack(&mut self, _uid: Uid, j: &Joinent, kind: PacketKind) {
        self.core.stats.joinent_transaction_failure += 1;
        let _ = self.core.emit(j.dest, &j.head, kind, &[]);
    }

    /// Session bookkeeping of a completed join (both sides); `peer_fast`: whether the join
    /// (if this is one, not a move) had the remote offer the fast profile.
    pub(super) fn complete_join(
        &mut self,
        now: Instant,
        uid: Uid,
        vacuous: bool,
        peer_fast: Option<bool>,
    ) {
        let offers = self.core.config.profile.offers();
        let Some(remote) = self.remotes.get_mut(&uid) else {
            return;
        };
        if let Some(peer_fast) = peer_fast {
            remote.fast_peer = offers && peer_fast;
        }
        if remote.sid == 0 {
            self.core.new_session(remote);
            self.replace_stale_initiators(now, uid);
        }
        if let Some(remote) = self.remotes.get_mut(&uid) {
            if vacuous {
                remote.rsid = 0;
            }
            remote.joined = Some(true);
            remote.first_contact = None;
        }
        self.save(uid);
        self.core.save_local();
    }

    /// The Pending event: the remote's keys as offered await a decision.
    fn announce_pending(&mut self, uid: Uid) {
        let Some(remote) = self.remotes.get(&uid) else {
            return;
        };
        let event = Event::Pending {
            uid,
            name: remote.name.clone(),
            role: remote.role.clone(),
            verhex: remote.verhex.clone(),
            pubhex: remote.pubhex.clone(),
        };
        self.core.event(event);
    }

    /// Joined events.
    pub(super) fn announce_joined(&mut self, uid: Uid) {
        let Some(remote) = self.remotes.get(&uid) else {
            return;
        };
        let (name, verhex) = (remote.name.clone(), remote.verhex.clone());
        self.core.event(Event::Joined {
            uid,
            name: name.clone(),
            verhex,
        });
        self.core.event(Event::Presence {
            uid,
            name,
            presence: Presence::Joined,
        });
    }

    /// Asks the driver for the keep's record of a remote's role (a pending join's redo: the
    /// answer, [`Road::role_loaded`], may carry an operator's decision).
    fn load_role_of(&mut self, uid: Uid) {
        if let Some(remote) = self.remotes.get(&uid) {
            let role = remote.role.clone();
            self.core.load_role(&role);
        }
    }

    /// A join with `uid` pending on a decision is decided again from the role records
    /// (reference `statusRemote` on a pended join's redo): accepted completes it, rejected
    /// removes the remote (its join nacked).
    pub(super) fn recheck_pending(&mut self, now: Instant, uid: Uid) {
        let pending = self
            .remotes
            .get(&uid)
            .is_some_and(|r| r.transactions.values().any(Transaction::awaits_decision));
        if !pending {
            return;
        }
        match self.status_remote(uid) {
            Some(Acceptance::Accepted) => self.resolve_pending(now, uid),
            Some(Acceptance::Rejected) => self.remove_remote(now, uid),
            _ => {}
        }
    }

    /// The role records' verdict on a remote's role and keys (reference `statusRemote`).
    fn status_remote(&mut self, uid: Uid) -> Option<Acceptance> {
        let remote = self.remotes.get(&uid)?;
        let (role, verhex, pubhex) = (
            remote.role.clone(),
            remote.verhex.clone(),
            remote.pubhex.clone(),
        );
        let status = self.core.status_role(&role, &verhex, &pubhex).acceptance;
        if let Some(remote) = self.remotes.get_mut(&uid) {
            remote.acceptance = Some(status);
        }
        Some(status)
    }

    /// An operator accepted the remote: a pending join with it completes now.
    pub(super) fn resolve_pending(&mut self, now: Instant, uid: Uid) {
        let pending = self.txn_indexes(uid, Transaction::is_join);
        for index in pending {
            match self.take_txn(uid, &index) {
                Some(Transaction::Joiner(j)) if j.awaits_decision() => {
                    self.joiner_complete(now, uid, j);
                }
                Some(Transaction::Joinent(mut j)) if j.awaits_decision() => {
                    self.joinent_respond(now, uid, &mut j);
                    self.insert_txn(uid, index, Transaction::Joinent(j));
                }
                Some(other) => self.insert_txn(uid, index, other),
                None => {}
            }
        }
    }

    /// Whether `name` is used by a remote other than `uid`.
    fn name_taken(&self, name: &str, uid: Uid) -> bool {
        self.remotes.name_taken(name, uid)
    }

    /// Renames a remote, moving its keep record.
    fn rename(&mut self, uid: Uid, name: &str) {
        let Some(remote) = self.remotes.get_mut(&uid) else {
            return;
        };
        let old = std::mem::replace(&mut remote.name, name.to_owned());
        let persisted = !remote.ephemeral && remote.joined.is_some();
        if persisted {
            self.core.forget_remote(&old);
        }
    }

    /// Applies a mutable road's changes from a join body. `false`: the new name is taken.
    fn update_remote(&mut self, uid: Uid, jb: &JoinRepr, rha: SocketAddr, fuid: u32) -> bool {
        if self.name_taken(&jb.name, uid) {
            self.core.stats.join_name_conflict += 1;
            return false;
        }
        if self.remotes.get(&uid).is_some_and(|r| r.name != jb.name) {
            self.rename(uid, &jb.name);
        }
        let Some(remote) = self.remotes.get_mut(&uid) else {
            return false;
        };
        if remote.ha != rha {
            if self.joinees.get(&remote.ha) == Some(&uid) {
                self.joinees.remove(&remote.ha);
            }
            remote.ha = rha;
        }
        remote.fuid = fuid;
        remote.main = jb.main();
        remote.kind = jb.kind;
        remote.role.clone_from(&jb.role);
        if jb.verhex != remote.verhex || jb.pubhex != remote.pubhex {
            if remote.set_keys(&jb.verhex, &jb.pubhex).is_err() {
                self.core.stats.invalid_keys += 1;
                return false;
            }
            remote.clear_session();
        }
        true
    }

    /// Persists a remote.
    pub(super) fn save(&mut self, uid: Uid) {
        if let Some(remote) = self.remotes.get(&uid) {
            self.core.save_remote(remote);
        }
    }
}
