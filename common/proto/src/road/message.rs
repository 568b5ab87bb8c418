//! Message transaction (tk 0): Messenger and Messengent (spec §10): segmentation, burst and
//! wait flag, acks, resend of missed segments, done, duplicate suppression.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use crate::packet::{
    BodyKind, CoatKind, Flags, FootKind, Head, HeadKind, PacketError, PacketKind, Reassembler,
    Segmenter, TransactionKind, MAX_MESSAGE_SIZE,
};

mod flow;
mod receive;

use self::flow::Flow;
use super::budget::Reservation;
use super::core::Core;
use super::fast;
use super::remote::{sid, Outgoing, Remote};
use super::timers::Redo;
use super::transaction::{earliest, Transaction, TxIndex};
use super::SendFailure;
use super::{Event, MessageId, Road, RoadError, Rx, Uid};

/// Bytes a crypto_box coat adds to a body: 16-byte tag and the 24-byte nonce.
pub(crate) const SEAL_OVERHEAD: usize = 16 + 24;

/// Segments of a burst signed and queued per road call. A longer burst (a large message
/// sent at once) goes on at the next timer call, right away: the driver sends each chunk
/// before the next one is signed, so the receiver verifies segments while we sign the
/// rest instead of after we signed them all. The datagrams are the same.
pub const CHUNK: u32 = 16;

/// At most this many missed segment numbers per resend request (as the reference).
const MISSEDS_PER_RESEND: usize = 64;

/// Sends of one message refused by the receiver before it fails.
const MAX_ATTEMPTS: u8 = 4;

/// The head of our message packets to `remote` in transaction `ti`: the binary head, body in
/// the clear for the session key to seal, in a fast session; else signed, coated packets.
fn message_head(core: &Core, remote: &Remote, ti: u32, bk: BodyKind) -> Head {
    let (ck, fk) = match remote.fast {
        Some(_) => (CoatKind::Nada, FootKind::Nada),
        None => (CoatKind::Nacl, FootKind::Nacl),
    };
    let mut head = Head {
        se: remote.uid,
        de: remote.fuid,
        si: remote.sid,
        ti,
        ..core.template(TransactionKind::Message, bk, ck, fk)
    };
    if remote.fast.is_some() {
        head.hk = HeadKind::Binary;
    }
    head
}

/// The segmentation of a coat of `len` bytes sent with `head` to `remote`.
fn plan(core: &Core, remote: &Remote, head: &Head, len: usize) -> Result<Segmenter, PacketError> {
    match head.hk {
        HeadKind::Binary => Segmenter::sized(fast::payload_to(&core.config.limits, remote.ha), len),
        _ => Segmenter::new(head, len),
    }
}

/// Whether a coat of `sealed` bytes can be segmented for `remote` (segment count limit).
pub(crate) fn check_segmentable(
    core: &Core,
    remote: &Remote,
    sealed: usize,
) -> Result<(), RoadError> {
    let head = message_head(core, remote, sid::next(remote.tid), core.config.bk);
    plan(core, remote, &head, sealed)
        .map(|_| ())
        .map_err(|_| RoadError::MessageTooLarge {
            size: sealed,
            limit: MAX_MESSAGE_SIZE,
        })
}

