//! Building a road: [`Road::new`] restores its identity, role records and remotes from the
//! keep's [`Snapshot`] (or creates the identity), and a restarted main spreads its first
//! heartbeats to the remotes it restored.

use super::budget::SealedBudget;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rand_core::RngCore;

use crate::crypto::{PrivateKey, Signer};
use crate::keep::{PersistOp, RemoteRecord, Snapshot};
use crate::packet::BodyKind;

use super::core::Core;
use super::registry::Registry;
use super::remote::Remote;
use super::{Road, RoadConfig, RoadError, RoadStats, Uid};

/// Over how long at least a restarted main spreads the first heartbeats to the remotes it
/// restored joined.
const RESTART_SPREAD: Duration = Duration::from_secs(1);

/// How much longer it spreads them per such remote (up to the presence period): each of those
/// heartbeats starts an allow, an x25519 handshake on both sides. At 10,000 remotes within one
/// second the handshakes outlasted the allow timeout for most of them; those remotes then
/// took the master for lost and joined again, a join storm after every restart.
const RESTART_SPREAD_PER_REMOTE: Duration = Duration::from_millis(1);

impl Road {
    /// Restores identity (keys, uid counter, remotes, role records) from `snapshot` when it
    /// has a local record, else creates it (keys: from `keys` if given, else random from the
    /// seeded rng); either way the local record and every restored remote are queued for the
    /// keep ([`Road::poll_persist`]).
    ///
    /// As the reference, every restored remote starts a new session (its `sid` + 1); `joined`
    /// is restored, `allowed`/`alive` are not (the remotes must be allowed again).
    pub fn new(
        config: RoadConfig,
        keys: Option<(Signer, PrivateKey)>,
        snapshot: Snapshot,
        rng_seed: [u8; 32],
        now: Instant,
    ) -> Result<Self, RoadError> {
        crate::keep::check_name("name", &config.name)
            .map_err(|e| RoadError::InvalidConfig(e.to_string()))?;
        let role = config.role.clone().unwrap_or_else(|| config.name.clone());
        crate::keep::check_name("role", &role)
            .map_err(|e| RoadError::InvalidConfig(e.to_string()))?;
        if !matches!(config.bk, BodyKind::Json | BodyKind::Msgpack) {
            return Err(RoadError::InvalidConfig(format!(
                "messages are sent as json or msgpack, not {:?}",
                config.bk
            )));
        }
        let mut rng = ChaCha20Rng::from_seed(rng_seed);
        let Snapshot {
            local: restored,
            remotes,
            roles,
        } = snapshot;
        let (signer, private, uid, puid, sid) = match &restored {
            Some(local) => {
                if local.name != config.name {
                    return Err(RoadError::InvalidIdentity(format!(
                        "the keep belongs to estate {:?}, not {:?}",
                        local.name, config.name
                    )));
                }
                (
                    Signer::from_seed(&local.sign_seed),
                    PrivateKey::from_bytes(&local.private_key),
                    local.uid,
                    local.puid,
                    local.sid,
                )
            }
            None => {
                let (signer, private) = match keys {
                    Some(k) => k,
                    None => (Signer::generate(&mut rng), PrivateKey::generate(&mut rng)),
                };
                (signer, private, 1, 1, 0)
            }
        };
        let verhex = signer.verify_key().to_hex();
        let pubhex = private.public_key().to_hex();
        let core = Core {
            config,
            role,
            signer: std::sync::Arc::new(signer),
            private,
            verhex,
            pubhex,
            uid,
            puid,
            sid,
            sid_reserved: sid,
            roles: roles.into_iter().map(|r| (r.role.clone(), r)).collect(),
            role_loads: BTreeSet::new(),
            confirmed_roles: BTreeSet::new(),
            persist: VecDeque::new(),
            rng,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: RoadStats::default(),
            last_message_id: 0,
            reassembly_bytes: 0,
            budget: SealedBudget::default(),
        };
        let mut road = Self {
            core,
            remotes: Registry::default(),
            joinees: HashMap::new(),
            held_joins: Vec::new(),
            first_contact_sources: HashMap::new(),
            awaiting: HashMap::new(),
        };
        road.restore_remotes(now, remotes);
        // A restored remote's new session already queued the local record (its session id
        // reservation); else queue it now.
        if !road
            .core
            .persist
            .iter()
            .any(|op| matches!(op, PersistOp::SaveLocal(_)))
        {
            road.core.save_local();
        }
        let uids: Vec<Uid> = road.remotes.keys().copied().collect();
        for uid in uids {
            if let Some(remote) = road.remotes.get(&uid) {
                road.core.save_remote(remote);
            }
        }
        tracing::debug!(road = %road.core.config.name, restored = restored.is_some(),
            remotes = road.remotes.len(), "road ready");
        Ok(road)
    }

