//! Salt's master event bus, spoken directly over its Unix sockets.
//!
//! Salt's master runs an IPC publisher (`salt.transport.tcp.PublishServer` on Unix sockets)
//! in its `sock_dir` (Salt's own, not `<sock_dir>/raet`):
//!
//! * **publish**: connect `master_event_pull.ipc` and send, per event, a big-endian `u32`
//!   length then a msgpack map `{"head": {}, "body": <bin>}`;
//! * **subscribe**: connect `master_event_pub.ipc` and read a stream of the same msgpack maps,
//!   with no length prefix.
//!
//! The body is `tag + b"\n\n" + msgpack(data)`; Salt's `fire_event` adds `data["_stamp"]`
//! (3008.5: `datetime.now(timezone.utc).isoformat()`), which a raw publisher must do itself
//! ([`stamp`]). Checked against Salt 3008.5's own bus: `get_event` receives what
//! [`EventBus::fire`] sends, and salt-key style `fire_event` reaches our subscriber.
//!
//! The codec ([`event_body`], [`frame`], [`push_frame`], [`FrameDecoder`], [`parse_body`]) is
//! pure. [`EventBus`] is the tokio side: optional by design, it connects when Salt's master is
//! there, retries with backoff when it is not, and drops events it cannot deliver (counted,
//! logged at debug); it never blocks its caller.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

/// The socket Salt's master reads published events from.
pub const PULL_SOCKET: &str = "master_event_pull.ipc";
/// The socket Salt's master publishes events on.
pub const PUB_SOCKET: &str = "master_event_pub.ipc";
/// A frame larger than this is refused (Salt's events are small; a job return can be large).
pub const MAX_FRAME: usize = 16 * 1024 * 1024;
/// First delay before reconnecting to a bus that is not there.
pub const RECONNECT_MIN: Duration = Duration::from_millis(500);
/// Cap of the doubling reconnect delay.
pub const RECONNECT_MAX: Duration = Duration::from_secs(30);
/// How long a write to the bus may take before the connection is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// Events waiting to be published; more are dropped (counted).
pub const QUEUE: usize = 1024;

/// Separates the tag from the packed data in a body (Salt's `TAGEND`).
const TAGEND: &[u8] = b"\n\n";

/// What is wrong with bytes read from (or meant for) the bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The stream is not a sequence of `{"head": .., "body": <bin>}` msgpack maps.
    #[error("not an event frame: {0}")]
    Garbage(String),
    /// A frame announces or reaches more than [`MAX_FRAME`] bytes.
    #[error("event frame larger than {MAX_FRAME} bytes")]
    TooLarge,
    /// A body without the `\n\n` separator or with a tag that is not UTF-8.
    #[error("event body without a tag: {0}")]
    BadBody(String),
    /// The data of an event is not a msgpack map we can read.
    #[error("event {tag:?}: unreadable data: {reason}")]
    BadData {
        /// The event's tag.
        tag: String,
        /// Why.
        reason: String,
    },
}

/// One event: its tag and its data.
#[derive(Debug, Clone, PartialEq)]
pub struct BusEvent {
    /// The tag, e.g. `salt/key`.
    pub tag: String,
    /// The data (a map in every Salt event).
    pub data: Value,
}

/// Salt 3008.5's `_stamp` of a time: `datetime.now(timezone.utc).isoformat()`, e.g.
/// `2026-11-22T21:30:43.123456+00:00` (microseconds left out when zero, as Python does).
pub fn stamp(t: SystemTime) -> String {
    let utc = DateTime::<Utc>::from(t);
    let format = match utc.timestamp_subsec_micros() {
        0 => "%Y-%m-%dT%H:%M:%S+00:00",
        _ => "%Y-%m-%dT%H:%M:%S%.6f+00:00",
    };
    utc.format(format).to_string()
}

/// An event body: `tag + "\n\n" + msgpack(data)` (strings as msgpack str, as Salt packs them).
pub fn event_body(tag: &str, data: &Value) -> Vec<u8> {
    let mut body = Vec::with_capacity(tag.len() + 64);
    body.extend_from_slice(tag.as_bytes());
    body.extend_from_slice(TAGEND);
    // A serde_json::Value always serialises (no non-string keys, no foreign types).
    if let Err(e) = rmp_serde::encode::write_named(&mut body, data) {
        warn!(tag, error = %e, "event data not encodable; sent empty");
    }
    body
}

