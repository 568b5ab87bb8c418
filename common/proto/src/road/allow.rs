//! Allow transaction (tk 3): the CurveCP-like handshake establishing per-peer short-term
//! keys (spec §8). All packets: raw bodies, no coat, signed with the long-term key.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand_core::RngCore;

use crate::crypto::{PrivateKey, PublicKey, SharedBox};
use crate::packet::{BodyKind, CoatKind, Flags, FootKind, Head, PacketKind, TransactionKind};

use super::remote;
use super::timers::Clock;
use super::transaction::{Transaction, TxIndex};
use super::{Event, Presence, Road, Rx, Uid};

/// hello body: plain[64] || short public[32] || box[80] || nonce[24].
const HELLO_SIZE: usize = 200;
/// cookie body: box[80] || nonce[24].
const COOKIE_SIZE: usize = 104;
/// cookie stuff: short public[32] || u32 || u32 || oreo[24].
const COOKIE_STUFF_SIZE: usize = 64;
/// initiate body: short public[32] || oreo[24] || box[248] || nonce[24].
const INITIATE_SIZE: usize = 328;
/// initiate stuff: long public[32] || vouch[48] || vouch nonce[24] || fqdn[128].
const INITIATE_STUFF_SIZE: usize = 232;
/// The fqdn field of the initiate stuff.
const FQDN_SIZE: usize = 128;
/// The hello's plain text: hexlify(32 zero bytes).
const HELLO_PLAIN: [u8; 64] = [b'0'; 64];

/// Our side of an allow we initiated.
pub(crate) struct Allower {
    /// Head of our packets.
    pub head: Head,
    /// Alive follows a successful allow.
    cascade: bool,
    /// The transaction timeout (handed down the cascade).
    timeout: Duration,
    /// crypto_box of (its long-term public, our short-term secret) for hello and cookie.
    hello_box: SharedBox,
    pub clock: Clock,
    /// Last packet sent (hello or initiate).
    last: Option<Vec<u8>>,
}

/// Our side of an allow the remote initiated.
pub(crate) struct Allowent {
    /// Head of our packets.
    pub head: Head,
    /// The cookie's random part, checked in the initiate.
    oreo: [u8; 24],
    pub clock: Clock,
    /// Last packet sent (cookie or ack).
    last: Option<Vec<u8>>,
}

/// The fqdn we claim for a peer in the initiate (the reference resolves the peer's host;
/// the receiver only logs a mismatch). Space padded to 128 bytes.
fn fqdn_field(ha: SocketAddr) -> [u8; FQDN_SIZE] {
    let name = if ha.ip().is_loopback() {
        "localhost".to_owned()
    } else {
        ha.ip().to_string()
    };
    let mut field = [b' '; FQDN_SIZE];
    for (dst, src) in field.iter_mut().zip(name.bytes()) {
        *dst = src;
    }
    field
}

/// Reads a big-endian u32 at `at` (callers check lengths).
fn be32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    if let Some(src) = bytes.get(at..at + 4) {
        word.copy_from_slice(src);
    }
    u32::from_be_bytes(word)
}

/// A fixed-size slice of a checked body.
fn array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = bytes.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

impl Road {
    /// 24 random bytes from the road's rng.
    fn nonce(&mut self) -> [u8; 24] {
        let mut n = [0u8; 24];
        self.core.rng.fill_bytes(&mut n);
        n
    }

