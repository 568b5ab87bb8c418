//! Batched datagram I/O over quinn-udp: one `recvmmsg` reads up to [`MAX_SLOTS`] datagrams
//! (and with GRO the kernel hands a run of equal-sized datagrams of one sender over in one
//! buffer), and a run of equal-sized datagrams to one destination leaves in one `sendmsg`
//! with GSO (the kernel cuts it into datagrams; a receiver without GRO sees them one by one,
//! so the bytes on the wire do not change).
//!
//! quinn-udp's socket set-up also forbids IP fragmentation (`IP_PMTUDISC_PROBE`) and asks
//! for ICMP errors in the socket's error queue (`IP_RECVERR`); both are put back as the
//! socket had them: a configured datagram larger than the path still leaves fragmented, and
//! an error queue nobody reads cannot fill the receive buffer.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use quinn_udp::{RecvMeta, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::Transmit;

/// A receive slot: the largest UDP payload (an oversized datagram is seen whole and rejected
/// by the codec instead of being silently truncated), or one GRO run (at most 64 KB too).
const SLOT: usize = 65_536;

/// Most receive slots (datagrams, or GRO runs) per `recvmmsg`.
const MAX_SLOTS: usize = if quinn_udp::BATCH_SIZE < 32 {
    quinn_udp::BATCH_SIZE
} else {
    32
};

/// Most bytes in one GSO send: what fits one IP datagram's length field, with room for the
/// headers.
const GSO_MAX_BYTES: usize = 65_000;

/// The socket, its quinn-udp state and the receive slots.
pub(super) struct BatchSocket {
    socket: UdpSocket,
    state: UdpSocketState,
    /// `slots` receive slots of [`SLOT`] bytes: one at first, doubled (up to
    /// [`MAX_SLOTS`]) whenever a read filled them all, so an idle stack holds 64 KB.
    buf: Vec<u8>,
    meta: Vec<RecvMeta>,
    /// A GSO run being put together.
    run: Vec<u8>,
}

impl BatchSocket {
    /// Takes over a bound, non-blocking socket (inside a tokio runtime).
    pub(super) fn new(socket: std::net::UdpSocket) -> io::Result<Self> {
        let defaults = SocketDefaults::read(&socket)?;
        let state = UdpSocketState::new((&socket).into())?;
        defaults.restore(&socket)?;
        Ok(Self {
            socket: UdpSocket::from_std(socket)?,
            state,
            buf: vec![0; SLOT],
            meta: vec![RecvMeta::default()],
            run: Vec::new(),
        })
    }

    /// The address the socket is bound to.
    pub(super) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Waits until the socket may have datagrams to read.
    pub(super) async fn readable(&self) -> io::Result<()> {
        self.socket.readable().await
    }

    /// One read of up to the slots' worth of datagrams (`WouldBlock` when there is none):
    /// every datagram read, with its sender, those of a GRO run one by one.
    pub(super) fn try_recv(
        &mut self,
    ) -> io::Result<impl Iterator<Item = (SocketAddr, &[u8])> + '_> {
        let slots = self.meta.len();
        let mut chunks = self.buf.chunks_mut(SLOT);
        let mut iovs: [IoSliceMut<'_>; MAX_SLOTS] =
            std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
        let iovs = iovs.get_mut(..slots).unwrap_or_default();
        let (socket, state, meta) = (&self.socket, &self.state, &mut self.meta);
        let read = socket.try_io(Interest::READABLE, || state.recv(socket.into(), iovs, meta))?;
        if read == slots && slots < MAX_SLOTS {
            // Contents are kept: the slots read stay where they are.
            let slots = (slots * 2).min(MAX_SLOTS);
            self.buf.resize(slots * SLOT, 0);
            self.meta.resize(slots, RecvMeta::default());
        }
        let runs = self.meta.iter().zip(self.buf.chunks(SLOT)).take(read);
        Ok(runs.flat_map(|(m, slot)| {
            let data = slot.get(..m.len).unwrap_or(slot);
            split_run(data, m.stride).map(move |datagram| (m.addr, datagram))
        }))
    }

