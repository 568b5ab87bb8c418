//! State of one remote estate: identity, keys, session ids, presence, its open transactions,
//! completed message ids and the messages waiting to be sent to it.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::crypto::{PrivateKey, PublicKey, SharedBox, VerifyKey};
use crate::keep::{Acceptance, RemoteRecord};

use super::fast::FastSession;
use super::transaction::Transactions;
use super::{MessageId, Uid};

/// Session id arithmetic of the reference (spec §2.5).
pub(crate) mod sid {
    /// Half of the 2^32 session id space.
    const HALF: u32 = 0x8000_0000;

    /// Whether session id `new` is not older than `old`: always when either is zero,
    /// else when `(new - old) mod 2^32 < 2^31`.
    pub(crate) fn valid(new: u32, old: u32) -> bool {
        old == 0 || new == 0 || new.wrapping_sub(old) < HALF
    }

    /// The next session (or transaction, or uid) id: +1, rolling over 0xffffffff -> 1.
    pub(crate) fn next(id: u32) -> u32 {
        id.checked_add(1).unwrap_or(1)
    }

    /// The id `n` steps after `id` ([`next`] `n` times; 0 is never an id).
    pub(crate) fn ahead(id: u32, n: u32) -> u32 {
        match (id, n) {
            (0, 0) => 0,
            (0, n) => ahead(1, n - 1),
            (id, n) => {
                let zero_based = u64::from(id) - 1 + u64::from(n);
                (zero_based % u64::from(u32::MAX)) as u32 + 1
            }
        }
    }
}

/// A message waiting to be sent (remote not allowed yet, or too many in flight).
#[derive(Debug)]
pub(crate) struct Outgoing {
    /// What `send` returned.
    pub id: MessageId,
    /// The JSON body, encoded (shared by the copies of one message sent to many remotes).
    pub body: Arc<[u8]>,
    /// Its body kind (the road's [`super::RoadConfig::bk`], or raw for opaque bytes).
    pub bk: crate::packet::BodyKind,
    /// When it was queued (the bounded message timeout starts here).
    pub queued: Instant,
    /// Sends refused by the receiver so far.
    pub attempts: u8,
}

/// What a join from a new address proposed for a known remote: applied only when an allow
/// from that address proves the remote's long-term keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Proposal {
    /// The new address.
    pub ha: SocketAddr,
    /// Its uid for us, as the join said.
    pub fuid: u32,
    /// Main estate, as the join said.
    pub main: bool,
    /// Application kind, as the join said.
    pub kind: u8,
    /// The join from there completed (the joiner acked our accept).
    pub joined: bool,
}

/// One remote estate.
pub(crate) struct Remote {
    /// Our uid for it (nuid).
    pub uid: Uid,
    /// Its uid for us (0 = unknown: vacuous join).
    pub fuid: u32,
    /// Its name (provisional until a vacuous join completes).
    pub name: String,
    /// Its address.
    pub ha: SocketAddr,
    /// Its role.
    pub role: String,
    /// Whether it is a main estate.
    pub main: bool,
    /// Its application kind.
    pub kind: u8,
    /// Its long-term keys as hex (empty until learned from a join).
    pub verhex: String,
    /// Its long-term curve25519 public key as hex.
    pub pubhex: String,
    /// Its long-term verify key.
    pub verifier: Option<VerifyKey>,
    /// Its long-term curve25519 public key.
    pub pubber: Option<PublicKey>,
    /// Acceptance of its role's keys.
    pub acceptance: Option<Acceptance>,
    /// Join state.
    pub joined: Option<bool>,
    /// Allow state.
    pub allowed: Option<bool>,
    /// Alive state.
    pub alived: Option<bool>,
    /// Main only: no traffic for the reap interim.
    pub reaped: bool,
    /// Our session id for transactions we initiate.
    pub sid: u32,
    /// The last session id received in transactions it initiated.
    pub rsid: u32,
    /// Last transaction id we used.
    pub tid: u32,
    /// A joinent-side remote not added yet (vacuous join in progress): invisible to `de` lookups.
    pub ephemeral: bool,
    /// Our short-term secret for this peer (fresh at every allow).
    pub privee: Option<PrivateKey>,
    /// Its short-term public key (from the last allow).
    pub publee: Option<PublicKey>,
    /// crypto_box shared key of (publee, privee): computed once per allow, used per packet.
    pub session: Option<SharedBox>,
    /// Both sides offered the fast profile in their last join (remembered in the keep).
    pub fast_peer: bool,
    /// The fast profile's packet keys of the current allow (when `fast_peer`).
    pub(crate) fast: Option<FastSession>,
    /// When we last answered one of its fast packets with a compatible nack: one of a
    /// message, one of an alive (each kind has its own answer, and its own rate).
    pub(crate) fast_refused_at: [Option<Instant>; 2],
    /// Open transactions.
    pub transactions: Transactions,
    /// Completed message transaction ids and when they expire (duplicate suppression).
    /// Completed message transactions of the current session: delivered (true) or refused.
    done: HashMap<u32, bool>,
    done_order: VecDeque<(u32, Instant)>,
    /// Messages waiting to be sent.
    pub outbox: VecDeque<Outgoing>,
    /// Total body bytes in `outbox`.
    pub outbox_bytes: usize,
    /// When the presence timer fires (an alive is sent).
    pub presence_due: Instant,
    /// Main only: when the remote is reaped without traffic.
    pub reap_due: Instant,
    /// When we last received a valid packet from it.
    pub last_heard: Option<Instant>,
    /// When we last received an authenticated (signed) packet from it at its address `ha`.
    pub heard_at_ha: Option<Instant>,
    /// What a join from another address proposed (see [`Proposal`]).
    pub proposal: Option<Proposal>,
    /// When an identity clash with it was last logged.
    pub clash_warned: Option<Instant>,
    /// While it is a first contact (joined vacuously, never completed a join here, not
    /// restored from the keep): when it last asked (sent a join request). Not persisted.
    pub first_contact: Option<Instant>,
    /// The last join request and hello we answered (`se`/`si`, `ti`) and until when a copy
    /// of them is a late duplicate to drop (not a new handshake that would undo the
    /// completed one).
    pub last_join: Option<((u32, u32), Instant)>,
    /// See `last_join`.
    pub last_hello: Option<((u32, u32), Instant)>,
}

