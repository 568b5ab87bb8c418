//! Alive transaction (tk 4): heartbeat and presence (spec §9). Request and ack carry an
//! empty body, so a signed head only; in a fast session, a binary head sealed with the
//! session key instead (no signature: a heartbeat costs an AEAD seal and open per side).

use std::time::{Duration, Instant};

use crate::packet::{
    BodyKind, CoatKind, Flags, FootKind, Head, HeadKind, PacketKind, TransactionKind,
};

use super::timers::Clock;
use super::transaction::{Transaction, TxIndex};
use super::{Road, Rx, Uid};

/// Our side of an alive we initiated (the Alivent answers at once and keeps no state).
pub(crate) struct Aliver {
    /// Join/allow started by an unjoined/unallowed answer cascade.
    cascade: bool,
    /// The transaction timeout (handed down the cascade).
    timeout: Duration,
    pub clock: Clock,
    /// The request's head: a binary one is sealed anew at each redo (a packet number opens
    /// once).
    head: Head,
    /// The signed request datagram of the compatible profile (resent as is).
    last: Option<Vec<u8>>,
}

/// The answer to an alive request from a remote in this join and allow state (reference
/// `Alivent.alive`): ack, or nack unjoined/unallowed.
pub(crate) fn alive_answer(joined: Option<bool>, allowed: Option<bool>) -> PacketKind {
    if joined != Some(true) {
        PacketKind::Unjoined
    } else if allowed != Some(true) {
        PacketKind::Unallowed
    } else {
        PacketKind::Ack
    }
}

impl Road {
    /// Head of an alive packet on a remote's addressing: binary (sealed in the fast
    /// session) when `binary`, else signed.
    fn alive_head(&self, uid: Uid, si: u32, ti: u32, cf: bool, binary: bool) -> Option<Head> {
        let remote = self.remotes.get(&uid)?;
        let (ck, fk) = if binary {
            (CoatKind::Nada, FootKind::Nada)
        } else {
            (CoatKind::Nacl, FootKind::Nacl)
        };
        let mut head = Head {
            se: remote.uid,
            de: remote.fuid,
            si,
            ti,
            ..self
                .core
                .template(TransactionKind::Alive, BodyKind::Json, ck, fk)
        };
        head.fg.set(Flags::CF, cf);
        if binary {
            head.hk = HeadKind::Binary;
        }
        Some(head)
    }

    /// Starts an alive with remote `uid` (reference `Aliver.alive`): joins or allows first
    /// when needed.
    pub(crate) fn start_alive(
        &mut self,
        now: Instant,
        uid: Uid,
        cascade: bool,
        timeout: Option<Duration>,
    ) {
        let pace = self.core.config.timers.alive_pace(timeout);
        let Some(remote) = self.initiator_remote(uid) else {
            return;
        };
        if remote.joined != Some(true) {
            self.core.stats.unjoined_remote += 1;
            self.start_join(now, uid, cascade, false, Some(pace.timeout));
            return;
        }
        if remote.allowed != Some(true) {
            self.core.stats.unallowed_remote += 1;
            self.start_allow(now, uid, cascade, Some(pace.timeout));
            return;
        }
        let (si, ti, dest) = (remote.sid, remote.next_tid(), remote.ha);
        let binary = remote.fast.is_some();
        self.refresh(now, uid, None);
        let Some(head) = self.alive_head(uid, si, ti, false, binary) else {
            return;
        };
        let last = if binary {
            if !self.fast_emit(uid, dest, &head, PacketKind::Request, &[]) {
                return;
            }
            None
        } else {
            let Some(datagram) = self.core.emit(dest, &head, PacketKind::Request, &[]) else {
                return;
            };
            Some(datagram)
        };
        self.core.stats.alive_initiate += 1;
        let index = TxIndex::of_tx(&head, dest);
        let aliver = Aliver {
            cascade,
            timeout: pace.timeout,
            clock: pace.start(now),
            head,
            last,
        };
        self.insert_txn(uid, index, Transaction::Aliver(aliver));
    }

