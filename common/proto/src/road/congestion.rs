//! Congestion control of the fast profile (docs/protocol.md, *Congestion control*): one
//! controller per remote for all its message transactions, a model of the path in the
//! manner of BBR (Cardwell et al., "BBR: Congestion-Based Congestion Control", 2016):
//!
//! * every answer that confirms segments gives a **delivery-rate sample** (bytes delivered
//!   between the send of the newest confirmed segment and its confirmation, over that time)
//!   and, for a segment sent once, an **RTT sample** (RFC 6298 smoothing, and the minimum);
//! * the **bottleneck bandwidth** is the highest rate sample of the last [`BW_ROUNDS`] rounds
//!   (a round: one window of data delivered), the **minimum RTT** the lowest of the last
//!   [`MIN_RTT_WINDOW`];
//! * segments leave **paced** at `gain × bandwidth`, at most a window of
//!   `2 × bandwidth × minimum RTT` unconfirmed;
//! * **start-up** doubles the rate each round until the bandwidth stops growing by a quarter
//!   for three rounds, then **drains** the queue it built, then **probes** for more bandwidth
//!   one round in eight (gain 1.25, then 0.75 to drain it again).
//!
//! A loss is not taken as a sign of congestion by itself (random loss on a lossy path costs
//! only the lost segments); congestion shows as a rate that stops growing, and the pacing
//! keeps the sender at the rate the path delivers, so a queue that overflows is not filled
//! again and again. Application-limited samples (the sender had nothing more to send) can
//! raise the bandwidth estimate but never end the start-up.

use std::time::{Duration, Instant};

/// Rounds over which the bottleneck bandwidth is the maximum rate sample.
const BW_ROUNDS: u64 = 10;
/// How long a minimum RTT sample is kept.
const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);
/// Start-up pacing and window gain (2/ln 2).
const STARTUP_GAIN: f64 = 2.885;
/// Window gain outside the start-up.
const CWND_GAIN: f64 = 2.0;
/// The probing cycle's pacing gains, one minimum RTT each.
const PROBE_GAINS: [f64; 8] = [1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
/// A round that lost more than this share of what it sent ends the start-up (its doubling
/// overflowed a buffer: the bandwidth is found) or the probing for more (BBRv2's idea,
/// with a threshold above the random loss of a bad path).
const LOSS_THRESHOLD: f64 = 0.5;
/// The first window, before any sample: RFC 6928's ten 1,400-byte segments, or two
/// segments when they are larger (the 64 KB datagrams to loopback).
const INITIAL_WINDOW: usize = 10 * 1_400;
/// A round ends the start-up or the probing by its losses only with at least this many
/// segments lost (a few losses are noise).
const LOSS_SEGMENTS: usize = 3;
/// The window never shrinks below this many segments.
const MIN_SEGMENTS: usize = 16;
/// Pacing lets the sender run this far ahead of its schedule (the driver's timer
/// granularity), or [`BURST_SEGMENTS`] segments when that is more.
const PACING_SLACK: Duration = Duration::from_millis(2);
/// Segments that may always leave back to back.
const BURST_SEGMENTS: usize = 2;

/// The retransmission timeout never goes below this.
const MIN_RTO: Duration = Duration::from_millis(10);

/// The controller's phase.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Startup,
    Drain,
    Probe { index: usize, since: Instant },
}

/// What the controller knew when a segment left: kept with the segment for its rate sample.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamp {
    /// When the segment left.
    pub(crate) sent: Instant,
    /// When the segment most recently confirmed at our send had left.
    first_sent: Instant,
    delivered: u64,
    delivered_at: Instant,
    app_limited: bool,
}

/// One remote's congestion controller.
#[derive(Debug)]
pub(crate) struct Congestion {
    mss: usize,
    inflight: usize,
    delivered: u64,
    delivered_at: Instant,
    /// When the segment most recently confirmed had left.
    first_sent_at: Instant,
    /// Highest rate sample (bytes/s) per recent round: (round, rate).
    rates: Vec<(u64, f64)>,
    round: u64,
    round_end: u64,
    min_rtt: Option<(Duration, Instant)>,
    srtt: Option<Duration>,
    rttvar: Duration,
    phase: Phase,
    full_bw: f64,
    full_bw_rounds: u8,
    /// Bytes confirmed and lost in the current round.
    round_acked: usize,
    round_lost: usize,
    next_send: Instant,
}