impl Remote {
    /// A new remote with the given uids and address; everything else unknown.
    pub(crate) fn new(
        uid: Uid,
        fuid: u32,
        name: String,
        ha: SocketAddr,
        presence_due: Instant,
        reap_due: Instant,
    ) -> Self {
        Self {
            uid,
            fuid,
            role: name.clone(),
            name,
            ha,
            main: false,
            kind: 0,
            verhex: String::new(),
            pubhex: String::new(),
            verifier: None,
            pubber: None,
            acceptance: None,
            joined: None,
            allowed: None,
            alived: None,
            reaped: false,
            sid: 0,
            rsid: 0,
            tid: 0,
            ephemeral: false,
            privee: None,
            publee: None,
            session: None,
            fast_peer: false,
            fast: None,
            fast_refused_at: [None; 2],
            transactions: Transactions::default(),
            done: HashMap::new(),
            done_order: VecDeque::new(),
            outbox: VecDeque::new(),
            outbox_bytes: 0,
            presence_due,
            reap_due,
            last_heard: None,
            heard_at_ha: None,
            proposal: None,
            clash_warned: None,
            first_contact: None,
            last_join: None,
            last_hello: None,
        }
    }

    /// The next transaction id (1, 2, ...; 0xffffffff -> 1).
    pub(crate) fn next_tid(&mut self) -> u32 {
        self.tid = sid::next(self.tid);
        self.tid
    }

    /// Its uid for us as seen from `from`: what its join from there proposed, else the
    /// known one.
    pub(crate) fn fuid_at(&self, from: SocketAddr) -> u32 {
        match self.proposal {
            Some(p) if p.ha == from => p.fuid,
            _ => self.fuid,
        }
    }

    /// Whether a join from `from` (not its address) completed: an allow from there may
    /// prove the keys and move the remote.
    pub(crate) fn joined_at(&self, from: SocketAddr) -> bool {
        self.proposal.is_some_and(|p| p.joined && p.ha == from)
    }

    /// Whether `from` is not its address while it was heard (authenticated) at its address
    /// within `window` before `now`.
    pub(crate) fn heard_elsewhere(&self, from: SocketAddr, now: Instant, window: Duration) -> bool {
        from != self.ha
            && self
                .heard_at_ha
                .and_then(|t| t.checked_add(window))
                .is_some_and(|until| now < until)
    }

    /// Whether a session id received in a transaction it initiated is not stale.
    pub(crate) fn valid_rsid(&self, rsid: u32) -> bool {
        sid::valid(rsid, self.rsid)
    }

    /// Whether one of our initiated transactions with session `tsid` is still current.
    pub(crate) fn valid_sid(&self, tsid: u32) -> bool {
        sid::valid(tsid, self.sid)
    }

    /// Installs its long-term keys (hex as received). Errors if a key is malformed.
    pub(crate) fn set_keys(&mut self, verhex: &str, pubhex: &str) -> Result<(), String> {
        let verifier = VerifyKey::from_hex(verhex).map_err(|e| format!("verhex: {e}"))?;
        let pubber = PublicKey::from_hex(pubhex).map_err(|e| format!("pubhex: {e}"))?;
        self.verhex = verhex.to_owned();
        self.pubhex = pubhex.to_owned();
        self.verifier = Some(verifier);
        self.pubber = Some(pubber);
        Ok(())
    }

