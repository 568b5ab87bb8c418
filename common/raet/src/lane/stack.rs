//! The tokio lane stack: one yard bound at `<dir>/<lane>.<yard>.uxd`.
//!
//! Pages are sent straight from [`LaneStack::send`]; a task receives
//! datagrams, hands them to the sans-IO [`YardCore`] (parse, check, book
//! reassembly) and queues completed messages for [`LaneStack::recv`]. A bad
//! datagram is counted, logged and dropped; the task keeps serving.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::net::UnixDatagram;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::core::YardCore;
use super::page::{BookLimits, MAX_PACKED_PAGE_SIZE};
use super::socket::{self, io_error, Backoff};
use super::{Body, LaneError, Message, Received, DEFAULT_STALL_LIMIT};

/// Completed messages queued for `recv` before the receive task waits.
const RX_QUEUE: usize = 1024;

/// A yard on a lane: a Unix datagram socket at `<dir>/<lane>.<yard>.uxd`
/// speaking the reference's page format. Dropping it stops the receive task
/// and removes the socket file.
#[derive(Debug)]
pub struct LaneStack {
    core: Arc<Mutex<YardCore>>,
    /// Non-blocking handle on the same socket, for sends (see `send_page`).
    sender: std::os::unix::net::UnixDatagram,
    rx: tokio::sync::Mutex<mpsc::Receiver<Received>>,
    task: JoinHandle<()>,
    path: PathBuf,
    stall_limit: Duration,
    /// The largest page of a packed book we send.
    packed_page: usize,
}

impl LaneStack {
    /// Binds yard `yard` of lane `lane` in `dir` (created if missing) with
    /// the default book limits. A stale socket file (nobody listening) is
    /// replaced; a live one is [`LaneError::InUse`].
    pub async fn bind(dir: impl AsRef<Path>, lane: &str, yard: &str) -> Result<Self, LaneError> {
        Self::bind_with(dir, lane, yard, BookLimits::default()).await
    }

    /// As [`LaneStack::bind`], with explicit bounds for book reassembly.
    pub async fn bind_with(
        dir: impl AsRef<Path>,
        lane: &str,
        yard: &str,
        limits: BookLimits,
    ) -> Result<Self, LaneError> {
        let bound = socket::bind(dir.as_ref(), lane, yard)?;
        let path = bound.path;
        let packed_page = bound.packed_page;
        let core = Arc::new(Mutex::new(YardCore::new(bound.dir, lane, yard, limits)?));
        let sender = bound
            .socket
            .try_clone()
            .map_err(io_error("clone socket", &path))?;
        let socket =
            UnixDatagram::from_std(bound.socket).map_err(io_error("register socket", &path))?;
        let (tx, rx) = mpsc::channel(RX_QUEUE);
        let task = tokio::spawn(receive_loop(socket, Arc::clone(&core), tx));
        Ok(Self {
            core,
            sender,
            rx: tokio::sync::Mutex::new(rx),
            task,
            path,
            stall_limit: DEFAULT_STALL_LIMIT,
            packed_page,
        })
    }

    /// Sets how long [`LaneStack::send`] waits for a full destination queue
    /// to take a page (default [`DEFAULT_STALL_LIMIT`]).
    pub fn set_stall_limit(&mut self, limit: Duration) {
        self.stall_limit = limit;
    }

    /// Sends `body` to yard `to_yard` of our lane, in as many pages as needed.
    /// While the destination's queue is full it retries with a backoff of at
    /// most 10 ms, for at most the stall limit per page, then fails with
    /// [`LaneError::QueueFull`]; until a send to that yard goes through, the
    /// next ones try each page once without waiting (a yard that stopped
    /// reading holds its senders up once). A missing socket or one nobody
    /// listens on is [`LaneError::Unreachable`] (and the yard is forgotten,
    /// so the next send starts a new session with it).
    pub async fn send(&self, to_yard: &str, body: &Map<String, Value>) -> Result<(), LaneError> {
        let out = socket::prepare(&mut self.core(), to_yard, body)?;
        self.send_out(out).await
    }

