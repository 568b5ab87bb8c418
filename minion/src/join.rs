//! One join loop per master of the minion: resolve the master, join it (any old session
//! forgotten), and after each attempt do what [`JoinPolicy`] says: retry with capped, jittered
//! backoff, ask again soon while the master's operator decides, or wait for a rejoin request
//! (a lost session, SIGHUP) once joined or rejected. Each step is told to the daemon.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use raet::road::{JoinFailure, RejectedBy, Uid};
use raet::stack::{RoadStack, StackError};
use salt_raet::config::MinionConfig;
use salt_raet::daemon::{jitter, random_up_to};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// First delay before a minion retries a failed join.
pub const JOIN_BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Cap of the doubling join retry delay (each delay is jittered down to half of it) unless
/// Salt's `acceptance_wait_time_max` sets one.
pub const JOIN_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Delay before a minion whose join the master pended asks again (jittered down to half of
/// it). The master is up and only waiting for its operator: asking again at once keeps a
/// join open there nearly all the time, so that an accept completes it within a round trip
/// (a pended join ends after the joiner timeout, 5 s, on both sides). Not zero: the
/// master's side of the last join must have timed out first, or it refuses the new one.
pub const PENDED_RETRY: Duration = Duration::from_millis(250);
/// Delay before a rejected minion asks again (its key may have been accepted meanwhile).
pub const REJECTED_RETRY: Duration = Duration::from_secs(30);

/// A step of one of the minion's join loops.
#[derive(Debug)]
pub enum JoinOutcome {
    /// The master's name resolved to this address.
    Resolved(SocketAddr),
    /// A join is being tried.
    Attempt,
    /// Joined and allowed: the master's uid on our road.
    Joined(Uid),
    /// The master answered and pended our key (its operator has not decided yet).
    Pended,
    /// The join was rejected (`retrying`: `rejected_retry` asks again later).
    Rejected {
        /// Asking again every [`REJECTED_RETRY`].
        retrying: bool,
        /// The master rejected our key ([`RejectedBy::Them`]), or we refused the master's
        /// ([`RejectedBy::Us`]: not the key this minion accepted first).
        by: RejectedBy,
    },
}

/// How a minion's join loops wait between attempts: the Salt keys that apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Salt's `rejected_retry`: a rejected minion asks again every [`REJECTED_RETRY`].
    pub rejected_retry: bool,
    /// The cap of the doubling delay between failed joins: Salt's `acceptance_wait_time_max`
    /// (not below [`JOIN_BACKOFF_MIN`]), else [`JOIN_BACKOFF_MAX`].
    pub backoff_max: Duration,
    /// Salt's `random_reauth_delay`: a lost session is joined again after a random delay of
    /// up to this.
    pub reauth_delay: Option<Duration>,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            rejected_retry: false,
            backoff_max: JOIN_BACKOFF_MAX,
            reauth_delay: None,
        }
    }
}

impl Retry {
    /// The retry keys of a minion's configuration.
    pub fn of(config: &MinionConfig) -> Self {
        Self {
            rejected_retry: config.rejected_retry,
            backoff_max: config
                .acceptance_wait_time_max
                .map_or(JOIN_BACKOFF_MAX, |max| max.max(JOIN_BACKOFF_MIN)),
            reauth_delay: config.random_reauth_delay,
        }
    }
}

/// `host` resolved for a road of the family `ipv6`: an IPv4 road takes an IPv4 address;
/// an IPv6 one an IPv6 address, else an IPv4 one as IPv4-mapped (`::ffff:a.b.c.d`).
async fn resolve(host: &str, port: u16, ipv6: bool) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve master {host:?}: {e}"))?
        .collect();
    pick_address(&addrs, ipv6).ok_or_else(|| match ipv6 {
        true => format!("master {host:?} has no address"),
        false => format!("master {host:?} has no IPv4 address (set ipv6: True for an IPv6 master)"),
    })
}

/// The address of `addrs` a road of the family `ipv6` sends to (see [`resolve`]).
fn pick_address(addrs: &[SocketAddr], ipv6: bool) -> Option<SocketAddr> {
    if !ipv6 {
        return addrs.iter().find(|a| a.is_ipv4()).copied();
    }
    addrs.iter().find(|a| a.is_ipv6()).copied().or_else(|| {
        addrs.iter().find_map(|a| match a {
            SocketAddr::V4(v4) => Some(SocketAddr::new(
                IpAddr::V6(v4.ip().to_ipv6_mapped()),
                v4.port(),
            )),
            SocketAddr::V6(_) => None,
        })
    })
}

/// The join loop of one of the minion's masters (each master has its own: one down or
/// rejecting does not hold up the others).
pub struct JoinLoop {
    /// The minion's road.
    pub road: RoadStack,
    /// The master's index in the configuration (tagged on every outcome).
    pub index: usize,
    /// The master's host (a name or an address).
    pub host: String,
    /// The master's road port.
    pub port: u16,
    /// The road is an IPv6 one: the master's host resolves to an IPv6 address.
    pub ipv6: bool,
    /// How it waits between attempts.
    pub retry: Retry,
    /// Where each step is told.
    pub outcomes: mpsc::UnboundedSender<(usize, JoinOutcome)>,
}