    /// Starts an allow with remote `uid` (reference `Allower.hello`).
    pub(crate) fn start_allow(
        &mut self,
        now: Instant,
        uid: Uid,
        cascade: bool,
        timeout: Option<Duration>,
    ) {
        let pace = self.core.config.timers.allow_pace(timeout);
        let Some(remote) = self.initiator_remote(uid) else {
            return;
        };
        if remote.join_in_process() {
            self.core.stat("invalid_allow_attempt");
            return;
        }
        if remote.allow_in_process() {
            self.core.stat("allow_in_process");
            return;
        }
        remote.allowed = None;
        if remote.joined != Some(true) {
            self.core.stat("unjoined_remote");
            self.start_join(now, uid, cascade, false, Some(pace.timeout));
            return;
        }
        let Some(pubber) = remote.pubber.clone() else {
            self.core.stat("missing_remote_keys");
            return;
        };
        let privee = PrivateKey::generate(&mut self.core.rng);
        let hello_box = SharedBox::new(&pubber, &privee);
        let n1 = self.nonce();
        let Some(remote) = self.remotes.get_mut(&uid) else {
            return;
        };
        let mut body = Vec::with_capacity(HELLO_SIZE);
        body.extend_from_slice(&HELLO_PLAIN);
        body.extend_from_slice(privee.public_key().as_bytes());
        body.extend_from_slice(&hello_box.seal_with_nonce(&n1, &HELLO_PLAIN));
        body.extend_from_slice(&n1);
        remote.privee = Some(privee);
        remote.publee = None;
        remote.session = None;
        let ti = remote.next_tid();
        let dest = remote.ha;
        let head = Head {
            se: remote.uid,
            de: remote.fuid,
            si: remote.sid,
            ti,
            ..self.core.template(
                TransactionKind::Allow,
                BodyKind::Raw,
                CoatKind::Nada,
                FootKind::Nacl,
            )
        };
        let index = TxIndex::of_tx(&head, dest);
        let Some(datagram) = self.core.emit(dest, &head, PacketKind::Hello, &body) else {
            return;
        };
        let allower = Allower {
            head,
            cascade,
            timeout: pace.timeout,
            hello_box,
            clock: pace.start(now),
            last: Some(datagram),
        };
        self.insert_txn(uid, index, Transaction::Allower(allower));
    }

    /// Sends `kind` with an allow transaction's head to the remote (its transaction ends
    /// with the caller).
    pub(super) fn allow_nack(&mut self, uid: Uid, head: &Head, kind: PacketKind) {
        let Some(dest) = self.remotes.get(&uid).map(|r| r.ha) else {
            return;
        };
        self.core.stat("allow_transaction_failure");
        let _ = self.core.emit(dest, head, kind, &[]);
    }

    /// A packet for one of our allowers.
    pub(super) fn allower_rx(
        &mut self,
        now: Instant,
        uid: Uid,
        index: TxIndex,
        a: Allower,
        rx: &Rx<'_>,
    ) {
        match rx.head.pk {
            PacketKind::Cookie => self.allower_cookie(now, uid, index, a, rx),
            PacketKind::Ack => self.allower_done(now, uid, a),
            PacketKind::Nack | PacketKind::Refuse => {
                self.core.stat("allower_rx_refuse");
                self.allow_failed(uid, "refused by the remote");
            }
            PacketKind::Reject => {
                self.core.stat("allower_rx_reject");
                self.allow_rejected(uid);
            }
            PacketKind::Unjoined => {
                self.core.stat("allower_rx_unjoined");
                self.lose_join(uid);
                self.start_join(now, uid, a.cascade, false, Some(a.timeout));
            }
            _ => self.insert_txn(uid, index, Transaction::Allower(a)),
        }
    }

    /// The remote rejected an allow: not allowed (until a new allow succeeds).
    fn allow_rejected(&mut self, uid: Uid) {
        if let Some(remote) = self.remotes.get_mut(&uid) {
            remote.allowed = Some(false);
        }
        self.allow_failed(uid, "rejected by the remote");
    }

    /// An allow with the remote ended without success. Unless it is allowed anyway or
    /// another allow or a join with it is under way (that one decides), the application
    /// learns it: [`Event::AllowFailed`]. Presence retries: the next alive to a joined
    /// remote that is not allowed starts a new allow.
    fn allow_failed(&mut self, uid: Uid, reason: &str) {
        let Some(remote) = self.remotes.get(&uid) else {
            return;
        };
        if remote.allowed == Some(true) || remote.allow_in_process() || remote.join_in_process() {
            return;
        }
        self.core.stat("allow_failed");
        tracing::debug!(road = %self.core.config.name, uid, reason, "allow failed");
        self.core.event(Event::AllowFailed {
            uid,
            reason: reason.to_owned(),
        });
    }

    /// The peer says it does not know our join: `joined` becomes false (presence lost).
    pub(super) fn lose_join(&mut self, uid: Uid) {
        let Some(remote) = self.remotes.get_mut(&uid) else {
            return;
        };
        let was = remote.joined;
        remote.joined = Some(false);
        if was == Some(true) {
            let name = remote.name.clone();
            self.core.event(Event::Presence {
                uid,
                name,
                presence: Presence::Lost,
            });
        }
    }

