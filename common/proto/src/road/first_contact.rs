//! First contacts: estates that joined vacuously and have not completed a join here (a new
//! minion pending an operator's decision, or anyone with fresh keys and a name). A join
//! request is unauthenticated, so they cost only bounded memory and nothing on disk: one
//! new first contact (keys no role record holds: an estate already decided or pending joins
//! again unrationed) per source address per [`Limits::first_contact_interval`], at most
//! [`Limits::max_first_contacts`] at once (the one that asked least recently makes room),
//! dropped when they stop asking ([`Limits::first_contact_ttl`]). Their remote record is
//! written when their join completes.
//!
//! [`Limits::first_contact_interval`]: super::Limits::first_contact_interval
//! [`Limits::max_first_contacts`]: super::Limits::max_first_contacts
//! [`Limits::first_contact_ttl`]: super::Limits::first_contact_ttl

use std::net::SocketAddr;
use std::time::Instant;

use crate::keep::Acceptance;

use super::{Event, Road, Uid};

/// Source addresses remembered for the rate limit (beyond this, the ones outside their
/// interval are forgotten; if none is, new first contacts wait).
const MAX_SOURCES: usize = 4096;

/// Why a first contact was dropped.
#[derive(Debug, Clone, Copy)]
enum Dropped {
    /// Room for a newer one.
    Evicted,
    /// It stopped asking.
    Expired,
}

impl Road {
    /// Whether a new first contact from `from` may be heard now: within the source's rate
    /// and, at the cap, by dropping the first contact that asked least recently.
    pub(super) fn admit_first_contact(&mut self, now: Instant, from: SocketAddr) -> bool {
        let interval = self.core.config.limits.first_contact_interval;
        let recent = |t: &Instant| t.checked_add(interval).is_some_and(|until| now < until);
        if self.first_contact_sources.get(&from).is_some_and(recent) {
            drop_packet!(self.core, first_contact_rate_limited, from);
            return false;
        }
        if self.first_contact_sources.len() >= MAX_SOURCES {
            self.first_contact_sources.retain(|_, t| recent(t));
            if self.first_contact_sources.len() >= MAX_SOURCES {
                drop_packet!(self.core, first_contact_rate_limited, from);
                return false;
            }
        }
        let max = self.core.config.limits.max_first_contacts;
        // Only a first contact waiting for a decision makes room; one whose key is accepted
        // is completing its join and soon is no first contact. In a storm of legitimate
        // joins that keeps the admitted ones going (evicting them would start all and finish
        // none); the new one is dropped and asks again (its source's rate slot unspent).
        if self.remotes.first_contacts() >= max {
            match self.remotes.oldest_evictable() {
                Some(uid) => self.drop_first_contact(uid, Dropped::Evicted),
                None => {
                    drop_packet!(self.core, first_contact_busy, from);
                    return false;
                }
            }
        }
        self.first_contact_sources.insert(from, now);
        true
    }

    /// A first contact that stopped asking for longer than its time to live is dropped
    /// (called from its presence timer).
    pub(super) fn expire_first_contact(&mut self, now: Instant, uid: Uid) {
        let ttl = self.core.config.limits.first_contact_ttl;
        let expired = self.remotes.get(&uid).is_some_and(|r| {
            !r.join_in_process()
                && r.first_contact
                    .and_then(|t| t.checked_add(ttl))
                    .is_some_and(|until| now >= until)
        });
        if expired {
            self.drop_first_contact(uid, Dropped::Expired);
        }
    }

    /// Forgets a first contact: its remote, its joinee entry and a pending role record its
    /// join made (nothing of it was written to the keep); tells the application.
    fn drop_first_contact(&mut self, uid: Uid, why: Dropped) {
        let Some(remote) = self.remotes.remove(&uid) else {
            return;
        };
        self.joinees.retain(|_, u| *u != uid);
        match why {
            Dropped::Evicted => self.core.stats.first_contact_evicted += 1,
            Dropped::Expired => self.core.stats.first_contact_expired += 1,
        }
        tracing::debug!(road = %self.core.config.name, uid, name = %remote.name, ?why,
            "first contact dropped");
        let pending = self
            .core
            .roles
            .get(&remote.role)
            .is_some_and(|r| r.acceptance == Acceptance::Pending && r.verhex == remote.verhex);
        if pending {
            self.core.forget_role(&remote.role);
        }
        self.core.event(Event::FirstContactDropped {
            uid,
            name: remote.name,
            verhex: remote.verhex,
        });
    }
}
