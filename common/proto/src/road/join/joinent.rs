//! The joinent side of a join (reference `Joinent`): answering a join request (first
//! contacts, simultaneous joins, moves, held joins, the acceptance decision), rejections,
//! the joiner's acks and nacks, and timers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::keep::{Acceptance, AutoMode};
use crate::packet::{
    BodyKind, CoatKind, Flags, FootKind, Head, JoinRepr, PacketKind, TransactionKind,
};

use super::{compare, valid_join, Joinent};
use crate::road::remote::{Proposal, Remote};
use crate::road::timers::{deadline, Redo};
use crate::road::transaction::{Transaction, TxIndex};
use crate::road::RejectedBy;
use crate::road::{Event, JoinFailure, Profile, Road, Rx, Uid};

/// A join request equal to the last one answered within this long is a late duplicate
/// (shorter than the joiner's first redo, so a restarted joiner reusing the same
/// transaction id is heard on its redo).
const DUPLICATE_JOIN_WINDOW: Duration = Duration::from_millis(500);

impl Road {
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

    /// A join request opens a Joinent (reference `Joinent.join`).
    pub(in crate::road) fn joinent_start(&mut self, now: Instant, uid: Uid, rx: &Rx<'_>) {
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
        let mut j = Joinent {
            head,
            dest: rx.from,
            vacuous: h.de == 0,
            pended: false,
            repended: false,
            moving: false,
            peer_fast: jb.fast,
            superseded: false,
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
        if self.core.config.profile == Profile::Fast && !jb.fast {
            self.core.stats.join_profile_refused += 1;
            tracing::warn!(road = %self.core.config.name, name = %jb.name, from = %rx.from,
                "join rejected: it does not offer the fast profile this road requires");
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
        if !self.joinent_race(uid, &mut j, &jb) {
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
        j.repended = remote.pended();
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
    /// incoming join was refused. When ours is refused instead, the incoming one stands for
    /// it (`superseded`): its failure is announced as ours.
    fn joinent_race(&mut self, uid: Uid, j: &mut Joinent, jb: &JoinRepr) -> bool {
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
                j.superseded = true;
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
    pub(super) fn joinent_respond(&mut self, now: Instant, uid: Uid, j: &mut Joinent) {
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
    pub(in crate::road) fn joinent_rx(
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
                self.complete_join(now, uid, j.vacuous, Some(j.peer_fast));
                self.announce_joined(uid);
                // The joiner allows next: an allow of ours (begun for its old session, or
                // started now for queued messages) would race it and, as the smaller name,
                // refuse it; our queued messages go once its allow completes (to a joiner
                // that does not cascade, once its presence check allows it).
                self.drop_stale_allowers(uid);
            }
            PacketKind::Reject => {
                self.core.stats.joinent_rx_reject += 1;
                let name = self.remote_name(uid);
                let by = RejectedBy::Them;
                self.core.event(Event::Rejected { uid, name, by });
                self.remove_remote(now, uid);
            }
            _ => {
                self.core.stats.joinent_rx_refuse += 1;
                if j.superseded {
                    self.join_failed(uid, JoinFailure::Refused);
                }
            }
        }
    }

    /// A joinent's timers: timeout (nack), redo (resend the response, or ask the keep for the
    /// role's record while pending).
    pub(in crate::road) fn joinent_timer(
        &mut self,
        now: Instant,
        uid: Uid,
        index: TxIndex,
        mut j: Joinent,
    ) {
        if j.deadline.is_some_and(|d| now >= d) {
            self.core.stats.joinent_timeout += 1;
            // Unasked, and only where the remote proved itself (the joiner times out too).
            if self.proven_address(uid, j.dest) {
                self.joinent_nack(uid, &j, PacketKind::Nack);
            }
            if j.superseded {
                self.join_failed(uid, JoinFailure::TimedOut);
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
