//! The minion's side of the shared daemon loop: its masters (Salt's `master` list), each with
//! its join loop ([`salt_raet_minion::join`]), their states for `status`, the failover order of
//! upstream messages, SIGHUP (a rejected minion asks again), and `master_finger`
//! ([`crate::pin`]).

use raet::keep::DirKeep;
use raet::road::{Event, RemoteStatus, Uid};
use salt_raet::config::{MinionConfig, Role};
use salt_raet::daemon::{daemon_timers, Daemon, DaemonError, RemoteRow, Shared, Side, Status};
use tracing::{error, info, warn};

use crate::pin::MasterPin;
use salt_raet_minion::bind_minion_road;
use salt_raet_minion::join::Retry;
use salt_raet_minion::upstream::{Step, Upstreams};

/// The minion's side of the daemon.
pub(crate) struct MinionSide {
    /// Its masters, in configuration order, each with its join loop.
    masters: Upstreams,
    /// `master_finger` (RAET-native mode): the road pends unknown master keys for it.
    pin: Option<MasterPin>,
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
    let masters = Upstreams::spawn(&road, masters, ha.is_ipv6(), Retry::of(&config));
    let side = MinionSide { masters, pin };
    Daemon::start(own, road, &config.common, None, side)
        .await?
        .run()
        .await
}

impl Side for MinionSide {
    type Input = Step;
    const ROLE: Role = Role::Minion;

    async fn next_input(&mut self) -> Step {
        self.masters.next().await
    }

    /// A step of the join loop of one of the masters.
    async fn on_input(&mut self, d: &mut Shared, step: Step) {
        self.masters.on_step(d, step).await;
    }

    /// A master that pends our join is shown `pending` at once (not only when the pended join
    /// times out). With `master_finger`: a master's keys the keep has not accepted, accepted
    /// when they are the pinned ones, else refused (the refusal is not kept: each join is
    /// checked again).
    async fn on_event(&mut self, d: &mut Shared, event: &Event) {
        if let Event::JoinPended { uid, .. } = event {
            if let Some(remote) = d.road.remote(*uid).await {
                self.masters.pended(remote.ha);
            }
            return;
        }
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
                    self.masters.refused(address);
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
        self.masters.on_session_dropped(name);
    }

    /// A rejected minion asks the masters that rejected it again (its key may have been
    /// accepted).
    fn on_hangup(&mut self) {
        if !self.masters.rejoin_rejected() {
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
        self.masters.status(d, remotes, status);
    }
}
