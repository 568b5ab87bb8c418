//! The receiving side of a message transaction (Messengent): segments in, resend requests
//! and acks out, reassembly, decryption, delivery, done, and the memory of what ended.

use std::time::Instant;

use serde_json::Value;

use crate::packet::{
    BodyKind, CoatKind, Flags, FootKind, Head, HeadKind, PacketKind, Reassembler, TransactionKind,
};

use super::super::timers::Redo;
use super::super::transaction::{Transaction, TxIndex};
use super::super::{Event, Receipt, Road, Rx, Uid};
use super::{Messengent, MISSEDS_PER_RESEND};

/// A received message body: the mapping, or (body kind raw) an empty one and the bytes.
type Body = (serde_json::Map<String, Value>, Option<Vec<u8>>);

impl Road {
    /// The head of our answers to a message packet.
    fn messengent_head(&self, uid: Uid, rx: &Rx<'_>) -> Option<Head> {
        let remote = self.remotes.get(&uid)?;
        let h = &rx.head;
        let mut head = Head {
            se: remote.uid,
            de: remote.fuid,
            si: h.si,
            ti: h.ti,
            ck: h.ck,
            fk: h.fk,
            ..self.core.template(
                TransactionKind::Message,
                BodyKind::Json,
                CoatKind::Nada,
                FootKind::Nada,
            )
        };
        head.fg.set(Flags::CF, true);
        head.fg.set(Flags::WF, h.fg.has(Flags::WF));
        if h.hk == HeadKind::Binary {
            head.hk = HeadKind::Binary;
        }
        Some(head)
    }

    /// Sends `pk` with an empty body on a messengent's head.
    pub(in crate::road) fn messengent_send(&mut self, uid: Uid, head: &Head, pk: PacketKind) {
        if let Some(dest) = self.remotes.get(&uid).map(|r| r.ha) {
            self.emit_to(uid, dest, head, pk, &[]);
        }
    }

    /// Remembers how an incoming message transaction ended (`delivered` or refused), so a
    /// copy of it is answered (done or nack) and never delivered again.
    pub(in crate::road) fn finish_incoming(
        &mut self,
        now: Instant,
        uid: Uid,
        ti: u32,
        delivered: bool,
    ) {
        let t = &self.core.config;
        let (keep_for, cap) = (t.timers.done_stale, t.limits.max_done_ids);
        if let Some(remote) = self.remotes.get_mut(&uid) {
            remote.add_done(ti, delivered, now.checked_add(keep_for).unwrap_or(now), cap);
        }
    }

    /// A copy of a message transaction that already ended (or one flagged as a resend, af,
    /// that we have no trace of): a copy of a delivered message is answered with done
    /// again (the sender's proof of receipt, its first done having been lost), anything
    /// else with a stale nack. Never delivered twice.
    pub(in crate::road) fn messengent_copy(&mut self, uid: Uid, rx: &Rx<'_>) {
        let delivered = self
            .remotes
            .get(&uid)
            .and_then(|r| r.done_outcome(rx.head.ti))
            .unwrap_or(false);
        if !delivered {
            self.core.stats.stale_message += 1;
            return self.reply_stale(rx, PacketKind::Nack);
        }
        if let Some(head) = self.messengent_head(uid, rx) {
            self.core.stats.message_done_again += 1;
            self.messengent_send(uid, &head, PacketKind::Done);
        }
    }

