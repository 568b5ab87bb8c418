//! Join (tk 1) bodies on the wire: the mapping a join request and its accept response carry
//! (spec §7): `name`, `mode`, `kind`, `uid` (response only), `verhex`, `pubhex`, `role`, in
//! that order, as the reference's `Joiner.join` / `Joinent.ackAccept` build them, then `fast`
//! (1) when the sender offers the fast profile (not in the reference, which ignores keys it
//! does not read).

use serde_json::Value;

use super::body::BodyMap;
use super::{
    BodyKind, CoatKind, FootKind, Head, HeadKind, PacketError, PacketKind, TransactionKind,
};

/// Why a join body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// A required field is absent, of the wrong type, empty or out of range.
    #[error("join body field `{0}` missing or invalid")]
    Field(&'static str),
}

/// A join request or response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRepr {
    /// The sender's estate name.
    pub name: String,
    /// The sender's mode: bit 0 set for a main estate.
    pub mode: u8,
    /// The sender's application kind.
    pub kind: u8,
    /// In a response: the joinent's uid for the joiner (never 0); `None` in a request.
    pub uid: Option<u32>,
    /// The sender's long-term verify key, hex.
    pub verhex: String,
    /// The sender's long-term public key, hex.
    pub pubhex: String,
    /// The sender's role.
    pub role: String,
    /// The sender offers the fast profile (`"fast": 1`; absent: it does not).
    pub fast: bool,
}

/// A non-empty string field.
fn text(body: &BodyMap, key: &'static str) -> Result<String, JoinError> {
    body.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or(JoinError::Field(key))
}

/// An unsigned integer field that fits `T`.
fn number<T: TryFrom<u64>>(body: &BodyMap, key: &'static str) -> Result<T, JoinError> {
    body.get(key)
        .and_then(Value::as_u64)
        .and_then(|v| T::try_from(v).ok())
        .ok_or(JoinError::Field(key))
}

impl JoinRepr {
    /// Whether the sender is a main estate.
    pub fn main(&self) -> bool {
        self.mode & 1 == 1
    }

    /// A join request body (every field but `uid` required; a `uid` is ignored).
    pub fn parse_request(body: &BodyMap) -> Result<Self, JoinError> {
        Self::parse(body, None)
    }

    /// A join response body (every field required, `uid` not 0).
    pub fn parse_response(body: &BodyMap) -> Result<Self, JoinError> {
        let uid = number::<u32>(body, "uid")
            .ok()
            .filter(|&uid| uid != 0)
            .ok_or(JoinError::Field("uid"))?;
        Self::parse(body, Some(uid))
    }

    fn parse(body: &BodyMap, uid: Option<u32>) -> Result<Self, JoinError> {
        Ok(Self {
            name: text(body, "name")?,
            mode: number(body, "mode")?,
            kind: number(body, "kind")?,
            uid,
            verhex: text(body, "verhex")?,
            pubhex: text(body, "pubhex")?,
            role: text(body, "role")?,
            fast: body.get("fast").and_then(Value::as_u64) == Some(1),
        })
    }

    /// The body mapping, fields in the reference's order (`uid` only when set).
    pub fn emit(&self) -> BodyMap {
        let mut body = BodyMap::new();
        body.insert("name".into(), self.name.clone().into());
        body.insert("mode".into(), self.mode.into());
        body.insert("kind".into(), self.kind.into());
        if let Some(uid) = self.uid {
            body.insert("uid".into(), uid.into());
        }
        body.insert("verhex".into(), self.verhex.clone().into());
        body.insert("pubhex".into(), self.pubhex.clone().into());
        body.insert("role".into(), self.role.clone().into());
        if self.fast {
            body.insert("fast".into(), 1.into());
        }
        body
    }
}

