//! The minion's side of the shared daemon loop: its masters (Salt's `master` list), each with
//! its join loop ([`salt_raet_minion::join`]), their states for `status`, the failover order of
//! upstream messages, SIGHUP (a rejected minion asks again), and `master_finger`
//! ([`crate::pin`]).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Instant;

use raet::keep::DirKeep;
use raet::road::{Event, RejectedBy, RemoteStatus, Uid};
use salt_raet::config::{MinionConfig, Role};
use salt_raet::daemon::{
    daemon_timers, Daemon, DaemonError, JoinSummary, MasterRow, RemoteRow, Shared, Side, Status,
};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::pin::MasterPin;
use salt_raet_minion::bind_minion_road;
use salt_raet_minion::join::{JoinLoop, JoinOutcome};

/// One of the minion's masters and its join loop.
struct Upstream {
    /// The `master` entry (host, road port).
    host: String,
    port: u16,
    /// Its address once resolved.
    address: Option<SocketAddr>,
    /// Its road estate name once joined.
    estate: Option<String>,
    /// Asks its join loop to join again.
    rejoin: mpsc::UnboundedSender<()>,
    /// Where its join loop is (shown by `status`).
    join: JoinState,
    /// Join attempts so far.
    attempts: u64,
}

/// Where one of the minion's join loops is (declared from the most to the least connected:
/// the minion's overall state is the first one any master is in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum JoinState {
    /// Joined.
    Joined,
    /// Joining (or waiting to retry a failed join).
    Joining,
    /// Rejected; asks again every [`salt_raet_minion::join::REJECTED_RETRY`] (`rejected_retry: True`).
    RejectedRetrying,
    /// Rejected; waits for SIGHUP or a restart.
    Rejected,
}

impl JoinState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Joining => "joining",
            Self::Joined => "joined",
            Self::Rejected => "rejected",
            Self::RejectedRetrying => "rejected_retrying",
        }
    }
}

/// The minion's side of the daemon.
pub(crate) struct MinionSide {
    /// One per configured master, in configuration order.
    masters: Vec<Upstream>,
    /// The steps of the join loops, with the index of their master.
    joins: mpsc::UnboundedReceiver<(usize, JoinOutcome)>,
    /// `master_finger` (RAET-native mode): the road pends unknown master keys for it.
    pin: Option<MasterPin>,
    /// Addresses whose key was refused as not `master_finger`'s and whose rejection the
    /// join loop has not reported yet (the road's events and the join loops' reports arrive
    /// on separate channels, so the refusal may come before the address is resolved).
    pin_refusals: BTreeSet<SocketAddr>,
}

/// Runs the minion daemon until SIGTERM or SIGINT.
pub(crate) async fn run(config: MinionConfig) -> Result<(), DaemonError> {
    let own = config.id.clone();
    let ha = config.road_ha();
    let mut keep = DirKeep::open(config.common.keep_dir())?;
    let pin = config.road_master_finger().map(MasterPin::new);
    if let Some(pin) = &pin {
        for role in pin.forget_others(&mut keep)? {
            warn!(%role, "forgetting a master key accepted before: not master_finger's");
        }
    }
    // Held while the identity is loaded or created: a `--finger` may be creating it now.
    let lock = keep.lock()?;
    let road = bind_minion_road(
        &own,
        ha,
        Box::new(keep),
        daemon_timers(&config.common),
        config.common.raet_profile,
        pin.is_some(),
    )
    .await?;
    drop(lock);
    let masters = config.masters();
    info!(id = %own, addr = %road.local_addr(), masters = ?masters, salt_crypto = config.common.raet_salt_crypto, "minion road up");
    let (joins_tx, joins) = mpsc::unbounded_channel();
    let masters = masters
        .into_iter()
        .enumerate()
        .map(|(index, (host, port))| {
            let (rejoin, rejoin_rx) = mpsc::unbounded_channel();
            let join = JoinLoop {
                road: road.clone(),
                index,
                host: host.clone(),
                port,
                ipv6: ha.is_ipv6(),
                rejected_retry: config.rejected_retry,
                outcomes: joins_tx.clone(),
            };
            tokio::spawn(join.run(rejoin_rx));
            Upstream {
                host,
                port,
                address: None,
                estate: None,
                rejoin,
                join: JoinState::Joining,
                attempts: 0,
            }
        })
        .collect();
    let side = MinionSide {
        masters,
        joins,
        pin,
        pin_refusals: BTreeSet::new(),
    };
    Daemon::start(own, road, &config.common, None, side)
        .await?
        .run()
        .await
}

impl Side for MinionSide {
    type Input = (usize, JoinOutcome);
    const ROLE: Role = Role::Minion;

    async fn next_input(&mut self) -> Self::Input {
        match self.joins.recv().await {
            Some(input) => input,
            // Every join loop ended: nothing more will come.
            None => std::future::pending().await,
        }
    }