/// Our side of a message we send.
pub(crate) struct Messenger {
    /// The message (kept to requeue it in a new session).
    out: Outgoing,
    /// Head template of our packets.
    head: Head,
    /// The whole sealed message (body box || nonce), segmented on the fly; in a fast session
    /// the body itself (shared with `out`, each datagram is sealed on its own).
    coat: Arc<[u8]>,
    seg: Segmenter,
    count: u32,
    /// Current af/wf flags of each segment (the reference's per-packet flags).
    flags: Vec<Flags>,
    /// Next segment of the regular sequence (an ack can move it back).
    current: u32,
    /// Segments of the regular sequence sent at least once (never moves back).
    sent: u32,
    /// End of the burst being sent (`current..burst_end` still to go out).
    burst_end: u32,
    /// Set while a burst is being sent in chunks: the next chunk is due (now).
    resume: Option<Instant>,
    /// Segments the receiver asked for again, in order, and a membership mark.
    misseds: VecDeque<u32>,
    missed: Vec<bool>,
    /// The receiver answered at least once (retransmissions then carry af).
    acked: bool,
    /// Last segment transmitted (the redo resends it).
    last: Option<u32>,
    redo: Redo,
    /// Last answer from the receiver (our bounded timeout runs from here).
    progress: Instant,
    /// The message timeout.
    limit: std::time::Duration,
    /// Its sealed bytes in the road-wide budget (given back when the Messenger is dropped).
    _reserved: Reservation,
    /// The fast profile's per-segment state (None in the compatible profile).
    flow: Option<Box<Flow>>,
}

impl Messenger {
    /// Bytes of the message being sent.
    pub(crate) fn bytes(&self) -> usize {
        self.coat.len()
    }

    /// Next timer.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        earliest(
            self.resume,
            earliest(self.redo.due(), self.progress.checked_add(self.limit)),
        )
    }

    /// Flags of segment `sn`.
    fn flag(&mut self, sn: u32) -> Option<&mut Flags> {
        self.flags.get_mut(sn as usize)
    }

    /// Queues segment `sn` to be sent again (once while queued).
    fn push_missed(&mut self, sn: u32) {
        if let Some(mark) = self.missed.get_mut(sn as usize) {
            if !*mark {
                *mark = true;
                self.misseds.push_back(sn);
            }
        }
    }

    /// Takes the first segment queued to be sent again.
    fn pop_missed(&mut self) -> Option<u32> {
        let sn = self.misseds.pop_front()?;
        if let Some(mark) = self.missed.get_mut(sn as usize) {
            *mark = false;
        }
        Some(sn)
    }
}

/// Our side of a segmented message we receive (single-packet messages complete at once).
pub(crate) struct Messengent {
    /// Head of our answers (wf, ck, fk echo the first packet received).
    head: Head,
    sc: u32,
    ml: u32,
    /// Body kind of the message (its first packet's).
    bk: BodyKind,
    tray: Reassembler,
    /// Lowest segment number still worth asking for.
    lowest: u32,
    redo: Redo,
    /// Last packet from the sender (our bounded timeout runs from here).
    progress: Instant,
    limit: std::time::Duration,
}

impl Messengent {
    /// Next timer.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        earliest(self.redo.due(), self.progress.checked_add(self.limit))
    }
}

