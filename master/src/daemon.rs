//! The master's side of the shared daemon loop: key decisions from Salt's pki directories
//! (native mode: the [`Acceptor`] applies Salt's rules, the pki watcher and `salt/key` events
//! bring the operator's decisions) and Salt's master event bus (`salt/auth`, `salt/key`,
//! `salt/presence/*`). In Salt-crypto mode the road decides from its keep alone.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use raet::crypto::VerifyKey;
use raet::keep::{
    Acceptance, AutoMode, DirKeep, Keep, KeepError, LocalRecord, RemoteRecord, RoleRecord,
};
use raet::road::{Event, Presence, RemoteStatus, RoadConfig, Uid};
use raet::stack::StackError;
use salt_raet::config::{MasterConfig, Role};
use salt_raet::daemon::{
    answering, bind_road, daemon_timers, Daemon, DaemonError, RemoteRow, Shared, Side, Status,
};
use salt_raet::evbus::{BusEvent, EventBus};
use salt_raet::identity::{derive_public, Identity, IdentityError, LocalParams};
use salt_raet::pki::{self, KeyChange, KeyState, PkiWatcher};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use salt_raet_minion::join::Retry;
use salt_raet_minion::upstream::{Step, Upstreams};

use crate::acceptance::{Acceptor, Answer, AuthAct};
use crate::decider::{key_state, Decider, Done, Job, MAX_DECIDING};
use crate::upstream_pin::{self, UpstreamPin, Verdict};

/// Period of the master's full rescan of the pki directories, the safety net behind inotify
/// (which names the ids to read again, and asks for a full scan when the kernel dropped
/// events): every key file is read, 10,000 of them at 10,000 minions, so not often.
pub(crate) const PKI_RESCAN: Duration = Duration::from_secs(60);
/// The tag of salt-key's events on Salt's master event bus.
pub(crate) const KEY_TAG: &str = "salt/key";
/// The tag of the master's key decisions (Salt's `_auth`).
pub(crate) const AUTH_TAG: &str = "salt/auth";
/// The tag of the periodic list of present minions.
pub(crate) const PRESENCE_PRESENT_TAG: &str = "salt/presence/present";

/// The master's keep: identity and remotes in a [`DirKeep`]; role (key) records only in
/// memory (a mirror of the road's, applied on the stack's keep thread), so that the pki
/// directories stay the only place keys are decided (every join after a start is decided
/// again from them). The daemon changes the road's records through the road only
/// (`accept`/`reject`/`forget_role`).
struct DecisionKeep {
    inner: DirKeep,
    roles: BTreeMap<String, RoleRecord>,
    pki: pki::Pki,
}

impl Keep for DecisionKeep {
    fn load_local(&self) -> Result<Option<LocalRecord>, KeepError> {
        self.inner.load_local()
    }
    fn save_local(&mut self, local: &LocalRecord) -> Result<(), KeepError> {
        self.inner.save_local(local)
    }
    fn load_remotes(&self) -> Result<Vec<RemoteRecord>, KeepError> {
        self.inner.load_remotes()
    }
    fn save_remote(&mut self, remote: &RemoteRecord) -> Result<(), KeepError> {
        self.inner.save_remote(remote)
    }
    fn remove_remote(&mut self, name: &str) -> Result<(), KeepError> {
        self.inner.remove_remote(name)
    }
    /// The road's role reads: it confirms a record before the record rejects a join request.
    /// A remembered rejection holds only while the key is still in `minions_rejected` (the
    /// operator may have accepted it, and the watcher not told us yet); else there is no
    /// record and the join is decided again (pending, then the daemon's decision).
    fn load_role(&self, role: &str) -> Result<Option<RoleRecord>, KeepError> {
        let stale = |r: &RoleRecord| {
            r.acceptance == Acceptance::Rejected
                && !matches!(self.pki.lookup(role), Ok(Some(key)) if key.state == KeyState::Rejected)
        };
        Ok(self.roles.get(role).filter(|r| !stale(r)).cloned())
    }
    fn save_role(&mut self, role: &RoleRecord) -> Result<(), KeepError> {
        self.roles.insert(role.role.clone(), role.clone());
        Ok(())
    }
    fn remove_role(&mut self, role: &str) -> Result<(), KeepError> {
        self.roles.remove(role);
        Ok(())
    }
    fn load_roles(&self) -> Result<Vec<RoleRecord>, KeepError> {
        Ok(self.roles.values().cloned().collect())
    }
}

