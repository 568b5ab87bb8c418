//! Road-wide state shared by every transaction: identity, role records, rng, output queues
//! (datagrams, events, persist ops), counters.

use super::budget::SealedBudget;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use rand_chacha::ChaCha20Rng;

use crate::crypto::{PacketCipher, PrivateKey, Signer};
use crate::keep::{LocalRecord, PersistOp, RoleRecord, RoleStatus};
use crate::packet::{
    self, AllowError, BodyKind, CoatKind, FootKind, Head, PacketKind, TransactionKind,
};

use super::outbound::Outbound;
use super::remote::{sid, Remote};

/// Session ids reserved in the keep at a time (one local record write per block).
pub(crate) const SID_BLOCK: u32 = 1024;
use super::{Event, RoadConfig, RoadStats};

/// Identity, role records, randomness, output queues and counters of a road.
pub(crate) struct Core {
    /// The configuration.
    pub config: RoadConfig,
    /// Our role (defaults to our name).
    pub role: String,
    /// Long-term signing key (shared with the segments queued for signing by the driver).
    pub signer: Arc<Signer>,
    /// Long-term curve25519 secret.
    pub private: PrivateKey,
    /// Our verify key as hex (join `verhex`).
    pub verhex: String,
    /// Our public key as hex (join `pubhex`).
    pub pubhex: String,
    /// Our own uid.
    pub uid: u32,
    /// Last uid given to a remote.
    pub puid: u32,
    /// The last session id we started with any remote: one road-wide counter, so session
    /// ids never repeat (after a restart, or for a remote forgotten and joined again) one a
    /// peer may still hold, and a replayed datagram of an older session stays stale.
    pub sid: u32,
    /// The persisted ceiling of `sid` (our local record's `sid`): every id up to it may have
    /// been used; a restart continues above it.
    pub sid_reserved: u32,
    /// The record of every remote role (restored from the snapshot, kept by the road).
    pub roles: BTreeMap<String, RoleRecord>,
    /// Roles whose keep record was asked for ([`PersistOp::LoadRole`]) and not changed by
    /// the road since: an answer for any other role is stale.
    pub role_loads: BTreeSet<String>,
    /// Roles whose record the keep confirmed since a join request last relied on it (see
    /// `Road::role_loaded`).
    pub confirmed_roles: BTreeSet<String>,
    /// Persist ops for the driver, in order.
    pub persist: VecDeque<PersistOp>,
    /// The only randomness source (seeded by the driver).
    pub rng: ChaCha20Rng,
    /// Datagrams to send, some with their signature or seal still to do.
    pub transmits: VecDeque<Outbound>,
    /// Events for the application.
    pub events: VecDeque<Event>,
    /// Counters.
    pub stats: RoadStats,
    /// Last message id handed out.
    pub last_message_id: u64,
    /// Bytes reserved by open reassemblies (road-wide bound).
    pub reassembly_bytes: usize,
    /// Sealed bytes of the messages being sent (road-wide bound) and who waits for room.
    pub budget: SealedBudget,
}

impl Core {
    /// Logs a dropped packet (counted by the `drop_packet!` macro).
    pub(crate) fn log_drop(&self, reason: &'static str, from: SocketAddr) {
        tracing::debug!(road = %self.config.name, %from, reason, "dropped packet");
    }

    /// Queues an event for the application.
    pub(crate) fn event(&mut self, event: Event) {
        self.events.push_back(event);
    }

    /// A head template for transaction kind `tk` with our head kind.
    pub(crate) fn template(
        &self,
        tk: TransactionKind,
        bk: BodyKind,
        ck: CoatKind,
        fk: FootKind,
    ) -> Head {
        Head {
            hk: self.config.hk,
            tk,
            bk,
            ck,
            fk,
            ..Head::default()
        }
    }