    /// A packet for one of our alivers.
    pub(super) fn aliver_rx(
        &mut self,
        now: Instant,
        uid: Uid,
        index: TxIndex,
        a: Aliver,
        rx: &Rx<'_>,
    ) {
        let pk = rx.head.pk;
        let known = matches!(
            pk,
            PacketKind::Ack
                | PacketKind::Nack
                | PacketKind::Refuse
                | PacketKind::Unjoined
                | PacketKind::Unallowed
                | PacketKind::Reject
        );
        if !known || self.json_body(uid, rx).is_none() {
            self.insert_txn(uid, index, Transaction::Aliver(a));
            return;
        }
        if a.head.hk == HeadKind::Binary && rx.head.hk != HeadKind::Binary && pk == PacketKind::Nack
        {
            self.fast_refused_by(uid);
        }
        match pk {
            PacketKind::Ack => {
                self.core.stats.alive_complete += 1;
                self.refresh(now, uid, Some(true));
            }
            PacketKind::Unjoined => {
                self.core.stats.aliver_rx_unjoined += 1;
                self.refresh(now, uid, None);
                self.lose_join(uid);
                self.start_join(now, uid, a.cascade, false, Some(a.timeout));
            }
            PacketKind::Unallowed => {
                self.core.stats.aliver_rx_unallowed += 1;
                self.refresh(now, uid, None);
                if let Some(remote) = self.remotes.get_mut(&uid) {
                    remote.allowed = Some(false);
                }
                self.start_allow(now, uid, a.cascade, Some(a.timeout));
            }
            PacketKind::Reject => {
                self.core.stats.aliver_rx_reject += 1;
                self.refresh(now, uid, Some(false));
            }
            _ => {
                self.core.stats.aliver_rx_refuse += 1;
                self.refresh(now, uid, None);
            }
        }
    }

    /// An aliver's timers: timeout (the remote is not alive), redo (resend the request).
    pub(super) fn aliver_timer(&mut self, now: Instant, uid: Uid, index: TxIndex, mut a: Aliver) {
        if a.clock.timed_out(now) {
            self.core.stats.aliver_timeout += 1;
            self.refresh(now, uid, Some(false));
            return;
        }
        if a.clock.redo.expired(now) {
            a.clock.redo.backoff(now);
            if let Some(dest) = self.remotes.get(&uid).map(|r| r.ha) {
                self.core.stats.redo_alive += 1;
                match &a.last {
                    Some(datagram) => self.core.resend(dest, datagram),
                    None => {
                        self.fast_emit(uid, dest, &a.head, PacketKind::Request, &[]);
                    }
                }
            }
        }
        self.insert_txn(uid, index, Transaction::Aliver(a));
    }

    /// An alive request (reference `Alivent.alive`): ack, or nack unjoined/unallowed, in
    /// the request's profile. The Alivent keeps no state.
    pub(super) fn alivent(&mut self, now: Instant, uid: Uid, rx: &Rx<'_>) {
        if self.json_body(uid, rx).is_none() {
            return;
        }
        let Some(remote) = self.remotes.get(&uid) else {
            return;
        };
        let (kind, dest) = (alive_answer(remote.joined, remote.allowed), remote.ha);
        let binary = rx.head.hk == HeadKind::Binary;
        let Some(head) = self.alive_head(uid, rx.head.si, rx.head.ti, true, binary) else {
            return;
        };
        match kind {
            PacketKind::Unjoined => self.core.stats.unjoined_alive_attempt += 1,
            PacketKind::Unallowed => self.core.stats.unallowed_alive_attempt += 1,
            _ => {}
        }
        self.emit_to(uid, dest, &head, kind, &[]);
        if kind == PacketKind::Ack {
            self.core.stats.alive_complete += 1;
            self.refresh(now, uid, Some(true));
        } else {
            self.refresh(now, uid, None);
        }
    }
}
