//! The route envelope Salt's messages travel in between local yards (lane) and remote estates
//! (road), its well-known names, and where a daemon's lane lives: all the Python extension
//! needs of the daemons.
//!
//! A message is a JSON object `{"route": {"src": [estate, yard, share], "dst": [estate, yard,
//! share]}, "load": {...}}` (Salt's old RAET integration). The destination estate is `null`
//! (this host), a name, a list of names, or `"*"` (every joined peer). A yard registers its
//! shares and restrictions by sending to share `register` of yard [`MANOR`]; share `status` of
//! the same yard answers the daemon's status.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

/// The lane directory of a daemon: `<sock_dir>/raet`.
pub fn lane_dir(sock_dir: &Path) -> PathBuf {
    sock_dir.join("raet")
}

/// The daemon's own yard on its lane.
pub const MANOR: &str = "manor";
/// The lane name of both daemons.
pub const LANE: &str = "salt";
/// Share of the daemon's yard that registers the sending yard.
pub const SHARE_REGISTER: &str = "register";
/// Share of the daemon's yard that answers the daemon's status.
pub const SHARE_STATUS: &str = "status";
/// Share that receives presence changes.
pub const SHARE_PRESENCE: &str = "presence";
/// Load key of a request id, copied into the error envelope answering the request.
pub const RID: &str = "rid";

/// Why a message was not delivered (the `kind` of an error envelope).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The message is not a valid envelope.
    BadEnvelope,
    /// No yard is registered for the destination share.
    UnknownShare,
    /// The destination yard is not on the lane.
    NoSuchYard,
    /// The destination estate is not a joined, accepted peer.
    UnknownEstate,
    /// The destination yard does not accept this share from this source, or (from the road)
    /// the destination yard is named but does not serve the message's share.
    Refused,
    /// A road message claims to come from a yard reserved to the daemon ([`MANOR`]) without
    /// being a daemon's error envelope: dropped, never answered.
    ReservedYard,
    /// The road could not deliver the message.
    SendFailed,
}

impl ErrorKind {
    /// The code carried in the envelope (`load.kind`) and used as counter name.
    pub fn code(self) -> &'static str {
        match self {
            Self::BadEnvelope => "bad_envelope",
            Self::UnknownShare => "unknown_share",
            Self::NoSuchYard => "no_such_yard",
            Self::UnknownEstate => "unknown_estate",
            Self::Refused => "refused",
            Self::ReservedYard => "reserved_yard",
            Self::SendFailed => "send_failed",
        }
    }
}

/// The destination estate of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DstEstate {
    /// `null`: this host.
    Local,
    /// One estate by name.
    One(String),
    /// A list of estates.
    Many(Vec<String>),
    /// `"*"`: every joined, accepted peer.
    All,
}

/// A parsed envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Source estate (filled by the daemons), yard, share.
    pub src: [Option<String>; 3],
    /// Destination estate.
    pub dst_estate: DstEstate,
    /// Destination yard (`None`: the yard registered for the share).
    pub dst_yard: Option<String>,
    /// Destination share.
    pub dst_share: Option<String>,
    /// The payload.
    pub load: Map<String, Value>,
}

fn opt_str(v: Option<&Value>) -> Result<Option<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("expected a string or null, got {other}")),
    }
}

fn triple(route: &Map<String, Value>, key: &str) -> Result<Vec<Value>, String> {
    match route.get(key) {
        Some(Value::Array(a)) if a.len() == 3 => Ok(a.clone()),
        _ => Err(format!("route.{key} must be a list of three items")),
    }
}

fn opt_value(s: &Option<String>) -> Value {
    s.as_ref().map_or(Value::Null, |s| Value::String(s.clone()))
}

impl Envelope {
    /// Parses a message body.
    pub fn parse(body: &Map<String, Value>) -> Result<Self, String> {
        let Some(Value::Object(route)) = body.get("route") else {
            return Err("missing route object".into());
        };
        let src = triple(route, "src")?;
        let dst = triple(route, "dst")?;
        let dst_estate = match dst.first() {
            None | Some(Value::Null) => DstEstate::Local,
            Some(Value::String(s)) if s == "*" => DstEstate::All,
            Some(Value::String(s)) => DstEstate::One(s.clone()),
            Some(Value::Array(items)) => DstEstate::Many(
                items
                    .iter()
                    .map(|i| i.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or("route.dst estate list must hold names")?,
            ),
            Some(other) => return Err(format!("bad destination estate {other}")),
        };
        let load = match body.get("load") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(load)) => load.clone(),
            Some(_) => return Err("load must be an object".into()),
        };
        Ok(Self {
            src: [
                opt_str(src.first())?,
                opt_str(src.get(1))?,
                opt_str(src.get(2))?,
            ],
            dst_estate,
            dst_yard: opt_str(dst.get(1))?,
            dst_share: opt_str(dst.get(2))?,
            load,
        })
    }

    /// The message body.
    pub fn to_body(&self) -> Map<String, Value> {
        let estate = match &self.dst_estate {
            DstEstate::Local => Value::Null,
            DstEstate::One(s) => Value::String(s.clone()),
            DstEstate::Many(v) => json!(v),
            DstEstate::All => Value::String("*".into()),
        };
        let src: Vec<Value> = self.src.iter().map(opt_value).collect();
        let mut body = Map::new();
        body.insert(
            "route".into(),
            json!({"src": src, "dst": [estate, opt_value(&self.dst_yard), opt_value(&self.dst_share)]}),
        );
        body.insert("load".into(), Value::Object(self.load.clone()));
        body
    }

    /// Whether this is an error envelope (never answered by another error).
    pub fn is_error(&self) -> bool {
        self.load.contains_key("error") && self.load.contains_key("kind")
    }

    /// Whether this has the shape of a daemon's error envelope ([`reply_error`]): source yard
    /// [`MANOR`] with no source share, string `error` and `kind`. The only message from yard
    /// [`MANOR`] another daemon may send over the road.
    pub fn is_daemon_error(&self) -> bool {
        let text = |key| matches!(self.load.get(key), Some(Value::String(_)));
        self.src[1].as_deref() == Some(MANOR)
            && self.src[2].is_none()
            && text("error")
            && text("kind")
    }

    /// The error envelope answering this one: route swapped (from `own` estate, yard
    /// [`MANOR`], to the source), load `{"error": reason, "kind": code}` plus the request id
    /// `rid` of this message when it has one (so that a waiting requester fails at once).
    pub fn error_reply(&self, own: &str, kind: ErrorKind, reason: &str) -> Self {
        let dst_estate = match &self.src[0] {
            Some(e) if e != own => DstEstate::One(e.clone()),
            _ => DstEstate::Local,
        };
        let mut reply = reply_error(dst_estate, self.src[1].clone(), own, kind, reason);
        if let Some(rid) = self.load.get(RID) {
            reply.load.insert(RID.into(), rid.clone());
        }
        reply
    }
}

/// An error envelope from `own`'s [`MANOR`] to `(estate, yard)`.
pub fn reply_error(
    estate: DstEstate,
    yard: Option<String>,
    own: &str,
    kind: ErrorKind,
    reason: &str,
) -> Envelope {
    let mut load = Map::new();
    load.insert("error".into(), Value::String(reason.to_owned()));
    load.insert("kind".into(), Value::String(kind.code().into()));
    Envelope {
        src: [Some(own.to_owned()), Some(MANOR.to_owned()), None],
        dst_estate: estate,
        dst_yard: yard,
        dst_share: None,
        load,
    }
}