    /// Packs `head` (with packet kind `pk`) and `coat`, signing when the head says `fk` nacl,
    /// and queues it for `dest`. Returns the datagram (for retransmission), or `None` when it
    /// cannot be packed (counted as `packing_error`).
    pub(crate) fn emit(
        &mut self,
        dest: SocketAddr,
        head: &Head,
        pk: PacketKind,
        coat: &[u8],
    ) -> Option<Vec<u8>> {
        let mut head = head.clone();
        head.pk = pk;
        let signer = (head.fk == FootKind::Nacl).then_some(&*self.signer);
        match packet::pack(&head, coat, signer) {
            Ok(datagram) => {
                self.push(dest, datagram.clone());
                Some(datagram)
            }
            Err(e) => {
                tracing::warn!(road = %self.config.name, error = %e, "cannot pack packet");
                self.stats.packing_error += 1;
                None
            }
        }
    }

    /// An allow body built for sending, or `None` when one of its parts had the wrong size
    /// (counted as `packing_error`, like a packet that cannot be packed).
    pub(crate) fn allow_body(&mut self, body: Result<Vec<u8>, AllowError>) -> Option<Vec<u8>> {
        body.map_err(|e| {
            tracing::warn!(road = %self.config.name, error = %e, "cannot build allow body");
            self.stats.packing_error += 1;
        })
        .ok()
    }

    /// Queues an already packed datagram again (a redo).
    pub(crate) fn resend(&mut self, dest: SocketAddr, datagram: &[u8]) {
        self.push(dest, datagram.to_vec());
    }

    /// Queues a packed datagram.
    pub(crate) fn push(&mut self, dest: SocketAddr, payload: Vec<u8>) {
        trace_packet(&self.config.name, "tx", dest, &payload);
        self.queue(Outbound::ready(dest, payload));
    }

    /// Queues a datagram packed with a zeroed foot ([`packet::pack_to_sign`]) to be signed
    /// with our key when it leaves.
    pub(crate) fn push_to_sign(&mut self, dest: SocketAddr, payload: Vec<u8>) {
        trace_packet(&self.config.name, "tx", dest, &payload);
        let signer = Arc::clone(&self.signer);
        self.queue(Outbound::to_sign(dest, payload, signer));
    }

    /// Queues a datagram (its first `at` bytes a binary head, the rest plaintext) to be sealed
    /// with `cipher` as packet `pn` when it leaves.
    pub(crate) fn push_to_seal(
        &mut self,
        dest: SocketAddr,
        payload: Vec<u8>,
        cipher: &Arc<PacketCipher>,
        (pn, at): (u64, usize),
    ) {
        self.queue(Outbound::to_seal(dest, payload, Arc::clone(cipher), pn, at));
    }

    fn queue(&mut self, outbound: Outbound) {
        self.stats.tx_packets += 1;
        self.transmits.push_back(outbound);
    }

    /// Starts a new session with `remote`: the next id of the road-wide counter, past both
    /// the counter and the remote's own last id. A new block of [`SID_BLOCK`] ids is
    /// reserved in the keep (our local record) before one of them is used.
    pub(crate) fn new_session(&mut self, remote: &mut Remote) {
        let base = if remote.sid != 0 && sid::valid(remote.sid, self.sid) {
            remote.sid
        } else {
            self.sid
        };
        self.sid = sid::next(base);
        remote.sid = self.sid;
        if self.sid_reserved == 0
            || !sid::valid(self.sid_reserved, self.sid)
            || self.sid == self.sid_reserved
        {
            self.sid_reserved = sid::ahead(self.sid, SID_BLOCK);
            self.save_local();
        }
    }

    /// The next free uid for a remote (`taken` says which are used).
    pub(crate) fn next_uid(&mut self, taken: impl Fn(u32) -> bool) -> u32 {
        loop {
            self.puid = sid::next(self.puid);
            if self.puid != self.uid && !taken(self.puid) {
                return self.puid;
            }
        }
    }

    /// Our local record for the keep.
    pub(crate) fn local_record(&self) -> LocalRecord {
        LocalRecord {
            name: self.config.name.clone(),
            uid: self.uid,
            ha: self.config.ha,
            sid: self.sid_reserved,
            puid: self.puid,
            role: self.role.clone(),
            main: self.config.main,
            kind: self.config.kind,
            sign_seed: self.signer.seed(),
            private_key: self.private.to_bytes(),
        }
    }