/// The master's key decisions from Salt's pki directories (native mode).
struct SaltKeys {
    /// The pki directories (read for the operator's decisions; the decision thread writes).
    pki: pki::Pki,
    /// The thread that decides joins ([`Job`]s) from the pki directories.
    decider: Decider,
    /// Its reports.
    decided: mpsc::UnboundedReceiver<Done>,
    /// Joins whose decision was asked for and not reported yet: id -> the offered verify
    /// key (hex). A join asking again meanwhile is not asked for twice.
    deciding: BTreeMap<String, String>,
    changes: mpsc::Receiver<KeyChange>,
    _watcher: PkiWatcher,
    /// The key state of each id as last applied to the road (the pki watcher and
    /// `salt/key` events may both report one change); also what `status` shows.
    applied: BTreeMap<String, Option<KeyState>>,
    /// Ids whose `salt/auth` accept was fired by the decision on their pending join; the
    /// join's completion fires it for all others (joins the road accepts from memory, and
    /// pending joins an operator accepted), as Salt fires one per successful `_auth`.
    accept_fired: BTreeSet<String>,
}

/// The master's side of the daemon.
pub(crate) struct MasterSide {
    /// `None` in Salt-crypto mode: Salt's `_auth` owns the pki directories and the road
    /// decides from the keep alone (`raet_auto_accept`, default `once`).
    keys: Option<Box<SaltKeys>>,
    /// Events read from Salt's bus (`salt/key`).
    bus_events: mpsc::Receiver<BusEvent>,
    /// `salt/presence/present` every tick of this interval (Salt's `loop_interval`), with
    /// `presence_events`.
    presence: Option<tokio::time::Interval>,
    /// On a syndic host (`syndic_master`): the master of masters this road joins for
    /// `salt-syndic`, as a minion joins its master.
    syndic: Option<Upstreams>,
    /// On a syndic host: the master of masters' key, pinned on first use.
    upstream_pin: Option<UpstreamPin>,
}

/// An input of the master's side.
pub(crate) enum Input {
    /// The pki watcher saw a key move.
    Key(KeyChange),
    /// An event of Salt's bus.
    Bus(BusEvent),
    /// Time to fire `salt/presence/present`.
    Present,
    /// A step of the join loop to the master of masters (syndic).
    Upstream(Step),
    /// The decision thread reports.
    Decided(Done),
}

/// The address the master's road binds: `interface`, `raet_port`.
fn road_address(config: &MasterConfig) -> SocketAddr {
    SocketAddr::new(config.interface, config.common.raet_port)
}

/// The master's identity from its keep, created as on the daemon's first start when the keep
/// is empty (the daemon's and `--finger`'s).
pub(crate) fn identity(
    config: &MasterConfig,
    keep: &mut DirKeep,
) -> Result<Identity, IdentityError> {
    let local = LocalParams {
        name: &config.id,
        ha: road_address(config),
        main: true,
        kind: 0,
    };
    Identity::load_or_create_locked(keep, local, &mut rand_core::OsRng)
}

