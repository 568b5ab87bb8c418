//! Protocol timers: the reference's defaults (spec §13) and the doubling redo timer.

use std::time::{Duration, Instant};

use super::transaction::earliest;

/// Every timer of the road. [`Timers::default`] gives the reference's values (raet 0.6.8),
/// except [`Timers::message_timeout`]: the reference retries a message to a silent peer
/// forever (`Timeout = 0.0`); we give up after 30 s and report [`super::Event::SendFailed`].
///
/// A `Duration::ZERO` timeout means "never" (as in the reference), except for
/// `message_timeout`, which is always bounded (zero is treated as the 30 s default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timers {
    /// Joiner gives up (reference `JoinerTimeout` 5 s; zero = never).
    pub joiner_timeout: Duration,
    /// Joiner resends its request: first after this (1 s) ...
    pub joiner_redo_min: Duration,
    /// ... doubling up to this (4 s).
    pub joiner_redo_max: Duration,
    /// Joiner redo interval once the joinent said pend (60 s).
    pub joiner_pend_redo: Duration,
    /// Joinent gives up and nacks (reference `JoinentTimeout` 5 s; zero = never).
    pub joinent_timeout: Duration,
    /// Joinent resends its response: first after this (0.1 s) ...
    pub joinent_redo_min: Duration,
    /// ... doubling up to this (2 s).
    pub joinent_redo_max: Duration,
    /// Joinent redo interval while pended (60 s).
    pub joinent_pend_redo: Duration,
    /// Allower and Allowent give up (4 s; the Allowent refuses).
    pub allow_timeout: Duration,
    /// Allow redo: first after this (0.25 s) ...
    pub allow_redo_min: Duration,
    /// ... doubling up to this (1 s).
    pub allow_redo_max: Duration,
    /// Aliver gives up and marks the remote not alive (2 s).
    pub aliver_timeout: Duration,
    /// Alivent timeout (10 s).
    pub alivent_timeout: Duration,
    /// Alive redo: first after this (0.25 s) ...
    pub alive_redo_min: Duration,
    /// ... doubling up to this (1 s).
    pub alive_redo_max: Duration,
    /// Messenger/Messengent redo: first after this (0.2 s) ...
    pub message_redo_min: Duration,
    /// ... doubling up to this (0.5 s).
    pub message_redo_max: Duration,
    /// Bounded lifetime of a message transaction without progress (ours; the reference has
    /// none). A Messenger that hears nothing for this long ends with `SendFailed`; a message
    /// still waiting for its remote to be allowed fails after this long too. Default 30 s.
    pub message_timeout: Duration,
    /// How long completed message transaction ids are remembered for duplicate
    /// suppression (reference `MsgStaleTimeout` 600 s).
    pub done_stale: Duration,
    /// Presence period: an alive is sent when a remote was silent this long (1 s).
    pub presence_period: Duration,
    /// Added to the presence period on a non-main estate (0.5 s).
    pub presence_offset: Duration,
    /// A main estate marks a remote "reaped" (no alives sent) after this long without
    /// traffic (reference `Interim` 3600 s).
    pub reap_interim: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        let s = Duration::from_secs_f64;
        Self {
            joiner_timeout: s(5.0),
            joiner_redo_min: s(1.0),
            joiner_redo_max: s(4.0),
            joiner_pend_redo: s(60.0),
            joinent_timeout: s(5.0),
            joinent_redo_min: s(0.1),
            joinent_redo_max: s(2.0),
            joinent_pend_redo: s(60.0),
            allow_timeout: s(4.0),
            allow_redo_min: s(0.25),
            allow_redo_max: s(1.0),
            aliver_timeout: s(2.0),
            alivent_timeout: s(10.0),
            alive_redo_min: s(0.25),
            alive_redo_max: s(1.0),
            message_redo_min: s(0.2),
            message_redo_max: s(0.5),
            message_timeout: s(30.0),
            done_stale: s(600.0),
            presence_period: s(1.0),
            presence_offset: s(0.5),
            reap_interim: s(3600.0),
        }
    }
}

impl Timers {
    /// The allow timers; `timeout` overrides the allow timeout (handed down a cascade).
    pub(crate) fn allow_pace(&self, timeout: Option<Duration>) -> Pace {
        Pace {
            timeout: timeout.unwrap_or(self.allow_timeout),
            redo_min: self.allow_redo_min,
            redo_max: self.allow_redo_max,
        }
    }

    /// The aliver timers; `timeout` overrides the aliver timeout (handed down a cascade).
    pub(crate) fn alive_pace(&self, timeout: Option<Duration>) -> Pace {
        Pace {
            timeout: timeout.unwrap_or(self.aliver_timeout),
            redo_min: self.alive_redo_min,
            redo_max: self.alive_redo_max,
        }
    }

    /// The bounded message timeout (zero replaced by the 30 s default).
    pub(crate) fn message_limit(&self) -> Duration {
        if self.message_timeout.is_zero() {
            Duration::from_secs(30)
        } else {
            self.message_timeout
        }
    }
}

/// A deadline that may be unset ("never").
pub(crate) fn deadline(now: Instant, after: Duration) -> Option<Instant> {
    if after.is_zero() {
        None
    } else {
        now.checked_add(after)
    }
}