    /// Queues our local record for the keep.
    pub(crate) fn save_local(&mut self) {
        let record = self.local_record();
        self.persist.push_back(PersistOp::SaveLocal(record));
    }

    /// Queues a remote for the keep (an ephemeral one is not persisted).
    pub(crate) fn save_remote(&mut self, remote: &Remote) {
        if !remote.ephemeral {
            self.persist
                .push_back(PersistOp::SaveRemote(remote.record()));
        }
    }

    /// Queues the removal of a remote from the keep.
    pub(crate) fn forget_remote(&mut self, name: &str) {
        self.persist.push_back(PersistOp::RemoveRemote {
            name: name.to_owned(),
        });
    }

    /// Records a role (in memory, and queued for the keep).
    pub(crate) fn save_role(&mut self, record: RoleRecord) {
        self.role_loads.remove(&record.role);
        self.confirmed_roles.remove(&record.role);
        self.roles.insert(record.role.clone(), record.clone());
        self.persist.push_back(PersistOp::SaveRole(record));
    }

    /// Forgets a role (in memory, and queued for the keep).
    pub(crate) fn forget_role(&mut self, role: &str) {
        self.role_loads.remove(role);
        self.confirmed_roles.remove(role);
        self.roles.remove(role);
        self.persist.push_back(PersistOp::RemoveRole {
            role: role.to_owned(),
        });
    }

    /// Asks the driver for the keep's record of `role` (answered by `Road::role_loaded`).
    pub(crate) fn load_role(&mut self, role: &str) {
        self.role_loads.insert(role.to_owned());
        self.persist.push_back(PersistOp::LoadRole {
            role: role.to_owned(),
        });
    }

    /// Whether a join request offering `role` with these keys must wait for the keep: the
    /// road's record of `role` would reject it (a remembered rejection, or other keys than
    /// the recorded ones) and the keep has not confirmed that record since a join last relied
    /// on it (an operator may have changed or deleted it there). If so the record is asked
    /// for and `true` returned (the request is to be held); else a confirmation, if any, is
    /// used up.
    pub(crate) fn record_unconfirmed(&mut self, role: &str, verhex: &str, pubhex: &str) -> bool {
        let rejects = self.roles.get(role).is_some_and(|record| {
            let status = crate::keep::status_role(self.config.auto, Some(record), verhex, pubhex);
            status.acceptance == crate::keep::Acceptance::Rejected
        });
        if !rejects || self.confirmed_roles.remove(role) {
            return false;
        }
        // Asked for every request held: the answers after the first are stale and ignored.
        self.load_role(role);
        true
    }

    /// The reference's `statusRole`: acceptance of `role` offering these keys under our auto
    /// mode, saving the role record when the table says so.
    pub(crate) fn status_role(&mut self, role: &str, verhex: &str, pubhex: &str) -> RoleStatus {
        let record = self.roles.get(role);
        let status = crate::keep::status_role(self.config.auto, record, verhex, pubhex);
        if let Some(record) = status.record_to_save(role, verhex, pubhex) {
            self.save_role(record);
        }
        status
    }

    /// The `mode` byte of our join bodies: bit 0 = main.
    pub(crate) fn mode(&self) -> u8 {
        u8::from(self.config.main)
    }
}

/// At trace level, one line per datagram in or out with its decoded head (which transaction,
/// packet kind, session, segment and flags): enough to follow an exchange between two stacks.
pub(crate) fn trace_packet(road: &str, dir: &str, peer: SocketAddr, datagram: &[u8]) {
    if !tracing::enabled!(tracing::Level::TRACE) {
        return;
    }
    if let Ok(p) = packet::parse(datagram) {
        let h = &p.head;
        tracing::trace!(road, dir, %peer, tk = ?h.tk, pk = ?h.pk, se = h.se, de = h.de,
            si = h.si, ti = h.ti, sn = h.sn, sc = h.sc, fg = format_args!("{:#04x}", h.fg.0),
            "packet");
    }
}
