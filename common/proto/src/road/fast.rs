//! The fast profile on the road (docs/protocol.md, *The fast profile*): a remote whose join
//! negotiated it (both sides offered `fast`) gets, at every allow, a [`FastSession`]: two
//! packet keys derived from the allow's short-term keys. Its message and alive transactions
//! then travel with the binary head ([`FastHead`]), sealed with the session key,
//! without signature or crypto_box coat, in datagrams sized to the path. Joins and allows
//! stay as the reference has them.
//!
//! A fast packet is opened before anything else looks at it: nothing of a remote changes
//! before its packet authenticated, and a packet number is accepted once (a sliding window
//! of [`WINDOW`] numbers below the highest seen).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::crypto::{FastKeys, PrivateKey, PublicKey, FAST_TAG_SIZE};
use crate::packet::fast::{FastHead, FAST_HEAD_SIZE};
use crate::packet::{
    BodyKind, CoatKind, Flags, FootKind, Head, HeadKind, PacketKind, TransactionKind,
};

use super::alive::alive_answer;
use super::congestion::Congestion;
use super::{Limits, Road, Rx, Uid};

/// At most one refusal of fast packets per remote per this interval.
const REFUSAL_INTERVAL: Duration = Duration::from_secs(1);

/// Packet numbers below the highest accepted one that are still accepted (once each).
pub(crate) const WINDOW: u64 = 4096;
const WORDS: usize = (WINDOW / 64) as usize;

/// Which packet numbers of a session were accepted (RFC 6479's bitmap, simplified).
#[derive(Debug)]
pub(crate) struct ReplayWindow {
    /// One past the highest accepted packet number (0: none yet).
    top: u64,
    /// Bit `pn % WINDOW`: `pn` accepted, for `pn` in `top - WINDOW .. top`.
    bits: [u64; WORDS],
}

impl ReplayWindow {
    fn new() -> Self {
        Self {
            top: 0,
            bits: [0; WORDS],
        }
    }

    fn slot(pn: u64) -> (usize, u64) {
        let i = pn % WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    /// Whether `pn` may be accepted: new, or within the window and not seen (`u64::MAX` is
    /// never sent: the window could not hold it).
    pub(crate) fn fresh(&self, pn: u64) -> bool {
        if pn == u64::MAX {
            return false;
        }
        if pn >= self.top {
            return true;
        }
        if self.top - pn > WINDOW {
            return false;
        }
        let (w, b) = Self::slot(pn);
        self.bits.get(w).is_some_and(|word| word & b == 0)
    }

    /// Records `pn` as accepted (after its packet opened).
    pub(crate) fn mark(&mut self, pn: u64) {
        if pn >= self.top {
            if pn - self.top >= WINDOW {
                self.bits = [0; WORDS];
            } else {
                for old in self.top..pn {
                    let (w, b) = Self::slot(old);
                    if let Some(word) = self.bits.get_mut(w) {
                        *word &= !b;
                    }
                }
            }
            self.top = pn.saturating_add(1);
        }
        let (w, b) = Self::slot(pn);
        if let Some(word) = self.bits.get_mut(w) {
            *word |= b;
        }
    }
}

/// The fast profile's state for one remote and allow.
pub(crate) struct FastSession {
    keys: FastKeys,
    /// Our next packet number (never repeats under these keys).
    next_pn: u64,
    window: ReplayWindow,
    /// The congestion controller of our messages in this session (made at the first one).
    pub(crate) cc: Option<Congestion>,
}

impl FastSession {
    /// The session of an allow: `privee` ours, `publee` the remote's short-term key.
    pub(crate) fn new(privee: &PrivateKey, publee: &PublicKey, allower: bool) -> Option<Self> {
        let keys = FastKeys::derive(privee, publee, allower).ok()?;
        Some(Self {
            keys,
            next_pn: 0,
            window: ReplayWindow::new(),
            cc: None,
        })
    }
}

/// The text head a received binary head stands for: its fields, its body in the clear (the
/// session key opened it), no coat or foot.
fn as_head(f: &FastHead) -> Head {
    Head {
        hk: HeadKind::Binary,
        pk: f.pk,
        tk: f.tk,
        se: f.se,
        de: f.de,
        si: f.si,
        ti: f.ti,
        sn: f.sn,
        sc: f.sc,
        ml: f.ml,
        fg: f.fg,
        bk: f.bk,
        ck: CoatKind::Nada,
        fk: FootKind::Nada,
        ..Head::default()
    }
}

/// Bytes a fast datagram adds to its plaintext: the head and the AEAD tag.
pub(crate) const FAST_OVERHEAD: usize = FAST_HEAD_SIZE + FAST_TAG_SIZE;

/// Plaintext bytes a fast datagram of `size` bytes carries.
fn payload(size: usize) -> usize {
    size.saturating_sub(FAST_OVERHEAD).max(1)
}

/// Plaintext bytes per fast datagram to `dest`: the loopback size on loopback, else the
/// configured path size.
pub(crate) fn payload_to(limits: &Limits, dest: SocketAddr) -> usize {
    payload(if dest.ip().is_loopback() {
        limits.fast_datagram_loopback
    } else {
        limits.fast_datagram
    })
}

impl Road {
    /// The remote answered a fast packet with a signed nack of the compatible profile: it
    /// has no fast session with us (its state predates our last join, or it stopped offering
    /// the profile). Messages and alives to it go in the compatible profile until the next
    /// join negotiates again (`fast_downgrade`, counted once). Only speed is lost.
    pub(crate) fn fast_refused_by(&mut self, uid: Uid) {
        let remote = self.remotes.get_mut(&uid);
        if let Some(remote) = remote.filter(|r| r.fast_peer || r.fast.is_some()) {
            tracing::info!(road = %self.core.config.name, remote = %remote.name,
                "remote has no fast session: compatible profile until the next join");
            remote.fast_peer = false;
            remote.fast = None;
            self.core.stats.fast_downgrade += 1;
        }
    }