/// Serialises a byte string as msgpack bin (not as an array of integers).
struct Bin<'a>(&'a [u8]);

impl Serialize for Bin<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// The msgpack frame of a body: `{"head": {}, "body": <bin>}`.
pub fn frame(body: &[u8]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Frame<'a> {
        head: Map<String, Value>,
        body: Bin<'a>,
    }
    let frame = Frame {
        head: Map::new(),
        body: Bin(body),
    };
    // Writing into a Vec cannot fail, and the frame has only string keys.
    rmp_serde::to_vec_named(&frame).unwrap_or_default()
}

/// What a publisher sends into [`PULL_SOCKET`] for one event: big-endian `u32` length, then
/// the [`frame`]. `None` when the frame would exceed [`MAX_FRAME`].
pub fn push_frame(body: &[u8]) -> Option<Vec<u8>> {
    let frame = frame(body);
    if frame.len() > MAX_FRAME {
        return None;
    }
    let len = u32::try_from(frame.len()).ok()?;
    let mut out = Vec::with_capacity(frame.len() + 4);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&frame);
    Some(out)
}

/// The body of a decoded frame.
struct FrameBody(Vec<u8>);

impl<'de> Deserialize<'de> for FrameBody {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FrameVisitor;
        impl<'de> Visitor<'de> for FrameVisitor {
            type Value = FrameBody;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map {\"head\": .., \"body\": <bin>}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FrameBody, A::Error> {
                let mut body = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key == "body" {
                        body = Some(map.next_value::<BodyBytes>()?.0);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                body.map(FrameBody)
                    .ok_or_else(|| de::Error::missing_field("body"))
            }
        }
        d.deserialize_map(FrameVisitor)
    }
}

/// A body: msgpack bin (or str, as very old publishers sent it).
struct BodyBytes(Vec<u8>);

impl<'de> Deserialize<'de> for BodyBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl Visitor<'_> for BytesVisitor {
            type Value = BodyBytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<BodyBytes, E> {
                Ok(BodyBytes(v.to_vec()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<BodyBytes, E> {
                Ok(BodyBytes(v.as_bytes().to_vec()))
            }
        }
        d.deserialize_any(BytesVisitor)
    }
}

/// What [`scan_value`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
enum Scan {
    /// A whole msgpack value of this many bytes.
    Complete(usize),
    /// The value is cut off; it needs at least this many bytes in total.
    Incomplete(usize),
}

/// The layout of a msgpack value, from its first byte.
enum Shape {
    /// A value of this many bytes in all.
    Fixed(usize),
    /// A container of this many items after its one-byte marker.
    Inline(u64),
    /// A bin, str or ext: `header` bytes (marker, the big-endian length in the `field` bytes
    /// after it, an ext's type) then the payload.
    Payload { header: usize, field: usize },
    /// An array or map: `1 + field` bytes, the count in the `field` bytes after the marker,
    /// then `per` values per counted item.
    Items { field: usize, per: u64 },
}

fn shape(marker: u8) -> Result<Shape, BusError> {
    Ok(match marker {
        0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => Shape::Fixed(1),
        0x80..=0x8f => Shape::Inline(2 * u64::from(marker & 0x0f)),
        0x90..=0x9f => Shape::Inline(u64::from(marker & 0x0f)),
        0xa0..=0xbf => Shape::Fixed(1 + usize::from(marker & 0x1f)),
        0xc4 | 0xd9 => Shape::Payload {
            header: 2,
            field: 1,
        },
        0xc5 | 0xda => Shape::Payload {
            header: 3,
            field: 2,
        },
        0xc6 | 0xdb => Shape::Payload {
            header: 5,
            field: 4,
        },
        0xc7 => Shape::Payload {
            header: 3,
            field: 1,
        },
        0xc8 => Shape::Payload {
            header: 4,
            field: 2,
        },
        0xc9 => Shape::Payload {
            header: 6,
            field: 4,
        },
        0xcc | 0xd0 => Shape::Fixed(2),
        0xcd | 0xd1 => Shape::Fixed(3),
        0xd4 => Shape::Fixed(3),
        0xd5 => Shape::Fixed(4),
        0xca | 0xce | 0xd2 => Shape::Fixed(5),
        0xd6 => Shape::Fixed(6),
        0xcb | 0xcf | 0xd3 => Shape::Fixed(9),
        0xd7 => Shape::Fixed(10),
        0xd8 => Shape::Fixed(18),
        0xdc => Shape::Items { field: 2, per: 1 },
        0xdd => Shape::Items { field: 4, per: 1 },
        0xde => Shape::Items { field: 2, per: 2 },
        0xdf => Shape::Items { field: 4, per: 2 },
        0xc1 => return Err(BusError::Garbage("msgpack marker 0xc1".into())),
    })
}