    /// A message packet opens a Messengent.
    pub(in crate::road) fn messengent_start(&mut self, now: Instant, uid: Uid, rx: &Rx<'_>) {
        let Some(head) = self.messengent_head(uid, rx) else {
            return;
        };
        let h = &rx.head;
        let allowed = self
            .remotes
            .get(&uid)
            .is_some_and(|r| r.allowed == Some(true));
        if !allowed {
            self.core.stats.unallowed_message_attempt += 1;
            return self.messengent_refuse(now, uid, &head);
        }
        if h.sc <= 1 {
            let body = self
                .open_coat(uid, rx)
                .and_then(|plain| self.decode_message(h.bk, plain));
            match body {
                Some(body) => self.deliver(now, uid, &head, body),
                None => self.messengent_refuse(now, uid, &head),
            }
            return;
        }
        let t = &self.core.config;
        let (limit, max_bytes) = (t.timers.message_limit(), t.limits.max_reassembly_bytes);
        let (redo_min, redo_max) = (t.timers.message_redo_min, t.timers.message_redo_max);
        let reserved = h.ml as usize;
        if self.core.reassembly_bytes.saturating_add(reserved) > max_bytes {
            self.core.stats.reassembly_limit += 1;
            return self.messengent_refuse(now, uid, &head);
        }
        let tray = match Reassembler::new(h.sc, h.ml) {
            Ok(tray) => tray,
            Err(_) => {
                self.core.stats.bad_segment += 1;
                return self.messengent_refuse(now, uid, &head);
            }
        };
        self.core.reassembly_bytes += reserved;
        let m = Box::new(Messengent {
            head,
            sc: h.sc,
            ml: h.ml,
            bk: h.bk,
            tray,
            lowest: 0,
            redo: Redo::new(now, redo_min, redo_max),
            progress: now,
            limit,
        });
        let index = TxIndex::of_rx(h, rx.from);
        self.messengent_rx(now, uid, index, m, rx);
    }

    /// Decodes a reassembled, decrypted message body of kind `bk` (a raw one is kept as
    /// it is).
    fn decode_message(&mut self, bk: BodyKind, plain: Vec<u8>) -> Option<Body> {
        if bk == BodyKind::Raw {
            return Some((serde_json::Map::new(), Some(plain)));
        }
        match crate::packet::body::decode(bk, &plain) {
            Ok(body) => Some((body, None)),
            Err(_) => {
                self.core.stats.parsing_message_error += 1;
                None
            }
        }
    }

    /// Completes an incoming message: done, deliver, remember.
    fn deliver(&mut self, now: Instant, uid: Uid, head: &Head, (body, raw): Body) {
        self.refresh(now, uid, Some(true));
        self.core.stats.messengent_correspond_complete += 1;
        let receipt = self.core.config.confirm_messages.then_some(Receipt {
            uid,
            si: head.si,
            ti: head.ti,
        });
        match receipt {
            Some(receipt) => {
                self.awaiting.insert(receipt, head.clone());
            }
            None => {
                self.messengent_send(uid, head, PacketKind::Done);
                self.finish_incoming(now, uid, head.ti, true);
            }
        }
        let name = self.remote_name(uid);
        self.core.event(Event::Message {
            uid,
            name,
            body,
            raw,
            receipt,
        });
    }

    /// Nacks an incoming message and forgets it.
    fn messengent_refuse(&mut self, now: Instant, uid: Uid, head: &Head) {
        self.messengent_send(uid, head, PacketKind::Nack);
        self.finish_incoming(now, uid, head.ti, false);
    }

    /// A segment (or nack) for one of our messengents.
    pub(in crate::road) fn messengent_rx(
        &mut self,
        now: Instant,
        uid: Uid,
        index: TxIndex,
        mut m: Box<Messengent>,
        rx: &Rx<'_>,
    ) {
        let h = &rx.head;
        match h.pk {
            PacketKind::Message => {}
            PacketKind::Nack => {
                if self.json_body(uid, rx).is_some() {
                    self.core.stats.message_reject_nack += 1;
                    self.release(now, uid, &m);
                } else {
                    self.insert_txn(uid, index, Transaction::Messengent(m));
                }
                return;
            }
            _ => {
                self.insert_txn(uid, index, Transaction::Messengent(m));
                return;
            }
        }
        if self
            .remotes
            .get(&uid)
            .is_some_and(|r| r.allowed != Some(true))
        {
            self.core.stats.unallowed_message_attempt += 1;
            self.messengent_nack(now, uid, *m);
            return;
        }
        if h.sc != m.sc || h.ml != m.ml || m.tray.insert(h.sn, rx.coat).is_err() {
            self.core.stats.bad_segment += 1;
            self.messengent_nack(now, uid, *m);
            return;
        }
        self.refresh(now, uid, Some(true));
        m.progress = now;
        self.core.stats.message_segment_rx += 1;
        if m.tray.is_complete() {
            self.messengent_complete(now, uid, *m);
            return;
        }
        if h.fg.has(Flags::WF) {
            self.request_more(now, uid, &mut m);
        }
        self.insert_txn(uid, index, Transaction::Messengent(m));
    }