/// Runs the master daemon until SIGTERM or SIGINT.
pub(crate) async fn run(config: MasterConfig) -> Result<(), DaemonError> {
    let own = config.id.clone();
    let ha = road_address(&config);
    let mut dir_keep = DirKeep::open(config.common.keep_dir())?;
    let identity = identity(&config, &mut dir_keep)?;
    let mut road_config = RoadConfig::new(own.clone(), ha);
    road_config.main = true;
    // A minion that rejoins after losing its session (or after our restart) comes with a
    // new uid for us: let the road update it; its keys are still decided as before.
    road_config.mutable = true;
    // Keys are decided per role, minions judged by id: a joiner naming another minion as its
    // role would have its keys recorded for that minion, which would then be rejected.
    road_config.role_is_name = true;
    // The minions' alives keep the presence: the master only answers them.
    road_config.timers = answering(daemon_timers(&config.common));
    road_config.limits.max_first_contacts = config.raet_first_contacts;
    road_config.limits.first_contact_interval = config.raet_first_contact_interval;
    road_config.limits.max_handshakes = config.raet_max_handshakes;
    road_config.profile = config.common.raet_profile;
    let mode = config.auto_mode();
    let salt_crypto = config.common.raet_salt_crypto;
    let (keep, keys): (Box<dyn Keep>, _) = if salt_crypto {
        // The keep pins each minion's RAET keys (`once`): nothing is read from or written to
        // the pki directories, which hold Salt's RSA keys in this mode.
        road_config.auto = mode;
        (Box::new(dir_keep), None)
    } else {
        road_config.auto = AutoMode::Never;
        let (keep, keys) = salt_keys(&config, dir_keep)?;
        (Box::new(keep) as Box<dyn Keep>, Some(Box::new(keys)))
    };
    let subscribe: &[&str] = if salt_crypto { &[] } else { &[KEY_TAG] };
    let (bus, bus_events) = EventBus::spawn(&config.common.sock_dir, subscribe);
    let presence = config.presence_events.then(|| {
        let mut ticker = tokio::time::interval_at(
            tokio::time::Instant::now() + config.loop_interval,
            config.loop_interval,
        );
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    });
    let road = bind_road(road_config, identity.into_keys(), keep).await?;
    info!(id = %own, addr = %road.local_addr(), %mode, salt_crypto, "master road up");
    // Salt's syndic: joined under this master's id (salt-syndic's must be the same); a
    // rejected syndic asks again on SIGHUP.
    let (syndic, upstream_pin) = match config.syndic_upstream() {
        Some(upstream) => {
            let dir = &config.common.pki_dir;
            let pin = UpstreamPin::load(dir).map_err(|source| pki::PkiError::Io {
                path: dir.join(upstream_pin::PIN_FILE),
                source,
            })?;
            info!(master_of_masters = ?upstream, pin = %pin.path().display(), "syndic: joining the master of masters");
            let upstreams = Upstreams::spawn(&road, vec![upstream], ha.is_ipv6(), Retry::default());
            (Some(upstreams), Some(pin))
        }
        None => (None, None),
    };
    let side = MasterSide {
        keys,
        bus_events,
        presence,
        syndic,
        upstream_pin,
    };
    let bus = Some((bus, config.presence_events));
    Daemon::start(own, road, &config.common, bus, side)
        .await?
        .run()
        .await
}

/// Native mode: the keep whose role records follow the [`Acceptor`]'s decisions from Salt's
/// pki directories, and the watcher of those directories.
fn salt_keys(
    config: &MasterConfig,
    dir_keep: DirKeep,
) -> Result<(DecisionKeep, SaltKeys), DaemonError> {
    let acceptor = Acceptor::new(config)?;
    let pki = acceptor.pki().clone();
    let initial = pki.scan()?;
    let keep = DecisionKeep {
        inner: dir_keep,
        roles: accepted_roles(&pki, &initial.ids()),
        pki: pki::Pki::existing(&config.common.pki_dir),
    };
    let applied = initial
        .ids()
        .into_iter()
        .map(|id| {
            let state = initial.state_of(&id).map(|(s, _)| s);
            (id, state)
        })
        .collect();
    let (watcher, changes) = PkiWatcher::spawn(pki.clone(), initial, PKI_RESCAN)?;
    let (decider, decided) = Decider::spawn(acceptor).map_err(DaemonError::Thread)?;
    let keys = SaltKeys {
        pki,
        decider,
        decided,
        deciding: BTreeMap::new(),
        changes,
        _watcher: watcher,
        applied,
        accept_fired: BTreeSet::new(),
    };
    Ok((keep, keys))
}

