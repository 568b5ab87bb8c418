//! The route envelope Salt's messages travel in between local yards (lane) and remote estates
//! (road), its well-known names, and where a daemon's lane lives: all the Python extension
//! needs of the daemons.
//!
//! A message is a JSON object `{"route": {"src": [estate, yard, share], "dst": [estate, yard,
//! share]}, "load": {...}}` (Salt's old RAET integration), or, when it carries a Salt payload,
//! the same map in msgpack with the payload as `bin` next to the load: `{"route": ..., "load":
//! {...}, "salt": <bin>}` ([`Envelope::to_packed`]; a lane's packed book, a road's raw body).
//! The daemons route on `route` and pass the payload through untouched. The destination estate
//! is `null`
//! (this host), a name, a list of names, or `"*"` (every joined peer). A yard registers its
//! shares and restrictions by sending to share `register` of yard [`MANOR`]; share `status` of
//! the same yard answers the daemon's status.

use std::path::{Path, PathBuf};

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};
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
/// Load key of a Salt payload in a JSON envelope (base64 text); in a packed envelope the
/// payload is the top-level `bin` of this name.
pub const SALT: &str = "salt";

/// Why a packed (msgpack) envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Not a msgpack map of `route`, `load` and `salt` (bin), or bytes after it.
    Msgpack(String),
    /// The map decoded but its route or load is not an envelope's.
    Route(String),
}

impl std::fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Msgpack(e) => write!(f, "malformed msgpack envelope: {e}"),
            Self::Route(e) => write!(f, "bad envelope: {e}"),
        }
    }
}

impl std::error::Error for EnvelopeError {}

/// The packed envelope on the wire, as read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PackedIn {
    route: Value,
    #[serde(default)]
    load: Value,
    #[serde(default)]
    salt: Option<Bin>,
}

/// The packed envelope on the wire, as written.
#[derive(Serialize)]
struct PackedOut<'a, L> {
    route: Value,
    load: &'a L,
    #[serde(skip_serializing_if = "Option::is_none")]
    salt: Option<BinRef<'a>>,
}

/// msgpack `bin` (or `str`, taken as its bytes) as read.
struct Bin(Vec<u8>);

impl<'de> Deserialize<'de> for Bin {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Bin;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bin, E> {
                Ok(Bin(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bin, E> {
                Ok(Bin(v))
            }
        }
        d.deserialize_bytes(Visitor)
    }
}

/// msgpack `bin` as written.
struct BinRef<'a>(&'a [u8]);