    /// The cookie: check it and send the initiate.
    fn allower_cookie(
        &mut self,
        now: Instant,
        uid: Uid,
        index: TxIndex,
        mut a: Allower,
        rx: &Rx<'_>,
    ) {
        let Some(body) = self.open_coat(uid, rx) else {
            self.insert_txn(uid, index, Transaction::Allower(a));
            return;
        };
        let stuff = (body.len() == COOKIE_SIZE)
            .then(|| {
                let nonce = array::<24>(&body, 80);
                a.hello_box
                    .open_with_nonce(&nonce, body.get(..80).unwrap_or_default())
                    .ok()
            })
            .flatten()
            .filter(|s| s.len() == COOKIE_STUFF_SIZE);
        let Some(remote) = self.remotes.get_mut(&uid) else {
            return;
        };
        let valid = stuff.filter(|s| be32(s, 32) == remote.fuid && be32(s, 36) == remote.uid);
        let Some(stuff) = valid else {
            self.core.stat("invalid_cookie");
            self.allow_nack(uid, &a.head, PacketKind::Reject);
            self.allow_failed(uid, "invalid cookie");
            return;
        };
        let (Ok(publee), Some(privee), Some(pubber)) = (
            PublicKey::from_bytes(stuff.get(..32).unwrap_or_default()),
            remote.privee.as_ref(),
            remote.pubber.as_ref(),
        ) else {
            self.core.stat("invalid_cookie");
            self.allow_nack(uid, &a.head, PacketKind::Reject);
            self.allow_failed(uid, "invalid cookie");
            return;
        };
        let oreo = array::<24>(&stuff, 40);
        let session = SharedBox::new(&publee, privee);
        let short_public = privee.public_key();
        let long_box = SharedBox::new(pubber, &self.core.private);
        let fqdn = fqdn_field(remote.ha);
        remote.publee = Some(publee);
        let mut vnonce = [0u8; 24];
        self.core.rng.fill_bytes(&mut vnonce);
        let vouch = long_box.seal_with_nonce(&vnonce, short_public.as_bytes());
        let mut istuff = Vec::with_capacity(INITIATE_STUFF_SIZE);
        istuff.extend_from_slice(self.core.private.public_key().as_bytes());
        istuff.extend_from_slice(&vouch);
        istuff.extend_from_slice(&vnonce);
        istuff.extend_from_slice(&fqdn);
        let n3 = self.nonce();
        let mut body = Vec::with_capacity(INITIATE_SIZE);
        body.extend_from_slice(short_public.as_bytes());
        body.extend_from_slice(&oreo);
        body.extend_from_slice(&session.seal_with_nonce(&n3, &istuff));
        body.extend_from_slice(&n3);
        let Some(remote) = self.remotes.get_mut(&uid) else {
            return;
        };
        remote.session = Some(session);
        let dest = remote.ha;
        if let Some(d) = self.core.emit(dest, &a.head, PacketKind::Initiate, &body) {
            a.last = Some(d);
            a.clock.redo.restart(now);
        }
        self.insert_txn(uid, index, Transaction::Allower(a));
    }

    /// The allowent acked our initiate: allowed; send the final ack.
    fn allower_done(&mut self, now: Instant, uid: Uid, a: Allower) {
        let Some(dest) = self.remotes.get(&uid).map(|r| r.ha) else {
            return;
        };
        let _ = self.core.emit(dest, &a.head, PacketKind::Ack, &[]);
        self.core.stat("allow_initiate_complete");
        self.complete_allow(now, uid);
        self.pump(now, uid);
        if a.cascade {
            self.start_alive(now, uid, true, Some(a.timeout));
        }
    }

    /// Both sides of a successful allow: allowed, alive, new session.
    fn complete_allow(&mut self, now: Instant, uid: Uid) {
        let Some(remote) = self.remotes.get_mut(&uid) else {
            return;
        };
        remote.allowed = Some(true);
        remote.next_sid();
        let name = remote.name.clone();
        self.set_alived(uid, Some(true));
        self.replace_stale_initiators(now, uid);
        self.save(uid);
        self.core.event(Event::Allowed {
            uid,
            name: name.clone(),
        });
        self.core.event(Event::Presence {
            uid,
            name,
            presence: Presence::Allowed,
        });
    }

    /// Resends the last packet of an allow transaction when its resend timer expired.
    fn redo_allow(&mut self, now: Instant, uid: Uid, clock: &mut Clock, last: Option<&[u8]>) {
        if clock.redo.expired(now) {
            clock.redo.backoff(now);
            if let (Some(d), Some(dest)) = (last, self.remotes.get(&uid).map(|r| r.ha)) {
                self.core.stat("redo_allow");
                self.core.resend(dest, d);
            }
        }
    }

