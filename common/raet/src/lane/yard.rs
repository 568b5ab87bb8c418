//! A poll-driven lane yard for callers with their own event loop (Python's
//! asyncio through `saltext_raet._native`, `select`, `poll`).
//!
//! [`LaneYard`] owns a non-blocking std socket and a [`YardCore`]: the caller
//! waits for readability on [`LaneYard::as_raw_fd`] and then calls
//! [`LaneYard::recv`], which drains the socket and returns the completed
//! messages. [`LaneYard::send`] writes the pages at once, pausing (with a
//! bounded backoff) only while the destination's queue is full. No thread,
//! no runtime.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value};

use super::core::YardCore;
use super::page::{BookLimits, MAX_PACKED_PAGE_SIZE};
use super::socket::{self, Backoff};
use super::{Body, LaneError, Message, Received, DEFAULT_STALL_LIMIT};

/// A yard on a lane (`<dir>/<lane>.<yard>.uxd`) driven by its caller.
/// Dropping it removes the socket file. All methods take `&self`: one thread
/// may send while another receives.
#[derive(Debug)]
pub struct LaneYard {
    core: Mutex<YardCore>,
    socket: UnixDatagram,
    /// The receive buffer (one page); its lock also serialises receivers.
    buf: Mutex<Vec<u8>>,
    path: PathBuf,
    stall_limit: Duration,
    /// The largest page of a packed book we send.
    packed_page: usize,
}

impl LaneYard {
    /// Binds yard `yard` of lane `lane` in `dir` (created with mode 0700 if
    /// missing) with the default book limits. A stale socket file (nobody
    /// listening) is replaced; a live one is [`LaneError::InUse`].
    pub fn bind(dir: impl AsRef<Path>, lane: &str, yard: &str) -> Result<Self, LaneError> {
        Self::bind_with(dir, lane, yard, BookLimits::default())
    }

    /// As [`LaneYard::bind`], with explicit bounds for book reassembly.
    pub fn bind_with(
        dir: impl AsRef<Path>,
        lane: &str,
        yard: &str,
        limits: BookLimits,
    ) -> Result<Self, LaneError> {
        let bound = socket::bind(dir.as_ref(), lane, yard)?;
        let core = YardCore::new(bound.dir, lane, yard, limits);
        let yard = Self {
            core: Mutex::new(core?),
            socket: bound.socket,
            buf: Mutex::new(vec![0; MAX_PACKED_PAGE_SIZE + 1]),
            path: bound.path,
            stall_limit: DEFAULT_STALL_LIMIT,
            packed_page: bound.packed_page,
        };
        Ok(yard)
    }

    /// Sets how long [`LaneYard::send`] waits for a full destination queue to
    /// take a page (default [`DEFAULT_STALL_LIMIT`]).
    pub fn set_stall_limit(&mut self, limit: Duration) {
        self.stall_limit = limit;
    }

    /// Our yard name.
    pub fn name(&self) -> String {
        self.core().name().to_owned()
    }

    /// Our socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends `body` to yard `to_yard` of our lane, in as many pages as needed.
    /// While the destination's queue is full it retries with a backoff of at
    /// most 10 ms, for at most the stall limit per page, then fails with
    /// [`LaneError::QueueFull`]; until a send to that yard goes through, the
    /// next ones try each page once without waiting. A missing socket or one nobody listens on is
    /// [`LaneError::Unreachable`] (and the yard is forgotten, so the next send
    /// starts a new session with it).
    pub fn send(&self, to_yard: &str, body: &Map<String, Value>) -> Result<(), LaneError> {
        let out = socket::prepare(&mut self.core(), to_yard, body)?;
        self.send_out(out)
    }

    /// As [`LaneYard::send`] for a packed book: `packed` (msgpack bytes the
    /// receiver decodes) with pack kind msgpack, in pages as large as our send
    /// buffer allows (up to [`MAX_PACKED_PAGE_SIZE`]). Only this
    /// implementation's yards take it ([`LaneYard::recv_any`]).
    pub fn send_packed(&self, to_yard: &str, packed: &[u8]) -> Result<(), LaneError> {
        let out = socket::prepare_packed(&mut self.core(), to_yard, packed, self.packed_page)?;
        self.send_out(out)
    }

    fn send_out(&self, out: super::Outgoing) -> Result<(), LaneError> {
        let limit = out.stall_limit(self.stall_limit);
        let result = out
            .pages
            .iter()
            .try_for_each(|page| self.send_page(page, &out.path, limit));
        self.core().finish_send(out, result)
    }

    fn send_page(&self, page: &[u8], path: &Path, limit: Duration) -> io::Result<()> {
        let mut backoff = Backoff::new(limit);
        loop {
            match self.socket.send_to(page, path) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => match backoff.next_pause() {
                    Some(pause) => std::thread::sleep(pause),
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads every datagram waiting on the socket (never blocks) and returns
    /// the mapping messages they complete, in order; a packed book is counted
    /// (`packed_dropped`) and dropped (see [`LaneYard::recv_any`]).
    pub fn recv(&self) -> Vec<Message> {
        let mut messages = Vec::new();
        for (from, body) in self.recv_any() {
            match body {
                Body::Map(map) => messages.push((from, map)),
                Body::Packed(_) => self.count("packed_dropped"),
            }
        }
        messages
    }

    /// Reads every datagram waiting on the socket (never blocks) and returns
    /// the messages they complete, in order, mappings and packed books. Bad
    /// pages are counted and dropped; a socket error other than "nothing more"
    /// is counted as `receive_error` and ends the drain.
    pub fn recv_any(&self) -> Vec<Received> {
        let mut buf = self.buf.lock().unwrap_or_else(PoisonError::into_inner);
        let mut messages = Vec::new();
        loop {
            let (len, from) = match self.socket.recv_from(&mut buf) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!(error = %e, "lane receive failed");
                    self.core().count("receive_error");
                    break;
                }
            };
            let data = buf.get(..len).unwrap_or_default();
            if let Some(message) = self.core().accept(data, from.as_pathname()) {
                messages.push(message);
            }
        }
        messages
    }

    /// Increments counter `counter` (for what the caller drops, e.g. a
    /// message it cannot use).
    pub fn count(&self, counter: &'static str) {
        self.core().count(counter);
    }

    /// Counters: see [`YardCore::stats`].
    pub fn stats(&self) -> BTreeMap<&'static str, u64> {
        self.core().stats()
    }

    fn core(&self) -> MutexGuard<'_, YardCore> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl AsRawFd for LaneYard {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl AsFd for LaneYard {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl Drop for LaneYard {
    fn drop(&mut self) {
        socket::remove(&self.path);
    }
}
