//! The road's datagrams in batches (quinn-udp, where the kernel has the means): a read takes
//! up to 32 datagrams in one system call (`recvmmsg`), and with UDP GRO one buffer holds
//! several datagrams of one size from one sender; a run of datagrams of one size to one
//! destination leaves in one `sendmsg` with UDP GSO. Without them, one datagram per call.
//!
//! quinn-udp also sets the don't-fragment bit (`IP_PMTUDISC_PROBE`): a datagram larger than
//! the interface MTU fails to send (counted as `udp_send_error`) instead of leaving in IP
//! fragments; the road's datagram sizes (1 KB compatible packets, 1,400-byte class fast
//! datagrams off-host) are below it.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use quinn_udp::{RecvMeta, UdpSockRef, UdpSocketState, BATCH_SIZE};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::Transmit;

/// A receive buffer: the largest UDP payload, so an oversized datagram is seen whole (and
/// rejected by the codec) instead of being silently truncated; a GRO batch is at most as
/// large.
const RECV_BUFFER_SIZE: usize = 65_536;

/// The most bytes one GSO send carries: the largest UDP payload over IPv4.
const GSO_MAX_BYTES: usize = 65_507;

/// The stack's UDP socket and its batch buffers.
pub(super) struct Udp {
    socket: UdpSocket,
    state: UdpSocketState,
    /// Receive buffers: one at first, doubled (up to [`BATCH_SIZE`]) each time a read that
    /// filled them all is followed by one that finds more, so a stack that sees a datagram
    /// at a time keeps 64 KB (a swarm holds thousands of stacks) and one with a backlog
    /// reads a batch per call.
    bufs: Vec<Vec<u8>>,
    meta: Vec<RecvMeta>,
    /// The last read filled every buffer.
    filled_all: bool,
    /// A GSO run's datagrams, back to back.
    run: Vec<u8>,
}

/// A send that failed: where to, how many bytes, why.
pub(super) struct SendError {
    pub(super) dest: SocketAddr,
    pub(super) len: usize,
    pub(super) error: io::Error,
}

impl Udp {
    pub(super) fn new(socket: UdpSocket) -> io::Result<Self> {
        let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
        Ok(Self {
            socket,
            state,
            bufs: vec![vec![0; RECV_BUFFER_SIZE]],
            meta: vec![RecvMeta::default()],
            filled_all: false,
            run: Vec::new(),
        })
    }

    /// Waits until a read may find datagrams.
    pub(super) async fn readable(&self) -> io::Result<()> {
        self.socket.readable().await
    }

