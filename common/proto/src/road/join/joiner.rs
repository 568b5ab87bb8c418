//! The joiner side of a join (reference `Joiner`): starting a join, the joinent's answers
//! (pend, response and its decision matrix, renew, reject, refuse), completion and timers.

use std::time::{Duration, Instant};

use crate::keep::Acceptance;
use crate::packet::body::BodyMap;
use crate::packet::{
    BodyKind, CoatKind, FootKind, Head, JoinError, JoinRepr, PacketKind, TransactionKind,
};

use super::{compare, valid_join, Joiner};
use crate::road::timers::{deadline, Redo};
use crate::road::transaction::{Transaction, TxIndex};
use crate::road::{Event, Profile, Road, Rx, Uid};
use crate::road::{JoinFailure, RejectedBy};

impl Road {
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
            peer_fast: false,
        };
        self.insert_txn(uid, index, Transaction::Joiner(joiner));
        if vacuous {
            self.joinees.insert(dest, uid);
        }
    }

    /// A packet for one of our joiners.
    pub(in crate::road) fn joiner_rx(
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
                if !j.pended {
                    if let Some(remote) = self.remotes.get(&uid) {
                        let name = remote.name.clone();
                        self.core.event(Event::JoinPended { uid, name });
                    }
                }
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
    pub(super) fn join_failed(&mut self, uid: Uid, reason: JoinFailure) {
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
        if self.core.config.profile == Profile::Fast && !jb.fast {
            self.core.stats.join_profile_refused += 1;
            self.joiner_nack(uid, &j, PacketKind::Reject);
            self.join_failed(uid, JoinFailure::ProfileRefused);
            return;
        }
        let mut j = j;
        j.peer_fast = jb.fast;
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
    pub(super) fn joiner_complete(&mut self, now: Instant, uid: Uid, j: Joiner) {
        self.complete_join(now, uid, j.vacuous, Some(j.peer_fast));
        self.core.stats.join_initiate_complete += 1;
        let _ = self.core.emit(j.dest, &j.head, PacketKind::Ack, &[]);
        self.announce_joined(uid);
        if j.cascade {
            self.start_allow(now, uid, true, Some(j.timeout));
        }
        self.pump(now, uid);
    }

    /// A joiner's timers: timeout (gives up), redo (resend the request, or ask the keep for
    /// the role's record while our own acceptance is pending).
    pub(in crate::road) fn joiner_timer(
        &mut self,
        now: Instant,
        uid: Uid,
        index: TxIndex,
        mut j: Joiner,
    ) {
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
}
