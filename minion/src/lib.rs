//! The minion's road and its join loop as `salt-raet-minion` runs them, shared by the daemon
//! and by harnesses that play many minions in one process (`raet swarm`).

use std::net::SocketAddr;

use raet::keep::{AutoMode, Keep};
use raet::road::{Profile, RoadConfig, Timers};
use raet::stack::RoadStack;
use salt_raet::daemon::{bind_road, DaemonError};
use salt_raet::identity::{Identity, LocalParams};

pub mod join;
pub mod upstream;

/// Binds minion `own`'s road on `ha` as the daemon does: its identity from `keep` (created
/// there on first use), road timers `timers` ([`salt_raet::daemon::daemon_timers`]), protocol
/// profile `profile` (`raet_profile`), and the master's key accepted the first time
/// (`pinned`, `master_finger`: never, the daemon decides each key).
pub async fn bind_minion_road(
    own: &str,
    ha: SocketAddr,
    mut keep: Box<dyn Keep>,
    timers: Timers,
    profile: Profile,
    pinned: bool,
) -> Result<RoadStack, DaemonError> {
    let identity = Identity::load_or_create(
        keep.as_mut(),
        LocalParams {
            name: own,
            ha,
            main: false,
            kind: 0,
        },
        &mut rand_core::OsRng,
    )?;
    let mut road_config = RoadConfig::new(own.to_owned(), ha);
    road_config.auto = match pinned {
        true => AutoMode::Never,
        false => AutoMode::Once,
    };
    road_config.timers = timers;
    road_config.profile = profile;
    bind_road(road_config, identity.into_keys(), keep).await
}