    /// A step of the join loop of master `index`.
    async fn on_input(&mut self, d: &mut Shared, (index, outcome): Self::Input) {
        let joined = match outcome {
            JoinOutcome::Joined(uid) => d.road.remote(uid).await.map(|r| (uid, r.name, r.ha)),
            _ => None,
        };
        let Some(master) = self.masters.get_mut(index) else {
            return;
        };
        match outcome {
            JoinOutcome::Resolved(address) => {
                info!(master = %master.host, %address, "master resolved");
                master.address = Some(address);
            }
            JoinOutcome::Attempt => {
                master.attempts += 1;
                if master.join != JoinState::RejectedRetrying {
                    master.join = JoinState::Joining;
                }
            }
            JoinOutcome::Rejected { retrying, by } => {
                let address = master.address;
                let by_pin = address.is_some_and(|a| self.pin_refusals.remove(&a));
                let what = match by {
                    RejectedBy::Them => "the master rejected this minion's key",
                    RejectedBy::Us if by_pin => "this minion refused the master's key: not master_finger's",
                    RejectedBy::Us => "this minion refused the master's key: not the one it accepted first (remove the master's remote from the minion's keep to trust a new key)",
                };
                if retrying {
                    master.join = JoinState::RejectedRetrying;
                    error!(master = %master.host, ?address, "{what}; asking again later (rejected_retry)");
                } else {
                    master.join = JoinState::Rejected;
                    error!(master = %master.host, ?address, "{what}; not asking again until SIGHUP or a restart");
                }
            }
            JoinOutcome::Joined(_) => master.join = JoinState::Joined,
        }
        if let Some((uid, name, ha)) = joined {
            master.estate = Some(name.clone());
            // Upstream messages prefer the masters in configuration order.
            let order = self
                .masters
                .iter()
                .filter_map(|m| m.estate.clone())
                .collect();
            d.core.table.set_upstreams(order);
            d.core.open_session(&name, uid, Some(ha), Instant::now());
        }
    }

    /// With `master_finger`: a master's keys the keep has not accepted, accepted when they are
    /// the pinned ones, else refused (the refusal is not kept: each join is checked again).
    async fn on_event(&mut self, d: &mut Shared, event: &Event) {
        let (
            Some(pin),
            Event::Pending {
                uid,
                name,
                role,
                verhex,
                pubhex,
            },
        ) = (&self.pin, event)
        else {
            return;
        };
        let address = d.road.remote(*uid).await.map(|r| r.ha);
        match pin.check(verhex, pubhex) {
            Ok(()) => {
                info!(master = %name, ?address, "the master's key is master_finger's: accepted");
                if let Err(e) = d.road.accept(name).await {
                    warn!(master = %name, error = %e, "accepting the master's key failed");
                }
            }
            Err(why) => {
                error!(master = %name, ?address, "refusing the master's key: {why}; check master_finger against `salt-raet-master --finger` on the master, and that this minion is not subject to a man-in-the-middle attack");
                if let Some(address) = address {
                    self.pin_refusals.insert(address);
                }
                if let Err(e) = d.road.reject(name).await {
                    warn!(master = %name, error = %e, "refusing the master's key failed");
                }
                if let Err(e) = d.road.forget_role(role).await {
                    warn!(master = %name, error = %e, "forgetting the refused key failed");
                }
            }
        }
    }

    /// A lost master: its join loop joins it again.
    async fn on_session_dropped(&mut self, _d: &mut Shared, name: &str, _uid: Option<Uid>) {
        let lost = self
            .masters
            .iter()
            .filter(|m| m.estate.as_deref() == Some(name));
        for master in lost {
            let _ = master.rejoin.send(());
        }
    }

    /// A rejected minion asks the masters that rejected it again (its key may have been
    /// accepted).
    fn on_hangup(&mut self) {
        let mut asked = false;
        for master in self
            .masters
            .iter_mut()
            .filter(|m| m.join == JoinState::Rejected)
        {
            info!(master = %master.host, "SIGHUP: joining the master again");
            master.join = JoinState::Joining;
            let _ = master.rejoin.send(());
            asked = true;
        }
        if !asked {
            info!("SIGHUP: nothing to do");
        }
    }

    /// The minion as a whole (its best state over its masters) and each master.
    fn status(
        &self,
        d: &Shared,
        remotes: &[RemoteStatus],
        _rows: &mut std::collections::BTreeMap<String, RemoteRow>,
        status: &mut Status,
    ) {
        let state = self.masters.iter().map(|m| m.join).min();
        status.join = Some(JoinSummary {
            state: state.map(|s| s.as_str().to_owned()),
            attempts: self.masters.iter().map(|m| m.attempts).sum(),
        });
        let rows = self.masters.iter().map(|m| master_row(d, m, remotes));
        status.masters = Some(rows.collect());
    }
}

/// The `status` entry of one of the minion's masters.
fn master_row(d: &Shared, master: &Upstream, remotes: &[RemoteStatus]) -> MasterRow {
    let peer = master.estate.as_ref().and_then(|e| d.core.peers().get(e));
    let joined = remotes
        .iter()
        .any(|r| Some(r.ha) == master.address && r.joined == Some(true));
    let entry = match master.host.contains(':') {
        true => format!("[{}]:{}", master.host, master.port),
        false => format!("{}:{}", master.host, master.port),
    };
    MasterRow {
        master: entry,
        address: master.address.map(|a| a.to_string()),
        id: master.estate.clone(),
        state: master.join.as_str().to_owned(),
        attempts: master.attempts,
        joined,
        allowed: peer.is_some_and(|p| p.allowed),
        presence: peer.map_or("unknown", |p| p.presence).to_owned(),
    }
}