/// The timeout and redo bounds of one transaction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    /// Give up after this long (zero: never).
    pub timeout: Duration,
    /// First redo after this ...
    pub redo_min: Duration,
    /// ... doubling up to this.
    pub redo_max: Duration,
}

impl Pace {
    /// The timers of a transaction started at `now`.
    pub(crate) fn start(&self, now: Instant) -> Clock {
        Clock {
            deadline: deadline(now, self.timeout),
            redo: Redo::new(now, self.redo_min, self.redo_max),
        }
    }
}

/// A transaction's timers: when it gives up and when it resends.
#[derive(Debug, Clone)]
pub(crate) struct Clock {
    /// Give-up time (`None`: never).
    deadline: Option<Instant>,
    /// The resend timer.
    pub redo: Redo,
}

impl Clock {
    /// The next timer.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        earliest(self.deadline, self.redo.due())
    }

    /// Whether it gave up at `now`.
    pub(crate) fn timed_out(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| now >= d)
    }
}

/// The reference's redo timer: fires after `min`, then after `min(max(min, prev*2), max)`.
#[derive(Debug, Clone)]
pub(crate) struct Redo {
    min: Duration,
    max: Duration,
    current: Duration,
    due: Option<Instant>,
}

impl Redo {
    /// A redo timer started at `now`.
    pub(crate) fn new(now: Instant, min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            current: min,
            due: now.checked_add(min),
        }
    }

    /// When it fires next.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.due
    }

    /// Whether it has fired at `now`.
    pub(crate) fn expired(&self, now: Instant) -> bool {
        self.due.is_some_and(|d| now >= d)
    }

    /// After a firing: double the interval (bounded) and restart from `now`.
    pub(crate) fn backoff(&mut self, now: Instant) {
        self.current = next_interval(self.current, self.min, self.max);
        self.due = now.checked_add(self.current);
    }

    /// After a firing: back off, or switch to the fixed interval `pended` (the slow redo of
    /// a pended join).
    pub(crate) fn fire(&mut self, now: Instant, pended: Option<Duration>) {
        match pended {
            Some(interval) => self.restart_fixed(now, interval),
            None => self.backoff(now),
        }
    }

    /// Restart from `now` with `interval` as the new shortest one (no back-off), at most the
    /// longest (the fast profile's retransmission timeout after an answer).
    pub(crate) fn reset_to(&mut self, now: Instant, interval: Duration) {
        self.min = interval.min(self.max);
        self.current = self.min;
        self.due = now.checked_add(self.current);
    }

    /// Restart with a fixed interval (the "pended" slow redo).
    pub(crate) fn restart_fixed(&mut self, now: Instant, interval: Duration) {
        self.current = interval;
        self.min = interval;
        self.max = interval;
        self.due = now.checked_add(interval);
    }

    /// Restart the current interval from `now` (a transmission; the reference's
    /// `redoTimer.restart()`).
    pub(crate) fn restart(&mut self, now: Instant) {
        self.due = now.checked_add(self.current);
    }
}

/// `min(max(min, prev * 2), max)`.
pub(crate) fn next_interval(prev: Duration, min: Duration, max: Duration) -> Duration {
    prev.saturating_mul(2).max(min).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubling_is_bounded() {
        let ms = Duration::from_millis;
        let mut d = ms(200);
        let mut seen = vec![];
        for _ in 0..4 {
            d = next_interval(d, ms(200), ms(500));
            seen.push(d);
        }
        assert_eq!(seen, vec![ms(400), ms(500), ms(500), ms(500)]);
        assert_eq!(next_interval(ms(0), ms(250), ms(1000)), ms(250));
    }

    #[test]
    fn redo_fires_at_doubling_intervals() {
        let t0 = Instant::now();
        let s = Duration::from_secs_f64;
        let mut r = Redo::new(t0, s(1.0), s(4.0));
        assert!(!r.expired(t0));
        assert_eq!(r.due(), Some(t0 + s(1.0)));
        let t1 = t0 + s(1.0);
        assert!(r.expired(t1));
        r.backoff(t1);
        assert_eq!(r.due(), Some(t1 + s(2.0)));
        let t2 = t1 + s(2.0);
        r.backoff(t2);
        assert_eq!(r.due(), Some(t2 + s(4.0)));
        let t3 = t2 + s(4.0);
        r.backoff(t3);
        assert_eq!(r.due(), Some(t3 + s(4.0)));
        r.restart_fixed(t3, s(60.0));
        assert_eq!(r.due(), Some(t3 + s(60.0)));
        r.backoff(t3);
        assert_eq!(r.due(), Some(t3 + s(60.0)));
    }

    #[test]
    fn defaults_are_the_reference_values() {
        let t = Timers::default();
        assert_eq!(t.joiner_timeout, Duration::from_secs(5));
        assert_eq!(t.joinent_redo_min, Duration::from_millis(100));
        assert_eq!(t.allow_redo_min, Duration::from_millis(250));
        assert_eq!(t.message_redo_max, Duration::from_millis(500));
        assert_eq!(t.done_stale, Duration::from_secs(600));
        assert_eq!(t.message_limit(), Duration::from_secs(30));
        let zero = Timers {
            message_timeout: Duration::ZERO,
            ..Timers::default()
        };
        assert_eq!(zero.message_limit(), Duration::from_secs(30));
        assert_eq!(deadline(Instant::now(), Duration::ZERO), None);
    }
}
