//! The road state machine under a sequence of events: a main road and a joiner road with
//! fixed keys exchange datagrams over a fuzzer-controlled wire, in the profile the first byte
//! chooses (the fast one negotiated, or the compatible one). The input is then a list of
//! operations: advance time (firing due timers), deliver, drop, duplicate or corrupt the
//! datagram in flight, deliver it mutated and validly re-signed by its sender, inject raw
//! bytes, or call the application API (join, send, remove). Besides never panicking, the
//! roads must stay consistent: every datagram they emit parses, timers never stay due after
//! being handled (no livelock), and every message ends at most once, and only one they sent.
#![no_main]

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use raet_proto::crypto::Signer;
use raet_proto::keep::{apply_now, AutoMode, MemKeep, Snapshot};
use raet_proto::packet::body::BodyMap;
use raet_proto::packet::fast::FastHead;
use raet_proto::packet::{self, FootKind};
use raet_proto::road::{Event, MessageId, Profile, Road, RoadConfig};
use raet_proto::Transmit;
use raet_sim::{mutate, world};

/// Datagrams kept in flight at most (older ones are lost).
const MAX_IN_FLIGHT: usize = 256;
/// Handling a timer may leave the next one due at once (a long burst goes out in chunks),
/// but never this many times in a row.
const MAX_IMMEDIATE_TIMERS: usize = 10_000;

/// The fuzzer's bytes, consumed front to back (missing bytes read as zero).
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        *first
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }
}

/// One road with what the harness knows about it.
struct Estate {
    addr: SocketAddr,
    road: Road,
    /// Where its persist ops go (and its role reads are answered from).
    keep: MemKeep,
    signer: Signer,
    /// Messages it was asked to send.
    sent: BTreeSet<MessageId>,
    /// Messages that ended (delivered or failed).
    ended: BTreeSet<MessageId>,
}

impl Estate {
    fn new(name: &str, port: u16, main: bool, seed: u8, profile: Profile, now: Instant) -> Estate {
        let addr = world::addr(port);
        let mut config = RoadConfig::new(name, addr);
        config.main = main;
        config.profile = profile;
        config.auto = AutoMode::Always;
        config.mutable = true;
        let road = Road::new(
            config,
            Some(world::keys(seed)),
            Snapshot::default(),
            [seed; 32],
            now,
        )
        .expect("a valid configuration");
        Estate {
            addr,
            road,
            keep: MemKeep::new(),
            signer: world::keys(seed).0,
            sent: BTreeSet::new(),
            ended: BTreeSet::new(),
        }
    }

    /// Applies its persist ops, moves its datagrams onto the wire (checking each) and checks
    /// its events.
    fn drain(&mut self, now: Instant, wire: &mut VecDeque<(SocketAddr, Transmit)>) {
        apply_now(&mut self.road, &mut self.keep, now);
        while let Some(t) = self.road.poll_transmit() {
            if let (Err(e), Err(_)) = (packet::parse(&t.payload), FastHead::parse(&t.payload)) {
                panic!(
                    "the road emitted an unparsable datagram ({e}): {:?}",
                    t.payload
                );
            }
            if wire.len() >= MAX_IN_FLIGHT {
                wire.pop_front();
            }
            wire.push_back((self.addr, t));
        }
        while let Some(event) = self.road.poll_event() {
            if let Event::Delivered { id, .. } | Event::SendFailed { id, .. } = event {
                assert!(
                    self.sent.contains(&id),
                    "{event:?} for a message never sent"
                );
                assert!(
                    self.ended.insert(id),
                    "{event:?}: the message already ended"
                );
            }
        }
    }

    /// Fires every due timer until none is due at `now`.
    fn fire(&mut self, now: Instant, wire: &mut VecDeque<(SocketAddr, Transmit)>) {
        for _ in 0..MAX_IMMEDIATE_TIMERS {
            match self.road.poll_timeout() {
                Some(due) if due <= now => self.road.handle_timeout(now),
                _ => return,
            }
            self.drain(now, wire);
        }
        panic!("timers still due after {MAX_IMMEDIATE_TIMERS} calls at the same time");
    }