impl Serialize for BinRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

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
    /// A Salt payload carried as bytes (a packed envelope's `salt`); passed through, never
    /// decoded by the daemons.
    pub salt: Option<Arc<[u8]>>,
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
            salt: None,
        })
    }

    /// Parses a packed (msgpack) envelope: a map of `route` (as in JSON), `load` (a map
    /// without bytes) and `salt` (bin, optional); nothing may follow it.
    pub fn from_packed(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        // A map (fixmap, map 16, map 32): rmp-serde would also take a struct as an array.
        if !matches!(bytes.first(), Some(0x80..=0x8f | 0xde | 0xdf)) {
            return Err(EnvelopeError::Msgpack("not a map".into()));
        }
        let mut rest = bytes;
        let mut de = rmp_serde::Deserializer::new(&mut rest);
        let packed =
            PackedIn::deserialize(&mut de).map_err(|e| EnvelopeError::Msgpack(e.to_string()))?;
        if !rest.is_empty() {
            let extra = rest.len();
            return Err(EnvelopeError::Msgpack(format!(
                "{extra} bytes after the map"
            )));
        }
        let mut body = Map::new();
        body.insert("route".into(), packed.route);
        body.insert("load".into(), packed.load);
        let mut env = Self::parse(&body).map_err(EnvelopeError::Route)?;
        env.salt = packed.salt.map(|b| b.0.into());
        Ok(env)
    }

    /// The packed (msgpack) envelope: `route`, `load` and the Salt payload as `bin`.
    pub fn to_packed(&self) -> Vec<u8> {
        let out = PackedOut {
            route: self.route_value(),
            load: &self.load,
            salt: self.salt.as_deref().map(BinRef),
        };
        // Values from JSON and bytes always encode (only I/O errors could fail, and a Vec
        // has none).
        rmp_serde::to_vec_named(&out).unwrap_or_default()
    }

    /// The packed envelope as [`Envelope::to_packed`] writes it, with `load` in place of its
    /// own load and no Salt payload: `load` is serialised straight from its type (see
    /// [`Envelope::encode_with_load`]).
    pub fn to_packed_with_load<L: Serialize>(
        &self,
        load: &L,
    ) -> Result<Vec<u8>, rmp_serde::encode::Error> {
        rmp_serde::to_vec_named(&PackedOut {
            route: self.route_value(),
            load,
            salt: None,
        })
    }

    /// Whether this travels packed ([`Envelope::to_packed`]): it carries a Salt payload as
    /// bytes.
    pub fn is_packed(&self) -> bool {
        self.salt.is_some()
    }

    fn route_value(&self) -> Value {
        let estate = match &self.dst_estate {
            DstEstate::Local => Value::Null,
            DstEstate::One(s) => Value::String(s.clone()),
            DstEstate::Many(v) => json!(v),
            DstEstate::All => Value::String("*".into()),
        };
        let src: Vec<Value> = self.src.iter().map(opt_value).collect();
        json!({"src": src, "dst": [estate, opt_value(&self.dst_yard), opt_value(&self.dst_share)]})
    }

    /// The JSON message body (a Salt payload carried as bytes goes base64-encoded into
    /// `load.salt`, for a peer that takes JSON only).
    pub fn to_body(&self) -> Map<String, Value> {
        let mut load = self.load.clone();
        if let Some(salt) = &self.salt {
            load.insert(SALT.into(), Value::String(BASE64.encode(salt)));
        }
        let mut body = Map::new();
        body.insert("route".into(), self.route_value());
        body.insert("load".into(), Value::Object(load));
        body
    }

    /// The JSON message body of this envelope, as [`raet::packet::body::encode_json`] of
    /// [`Envelope::to_body`] would be, with `load` in place of its own load and no Salt
    /// payload: `load` is serialised straight from its type, never built as a `Value` tree (a
    /// daemon's status of many remotes).
    #[cfg(feature = "daemon")]
    pub fn encode_with_load<L: Serialize>(&self, load: &L) -> Result<Vec<u8>, serde_json::Error> {
        #[derive(Serialize)]
        struct Body<'a, L> {
            route: Value,
            load: &'a L,
        }
        raet::packet::body::to_json(&Body {
            route: self.route_value(),
            load,
        })
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
        salt: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_salt(salt: &[u8]) -> Envelope {
        let body = json!({"route": {"src": [null, "req1", null], "dst": [["m1", "m2"], null, "req"]},
            "load": {"rid": "r7"}});
        let Value::Object(body) = body else {
            unreachable!()
        };
        let mut env = Envelope::parse(&body).expect("envelope");
        env.salt = Some(salt.into());
        env
    }

    #[test]
    fn a_packed_envelope_carries_the_payload_as_bin() {
        let payload: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
        let env = with_salt(&payload);
        let packed = env.to_packed();
        // The payload is one msgpack bin 32 (0xc6, big-endian length) followed by its
        // bytes, no base64, no escaping.
        let mut bin = vec![0xc6];
        bin.extend_from_slice(&300_000u32.to_be_bytes());
        bin.extend_from_slice(&payload);
        assert!(
            packed.windows(bin.len()).any(|w| w == bin),
            "payload as bin"
        );
        assert!(packed.len() < payload.len() + 100);
        let back = Envelope::from_packed(&packed).expect("parses");
        assert_eq!(back, env);
        assert!(back.is_packed());
        // The JSON form (for a peer that takes JSON only) has it base64-encoded.
        let body = env.to_body();
        let text = body["load"]["salt"].as_str().expect("base64 text");
        assert_eq!(BASE64.decode(text).expect("base64"), payload);
        // An envelope without a payload packs without `salt`.
        let mut bare = env.clone();
        bare.salt = None;
        let back = Envelope::from_packed(&bare.to_packed()).expect("parses");
        assert_eq!(back, bare);
        assert!(!back.is_packed());
    }

    #[test]
    fn malformed_packed_envelopes_are_typed_errors() {
        let good = with_salt(b"abc").to_packed();
        let msgpack =
            |bytes: &[u8]| matches!(Envelope::from_packed(bytes), Err(EnvelopeError::Msgpack(_)));
        assert!(msgpack(b""));
        assert!(msgpack(b"\xc1"));
        assert!(msgpack(&good[..good.len() - 1]), "truncated");
        assert!(msgpack(&[&good[..], b"\x00"].concat()), "trailing bytes");
        // Not a map; a map with an unknown key; `salt` not bytes; bytes in the load.
        let pack = |v: &Value| rmp_serde::to_vec_named(v).expect("pack");
        assert!(msgpack(&pack(&json!([1, 2]))));
        let route = json!({"src": [null, "a", null], "dst": [null, null, "x"]});
        assert!(msgpack(&pack(&json!({"route": route, "other": 1}))));
        assert!(msgpack(&pack(&json!({"route": route, "salt": 5}))));
        let mut with_bytes = rmp_serde::to_vec_named(&json!({"route": route})).expect("pack");
        with_bytes[0] += 1; // one more key: "load" holding a bin
        with_bytes.extend_from_slice(b"\xa4load\x81\xa1k\xc4\x01z");
        assert!(msgpack(&with_bytes));
        // A well-formed map whose route is not an envelope's.
        assert!(matches!(
            Envelope::from_packed(&pack(
                &json!({"route": {"src": [1, 2, 3], "dst": [null, null, null]}})
            )),
            Err(EnvelopeError::Route(_))
        ));
        assert!(matches!(
            Envelope::from_packed(&pack(&json!({"route": route, "load": [1]}))),
            Err(EnvelopeError::Route(_))
        ));
        assert!(Envelope::from_packed(&with_salt(b"").to_packed()).is_ok());
    }
}