/// The big-endian length in the `field` bytes at `at`; None when the buffer ends first.
fn length_field(buf: &[u8], at: usize, field: usize) -> Option<u64> {
    let bytes = buf.get(at..at.checked_add(field)?)?;
    Some(bytes.iter().fold(0, |n, b| n << 8 | u64::from(*b)))
}

/// Walks the msgpack value at the start of `buf` without decoding it (payloads are skipped by
/// their length, nothing is copied): its size, or the fewest bytes it needs as far as `buf`
/// shows. Iterative, so nesting costs no stack.
fn scan_value(buf: &[u8]) -> Result<Scan, BusError> {
    let big = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    let mut pos: usize = 0;
    // Values still to walk; each takes at least one byte.
    let mut pending: u64 = 1;
    while pending > 0 {
        let Some(&marker) = buf.get(pos) else {
            return Ok(Scan::Incomplete(pos.saturating_add(big(pending))));
        };
        pending -= 1;
        let next = match shape(marker)? {
            Shape::Fixed(size) => pos.saturating_add(size),
            Shape::Inline(items) => {
                pending = pending.saturating_add(items);
                pos.saturating_add(1)
            }
            Shape::Payload { header, field } => match length_field(buf, pos + 1, field) {
                Some(len) => pos.saturating_add(header).saturating_add(big(len)),
                None => return Ok(Scan::Incomplete(pos.saturating_add(header))),
            },
            Shape::Items { field, per } => match length_field(buf, pos + 1, field) {
                Some(count) => {
                    pending = pending.saturating_add(count.saturating_mul(per));
                    pos.saturating_add(1 + field)
                }
                None => return Ok(Scan::Incomplete(pos.saturating_add(1 + field))),
            },
        };
        if next > buf.len() {
            return Ok(Scan::Incomplete(next.saturating_add(big(pending))));
        }
        pos = next;
    }
    Ok(Scan::Complete(pos))
}

/// Splits the unprefixed stream of frames read from [`PUB_SOCKET`] into bodies. Feed it what
/// the socket gives; a partial frame waits for more bytes. A frame's size is learnt from its
/// msgpack headers (payloads are skipped, not parsed), so the buffer is looked at again only
/// once it holds as many bytes as the frame is known to need, and decoded once.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Bytes the frame at the head of `buf` is known to need.
    wanted: usize,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held that do not form a whole frame yet.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Bytes the next frame is known to need in all (0 before anything is known):
    /// [`FrameDecoder::next_body`] does not look at the buffer again until it holds as many.
    pub fn wanted(&self) -> usize {
        self.wanted
    }

    /// The next whole frame's body; `Ok(None)` when more bytes are needed. A frame that needs
    /// more than [`MAX_FRAME`] bytes is [`BusError::TooLarge`] as soon as its headers say so.
    /// After an error the stream cannot be resynchronised: drop the connection (and this
    /// decoder).
    pub fn next_body(&mut self) -> Result<Option<Vec<u8>>, BusError> {
        if self.buf.is_empty() || self.buf.len() < self.wanted {
            return Ok(None);
        }
        let len = match scan_value(&self.buf)? {
            Scan::Complete(len) => len,
            Scan::Incomplete(need) => need,
        };
        if len > MAX_FRAME {
            return Err(BusError::TooLarge);
        }
        let Some(frame) = self.buf.get(..len) else {
            self.wanted = len;
            return Ok(None);
        };
        let body = rmp_serde::from_slice::<FrameBody>(frame)
            .map_err(|e| BusError::Garbage(e.to_string()))?;
        self.buf.drain(..len);
        self.wanted = 0;
        Ok(Some(body.0))
    }
}

/// Decodes one whole frame (as found after the length prefix of a [`push_frame`]).
pub fn parse_frame(frame: &[u8]) -> Result<Vec<u8>, BusError> {
    let mut decoder = FrameDecoder::new();
    decoder.feed(frame);
    match decoder.next_body()? {
        Some(body) if decoder.buffered() == 0 => Ok(body),
        Some(_) => Err(BusError::Garbage("bytes after the frame".into())),
        None => Err(BusError::Garbage("truncated frame".into())),
    }
}