impl Road {
    /// Starts sending a queued message to an allowed remote; false (the message back at the
    /// front of its queue, the remote in the budget's line) when its sealed size does not
    /// fit in the road-wide budget now.
    pub(crate) fn start_messenger(&mut self, now: Instant, uid: Uid, out: Outgoing) -> bool {
        let t = &self.core.config.timers;
        let (redo_min, redo_max, limit) =
            (t.message_redo_min, t.message_redo_max, t.message_limit());
        let sealed = if out.body.is_empty() {
            0
        } else {
            out.body.len() + SEAL_OVERHEAD
        };
        let budget = self.core.config.limits.max_sealed_bytes;
        let Some(reserved) = self.core.budget.reserve(sealed, budget) else {
            self.core.stats.sealed_budget_wait += 1;
            self.core.budget.wait(uid);
            if let Some(remote) = self.remotes.get_mut(&uid) {
                remote.outbox_bytes += out.body.len();
                remote.outbox.push_front(out);
            }
            return false;
        };
        let Some(remote) = self.remotes.get_mut(&uid) else {
            return false;
        };
        let ti = remote.next_tid();
        let head = message_head(&self.core, remote, ti, out.bk);
        let coat: Arc<[u8]> = if out.body.is_empty() || head.hk == HeadKind::Binary {
            Arc::clone(&out.body)
        } else {
            match remote.session.as_ref() {
                Some(session) => session.seal(&mut self.core.rng, &out.body).into(),
                None => {
                    self.fail_message(uid, out.id, SendFailure::NoSessionKey);
                    return true;
                }
            }
        };
        let seg = match plan(&self.core, remote, &head, coat.len()) {
            Ok(seg) => seg,
            Err(_) => {
                self.fail_message(uid, out.id, SendFailure::TooLarge);
                return true;
            }
        };
        let count = seg.count();
        let index = TxIndex::of_tx(&head, remote.ha);
        let flow = (head.hk == HeadKind::Binary).then(|| Box::new(Flow::new(count)));
        let mut m = Box::new(Messenger {
            out,
            head,
            coat,
            seg,
            count,
            flags: vec![Flags::default(); count as usize],
            current: 0,
            sent: 0,
            burst_end: 0,
            resume: None,
            misseds: VecDeque::new(),
            missed: vec![false; count as usize],
            acked: false,
            last: None,
            redo: Redo::new(now, redo_min, redo_max),
            progress: now,
            limit,
            _reserved: reserved,
            flow,
        });
        self.core.stats.message_initiate += 1;
        if m.flow.is_some() {
            self.flow_send(now, uid, &mut m);
        } else {
            self.messenger_burst(now, uid, &mut m);
        }
        self.insert_txn(uid, index, Transaction::Messenger(m));
        true
    }

    /// Announces a failed message.
    fn fail_message(&mut self, uid: Uid, id: MessageId, reason: SendFailure) {
        self.core.stats.message_failed += 1;
        self.core.event(Event::SendFailed { id, uid, reason });
    }

    /// Sends segment `sn` with its current flags.
    fn send_segment(&mut self, now: Instant, uid: Uid, m: &mut Messenger, sn: u32) {
        let Some(dest) = self.remotes.get(&uid).map(|r| r.ha) else {
            return;
        };
        let fg = m.flags.get(sn as usize).copied().unwrap_or_default();
        let sent = if m.head.hk == HeadKind::Binary {
            m.seg.chunk(&m.coat, sn).map(|chunk| {
                let head = m.seg.segment_head(&m.head, sn, fg);
                self.fast_emit(uid, dest, &head, PacketKind::Message, chunk)
            })
        } else {
            m.seg
                .pack_segment(&m.head, &m.coat, sn, fg)
                .map(|datagram| self.core.push_to_sign(dest, datagram))
                .map(|()| true)
        };
        match sent {
            Ok(true) => {
                self.core.stats.message_segment_tx += 1;
                m.last = Some(sn);
                m.redo.restart(now);
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(road = %self.core.config.name, error = %e, "cannot pack segment");
                self.core.stats.packing_error += 1;
            }
        }
    }

    /// Sends the next burst of the regular sequence, wf on its last segment.
    fn messenger_burst(&mut self, now: Instant, uid: Uid, m: &mut Messenger) {
        let remaining = m.count.saturating_sub(m.current);
        let burst = match self.core.config.burst {
            0 => remaining,
            b => b.min(remaining),
        };
        if burst == 0 {
            return;
        }
        let end = m.current + burst;
        if let Some(fg) = m.flag(end - 1) {
            fg.set(Flags::WF, true);
        }
        m.burst_end = end;
        self.burst_chunk(now, uid, m);
    }

    /// Sends the next [`CHUNK`] segments of the burst; the rest is resumed by the timer.
    fn burst_chunk(&mut self, now: Instant, uid: Uid, m: &mut Messenger) {
        let stop = m.burst_end.min(m.current.saturating_add(CHUNK));
        for sn in m.current..stop {
            self.send_segment(now, uid, m, sn);
            m.current = sn + 1;
        }
        m.sent = m.sent.max(m.current);
        m.resume = (m.current < m.burst_end).then_some(now);
    }

