//! Remote bookkeeping: presence and alive state, removing a remote, stale transactions,
//! the outbox pump and expiry, the presence timer, and access to a remote's transactions.

use std::time::Instant;

use crate::packet::PacketKind;

use super::remote::Remote;
use super::transaction::{Transaction, TxIndex};
use super::{Event, Presence, Road, SendFailure, Uid};

impl Road {
    /// Restarts the presence timer of a remote and updates its alive state (`None` = keep),
    /// as the reference's `refresh`.
    pub(crate) fn refresh(&mut self, now: Instant, uid: Uid, alived: Option<bool>) {
        let t = &self.core.config.timers;
        let (period, interim) = (t.presence_period, t.reap_interim);
        let Some(remote) = self.remotes.get_mut(&uid) else {
            return;
        };
        remote.presence_due = now.checked_add(period).unwrap_or(now);
        let Some(alived) = alived else {
            return;
        };
        if remote.alived == Some(true) || alived {
            remote.reap_due = now.checked_add(interim).unwrap_or(now);
            remote.reaped = false;
        }
        self.set_alived(uid, Some(alived));
    }

    /// Sets a remote's alive state, announcing changes.
    pub(crate) fn set_alived(&mut self, uid: Uid, alived: Option<bool>) {
        let Some(remote) = self.remotes.get_mut(&uid) else {
            return;
        };
        let was = remote.alived;
        remote.alived = alived;
        let presence = match (was, alived) {
            (Some(true), Some(true)) => return,
            (_, Some(true)) => Presence::Alive,
            (Some(true), _) => Presence::Lost,
            _ => return,
        };
        let name = remote.name.clone();
        if !remote.ephemeral {
            self.core.event(Event::Presence {
                uid,
                name,
                presence,
            });
        }
    }

    /// Removes a remote (reference `removeRemote(clear=True)`): nacks its transactions,
    /// fails its messages, forgets it in the keep.
    pub(crate) fn remove_remote(&mut self, now: Instant, uid: Uid) {
        let indexes: Vec<TxIndex> = match self.remotes.get(&uid) {
            Some(r) => r.transactions.keys().copied().collect(),
            None => return,
        };
        for index in indexes {
            if let Some(txn) = self.take_txn(uid, &index) {
                self.nack_transaction(now, uid, txn, SendFailure::RemoteRemoved);
            }
        }
        let Some(mut remote) = self.remotes.remove(&uid) else {
            return;
        };
        self.joinees.retain(|_, u| *u != uid);
        self.awaiting.retain(|r, _| r.uid != uid);
        for out in remote.outbox.drain(..) {
            self.core.event(Event::SendFailed {
                id: out.id,
                uid,
                reason: SendFailure::RemoteRemoved,
            });
        }
        if !remote.ephemeral {
            self.core.forget_remote(&remote.name);
            self.core.stats.remote_removed += 1;
            self.core.event(Event::Removed {
                uid,
                name: remote.name,
            });
        }
    }

    /// Terminates a transaction with a nack to the peer (reference `transaction.nack()`).
    fn nack_transaction(&mut self, now: Instant, uid: Uid, txn: Transaction, reason: SendFailure) {
        match txn {
            Transaction::Joiner(t) => self.joiner_nack(uid, &t, PacketKind::Nack),
            Transaction::Joinent(t) => self.joinent_nack(uid, &t, PacketKind::Nack),
            Transaction::Allower(t) => self.allow_nack(uid, &t.head, PacketKind::Nack),
            Transaction::Allowent(t) => self.allow_nack_to(t.dest, &t.head, PacketKind::Nack),
            Transaction::Aliver(_) => {}
            Transaction::Messenger(t) => self.messenger_nack(now, uid, *t, reason),
            Transaction::Messengent(t) => self.messengent_nack(now, uid, *t),
        }
    }

    /// The peer started a new session: nack and drop its older correspondents.
    pub(super) fn remove_stale_correspondents(&mut self, now: Instant, uid: Uid) {
        let stale: Vec<TxIndex> = match self.remotes.get(&uid) {
            Some(r) => r
                .transactions
                .keys()
                .filter(|i| i.rf && !r.valid_rsid(i.si))
                .copied()
                .collect(),
            None => return,
        };
        for index in stale {
            if let Some(txn) = self.take_txn(uid, &index) {
                self.core.stats.stale_correspondent += 1;
                self.nack_transaction(now, uid, txn, SendFailure::StaleSession);
            }
        }
        if let Some(remote) = self.remotes.get_mut(&uid) {
            remote.clear_done();
        }
    }

    /// We started a new session: our older initiators are nacked and dropped; their
    /// messages go back to the front of the queue to be sent in the new session.
    pub(crate) fn replace_stale_initiators(&mut self, now: Instant, uid: Uid) {
        let stale: Vec<TxIndex> = match self.remotes.get(&uid) {
            Some(r) => r
                .transactions
                .keys()
                .filter(|i| !i.rf && !r.valid_sid(i.si))
                .copied()
                .collect(),
            None => return,
        };
        for index in stale {
            let Some(txn) = self.take_txn(uid, &index) else {
                continue;
            };
            self.core.stats.stale_initiator += 1;
            match txn {
                Transaction::Messenger(t) => self.requeue_messenger(now, uid, *t),
                other => self.nack_transaction(now, uid, other, SendFailure::StaleSession),
            }
        }
    }