    /// An allower's timers: timeout (gives up), redo (resend hello or initiate).
    pub(super) fn allower_timer(&mut self, now: Instant, uid: Uid, index: TxIndex, mut a: Allower) {
        if a.clock.timed_out(now) {
            self.core.stat("allower_timeout");
            self.allow_failed(uid, "timed out");
            return;
        }
        self.redo_allow(now, uid, &mut a.clock, a.last.as_deref());
        self.insert_txn(uid, index, Transaction::Allower(a));
    }

    /// A hello opens an Allowent (reference `Allowent.hello`).
    pub(super) fn allowent_start(&mut self, now: Instant, uid: Uid, rx: &Rx<'_>) {
        let h = &rx.head;
        let pace = self.core.config.timers.allow_pace(None);
        let Some(remote) = self.remotes.get(&uid) else {
            return;
        };
        let mut head = Head {
            se: remote.uid,
            de: remote.fuid,
            si: h.si,
            ti: h.ti,
            ..self.core.template(
                TransactionKind::Allow,
                BodyKind::Raw,
                CoatKind::Nada,
                FootKind::Nacl,
            )
        };
        head.fg.set(Flags::CF, true);
        if remote.join_in_process() {
            self.core.stat("invalid_allow_attempt");
            self.allow_nack(uid, &head, PacketKind::Refuse);
            return;
        }
        if remote::Remote::is_copy(remote.last_hello, (h.si, h.ti), now) {
            self.core.drop_packet("duplicate_allow_attempt", rx.from);
            return;
        }
        let window = now.checked_add(pace.timeout).unwrap_or(now);
        if let Some(remote) = self.remotes.get_mut(&uid) {
            remote.last_hello = Some(((h.si, h.ti), window));
        }
        if !self.allowent_race(uid, &head) {
            return;
        }
        let Some(remote) = self.remotes.get_mut(&uid) else {
            return;
        };
        remote.allowed = None;
        if remote.joined != Some(true) {
            self.core.stat("unjoined_allow_attempt");
            self.allow_nack(uid, &head, PacketKind::Unjoined);
            return;
        }
        let Some(body) = self.open_coat(uid, rx) else {
            return;
        };
        let privee = PrivateKey::generate(&mut self.core.rng);
        let oreo = self.nonce();
        let n2 = self.nonce();
        let Some(remote) = self.remotes.get_mut(&uid) else {
            return;
        };
        remote.clear_session();
        let publee = (body.len() == HELLO_SIZE)
            .then(|| PublicKey::from_bytes(body.get(64..96).unwrap_or_default()).ok())
            .flatten();
        let hello_box = publee
            .as_ref()
            .map(|p| SharedBox::new(p, &self.core.private));
        let plain = body.get(..64).unwrap_or_default();
        let opened = hello_box.as_ref().and_then(|b| {
            b.open_with_nonce(
                &array::<24>(&body, 176),
                body.get(96..176).unwrap_or_default(),
            )
            .ok()
        });
        let (Some(publee), Some(hello_box), true) =
            (publee, hello_box, opened.as_deref() == Some(plain))
        else {
            remote.privee = Some(privee);
            self.core.stat("invalid_hello");
            self.allow_nack(uid, &head, PacketKind::Reject);
            return;
        };
        let mut stuff = Vec::with_capacity(COOKIE_STUFF_SIZE);
        stuff.extend_from_slice(privee.public_key().as_bytes());
        stuff.extend_from_slice(&remote.uid.to_be_bytes());
        stuff.extend_from_slice(&remote.fuid.to_be_bytes());
        stuff.extend_from_slice(&oreo);
        let mut cookie = hello_box.seal_with_nonce(&n2, &stuff);
        cookie.extend_from_slice(&n2);
        remote.session = Some(SharedBox::new(&publee, &privee));
        remote.publee = Some(publee);
        remote.privee = Some(privee);
        let dest = remote.ha;
        let index = TxIndex::of_rx(h, rx.from);
        let last = self.core.emit(dest, &head, PacketKind::Cookie, &cookie);
        let allowent = Allowent {
            head,
            oreo,
            clock: pace.start(now),
            last,
        };
        self.insert_txn(uid, index, Transaction::Allowent(allowent));
    }