    /// Resends a burst of the missed segments: all with af, wf only on the last one.
    fn send_misseds(&mut self, now: Instant, uid: Uid, m: &mut Messenger) {
        let burst = match self.core.config.burst as usize {
            0 => m.misseds.len(),
            b => b.min(m.misseds.len()),
        };
        for i in 0..burst {
            let Some(sn) = m.pop_missed() else {
                break;
            };
            if let Some(fg) = m.flag(sn) {
                fg.set(Flags::AF, true);
                fg.set(Flags::WF, i + 1 == burst);
            }
            self.send_segment(now, uid, m, sn);
        }
    }

    /// A packet for one of our messengers.
    pub(super) fn messenger_rx(
        &mut self,
        now: Instant,
        uid: Uid,
        index: TxIndex,
        mut m: Box<Messenger>,
        rx: &Rx<'_>,
    ) {
        let pk = rx.head.pk;
        let known = matches!(
            pk,
            PacketKind::Ack | PacketKind::Resend | PacketKind::Done | PacketKind::Nack
        );
        let body = if known { self.json_body(uid, rx) } else { None };
        let Some(body) = body else {
            self.insert_txn(uid, index, Transaction::Messenger(m));
            return;
        };
        self.refresh(now, uid, Some(true));
        m.progress = now;
        match pk {
            PacketKind::Ack if m.flow.is_some() => {
                self.core.stats.message_ack_rx += 1;
                m.acked = true;
                self.flow_answer(now, uid, &mut m, 0..=rx.head.sn, &[]);
            }
            PacketKind::Resend if m.flow.is_some() => {
                self.core.stats.message_resend_rx += 1;
                m.acked = true;
                let misseds = self.misseds(&body, m.count);
                let from = body.get("from").and_then(Value::as_u64);
                let from = from.map_or(misseds.first().copied(), |f| u32::try_from(f).ok());
                let covered = from.unwrap_or(u32::MAX)..=rx.head.sn;
                self.flow_answer(now, uid, &mut m, covered, &misseds);
            }
            PacketKind::Ack => {
                self.core.stats.message_ack_rx += 1;
                m.acked = true;
                if m.misseds.is_empty() {
                    let next = rx.head.sn.saturating_add(1);
                    if m.current > next {
                        m.current = next;
                    }
                    self.messenger_burst(now, uid, &mut m);
                } else {
                    self.send_misseds(now, uid, &mut m);
                }
            }
            PacketKind::Resend => {
                self.core.stats.message_resend_rx += 1;
                m.acked = true;
                for sn in self.misseds(&body, m.count) {
                    m.push_missed(sn);
                }
                self.send_misseds(now, uid, &mut m);
            }
            PacketKind::Done => {
                self.flow_end(now, uid, &m, true);
                self.core.stats.message_initiate_complete += 1;
                self.core.event(Event::Delivered { id: m.out.id, uid });
                self.pump(now, uid);
                return;
            }
            _ => {
                self.core.stats.message_reject_rx += 1;
                if m.head.hk == HeadKind::Binary && rx.head.hk != HeadKind::Binary {
                    self.fast_refused_by(uid);
                }
                self.flow_end(now, uid, &m, false);
                self.messenger_nacked(now, uid, m);
                return;
            }
        }
        self.insert_txn(uid, index, Transaction::Messenger(m));
    }

    /// The segment numbers a resend body lists, up to the first that is not one of a
    /// message of `count` segments (counted as `invalid_misseds`).
    fn misseds(&mut self, body: &serde_json::Map<String, Value>, count: u32) -> Vec<u32> {
        let numbers = body.get("misseds").and_then(Value::as_array);
        let mut misseds = Vec::new();
        for n in numbers.into_iter().flatten() {
            match n.as_u64().and_then(|v| u32::try_from(v).ok()) {
                Some(sn) if sn < count => misseds.push(sn),
                _ => {
                    self.core.stats.invalid_misseds += 1;
                    break;
                }
            }
        }
        misseds
    }