    /// The road's uid for its first remote called `name`.
    fn uid(&self, name: &str) -> Option<u32> {
        self.road
            .remotes()
            .into_iter()
            .find(|r| r.name == name)
            .map(|r| r.uid)
    }

    /// Queues a small or segmented message to `name`.
    fn send(&mut self, now: Instant, name: &str, size: usize) {
        let Some(uid) = self.uid(name) else {
            return;
        };
        let mut body = BodyMap::new();
        body.insert("blob".to_owned(), "m".repeat(size).into());
        if let Ok(id) = self.road.send(now, uid, body) {
            self.sent.insert(id);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mut now = Instant::now();
    let profile = match input.byte() & 1 {
        0 => Profile::Auto,
        _ => Profile::Compat,
    };
    let mut main = Estate::new("main", 7530, true, 1, profile, now);
    let mut other = Estate::new("other", 7531, false, 2, profile, now);
    let mut wire: VecDeque<(SocketAddr, Transmit)> = VecDeque::new();
    let _ = other.road.join(now, main.addr);
    other.drain(now, &mut wire);
    while !input.0.is_empty() {
        let op = input.byte();
        // (from, destination, payload) to deliver now, if any.
        let mut deliver: Option<(SocketAddr, SocketAddr, Vec<u8>)> = None;
        match op % 8 {
            0 => {
                now += Duration::from_millis(u64::from(input.u16()));
                main.fire(now, &mut wire);
                other.fire(now, &mut wire);
            }
            1 => deliver = wire.pop_front().map(|(from, t)| (from, t.dest, t.payload)),
            2 => {
                wire.pop_front();
            }
            3 => {
                deliver = wire
                    .front()
                    .map(|(from, t)| (*from, t.dest, t.payload.clone()))
            }
            4 => {
                let to_main = input.byte() & 1 == 0;
                let len = usize::from(input.u16() % 1500);
                let bytes = input.take(len).to_vec();
                deliver = Some(if to_main {
                    (other.addr, main.addr, bytes)
                } else {
                    (main.addr, other.addr, bytes)
                });
            }
            5 => {
                let (at, xor) = (usize::from(input.u16()), input.byte());
                deliver = wire.pop_front().map(|(from, mut t)| {
                    if !t.payload.is_empty() {
                        let i = at % t.payload.len();
                        t.payload[i] ^= xor;
                    }
                    (from, t.dest, t.payload)
                });
            }
            6 => {
                let (field, value, at) = (input.byte(), input.u32(), input.u16());
                if let Some((from, t)) = wire.pop_front() {
                    if let Ok(rx) = packet::parse(&t.payload) {
                        let mut head = rx.head.clone();
                        let mut coat = rx.coat.to_vec();
                        mutate::head(&mut head, field, value);
                        if !coat.is_empty() && field % 3 == 0 {
                            let i = usize::from(at) % coat.len();
                            coat[i] ^= 0x5a;
                        }
                        let signer = if from == main.addr {
                            &main.signer
                        } else {
                            &other.signer
                        };
                        let signed = (head.fk == FootKind::Nacl).then_some(signer);
                        if let Ok(d) = packet::pack(&head, &coat, signed) {
                            deliver = Some((from, t.dest, d));
                        }
                    }
                }
            }
            _ => {
                let size = usize::from(input.u16() % 4096);
                match input.byte() % 5 {
                    0 => {
                        let _ = other.road.join(now, main.addr);
                    }
                    1 => other.send(now, "main", size),
                    2 => main.send(now, "other", size),
                    3 => {
                        if let Some(uid) = main.uid("other") {
                            let _ = main.road.remove(now, uid);
                        }
                    }
                    _ => {
                        if let Some(uid) = other.uid("main") {
                            let _ = other.road.remove(now, uid);
                        }
                    }
                }
            }
        }
        if let Some((from, dest, payload)) = deliver {
            if dest == main.addr {
                main.road.handle_datagram(now, from, &payload);
            } else if dest == other.addr {
                other.road.handle_datagram(now, from, &payload);
            }
        }
        main.drain(now, &mut wire);
        other.drain(now, &mut wire);
    }
});
