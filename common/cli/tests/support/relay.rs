//! A seeded lossy UDP relay between two real peers on loopback, for tests of the road over
//! real sockets under heavy loss.
//!
//! The relay holds two sockets on 127.0.0.1, each on a kernel-picked port for the whole
//! run: peer A sends to the A side ([`Relay::a_side`]), and each datagram goes on from the
//! B side to peer B's address; B answers the B side (the only source of A's datagrams it
//! ever sees), and those go on from the A side to A (the source of the first datagram the
//! A side received). On the way every datagram is dropped with probability `loss`,
//! otherwise copied once more with probability `duplicate`; each copy is held back with
//! probability `reorder` (released right after the next copy of its direction, or after
//! [`HOLD`] if none comes) or else sent after a random delay up to `delay`. The impairment
//! can change during a run ([`Relay::impair`]). Each direction draws from its own RNG seeded
//! from the relay's seed and counts what it did ([`Counts`]).
//!
//! Each direction runs on a thread that wakes at least every [`TICK`]; dropping the relay
//! (or [`Relay::finish`]) stops and joins both.

use std::collections::BTreeMap;
use std::io::{self, ErrorKind};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Longest a direction's thread waits for a datagram before looking at its queue and the
/// stop flag again.
const TICK: Duration = Duration::from_millis(10);
/// Longest a held-back datagram waits for the next one to overtake it.
const HOLD: Duration = Duration::from_millis(20);

/// What happens to the datagrams, in both directions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Impairment {
    /// Probability that a datagram is dropped.
    pub loss: f64,
    /// Probability that a datagram not dropped is sent twice.
    pub duplicate: f64,
    /// Probability that a copy is held back until the next one has been sent.
    pub reorder: f64,
    /// Upper bound of the random delay of each copy not held back.
    pub delay: Duration,
}

/// What one direction of the relay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Datagrams received from the sending peer.
    pub received: u64,
    /// Datagrams (copies included) sent on to the other peer.
    pub forwarded: u64,
    /// Datagrams dropped by `loss`.
    pub dropped: u64,
    /// Extra copies made by `duplicate`.
    pub duplicated: u64,
    /// Copies held back by `reorder`.
    pub reordered: u64,
}

/// A running relay; dropping it stops it.
pub(crate) struct Relay {
    a_side: SocketAddr,
    impairment: Arc<Mutex<Impairment>>,
    stop: Arc<AtomicBool>,
    directions: Vec<JoinHandle<Counts>>,
}

/// Where a direction sends: a fixed address (B), or the address the other direction
/// learned (A, once it has sent).
enum Target {
    Fixed(SocketAddr),
    Learned(Arc<OnceLock<SocketAddr>>),
}

/// One direction: receives on `inbound`, sends from `outbound` to `target`.
struct Direction {
    inbound: UdpSocket,
    outbound: UdpSocket,
    target: Target,
    /// Where to record the source of the datagrams received (A's address, for the other
    /// direction's [`Target::Learned`]).
    learn: Option<Arc<OnceLock<SocketAddr>>>,
    impairment: Arc<Mutex<Impairment>>,
    rng: ChaCha8Rng,
    /// Copies waiting for their time, by (due, arrival order).
    queue: BTreeMap<(Instant, u64), Vec<u8>>,
    arrivals: u64,
    /// A copy held back, and when it is released if nothing overtakes it.
    held: Option<(Instant, Vec<u8>)>,
    counts: Counts,
}

impl Relay {
    /// Starts a relay towards peer B at `b` with the impairments `impairment`, its random
    /// decisions drawn from `seed`.
    pub(crate) fn start(seed: u64, impairment: Impairment, b: SocketAddr) -> io::Result<Self> {
        let a_side = UdpSocket::bind("127.0.0.1:0")?;
        let b_side = UdpSocket::bind("127.0.0.1:0")?;
        let a_peer = Arc::new(OnceLock::new());
        let impairment = Arc::new(Mutex::new(impairment));
        let stop = Arc::new(AtomicBool::new(false));
        let to_b = Direction::new(
            a_side.try_clone()?,
            b_side.try_clone()?,
            Target::Fixed(b),
            Some(Arc::clone(&a_peer)),
            Arc::clone(&impairment),
            seed.wrapping_mul(2),
        );
        let to_a = Direction::new(
            b_side,
            a_side.try_clone()?,
            Target::Learned(a_peer),
            None,
            Arc::clone(&impairment),
            seed.wrapping_mul(2) + 1,
        );
        let directions = [to_b, to_a]
            .into_iter()
            .map(|direction| {
                let stop = Arc::clone(&stop);
                thread::spawn(move || direction.run(&stop))
            })
            .collect();
        Ok(Self {
            a_side: a_side.local_addr()?,
            impairment,
            stop,
            directions,
        })
    }

