//! Join transaction (tk 1): Joiner and Joinent (spec §7), the join part of `processRx`
//! (spec §6 step 3) and the key acceptance decision (spec §11.2).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::keep::{Acceptance, AutoMode, KeepError};
use crate::packet::body::BodyMap;
use crate::packet::{
    BodyKind, CoatKind, Flags, FootKind, Head, JoinError, JoinRepr, PacketKind, TransactionKind,
};

use super::remote::{Proposal, Remote};
use super::timers::{deadline, Redo};
use super::transaction::{earliest, Transaction, TxIndex};
use super::{Event, Presence, Road, Rx, Uid};
use super::{JoinFailure, RejectedBy};

/// A join request equal to the last one answered within this long is a late duplicate
/// (shorter than the joiner's first redo, so a restarted joiner reusing the same
/// transaction id is heard on its redo).
const DUPLICATE_JOIN_WINDOW: Duration = Duration::from_millis(500);

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
    /// A known remote joining from a new address: completing it records the move as
    /// proposed, the allow from there makes it ([`Proposal`]).
    moving: bool,
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
        let ephemerals = self.remotes.values().filter(|r| r.ephemeral).count();
        if ephemerals >= self.core.config.limits.max_joinees {
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

    /// Starts a join with remote `uid` (reference `Joiner.join`).
    pub(crate) fn start_join(
        &mut self,
        now: Instant,
        uid: Uid,
        cascade: bool,
        renewal: bool,
        timeout: Option<Duration>,
    ) {
        let t = &self.core.config.timers;
        let timeout = timeout.unwrap_or(t.joiner_timeout);
        let (redo_min, redo_max) = (t.joiner_redo_min, t.joiner_redo_max);
        let Some(remote) = self.initiator_remote(uid) else {
            return;
        };
        if remote.join_in_process() {
            self.core.stats.join_in_process += 1;
            return;
        }
        remote.joined = None;
        let ti = remote.next_tid();
        let (dest, vacuous) = (remote.ha, remote.fuid == 0);
        let head = Head {
            se: remote.uid,
            de: remote.fuid,
            ti,
            ..self.core.template(
                TransactionKind::Join,
                BodyKind::Json,
                CoatKind::Nada,
                FootKind::Nada,
            )
        };
        let body = self.join_body(None);
        let coat = crate::packet::body::encode_json(&body);
        let Some(datagram) = self.core.emit(dest, &head, PacketKind::Request, &coat) else {
            return;
        };
        self.core.stats.join_initiate += 1;
        let index = TxIndex::of_tx(&head, dest);
        let joiner = Joiner {
            head,
            dest,
            vacuous,
            renewal,
            pended: false,
            cascade,
            timeout,
            deadline: deadline(now, timeout),
            redo: Redo::new(now, redo_min, redo_max),
            last: Some((PacketKind::Request, datagram)),
        };
        self.insert_txn(uid, index, Transaction::Joiner(joiner));
        if vacuous {
            self.joinees.insert(dest, uid);
        }
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

    /// Rejects a join request and tells the application.
    fn joinent_reject(&mut self, uid: Uid, j: &Joinent, name: &str) {
        self.joinent_nack(uid, j, PacketKind::Reject);
        self.core.event(Event::Rejected {
            uid,
            name: name.to_owned(),
            by: RejectedBy::Us,
        });
    }

    /// Rejects a join request on a remote we know. `other_keys`: the join offered other
    /// keys (or role) than the remote's, so it says nothing of the remote itself: counted,
    /// logged and told as [`Event::KeysRejected`], never as a rejection of the remote.
    fn joinent_reject_join(
        &mut self,
        uid: Uid,
        j: &Joinent,
        jb: JoinRepr,
        from: SocketAddr,
        other_keys: bool,
    ) {
        if !other_keys {
            self.joinent_reject(uid, j, &jb.name);
            return;
        }
        self.joinent_nack(uid, j, PacketKind::Reject);
        self.core.stats.join_rejected_keys_changed += 1;
        tracing::warn!(road = %self.core.config.name, uid, name = %jb.name, %from,
            "join rejected: its keys are not the known remote's (remote left unchanged)");
        self.core.event(Event::KeysRejected {
            uid,
            name: jb.name,
            from,
            role: jb.role,
            verhex: jb.verhex,
            pubhex: jb.pubhex,
        });
    }

    /// A packet for one of our joiners.
    pub(super) fn joiner_rx(
        &mut self,
        now: Instant,
        uid: Uid,
        index: TxIndex,
        mut j: Joiner,
        rx: &Rx<'_>,
    ) {
        let pk = rx.head.pk;
        let known = matches!(
            pk,
            PacketKind::Pend
                | PacketKind::Response
                | PacketKind::Nack
                | PacketKind::Refuse
                | PacketKind::Renew
                | PacketKind::Reject
        );
        let body = if known { self.json_body(uid, rx) } else { None };
        let Some(body) = body else {
            self.insert_txn(uid, index, Transaction::Joiner(j));
            return;
        };
        match pk {
            PacketKind::Pend => {
                self.core.stats.joiner_rx_pend += 1;
                j.pended = true;
                self.insert_txn(uid, index, Transaction::Joiner(j));
            }
            PacketKind::Response => {
                self.core.stats.joiner_rx_response += 1;
                self.joiner_accept(now, uid, index, j, rx, &body);
            }
            PacketKind::Renew => {
                self.core.stats.joiner_rx_renew += 1;
                if !self.core.config.mutable {
                    self.core.stats.join_renew_unallowed += 1;
                    self.join_failed(uid, JoinFailure::RenewRefused);
                    return;
                }
                self.core.stats.join_renew_attempt += 1;
                if let Some(remote) = self.remotes.get_mut(&uid) {
                    remote.fuid = 0;
                }
                self.save(uid);
                self.collect(uid);
                self.start_join(now, uid, j.cascade, true, Some(j.timeout));
            }
            PacketKind::Reject => {
                self.core.stats.joiner_rx_reject += 1;
                let name = self.remote_name(uid);
                let by = RejectedBy::Them;
                self.core.event(Event::Rejected { uid, name, by });
                self.remove_remote(now, uid);
            }
            _ => {
                self.core.stats.joiner_rx_refuse += 1;
                self.join_failed(uid, JoinFailure::Refused);
            }
        }
    }

    /// Announces a failed join.
    fn join_failed(&mut self, uid: Uid, reason: JoinFailure) {
        self.core.event(Event::JoinFailed { uid, reason });
    }

    /// The joinent accepted (reference `Joiner.accept`): apply the decision matrix.
    fn joiner_accept(
        &mut self,
        now: Instant,
        uid: Uid,
        index: TxIndex,
        j: Joiner,
        rx: &Rx<'_>,
        body: &BodyMap,
    ) {
        let accept = valid_join(JoinRepr::parse_response(body)).and_then(|jb| {
            let fuid = jb.uid.ok_or(JoinError::Field("uid"))?;
            Ok((jb, fuid))
        });
        let (jb, fuid) = match accept {
            Ok(accept) => accept,
            Err(e) => {
                tracing::debug!(road = %self.core.config.name, uid, error = %e, "invalid accept");
                self.core.stats.invalid_accept += 1;
                self.join_failed(uid, JoinFailure::InvalidAccept);
                return;
            }
        };
        let rha = rx.from;
        if j.vacuous {
            let taken = self.name_taken(&jb.name, uid);
            let Some(remote) = self.remotes.get_mut(&uid) else {
                return;
            };
            remote.fuid = fuid;
            if !j.renewal {
                if jb.name != remote.name {
                    if taken {
                        self.core.stats.join_name_conflict += 1;
                        self.joiner_nack(uid, &j, PacketKind::Reject);
                        self.join_failed(uid, JoinFailure::NameTaken);
                        return;
                    }
                    self.rename(uid, &jb.name);
                }
                let Some(remote) = self.remotes.get_mut(&uid) else {
                    return;
                };
                remote.main = jb.main();
                remote.kind = jb.kind;
                remote.role.clone_from(&jb.role);
                if remote.set_keys(&jb.verhex, &jb.pubhex).is_err() {
                    self.core.stats.invalid_accept += 1;
                    self.join_failed(uid, JoinFailure::InvalidAccept);
                    return;
                }
            }
        }
        let Some(remote) = self.remotes.get(&uid) else {
            return;
        };
        let same = compare(remote, &jb, rha, fuid);
        if !same.all && !self.core.config.mutable {
            self.core.stats.join_immutable_reject += 1;
            self.joiner_nack(uid, &j, PacketKind::Reject);
            let by = RejectedBy::Us;
            self.core.event(Event::Rejected {
                uid,
                name: jb.name,
                by,
            });
            return;
        }
        let status = self.core.status_role(&jb.role, &jb.verhex, &jb.pubhex);
        if status.acceptance == Acceptance::Rejected {
            self.core.event(Event::Rejected {
                uid,
                name: jb.name.clone(),
                by: RejectedBy::Us,
            });
            if same.role_keys {
                self.joiner_nack(uid, &j, PacketKind::Nack);
                self.remove_remote(now, uid);
            } else {
                self.joiner_nack(uid, &j, PacketKind::Reject);
            }
            return;
        }
        if !same.all && !self.update_remote(uid, &jb, rha, fuid) {
            self.joiner_nack(uid, &j, PacketKind::Reject);
            self.join_failed(uid, JoinFailure::UpdateFailed);
            return;
        }
        if let Some(remote) = self.remotes.get_mut(&uid) {
            remote.acceptance = Some(status.acceptance);
        }
        if status.acceptance == Acceptance::Accepted {
            self.joiner_complete(now, uid, j);
        } else {
            self.joiner_pend(uid, index, j);
        }
    }

    /// Our operator has not decided yet: tell the joinent we pend.
    fn joiner_pend(&mut self, uid: Uid, index: TxIndex, mut j: Joiner) {
        self.save(uid);
        if let Some(d) = self.core.emit(j.dest, &j.head, PacketKind::Pend, &[]) {
            j.last = Some((PacketKind::Pend, d));
        }
        self.announce_pending(uid);
        self.insert_txn(uid, index, Transaction::Joiner(j));
    }

    /// The join is accepted on our side too (reference `Joiner.completify`).
    fn joiner_complete(&mut self, now: Instant, uid: Uid, j: Joiner) {
        self.complete_join(now, uid, j.vacuous);
        self.core.stats.join_initiate_complete += 1;
        let _ = self.core.emit(j.dest, &j.head, PacketKind::Ack, &[]);
        self.announce_joined(uid);
        if j.cascade {
            self.start_allow(now, uid, true, Some(j.timeout));
        }
        self.pump(now, uid);
    }

    /// Session bookkeeping of a completed join (both sides).
    pub(super) fn complete_join(&mut self, now: Instant, uid: Uid, vacuous: bool) {
        let Some(remote) = self.remotes.get_mut(&uid) else {
            return;
        };
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
        let name = self.remote_name(uid);
        self.core.event(Event::Joined {
            uid,
            name: name.clone(),
        });
        self.core.event(Event::Presence {
            uid,
            name,
            presence: Presence::Joined,
        });
    }

    /// A joiner's timers: timeout (gives up), redo (resend the request, or ask the keep for
    /// the role's record while our own acceptance is pending).
    pub(super) fn joiner_timer(&mut self, now: Instant, uid: Uid, index: TxIndex, mut j: Joiner) {
        if j.deadline.is_some_and(|d| now >= d) {
            self.core.stats.joiner_timeout += 1;
            tracing::debug!(road = %self.core.config.name, uid, "joiner timed out");
            let reason = match j.pended {
                true => JoinFailure::Pended,
                false => JoinFailure::TimedOut,
            };
            self.join_failed(uid, reason);
            return;
        }
        if !j.redo.expired(now) {
            self.insert_txn(uid, index, Transaction::Joiner(j));
            return;
        }
        let pend = self.core.config.timers.joiner_pend_redo;
        j.redo.fire(now, j.pended.then_some(pend));
        match &j.last {
            Some((PacketKind::Request, datagram)) => {
                self.core.stats.joiner_tx_join_redo += 1;
                self.core.resend(j.dest, datagram);
            }
            _ => self.load_role_of(uid),
        }
        self.insert_txn(uid, index, Transaction::Joiner(j));
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
        self.remotes
            .values()
            .any(|r| !r.ephemeral && r.uid != uid && r.name == name)
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

    /// A join request opens a Joinent (reference `Joinent.join`).
    pub(super) fn joinent_start(&mut self, now: Instant, uid: Uid, rx: &Rx<'_>) {
        let h = &rx.head;
        let Some(body) = self.json_body(uid, rx) else {
            return;
        };
        let jb = match valid_join(JoinRepr::parse_request(&body)) {
            Ok(jb) => jb,
            Err(e) => {
                tracing::debug!(road = %self.core.config.name, from = %rx.from, error = %e,
                    "invalid join body");
                drop_packet!(self.core, invalid_join, rx.from);
                return;
            }
        };
        let t = &self.core.config.timers;
        let mut head = Head {
            se: h.de,
            de: h.se,
            si: h.si,
            ti: h.ti,
            ..self.core.template(
                TransactionKind::Join,
                BodyKind::Json,
                CoatKind::Nada,
                FootKind::Nada,
            )
        };
        head.fg.set(Flags::CF, true);
        let j = Joinent {
            head,
            dest: rx.from,
            vacuous: h.de == 0,
            pended: false,
            moving: false,
            deadline: deadline(now, t.joinent_timeout),
            redo: Redo::new(now, t.joinent_redo_min, t.joinent_redo_max),
            last: None,
            answered: None,
        };
        let index = TxIndex::of_rx(h, rx.from);
        let (rha, reid) = (rx.from, h.se);
        if self.core.config.role_is_name && jb.role != jb.name {
            self.core.stats.join_role_not_name += 1;
            tracing::warn!(road = %self.core.config.name, name = %jb.name, role = %jb.role,
                from = %rx.from, "join rejected: its role is not its name");
            // No `Rejected` event: it would name an estate that did not send this join.
            self.joinent_nack(uid, &j, PacketKind::Reject);
            return;
        }
        if self
            .core
            .record_unconfirmed(&jb.role, &jb.verhex, &jb.pubhex)
        {
            self.hold_join(&jb.role, rx);
            return;
        }
        if !self.joinent_race(uid, &j, &jb) {
            return;
        }
        let mut uid = uid;
        if j.vacuous {
            if !self.core.config.main {
                self.core.stats.join_vacuous_not_main += 1;
                self.joinent_reject(uid, &j, &jb.name);
                return;
            }
            if let Some(known) = self.uid_by_name(&jb.name) {
                uid = known;
            } else {
                // Keys a role record already holds (a decided or pending estate joining
                // again) are no first contact to ration.
                let known = self
                    .core
                    .roles
                    .get(&jb.role)
                    .is_some_and(|r| r.verhex == jb.verhex && r.pubhex == jb.pubhex);
                if !known && !self.admit_first_contact(now, rx.from) {
                    return;
                }
                let Some(remote) = self.remotes.get_mut(&uid) else {
                    return;
                };
                remote.name.clone_from(&jb.name);
                remote.main = jb.main();
                remote.kind = jb.kind;
                remote.role.clone_from(&jb.role);
                if remote.set_keys(&jb.verhex, &jb.pubhex).is_err() {
                    drop_packet!(self.core, invalid_join, rx.from);
                    return;
                }
                if remote.fuid != reid {
                    if remote.fuid != 0 {
                        self.core.stats.join_mismatch_fuid += 1;
                        self.joinent_reject(uid, &j, &jb.name);
                        return;
                    }
                    remote.fuid = reid;
                }
            }
        }
        let Some(remote) = self.remotes.get_mut(&uid) else {
            return;
        };
        if Remote::is_copy(remote.last_join, (reid, h.ti), now) {
            drop_packet!(self.core, duplicate_join_attempt, rx.from);
            return;
        }
        let same = compare(remote, &jb, rha, reid);
        let ephemeral = remote.ephemeral;
        if same.role_keys && remote.first_contact.is_some() {
            remote.first_contact = Some(now);
        }
        let moving = !ephemeral && same.role_keys && rha != remote.ha;
        // A join offering other keys than a known remote's must not be able to touch that
        // remote when it is rejected (it may come from anyone): not even its duplicate window.
        let other_keys = !ephemeral && !same.role_keys;
        if !other_keys {
            remote.last_join = Some((
                (reid, h.ti),
                now.checked_add(DUPLICATE_JOIN_WINDOW).unwrap_or(now),
            ));
        }
        // While the remote's session is allowed, another role or keys cannot take it over
        // (a non-vacuous join names it by its uid alone, which is easily guessed); only an
        // `always` road accepts any keys, as it would for a new estate.
        let live = remote.allowed == Some(true) && self.core.config.auto != AutoMode::Always;
        // An immutable road refuses any change, a new address too (as the reference).
        if (other_keys && live) || (!same.all && !self.core.config.mutable) {
            if !self.core.config.mutable {
                self.core.stats.join_immutable_reject += 1;
            }
            self.joinent_reject_join(uid, &j, jb, rx.from, other_keys);
            return;
        }
        let status = self.core.status_role(&jb.role, &jb.verhex, &jb.pubhex);
        if moving {
            self.joinent_move(now, uid, index, j, &jb, status.acceptance);
            return;
        }
        if status.acceptance == Acceptance::Rejected {
            if same.role_keys && !ephemeral {
                let by = RejectedBy::Us;
                self.core.event(Event::Rejected {
                    uid,
                    name: jb.name,
                    by,
                });
                self.remove_remote(now, uid);
            } else {
                self.joinent_reject_join(uid, &j, jb, rx.from, other_keys);
            }
            return;
        }
        if same.all {
            if let Some(remote) = self.remotes.get_mut(&uid) {
                if remote.ephemeral {
                    remote.ephemeral = false;
                    remote.first_contact = Some(now);
                    self.core.stats.remote_added += 1;
                }
            }
        } else if !self.update_remote(uid, &jb, rha, reid) {
            self.joinent_reject_join(uid, &j, jb, rx.from, other_keys);
            return;
        }
        let Some(remote) = self.remotes.get_mut(&uid) else {
            return;
        };
        remote.acceptance = Some(status.acceptance);
        remote.joined = None;
        let ha = remote.ha;
        if j.vacuous {
            self.joinees.insert(ha, uid);
        }
        // A first contact is written once its join completes.
        let first_contact = self
            .remotes
            .get(&uid)
            .is_some_and(|r| r.first_contact.is_some());
        if status.acceptance != Acceptance::Accepted && !first_contact {
            self.save(uid);
        }
        self.joinent_answer(now, uid, index, j, status.acceptance);
    }

    /// Accepts or pends a join as `acceptance` says, and keeps its joinent.
    fn joinent_answer(
        &mut self,
        now: Instant,
        uid: Uid,
        index: TxIndex,
        mut j: Joinent,
        acceptance: Acceptance,
    ) {
        if acceptance == Acceptance::Accepted {
            self.joinent_respond(now, uid, &mut j);
        } else {
            if let Some(d) = self.core.emit(j.dest, &j.head, PacketKind::Pend, &[]) {
                j.last = Some((PacketKind::Pend, d));
                j.answered = Some(now);
            }
            self.announce_pending(uid);
        }
        self.insert_txn(uid, index, Transaction::Joinent(j));
    }

    /// A join for a known remote, with its role and keys, from another address (a moved or
    /// restarted estate, or anyone replaying its join: the join is public). It is answered
    /// there, but the remote keeps its address, session and join: completing this join only
    /// records the move as proposed, and an allow from the new address, which proves the
    /// long-term keys, makes it ([`Road::settle_address`]).
    fn joinent_move(
        &mut self,
        now: Instant,
        uid: Uid,
        index: TxIndex,
        mut j: Joinent,
        jb: &JoinRepr,
        acceptance: Acceptance,
    ) {
        let Some(remote) = self.remotes.get_mut(&uid) else {
            return;
        };
        // Nothing but the address, the joiner's uid for us, main and kind changes this way:
        // a rename comes from the remote's own address, and a rejection from here does not
        // remove the remote.
        if jb.name != remote.name || acceptance == Acceptance::Rejected {
            drop_packet!(self.core, join_new_address_refused, j.dest);
            self.joinent_nack(uid, &j, PacketKind::Reject);
            return;
        }
        remote.proposal = Some(Proposal {
            ha: j.dest,
            fuid: j.head.de,
            main: jb.main(),
            kind: jb.kind,
            joined: false,
        });
        self.core.stats.join_new_address += 1;
        tracing::info!(road = %self.core.config.name, remote = %remote.name, at = %remote.ha,
            from = %j.dest, "join from a new address: answered there; the remote moves when \
            an allow from there proves its keys");
        if j.vacuous {
            self.joinees.insert(j.dest, uid);
        }
        j.moving = true;
        self.joinent_answer(now, uid, index, j, acceptance);
    }

    /// Simultaneous joins (reference `Joinent.join`, "joins in process"). `false`: the
    /// incoming join was refused.
    fn joinent_race(&mut self, uid: Uid, j: &Joinent, jb: &JoinRepr) -> bool {
        let joins = self.txn_indexes(uid, Transaction::is_join);
        for index in joins {
            let Some(txn) = self.take_txn(uid, &index) else {
                continue;
            };
            let Transaction::Joiner(mine) = txn else {
                self.insert_txn(uid, index, txn);
                self.core.stats.redundant_join_attempt += 1;
                self.joinent_nack(uid, j, PacketKind::Refuse);
                return false;
            };
            let incoming_wins = match (j.vacuous, mine.vacuous) {
                (true, false) => false,
                (false, true) => true,
                _ => self.core.config.name.as_str() >= jb.name.as_str(),
            };
            if incoming_wins {
                self.joiner_nack(uid, &mine, PacketKind::Refuse);
            } else {
                self.insert_txn(uid, index, Transaction::Joiner(mine));
                self.core.stats.redundant_join_attempt += 1;
                self.joinent_nack(uid, j, PacketKind::Refuse);
                return false;
            }
        }
        true
    }

    /// Sends the accept response (reference `Joinent.ackAccept`).
    fn joinent_respond(&mut self, now: Instant, uid: Uid, j: &mut Joinent) {
        let body = self.join_body(Some(uid));
        let coat = crate::packet::body::encode_json(&body);
        if let Some(d) = self.core.emit(j.dest, &j.head, PacketKind::Response, &coat) {
            j.last = Some((PacketKind::Response, d));
            j.answered = Some(now);
        }
        j.redo.restart(now);
    }

    /// Whether the joiner's address is one the remote proved (an authenticated packet from
    /// there): only there may an answer be sent again unasked. Anywhere else one request
    /// gets at most one answer, so a join with a forged source is no amplifier.
    fn proven_address(&self, uid: Uid, at: SocketAddr) -> bool {
        self.remotes
            .get(&uid)
            .is_some_and(|r| r.ha == at && r.heard_at_ha.is_some())
    }

    /// A packet for one of our joinents.
    pub(super) fn joinent_rx(
        &mut self,
        now: Instant,
        uid: Uid,
        index: TxIndex,
        mut j: Joinent,
        rx: &Rx<'_>,
    ) {
        let pk = rx.head.pk;
        if pk == PacketKind::Request {
            // The joiner did not hear our answer: one copy per request, at most one per
            // `joinent_redo_min`.
            self.core.stats.duplicate_join_attempt += 1;
            let min = self.core.config.timers.joinent_redo_min;
            let due = j.answered.and_then(|t| t.checked_add(min));
            if let (Some((_, d)), Some(due)) = (&j.last, due) {
                if now >= due {
                    self.core.stats.joinent_tx_answer_again += 1;
                    self.core.resend(j.dest, d);
                    j.answered = Some(now);
                }
            }
            self.insert_txn(uid, index, Transaction::Joinent(j));
            return;
        }
        let known = matches!(
            pk,
            PacketKind::Pend
                | PacketKind::Ack
                | PacketKind::Nack
                | PacketKind::Refuse
                | PacketKind::Reject
        );
        let body = if known { self.json_body(uid, rx) } else { None };
        if body.is_none() {
            self.insert_txn(uid, index, Transaction::Joinent(j));
            return;
        }
        match pk {
            PacketKind::Pend => {
                self.core.stats.joinent_rx_pend += 1;
                j.pended = true;
                self.insert_txn(uid, index, Transaction::Joinent(j));
            }
            PacketKind::Ack if j.moving => {
                self.core.stats.join_correspond_complete += 1;
                if let Some(p) = self.remotes.get_mut(&uid).and_then(|r| r.proposal.as_mut()) {
                    p.joined |= p.ha == j.dest;
                }
            }
            PacketKind::Ack => {
                self.core.stats.join_correspond_complete += 1;
                self.complete_join(now, uid, j.vacuous);
                self.announce_joined(uid);
                self.pump(now, uid);
            }
            PacketKind::Reject => {
                self.core.stats.joinent_rx_reject += 1;
                let name = self.remote_name(uid);
                let by = RejectedBy::Them;
                self.core.event(Event::Rejected { uid, name, by });
                self.remove_remote(now, uid);
            }
            _ => self.core.stats.joinent_rx_refuse += 1,
        }
    }

    /// A joinent's timers: timeout (nack), redo (resend the response, or ask the keep for the
    /// role's record while pending).
    pub(super) fn joinent_timer(&mut self, now: Instant, uid: Uid, index: TxIndex, mut j: Joinent) {
        if j.deadline.is_some_and(|d| now >= d) {
            self.core.stats.joinent_timeout += 1;
            // Unasked, and only where the remote proved itself (the joiner times out too).
            if self.proven_address(uid, j.dest) {
                self.joinent_nack(uid, &j, PacketKind::Nack);
            }
            return;
        }
        if !j.redo.expired(now) {
            self.insert_txn(uid, index, Transaction::Joinent(j));
            return;
        }
        let pend = self.core.config.timers.joinent_pend_redo;
        j.redo.fire(now, j.pended.then_some(pend));
        match &j.last {
            Some((PacketKind::Response, datagram)) => {
                if self.proven_address(uid, j.dest) {
                    self.core.stats.joinent_tx_accept_redo += 1;
                    self.core.resend(j.dest, datagram);
                    j.answered = Some(now);
                }
            }
            _ => self.load_role_of(uid),
        }
        self.insert_txn(uid, index, Transaction::Joinent(j));
    }
}