/// The role records of the accepted keys among `ids` (a minion's curve key is derived from
/// its Ed25519 key), so that a restarted master restores the remotes its keep holds and
/// answers their packets at once: a minion that outlived the master is told to allow again
/// instead of going unanswered until its heartbeat gives up.
fn accepted_roles(pki: &pki::Pki, ids: &[String]) -> BTreeMap<String, RoleRecord> {
    let mut roles = BTreeMap::new();
    for id in ids {
        let Ok(Some(key)) = pki.lookup(id) else {
            continue;
        };
        if key.state != KeyState::Accepted {
            continue;
        }
        let Ok(verify) = key.verify_key() else {
            continue;
        };
        let public = derive_public(&verify);
        let record = RoleRecord {
            role: id.clone(),
            acceptance: Acceptance::Accepted,
            verhex: verify.to_hex(),
            pubhex: public.to_hex(),
        };
        roles.insert(id.clone(), record);
    }
    roles
}

/// Fires Salt's `salt/auth` event.
fn fire_auth(d: &Shared, act: AuthAct, name: &str, pem: &str) {
    let data = json!({"result": act.result(), "act": act.as_str(), "id": name, "pub": pem});
    d.fire(AUTH_TAG, data);
}

impl Side for MasterSide {
    type Input = Input;
    const ROLE: Role = Role::Master;

    async fn next_input(&mut self) -> Input {
        let (changes, decided) = match self.keys.as_mut() {
            Some(keys) => (Some(&mut keys.changes), Some(&mut keys.decided)),
            None => (None, None),
        };
        let changes = async {
            match changes {
                Some(changes) => changes.recv().await,
                None => std::future::pending().await,
            }
        };
        let decided = async {
            match decided {
                Some(decided) => decided.recv().await,
                None => std::future::pending().await,
            }
        };
        let tick = async {
            match self.presence.as_mut() {
                Some(ticker) => ticker.tick().await,
                None => std::future::pending().await,
            }
        };
        let upstream = async {
            match self.syndic.as_mut() {
                Some(syndic) => syndic.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(done) = decided => Input::Decided(done),
            Some(change) = changes => Input::Key(change),
            step = upstream => Input::Upstream(step),
            Some(event) = self.bus_events.recv() => Input::Bus(event),
            _ = tick => Input::Present,
            // Every source ended: nothing more will come.
            else => std::future::pending().await,
        }
    }

    async fn on_input(&mut self, d: &mut Shared, input: Input) {
        match input {
            Input::Key(change) => self.on_key_change(d, change).await,
            Input::Decided(done) => self.on_decided(d, done).await,
            Input::Bus(event) => self.on_key_event(d, event).await,
            Input::Upstream(step) => {
                if let Some(syndic) = self.syndic.as_mut() {
                    syndic.on_step(d, step).await;
                }
            }
            Input::Present => {
                let present: Vec<String> = d
                    .core
                    .allowed_peers()
                    .iter()
                    .filter(|p| !self.is_upstream(p))
                    .cloned()
                    .collect();
                d.fire(PRESENCE_PRESENT_TAG, json!({ "present": present }));
            }
        }
    }

    async fn on_event(&mut self, d: &mut Shared, event: &Event) {
        if self.on_upstream_event(d, event).await {
            return;
        }
        match event {
            Event::Pending {
                name,
                verhex,
                pubhex,
                ..
            } => self.on_pending(name, verhex, pubhex),
            Event::Joined { name, verhex, .. } => self.on_joined(d, name, verhex),
            Event::FirstContactDropped { name, .. } => self.on_first_contact_dropped(name),
            Event::Rejected { name, .. } | Event::Removed { name, .. } => {
                self.forget_if_deleted(d, name);
            }
            Event::KeysRejected {
                uid,
                name,
                from,
                verhex,
                pubhex,
                ..
            } => {
                warn!(remote = %name, uid, %from,
                    "a join with other keys than the accepted ones was rejected; the session stays");
                self.deny_other_key(name, verhex, pubhex);
            }
            _ => {}
        }
    }

    /// A lost or dropped minion is forgotten: it rejoins and is decided again (native mode;
    /// in Salt-crypto mode the keep's pinned keys stay).
    async fn on_session_dropped(&mut self, d: &mut Shared, name: &str, uid: Option<Uid>) {
        if let Some(syndic) = self.syndic.as_ref().filter(|s| s.is_upstream(name)) {
            // Its join loop forgets the old remote and joins again; the key accepted first
            // stays pinned while the daemon runs.
            syndic.on_session_dropped(name);
            return;
        }
        if self.keys.is_some() {
            let _ = d.road.forget_role(name).await;
        }
        if let Some(uid) = uid {
            let _ = d.road.remove(uid).await;
        }
    }

    /// A syndic rejected by its master of masters reads its pin again (the operator may have
    /// corrected or removed it) and asks again.
    fn on_hangup(&mut self) {
        if let Some(pin) = self.upstream_pin.as_mut() {
            if let Err(e) = pin.reload() {
                error!(pin = %pin.path().display(), error = %e, "SIGHUP: the master of masters' pin cannot be read; the one read before stays");
            }
        }
        if !self.syndic.as_mut().is_some_and(Upstreams::rejoin_rejected) {
            info!("SIGHUP: nothing to do");
        }
    }

    /// Native mode: a row per key in the pki directories, with the key states as last applied
    /// (the pki watcher's scans, salt/key events and our own decisions), not a scan of every
    /// key file per request.
    fn status(
        &self,
        d: &Shared,
        remotes: &[RemoteStatus],
        rows: &mut BTreeMap<String, RemoteRow>,
        status: &mut Status,
    ) {
        if let Some(syndic) = &self.syndic {
            syndic.status(d, remotes, status);
        }
        let Some(keys) = &self.keys else {
            return;
        };
        for (id, _) in keys.applied.iter().filter(|(_, state)| state.is_some()) {
            RemoteRow::of(rows, id);
        }
        for (id, row) in rows.iter_mut() {
            let state = keys.applied.get(id).copied().flatten();
            row.acceptance = state.map(|s| s.to_string());
        }
    }
}

impl MasterSide {
    /// Whether `name` is the master of masters this syndic joined.
    fn is_upstream(&self, name: &str) -> bool {
        self.syndic.as_ref().is_some_and(|s| s.is_upstream(name))
    }