impl Congestion {
    /// A controller for segments of `mss` bytes, created at `now`.
    pub(crate) fn new(now: Instant, mss: usize) -> Self {
        Self {
            mss: mss.max(1),
            inflight: 0,
            delivered: 0,
            delivered_at: now,
            first_sent_at: now,
            rates: Vec::new(),
            round: 0,
            round_end: 0,
            min_rtt: None,
            srtt: None,
            rttvar: Duration::ZERO,
            phase: Phase::Startup,
            full_bw: 0.0,
            full_bw_rounds: 0,
            round_acked: 0,
            round_lost: 0,
            next_send: now,
        }
    }

    /// The bottleneck bandwidth estimate in bytes per second (None before any sample).
    pub(crate) fn bandwidth(&self) -> Option<f64> {
        self.rates.iter().map(|&(_, r)| r).reduce(f64::max)
    }

    fn gains(&self) -> (f64, f64) {
        match self.phase {
            Phase::Startup => (STARTUP_GAIN, STARTUP_GAIN),
            Phase::Drain => (1.0 / STARTUP_GAIN, STARTUP_GAIN),
            Phase::Probe { index, .. } => (PROBE_GAINS[index], CWND_GAIN),
        }
    }

    /// The window: bytes that may be sent and not yet confirmed.
    pub(crate) fn window(&self) -> usize {
        let floor = MIN_SEGMENTS * self.mss;
        match (self.bandwidth(), self.min_rtt) {
            (Some(bw), Some((rtt, _))) => {
                let bdp = bw * rtt.as_secs_f64() * self.gains().1;
                (bdp as usize).max(floor)
            }
            _ => INITIAL_WINDOW.max(2 * self.mss),
        }
    }

    /// The pacing rate in bytes per second (None before an RTT and a bandwidth sample: not
    /// paced yet): `gain × bandwidth`, but
    /// never slower than the smallest window per minimum RTT (a bandwidth sampled across an
    /// idle or stalled stretch, or while the application sent little, must not hold the
    /// sender back; to loopback, where the RTT is the receiver's processing, this leaves
    /// the window alone in charge).
    fn pacing_rate(&self) -> Option<f64> {
        let (rtt, _) = self.min_rtt?;
        let floor = (MIN_SEGMENTS * self.mss) as f64 / rtt.as_secs_f64().max(1e-6);
        self.bandwidth().map(|bw| (bw * self.gains().0).max(floor))
    }

    /// Bytes sent and not yet confirmed or declared lost.
    pub(crate) fn inflight(&self) -> usize {
        self.inflight
    }

    /// Whether `bytes` more may leave at `now`: `Ok`, or `Err(Some(t))` paced until `t`,
    /// or `Err(None)` when the window is full (an answer will open it).
    pub(crate) fn admit(&self, now: Instant, bytes: usize) -> Result<(), Option<Instant>> {
        if self.inflight > 0 && self.inflight + bytes > self.window() {
            return Err(None);
        }
        let slack = self.pacing_rate().map_or(Duration::ZERO, |rate| {
            let segments = Duration::from_secs_f64((BURST_SEGMENTS * self.mss) as f64 / rate);
            PACING_SLACK.max(segments)
        });
        match self.next_send.checked_sub(slack) {
            Some(t) if t > now => Err(Some(t)),
            _ => Ok(()),
        }
    }

    /// `bytes` left at `now` (`app_limited`: nothing else was waiting to be sent).
    pub(crate) fn sent(&mut self, now: Instant, bytes: usize, app_limited: bool) -> Stamp {
        self.inflight += bytes;
        if let Some(rate) = self.pacing_rate() {
            let start = self.next_send.max(now);
            self.next_send = start + Duration::from_secs_f64(bytes as f64 / rate);
        }
        Stamp {
            sent: now,
            first_sent: self.first_sent_at,
            delivered: self.delivered,
            delivered_at: self.delivered_at,
            app_limited,
        }
    }

    /// `bytes` sent are known lost (or abandoned): no longer in flight.
    pub(crate) fn lost(&mut self, bytes: usize) {
        self.inflight = self.inflight.saturating_sub(bytes);
        self.round_lost += bytes;
    }

