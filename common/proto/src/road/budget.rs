//! The road-wide budget of sealed bytes in flight ([`Limits::max_sealed_bytes`]): every
//! open Messenger holds its message sealed for its remote, so a fan-out of one large message
//! to many remotes would hold one sealed copy per remote at once. A message starts only with
//! a [`Reservation`] of its sealed size (one message always may); the others wait in their
//! remote's queue, their remotes in a round-robin line, until reservations are released (a
//! reservation is released when its Messenger is dropped, whatever ended it).
//!
//! [`Limits::max_sealed_bytes`]: super::Limits::max_sealed_bytes

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use std::time::Instant;

use super::{Road, Uid};

/// Sealed bytes in flight and the remotes waiting for room.
#[derive(Debug, Default)]
pub(crate) struct SealedBudget {
    used: Arc<AtomicUsize>,
    line: VecDeque<Uid>,
    waiting: BTreeSet<Uid>,
}

/// Bytes of the budget held by one Messenger (given back when dropped).
#[derive(Debug)]
pub(crate) struct Reservation {
    used: Arc<AtomicUsize>,
    bytes: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.used.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl SealedBudget {
    /// Sealed bytes in flight.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// A reservation of `bytes` if they fit under `limit` (or nothing is in flight).
    pub(crate) fn reserve(&self, bytes: usize, limit: usize) -> Option<Reservation> {
        let used = self.used();
        if used != 0 && used.saturating_add(bytes) > limit {
            return None;
        }
        self.used.fetch_add(bytes, Ordering::Relaxed);
        Some(Reservation {
            used: Arc::clone(&self.used),
            bytes,
        })
    }

    /// `uid` waits for room (once in the line).
    pub(crate) fn wait(&mut self, uid: Uid) {
        if self.waiting.insert(uid) {
            self.line.push_back(uid);
        }
    }

    /// Whether `uid` waits for room.
    pub(crate) fn is_waiting(&self, uid: Uid) -> bool {
        self.waiting.contains(&uid)
    }

    /// The first remote in line (out of it: one whose message still does not fit waits
    /// again, at the back).
    pub(crate) fn next_in_line(&mut self) -> Option<Uid> {
        let uid = self.line.pop_front()?;
        self.waiting.remove(&uid);
        Some(uid)
    }

    /// Whether a remote waits and some room is free.
    pub(crate) fn may_release(&self, limit: usize) -> bool {
        !self.line.is_empty() && self.used() < limit
    }
}

impl Road {
    /// Remotes whose messages waited for room in the sealed budget try again, in line order,
    /// while there is room; the first whose message still does not fit ends the round (it
    /// waits again at the back), so a freed reservation costs the remotes it starts, not a
    /// pass over every waiting one.
    pub(crate) fn release_budget(&mut self, now: Instant) {
        let limit = self.core.config.limits.max_sealed_bytes;
        while self.core.budget.may_release(limit) {
            let Some(uid) = self.core.budget.next_in_line() else {
                return;
            };
            self.pump(now, uid);
            if self.core.budget.is_waiting(uid) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_fit_under_the_limit_and_are_given_back_when_dropped() {
        let budget = SealedBudget::default();
        let a = budget.reserve(60, 100).unwrap();
        assert!(budget.reserve(50, 100).is_none(), "60 + 50 > 100");
        let b = budget.reserve(40, 100).unwrap();
        assert_eq!(budget.used(), 100);
        drop(a);
        assert_eq!(budget.used(), 40);
        drop(b);
        // Nothing in flight: one message always may, whatever its size.
        let big = budget.reserve(500, 100).unwrap();
        assert_eq!(budget.used(), 500);
        drop(big);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn remotes_wait_once_in_line_order() {
        let mut budget = SealedBudget::default();
        for uid in [3, 1, 3, 2] {
            budget.wait(uid);
        }
        assert!(budget.is_waiting(3) && !budget.is_waiting(4));
        assert!(budget.may_release(1));
        let held = budget.reserve(1, 1).unwrap();
        assert!(!budget.may_release(1), "no room");
        drop(held);
        let line: Vec<Uid> = std::iter::from_fn(|| budget.next_in_line()).collect();
        assert_eq!(line, [3, 1, 2]);
        assert!(!budget.is_waiting(3) && !budget.may_release(1));
    }
}