impl JoinLoop {
    /// Tells the daemon; false when it is gone.
    fn tell(&self, outcome: JoinOutcome) -> bool {
        self.outcomes.send((self.index, outcome)).is_ok()
    }

    /// Forgets the road's remote at `master` (any old session, or a rejecting master: no
    /// alives go to it until we join again).
    async fn forget(&self, master: SocketAddr) {
        for remote in self.road.remotes().await {
            if remote.ha == master {
                let _ = self.road.remove(remote.uid).await;
            }
        }
    }

    /// Resolves the master, retrying with capped, jittered backoff (a name that does not
    /// resolve yet does not stop the minion or its other masters).
    async fn resolve(&self) -> Option<SocketAddr> {
        let mut backoff = JOIN_BACKOFF_MIN;
        loop {
            match resolve(&self.host, self.port, self.ipv6).await {
                Ok(address) => return self.tell(JoinOutcome::Resolved(address)).then_some(address),
                Err(e) => warn!(error = %e, "master not resolved; retrying"),
            }
            tokio::time::sleep(jitter(backoff)).await;
            backoff = (backoff * 2).min(JOIN_BACKOFF_MAX);
        }
    }

    /// Joins the master (vacuously, any old session forgotten), retrying with capped,
    /// jittered backoff, or after [`PENDED_RETRY`] when the master pended the join (its
    /// operator has not accepted our key yet); after a success waits for a rejoin request.
    /// A rejected minion waits for a rejoin request (SIGHUP) too, unless `rejected_retry`
    /// (Salt's key) makes it ask again every [`REJECTED_RETRY`]. A lost session is joined
    /// again after `random_reauth_delay` (Salt's key) jittered down to zero.
    pub async fn run(self, mut rejoin: mpsc::UnboundedReceiver<()>) {
        let Some(master) = self.resolve().await else {
            return;
        };
        let road = &self.road;
        let mut policy = JoinPolicy::new(self.retry);
        loop {
            self.forget(master).await;
            if !self.tell(JoinOutcome::Attempt) {
                return;
            }
            let attempt = match road.join(master).await {
                Ok(uid) => {
                    if !self.tell(JoinOutcome::Joined(uid)) {
                        return;
                    }
                    Attempt::Joined
                }
                Err(StackError::Rejected { by, .. }) => {
                    self.forget(master).await;
                    let retrying = self.retry.rejected_retry;
                    if !self.tell(JoinOutcome::Rejected { retrying, by }) {
                        return;
                    }
                    Attempt::Rejected
                }
                Err(StackError::Closed) => return,
                Err(StackError::JoinFailed {
                    reason: JoinFailure::Pended,
                    ..
                }) => {
                    debug!(%master, "join pended by the master; asking again");
                    if !self.tell(JoinOutcome::Pended) {
                        return;
                    }
                    Attempt::Pended
                }
                // The road refuses a second remote of one name: two masters, one `id`.
                Err(
                    e @ StackError::JoinFailed {
                        reason: JoinFailure::NameTaken,
                        ..
                    },
                ) => {
                    warn!(%master, error = %e, "another master has this master's id: give each master its own `id`; retrying");
                    Attempt::Failed
                }
                Err(e) => {
                    debug!(%master, error = %e, "join failed; retrying");
                    Attempt::Failed
                }
            };
            match policy.next(attempt) {
                Next::RetryAfter(delay) => tokio::time::sleep(jitter(delay)).await,
                Next::AwaitRejoin => {
                    // Rejoin requests from before this outcome are stale.
                    while rejoin.try_recv().is_ok() {}
                    if rejoin.recv().await.is_none() {
                        return;
                    }
                    if let Some(delay) = policy.rejoin_delay() {
                        debug!(%master, ?delay, "session lost; joining again after random_reauth_delay");
                        tokio::time::sleep(random_up_to(delay)).await;
                    }
                }
            }
        }
    }
}

/// How a join attempt ended, as far as what to do next is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// Joined and allowed.
    Joined,
    /// The master rejected our key.
    Rejected,
    /// The master pended the join (its operator has not decided yet).
    Pended,
    /// Anything else (no answer, refused, a name conflict).
    Failed,
}

/// What the join loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Join again after this delay (jittered down to half of it by the loop).
    RetryAfter(Duration),
    /// Wait for a rejoin request (a lost session, SIGHUP).
    AwaitRejoin,
}