    /// Every segment is in: decrypt, deliver, done.
    fn messengent_complete(&mut self, now: Instant, uid: Uid, m: Messengent) {
        self.core.reassembly_bytes = self.core.reassembly_bytes.saturating_sub(m.ml as usize);
        let coat = match m.tray.assemble() {
            Ok(coat) => coat,
            Err(_) => {
                self.core.stats.bad_segment += 1;
                return self.messengent_refuse(now, uid, &m.head);
            }
        };
        let opened = if coat.is_empty() || m.head.ck != CoatKind::Nacl {
            Some(coat)
        } else {
            let opened = self
                .remotes
                .get(&uid)
                .and_then(|r| r.session.as_ref())
                .map(|s| s.open(&coat));
            match opened {
                Some(Ok(plain)) => Some(plain),
                _ => {
                    self.core.stats.decrypt_error += 1;
                    None
                }
            }
        };
        match opened.and_then(|plain| self.decode_message(m.bk, plain)) {
            Some(body) => self.deliver(now, uid, &m.head, body),
            None => self.messengent_refuse(now, uid, &m.head),
        }
    }

    /// Asks for missed segments below the highest received, or acks the highest.
    fn request_more(&mut self, now: Instant, uid: Uid, m: &mut Messengent) {
        let misseds = m.tray.missing_from(m.lowest);
        m.redo.restart(now);
        if let Some(&first) = misseds.first() {
            m.lowest = first;
            let session = self.remotes.get(&uid).and_then(|r| r.session.as_ref());
            let highest = m.tray.highest().unwrap_or(0);
            let mut coats = Vec::new();
            let mut from = 0;
            for chunk in misseds.chunks(MISSEDS_PER_RESEND) {
                let mut body = serde_json::Map::new();
                body.insert("misseds".into(), chunk.to_vec().into());
                // fast profile: the resend covers segments `from..=sn`: every one of them
                // not listed arrived
                let mut head = m.head.clone();
                if head.hk == HeadKind::Binary {
                    head.sn = match chunk.len() {
                        MISSEDS_PER_RESEND => chunk[MISSEDS_PER_RESEND - 1].min(highest),
                        _ => highest,
                    };
                    body.insert("from".into(), from.into());
                    from = head.sn.saturating_add(1);
                }
                let plain = crate::packet::body::encode_json(&body);
                coats.push(if head.hk == HeadKind::Binary {
                    Some((head, plain))
                } else {
                    session.map(|s| (head, s.seal(&mut self.core.rng, &plain)))
                });
            }
            let Some(dest) = self.remotes.get(&uid).map(|r| r.ha) else {
                return;
            };
            for (head, coat) in coats.into_iter().flatten() {
                self.core.stats.message_resend_tx += 1;
                self.emit_to(uid, dest, &head, PacketKind::Resend, &coat);
            }
        } else {
            let mut head = m.head.clone();
            head.sn = m.tray.highest().unwrap_or(0);
            m.lowest = head.sn;
            self.core.stats.message_more_ack += 1;
            self.messengent_send(uid, &head, PacketKind::Ack);
        }
    }

    /// A messengent's timers: our bounded timeout (drop the partial message), redo (ask
    /// again).
    pub(in crate::road) fn messengent_timer(
        &mut self,
        now: Instant,
        uid: Uid,
        index: TxIndex,
        mut m: Box<Messengent>,
    ) {
        if m.progress.checked_add(m.limit).is_some_and(|d| now >= d) {
            self.core.stats.messengent_timeout += 1;
            self.release(now, uid, &m);
            return;
        }
        if m.redo.expired(now) {
            m.redo.backoff(now);
            self.request_more(now, uid, &mut m);
        }
        self.insert_txn(uid, index, Transaction::Messengent(m));
    }

    /// Ends a messengent with a nack (remote removed, stale session, bad segment).
    pub(in crate::road) fn messengent_nack(&mut self, now: Instant, uid: Uid, m: Messengent) {
        self.messengent_send(uid, &m.head, PacketKind::Nack);
        self.release(now, uid, &m);
    }

    /// Frees a messengent's reassembly budget and remembers its id.
    fn release(&mut self, now: Instant, uid: Uid, m: &Messengent) {
        self.core.reassembly_bytes = self.core.reassembly_bytes.saturating_sub(m.ml as usize);
        self.finish_incoming(now, uid, m.head.ti, false);
    }
}
