//! Receiving: a datagram is parsed, its signature verified against the remote it names, its
//! session checked, then it goes to the open transaction it belongs to or opens one. Only a
//! signed packet from the remote's own address moves its session on; nothing here moves a
//! remote to another address (the allow does, `allow.rs`).

use std::net::SocketAddr;
use std::time::Instant;

use serde_json::{Map, Value};

use crate::packet::{
    BodyKind, CoatKind, Flags, FootKind, Head, HeadKind, PacketKind, TransactionKind,
};

use super::core::trace_packet;
use super::transaction::{Transaction, TxIndex};
use super::{is_nack_kind, Road, Rx, Uid};

impl Road {
    /// Process one received datagram. Never panics; bad input is counted and dropped.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.settle();
        self.core.stats.rx_packets += 1;
        trace_packet(&self.core.config.name, "rx", from, data);
        if crate::packet::fast::is_fast(data) {
            return self.handle_fast(now, from, data);
        }
        let packet = match crate::packet::parse(data) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(road = %self.core.config.name, %from, error = %e, "unparsable datagram");
                self.core.stats.parse_error += 1;
                return;
            }
        };
        let head = &packet.head;
        if head.fk == FootKind::Nacl {
            let verifier = self
                .remotes
                .get(&head.de)
                .filter(|r| !r.ephemeral)
                .and_then(|r| r.verifier.as_ref());
            let Some(verifier) = verifier else {
                drop_packet!(self.core, unknown_remote, from);
                return;
            };
            if let Err(e) = packet.verify(verifier) {
                tracing::debug!(road = %self.core.config.name, %from, error = %e, "bad signature");
                self.core.stats.bad_signature += 1;
                return;
            }
        } else if head.fk != FootKind::Nada {
            drop_packet!(self.core, unsupported_foot, from);
            return;
        } else if head.tk != TransactionKind::Join {
            // The reference signs every allow, alive and message packet (and the nacks it
            // answers them with); only joins travel unsigned. An unsigned packet of another
            // kind would otherwise move sessions and presence unauthenticated.
            drop_packet!(self.core, unsigned_packet, from);
            return;
        }
        if head.fg.has(Flags::BF) {
            drop_packet!(self.core, broadcast, from);
            return;
        }
        let rx = Rx {
            head: packet.head.clone(),
            coat: packet.coat,
            from,
        };
        self.process_rx(now, &rx);
        // A message done or failed gave its sealed bytes back.
        self.release_budget(now);
    }

    /// The reference's `processRx`: find the remote and the transaction of a verified packet.
    pub(super) fn process_rx(&mut self, now: Instant, rx: &Rx<'_>) {
        let h = &rx.head;
        let cf = h.fg.has(Flags::CF);
        let uid = if h.tk == TransactionKind::Join {
            match self.join_remote(now, rx) {
                Ok(uid) => uid,
                Err(()) => return,
            }
        } else {
            if h.si == 0 {
                drop_packet!(self.core, invalid_sid, rx.from);
                return;
            }
            if h.de == 0 || h.se == 0 {
                drop_packet!(self.core, invalid_uid, rx.from);
                return;
            }
            let Some(remote) = self.remotes.get_mut(&h.de).filter(|r| !r.ephemeral) else {
                drop_packet!(self.core, unknown_remote, rx.from);
                return;
            };
            if !cf {
                if !remote.valid_rsid(h.si) {
                    drop_packet!(self.core, stale_session, rx.from);
                    self.reply_stale(rx, PacketKind::Nack);
                    return;
                }
                // Only the remote's own address moves its session on; elsewhere (a move
                // under way, a clone) the allow that proves the keys does.
                if h.si != remote.rsid && rx.from == remote.ha {
                    remote.rsid = h.si;
                    self.remove_stale_correspondents(now, h.de);
                }
            }
            self.heard_from(now, h.de, rx.from);
            Some(h.de)
        };
        if let Some(remote) = uid.and_then(|u| self.remotes.get_mut(&u)) {
            remote.last_heard = Some(now);
            if remote.reaped {
                remote.reaped = false;
                self.core.stats.remote_unreap += 1;
            }
            let index = TxIndex::of_rx(h, rx.from);
            let uid = remote.uid;
            if let Some(txn) = remote.transactions.remove(&index) {
                self.dispatch(now, uid, index, txn, rx);
                self.collect(uid);
                return;
            }
        }
        if cf {
            self.stale(rx);
            return;
        }
        let Some(uid) = uid else {
            drop_packet!(self.core, unknown_remote, rx.from);
            return;
        };
        self.correspond(now, uid, rx);
        self.collect(uid);
    }

    /// A signed packet of the remote `uid` arrived from `from`: at its address, it is heard
    /// there ([`Remote::heard_at_ha`]); elsewhere it is counted (a move under way, a clone
    /// or a replay: the remote stays where it is).
    fn heard_from(&mut self, now: Instant, uid: Uid, from: SocketAddr) {
        let Some(remote) = self.remotes.get_mut(&uid) else {
            return;
        };
        if remote.ha == from {
            remote.heard_at_ha = Some(now);
        } else {
            self.core.stats.address_mismatch += 1;
        }
    }

    /// Hands a packet to the open transaction it belongs to.
    fn dispatch(&mut self, now: Instant, uid: Uid, index: TxIndex, txn: Transaction, rx: &Rx<'_>) {
        match txn {
            Transaction::Joiner(t) => self.joiner_rx(now, uid, index, t, rx),
            Transaction::Joinent(t) => self.joinent_rx(now, uid, index, t, rx),
            Transaction::Allower(t) => self.allower_rx(now, uid, index, t, rx),
            Transaction::Allowent(t) => self.allowent_rx(now, uid, index, t, rx),
            Transaction::Aliver(t) => self.aliver_rx(now, uid, index, t, rx),
            Transaction::Messenger(t) => self.messenger_rx(now, uid, index, t, rx),
            Transaction::Messengent(t) => self.messengent_rx(now, uid, index, t, rx),
        }
    }

    /// A packet that opens a transaction initiated by the remote.
    fn correspond(&mut self, now: Instant, uid: Uid, rx: &Rx<'_>) {
        let h = &rx.head;
        let join = matches!((h.tk, h.pk), (TransactionKind::Join, PacketKind::Request));
        if join && self.refuse_busy(rx, Some(uid)) {
            return;
        }
        let Some(remote) = self.remotes.get(&uid) else {
            return;
        };
        let opens = matches!(
            (h.tk, h.pk),
            (TransactionKind::Join, PacketKind::Request)
                | (TransactionKind::Allow, PacketKind::Hello)
                | (TransactionKind::Message, PacketKind::Message)
        );
        if opens {
            let open = remote.transactions.correspondents();
            if open >= self.core.config.limits.max_correspondents {
                drop_packet!(self.core, transaction_limit, rx.from);
                return;
            }
        }
        match (h.tk, h.pk) {
            (TransactionKind::Join, PacketKind::Request) => self.joinent_start(now, uid, rx),
            (TransactionKind::Allow, PacketKind::Hello) => self.allowent_start(now, uid, rx),
            (TransactionKind::Alive, PacketKind::Request) => self.alivent(now, uid, rx),
            (TransactionKind::Message, PacketKind::Message) => {
                if self.awaits_taking(uid, h.si, h.ti) {
                    drop_packet!(self.core, message_awaiting_take, rx.from);
                } else if h.fg.has(Flags::AF) || remote.done_outcome(h.ti).is_some() {
                    self.messengent_copy(uid, rx);
                } else {
                    self.messengent_start(now, uid, rx);
                }
            }
            _ => drop_packet!(self.core, stale_packet, rx.from),
        }
    }

    /// The reference's Staler: nack a correspondent packet of a transaction we no longer have
    /// (never a nack-like packet).
    fn stale(&mut self, rx: &Rx<'_>) {
        let h = &rx.head;
        if is_nack_kind(h.pk) || h.pk == PacketKind::Renew {
            drop_packet!(self.core, stale_nack, rx.from);
            return;
        }
        let Some(remote) = self.remotes.get(&h.de).filter(|r| !r.ephemeral) else {
            drop_packet!(self.core, unknown_remote, rx.from);
            return;
        };
        let uid = remote.uid;
        let head = self.stale_head(h, uid, false);
        self.core.stats.stale_correspondent_nack += 1;
        self.emit_to(uid, rx.from, &head, PacketKind::Nack, &[]);
    }

    /// The reference's Stalent: answer a packet of a transaction initiated by the peer with
    /// an empty nack of `kind` (copying its session and transaction ids and coat/foot kinds).
    pub(super) fn reply_stale(&mut self, rx: &Rx<'_>, kind: PacketKind) {
        let h = &rx.head;
        if is_nack_kind(h.pk) {
            return;
        }
        let head = self.stale_head(h, h.de, true);
        self.core.stats.stale_initiator_nack += 1;
        self.emit_to(h.de, rx.from, &head, kind, &[]);
    }

    /// Head of a stale nack answering `h` (Staler and Stalent): its session and transaction
    /// ids, transaction, coat and foot kinds copied, estate ids swapped (`se` ours), `cf` as
    /// given; the body is empty. A binary head is answered with one (in the fast session).
    pub(super) fn stale_head(&self, h: &Head, se: Uid, correspondent: bool) -> Head {
        let mut head = Head {
            se,
            de: h.se,
            si: h.si,
            ti: h.ti,
            ck: h.ck,
            fk: h.fk,
            ..self
                .core
                .template(h.tk, BodyKind::Json, CoatKind::Nada, FootKind::Nada)
        };
        head.fg.set(Flags::CF, correspondent);
        if h.hk == HeadKind::Binary {
            head.hk = HeadKind::Binary;
        }
        head
    }

    /// The body of a received packet, JSON or msgpack (decrypted with the session key when
    /// coated).
    pub(crate) fn json_body(&mut self, uid: Uid, rx: &Rx<'_>) -> Option<Map<String, Value>> {
        let plain = self.open_coat(uid, rx)?;
        match rx.head.bk {
            BodyKind::Json | BodyKind::Msgpack => {
                match crate::packet::body::decode(rx.head.bk, &plain) {
                    Ok(map) => Some(map),
                    Err(e) => {
                        tracing::debug!(road = %self.core.config.name, from = %rx.from, error = %e,
                        "bad json body");
                        self.core.stats.body_error += 1;
                        None
                    }
                }
            }
            BodyKind::Nada | BodyKind::Raw if plain.is_empty() => Some(Map::new()),
            _ => {
                drop_packet!(self.core, body_error, rx.from);
                None
            }
        }
    }

    /// The body bytes of a received packet (decrypted with the session key when coated).
    pub(crate) fn open_coat(&mut self, uid: Uid, rx: &Rx<'_>) -> Option<Vec<u8>> {
        if rx.head.ck != CoatKind::Nacl || rx.coat.is_empty() {
            return Some(rx.coat.to_vec());
        }
        let opened = self
            .remotes
            .get(&uid)
            .and_then(|r| r.session.as_ref())
            .map(|s| s.open(rx.coat));
        match opened {
            Some(Ok(plain)) => Some(plain),
            Some(Err(_)) | None => {
                drop_packet!(self.core, decrypt_error, rx.from);
                None
            }
        }
    }
}