    /// Simultaneous allows: the smaller local name yields. `false`: the incoming hello was
    /// refused.
    fn allowent_race(&mut self, uid: Uid, head: &Head) -> bool {
        let allows = self.txn_indexes(uid, Transaction::is_allow);
        let remote_name = self.remote_name(uid);
        for index in allows {
            let Some(txn) = self.take_txn(uid, &index) else {
                continue;
            };
            match txn {
                Transaction::Allower(mine) if self.core.config.name >= remote_name => {
                    self.allow_nack(uid, &mine.head, PacketKind::Refuse);
                }
                other => {
                    self.insert_txn(uid, index, other);
                    self.core.stat("redundant_allow_attempt");
                    self.allow_nack(uid, head, PacketKind::Refuse);
                    return false;
                }
            }
        }
        true
    }

    /// A packet for one of our allowents.
    pub(super) fn allowent_rx(
        &mut self,
        now: Instant,
        uid: Uid,
        index: TxIndex,
        a: Allowent,
        rx: &Rx<'_>,
    ) {
        match rx.head.pk {
            PacketKind::Initiate => self.allowent_initiate(now, uid, index, a, rx),
            PacketKind::Ack => {
                self.core.stat("allow_correspond_complete");
                self.pump(now, uid);
            }
            PacketKind::Nack | PacketKind::Refuse => {
                self.core.stat("allowent_rx_refuse");
                self.pump(now, uid);
                self.allow_failed(uid, "refused by the remote");
            }
            PacketKind::Reject => {
                self.core.stat("allowent_rx_reject");
                self.allow_rejected(uid);
            }
            PacketKind::Hello => {
                self.core.stat("duplicate_allow_attempt");
                self.insert_txn(uid, index, Transaction::Allowent(a));
            }
            _ => self.insert_txn(uid, index, Transaction::Allowent(a)),
        }
    }

    /// The initiate: check the vouch and ack.
    fn allowent_initiate(
        &mut self,
        now: Instant,
        uid: Uid,
        index: TxIndex,
        mut a: Allowent,
        rx: &Rx<'_>,
    ) {
        let Some(body) = self.open_coat(uid, rx) else {
            self.insert_txn(uid, index, Transaction::Allowent(a));
            return;
        };
        let Some(remote) = self.remotes.get(&uid) else {
            return;
        };
        let short = body.get(..32).unwrap_or_default();
        let checks = body.len() == INITIATE_SIZE
            && remote
                .publee
                .as_ref()
                .is_some_and(|p| p.as_bytes()[..] == *short)
            && body.get(32..56) == Some(&a.oreo[..]);
        let istuff = checks
            .then(|| {
                remote.session.as_ref().and_then(|s| {
                    s.open_with_nonce(
                        &array::<24>(&body, 304),
                        body.get(56..304).unwrap_or_default(),
                    )
                    .ok()
                })
            })
            .flatten()
            .filter(|m| m.len() == INITIATE_STUFF_SIZE);
        let vouched = istuff.as_ref().and_then(|m| {
            let pubber = remote.pubber.as_ref()?;
            if pubber.as_bytes()[..] != *m.get(..32)? {
                return None;
            }
            let fqdn = m.get(104..232)?;
            if *fqdn != fqdn_field(self.core.config.ha)[..] {
                tracing::debug!(road = %self.core.config.name, "initiate fqdn differs (ignored)");
            }
            let vouch = SharedBox::new(pubber, &self.core.private)
                .open_with_nonce(&array::<24>(m, 80), m.get(32..80)?)
                .ok()?;
            Some(vouch == short)
        });
        if vouched != Some(true) {
            self.core.stat("invalid_initiate");
            self.allow_nack(uid, &a.head, PacketKind::Reject);
            self.allow_failed(uid, "invalid initiate");
            return;
        }
        let dest = remote.ha;
        if let Some(d) = self.core.emit(dest, &a.head, PacketKind::Ack, &[]) {
            a.last = Some(d);
            a.clock.redo.restart(now);
        }
        self.complete_allow(now, uid);
        self.insert_txn(uid, index, Transaction::Allowent(a));
    }

    /// An allowent's timers: timeout (refuse), redo (resend cookie or ack).
    pub(super) fn allowent_timer(
        &mut self,
        now: Instant,
        uid: Uid,
        index: TxIndex,
        mut a: Allowent,
    ) {
        if a.clock.timed_out(now) {
            self.core.stat("allowent_timeout");
            self.allow_nack(uid, &a.head, PacketKind::Refuse);
            self.pump(now, uid);
            self.allow_failed(uid, "timed out");
            return;
        }
        self.redo_allow(now, uid, &mut a.clock, a.last.as_deref());
        self.insert_txn(uid, index, Transaction::Allowent(a));
    }
}