    /// Restores the remotes of the snapshot (each with its role's keys and acceptance).
    fn restore_remotes(&mut self, now: Instant, records: Vec<RemoteRecord>) {
        for record in records {
            if record.uid == 0
                || record.uid == self.core.uid
                || self.remotes.contains_key(&record.uid)
            {
                tracing::warn!(road = %self.core.config.name, remote = %record.name,
                    uid = record.uid, "skipping remote with an unusable uid");
                self.core.stats.restore_skipped += 1;
                continue;
            }
            let Some(role) = self.core.roles.get(&record.role).cloned() else {
                tracing::warn!(road = %self.core.config.name, remote = %record.name,
                    role = %record.role, "skipping remote without role keys");
                self.core.stats.restore_skipped += 1;
                continue;
            };
            let (presence_due, reap_due) = self.first_presence(now);
            let mut remote = Remote::new(
                record.uid,
                record.fuid,
                record.name.clone(),
                record.ha,
                presence_due,
                reap_due,
            );
            remote.role = record.role.clone();
            remote.main = record.main;
            remote.kind = record.kind;
            remote.joined = record.joined;
            remote.sid = record.sid;
            remote.fast_peer = record.fast && self.core.config.profile.offers();
            remote.acceptance = Some(role.acceptance);
            if let Err(reason) = remote.set_keys(&role.verhex, &role.pubhex) {
                tracing::warn!(road = %self.core.config.name, remote = %record.name, %reason,
                    "skipping remote with bad keys");
                self.core.stats.restore_skipped += 1;
                continue;
            }
            self.core.new_session(&mut remote);
            self.core.puid = self.core.puid.max(record.uid);
            self.remotes.insert(record.uid, remote);
        }
        if self.core.config.main {
            self.spread_restart_presence(now);
        }
    }

    /// A restarted main's first heartbeats to the remotes it restored joined: spread at
    /// random over [`RESTART_SPREAD`], plus [`RESTART_SPREAD_PER_REMOTE`] for each of them,
    /// at most the presence period. The session keys did not survive the restart, so each
    /// heartbeat allows again; without them an idle remote would learn of the restart only
    /// at its own next heartbeat.
    fn spread_restart_presence(&mut self, now: Instant) {
        let joined: Vec<Uid> = self
            .remotes
            .values()
            .filter(|r| r.joined == Some(true))
            .map(|r| r.uid)
            .collect();
        let spread = RESTART_SPREAD_PER_REMOTE
            .saturating_mul(u32::try_from(joined.len()).unwrap_or(u32::MAX))
            .max(RESTART_SPREAD)
            .min(self.core.config.timers.presence_period);
        let nanos = u64::try_from(spread.as_nanos()).unwrap_or(u64::MAX).max(1);
        for uid in joined {
            let delay = Duration::from_nanos(self.core.rng.next_u64() % nanos);
            if let Some(remote) = self.remotes.get_mut(&uid) {
                remote.presence_due = now.checked_add(delay).unwrap_or(now);
            }
        }
    }
}