    /// The receiver nacked: the message was not delivered (a receiver of this implementation
    /// answers a copy of a message it delivered with done, never with a nack). It goes back
    /// to the queue, a fresh allow first unless one is under way; after [`MAX_ATTEMPTS`]
    /// refusals it fails. A nack is never taken as a proof of receipt.
    fn messenger_nacked(&mut self, now: Instant, uid: Uid, m: Box<Messenger>) {
        let Some(remote) = self.remotes.get_mut(&uid) else {
            return;
        };
        if remote.allowed == Some(true) && !remote.allow_in_process() {
            remote.allowed = None;
        }
        self.requeue(now, uid, m.out);
    }

    /// Puts a refused message back at the front of the queue (bounded attempts).
    fn requeue(&mut self, now: Instant, uid: Uid, mut out: Outgoing) {
        out.attempts += 1;
        if out.attempts >= MAX_ATTEMPTS {
            self.fail_message(uid, out.id, SendFailure::Refused);
        } else if let Some(remote) = self.remotes.get_mut(&uid) {
            self.core.stats.message_requeued += 1;
            out.queued = now;
            remote.outbox_bytes += out.body.len();
            remote.outbox.push_front(out);
        }
        self.pump(now, uid);
    }

    /// A messenger's timers: our bounded timeout, redo (resend the last segment, with af
    /// once the receiver answered).
    pub(super) fn messenger_timer(
        &mut self,
        now: Instant,
        uid: Uid,
        index: TxIndex,
        mut m: Box<Messenger>,
    ) {
        if m.progress.checked_add(m.limit).is_some_and(|d| now >= d) {
            self.core.stats.message_timeout += 1;
            self.flow_end(now, uid, &m, false);
            self.fail_message(uid, m.out.id, SendFailure::NoAnswer);
            self.pump(now, uid);
            return;
        }
        let resume = m.resume.is_some_and(|t| now >= t);
        if resume && m.flow.is_some() {
            self.flow_send(now, uid, &mut m);
        } else if resume {
            self.burst_chunk(now, uid, &mut m);
        } else if m.redo.expired(now) && m.flow.is_some() {
            m.redo.backoff(now);
            self.core.stats.redo_segment += 1;
            self.flow_timeout(now, uid, &mut m);
        } else if m.redo.expired(now) {
            m.redo.backoff(now);
            if let Some(sn) = m.last {
                if m.acked {
                    if let Some(fg) = m.flag(sn) {
                        fg.set(Flags::AF, true);
                    }
                }
                self.core.stats.redo_segment += 1;
                self.send_segment(now, uid, &mut m, sn);
            }
        }
        self.insert_txn(uid, index, Transaction::Messenger(m));
    }

    /// Ends a messenger with a nack (remote removed).
    pub(super) fn messenger_nack(
        &mut self,
        _now: Instant,
        uid: Uid,
        m: Messenger,
        reason: SendFailure,
    ) {
        if let Some(dest) = self.remotes.get(&uid).map(|r| r.ha) {
            self.emit_to(uid, dest, &m.head, PacketKind::Nack, &[]);
        }
        self.fail_message(uid, m.out.id, reason);
    }

    /// A messenger of an old session: nack it and put its message back at the front of the
    /// queue (the reference's `saveMessage`).
    pub(super) fn requeue_messenger(&mut self, now: Instant, uid: Uid, m: Messenger) {
        let Some(remote) = self.remotes.get(&uid) else {
            return;
        };
        let dest = remote.ha;
        self.emit_to(uid, dest, &m.head, PacketKind::Nack, &[]);
        let mut out = m.out;
        out.queued = now;
        if let Some(remote) = self.remotes.get_mut(&uid) {
            remote.outbox_bytes += out.body.len();
            remote.outbox.push_front(out);
        }
    }
}