    /// On a syndic, the road's events about its master of masters (told by its address, as
    /// its name is known only once joined): its key, pended by the road (keys of joiners
    /// are decided from the pki directories), is accepted when it is the one pinned in the
    /// pki directory, or the first one, then pinned ([`UpstreamPin`]); its completed join
    /// fires no `salt/auth` (it is no minion of ours). True when handled.
    async fn on_upstream_event(&mut self, d: &mut Shared, event: &Event) -> bool {
        let (Some(syndic), Some(pin)) = (self.syndic.as_mut(), self.upstream_pin.as_mut()) else {
            return false;
        };
        let (uid, name) = match event {
            Event::Pending { uid, name, .. } | Event::Joined { uid, name, .. } => (*uid, name),
            _ => return false,
        };
        syndic.catch_up(d).await;
        let Some(address) = d
            .road
            .remote(uid)
            .await
            .map(|r| r.ha)
            .filter(|ha| syndic.is_upstream_address(*ha))
        else {
            return false;
        };
        let Event::Pending {
            verhex,
            pubhex,
            role,
            ..
        } = event
        else {
            return true;
        };
        let why = match pin.check(verhex, pubhex) {
            Ok(Verdict::Accept { first_use }) => {
                info!(master_of_masters = %name, key = %verhex, first_use, "syndic: the master of masters' key accepted");
                if let Err(e) = d.road.accept(name).await {
                    warn!(master_of_masters = %name, error = %e, "accepting the master of masters' key failed");
                }
                return true;
            }
            Ok(Verdict::Refuse(why)) => format!("{why}; remove that file if the top's keys were changed on purpose, then send SIGHUP"),
            Err(e) => format!("it cannot be pinned: {e}"),
        };
        error!(master_of_masters = %name, %address, "syndic: refusing the master of masters' key: {why}");
        syndic.refused(address);
        if let Err(e) = d.road.reject(name).await {
            warn!(master_of_masters = %name, error = %e, "refusing the master of masters' key failed");
        }
        if let Err(e) = d.road.forget_role(role).await {
            warn!(master_of_masters = %name, error = %e, "forgetting the refused key failed");
        }
        true
    }