/// A join request datagram with `body`, unsigned as joins travel: from an estate whose uid
/// for us is `se`, naming our uid `de` for it (0: a vacuous join, a first contact),
/// transaction id `ti`.
pub fn request(se: u32, de: u32, ti: u32, body: &BodyMap) -> Result<Vec<u8>, PacketError> {
    let head = Head {
        hk: HeadKind::Raet,
        pk: PacketKind::Request,
        tk: TransactionKind::Join,
        se,
        de,
        ti,
        bk: BodyKind::Json,
        ck: CoatKind::Nada,
        fk: FootKind::Nada,
        ..Head::default()
    };
    super::pack(&head, &super::body::encode_json(body), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::body::{decode_json, encode_json};
    use proptest::prelude::*;

    fn sample(uid: Option<u32>) -> JoinRepr {
        JoinRepr {
            name: "other".into(),
            mode: 0,
            kind: 0,
            uid,
            verhex: "ab".repeat(32),
            pubhex: "cd".repeat(32),
            role: "other".into(),
            fast: false,
        }
    }

    #[test]
    fn emits_the_reference_field_order() {
        let json = encode_json(&sample(Some(2)).emit());
        let text = String::from_utf8(json).expect("utf8");
        assert!(
            text.starts_with(r#"{"name":"other","mode":0,"kind":0,"uid":2,"verhex":"#),
            "{text}"
        );
        assert!(text.ends_with(r#","role":"other"}"#), "{text}");
        let offer = JoinRepr {
            fast: true,
            ..sample(None)
        };
        let text = String::from_utf8(encode_json(&offer.emit())).expect("utf8");
        assert!(text.ends_with(r#","role":"other","fast":1}"#), "{text}");
        let parsed = JoinRepr::parse_request(&decode_json(text.as_bytes()).expect("json"));
        assert_eq!(parsed, Ok(offer));
        let request = encode_json(&sample(None).emit());
        assert!(!String::from_utf8(request).expect("utf8").contains("uid"));
    }

    #[test]
    fn every_missing_field_is_named() {
        let full = sample(Some(2)).emit();
        for key in ["name", "mode", "kind", "uid", "verhex", "pubhex", "role"] {
            let mut body = full.clone();
            body.remove(key);
            assert_eq!(JoinRepr::parse_response(&body), Err(JoinError::Field(key)));
            if key != "uid" {
                assert_eq!(JoinRepr::parse_request(&body), Err(JoinError::Field(key)));
            }
        }
    }

    #[test]
    fn bad_values_are_refused() {
        let full = sample(Some(2)).emit();
        let cases = [
            ("name", Value::from("")),
            ("mode", Value::from(256)),
            ("kind", Value::from(-1)),
            ("uid", Value::from(0)),
            ("uid", Value::from(u64::from(u32::MAX) + 1)),
            ("role", Value::from(3)),
            ("verhex", Value::Null),
        ];
        for (key, value) in cases {
            let mut body = full.clone();
            body.insert(key.into(), value);
            assert_eq!(JoinRepr::parse_response(&body), Err(JoinError::Field(key)));
        }
    }

    #[test]
    fn a_request_ignores_a_uid() {
        let body = sample(Some(5)).emit();
        assert_eq!(JoinRepr::parse_request(&body), Ok(sample(None)));
    }

    fn text_field() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_.-]{1,20}"
    }

    /// The keys a join body may hold, and one it does not.
    const KEYS: [&str; 9] = [
        "name", "mode", "kind", "uid", "verhex", "pubhex", "role", "fast", "x",
    ];

    proptest! {
        #[test]
        fn round_trips_through_json(
            name in text_field(),
            mode: u8,
            kind: u8,
            uid in proptest::option::of(1u32..),
            verhex in text_field(),
            pubhex in text_field(),
            role in text_field(),
            fast: bool,
        ) {
            let repr = JoinRepr { name, mode, kind, uid, verhex, pubhex, role, fast };
            let body = decode_json(&encode_json(&repr.emit())).expect("json");
            let parsed = match uid {
                Some(_) => JoinRepr::parse_response(&body),
                None => JoinRepr::parse_request(&body),
            };
            prop_assert_eq!(parsed, Ok(repr));
        }

        /// Bodies of arbitrary join-like fields never panic the parser, and whatever it
        /// accepts emits back to itself.
        #[test]
        fn arbitrary_bodies_are_checked(
            fields in proptest::collection::vec((0usize..KEYS.len(), prop_oneof![
                any::<i64>().prop_map(Value::from),
                "[a-z]{0,3}".prop_map(Value::from),
                Just(Value::Null),
            ]), 0..10),
        ) {
            let body: BodyMap = fields
                .into_iter()
                .map(|(k, v)| (KEYS.get(k).copied().unwrap_or("x").to_owned(), v))
                .collect();
            if let Ok(repr) = JoinRepr::parse_response(&body) {
                prop_assert_eq!(JoinRepr::parse_response(&repr.emit()), Ok(repr));
            }
            if let Ok(repr) = JoinRepr::parse_request(&body) {
                prop_assert_eq!(JoinRepr::parse_request(&repr.emit()), Ok(repr));
            }
        }
    }
}