    /// Forgets the short-term keys (a new allow will make fresh ones).
    pub(crate) fn clear_session(&mut self) {
        self.privee = None;
        self.publee = None;
        self.session = None;
        self.fast = None;
    }

    /// Remembers how message transaction `tid` ended (`delivered` or refused) until
    /// `expiry`, keeping at most `cap`.
    pub(crate) fn add_done(&mut self, tid: u32, delivered: bool, expiry: Instant, cap: usize) {
        if self.done.insert(tid, delivered).is_none() {
            self.done_order.push_back((tid, expiry));
        }
        while self.done_order.len() > cap {
            if let Some((old, _)) = self.done_order.pop_front() {
                self.done.remove(&old);
            }
        }
    }

    /// How message transaction `tid` ended, if it did recently: `Some(true)` delivered to
    /// the application, `Some(false)` refused or abandoned.
    pub(crate) fn done_outcome(&self, tid: u32) -> Option<bool> {
        self.done.get(&tid).copied()
    }

    /// Forgets completed ids whose time is over.
    pub(crate) fn expire_done(&mut self, now: Instant) {
        while let Some(&(tid, expiry)) = self.done_order.front() {
            if expiry > now {
                break;
            }
            self.done_order.pop_front();
            self.done.remove(&tid);
        }
    }

    /// When the oldest completed id expires.
    pub(crate) fn next_done_expiry(&self) -> Option<Instant> {
        self.done_order.front().map(|&(_, e)| e)
    }

    /// Forgets every completed id (new session of the peer).
    pub(crate) fn clear_done(&mut self) {
        self.done.clear();
        self.done_order.clear();
    }

    /// The record persisted in the keep.
    pub(crate) fn record(&self) -> RemoteRecord {
        RemoteRecord {
            name: self.name.clone(),
            uid: self.uid,
            fuid: self.fuid,
            ha: self.ha,
            sid: self.sid,
            main: self.main,
            kind: self.kind,
            joined: self.joined,
            role: self.role.clone(),
            fast: self.fast_peer,
        }
    }

    /// Whether `key` is a late copy of the last request remembered in `last`.
    pub(crate) fn is_copy(
        last: Option<((u32, u32), Instant)>,
        key: (u32, u32),
        now: Instant,
    ) -> bool {
        last.is_some_and(|(k, until)| k == key && now < until)
    }

    /// Whether a join (either side) with it is in progress.
    pub(crate) fn join_in_process(&self) -> bool {
        self.transactions.joining()
    }

    /// Whether an allow (either side) with it is in progress.
    pub(crate) fn allow_in_process(&self) -> bool {
        self.transactions.allowing()
    }

    /// Whether a handshake it started counts against the road's
    /// [`Limits::max_handshakes`](super::Limits::max_handshakes) now.
    pub(crate) fn handshaking(&self) -> bool {
        self.transactions.handshaking()
    }

    /// Whether its keys were pending a decision at its last join (a join from it now waits
    /// for that decision, not for this road's work).
    pub(crate) fn pended(&self) -> bool {
        self.acceptance == Some(Acceptance::Pending)
    }
}

#[cfg(test)]
mod tests {
    use super::sid::{ahead, next, valid};

    #[test]
    fn zero_is_always_valid() {
        assert!(valid(0, 5));
        assert!(valid(5, 0));
        assert!(valid(0, 0));
    }

    #[test]
    fn half_range_comparison() {
        assert!(valid(5, 5));
        assert!(valid(6, 5));
        assert!(!valid(4, 5));
        assert!(valid(5 + 0x7fff_ffff, 5));
        assert!(!valid(5u32.wrapping_add(0x8000_0000), 5));
        // across the rollover: 2 is newer than 0xfffffff0
        assert!(valid(2, 0xffff_fff0));
        assert!(!valid(0xffff_fff0, 2));
    }

    #[test]
    fn rollover_skips_zero() {
        assert_eq!(next(1), 2);
        assert_eq!(next(0xffff_fffe), 0xffff_ffff);
        assert_eq!(next(0xffff_ffff), 1);
        assert_eq!(next(0), 1);
    }

    #[test]
    fn ahead_is_next_n_times() {
        for (id, n) in [
            (0, 3),
            (1, 1024),
            (0xffff_fc00, 1024),
            (0xffff_ffff, 1),
            (7, 0),
        ] {
            let stepped = (0..n).fold(id, |id, _| next(id));
            assert_eq!(ahead(id, n), stepped, "ahead({id:#x}, {n})");
        }
    }
}