    /// A minion's keys (as offered in its join) await a decision: Salt's rules decide, from
    /// the pki directories, on the decision thread. A join already being decided on the same
    /// keys is not asked for again; beyond [`MAX_DECIDING`] joins in flight, a join stays
    /// pending on the road (its joiner, answered `pend`, asks again).
    fn on_pending(&mut self, name: &str, verhex: &str, pubhex: &str) {
        let Some(keys) = self.keys.as_mut() else {
            return;
        };
        if keys.deciding.get(name).is_some_and(|v| v == verhex) {
            debug!(remote = %name, "join already being decided");
            return;
        }
        if keys.deciding.len() >= MAX_DECIDING {
            debug!(remote = %name, "too many joins being decided: left pending");
            return;
        }
        let job = Job::Join {
            name: name.to_owned(),
            verhex: verhex.to_owned(),
            pubhex: pubhex.to_owned(),
        };
        if keys.decider.ask(job) {
            keys.deciding.insert(name.to_owned(), verhex.to_owned());
        } else {
            warn!(remote = %name, "the key decision thread stopped: join left pending");
        }
    }

    /// The decision thread reports: a decision is fired on Salt's bus (as Salt's `_auth`)
    /// and applied to the road, to the keys it was made on only.
    async fn on_decided(&mut self, d: &mut Shared, done: Done) {
        let Some(keys) = self.keys.as_mut() else {
            return;
        };
        let (name, verhex, pubhex, answer) = match done {
            Done::Decided {
                name,
                verhex,
                pubhex,
                answer,
                auth,
                state,
            } => {
                keys.deciding.remove(&name);
                if let Some(state) = state {
                    keys.applied.insert(name.clone(), state);
                }
                if let Some((act, pem)) = auth {
                    if act == AuthAct::Accept {
                        keys.accept_fired.insert(name.clone());
                    }
                    fire_auth(d, act, &name, &pem);
                }
                (name, verhex, pubhex, answer)
            }
            Done::Denied { name, pem } => {
                fire_auth(d, AuthAct::Denied, &name, &pem);
                return;
            }
            Done::Removed(name) => {
                keys.applied.remove(&name);
                d.core.forget_peer(&name);
                return;
            }
            Done::Unsettled(name) => {
                keys.deciding.remove(&name);
                return;
            }
        };
        let accept = match answer {
            Answer::Accept => true,
            Answer::Reject => false,
            Answer::Pend => return,
        };
        match d
            .road
            .decide_offered(&name, (&verhex, &pubhex), accept)
            .await
        {
            Ok(()) => {}
            Err(StackError::Road(e)) => {
                debug!(remote = %name, error = %e, "key decision not applied");
            }
            Err(e) => warn!(remote = %name, error = %e, "key decision not applied"),
        }
    }

    /// A join offered another key for an accepted minion (native mode): Salt's `_auth`
    /// denies it (`minions_denied/<id>`, `salt/auth` act `denied`) whether or not the minion's
    /// session is open. Nothing else is written for a join the road already rejected.
    fn deny_other_key(&mut self, name: &str, verhex: &str, pubhex: &str) {
        let Some(keys) = self.keys.as_mut() else {
            return;
        };
        let job = Job::OtherKey {
            name: name.to_owned(),
            verhex: verhex.to_owned(),
            pubhex: pubhex.to_owned(),
        };
        if !keys.decider.ask(job) {
            warn!(remote = %name, "the key decision thread stopped: other key not recorded");
        }
    }

