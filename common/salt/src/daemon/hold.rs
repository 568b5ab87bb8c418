//! Messages for the upstream (a minion's masters) kept while no upstream peer has a session:
//! released, oldest deadline first, when one is allowed again, and failed back to their
//! senders at their deadline. A message is held from its first hold for at most the hold
//! limit (`raet_message_timeout`), however often its session ends meanwhile. Sans-IO: the
//! loop passes `now` and acts on what comes out.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::envelope::Envelope;

/// At most this many messages are held; more fail at once.
pub(crate) const MAX_HELD: usize = 4096;

/// Why a message could not be held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NotHeld {
    /// [`MAX_HELD`] messages are held already.
    #[error("{MAX_HELD} messages already wait for a master")]
    Full,
    /// It was held before and its deadline passed.
    #[error("no master took it within raet_message_timeout")]
    Expired,
}

/// The held messages, by deadline (ties in arrival order).
#[derive(Debug)]
pub(crate) struct Hold {
    queue: BTreeMap<(Instant, u64), Envelope>,
    arrivals: u64,
    limit: Duration,
}

impl Hold {
    /// An empty hold whose messages wait at most `limit`.
    pub(crate) fn new(limit: Duration) -> Self {
        Self {
            queue: BTreeMap::new(),
            arrivals: 0,
            limit,
        }
    }

    /// Whether a message can be held at `now`, and until when: `deadline` (that of an
    /// earlier hold of the same message) or, the first time, `now` + the limit.
    pub(crate) fn admit(
        &self,
        deadline: Option<Instant>,
        now: Instant,
    ) -> Result<Instant, NotHeld> {
        let deadline = deadline.unwrap_or_else(|| self.deadline(now));
        if deadline <= now {
            return Err(NotHeld::Expired);
        }
        if self.queue.len() >= MAX_HELD {
            return Err(NotHeld::Full);
        }
        Ok(deadline)
    }

    /// Holds `env` until `deadline` (from [`Hold::admit`]).
    pub(crate) fn keep(&mut self, env: Envelope, deadline: Instant) {
        self.arrivals += 1;
        self.queue.insert((deadline, self.arrivals), env);
    }

    /// The deadline of a message first held (or first failed) at `now`.
    pub(crate) fn deadline(&self, now: Instant) -> Instant {
        now.checked_add(self.limit).unwrap_or(now)
    }

    /// Every held message with its deadline, oldest deadline first; the hold is empty after.
    pub(crate) fn release(&mut self) -> Vec<(Envelope, Instant)> {
        std::mem::take(&mut self.queue)
            .into_iter()
            .map(|((deadline, _), env)| (env, deadline))
            .collect()
    }

    /// The held messages whose deadline is `now` or earlier (removed from the hold).
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<Envelope> {
        let later = self.queue.split_off(&(now, u64::MAX));
        std::mem::replace(&mut self.queue, later)
            .into_values()
            .collect()
    }

    /// The earliest deadline of a held message.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.queue.keys().next().map(|(deadline, _)| *deadline)
    }

    /// How many messages are held.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Map, Value};

    use super::*;
    use crate::envelope::DstEstate;

    fn env(n: u64) -> Envelope {
        let mut load = Map::new();
        load.insert("n".into(), json!(n));
        Envelope {
            src: [Some("m1".into()), Some("worker".into()), None],
            dst_estate: DstEstate::Local,
            dst_yard: None,
            dst_share: Some("ret".into()),
            load,
            salt: None,
        }
    }

    fn numbers(envs: impl IntoIterator<Item = Envelope>) -> Vec<Value> {
        envs.into_iter().map(|e| e.load["n"].clone()).collect()
    }

    /// Holds message `n` as the loop does (admitted first).
    fn keep(hold: &mut Hold, n: u64, deadline: Option<Instant>, now: Instant) {
        let deadline = hold.admit(deadline, now).unwrap();
        hold.keep(env(n), deadline);
    }

    #[test]
    fn held_messages_are_released_oldest_deadline_first_with_their_deadlines() {
        let t0 = Instant::now();
        let limit = Duration::from_secs(30);
        let mut hold = Hold::new(limit);
        keep(&mut hold, 1, None, t0);
        keep(&mut hold, 2, None, t0);
        // held again after a failed release: keeps its first deadline, so comes first
        let earlier = t0 + Duration::from_secs(5);
        keep(&mut hold, 3, Some(earlier), t0);
        assert_eq!(hold.len(), 3);
        assert_eq!(hold.next_deadline(), Some(earlier));
        let released = hold.release();
        assert!(hold.is_empty());
        assert_eq!(hold.next_deadline(), None);
        let deadlines: Vec<Instant> = released.iter().map(|(_, d)| *d).collect();
        assert_eq!(deadlines, [earlier, t0 + limit, t0 + limit]);
        assert_eq!(numbers(released.into_iter().map(|(e, _)| e)), [3, 1, 2]);
    }

    #[test]
    fn messages_expire_at_their_deadline_and_not_before() {
        let t0 = Instant::now();
        let mut hold = Hold::new(Duration::from_secs(10));
        keep(&mut hold, 1, None, t0);
        keep(&mut hold, 2, None, t0 + Duration::from_secs(4));
        assert!(hold.expire(t0 + Duration::from_secs(9)).is_empty());
        assert_eq!(numbers(hold.expire(t0 + Duration::from_secs(10))), [1]);
        assert_eq!(hold.next_deadline(), Some(t0 + Duration::from_secs(14)));
        assert_eq!(numbers(hold.expire(t0 + Duration::from_secs(60))), [2]);
        assert!(hold.is_empty());
    }

    #[test]
    fn a_passed_deadline_or_a_full_hold_is_not_admitted() {
        let t0 = Instant::now();
        let mut hold = Hold::new(Duration::from_secs(10));
        assert_eq!(hold.admit(Some(t0), t0), Err(NotHeld::Expired));
        for n in 0..MAX_HELD as u64 {
            keep(&mut hold, n, None, t0);
        }
        assert_eq!(hold.admit(None, t0), Err(NotHeld::Full));
        assert_eq!(hold.len(), MAX_HELD);
    }
}
