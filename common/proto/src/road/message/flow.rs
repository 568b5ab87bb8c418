//! How a message leaves in the fast profile (docs/protocol.md, *Congestion control*): its
//! segments go out as the remote's [`Congestion`] controller admits them (paced, at most a
//! window unconfirmed), every [`ANSWER_EVERY`]th one and the last before a full window with
//! the wait flag, so the receiver's answers (ack: everything up to `sn` arrived; resend:
//! everything up to `sn` but the listed numbers arrived) confirm segments as they arrive.
//! A listed segment is retransmitted once it is known lost: [`REORDER`] later transmissions
//! arrived, or it left more than 9/8 of the smoothed RTT ago; a listed segment still on its
//! way is left alone, so a window of losses is not sent again and again (no go-back-N).

use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use crate::packet::Flags;

use super::super::congestion::{Congestion, Stamp};
use super::super::fast::{payload_to, FAST_OVERHEAD};
use super::super::{Road, Uid};
use super::Messenger;

/// Transmissions between two that carry the wait flag (ask for an answer).
const ANSWER_EVERY: u64 = 4;
/// A segment reported missing is lost once this many later transmissions arrived.
const REORDER: u64 = 3;
/// How often a messenger with nothing in flight asks again for room in a full window
/// (the window is shared by every message to the remote), before an RTT is known.
const WINDOW_POLL: Duration = Duration::from_millis(1);

/// One segment's transmissions.
#[derive(Debug, Clone, Copy, Default)]
struct Segment {
    /// The controller's stamp of its last transmission.
    stamp: Option<Stamp>,
    /// The order of its last transmission among the message's.
    order: u64,
    sends: u8,
    /// Sent, neither confirmed nor declared lost.
    flying: bool,
    received: bool,
}

/// The fast profile's per-segment state of a message being sent.
#[derive(Debug)]
pub(crate) struct Flow {
    segments: Vec<Segment>,
    /// Transmissions so far.
    order: u64,
    /// Every segment below this one is confirmed.
    confirmed: u32,
    /// Segments in flight.
    flying: u32,
}

impl Flow {
    pub(super) fn new(count: u32) -> Self {
        Self {
            segments: vec![Segment::default(); count as usize],
            order: 0,
            confirmed: 0,
            flying: 0,
        }
    }

    /// Bytes of segments in flight (sent, not confirmed, not declared lost).
    fn flying_bytes(&self, m: &Messenger) -> usize {
        self.segments
            .iter()
            .enumerate()
            .filter(|(_, s)| s.flying)
            .map(|(sn, _)| wire_size(m, sn as u32))
            .sum()
    }
}

/// Bytes segment `sn` of `m` takes on the wire.
fn wire_size(m: &Messenger, sn: u32) -> usize {
    m.seg.chunk(&m.coat, sn).map_or(0, <[u8]>::len) + FAST_OVERHEAD
}

impl Road {
    /// The congestion controller of `uid`'s fast session (made at its first message).
    fn congestion(&mut self, now: Instant, uid: Uid) -> Option<&mut Congestion> {
        let limits = &self.core.config.limits;
        let remote = self.remotes.get_mut(&uid)?;
        let mss = payload_to(limits, remote.ha) + FAST_OVERHEAD;
        let fast = remote.fast.as_mut()?;
        Some(fast.cc.get_or_insert_with(|| Congestion::new(now, mss)))
    }

    /// Sends what the controller admits: retransmissions first, then new segments.
    pub(super) fn flow_send(&mut self, now: Instant, uid: Uid, m: &mut Messenger) {
        let Some(mut flow) = m.flow.take() else {
            return;
        };
        m.resume = None;
        let idle = self.remotes.get(&uid).is_none_or(|r| r.outbox.is_empty());
        loop {
            let (sn, again) = match m.misseds.front() {
                Some(&sn) => (sn, true),
                None if m.current < m.count => (m.current, false),
                None => break,
            };
            let Some(segment) = flow.segments.get(sn as usize).copied() else {
                break;
            };
            if again && (segment.received || segment.flying) {
                m.pop_missed();
                continue;
            }
            let bytes = wire_size(m, sn);
            let more =
                m.misseds.len() > usize::from(again) || m.current + u32::from(!again) < m.count;
            let Some(cc) = self.congestion(now, uid) else {
                break;
            };
            match cc.admit(now, bytes) {
                Ok(()) => {}
                Err(paced) => {
                    let flying = flow.flying > 0;
                    let poll = cc
                        .srtt()
                        .map_or(WINDOW_POLL, |rtt| (rtt / 4).max(WINDOW_POLL));
                    m.resume = paced.or((!flying).then(|| now + poll));
                    let stats = &mut self.core.stats;
                    match paced {
                        Some(_) => stats.fast_paced += 1,
                        None => stats.fast_window_full += 1,
                    }
                    break;
                }
            }
            let full = cc.inflight() + 2 * bytes > cc.window();
            let stamp = cc.sent(now, bytes, !more && idle);
            let ask = !more || full || flow.order % ANSWER_EVERY == ANSWER_EVERY - 1;
            if again {
                m.pop_missed();
                self.core.stats.fast_retransmit += 1;
            } else {
                m.current += 1;
                m.sent = m.sent.max(m.current);
            }
            let resent = again && m.acked;
            if let Some(fg) = m.flag(sn) {
                fg.set(Flags::WF, ask);
                fg.set(Flags::AF, resent);
            }
            if let Some(s) = flow.segments.get_mut(sn as usize) {
                *s = Segment {
                    stamp: Some(stamp),
                    order: flow.order,
                    sends: s.sends.saturating_add(1),
                    flying: true,
                    received: false,
                };
                flow.flying += 1;
            }
            flow.order += 1;
            self.send_segment(now, uid, m, sn);
        }
        m.flow = Some(flow);
    }