    /// `bytes` are confirmed at `now`; `newest` is the stamp of the most recently sent of
    /// them, `first_send` whether that was its only transmission (an RTT sample).
    pub(crate) fn delivered(&mut self, now: Instant, bytes: usize, newest: Stamp, once: bool) {
        self.inflight = self.inflight.saturating_sub(bytes);
        self.delivered += bytes as u64;
        self.delivered_at = now;
        self.round_acked += bytes;
        if once {
            self.rtt_sample(now, now.saturating_duration_since(newest.sent));
        }
        let round_started = newest.delivered >= self.round_end;
        if round_started {
            self.round += 1;
            self.round_end = self.delivered;
        }
        self.first_sent_at = newest.sent;
        // the longer of the send and the confirmation intervals: confirmations that arrive
        // together (a filled gap) never make the path look faster than we sent
        let interval = now
            .saturating_duration_since(newest.delivered_at)
            .max(newest.sent.saturating_duration_since(newest.first_sent));
        if !interval.is_zero() {
            let rate = (self.delivered - newest.delivered) as f64 / interval.as_secs_f64();
            let best = self.bandwidth().unwrap_or(0.0);
            if !newest.app_limited || rate > best {
                self.add_rate(rate);
            }
        }
        if round_started {
            self.round_ended(now, newest.app_limited);
        }
        self.end_drain(now);
        self.advance_probe(now);
    }

    fn add_rate(&mut self, rate: f64) {
        let round = self.round;
        self.rates.retain(|&(r, _)| r + BW_ROUNDS > round);
        match self.rates.last_mut() {
            Some((r, best)) if *r == round => *best = best.max(rate),
            _ => self.rates.push((round, rate)),
        }
    }

    fn rtt_sample(&mut self, now: Instant, rtt: Duration) {
        let fresh = match self.min_rtt {
            Some((min, at)) => rtt <= min || now.saturating_duration_since(at) > MIN_RTT_WINDOW,
            None => true,
        };
        if fresh {
            self.min_rtt = Some((rtt, now));
        }
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
    }

    /// End of a round: the start-up ends once the bandwidth grew less than a quarter
    /// three rounds in a row.
    fn round_ended(&mut self, now: Instant, app_limited: bool) {
        let sent = self.round_acked + self.round_lost;
        let lossy = self.round_lost >= LOSS_SEGMENTS * self.mss
            && self.round_lost as f64 > LOSS_THRESHOLD * sent as f64;
        (self.round_acked, self.round_lost) = (0, 0);
        match self.phase {
            Phase::Startup if lossy => self.phase = Phase::Drain,
            Phase::Probe { index: 0, .. } if lossy => {
                self.phase = Phase::Probe {
                    index: 1,
                    since: now,
                }
            }
            _ => {}
        }
        if app_limited {
            return;
        }
        let bw = self.bandwidth().unwrap_or(0.0);
        if self.phase == Phase::Startup {
            if bw >= self.full_bw * 1.25 {
                self.full_bw = bw;
                self.full_bw_rounds = 0;
            } else {
                self.full_bw_rounds += 1;
                if self.full_bw_rounds >= 3 {
                    self.phase = Phase::Drain;
                }
            }
        }
    }

    /// The drain ends once what is in flight fits in one bandwidth-delay product.
    fn end_drain(&mut self, now: Instant) {
        if self.phase != Phase::Drain {
            return;
        }
        let bw = self.bandwidth().unwrap_or(0.0);
        let bdp = self.min_rtt.map_or(0.0, |(rtt, _)| bw * rtt.as_secs_f64()) as usize;
        if self.inflight <= bdp {
            self.phase = Phase::Probe {
                index: 0,
                since: now,
            };
        }
    }

    /// The probing cycle moves on every minimum RTT.
    fn advance_probe(&mut self, now: Instant) {
        if let (Phase::Probe { index, since }, Some((rtt, _))) = (self.phase, self.min_rtt) {
            if now.saturating_duration_since(since) >= rtt {
                self.phase = Phase::Probe {
                    index: (index + 1) % PROBE_GAINS.len(),
                    since: now,
                };
            }
        }
    }

    /// The retransmission timeout, RFC 6298's `srtt + 4 rttvar`, at least [`MIN_RTO`]
    /// (None before any sample).
    pub(crate) fn rto(&self) -> Option<Duration> {
        self.srtt.map(|srtt| (srtt + self.rttvar * 4).max(MIN_RTO))
    }

    /// The smoothed RTT (None before any sample).
    pub(crate) fn srtt(&self) -> Option<Duration> {
        self.srtt
    }
}

#[cfg(test)]
mod tests;