    /// Sends every datagram of `transmits` in order, a run of equal-sized ones to one
    /// destination in one GSO send, waiting for room in the socket rather than dropping one.
    /// `failed` hears of each send that failed (its destination, datagrams and error): the
    /// road's retransmissions make up for them. Returns the number of sends.
    pub(super) async fn send(
        &mut self,
        transmits: &[Transmit],
        mut failed: impl FnMut(SocketAddr, usize, &io::Error),
    ) -> usize {
        let mut rest = transmits;
        let mut sends = 0;
        while let Some(first) = rest.first() {
            let n = gso_run(rest, self.state.max_gso_segments());
            let (run, after) = rest.split_at(n);
            rest = after;
            let contents = if let [one] = run {
                one.payload.as_slice()
            } else {
                self.run.clear();
                for t in run {
                    self.run.extend_from_slice(&t.payload);
                }
                self.run.as_slice()
            };
            let transmit = quinn_udp::Transmit {
                destination: first.dest,
                ecn: None,
                contents,
                segment_size: (n > 1).then_some(first.payload.len()),
                src_ip: None,
            };
            let (socket, state) = (&self.socket, &self.state);
            let sent = socket
                .async_io(Interest::WRITABLE, || {
                    state.try_send(socket.into(), &transmit)
                })
                .await;
            sends += 1;
            if let Err(e) = sent {
                failed(first.dest, n, &e);
            }
        }
        sends
    }
}

/// How many datagrams from the start of `transmits` go in one GSO send: those to the first
/// one's destination with its size (the last may be shorter), at most `max_segments` and
/// [`GSO_MAX_BYTES`] in all. At least one.
fn gso_run(transmits: &[Transmit], max_segments: usize) -> usize {
    let Some(first) = transmits.first() else {
        return 0;
    };
    let size = first.payload.len();
    let mut total = size;
    let mut n = 1;
    if size == 0 {
        return n;
    }
    for t in transmits
        .iter()
        .skip(1)
        .take(max_segments.saturating_sub(1))
    {
        let len = t.payload.len();
        if t.dest != first.dest || len == 0 || len > size || total + len > GSO_MAX_BYTES {
            break;
        }
        total += len;
        n += 1;
        if len < size {
            break;
        }
    }
    n
}

/// The datagrams of one received buffer: a GRO run of `stride`-byte datagrams (the last may
/// be shorter), or one datagram (an empty one included).
fn split_run(data: &[u8], stride: usize) -> impl Iterator<Item = &[u8]> {
    let stride = if stride == 0 || stride >= data.len() {
        data.len().max(1)
    } else {
        stride
    };
    let empty = data.is_empty().then_some(data);
    data.chunks(stride).chain(empty)
}

/// The socket options quinn-udp changes that the stack keeps as they were.
struct SocketDefaults {
    v6: bool,
    #[cfg(target_os = "linux")]
    pmtu_v4: Option<rustix::net::sockopt::Ipv4PathMtuDiscovery>,
    #[cfg(target_os = "linux")]
    pmtu_v6: Option<rustix::net::sockopt::Ipv6PathMtuDiscovery>,
}

impl SocketDefaults {
    fn read(socket: &std::net::UdpSocket) -> io::Result<Self> {
        let v6 = socket.local_addr()?.is_ipv6();
        Ok(Self {
            v6,
            #[cfg(target_os = "linux")]
            pmtu_v4: rustix::net::sockopt::ip_mtu_discover(socket).ok(),
            #[cfg(target_os = "linux")]
            pmtu_v6: v6
                .then(|| rustix::net::sockopt::ipv6_mtu_discover(socket).ok())
                .flatten(),
        })
    }

