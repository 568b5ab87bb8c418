//! Allow transaction (tk 3): the CurveCP-like handshake establishing per-peer short-term
//! keys (spec §8). All packets: raw bodies, no coat, signed with the long-term key.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand_core::RngCore;

use crate::crypto::{PrivateKey, PublicKey, SharedBox};
use crate::packet::allow::{
    fqdn_field, Cookie, CookieStuff, Hello, Initiate, InitiateStuff, FQDN_SIZE, HELLO_PLAIN,
    OREO_SIZE,
};
use crate::packet::{
    AllowError, BodyKind, CoatKind, Flags, FootKind, Head, PacketKind, TransactionKind,
};

use super::fast::FastSession;
use super::remote::Remote;
use super::timers::Clock;
use super::transaction::{Transaction, TxIndex};
use super::AllowFailure;
use super::{Event, Presence, Road, Rx, Uid};

/// Why a received hello, cookie or initiate is refused (logged; the packet is counted as
/// `invalid_hello`, `invalid_cookie` or `invalid_initiate` and rejected).
#[derive(Debug, thiserror::Error)]
enum Refusal {
    /// The body (or the plain text in its box) is malformed.
    #[error(transparent)]
    Malformed(#[from] AllowError),
    /// A box does not open with the keys it should have been sealed with.
    #[error("{0} does not open")]
    Unopened(&'static str),
    /// The contents contradict what we know of the remote.
    #[error("{0}")]
    Mismatch(&'static str),
}

/// A hello's short-term public key and the box it was sealed with (with our long-term
/// secret), once its box opened to its plain text.
fn open_hello(private: &PrivateKey, body: &[u8]) -> Result<(PublicKey, SharedBox), Refusal> {
    let hello = Hello::new_checked(body)?;
    let publee = PublicKey::from_bytes(hello.short_public())
        .map_err(|_| Refusal::Mismatch("bad short-term key"))?;
    let hello_box = SharedBox::new(&publee, private);
    let opened = hello_box
        .open_with_nonce(hello.nonce(), hello.sealed())
        .map_err(|_| Refusal::Unopened("hello box"))?;
    if opened[..] != hello.plain()[..] {
        return Err(Refusal::Mismatch("hello plain text differs"));
    }
    Ok((publee, hello_box))
}

/// A cookie's short-term public key and oreo, once its box opened with the hello's keys and
/// its estate ids are the remote's.
fn open_cookie(
    hello_box: &SharedBox,
    remote: &Remote,
    body: &[u8],
) -> Result<(PublicKey, [u8; OREO_SIZE]), Refusal> {
    let cookie = Cookie::new_checked(body)?;
    let opened = hello_box
        .open_with_nonce(cookie.nonce(), cookie.sealed())
        .map_err(|_| Refusal::Unopened("cookie box"))?;
    let stuff = CookieStuff::new_checked(&opened)?;
    if stuff.sender_uid() != remote.fuid || stuff.receiver_uid() != remote.uid {
        return Err(Refusal::Mismatch("cookie estate ids differ"));
    }
    let publee = PublicKey::from_bytes(stuff.short_public())
        .map_err(|_| Refusal::Mismatch("bad short-term key"))?;
    Ok((publee, *stuff.oreo()))
}

/// Checks an initiate: the short-term key and oreo of this allow, a box that opens with the
/// session, the remote's long-term key and a vouch for the short-term key. `Ok(false)`: valid
/// but the fqdn it claims for us is not `fqdn_field(ha)` (only logged, as the reference).
fn check_initiate(
    remote: &Remote,
    oreo: &[u8; OREO_SIZE],
    private: &PrivateKey,
    ours: &[u8; FQDN_SIZE],
    body: &[u8],
) -> Result<bool, Refusal> {
    let initiate = Initiate::new_checked(body)?;
    let short = initiate.short_public();
    if remote.publee.as_ref().map(PublicKey::as_bytes) != Some(short) {
        return Err(Refusal::Mismatch("initiate short-term key differs"));
    }
    if initiate.oreo() != oreo {
        return Err(Refusal::Mismatch("initiate oreo differs"));
    }
    let opened = remote
        .session
        .as_ref()
        .ok_or(Refusal::Mismatch("no session"))?
        .open_with_nonce(initiate.nonce(), initiate.sealed())
        .map_err(|_| Refusal::Unopened("initiate box"))?;
    let stuff = InitiateStuff::new_checked(&opened)?;
    let pubber = remote
        .pubber
        .as_ref()
        .filter(|p| p.as_bytes() == stuff.long_public())
        .ok_or(Refusal::Mismatch("initiate long-term key differs"))?;
    let vouch = SharedBox::new(pubber, private)
        .open_with_nonce(stuff.vouch_nonce(), stuff.vouch())
        .map_err(|_| Refusal::Unopened("vouch"))?;
    if vouch[..] != short[..] {
        return Err(Refusal::Mismatch("vouch differs"));
    }
    Ok(stuff.fqdn() == ours)
}

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
    oreo: [u8; OREO_SIZE],
    pub clock: Clock,
    /// Last packet sent (cookie or ack).
    last: Option<Vec<u8>>,
    /// Where the hello came from: every answer goes there, and the remote moves there once
    /// the initiate proves its long-term keys (not before).
    pub dest: SocketAddr,
}

/// How often a remote's identity clash is logged at warning (it is counted every time).
const CLASH_WARNING_INTERVAL: Duration = Duration::from_secs(60);

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
            self.core.stats.invalid_allow_attempt += 1;
            return;
        }
        if remote.allow_in_process() {
            self.core.stats.allow_in_process += 1;
            return;
        }
        remote.allowed = None;
        if remote.joined != Some(true) {
            self.core.stats.unjoined_remote += 1;
            self.start_join(now, uid, cascade, false, Some(pace.timeout));
            return;
        }
        let Some(pubber) = remote.pubber.clone() else {
            self.core.stats.missing_remote_keys += 1;
            return;
        };
        let privee = PrivateKey::generate(&mut self.core.rng);
        let hello_box = SharedBox::new(&pubber, &privee);
        let n1 = self.nonce();
        let hello = Hello::emit(
            privee.public_key().as_bytes(),
            &hello_box.seal_with_nonce(&n1, &HELLO_PLAIN),
            &n1,
        );
        let Some(body) = self.core.allow_body(hello) else {
            return;
        };
        let Some(remote) = self.remotes.get_mut(&uid) else {
            return;
        };
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
        if let Some(dest) = self.remotes.get(&uid).map(|r| r.ha) {
            self.allow_nack_to(dest, head, kind);
        }
    }

    /// Sends `kind` with an allow transaction's head to `dest`.
    pub(super) fn allow_nack_to(&mut self, dest: SocketAddr, head: &Head, kind: PacketKind) {
        self.core.stats.allow_transaction_failure += 1;
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
                self.core.stats.allower_rx_refuse += 1;
                self.allow_failed(uid, AllowFailure::Refused);
            }
            PacketKind::Reject => {
                self.core.stats.allower_rx_reject += 1;
                self.allow_rejected(uid);
            }
            PacketKind::Unjoined => {
                self.core.stats.allower_rx_unjoined += 1;
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
        self.allow_failed(uid, AllowFailure::Rejected);
    }

    /// An allow with the remote ended without success. Unless it is allowed anyway or
    /// another allow or a join with it is under way (that one decides), the application
    /// learns it: [`Event::AllowFailed`]; an allow that timed out also means the remote is
    /// not alive (the heartbeat of a joined remote that is not allowed is this allow, so
    /// without that a peer dying between its join and its allow would never be lost).
    /// Presence retries: the next alive to a joined remote that is not allowed starts a new
    /// allow.
    fn allow_failed(&mut self, uid: Uid, reason: AllowFailure) {
        let Some(remote) = self.remotes.get(&uid) else {
            return;
        };
        if remote.allowed == Some(true) || remote.allow_in_process() || remote.join_in_process() {
            return;
        }
        self.core.stats.allow_failed += 1;
        tracing::debug!(road = %self.core.config.name, uid, %reason, "allow failed");
        if reason == AllowFailure::TimedOut {
            self.set_alived(uid, Some(false));
        }
        self.core.event(Event::AllowFailed { uid, reason });
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
        let Some(remote) = self.remotes.get_mut(&uid) else {
            return;
        };
        let checked = remote
            .privee
            .as_ref()
            .zip(remote.pubber.as_ref())
            .ok_or(Refusal::Mismatch("no keys for the remote"))
            .and_then(|keys| Ok((open_cookie(&a.hello_box, remote, &body)?, keys)));
        let ((publee, oreo), (privee, pubber)) = match checked {
            Ok(checked) => checked,
            Err(e) => {
                tracing::debug!(road = %self.core.config.name, uid, error = %e, "invalid cookie");
                self.core.stats.invalid_cookie += 1;
                self.allow_nack(uid, &a.head, PacketKind::Reject);
                self.allow_failed(uid, AllowFailure::InvalidCookie);
                return;
            }
        };
        let session = SharedBox::new(&publee, privee);
        let fast = remote
            .fast_peer
            .then(|| FastSession::new(privee, &publee, true))
            .flatten();
        let short_public = privee.public_key();
        let long_box = SharedBox::new(pubber, &self.core.private);
        let fqdn = fqdn_field(remote.ha);
        remote.publee = Some(publee);
        let mut vnonce = [0u8; 24];
        self.core.rng.fill_bytes(&mut vnonce);
        let vouch = long_box.seal_with_nonce(&vnonce, short_public.as_bytes());
        let istuff = InitiateStuff::emit(
            self.core.private.public_key().as_bytes(),
            &vouch,
            &vnonce,
            &fqdn,
        );
        let n3 = self.nonce();
        let initiate = istuff.and_then(|istuff| {
            Initiate::emit(
                short_public.as_bytes(),
                &oreo,
                &session.seal_with_nonce(&n3, &istuff),
                &n3,
            )
        });
        let Some(body) = self.core.allow_body(initiate) else {
            self.insert_txn(uid, index, Transaction::Allower(a));
            return;
        };
        let Some(remote) = self.remotes.get_mut(&uid) else {
            return;
        };
        remote.session = Some(session);
        remote.fast = fast;
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
        self.core.stats.allow_initiate_complete += 1;
        self.complete_allow(now, uid);
        self.pump(now, uid);
        if a.cascade {
            self.start_alive(now, uid, true, Some(a.timeout));
        }
    }

    /// The remote proved its long-term keys from `dest` (an allow's initiate): if that is a
    /// new address, the remote moves there (with what its join from there proposed). No
    /// other packet moves a remote.
    fn settle_address(&mut self, now: Instant, uid: Uid, dest: SocketAddr, rsid: u32) {
        let Some(remote) = self.remotes.get_mut(&uid) else {
            return;
        };
        let proposal = remote.proposal.take().filter(|p| p.ha == dest);
        if remote.ha == dest {
            return;
        }
        tracing::info!(road = %self.core.config.name, remote = %remote.name, from = %remote.ha,
            to = %dest, "remote moved: its allow from the new address proved its keys");
        if self.joinees.get(&remote.ha) == Some(&uid) {
            self.joinees.remove(&remote.ha);
        }
        remote.ha = dest;
        remote.heard_at_ha = Some(now);
        let session = remote.rsid != rsid;
        remote.rsid = rsid;
        let joined = proposal.is_some_and(|p| p.joined);
        if let Some(p) = proposal {
            remote.fuid = p.fuid;
            remote.main = p.main;
            remote.kind = p.kind;
        }
        self.core.stats.address_moved += 1;
        if session {
            self.remove_stale_correspondents(now, uid);
        }
        // Alives to the old address would time out and call a live remote lost.
        for index in self.txn_indexes(uid, |t| matches!(t, Transaction::Aliver(_))) {
            self.take_txn(uid, &index);
        }
        if joined {
            self.complete_join(now, uid, false, None);
            self.announce_joined(uid);
        } else {
            self.save(uid);
        }
    }

    /// Both sides of a successful allow: allowed, alive, new session.
    fn complete_allow(&mut self, now: Instant, uid: Uid) {
        let Some(remote) = self.remotes.get_mut(&uid) else {
            return;
        };
        remote.allowed = Some(true);
        self.core.new_session(remote);
        let (name, ha) = (remote.name.clone(), remote.ha);
        self.set_alived(uid, Some(true));
        self.replace_stale_initiators(now, uid);
        self.save(uid);
        self.core.event(Event::Allowed {
            uid,
            name: name.clone(),
            ha,
        });
        self.core.event(Event::Presence {
            uid,
            name,
            presence: Presence::Allowed,
        });
    }

    /// Resends the last packet of an allow transaction when its resend timer expired.
    fn redo_allow(
        &mut self,
        now: Instant,
        dest: SocketAddr,
        clock: &mut Clock,
        last: Option<&[u8]>,
    ) {
        if clock.redo.expired(now) {
            clock.redo.backoff(now);
            if let Some(d) = last {
                self.core.stats.redo_allow += 1;
                self.core.resend(dest, d);
            }
        }
    }

    /// An allower's timers: timeout (gives up), redo (resend hello or initiate).
    pub(super) fn allower_timer(&mut self, now: Instant, uid: Uid, index: TxIndex, mut a: Allower) {
        if a.clock.timed_out(now) {
            self.core.stats.allower_timeout += 1;
            self.allow_failed(uid, AllowFailure::TimedOut);
            return;
        }
        let Some(dest) = self.remotes.get(&uid).map(|r| r.ha) else {
            return;
        };
        self.redo_allow(now, dest, &mut a.clock, a.last.as_deref());
        self.insert_txn(uid, index, Transaction::Allower(a));
    }

    /// A hello opens an Allowent (reference `Allowent.hello`). Its answers go to the hello's
    /// source. A hello from another address than the remote's, while the remote is heard
    /// at its own (within 1.5 presence periods), is dropped and counted:
    /// one identity at two addresses, a clone or a restart racing its own last packets,
    /// and the established session is kept. A restarted estate's allower sends its hello
    /// again, and once its old address fell silent that one moves it.
    pub(super) fn allowent_start(&mut self, now: Instant, uid: Uid, rx: &Rx<'_>) {
        let h = &rx.head;
        let t = &self.core.config.timers;
        let pace = t.allow_pace(None);
        let window = t.presence_period + t.presence_period / 2;
        if self.identity_clash(now, uid, rx.from, window) {
            return;
        }
        let Some(remote) = self.remotes.get(&uid) else {
            return;
        };
        let mut head = Head {
            se: remote.uid,
            de: remote.fuid_at(rx.from),
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
            self.core.stats.invalid_allow_attempt += 1;
            self.allow_nack_to(rx.from, &head, PacketKind::Refuse);
            return;
        }
        if Remote::is_copy(remote.last_hello, (h.si, h.ti), now) {
            drop_packet!(self.core, duplicate_allow_attempt, rx.from);
            return;
        }
        let window = now.checked_add(pace.timeout).unwrap_or(now);
        if let Some(remote) = self.remotes.get_mut(&uid) {
            remote.last_hello = Some(((h.si, h.ti), window));
        }
        if !self.allowent_race(uid, &head, rx.from) {
            return;
        }
        let Some(remote) = self.remotes.get_mut(&uid) else {
            return;
        };
        remote.allowed = None;
        if remote.joined != Some(true) && !remote.joined_at(rx.from) {
            self.core.stats.unjoined_allow_attempt += 1;
            self.allow_nack_to(rx.from, &head, PacketKind::Unjoined);
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
        let (publee, hello_box) = match open_hello(&self.core.private, &body) {
            Ok(opened) => opened,
            Err(e) => {
                tracing::debug!(road = %self.core.config.name, uid, error = %e, "invalid hello");
                remote.privee = Some(privee);
                self.core.stats.invalid_hello += 1;
                self.allow_nack_to(rx.from, &head, PacketKind::Reject);
                return;
            }
        };
        let stuff = CookieStuff::emit(privee.public_key().as_bytes(), remote.uid, head.de, &oreo);
        let cookie = Cookie::emit(&hello_box.seal_with_nonce(&n2, &stuff), &n2);
        let Some(cookie) = self.core.allow_body(cookie) else {
            return;
        };
        let Some(remote) = self.remotes.get_mut(&uid) else {
            return;
        };
        remote.session = Some(SharedBox::new(&publee, &privee));
        remote.fast = remote
            .fast_peer
            .then(|| FastSession::new(&privee, &publee, false))
            .flatten();
        remote.publee = Some(publee);
        remote.privee = Some(privee);
        let dest = rx.from;
        let index = TxIndex::of_rx(h, rx.from);
        let last = self.core.emit(dest, &head, PacketKind::Cookie, &cookie);
        let allowent = Allowent {
            head,
            oreo,
            clock: pace.start(now),
            last,
            dest,
        };
        self.insert_txn(uid, index, Transaction::Allowent(allowent));
    }

    /// Whether a hello of `uid` from `from` clashes with the remote heard at its own address
    /// within `window` (counted; logged at warning once a minute per remote).
    fn identity_clash(
        &mut self,
        now: Instant,
        uid: Uid,
        from: SocketAddr,
        window: Duration,
    ) -> bool {
        let Some(remote) = self.remotes.get_mut(&uid) else {
            return false;
        };
        if !remote.heard_elsewhere(from, now, window) {
            return false;
        }
        self.core.stats.identity_clash += 1;
        let quiet = remote
            .clash_warned
            .and_then(|t| t.checked_add(CLASH_WARNING_INTERVAL))
            .is_some_and(|until| now < until);
        if !quiet {
            remote.clash_warned = Some(now);
            tracing::warn!(road = %self.core.config.name, remote = %remote.name,
                established = %remote.ha, other = %from,
                "one identity seen at two addresses: keeping the established session");
        }
        true
    }

    /// Drops our allows with `uid` addressed to another uid of the peer than the one its
    /// join just gave (begun for its old session, whose uid a rejoined estate no longer
    /// knows: unanswerable).
    pub(super) fn drop_stale_allowers(&mut self, uid: Uid) {
        let Some(fuid) = self.remotes.get(&uid).map(|r| r.fuid) else {
            return;
        };
        let allowers = self.txn_indexes(
            uid,
            |t| matches!(t, Transaction::Allower(a) if a.head.de != fuid),
        );
        for index in allowers {
            if self.take_txn(uid, &index).is_some() {
                self.core.stats.stale_allow_dropped += 1;
            }
        }
    }

    /// Simultaneous allows: the smaller local name yields. `false`: the incoming hello (from
    /// `from`) was refused.
    fn allowent_race(&mut self, uid: Uid, head: &Head, from: SocketAddr) -> bool {
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
                    self.core.stats.redundant_allow_attempt += 1;
                    self.allow_nack_to(from, head, PacketKind::Refuse);
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
                self.core.stats.allow_correspond_complete += 1;
                self.pump(now, uid);
            }
            PacketKind::Nack | PacketKind::Refuse => {
                self.core.stats.allowent_rx_refuse += 1;
                self.pump(now, uid);
                self.allow_failed(uid, AllowFailure::Refused);
            }
            PacketKind::Reject => {
                self.core.stats.allowent_rx_reject += 1;
                self.allow_rejected(uid);
            }
            PacketKind::Hello => {
                self.core.stats.duplicate_allow_attempt += 1;
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
        let ours = fqdn_field(self.core.config.ha);
        match check_initiate(remote, &a.oreo, &self.core.private, &ours, &body) {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(road = %self.core.config.name, "initiate fqdn differs (ignored)");
            }
            Err(e) => {
                tracing::debug!(road = %self.core.config.name, uid, error = %e, "invalid initiate");
                self.core.stats.invalid_initiate += 1;
                self.allow_nack_to(a.dest, &a.head, PacketKind::Reject);
                self.allow_failed(uid, AllowFailure::InvalidInitiate);
                return;
            }
        }
        if let Some(d) = self.core.emit(a.dest, &a.head, PacketKind::Ack, &[]) {
            a.last = Some(d);
            a.clock.redo.restart(now);
        }
        self.settle_address(now, uid, a.dest, a.head.si);
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
            self.core.stats.allowent_timeout += 1;
            self.allow_nack_to(a.dest, &a.head, PacketKind::Refuse);
            self.pump(now, uid);
            self.allow_failed(uid, AllowFailure::TimedOut);
            return;
        }
        self.redo_allow(now, a.dest, &mut a.clock, a.last.as_deref());
        self.insert_txn(uid, index, Transaction::Allowent(a));
    }
}