/// Splits a body into its tag and its packed data (not decoded: cheap enough to filter
/// every event of a busy master by tag).
pub fn split_body(body: &[u8]) -> Result<(&str, &[u8]), BusError> {
    let split = body
        .windows(TAGEND.len())
        .position(|w| w == TAGEND)
        .ok_or_else(|| BusError::BadBody("no \\n\\n separator".into()))?;
    let (tag, rest) = body.split_at(split);
    let tag = std::str::from_utf8(tag).map_err(|_| BusError::BadBody("tag is not UTF-8".into()))?;
    Ok((tag, rest.get(TAGEND.len()..).unwrap_or_default()))
}

/// Splits a body into its tag and data.
pub fn parse_body(body: &[u8]) -> Result<BusEvent, BusError> {
    let (tag, packed) = split_body(body)?;
    let tag = tag.to_owned();
    let data = if packed.is_empty() {
        Value::Object(Map::new())
    } else {
        rmp_serde::from_slice::<Value>(packed).map_err(|e| BusError::BadData {
            tag: tag.clone(),
            reason: e.to_string(),
        })?
    };
    Ok(BusEvent { tag, data })
}

/// Counters of an [`EventBus`] (shown by `status --json` as `event_bus`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BusStats {
    /// Connected to [`PULL_SOCKET`] (publishing).
    pub publishing: bool,
    /// Connected to [`PUB_SOCKET`] (subscribed).
    pub subscribed: bool,
    /// Events written to the bus.
    pub published: u64,
    /// Events dropped: no bus, a failed write, or a full queue.
    pub dropped: u64,
    /// Failed connection attempts (both sockets).
    pub connect_failures: u64,
    /// Events read from the bus that passed the tag filter.
    pub received: u64,
    /// Streams dropped because they were not event frames.
    pub garbage: u64,
    /// Frames whose body or data could not be read (skipped).
    pub bad_events: u64,
}

/// A connection to Salt's master event bus (see the module documentation). Dropping it stops
/// its tasks.
#[derive(Debug)]
pub struct EventBus {
    queue: mpsc::Sender<Vec<u8>>,
    stats: Arc<watch::Sender<BusStats>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl EventBus {
    /// Starts publishing into `<sock_dir>/`[`PULL_SOCKET`] and, when `subscribe` is not empty,
    /// reading `<sock_dir>/`[`PUB_SOCKET`]: events whose tag starts with one of `subscribe` are
    /// sent on the returned channel. Must be called inside a tokio runtime.
    pub fn spawn(sock_dir: &Path, subscribe: &[&str]) -> (Self, mpsc::Receiver<BusEvent>) {
        let stats = Arc::new(watch::Sender::new(BusStats::default()));
        let (queue, queued) = mpsc::channel(QUEUE);
        let (events_tx, events) = mpsc::channel(QUEUE);
        let mut tasks = vec![tokio::spawn(publisher(
            sock_dir.join(PULL_SOCKET),
            queued,
            Arc::clone(&stats),
        ))];
        if !subscribe.is_empty() {
            let prefixes = subscribe.iter().map(|s| (*s).to_owned()).collect();
            tasks.push(tokio::spawn(subscriber(
                sock_dir.join(PUB_SOCKET),
                prefixes,
                events_tx,
                Arc::clone(&stats),
            )));
        }
        (
            Self {
                queue,
                stats,
                tasks,
            },
            events,
        )
    }

    /// Fires `tag` with `data` (a map; `_stamp` is added): queued for the publisher task, never
    /// waiting. A full queue or an oversized event is dropped and counted.
    pub fn fire(&self, tag: &str, mut data: Map<String, Value>) {
        data.insert("_stamp".into(), Value::String(stamp(SystemTime::now())));
        let queued = push_frame(&event_body(tag, &Value::Object(data)))
            .is_some_and(|frame| self.queue.try_send(frame).is_ok());
        if !queued {
            debug!(tag, "event bus: event dropped (queue full or too large)");
            self.stats.send_modify(|s| s.dropped += 1);
        }
    }

    /// The counters now.
    pub fn stats(&self) -> BusStats {
        self.stats.borrow().clone()
    }

    /// The counters, notified on every change (tests wait on it instead of sleeping).
    pub fn watch_stats(&self) -> watch::Receiver<BusStats> {
        self.stats.subscribe()
    }
}

impl Drop for EventBus {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The doubled reconnect delay, capped.
fn next_backoff(d: Duration) -> Duration {
    (d * 2).min(RECONNECT_MAX)
}

/// Writes queued frames to the pull socket, connecting on demand. While the bus is absent
/// (connection refused or no socket), connection attempts are spaced by a doubling delay and
/// the events in between are dropped.
async fn publisher(
    path: PathBuf,
    mut queued: mpsc::Receiver<Vec<u8>>,
    stats: Arc<watch::Sender<BusStats>>,
) {
    let mut conn: Option<UnixStream> = None;
    let mut backoff = RECONNECT_MIN;
    let mut next_attempt = tokio::time::Instant::now();
    while let Some(frame) = queued.recv().await {
        if conn.is_none() && tokio::time::Instant::now() >= next_attempt {
            match UnixStream::connect(&path).await {
                Ok(stream) => {
                    debug!(path = %path.display(), "event bus: publishing");
                    backoff = RECONNECT_MIN;
                    conn = Some(stream);
                    stats.send_modify(|s| s.publishing = true);
                }
                Err(e) => {
                    debug!(path = %path.display(), error = %e, "event bus absent");
                    next_attempt = tokio::time::Instant::now() + backoff;
                    backoff = next_backoff(backoff);
                    stats.send_modify(|s| s.connect_failures += 1);
                }
            }
        }
        let written = match conn.as_mut() {
            Some(stream) => {
                match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&frame)).await {
                    Ok(Ok(())) => true,
                    Ok(Err(e)) => {
                        debug!(error = %e, "event bus: write failed; reconnecting");
                        false
                    }
                    Err(_) => {
                        debug!("event bus: write timed out; reconnecting");
                        false
                    }
                }
            }
            None => false,
        };
        if written {
            stats.send_modify(|s| s.published += 1);
        } else {
            if conn.take().is_some() {
                stats.send_modify(|s| s.publishing = false);
            }
            debug!("event bus: event dropped");
            stats.send_modify(|s| s.dropped += 1);
        }
    }
}