    /// A fast packet for a remote we hold without a fast session: a message segment or an
    /// alive request is answered in the compatible profile, signed: a nack (so its sender
    /// falls back to that profile, see [`Road::fast_refused_by`]), or, for an alive from a
    /// remote we hold unjoined or unallowed, the nack that makes it join or allow again (a
    /// main restarted from its keep has no sessions). Only to the remote's own address and
    /// at most once per [`REFUSAL_INTERVAL`] per remote: the packet is not authenticated,
    /// so this bounds what a forger can make us send (to our own peers only, a nack a
    /// second), and nothing of the remote changes.
    fn refuse_fast(&mut self, now: Instant, f: &FastHead, from: SocketAddr) {
        drop_packet!(self.core, fast_refused, from);
        let Some(remote) = self.remotes.get_mut(&f.de) else {
            return;
        };
        let (answer, kind) = match (f.tk, f.pk) {
            (TransactionKind::Message, PacketKind::Message) => (PacketKind::Nack, 0),
            (TransactionKind::Alive, PacketKind::Request) => {
                match alive_answer(remote.joined, remote.allowed) {
                    PacketKind::Ack => (PacketKind::Nack, 1),
                    nack => (nack, 1),
                }
            }
            _ => return,
        };
        let Some(last) = remote.fast_refused_at.get_mut(kind) else {
            return;
        };
        let recent = last.is_some_and(|at| now.saturating_duration_since(at) < REFUSAL_INTERVAL);
        if remote.ha != from || f.fg.has(Flags::CF) || recent {
            return;
        }
        *last = Some(now);
        let mut head = Head {
            se: f.de,
            de: f.se,
            si: f.si,
            ti: f.ti,
            ..self
                .core
                .template(f.tk, BodyKind::Json, CoatKind::Nada, FootKind::Nacl)
        };
        head.pk = answer;
        head.fg.set(Flags::CF, true);
        if let Ok(datagram) = crate::packet::pack(&head, &[], Some(&self.core.signer)) {
            self.core.push(from, datagram);
        }
    }

