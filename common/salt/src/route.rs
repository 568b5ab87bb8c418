//! Routing of Salt messages between local yards (lane) and remote estates (road): a pure table
//! of decisions, with no I/O, driven by the daemons' shared loop. The messages themselves are
//! [`Envelope`]s.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::envelope::{
    reply_error, DstEstate, Envelope, ErrorKind, MANOR, RID, SHARE_REGISTER, SHARE_STATUS,
};

/// What a yard declared when it registered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registration {
    /// Shares it serves (messages to a share with no yard go to the yard registered for it).
    pub shares: Vec<String>,
    /// Restrictions: a share listed here is accepted only from these source estates (`*` =
    /// any); shares not listed are accepted from any source.
    pub accept: BTreeMap<String, Vec<String>>,
}

impl Registration {
    /// Parses a registration load `{"shares": [...], "accept": {"share": ["estate"|"*"]}}`.
    pub fn parse(load: &Map<String, Value>) -> Result<Self, String> {
        let names = |v: &Value, what: &str| -> Result<Vec<String>, String> {
            v.as_array()
                .and_then(|a| {
                    a.iter()
                        .map(|i| i.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or(format!("{what} must be a list of strings"))
        };
        let shares = match load.get("shares") {
            None => Vec::new(),
            Some(v) => names(v, "shares")?,
        };
        let mut accept = BTreeMap::new();
        match load.get("accept") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (share, estates) in map {
                    accept.insert(share.clone(), names(estates, "accept entries")?);
                }
            }
            Some(_) => return Err("accept must be an object".into()),
        }
        Ok(Self { shares, accept })
    }

    /// Whether it accepts share `share` from estate `src`.
    pub fn accepts(&self, share: Option<&str>, src: &str) -> bool {
        match share.and_then(|s| self.accept.get(s)) {
            None => true,
            Some(estates) => estates.iter().any(|e| e == "*" || e == src),
        }
    }
}

/// What the daemon does with a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Register yard `.0` (already recorded in the table); nothing to send.
    Registered(String),
    /// Answer the daemon's status to yard `.0`.
    Status(String),
    /// Send the envelope to these estates over the road.
    Road(Vec<String>, Envelope),
    /// Deliver the envelope to this local yard.
    Local(String, Envelope),
    /// Drop it (counted): an undeliverable error envelope.
    Drop(ErrorKind),
    /// Keep it for the upstream until an upstream peer is allowed (none is now): a minion's
    /// message for its master while no master has a session (counted `held`).
    Hold(Envelope),
}

/// The routing table of one daemon: registered yards and counters. The set of joined peers is
/// passed to each decision (the road owns it).
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    yards: BTreeMap<String, Registration>,
    counters: BTreeMap<&'static str, u64>,
    /// Per share, how many messages were spread over its yards (round-robin position).
    spread: BTreeMap<String, usize>,
    /// Whether a local message for a share no local yard serves goes upstream (to a minion
    /// daemon's master) instead of failing.
    upstream: bool,
    /// The upstream estates in order of preference (a minion's masters in configuration
    /// order, by estate name once known); joined peers not listed come after, in name order.
    upstreams: Vec<String>,
}

