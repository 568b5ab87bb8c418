//! The stack's UDP socket: created with raised send and receive buffers,
//! non-blocking, `SO_REUSEADDR` only on a fixed port.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tracing::{debug, info, warn};

use super::SOCKET_BUFFER_SIZE;

/// Creates the UDP socket: send and receive buffers raised to
/// [`SOCKET_BUFFER_SIZE`] (never lowered; what the kernel granted is logged),
/// non-blocking, bound to `addr`.
///
/// `SO_REUSEADDR` is set (as the reference) only for a fixed port. On port 0
/// it would let Linux hand out an ephemeral port that another `SO_REUSEADDR`
/// socket already holds (its port search skips only conflicting sockets, and
/// two reusable ones do not conflict): both sockets then share the port and
/// the kernel delivers each datagram to one of them, so a peer's answers go
/// to the wrong stack (joins that never complete; one run in a few of 100
/// stacks in one process).
pub(super) fn bind_socket(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(addr.port() != 0)?;
    raise_buffer(
        &socket,
        "SO_RCVBUF",
        Socket::recv_buffer_size,
        Socket::set_recv_buffer_size,
    );
    raise_buffer(
        &socket,
        "SO_SNDBUF",
        Socket::send_buffer_size,
        Socket::set_send_buffer_size,
    );
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Raises one socket buffer to [`SOCKET_BUFFER_SIZE`] unless it is already
/// larger. A failure only degrades throughput, so it is logged, not returned.
fn raise_buffer(
    socket: &Socket,
    what: &str,
    get: fn(&Socket) -> io::Result<usize>,
    set: fn(&Socket, usize) -> io::Result<()>,
) {
    let before = get(socket).unwrap_or(0);
    if before >= SOCKET_BUFFER_SIZE {
        debug!(
            option = what,
            size = before,
            "socket buffer already large enough"
        );
        return;
    }
    if let Err(e) = set(socket, SOCKET_BUFFER_SIZE) {
        warn!(option = what, error = %e, "could not raise socket buffer");
    }
    // Linux reports twice the requested size (bookkeeping overhead) and caps
    // the request at net.core.[rw]mem_max.
    match get(socket) {
        Ok(granted) if granted < SOCKET_BUFFER_SIZE => warn!(
            option = what,
            requested = SOCKET_BUFFER_SIZE,
            granted,
            "kernel granted a smaller socket buffer (net.core.rmem_max/wmem_max); large messages may need resends"
        ),
        Ok(granted) => info!(option = what, requested = SOCKET_BUFFER_SIZE, granted, "socket buffer"),
        Err(e) => warn!(option = what, error = %e, "could not read socket buffer size"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sysctl(name: &str) -> Option<usize> {
        std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// A free port: bound once without `SO_REUSEADDR`, then released.
    fn free_port() -> u16 {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("ephemeral bind")
            .port()
    }

    #[test]
    fn fixed_port_socket_is_reusable_nonblocking_with_raised_buffers() {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let socket = Socket::from(bind_socket(addr).expect("bind"));
        assert!(socket.reuse_address().expect("SO_REUSEADDR"));
        assert!(socket.nonblocking().expect("O_NONBLOCK"));
        // The kernel caps requests at [rw]mem_max (and reports double).
        let rcv_cap = sysctl("rmem_max").unwrap_or(SOCKET_BUFFER_SIZE);
        let snd_cap = sysctl("wmem_max").unwrap_or(SOCKET_BUFFER_SIZE);
        let rcv = socket.recv_buffer_size().expect("SO_RCVBUF");
        let snd = socket.send_buffer_size().expect("SO_SNDBUF");
        assert!(rcv >= SOCKET_BUFFER_SIZE.min(rcv_cap), "SO_RCVBUF {rcv}");
        assert!(snd >= SOCKET_BUFFER_SIZE.min(snd_cap), "SO_SNDBUF {snd}");
    }

    #[test]
    fn ephemeral_socket_is_not_reusable() {
        let socket =
            Socket::from(bind_socket(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind"));
        assert!(!socket.reuse_address().expect("SO_REUSEADDR"));
    }

    /// Many stacks on port 0 in one process (join_scale binds 101) each get a port of
    /// their own. With `SO_REUSEADDR` on every socket, Linux handed out an already bound
    /// port about once per ~28k/n binds (1000 binds: ~17 shared ports expected).
    #[test]
    fn ephemeral_sockets_never_share_a_port() {
        let mut ports = std::collections::HashSet::new();
        let mut sockets = Vec::new();
        for _ in 0..1000 {
            let socket = bind_socket(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
            let port = socket.local_addr().expect("local address").port();
            assert!(ports.insert(port), "port {port} handed out twice");
            sockets.push(socket);
        }
    }
}