    /// An answer of the receiver: every segment of `covered` arrived but those in
    /// `misseds` (sorted). Confirms, declares losses, and sends what the window now admits.
    pub(super) fn flow_answer(
        &mut self,
        now: Instant,
        uid: Uid,
        m: &mut Messenger,
        covered: RangeInclusive<u32>,
        misseds: &[u32],
    ) {
        let Some(mut flow) = m.flow.take() else {
            return;
        };
        let upto = (*covered.end())
            .min(m.count.saturating_sub(1))
            .min(m.sent.saturating_sub(1));
        let (mut bytes, mut newest): (usize, Option<Segment>) = (0, None);
        let mut listed = misseds.iter().copied().peekable();
        for sn in flow.confirmed.max(*covered.start())..=upto {
            while listed.next_if(|&l| l < sn).is_some() {}
            if listed.next_if_eq(&sn).is_some() {
                continue;
            }
            let Some(s) = flow.segments.get_mut(sn as usize) else {
                break;
            };
            if s.received {
                continue;
            }
            if s.flying {
                flow.flying -= 1;
                bytes += wire_size(m, sn);
            }
            if s.stamp.is_some() && newest.is_none_or(|n| n.order < s.order) {
                newest = Some(*s);
            }
            s.received = true;
            s.flying = false;
        }
        while flow
            .segments
            .get(flow.confirmed as usize)
            .is_some_and(|s| s.received)
        {
            flow.confirmed += 1;
        }
        let highest = flow.segments.get(upto as usize).map(|s| s.order);
        let srtt = self
            .congestion(now, uid)
            .and_then(|cc| cc.srtt())
            .unwrap_or(self.core.config.timers.message_redo_min);
        let mut lost = 0;
        for &sn in misseds {
            let Some(s) = flow.segments.get_mut(sn as usize) else {
                continue;
            };
            if s.received || sn > upto {
                continue;
            }
            let overtaken = highest.is_some_and(|h| h >= s.order + REORDER);
            let old = s
                .stamp
                .is_some_and(|t| now.saturating_duration_since(t.sent) > srtt * 9 / 8);
            if s.flying && !(overtaken || old) {
                continue;
            }
            if s.flying {
                s.flying = false;
                flow.flying -= 1;
                lost += wire_size(m, sn);
            }
            m.push_missed(sn);
        }
        if let Some(cc) = self.congestion(now, uid) {
            cc.lost(lost);
            if let Some(n) = newest.and_then(|n| n.stamp.map(|stamp| (stamp, n.sends == 1))) {
                cc.delivered(now, bytes, n.0, n.1);
            }
            if let Some(rto) = cc.rto() {
                m.redo.reset_to(now, rto);
            }
        }
        m.flow = Some(flow);
        self.flow_send(now, uid, m);
    }

    /// No answer for a redo interval: every segment in flight is taken as lost and sent
    /// again (the receiver answers the last one); with none in flight, nothing queued and
    /// everything sent (the answer to the last one was lost), the last one is sent again
    /// with the wait flag.
    pub(super) fn flow_timeout(&mut self, now: Instant, uid: Uid, m: &mut Messenger) {
        let Some(mut flow) = m.flow.take() else {
            return;
        };
        let mut lost = 0;
        for (sn, s) in flow.segments.iter_mut().enumerate() {
            if !s.flying {
                continue;
            }
            s.flying = false;
            lost += wire_size(m, sn as u32);
            m.push_missed(sn as u32);
        }
        flow.flying = 0;
        m.flow = Some(flow);
        if let Some(cc) = self.congestion(now, uid) {
            cc.lost(lost);
        }
        if lost > 0 || !m.misseds.is_empty() || m.current < m.count {
            return self.flow_send(now, uid, m);
        }
        if let Some(sn) = m.last {
            let acked = m.acked;
            if let Some(fg) = m.flag(sn) {
                fg.set(Flags::AF, acked);
                fg.set(Flags::WF, true);
            }
            self.send_segment(now, uid, m, sn);
        }
    }

    /// The message ended: its segments in flight are confirmed (`delivered`, a done) or
    /// abandoned.
    pub(super) fn flow_end(&mut self, now: Instant, uid: Uid, m: &Messenger, delivered: bool) {
        let Some(flow) = m.flow.as_deref() else {
            return;
        };
        let bytes = flow.flying_bytes(m);
        let newest = flow
            .segments
            .iter()
            .filter(|s| s.flying)
            .max_by_key(|s| s.order)
            .and_then(|s| s.stamp.map(|stamp| (stamp, s.sends == 1)));
        let Some(cc) = self.congestion(now, uid) else {
            return;
        };
        match newest {
            Some((stamp, once)) if delivered => cc.delivered(now, bytes, stamp, once),
            _ => cc.lost(bytes),
        }
    }
}