    /// The address peer A sends to (and joins).
    pub(crate) fn a_side(&self) -> SocketAddr {
        self.a_side
    }

    /// Applies `impairment` to the datagrams received from now on.
    pub(crate) fn impair(&self, impairment: Impairment) {
        *lock(&self.impairment) = impairment;
    }

    /// Stops the relay; what each direction did, A to B first.
    pub(crate) fn finish(mut self) -> [Counts; 2] {
        let counts: Vec<Counts> = self
            .stop()
            .into_iter()
            .map(|counts| counts.expect("a relay direction panicked"))
            .collect();
        counts.try_into().expect("the relay has two directions")
    }

    /// Stops both directions and waits for their threads.
    fn stop(&mut self) -> Vec<thread::Result<Counts>> {
        self.stop.store(true, Ordering::Relaxed);
        self.directions.drain(..).map(JoinHandle::join).collect()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // A panicking direction has reported itself; the test is failing already.
        let _ = self.stop();
    }
}

impl Direction {
    fn new(
        inbound: UdpSocket,
        outbound: UdpSocket,
        target: Target,
        learn: Option<Arc<OnceLock<SocketAddr>>>,
        impairment: Arc<Mutex<Impairment>>,
        seed: u64,
    ) -> Self {
        Self {
            inbound,
            outbound,
            target,
            learn,
            impairment,
            rng: ChaCha8Rng::seed_from_u64(seed),
            queue: BTreeMap::new(),
            arrivals: 0,
            held: None,
            counts: Counts::default(),
        }
    }

    /// Relays until `stop` is set; returns the counts.
    fn run(mut self, stop: &AtomicBool) -> Counts {
        let mut buf = vec![0u8; 65_536];
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let next = self
                .queue
                .keys()
                .next()
                .map(|&(due, _)| due)
                .into_iter()
                .chain(self.held.as_ref().map(|&(until, _)| until))
                .min();
            let wait = next.map_or(TICK, |at| at.saturating_duration_since(now).min(TICK));
            // A zero read timeout is refused: wait at least a millisecond.
            self.inbound
                .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
                .expect("set the relay's read timeout");
            match self.inbound.recv_from(&mut buf) {
                Ok((len, from)) => {
                    if let Some(learn) = &self.learn {
                        let _ = learn.set(from);
                    }
                    self.admit(&buf[..len], Instant::now());
                }
                // Timeouts, and ICMP errors of earlier sends to a peer that has exited.
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::ConnectionRefused
                    ) => {}
                Err(e) => panic!("relay receive: {e}"),
            }
            self.release(Instant::now());
        }
        self.counts
    }

    /// A datagram received at `now`: dropped, or queued once or twice.
    fn admit(&mut self, datagram: &[u8], now: Instant) {
        self.counts.received += 1;
        let impairment = *lock(&self.impairment);
        if self.rng.gen_bool(impairment.loss) {
            self.counts.dropped += 1;
            return;
        }
        let copies = if self.rng.gen_bool(impairment.duplicate) {
            self.counts.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            self.schedule(datagram.to_vec(), now, &impairment);
        }
    }

    /// Holds a copy back, or queues it after a random delay (a copy held back before goes
    /// right after it).
    fn schedule(&mut self, copy: Vec<u8>, now: Instant, impairment: &Impairment) {
        if self.held.is_none() && self.rng.gen_bool(impairment.reorder) {
            self.counts.reordered += 1;
            self.held = Some((now + HOLD, copy));
            return;
        }
        let max = u64::try_from(impairment.delay.as_micros()).unwrap_or(u64::MAX);
        let due = now + Duration::from_micros(self.rng.gen_range(0..=max));
        self.enqueue(due, copy);
        if let Some((_, held)) = self.held.take() {
            self.enqueue(due, held);
        }
    }

    fn enqueue(&mut self, due: Instant, copy: Vec<u8>) {
        self.arrivals += 1;
        self.queue.insert((due, self.arrivals), copy);
    }

    /// Sends every copy due by `now` (a held copy whose wait is over first goes in the
    /// queue).
    fn release(&mut self, now: Instant) {
        if self.held.as_ref().is_some_and(|&(until, _)| until <= now) {
            if let Some((until, held)) = self.held.take() {
                self.enqueue(until, held);
            }
        }
        let dest = match &self.target {
            Target::Fixed(addr) => Some(*addr),
            Target::Learned(addr) => addr.get().copied(),
        };
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let copy = entry.remove();
            match dest {
                Some(dest) => {
                    // A send fails only once the peer has exited: the copy is lost.
                    let _ = self.outbound.send_to(&copy, dest);
                    self.counts.forwarded += 1;
                }
                None => self.counts.dropped += 1,
            }
        }
    }
}

/// The impairment, even if a thread panicked holding it (it is a plain value).
fn lock(impairment: &Mutex<Impairment>) -> std::sync::MutexGuard<'_, Impairment> {
    impairment
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
