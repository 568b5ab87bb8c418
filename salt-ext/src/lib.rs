//! `saltext_raet._native`: the lane client of the Salt RAET extension, for Python.
//!
//! A [`Yard`] is a [`raet::lane::LaneYard`] (a non-blocking Unix datagram socket at
//! `<lane_dir>/<lane>.<name>.uxd`) that speaks Salt's route envelopes to the daemon's yard
//! `manor`: [`Yard::send`] builds `{"route": {"src": [null, name, null], "dst": dst},
//! "load": load}`, sent as JSON, or with `salt` bytes as a packed (msgpack) envelope whose
//! `salt` is a `bin` (a packed book of the lane: no base64, no JSON); [`Yard::recv`]
//! drains the socket and returns [`Message`]s of either kind. The Python side waits for readability on
//! [`Yard::fileno`] (`loop.add_reader`, `select`). Nothing here panics on what arrives from
//! the lane: a bad page or envelope is counted ([`Yard::stats`]) and skipped.
#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use pyo3::create_exception;
use pyo3::exceptions::{PyBlockingIOError, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};
use pyo3::types::{PyBytes, PyList, PyString};
use raet::lane::{Body, LaneError as RustLaneError, LaneYard};
use salt_raet::envelope::{DstEstate, Envelope, LANE, MANOR};
use serde_json::{Map, Value};

create_exception!(
    saltext_raet._native,
    LaneError,
    PyOSError,
    "A lane yard could not be bound or a message not sent (the message names the path)."
);

/// The Python exception for a lane error: [`LaneError`] (an `OSError` with the errno and
/// the path when there are), `BlockingIOError` for a destination that does not drain its
/// queue, `ValueError` for a bad name or an unsendable message.
fn py_error(e: RustLaneError) -> PyErr {
    let msg = e.to_string();
    match &e {
        RustLaneError::InvalidName(_)
        | RustLaneError::BookTooLarge(_)
        | RustLaneError::HeadTooLong(_)
        | RustLaneError::BadField(_)
        | RustLaneError::BadBody(_) => PyValueError::new_err(msg),
        RustLaneError::QueueFull { .. } => PyBlockingIOError::new_err(msg),
        RustLaneError::Unreachable { path, source, .. }
        | RustLaneError::Io { path, source, .. } => {
            LaneError::new_err((source.raw_os_error(), msg, path_text(path)))
        }
        RustLaneError::InUse(path) => LaneError::new_err((None::<i32>, msg, path_text(path))),
        _ => LaneError::new_err(msg),
    }
}

/// A path for Python (`str`, undecodable bytes escaped as Python does).
fn path_text(path: &std::path::Path) -> OsString {
    path.as_os_str().to_owned()
}

/// `<sock_dir>/raet`: the lane directory of the daemon using Salt's `sock_dir`.
#[pyfunction]
fn lane_dir(sock_dir: PathBuf) -> OsString {
    salt_raet::envelope::lane_dir(&sock_dir).into_os_string()
}

/// A message received from the lane: the route envelope's fields, decoded.
#[pyclass(frozen, module = "saltext_raet._native")]
struct Message {
    /// `route.src`: (estate, yard, share).
    #[pyo3(get)]
    src: (Option<String>, Option<String>, Option<String>),
    dst_estate: Py<PyAny>,
    dst_yard: Option<String>,
    dst_share: Option<String>,
    /// `load["rid"]` when it is a string.
    #[pyo3(get)]
    rid: Option<String>,
    salt: Option<Py<PyBytes>>,
    /// `load["error"]` when it is a string.
    #[pyo3(get)]
    error: Option<String>,
    /// `load["kind"]` when it is a string (the error code).
    #[pyo3(get)]
    kind: Option<String>,
    whole_load: Map<String, Value>,
    /// The lane yard it came from (normally "manor").
    #[pyo3(get)]
    yard: String,
}

#[pymethods]
impl Message {
    /// `route.dst`: (estate, yard, share); the estate is None, a name, a list of names or "*".
    #[getter]
    fn dst(&self, py: Python<'_>) -> (Py<PyAny>, Option<String>, Option<String>) {
        (
            self.dst_estate.clone_ref(py),
            self.dst_yard.clone(),
            self.dst_share.clone(),
        )
    }

    /// The Salt payload: a packed envelope's `salt`, or the base64-decoded `load["salt"]` of
    /// a JSON one (None if there is none).
    #[getter]
    fn salt(&self, py: Python<'_>) -> Option<Py<PyBytes>> {
        self.salt.as_ref().map(|b| b.clone_ref(py))
    }