    /// As [`LaneStack::send`] for a body already encoded as JSON (a mapping as
    /// [`crate::packet::body::encode_json`] or [`crate::packet::body::to_json`] write it; a
    /// receiver drops a book that does not decode): the same pages, for a large body
    /// serialised straight from its type.
    pub async fn send_encoded(&self, to_yard: &str, body: &[u8]) -> Result<(), LaneError> {
        let out = socket::prepare_encoded(&mut self.core(), to_yard, body)?;
        self.send_out(out).await
    }

    /// As [`LaneStack::send`] for a packed book: `packed` (msgpack bytes the
    /// receiver decodes) with pack kind msgpack, in pages as large as our send
    /// buffer allows (up to [`MAX_PACKED_PAGE_SIZE`]). Only this
    /// implementation's yards take it ([`LaneStack::recv_any`]).
    pub async fn send_packed(&self, to_yard: &str, packed: &[u8]) -> Result<(), LaneError> {
        let out = socket::prepare_packed(&mut self.core(), to_yard, packed, self.packed_page)?;
        self.send_out(out).await
    }

    async fn send_out(&self, out: super::Outgoing) -> Result<(), LaneError> {
        let limit = out.stall_limit(self.stall_limit);
        let result = self.send_pages(&out.pages, &out.path, limit).await;
        self.core().finish_send(out, result)
    }

    async fn send_pages(&self, pages: &[Vec<u8>], path: &Path, limit: Duration) -> io::Result<()> {
        for page in pages {
            self.send_page(page, path, limit).await?;
        }
        Ok(())
    }

    /// Sends one datagram, retrying with a short backoff while the
    /// destination's queue is full, for at most `limit` in total.
    async fn send_page(&self, page: &[u8], path: &Path, limit: Duration) -> io::Result<()> {
        let mut backoff = Backoff::new(limit);
        loop {
            match self.sender.send_to(page, path) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => match backoff.next_pause() {
                    Some(pause) => tokio::time::sleep(pause).await,
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    }

    /// The next mapping message received: the sender's yard name and the body
    /// (a packed book is counted, `packed_dropped`, and skipped: see
    /// [`LaneStack::recv_any`]).
    pub async fn recv(&self) -> Result<Message, LaneError> {
        loop {
            match self.recv_any().await? {
                (from, Body::Map(map)) => return Ok((from, map)),
                (_, Body::Packed(_)) => self.core().count("packed_dropped"),
            }
        }
    }

    /// The next message received, a mapping or a packed book.
    pub async fn recv_any(&self) -> Result<Received, LaneError> {
        self.rx.lock().await.recv().await.ok_or(LaneError::Closed)
    }

    /// Our socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Counters: see [`YardCore::stats`].
    pub fn stats(&self) -> BTreeMap<&'static str, u64> {
        self.core().stats()
    }

    fn core(&self) -> MutexGuard<'_, YardCore> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for LaneStack {
    fn drop(&mut self) {
        self.task.abort();
        socket::remove(&self.path);
    }
}

/// Receives datagrams until the stack is dropped, queueing completed messages.
async fn receive_loop(
    socket: UnixDatagram,
    core: Arc<Mutex<YardCore>>,
    tx: mpsc::Sender<Received>,
) {
    let mut buf = vec![0u8; MAX_PACKED_PAGE_SIZE + 1];
    loop {
        let (len, from) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                tracing::warn!(error = %e, "lane receive failed");
                core.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .count("receive_error");
                tokio::task::yield_now().await;
                continue;
            }
        };
        let data = buf.get(..len).unwrap_or_default();
        let message = core
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .accept(data, from.as_pathname());
        if let Some(message) = message {
            if tx.send(message).await.is_err() {
                return;
            }
        }
    }
}
