//! A daemon's upstream masters, each with its join loop ([`crate::join`]): the minion's
//! masters (Salt's `master` list) and a syndic's master of masters (`syndic_master`, joined
//! by `salt-raet-master`). Their states for `status`, the order upstream messages prefer,
//! the sessions they open, and the rejoins a lost session or SIGHUP asks for.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Instant;

use raet::road::{RejectedBy, RemoteStatus};
use raet::stack::RoadStack;
use salt_raet::daemon::{JoinSummary, MasterRow, Shared, Status};
use tokio::sync::mpsc;
use tracing::{error, info};

use crate::join::{JoinLoop, JoinOutcome, Retry};

/// One upstream master and its join loop.
struct Upstream {
    /// The configured entry (host, road port).
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

impl Upstream {
    /// Its master pended our join: shown pending while the join goes on.
    fn pended(&mut self) {
        if self.join == JoinState::Joining {
            self.join = JoinState::Pending;
        }
    }
}

/// Where one join loop is (declared from the most to the least connected: the overall
/// state is the first one any master is in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum JoinState {
    /// Joined.
    Joined,
    /// The master answers and pends our key (its operator has not decided yet).
    Pending,
    /// Joining (or waiting to retry a failed join): the master has not answered yet.
    Joining,
    /// Rejected; asks again every [`crate::join::REJECTED_RETRY`] (`rejected_retry: True`).
    RejectedRetrying,
    /// Rejected; waits for SIGHUP or a restart.
    Rejected,
}

impl JoinState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Joining => "joining",
            Self::Pending => "pending",
            Self::Joined => "joined",
            Self::Rejected => "rejected",
            Self::RejectedRetrying => "rejected_retrying",
        }
    }
}

/// A daemon's upstream masters, in configuration order, and the steps of their join loops.
pub struct Upstreams {
    masters: Vec<Upstream>,
    joins: mpsc::UnboundedReceiver<(usize, JoinOutcome)>,
    /// Addresses whose key the daemon refused (`master_finger`) and whose rejection the join
    /// loop has not reported yet (the road's events and the join loops' reports arrive on
    /// separate channels, so the refusal may come before the address is resolved).
    refusals: BTreeSet<SocketAddr>,
    /// Addresses that pended our join before their master's address was resolved here (the
    /// same race): the master is shown pending once it is.
    pends: BTreeSet<SocketAddr>,
}

/// A step of the join loop of one upstream master (its index and the outcome).
pub type Step = (usize, JoinOutcome);

impl Upstreams {
    /// Starts a join loop on `road` for each of `masters` (host, road port); `ipv6`: the
    /// road is an IPv6 one; `retry`: how the join loops wait between attempts.
    pub fn spawn(road: &RoadStack, masters: Vec<(String, u16)>, ipv6: bool, retry: Retry) -> Self {
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
                    ipv6,
                    retry,
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
        Self {
            masters,
            joins,
            refusals: BTreeSet::new(),
            pends: BTreeSet::new(),
        }
    }

    /// The next step of a join loop (never, once every loop ended).
    pub async fn next(&mut self) -> Step {
        match self.joins.recv().await {
            Some(step) => step,
            None => std::future::pending().await,
        }
    }

    /// Applies the steps the join loops already reported ([`Self::on_step`]): a road event
    /// about a master may be handled before the step that resolved its address.
    pub async fn catch_up(&mut self, d: &mut Shared) {
        while let Ok(step) = self.joins.try_recv() {
            self.on_step(d, step).await;
        }
    }

    /// Whether `address` is that of an upstream master (resolved).
    pub fn is_upstream_address(&self, address: SocketAddr) -> bool {
        self.masters.iter().any(|m| m.address == Some(address))
    }

    /// Whether `estate` is an upstream master's (joined).
    pub fn is_upstream(&self, estate: &str) -> bool {
        self.masters
            .iter()
            .any(|m| m.estate.as_deref() == Some(estate))
    }

    /// The master at `address` pended our join (its operator has not decided on our key):
    /// a master still being joined is shown `pending` while the join goes on.
    pub fn pended(&mut self, address: SocketAddr) {
        match self.masters.iter_mut().find(|m| m.address == Some(address)) {
            Some(master) => master.pended(),
            None => {
                self.pends.insert(address);
            }
        }
    }

    /// The daemon refused the key of the master at `address` (`master_finger`): the
    /// rejection its join loop reports next says so.
    pub fn refused(&mut self, address: SocketAddr) {
        self.refusals.insert(address);
    }

    /// A step of the join loop of master `index`: its state, and once joined, the session
    /// opened and the upstream order (the masters in configuration order) set in the core.
    pub async fn on_step(&mut self, d: &mut Shared, (index, outcome): Step) {
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
                if self.pends.remove(&address) {
                    master.pended();
                }
            }
            JoinOutcome::Attempt => {
                master.attempts += 1;
                if !matches!(
                    master.join,
                    JoinState::RejectedRetrying | JoinState::Pending
                ) {
                    master.join = JoinState::Joining;
                }
            }
            JoinOutcome::Rejected { retrying, by } => {
                let address = master.address;
                let by_pin = address.is_some_and(|a| self.refusals.remove(&a));
                let what = match by {
                    RejectedBy::Them => "the master rejected this minion's key",
                    RejectedBy::Us if by_pin => "this daemon refused the master's key: not the pinned one",
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
            JoinOutcome::Pended => master.join = JoinState::Pending,
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

    /// A lost session: the join loop of that master (if `name` is one) joins it again.
    pub fn on_session_dropped(&self, name: &str) {
        let lost = self
            .masters
            .iter()
            .filter(|m| m.estate.as_deref() == Some(name));
        for master in lost {
            let _ = master.rejoin.send(());
        }
    }

    /// SIGHUP: the masters that rejected this daemon are asked again (its key may have been
    /// accepted); false when there were none.
    pub fn rejoin_rejected(&mut self) -> bool {
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
        asked
    }

    /// The join state as a whole (the best state over the masters) and each master's row.
    pub fn status(&self, d: &Shared, remotes: &[RemoteStatus], status: &mut Status) {
        let state = self.masters.iter().map(|m| m.join).min();
        status.join = Some(JoinSummary {
            state: state.map(|s| s.as_str().to_owned()),
            attempts: self.masters.iter().map(|m| m.attempts).sum(),
        });
        let rows = self.masters.iter().map(|m| master_row(d, m, remotes));
        status.masters = Some(rows.collect());
    }
}

/// The `status` entry of one upstream master.
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