impl RouteTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty table that sends local messages for shares no local yard serves upstream, to
    /// the first joined peer in order of preference ([`RouteTable::set_upstreams`]): the
    /// minion daemon's table (its peers are its masters).
    pub fn with_upstream() -> Self {
        Self {
            upstream: true,
            ..Self::default()
        }
    }

    /// Sets the order of preference of upstream estates (first the preferred one).
    pub fn set_upstreams(&mut self, order: Vec<String>) {
        self.upstreams = order;
    }

    /// The upstream candidates in order of preference: the listed estates, then the other
    /// joined peers in name order.
    fn preference<'a>(&'a self, peers: &'a BTreeSet<String>) -> Vec<&'a str> {
        let mut order: Vec<&str> = Vec::new();
        for estate in self.upstreams.iter().chain(peers) {
            if !order.contains(&estate.as_str()) {
                order.push(estate);
            }
        }
        order
    }

    /// The upstream peer for a message: the first joined peer in order of preference after
    /// `after` (from the start when `after` is `None` or not a candidate).
    fn next_upstream(&self, peers: &BTreeSet<String>, after: Option<&str>) -> Option<String> {
        let order = self.preference(peers);
        let start = after
            .and_then(|a| order.iter().position(|e| *e == a))
            .map_or(0, |i| i.saturating_add(1));
        order
            .iter()
            .skip(start)
            .find(|e| peers.contains(**e) && Some(**e) != after)
            .map(|e| (*e).to_owned())
    }

    /// A message the road could not deliver to `failed`: a message this table sent upstream
    /// (not to a named estate) goes to the next joined upstream peer after `failed` in order
    /// of preference, or is held when no upstream peer is joined any more (its session ended:
    /// it comes back with the next one); otherwise the sender is answered with
    /// [`ErrorKind::SendFailed`].
    pub fn failover(
        &mut self,
        own: &str,
        env: Envelope,
        failed: &str,
        reason: &str,
        peers: &BTreeSet<String>,
    ) -> Action {
        if !self.goes_upstream(own, &env) {
            return self.error(own, &env, ErrorKind::SendFailed, reason);
        }
        match self.next_upstream(peers, Some(failed)) {
            Some(next) => {
                tracing::debug!(failed, next, reason, "upstream failover");
                self.count("failover");
                Action::Road(vec![next], env)
            }
            None if self.next_upstream(peers, None).is_none() => self.hold(env),
            None => self.error(own, &env, ErrorKind::SendFailed, reason),
        }
    }

    /// Counters: one per [`ErrorKind::code`], plus `routed_local`, `routed_road`,
    /// `routed_upstream`, `failover`, `held`, `registered`.
    pub fn counters(&self) -> &BTreeMap<&'static str, u64> {
        &self.counters
    }

    /// Whether `env`, sent over the road by daemon `own`, went upstream (not to a named
    /// estate).
    pub fn goes_upstream(&self, own: &str, env: &Envelope) -> bool {
        self.upstream
            && match &env.dst_estate {
                DstEstate::Local => true,
                DstEstate::One(e) => e == own,
                DstEstate::Many(_) | DstEstate::All => false,
            }
    }

    /// An upstream message kept for the next upstream session.
    fn hold(&mut self, env: Envelope) -> Action {
        self.count("held");
        Action::Hold(env)
    }

    fn count(&mut self, what: &'static str) {
        *self.counters.entry(what).or_insert(0) += 1;
    }

    /// The registered yards.
    pub fn yards(&self) -> &BTreeMap<String, Registration> {
        &self.yards
    }

    /// Forgets a yard (its socket is gone).
    pub fn forget(&mut self, yard: &str) {
        self.yards.remove(yard);
    }

    /// The yards registered for `share`, in name order.
    pub fn yards_for(&self, share: &str) -> Vec<String> {
        self.yards
            .iter()
            .filter(|(_, r)| r.shares.iter().any(|s| s == share))
            .map(|(y, _)| y.clone())
            .collect()
    }

    /// Decides on a message from local yard `from_yard` of a daemon whose estate is `own`,
    /// with `peers` the joined, accepted remote estates. The source estate is overwritten with
    /// `own` and the source yard with `from_yard` (a process cannot spoof either).
    pub fn from_lane(
        &mut self,
        own: &str,
        from_yard: &str,
        body: &Map<String, Value>,
        peers: &BTreeSet<String>,
    ) -> Action {
        self.from_lane_parsed(own, from_yard, Envelope::parse(body), peers)
    }

    /// [`RouteTable::from_lane`] of a message already parsed (a packed envelope), or why it
    /// could not be (answered `bad_envelope`).
    pub fn from_lane_parsed(
        &mut self,
        own: &str,
        from_yard: &str,
        parsed: Result<Envelope, String>,
        peers: &BTreeSet<String>,
    ) -> Action {
        let mut env = match parsed {
            Ok(env) => env,
            Err(reason) => {
                self.count(ErrorKind::BadEnvelope.code());
                let reply = reply_error(
                    DstEstate::Local,
                    Some(from_yard.to_owned()),
                    own,
                    ErrorKind::BadEnvelope,
                    &reason,
                );
                return Action::Local(from_yard.to_owned(), reply);
            }
        };
        env.src[0] = Some(own.to_owned());
        env.src[1] = Some(from_yard.to_owned());
        let targets = match &env.dst_estate {
            DstEstate::Local => Vec::new(),
            DstEstate::One(e) if e == own => Vec::new(),
            DstEstate::One(e) => vec![e.clone()],
            DstEstate::Many(v) => v.clone(),
            // Everyone downstream: a syndic's master of masters is not one of its minions.
            DstEstate::All if !self.upstream => peers
                .iter()
                .filter(|p| !self.upstreams.contains(p))
                .cloned()
                .collect(),
            DstEstate::All => peers.iter().cloned().collect(),
        };
        if targets.is_empty() && env.dst_estate != DstEstate::All {
            if let Some(master) = self.upstream_for(&env, peers) {
                return match master {
                    Some(master) => {
                        self.count("routed_upstream");
                        Action::Road(vec![master], env)
                    }
                    None => self.hold(env),
                };
            }
            return self.daemon_or_local(own, from_yard, env);
        }
        if let Some(unknown) = targets.iter().find(|t| !peers.contains(*t)) {
            let reason = format!("estate {unknown:?} is not a joined, accepted peer");
            return self.error(own, &env, ErrorKind::UnknownEstate, &reason);
        }
        self.count("routed_road");
        Action::Road(targets, env)
    }

    /// With an upstream table, the upstream peer of a local message addressed to a share only
    /// (no yard) that no local yard serves: `Some(Some(peer))` (the first joined one in order
    /// of preference), or `Some(None)` when no peer is joined; `None` when the message stays
    /// local.
    fn upstream_for(&self, env: &Envelope, peers: &BTreeSet<String>) -> Option<Option<String>> {
        let share = env.dst_share.as_deref()?;
        let stays = !self.upstream
            || env.dst_yard.is_some()
            || share == SHARE_REGISTER
            || share == SHARE_STATUS
            || !self.yards_for(share).is_empty();
        if stays {
            return None;
        }
        Some(self.next_upstream(peers, None))
    }

    /// A local message for the daemon's yard (register, status) or another local yard.
    fn daemon_or_local(&mut self, own: &str, from_yard: &str, env: Envelope) -> Action {
        let to_manor = !matches!(env.dst_yard.as_deref(), Some(y) if y != MANOR);
        match env.dst_share.as_deref() {
            Some(SHARE_REGISTER) if to_manor => match Registration::parse(&env.load) {
                Ok(reg) => {
                    self.yards.insert(from_yard.to_owned(), reg);
                    self.count("registered");
                    Action::Registered(from_yard.to_owned())
                }
                Err(reason) => self.error(own, &env, ErrorKind::BadEnvelope, &reason),
            },
            Some(SHARE_STATUS) if to_manor => Action::Status(from_yard.to_owned()),
            _ => self.deliver(own, env),
        }
    }

    /// Decides on a message received over the road from the authenticated estate `from`:
    /// the source estate is overwritten with `from`.
    ///
    /// A source yard [`MANOR`] is accepted only on a daemon's error envelope, whose load keeps
    /// only its `error`, `kind` and `rid` (anything else is dropped, counted `reserved_yard`: a
    /// remote cannot pass for a daemon's register or status reply). The message goes to a
    /// yard that registered its destination share and accepts `from` for it. It may name a
    /// yard without a share that yard serves only when it is a daemon's error (the answer to
    /// that yard's message), or when `from` is one of the table's upstream estates (a
    /// minion's masters, a syndic's master of masters: replies to the asking yard); never
    /// [`MANOR`].
    /// Anything else is refused (counted `refused`, answered with an error envelope): a remote
    /// never reaches a yard that did not ask for its traffic, such as the master's publisher.
    pub fn from_road(&mut self, own: &str, from: &str, body: &Map<String, Value>) -> Action {
        self.from_road_parsed(own, from, Envelope::parse(body))
    }

    /// [`RouteTable::from_road`] of a message already parsed (a packed envelope), or why it
    /// could not be (dropped, counted `bad_envelope`).
    pub fn from_road_parsed(
        &mut self,
        own: &str,
        from: &str,
        parsed: Result<Envelope, String>,
    ) -> Action {
        let mut env = match parsed {
            Ok(env) => env,
            Err(reason) => {
                tracing::debug!(from, reason, "bad envelope from the road");
                self.count(ErrorKind::BadEnvelope.code());
                return Action::Drop(ErrorKind::BadEnvelope);
            }
        };
        env.src[0] = Some(from.to_owned());
        let from_manor = env.src[1].as_deref() == Some(MANOR);
        if from_manor {
            if !env.is_daemon_error() {
                let kind = ErrorKind::ReservedYard;
                self.count(kind.code());
                tracing::warn!(from, src = ?env.src, "road message from the daemon's yard dropped");
                return Action::Drop(kind);
            }
            env.load
                .retain(|key, _| ["error", "kind", RID].contains(&key.as_str()));
            env.salt = None;
        }
        let Some(yard) = env.dst_yard.clone() else {
            return self.deliver(own, env);
        };
        let replies = from_manor || self.upstreams.iter().any(|u| u == from);
        let serves = env.dst_share.as_ref().is_some_and(|share| {
            self.yards
                .get(&yard)
                .is_some_and(|reg| reg.shares.contains(share))
        });
        if yard == MANOR || !(serves || replies) {
            let share = env.dst_share.clone();
            let reason = format!("yard {yard:?} does not serve share {share:?} to the road");
            return self.error(own, &env, ErrorKind::Refused, &reason);
        }
        self.deliver(own, env)
    }

    /// Delivery to a local yard: the named one, or the one registered for the share; checks
    /// the destination's restrictions.
    fn deliver(&mut self, own: &str, env: Envelope) -> Action {
        let src = env.src[0].clone().unwrap_or_else(|| own.to_owned());
        let share = env.dst_share.clone();
        let yard = match &env.dst_yard {
            Some(yard) => yard.clone(),
            None => match share.as_deref().and_then(|s| self.spread_over(s, &src)) {
                Some(yard) => yard,
                None => {
                    let reason = format!("no yard serves share {:?}", share.unwrap_or_default());
                    return self.error(own, &env, ErrorKind::UnknownShare, &reason);
                }
            },
        };
        if yard == MANOR {
            // the daemon's own yard takes register and status only: a message sent there
            // would come back to this table from yard MANOR, again and again
            let reason = format!("the daemon's yard does not serve share {share:?}");
            return self.error(own, &env, ErrorKind::UnknownShare, &reason);
        }
        if let Some(reg) = self.yards.get(&yard) {
            if !reg.accepts(share.as_deref(), &src) {
                let reason = format!("yard {yard:?} refuses share {share:?} from {src:?}");
                return self.error(own, &env, ErrorKind::Refused, &reason);
            }
        }
        self.count("routed_local");
        Action::Local(yard, env)
    }

    /// A message yard `yard` could not take (its socket is gone; the caller forgot it): one
    /// addressed to a share goes to another yard serving it; one addressed to that yard is
    /// answered with [`ErrorKind::NoSuchYard`].
    pub fn undelivered(&mut self, own: &str, yard: &str, env: Envelope) -> Action {
        if env.dst_yard.is_none() && env.dst_share.is_some() {
            return self.deliver(own, env);
        }
        let reason = format!("yard {yard:?} is not on the lane");
        self.error(own, &env, ErrorKind::NoSuchYard, &reason)
    }

    /// The next yard serving `share`, round-robin over its yards (in name order), among those
    /// that accept source estate `src` for it when any does (a minion's Salt connection to one
    /// of its masters takes that master's publications only); when none does, the next of
    /// all, which [`Self::deliver`] refuses. Only served shares have a position: a share
    /// nobody serves (any name a remote sends) leaves no entry behind.
    fn spread_over(&mut self, share: &str, src: &str) -> Option<String> {
        let yards = self.yards_for(share);
        if yards.is_empty() {
            self.spread.remove(share);
            return None;
        }
        let accepting: Vec<String> = yards
            .iter()
            .filter(|y| {
                self.yards
                    .get(*y)
                    .is_some_and(|r| r.accepts(Some(share), src))
            })
            .cloned()
            .collect();
        let choice = if accepting.is_empty() {
            yards
        } else {
            accepting
        };
        let turn = self.spread.entry(share.to_owned()).or_insert(0);
        let yard = choice.get(*turn % choice.len())?.clone();
        *turn = turn.wrapping_add(1);
        Some(yard)
    }

    /// Counts `kind` and answers the sender with an error envelope (or drops an error).
    pub fn error(&mut self, own: &str, env: &Envelope, kind: ErrorKind, reason: &str) -> Action {
        self.count(kind.code());
        tracing::debug!(kind = kind.code(), reason, "message not routed");
        // nobody to tell: an error, a message without a source yard, or the daemon's own
        // (presence, a reply) to a yard that is gone
        if env.is_error() || env.src[1].as_deref().is_none_or(|yard| yard == MANOR) {
            return Action::Drop(kind);
        }
        let reply = env.error_reply(own, kind, reason);
        match reply.dst_estate.clone() {
            DstEstate::One(estate) => Action::Road(vec![estate], reply),
            _ => Action::Local(env.src[1].clone().unwrap_or_default(), reply),
        }
    }
}

#[cfg(test)]
mod tests;