    /// The whole load as JSON text.
    #[getter]
    fn load(&self) -> PyResult<String> {
        serde_json::to_string(&self.whole_load).map_err(|e| PyValueError::new_err(e.to_string()))
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let estate = self
            .dst_estate
            .bind(py)
            .repr()
            .map_or_else(|_| "?".to_owned(), |r| r.to_string());
        format!(
            "Message(yard={:?}, src={:?}, dst=({estate}, {:?}, {:?}), rid={:?}, salt={}, error={:?}, kind={:?})",
            self.yard,
            self.src,
            self.dst_yard,
            self.dst_share,
            self.rid,
            self.salt
                .as_ref()
                .map_or("None".to_owned(), |_| "<bytes>".to_owned()),
            self.error,
            self.kind
        )
    }
}

/// A received message decoded without the GIL; turned into a [`Message`] with it.
struct Decoded {
    yard: String,
    env: Envelope,
    salt: Option<Vec<u8>>,
}

/// A received message of either kind, or why it is skipped (the counter name).
fn decode_any(yard: String, body: Body) -> Result<Decoded, &'static str> {
    match body {
        Body::Map(map) => decode(yard, &map),
        Body::Packed(packed) => {
            let mut env = Envelope::from_packed(&packed).map_err(|_| "bad_envelope")?;
            let salt = env.salt.take().map(|s| s.to_vec());
            Ok(Decoded { yard, env, salt })
        }
    }
}

/// Why a received message is skipped (the counter name).
fn decode(yard: String, body: &Map<String, Value>) -> Result<Decoded, &'static str> {
    let env = Envelope::parse(body).map_err(|_| "bad_envelope")?;
    let salt = match env.load.get("salt") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(BASE64.decode(text).map_err(|_| "bad_salt")?),
        Some(_) => return Err("bad_salt"),
    };
    Ok(Decoded { yard, env, salt })
}

fn load_str(load: &Map<String, Value>, key: &str) -> Option<String> {
    load.get(key).and_then(Value::as_str).map(str::to_owned)
}

impl Decoded {
    fn into_message(self, py: Python<'_>) -> PyResult<Message> {
        let Self { yard, env, salt } = self;
        let [src_estate, src_yard, src_share] = env.src;
        let dst_estate = match env.dst_estate {
            DstEstate::Local => py.None(),
            DstEstate::One(name) => PyString::new(py, &name).into_any().unbind(),
            DstEstate::Many(names) => PyList::new(py, names)?.into_any().unbind(),
            DstEstate::All => PyString::new(py, "*").into_any().unbind(),
        };
        Ok(Message {
            src: (src_estate, src_yard, src_share),
            dst_estate,
            dst_yard: env.dst_yard,
            dst_share: env.dst_share,
            rid: load_str(&env.load, "rid"),
            salt: salt.map(|bytes| PyBytes::new(py, &bytes).unbind()),
            error: load_str(&env.load, "error"),
            kind: load_str(&env.load, "kind"),
            whole_load: env.load,
            yard,
        })
    }
}

/// The destination estate given from Python: None, a name ("*": all) or a list of names.
fn estate_value(estate: &Bound<'_, PyAny>) -> PyResult<Value> {
    if estate.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(name) = estate.extract::<String>() {
        return Ok(Value::String(name));
    }
    match estate.extract::<Vec<String>>() {
        Ok(names) => Ok(Value::Array(names.into_iter().map(Value::String).collect())),
        Err(_) => Err(PyTypeError::new_err(
            "destination estate must be None, a name or a list of names",
        )),
    }
}

/// A yard of a lane, for Salt processes: bound at `<lane_dir>/<lane>.<name>.uxd`.
#[pyclass(frozen, module = "saltext_raet._native")]
struct Yard {
    inner: Mutex<Option<Arc<LaneYard>>>,
    /// The yard name.
    #[pyo3(get)]
    name: String,
    /// The socket path.
    #[pyo3(get)]
    path: OsString,
}

impl Yard {
    fn guard(&self) -> MutexGuard<'_, Option<Arc<LaneYard>>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn open(&self) -> PyResult<Arc<LaneYard>> {
        self.guard()
            .clone()
            .ok_or_else(|| LaneError::new_err(format!("yard {:?} is closed", self.name)))
    }
}