/// The join loop's decisions, apart from its I/O: capped doubling backoff after failures,
/// [`PENDED_RETRY`] while the master's operator decides, [`REJECTED_RETRY`] or a wait for
/// SIGHUP after a rejection (Salt's `rejected_retry`), a wait for a rejoin request once
/// joined, then `random_reauth_delay`.
#[derive(Debug)]
struct JoinPolicy {
    backoff: Duration,
    retry: Retry,
    /// The last attempt joined: a rejoin request is a lost session.
    joined: bool,
}

impl JoinPolicy {
    fn new(retry: Retry) -> Self {
        Self {
            backoff: JOIN_BACKOFF_MIN,
            retry,
            joined: false,
        }
    }

    fn next(&mut self, attempt: Attempt) -> Next {
        self.joined = attempt == Attempt::Joined;
        match attempt {
            Attempt::Joined => {
                self.backoff = JOIN_BACKOFF_MIN;
                Next::AwaitRejoin
            }
            Attempt::Rejected if self.retry.rejected_retry => Next::RetryAfter(REJECTED_RETRY),
            Attempt::Rejected => Next::AwaitRejoin,
            Attempt::Pended => {
                self.backoff = JOIN_BACKOFF_MIN;
                Next::RetryAfter(PENDED_RETRY)
            }
            Attempt::Failed => {
                let delay = self.backoff;
                self.backoff = (self.backoff * 2).min(self.retry.backoff_max);
                Next::RetryAfter(delay)
            }
        }
    }

    /// The most a rejoin request waits before joining: `random_reauth_delay` after a lost
    /// session, nothing after a rejection (SIGHUP: the operator asks now).
    fn rejoin_delay(&self) -> Option<Duration> {
        self.retry.reauth_delay.filter(|_| self.joined)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_master_address_is_of_the_roads_family() {
        let v4: SocketAddr = "127.0.0.1:4505".parse().unwrap();
        let v6: SocketAddr = "[::1]:4505".parse().unwrap();
        assert_eq!(pick_address(&[v6, v4], false), Some(v4));
        assert_eq!(pick_address(&[v6], false), None);
        assert_eq!(pick_address(&[v4, v6], true), Some(v6));
        // an IPv4-only master from an IPv6 road: the IPv4-mapped address
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:4505".parse().unwrap();
        assert_eq!(pick_address(&[v4], true), Some(mapped));
    }

    #[test]
    fn failures_double_the_delay_up_to_the_cap_and_a_join_resets_it() {
        let mut p = JoinPolicy::new(Retry::default());
        let delays: Vec<Next> = (0..6).map(|_| p.next(Attempt::Failed)).collect();
        let ms = |m| Next::RetryAfter(Duration::from_millis(m));
        assert_eq!(
            delays,
            [ms(500), ms(1000), ms(2000), ms(4000), ms(5000), ms(5000)]
        );
        assert_eq!(p.next(Attempt::Joined), Next::AwaitRejoin);
        assert_eq!(p.next(Attempt::Failed), ms(500));
    }

    #[test]
    fn a_pended_join_asks_again_soon_and_resets_the_backoff() {
        let mut p = JoinPolicy::new(Retry::default());
        p.next(Attempt::Failed);
        p.next(Attempt::Failed);
        assert_eq!(p.next(Attempt::Pended), Next::RetryAfter(PENDED_RETRY));
        assert_eq!(p.next(Attempt::Failed), Next::RetryAfter(JOIN_BACKOFF_MIN));
    }

    #[test]
    fn a_rejection_waits_for_sighup_unless_rejected_retry() {
        assert_eq!(
            JoinPolicy::new(Retry::default()).next(Attempt::Rejected),
            Next::AwaitRejoin
        );
        let retrying = Retry {
            rejected_retry: true,
            ..Retry::default()
        };
        assert_eq!(
            JoinPolicy::new(retrying).next(Attempt::Rejected),
            Next::RetryAfter(REJECTED_RETRY)
        );
    }

    #[test]
    fn acceptance_wait_time_max_caps_the_backoff_and_random_reauth_delay_follows_a_lost_session() {
        let retry = Retry {
            backoff_max: Duration::from_secs(30),
            reauth_delay: Some(Duration::from_secs(10)),
            ..Retry::default()
        };
        let mut p = JoinPolicy::new(retry);
        let delays: Vec<Next> = (0..8).map(|_| p.next(Attempt::Failed)).collect();
        let s = |secs: f64| Next::RetryAfter(Duration::from_secs_f64(secs));
        assert_eq!(
            delays,
            [
                s(0.5),
                s(1.0),
                s(2.0),
                s(4.0),
                s(8.0),
                s(16.0),
                s(30.0),
                s(30.0)
            ]
        );
        // A rejection then SIGHUP: no reauth delay; a lost session: the reauth delay.
        p.next(Attempt::Rejected);
        assert_eq!(p.rejoin_delay(), None);
        p.next(Attempt::Joined);
        assert_eq!(p.rejoin_delay(), Some(Duration::from_secs(10)));
        assert_eq!(JoinPolicy::new(Retry::default()).rejoin_delay(), None);
    }
}
