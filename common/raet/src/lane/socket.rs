//! Socket and file helpers shared by the lane drivers ([`super::LaneStack`],
//! [`super::LaneYard`]): binding a yard's socket, clearing a stale one, the
//! clock for session ids and the backoff while a destination's queue is full.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::core::{Outgoing, YardCore};
use super::page::packed_page_size;
use super::{check_lane_name, check_yard_name, LaneError};

/// Socket buffer size we make sure of (a page is up to 64 KiB).
const MIN_SOCKET_BUFFER: usize = 1 << 20;
/// First pause when the destination's queue is full.
const FIRST_SEND_BACKOFF: Duration = Duration::from_micros(100);
/// Longest pause between retries when the destination's queue is full.
const MAX_SEND_BACKOFF: Duration = Duration::from_millis(10);

/// A bound, non-blocking yard socket.
pub(crate) struct Bound {
    /// The lane directory, absolute.
    pub dir: PathBuf,
    /// The socket path `<dir>/<lane>.<yard>.uxd`.
    pub path: PathBuf,
    /// The socket.
    pub socket: UnixDatagram,
    /// The largest page of a packed book this socket sends (see
    /// [`packed_page_size`]).
    pub packed_page: usize,
}

/// Binds the socket of yard `yard` of lane `lane` in `dir` (created with mode
/// 0700 if missing). A stale socket file (nobody listening) is replaced; a
/// live one is [`LaneError::InUse`].
pub(crate) fn bind(dir: &Path, lane: &str, yard: &str) -> Result<Bound, LaneError> {
    check_lane_name(lane)?;
    check_yard_name(yard)?;
    let io = io_error;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io("create directory", dir))?;
    let dir = std::path::absolute(dir).map_err(io("resolve", dir))?;
    let path = dir.join(format!("{lane}.{yard}.uxd"));
    clear_stale(&path)?;
    let (socket, send_buffer) = open_socket(&path).map_err(io("bind", &path))?;
    let packed_page = packed_page_size(send_buffer);
    tracing::debug!(path = %path.display(), packed_page, "lane yard bound");
    Ok(Bound {
        dir,
        path,
        socket,
        packed_page,
    })
}

/// Removes our socket file (when the yard goes away).
pub(crate) fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        tracing::debug!(path = %path.display(), error = %e, "socket file not removed");
    }
}

/// [`YardCore::prepare_send`] with the current time and a thread-local RNG
/// (for a new session id).
pub(crate) fn prepare(
    core: &mut YardCore,
    to: &str,
    body: &Map<String, Value>,
) -> Result<Outgoing, LaneError> {
    core.prepare_send(to, body, unix_micros(), &mut rand::thread_rng())
}

/// [`YardCore::prepare_send_encoded`] with the current time and a thread-local RNG (for a
/// new session id).
pub(crate) fn prepare_encoded(
    core: &mut YardCore,
    to: &str,
    body: &[u8],
) -> Result<Outgoing, LaneError> {
    core.prepare_send_encoded(to, body, unix_micros(), &mut rand::thread_rng())
}

/// [`YardCore::prepare_send_packed`] with the current time and a thread-local
/// RNG, in pages of at most `max_page` bytes.
pub(crate) fn prepare_packed(
    core: &mut YardCore,
    to: &str,
    packed: &[u8],
    max_page: usize,
) -> Result<Outgoing, LaneError> {
    core.prepare_send_packed(to, packed, max_page, unix_micros(), &mut rand::thread_rng())
}

/// Microseconds since the epoch (0 before it): the time in new session ids.
fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Pauses between retries of a datagram to a full queue: doubling from
/// 100 µs up to 10 ms, for at most a given total. (The kernel does not wake an
/// unconnected sender when another socket's queue drains, so waiting on
/// writability alone could hang.)
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    left: Duration,
}

impl Backoff {
    /// A fresh backoff pausing `limit` in total at most.
    pub(super) fn new(limit: Duration) -> Self {
        Self {
            next: FIRST_SEND_BACKOFF,
            left: limit,
        }
    }

    /// The next pause, or None once the total would exceed the limit.
    pub(super) fn next_pause(&mut self) -> Option<Duration> {
        let pause = self.next.min(self.left);
        if pause.is_zero() {
            return None;
        }
        self.left -= pause;
        self.next = (self.next * 2).min(MAX_SEND_BACKOFF);
        Some(pause)
    }
}

/// A closure turning an `io::Error` of operation `op` on `path` into a [`LaneError`].
pub(crate) fn io_error<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> LaneError + 'a {
    move |source| LaneError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Removes a socket file at `path` if nobody listens on it.
fn clear_stale(path: &Path) -> Result<(), LaneError> {
    let io = |op| io_error(op, path);
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("inspect")(e)),
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(io("refuse to replace non-socket")(io::Error::from(
                io::ErrorKind::AlreadyExists,
            )))
        }
        Ok(_) => {}
    }
    let probe = UnixDatagram::unbound().map_err(io("probe"))?;
    match probe.connect(path) {
        Ok(()) => Err(LaneError::InUse(path.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing stale lane socket");
            std::fs::remove_file(path).map_err(io("remove stale socket"))
        }
        Err(e) => Err(io("probe")(e)),
    }
}

/// A non-blocking Unix datagram socket bound at `path`, with buffers of at
/// least [`MIN_SOCKET_BUFFER`] (as far as the system allows), and its send
/// buffer size.
fn open_socket(path: &Path) -> io::Result<(UnixDatagram, usize)> {
    use socket2::{Domain, SockAddr, Socket, Type};
    let socket = Socket::new(Domain::UNIX, Type::DGRAM, None)?;
    if socket.send_buffer_size()? < MIN_SOCKET_BUFFER {
        socket.set_send_buffer_size(MIN_SOCKET_BUFFER)?;
    }
    if socket.recv_buffer_size()? < MIN_SOCKET_BUFFER {
        socket.set_recv_buffer_size(MIN_SOCKET_BUFFER)?;
    }
    socket.bind(&SockAddr::unix(path)?)?;
    socket.set_nonblocking(true)?;
    let send_buffer = socket.send_buffer_size()?;
    Ok((socket.into(), send_buffer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_ten_milliseconds_within_the_limit() {
        let limit = Duration::from_millis(100);
        let mut b = Backoff::new(limit);
        let pauses: Vec<_> = std::iter::from_fn(|| b.next_pause()).collect();
        assert_eq!(pauses.first(), Some(&Duration::from_micros(100)));
        assert_eq!(pauses.get(1), Some(&Duration::from_micros(200)));
        assert!(pauses.contains(&MAX_SEND_BACKOFF));
        assert!(pauses.iter().all(|p| *p <= MAX_SEND_BACKOFF));
        assert_eq!(pauses.iter().sum::<Duration>(), limit);
        assert!(Backoff::new(Duration::ZERO).next_pause().is_none());
    }
}