#[pymethods]
impl Yard {
    /// Binds yard `name` of lane `lane` in `lane_dir` (created with mode 0700 if missing).
    /// A stale socket file is replaced; a live one is a LaneError.
    #[new]
    #[pyo3(signature = (lane_dir, name, lane = LANE.to_owned()))]
    fn new(py: Python<'_>, lane_dir: PathBuf, name: String, lane: String) -> PyResult<Self> {
        let yard = py
            .detach(|| LaneYard::bind(&lane_dir, &lane, &name))
            .map_err(py_error)?;
        let path = yard.path().as_os_str().to_owned();
        Ok(Self {
            inner: Mutex::new(Some(Arc::new(yard))),
            name,
            path,
        })
    }

    /// The socket's file descriptor (for `loop.add_reader`, `select`); -1 once closed.
    fn fileno(&self) -> i32 {
        self.guard().as_ref().map_or(-1, |y| y.as_raw_fd())
    }

    /// Sends a route envelope (src `[None, name, None]`, dst `dst`, load `load_json`) to
    /// yard `to_yard`, in as many pages as needed, without the GIL: JSON, or packed
    /// (msgpack, `salt` as bin, pages as large as the socket allows) with `salt` bytes. A destination whose queue stays full for 5 s raises
    /// BlockingIOError; a missing or dead one LaneError.
    #[pyo3(signature = (dst, load_json = None, salt = None, to_yard = MANOR.to_owned()))]
    fn send(
        &self,
        py: Python<'_>,
        dst: (Bound<'_, PyAny>, Option<String>, Option<String>),
        load_json: Option<PyBackedStr>,
        salt: Option<PyBackedBytes>,
        to_yard: String,
    ) -> PyResult<()> {
        let yard = self.open()?;
        let (estate, dst_yard, dst_share) = dst;
        let estate = estate_value(&estate)?;
        let name = self.name.clone();
        py.detach(move || {
            let load = match load_json.as_deref() {
                None => Map::new(),
                Some(text) => serde_json::from_str::<Map<String, Value>>(text).map_err(|e| {
                    PyValueError::new_err(format!("load_json is not a JSON object: {e}"))
                })?,
            };
            let body = Map::from_iter([
                (
                    "route".to_owned(),
                    serde_json::json!({"src": [null, name, null], "dst": [estate, dst_yard, dst_share]}),
                ),
                ("load".to_owned(), Value::Object(load)),
            ]);
            let mut env = Envelope::parse(&body).map_err(PyValueError::new_err)?;
            env.salt = salt.map(|salt| Arc::from(&*salt));
            let sent = if env.is_packed() {
                yard.send_packed(&to_yard, &env.to_packed())
            } else {
                yard.send(&to_yard, &body)
            };
            sent.map_err(py_error)
        })
    }

    /// Reads everything waiting on the socket (never blocks) and returns the messages
    /// completed; bad pages and envelopes are counted in `stats()` and skipped.
    fn recv(&self, py: Python<'_>) -> PyResult<Vec<Message>> {
        let yard = self.open()?;
        let decoded = py.detach(move || {
            let mut decoded = Vec::new();
            for (from, body) in yard.recv_any() {
                match decode_any(from, body) {
                    Ok(message) => decoded.push(message),
                    Err(counter) => yard.count(counter),
                }
            }
            decoded
        });
        decoded.into_iter().map(|d| d.into_message(py)).collect()
    }

    /// Counters of the yard: pages and books (see raet::lane::YardCore::stats), `sent`,
    /// `received`, and messages skipped (`bad_envelope`, `bad_salt`). Empty once closed.
    fn stats(&self) -> BTreeMap<&'static str, u64> {
        self.guard().as_ref().map(|y| y.stats()).unwrap_or_default()
    }

    /// Removes the socket file and closes the socket; idempotent (also done on drop).
    fn close(&self) {
        self.guard().take();
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        _exc_type: Option<Bound<'_, PyAny>>,
        _exc: Option<Bound<'_, PyAny>>,
        _tb: Option<Bound<'_, PyAny>>,
    ) {
        self.close();
    }

    fn __repr__(&self) -> String {
        let state = if self.guard().is_some() {
            ""
        } else {
            " closed"
        };
        format!("<Yard {:?} at {:?}{state}>", self.name, self.path)
    }
}

/// The module `saltext_raet._native`.
#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("LANE", LANE)?;
    m.add("MANOR", MANOR)?;
    m.add("VERSION", env!("CARGO_PKG_VERSION"))?;
    m.add("LaneError", m.py().get_type::<LaneError>())?;
    m.add_function(wrap_pyfunction!(lane_dir, m)?)?;
    m.add_class::<Message>()?;
    m.add_class::<Yard>()?;
    Ok(())
}