/// Reads the publisher socket, forwarding events whose tag starts with one of `prefixes`;
/// reconnects with backoff when the bus is absent, closes, or sends garbage.
async fn subscriber(
    path: PathBuf,
    prefixes: Vec<String>,
    events: mpsc::Sender<BusEvent>,
    stats: Arc<watch::Sender<BusStats>>,
) {
    let mut backoff = RECONNECT_MIN;
    loop {
        match UnixStream::connect(&path).await {
            Ok(stream) => {
                debug!(path = %path.display(), "event bus: subscribed");
                backoff = RECONNECT_MIN;
                stats.send_modify(|s| s.subscribed = true);
                let open = read_events(stream, &prefixes, &events, &stats).await;
                stats.send_modify(|s| s.subscribed = false);
                if !open {
                    return;
                }
            }
            Err(e) => {
                debug!(path = %path.display(), error = %e, "event bus absent");
                stats.send_modify(|s| s.connect_failures += 1);
            }
        }
        tokio::time::sleep(crate::daemon::jitter(backoff)).await;
        backoff = next_backoff(backoff);
    }
}

/// Reads one subscription until it ends; false when the receiver of `events` is gone.
async fn read_events(
    mut stream: UnixStream,
    prefixes: &[String],
    events: &mpsc::Sender<BusEvent>,
    stats: &watch::Sender<BusStats>,
) -> bool {
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) => {
                debug!("event bus: publisher closed the stream");
                return true;
            }
            Ok(n) => n,
            Err(e) => {
                debug!(error = %e, "event bus: read failed");
                return true;
            }
        };
        decoder.feed(buf.get(..n).unwrap_or_default());
        loop {
            let body = match decoder.next_body() {
                Ok(Some(body)) => body,
                Ok(None) => break,
                Err(e) => {
                    warn!(error = %e, "event bus: dropping the subscription");
                    stats.send_modify(|s| s.garbage += 1);
                    return true;
                }
            };
            let wanted = match split_body(&body) {
                Ok((tag, _)) => prefixes.iter().any(|p| tag.starts_with(p.as_str())),
                // Counted below.
                Err(_) => true,
            };
            if !wanted {
                continue;
            }
            match parse_body(&body) {
                Ok(event) => {
                    stats.send_modify(|s| s.received += 1);
                    if events.send(event).await.is_err() {
                        return false;
                    }
                }
                Err(e) => {
                    warn!(error = %e, "event bus: event skipped");
                    stats.send_modify(|s| s.bad_events += 1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