    /// Drops an ephemeral remote (or a vacuous joinee entry) once it has no transaction left.
    pub(super) fn collect(&mut self, uid: Uid) {
        let Some(remote) = self.remotes.get(&uid) else {
            return;
        };
        if !remote.transactions.is_empty() {
            return;
        }
        let ha = remote.ha;
        if self.joinees.get(&ha) == Some(&uid) && !remote.join_in_process() {
            self.joinees.remove(&ha);
        }
        if remote.ephemeral {
            self.remotes.remove(&uid);
        }
    }

    /// Starts what the queued messages of a remote need: messengers when it is allowed
    /// (up to the in-flight limit), else a join or an allow.
    pub(crate) fn pump(&mut self, now: Instant, uid: Uid) {
        let max = self.core.config.limits.max_messengers;
        let window = self.core.config.limits.max_inflight_bytes;
        loop {
            let Some(remote) = self.remotes.get_mut(&uid) else {
                return;
            };
            if remote.outbox.is_empty() {
                return;
            }
            if remote.allowed != Some(true) || remote.session.is_none() {
                if remote.join_in_process() || remote.allow_in_process() {
                    return;
                }
                let joined = remote.joined == Some(true);
                if joined {
                    self.start_allow(now, uid, true, None);
                } else {
                    self.start_join(now, uid, true, false, None);
                }
                return;
            }
            if remote.allow_in_process() {
                // an allowent waits for the final ack: the allower is not allowed yet
                return;
            }
            let (flying, bytes) = remote.transactions.messengers();
            if flying >= max {
                return;
            }
            let next = remote.outbox.front().map_or(0, |out| out.body.len());
            if flying > 0 && bytes.saturating_add(next) > window {
                return;
            }
            let Some(out) = remote.outbox.pop_front() else {
                return;
            };
            remote.outbox_bytes = remote.outbox_bytes.saturating_sub(out.body.len());
            if !self.start_messenger(now, uid, out) {
                return;
            }
        }
    }

    /// Fails queued messages that waited longer than the message timeout (not while they
    /// wait for room in the road-wide sealed budget: that wait is ours, not the remote's).
    pub(super) fn expire_outbox(&mut self, now: Instant, uid: Uid) {
        if self.core.budget.is_waiting(uid) {
            return;
        }
        let limit = self.core.config.timers.message_limit();
        let Some(remote) = self.remotes.get_mut(&uid) else {
            return;
        };
        let mut failed = Vec::new();
        while let Some(first) = remote.outbox.front() {
            if first.queued.checked_add(limit).is_some_and(|d| d > now) {
                break;
            }
            if let Some(out) = remote.outbox.pop_front() {
                remote.outbox_bytes = remote.outbox_bytes.saturating_sub(out.body.len());
                failed.push(out.id);
            }
        }
        for id in failed {
            self.core.stats.message_timeout += 1;
            self.core.event(Event::SendFailed {
                id,
                uid,
                reason: SendFailure::NotAllowed,
            });
        }
    }

    /// Presence: when a joined remote's timer expires, an alive is sent (and a main reaps
    /// remotes silent for the reap interim). Queued messages retry their join/allow here.
    pub(super) fn presence_timer(&mut self, now: Instant, uid: Uid) {
        let period = self.core.config.timers.presence_period;
        let main = self.core.config.main;
        let Some(remote) = self.remotes.get_mut(&uid) else {
            return;
        };
        if remote.ephemeral {
            return;
        }
        if main && !remote.reaped && now >= remote.reap_due {
            remote.reaped = true;
            self.core.stats.remote_reap += 1;
        }
        let first_contact = remote.first_contact.is_some();
        if (remote.reaped && !first_contact) || now < remote.presence_due {
            return;
        }
        remote.presence_due = now.checked_add(period).unwrap_or(now);
        if first_contact {
            self.expire_first_contact(now, uid);
            return;
        }
        let (joined, queued) = (remote.joined == Some(true), !remote.outbox.is_empty());
        if joined {
            self.start_alive(now, uid, true, None);
        }
        if queued {
            self.pump(now, uid);
        }
    }

    /// The remote a transaction we initiate is for (counted `invalid_remote_eid` if none).
    pub(crate) fn initiator_remote(&mut self, uid: Uid) -> Option<&mut Remote> {
        if !self.remotes.contains_key(&uid) {
            self.core.stats.invalid_remote_eid += 1;
        }
        self.remotes.get_mut(&uid)
    }

    /// Removes an open transaction of a remote (to hand it a packet or a timer).
    pub(crate) fn take_txn(&mut self, uid: Uid, index: &TxIndex) -> Option<Transaction> {
        self.remotes.get_mut(&uid)?.transactions.remove(index)
    }

    /// The indexes of a remote's open transactions that `pick` selects.
    pub(crate) fn txn_indexes(
        &self,
        uid: Uid,
        pick: impl Fn(&Transaction) -> bool,
    ) -> Vec<TxIndex> {
        self.remotes.get(&uid).map_or_else(Vec::new, |r| {
            r.transactions
                .iter()
                .filter(|(_, t)| pick(t))
                .map(|(i, _)| *i)
                .collect()
        })
    }

    /// Inserts a transaction into its remote (dropped if the remote is gone).
    pub(crate) fn insert_txn(&mut self, uid: Uid, index: TxIndex, txn: Transaction) {
        if let Some(remote) = self.remotes.get_mut(&uid) {
            remote.transactions.insert(index, txn);
        }
    }

    /// A remote's name, for events.
    pub(crate) fn remote_name(&self, uid: Uid) -> String {
        self.remotes
            .get(&uid)
            .map(|r| r.name.clone())
            .unwrap_or_default()
    }
}