    /// Reads what one system call returns and hands each datagram to `each`. Returns how many
    /// datagrams were read; 0 when none was waiting.
    pub(super) fn try_recv(
        &mut self,
        mut each: impl FnMut(SocketAddr, &[u8]),
    ) -> io::Result<usize> {
        let Self {
            socket,
            state,
            bufs,
            meta,
            filled_all,
            ..
        } = self;
        let capacity = bufs.len();
        let mut slices: Vec<IoSliceMut<'_>> = bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        let filled = match socket.try_io(Interest::READABLE, || {
            state.recv(UdpSockRef::from(&*socket), &mut slices, meta)
        }) {
            Ok(filled) => filled,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                *filled_all = false;
                return Ok(0);
            }
            Err(e) => return Err(e),
        };
        let mut count = 0;
        for (buf, meta) in bufs.iter().zip(meta.iter()).take(filled) {
            let data = buf.get(..meta.len).unwrap_or_default();
            // With GRO, `stride` is the size of each datagram but the last.
            let stride = if meta.stride == 0 {
                meta.len
            } else {
                meta.stride
            };
            if data.is_empty() {
                each(meta.addr, data);
                count += 1;
            }
            for datagram in data.chunks(stride.max(1)) {
                each(meta.addr, datagram);
                count += 1;
            }
        }
        if *filled_all && capacity < BATCH_SIZE {
            let more = capacity.min(BATCH_SIZE - capacity);
            bufs.extend((0..more).map(|_| vec![0; RECV_BUFFER_SIZE]));
            meta.resize(bufs.len(), RecvMeta::default());
        }
        *filled_all = filled == capacity;
        Ok(count)
    }

    /// Sends `transmits` in order, waiting for the socket when its buffer is full (nothing is
    /// dropped). A run of datagrams of one size to one destination (its last may be shorter)
    /// leaves in one GSO call; if the kernel refuses GSO, it is turned off and the run sent
    /// one datagram at a time. Returns the sends that failed.
    pub(super) async fn send(&mut self, transmits: &[Transmit]) -> Vec<SendError> {
        let mut failed = Vec::new();
        let mut rest = transmits;
        while let Some(first) = rest.first() {
            let run = self.run_length(rest);
            let segments = rest.get(..run).unwrap_or_default();
            let result = if run == 1 {
                self.send_one(first.dest, &first.payload, None).await
            } else {
                let mut contents = std::mem::take(&mut self.run);
                contents.clear();
                for transmit in segments {
                    contents.extend_from_slice(&transmit.payload);
                }
                let result = self
                    .send_one(first.dest, &contents, Some(first.payload.len()))
                    .await;
                self.run = contents;
                result
            };
            match result {
                Ok(()) => {}
                // GSO refused: quinn-udp has turned it off; the run goes again, one by one.
                Err(_) if run > 1 && self.state.max_gso_segments() == 1 => continue,
                Err(error) => failed.push(SendError {
                    dest: first.dest,
                    len: segments.iter().map(|t| t.payload.len()).sum(),
                    error,
                }),
            }
            rest = rest.get(run..).unwrap_or_default();
        }
        failed
    }

    /// How many of `transmits`, from the first, may leave in one GSO send.
    fn run_length(&self, transmits: &[Transmit]) -> usize {
        let Some(first) = transmits.first() else {
            return 0;
        };
        let size = first.payload.len();
        let mut total = size;
        let mut run = 1;
        for next in transmits
            .iter()
            .skip(1)
            .take(self.state.max_gso_segments().saturating_sub(1))
        {
            let len = next.payload.len();
            if next.dest != first.dest || len > size || len == 0 || total + len > GSO_MAX_BYTES {
                break;
            }
            total += len;
            run += 1;
            if len < size {
                break;
            }
        }
        run
    }

    async fn send_one(
        &self,
        destination: SocketAddr,
        contents: &[u8],
        segment_size: Option<usize>,
    ) -> io::Result<()> {
        let transmit = quinn_udp::Transmit {
            destination,
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        };
        loop {
            match self.socket.try_io(Interest::WRITABLE, || {
                self.state
                    .try_send(UdpSockRef::from(&self.socket), &transmit)
            }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.socket.writable().await?,
                result => return result,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn bound() -> Udp {
        let socket = super::super::bind_socket(SocketAddr::from(([127, 0, 0, 1], 0)));
        Udp::new(UdpSocket::from_std(socket.expect("bind")).expect("tokio")).expect("udp state")
    }

    fn datagram(dest: SocketAddr, tag: u8, len: usize) -> Transmit {
        Transmit {
            dest,
            payload: vec![tag; len],
        }
    }

    #[tokio::test]
    async fn a_run_is_one_destination_one_size_and_a_shorter_last() {
        let udp = bound();
        let (a, b) = (
            SocketAddr::from(([127, 0, 0, 1], 1)),
            SocketAddr::from(([127, 0, 0, 2], 1)),
        );
        let gso = udp.state.max_gso_segments();
        let same: Vec<Transmit> = (0..100).map(|i| datagram(a, i, 1_000)).collect();
        assert_eq!(
            udp.run_length(&same),
            gso.min(65),
            "65 x 1,000 bytes fit, 66 do not"
        );
        if gso == 1 {
            return; // no GSO here: every datagram is its own send
        }
        let mixed = [
            datagram(a, 0, 1_000),
            datagram(a, 1, 1_000),
            datagram(b, 2, 1_000),
        ];
        assert_eq!(udp.run_length(&mixed), 2, "another destination ends a run");
        let grows = [datagram(a, 0, 1_000), datagram(a, 1, 1_001)];
        assert_eq!(udp.run_length(&grows), 1, "a larger datagram ends a run");
        let shorter = [
            datagram(a, 0, 1_000),
            datagram(a, 1, 999),
            datagram(a, 2, 999),
        ];
        assert_eq!(
            udp.run_length(&shorter),
            2,
            "a shorter datagram is a run's last"
        );
        let empty = [datagram(a, 0, 1_000), datagram(a, 1, 0)];
        assert_eq!(udp.run_length(&empty), 1, "an empty datagram leaves alone");
    }

    /// A stack that reads one datagram at a time (a swarm's minion) keeps one buffer; with a
    /// backlog the buffers grow (the test below).
    #[tokio::test]
    async fn a_datagram_at_a_time_keeps_one_buffer() {
        let mut tx = bound();
        let mut rx = bound();
        let dest = rx.socket.local_addr().expect("addr");
        for i in 0..5 {
            assert!(tx.send(&[datagram(dest, i, 100)]).await.is_empty());
            let mut got = 0;
            while got == 0 {
                rx.readable().await.expect("readable");
                got = rx
                    .try_recv(|_, data| assert_eq!(data, [i; 100]))
                    .expect("recv");
            }
            assert_eq!(got, 1);
            assert_eq!(rx.try_recv(|_, _| {}).expect("recv"), 0, "nothing more");
        }
        assert_eq!(rx.bufs.len(), 1);
    }

    /// What leaves in runs arrives as the datagrams it was made of, in order, whatever the
    /// kernel coalesced on the way (GRO) or read in one call (recvmmsg).
    #[tokio::test]
    async fn runs_arrive_as_the_datagrams_they_were() {
        let mut tx = bound();
        let mut rx = bound();
        let dest = rx.socket.local_addr().expect("addr");
        let from = tx.socket.local_addr().expect("addr");
        let mut sent: Vec<Transmit> = (0..150u8).map(|i| datagram(dest, i, 1_200)).collect();
        sent.push(datagram(dest, 150, 7));
        sent.extend((151..160u8).map(|i| datagram(dest, i, 30_000)));
        sent.push(datagram(dest, 160, 0));
        let count = sent.len();
        let reader = tokio::spawn(async move {
            let mut received: Vec<Vec<u8>> = Vec::new();
            while received.len() < count {
                rx.readable().await.expect("readable");
                rx.try_recv(|addr, data| {
                    assert_eq!(addr, from);
                    received.push(data.to_vec());
                })
                .expect("recv");
            }
            (received, rx.bufs.len())
        });
        assert!(tx.send(&sent).await.is_empty(), "every send succeeds");
        let (received, bufs) = tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .expect("every datagram arrives")
            .expect("reader");
        let expected: Vec<Vec<u8>> = sent.into_iter().map(|t| t.payload).collect();
        assert_eq!(received, expected);
        assert!(bufs > 1, "a busy socket reads in batches");
    }
}