    #[cfg(target_os = "linux")]
    fn restore(&self, socket: &std::net::UdpSocket) -> io::Result<()> {
        use nix::sys::socket::{setsockopt, sockopt};
        if let Some(pmtu) = self.pmtu_v4 {
            rustix::net::sockopt::set_ip_mtu_discover(socket, pmtu)?;
        }
        if let Some(pmtu) = self.pmtu_v6 {
            rustix::net::sockopt::set_ipv6_mtu_discover(socket, pmtu)?;
        }
        // quinn-udp sets IP_RECVERR on IPv4 and dual-stack sockets (an IPv6-only one refuses
        // it), IPV6_RECVERR on IPv6 ones.
        let v4 = setsockopt(socket, sockopt::Ipv4RecvErr, &false);
        if self.v6 {
            setsockopt(socket, sockopt::Ipv6RecvErr, &false)?;
        } else {
            v4?;
        }
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    fn restore(&self, _socket: &std::net::UdpSocket) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(port: u16, len: usize) -> Transmit {
        Transmit {
            dest: SocketAddr::from(([127, 0, 0, 1], port)),
            payload: vec![7; len],
        }
    }

    #[test]
    fn a_gso_run_is_equal_sized_datagrams_to_one_destination() {
        let ts = [t(1, 100), t(1, 100), t(1, 60), t(1, 100)];
        assert_eq!(gso_run(&ts, 64), 3, "a shorter datagram ends the run");
        assert_eq!(gso_run(&ts, 2), 2, "at most max_segments");
        assert_eq!(gso_run(&ts, 1), 1, "no GSO");
        assert_eq!(
            gso_run(&[t(1, 100), t(2, 100)], 64),
            1,
            "another destination"
        );
        assert_eq!(gso_run(&[t(1, 100), t(1, 101)], 64), 1, "a larger datagram");
        assert_eq!(gso_run(&[t(1, 0), t(1, 0)], 64), 1, "empty datagrams alone");
        let big: Vec<_> = (0..100).map(|_| t(1, 1200)).collect();
        assert_eq!(gso_run(&big, 100), GSO_MAX_BYTES / 1200, "at most 64 KB");
        assert_eq!(gso_run(&[], 64), 0);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn fragmentation_and_the_error_queue_stay_as_the_socket_had_them() {
        use nix::sys::socket::{getsockopt, sockopt};
        use rustix::net::sockopt::{ip_mtu_discover, ipv6_mtu_discover};
        for addr in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(socket) = std::net::UdpSocket::bind(addr) else {
                continue; // no IPv6 here
            };
            socket.set_nonblocking(true).expect("non-blocking");
            let before = ip_mtu_discover(&socket).ok();
            let before_v6 = ipv6_mtu_discover(&socket).ok();
            let batch = BatchSocket::new(socket).expect("batch socket");
            assert_eq!(ip_mtu_discover(&batch.socket).ok(), before, "{addr}");
            assert_eq!(ipv6_mtu_discover(&batch.socket).ok(), before_v6, "{addr}");
            let recverr = if addr.starts_with('[') {
                getsockopt(&batch.socket, sockopt::Ipv6RecvErr)
            } else {
                getsockopt(&batch.socket, sockopt::Ipv4RecvErr)
            };
            assert_eq!(recverr.ok(), Some(false), "{addr}");
        }
    }

    #[test]
    fn a_received_run_splits_at_its_stride() {
        let data = [1u8; 250];
        let lens: Vec<usize> = split_run(&data, 100).map(<[u8]>::len).collect();
        assert_eq!(lens, [100, 100, 50]);
        assert_eq!(split_run(&data, 250).count(), 1);
        assert_eq!(split_run(&data, 0).count(), 1);
        let empty: Vec<&[u8]> = split_run(&[], 0).collect();
        assert_eq!(empty, [&[] as &[u8]], "an empty datagram is still one");
    }
}