    /// Sends `pk` of the transaction `head` describes, with `body`, sealed in `uid`'s fast
    /// session, to `dest`. False (counted as `packing_error`) without a session.
    pub(crate) fn fast_emit(
        &mut self,
        uid: Uid,
        dest: SocketAddr,
        head: &Head,
        pk: PacketKind,
        body: &[u8],
    ) -> bool {
        let fast = self.remotes.get_mut(&uid).and_then(|r| r.fast.as_mut());
        let Some(fast) = fast.filter(|f| f.next_pn < u64::MAX) else {
            self.core.stats.packing_error += 1;
            return false;
        };
        let f = FastHead {
            pk,
            tk: head.tk,
            fg: head.fg,
            bk: head.bk,
            se: head.se,
            de: head.de,
            si: head.si,
            ti: head.ti,
            sn: head.sn,
            sc: head.sc,
            ml: head.ml,
            pn: fast.next_pn,
        };
        fast.next_pn += 1;
        let raw = f.encode();
        let mut datagram = Vec::with_capacity(FAST_HEAD_SIZE + body.len() + FAST_TAG_SIZE);
        datagram.extend_from_slice(&raw);
        datagram.extend_from_slice(body);
        let cipher = Arc::clone(&fast.keys.tx);
        self.core.stats.fast_tx += 1;
        self.core
            .push_to_seal(dest, datagram, &cipher, (f.pn, raw.len()));
        true
    }

    /// Sends `pk` on `head` with `body`: sealed in the fast session when the head is binary,
    /// else packed (and signed when the head says so) as the reference does.
    pub(crate) fn emit_to(
        &mut self,
        uid: Uid,
        dest: SocketAddr,
        head: &Head,
        pk: PacketKind,
        body: &[u8],
    ) {
        if head.hk == HeadKind::Binary {
            self.fast_emit(uid, dest, head, pk, body);
        } else {
            let _ = self.core.emit(dest, head, pk, body);
        }
    }

    /// A datagram with a binary head: opened with the session key of the remote it names,
    /// then handled as any packet of its transaction. Only message and alive transactions
    /// travel so.
    pub(super) fn handle_fast(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let (f, raw, sealed) = match FastHead::parse(data) {
            Ok(parsed) => parsed,
            Err(e) => {
                tracing::debug!(road = %self.core.config.name, %from, error = %e, "bad binary head");
                self.core.stats.parse_error += 1;
                return;
            }
        };
        if !matches!(f.tk, TransactionKind::Message | TransactionKind::Alive) {
            drop_packet!(self.core, fast_refused, from);
            return;
        }
        let remote = self.remotes.get_mut(&f.de).filter(|r| !r.ephemeral);
        let Some(remote) = remote else {
            drop_packet!(self.core, unknown_remote, from);
            return;
        };
        let Some(fast) = remote.fast.as_mut() else {
            return self.refuse_fast(now, &f, from);
        };
        if !fast.window.fresh(f.pn) {
            drop_packet!(self.core, fast_replay, from);
            return;
        }
        let Ok(plain) = fast.keys.rx.open(f.pn, &raw, sealed) else {
            drop_packet!(self.core, decrypt_error, from);
            return;
        };
        fast.window.mark(f.pn);
        self.core.stats.fast_rx += 1;
        let rx = Rx {
            head: as_head(&f),
            coat: &plain,
            from,
        };
        self.process_rx(now, &rx);
        self.release_budget(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_number_is_accepted_once_and_the_window_slides() {
        let mut w = ReplayWindow::new();
        assert!(w.fresh(0));
        w.mark(0);
        assert!(!w.fresh(0));
        w.mark(10);
        assert!(w.fresh(5), "out of order within the window");
        w.mark(5);
        assert!(!w.fresh(5) && !w.fresh(10));
        w.mark(10 + WINDOW);
        assert!(!w.fresh(9), "fell out of the window");
        assert!(w.fresh(WINDOW + 5), "a slot reused by the slide is cleared");
        assert!(!w.fresh(10 + WINDOW));
        w.mark(u64::MAX - 1);
        assert!(!w.fresh(u64::MAX - 1) && w.fresh(u64::MAX - 2));
        assert!(!w.fresh(u64::MAX));
    }

    #[test]
    fn payload_leaves_room_for_head_and_tag() {
        assert_eq!(payload(1400), 1400 - 44 - 16);
        assert_eq!(payload(10), 1);
    }
}