    /// A minion's join completed: fires `salt/auth` accept unless its decision did.
    fn on_joined(&mut self, d: &mut Shared, name: &str, verhex: &str) {
        let Some(keys) = self.keys.as_mut() else {
            return;
        };
        keys.decider.ask(Job::Joined(name.to_owned()));
        if keys.accept_fired.remove(name) {
            return;
        }
        match VerifyKey::from_hex(verhex) {
            Ok(key) => fire_auth(d, AuthAct::Accept, name, &pki::pem_from_verify_key(&key)),
            Err(_) => warn!(remote = %name, "joined without keys on record"),
        }
    }

    /// The road dropped the first contact `name` before its join completed: the pending key
    /// its decision wrote goes too (on the decision thread, after any decision on it), if
    /// `minions_pre` still holds that key (an operator's decision or a newer key stays).
    fn on_first_contact_dropped(&mut self, name: &str) {
        if let Some(keys) = self.keys.as_mut() {
            keys.decider.ask(Job::Dropped(name.to_owned()));
        }
    }

    /// Forgets the peer row of `name` once the pki directories have no key for it (native
    /// master): a deleted minion vanishes from `status`.
    fn forget_if_deleted(&self, d: &mut Shared, name: &str) {
        let Some(keys) = &self.keys else {
            return;
        };
        if matches!(key_state(&keys.pki, name), Ok(None)) && d.core.forget_peer(name) {
            debug!(remote = %name, "no key left: forgotten");
        }
    }

    /// A `salt/key` event of salt-key: says *when* to look; the pki directories say what the
    /// decision is (an accept whose file is not in `minions/` accepts nothing).
    async fn on_key_event(&mut self, d: &mut Shared, event: BusEvent) {
        let Some(keys) = &self.keys else {
            return;
        };
        let field = |key: &str| event.data.get(key).and_then(Value::as_str);
        let (Some(act), Some(id)) = (field("act"), field("id")) else {
            debug!(data = %event.data, "salt/key event without act or id");
            return;
        };
        if !matches!(act, "accept" | "reject" | "delete") {
            return;
        }
        let state = match key_state(&keys.pki, id) {
            Ok(state) => state,
            Err(e) => {
                warn!(id, error = %e, "salt/key event: cannot read the key");
                return;
            }
        };
        info!(id, act, state = ?state, "salt/key event");
        let change = KeyChange {
            id: id.to_owned(),
            old: keys.applied.get(id).copied().flatten(),
            new: state,
            key_changed: false,
        };
        self.on_key_change(d, change).await;
    }

    /// An operator decision made with salt-key (seen in the pki directories or announced by a
    /// `salt/key` event), applied once.
    async fn on_key_change(&mut self, d: &mut Shared, change: KeyChange) {
        let Some(keys) = self.keys.as_mut() else {
            return;
        };
        if !change.key_changed && keys.applied.get(&change.id) == Some(&change.new) {
            debug!(id = %change.id, new = ?change.new, "key change already applied");
            return;
        }
        keys.applied.insert(change.id.clone(), change.new);
        info!(id = %change.id, old = ?change.old, new = ?change.new, "key change");
        let keep_decision = matches!(change.new, Some(KeyState::Rejected));
        if !keep_decision {
            let _ = d.road.forget_role(&change.id).await;
        }
        let known = d
            .road
            .remotes()
            .await
            .into_iter()
            .any(|r| r.name == change.id);
        if !known {
            // Lost before it was deleted: nothing for the road to do.
            self.forget_if_deleted(d, &change.id);
            return;
        }
        let result = match change.new {
            Some(KeyState::Accepted) => d.road.accept(&change.id).await,
            Some(KeyState::Pending) => Ok(()),
            Some(KeyState::Rejected) | Some(KeyState::Denied) | None => {
                if d.core.peers().get(&change.id).is_some_and(|p| p.allowed) {
                    d.core.tell_presence(&change.id, Presence::Lost);
                }
                let result = d.road.reject(&change.id).await;
                if !keep_decision {
                    let _ = d.road.forget_role(&change.id).await;
                }
                let uid = d.core.end_session(&change.id);
                self.on_session_dropped(d, &change.id, uid).await;
                self.forget_if_deleted(d, &change.id);
                result
            }
        };
        if let Err(e) = result {
            warn!(id = %change.id, error = %e, "key change not applied");
        }
    }
}
