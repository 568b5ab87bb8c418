//! Allow (tk 3) bodies on the wire: the CurveCP-style hello, cookie and initiate, and the
//! plain texts boxed inside the cookie and the initiate (spec §8).
//!
//! Each body is a fixed-size concatenation of byte fields. A view (`Hello`, `Cookie`,
//! `CookieStuff`, `Initiate`, `InitiateStuff`) is made with `new_checked`, which refuses any
//! other length with an [`AllowError`]; its accessors are then infallible and return
//! fixed-size arrays borrowed from the input. The `emit` functions build the bodies the
//! sender side puts on the wire (sealed boxes are passed as produced by
//! [`SharedBox`](crate::crypto::SharedBox) and their length is checked).

use std::net::SocketAddr;
use std::ops::Range;

use crate::crypto::{KEY_SIZE, TAG_SIZE};

use super::NONCE_SIZE;

/// Why an allow body (or a box inside one) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowError {
    /// A body or one of its fields does not have its fixed size.
    #[error("{part}: {actual} bytes, expected {expected}")]
    Length {
        /// Which body or field.
        part: &'static str,
        /// The fixed size.
        expected: usize,
        /// The size given.
        actual: usize,
    },
}

/// The hello's plain text: hexlify(32 zero bytes).
pub const HELLO_PLAIN: [u8; 64] = [b'0'; 64];
/// Size of the random cookie part ("oreo") the allowent checks in the initiate.
pub const OREO_SIZE: usize = 24;
/// Size of the space-padded fqdn in the initiate's boxed part.
pub const FQDN_SIZE: usize = 128;

/// The fixed-size field `range` of a body whose length was checked.
fn take<'a, const N: usize>(
    part: &'static str,
    bytes: &'a [u8],
    range: Range<usize>,
) -> Result<&'a [u8; N], AllowError> {
    let field = bytes.get(range).unwrap_or_default();
    field.try_into().map_err(|_| AllowError::Length {
        part,
        expected: N,
        actual: field.len(),
    })
}

/// Fails unless `bytes` is exactly `size` long.
fn check_len(part: &'static str, bytes: &[u8], size: usize) -> Result<(), AllowError> {
    if bytes.len() == size {
        Ok(())
    } else {
        Err(AllowError::Length {
            part,
            expected: size,
            actual: bytes.len(),
        })
    }
}

/// A body of `size` bytes made of `fields` (name, bytes, where), each of exactly its range's
/// length.
fn assemble(
    size: usize,
    fields: &[(&'static str, &[u8], Range<usize>)],
) -> Result<Vec<u8>, AllowError> {
    let mut out = vec![0u8; size];
    for (part, bytes, range) in fields {
        check_len(part, bytes, range.len())?;
        if let Some(dst) = out.get_mut(range.clone()) {
            dst.copy_from_slice(bytes);
        }
    }
    Ok(out)
}

/// A big-endian u32 field.
fn be32(word: &[u8; 4]) -> u32 {
    u32::from_be_bytes(*word)
}

/// The hello (allower → allowent): its short-term public key and a box proving it knows the
/// allowent's long-term public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello<'a> {
    plain: &'a [u8; 64],
    short_public: &'a [u8; KEY_SIZE],
    sealed: &'a [u8; 64 + TAG_SIZE],
    nonce: &'a [u8; NONCE_SIZE],
}

/// Hello field layout.
pub mod hello {
    use std::ops::Range;

    /// The plain text (the receiver compares it with the opened box).
    pub const PLAIN: Range<usize> = 0..64;
    /// The allower's short-term public key.
    pub const SHORT_PUBLIC: Range<usize> = 64..96;
    /// The plain text boxed (allower short-term secret, allowent long-term public).
    pub const SEALED: Range<usize> = 96..176;
    /// The box's nonce.
    pub const NONCE: Range<usize> = 176..200;
    /// The whole body.
    pub const SIZE: usize = 200;
}

impl<'a> Hello<'a> {
    /// A view of a hello body; exactly [`hello::SIZE`] bytes.
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, AllowError> {
        check_len("hello", bytes, hello::SIZE)?;
        Ok(Hello {
            plain: take("hello plain", bytes, hello::PLAIN)?,
            short_public: take("hello short public", bytes, hello::SHORT_PUBLIC)?,
            sealed: take("hello box", bytes, hello::SEALED)?,
            nonce: take("hello nonce", bytes, hello::NONCE)?,
        })
    }

    /// The plain text.
    pub fn plain(&self) -> &'a [u8; 64] {
        self.plain
    }

    /// The allower's short-term public key.
    pub fn short_public(&self) -> &'a [u8; KEY_SIZE] {
        self.short_public
    }

    /// The boxed plain text.
    pub fn sealed(&self) -> &'a [u8; 64 + TAG_SIZE] {
        self.sealed
    }

    /// The box's nonce.
    pub fn nonce(&self) -> &'a [u8; NONCE_SIZE] {
        self.nonce
    }

    /// A hello body: [`HELLO_PLAIN`], `short_public`, `sealed` ([`HELLO_PLAIN`] boxed),
    /// `nonce`.
    pub fn emit(
        short_public: &[u8; KEY_SIZE],
        sealed: &[u8],
        nonce: &[u8; NONCE_SIZE],
    ) -> Result<Vec<u8>, AllowError> {
        assemble(
            hello::SIZE,
            &[
                ("hello plain", &HELLO_PLAIN, hello::PLAIN),
                ("hello short public", short_public, hello::SHORT_PUBLIC),
                ("hello box", sealed, hello::SEALED),
                ("hello nonce", nonce, hello::NONCE),
            ],
        )
    }
}

/// The cookie (allowent → allower): a box of [`CookieStuff`] under the hello's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cookie<'a> {
    sealed: &'a [u8; cookie_stuff::SIZE + TAG_SIZE],
    nonce: &'a [u8; NONCE_SIZE],
}

/// Cookie field layout.
pub mod cookie {
    use std::ops::Range;

    /// The boxed [`CookieStuff`](super::CookieStuff).
    pub const SEALED: Range<usize> = 0..80;
    /// The box's nonce.
    pub const NONCE: Range<usize> = 80..104;
    /// The whole body.
    pub const SIZE: usize = 104;
}

impl<'a> Cookie<'a> {
    /// A view of a cookie body; exactly [`cookie::SIZE`] bytes.
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, AllowError> {
        check_len("cookie", bytes, cookie::SIZE)?;
        Ok(Cookie {
            sealed: take("cookie box", bytes, cookie::SEALED)?,
            nonce: take("cookie nonce", bytes, cookie::NONCE)?,
        })
    }

    /// The boxed cookie stuff.
    pub fn sealed(&self) -> &'a [u8; cookie_stuff::SIZE + TAG_SIZE] {
        self.sealed
    }

    /// The box's nonce.
    pub fn nonce(&self) -> &'a [u8; NONCE_SIZE] {
        self.nonce
    }

    /// A cookie body: `sealed` (the boxed [`CookieStuff`]), `nonce`.
    pub fn emit(sealed: &[u8], nonce: &[u8; NONCE_SIZE]) -> Result<Vec<u8>, AllowError> {
        assemble(
            cookie::SIZE,
            &[
                ("cookie box", sealed, cookie::SEALED),
                ("cookie nonce", nonce, cookie::NONCE),
            ],
        )
    }
}

/// The plain text boxed in a cookie: the allowent's short-term public key, both estate ids
/// and the oreo the initiate must echo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieStuff<'a> {
    short_public: &'a [u8; KEY_SIZE],
    sender_uid: &'a [u8; 4],
    receiver_uid: &'a [u8; 4],
    oreo: &'a [u8; OREO_SIZE],
}

/// Cookie stuff field layout.
pub mod cookie_stuff {
    use std::ops::Range;

    /// The allowent's short-term public key.
    pub const SHORT_PUBLIC: Range<usize> = 0..32;
    /// The allowent's uid for the allower (big-endian).
    pub const SENDER_UID: Range<usize> = 32..36;
    /// The allower's uid for the allowent (big-endian).
    pub const RECEIVER_UID: Range<usize> = 36..40;
    /// The oreo.
    pub const OREO: Range<usize> = 40..64;
    /// The whole plain text.
    pub const SIZE: usize = 64;
}

impl<'a> CookieStuff<'a> {
    /// A view of an opened cookie box; exactly [`cookie_stuff::SIZE`] bytes.
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, AllowError> {
        check_len("cookie stuff", bytes, cookie_stuff::SIZE)?;
        Ok(CookieStuff {
            short_public: take("cookie short public", bytes, cookie_stuff::SHORT_PUBLIC)?,
            sender_uid: take("cookie sender uid", bytes, cookie_stuff::SENDER_UID)?,
            receiver_uid: take("cookie receiver uid", bytes, cookie_stuff::RECEIVER_UID)?,
            oreo: take("cookie oreo", bytes, cookie_stuff::OREO)?,
        })
    }

    /// The allowent's short-term public key.
    pub fn short_public(&self) -> &'a [u8; KEY_SIZE] {
        self.short_public
    }

    /// The allowent's uid for the allower.
    pub fn sender_uid(&self) -> u32 {
        be32(self.sender_uid)
    }

    /// The allower's uid for the allowent.
    pub fn receiver_uid(&self) -> u32 {
        be32(self.receiver_uid)
    }

    /// The oreo.
    pub fn oreo(&self) -> &'a [u8; OREO_SIZE] {
        self.oreo
    }

    /// A cookie's plain text.
    pub fn emit(
        short_public: &[u8; KEY_SIZE],
        sender_uid: u32,
        receiver_uid: u32,
        oreo: &[u8; OREO_SIZE],
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(cookie_stuff::SIZE);
        out.extend_from_slice(short_public);
        out.extend_from_slice(&sender_uid.to_be_bytes());
        out.extend_from_slice(&receiver_uid.to_be_bytes());
        out.extend_from_slice(oreo);
        out
    }
}

/// The initiate (allower → allowent): the allower's short-term key again, the oreo, and a box
/// of [`InitiateStuff`] under the short-term keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Initiate<'a> {
    short_public: &'a [u8; KEY_SIZE],
    oreo: &'a [u8; OREO_SIZE],
    sealed: &'a [u8; initiate_stuff::SIZE + TAG_SIZE],
    nonce: &'a [u8; NONCE_SIZE],
}

/// Initiate field layout.
pub mod initiate {
    use std::ops::Range;

    /// The allower's short-term public key.
    pub const SHORT_PUBLIC: Range<usize> = 0..32;
    /// The cookie's oreo, echoed.
    pub const OREO: Range<usize> = 32..56;
    /// The boxed [`InitiateStuff`](super::InitiateStuff).
    pub const SEALED: Range<usize> = 56..304;
    /// The box's nonce.
    pub const NONCE: Range<usize> = 304..328;
    /// The whole body.
    pub const SIZE: usize = 328;
}

impl<'a> Initiate<'a> {
    /// A view of an initiate body; exactly [`initiate::SIZE`] bytes.
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, AllowError> {
        check_len("initiate", bytes, initiate::SIZE)?;
        Ok(Initiate {
            short_public: take("initiate short public", bytes, initiate::SHORT_PUBLIC)?,
            oreo: take("initiate oreo", bytes, initiate::OREO)?,
            sealed: take("initiate box", bytes, initiate::SEALED)?,
            nonce: take("initiate nonce", bytes, initiate::NONCE)?,
        })
    }

    /// The allower's short-term public key.
    pub fn short_public(&self) -> &'a [u8; KEY_SIZE] {
        self.short_public
    }

    /// The echoed oreo.
    pub fn oreo(&self) -> &'a [u8; OREO_SIZE] {
        self.oreo
    }

    /// The boxed initiate stuff.
    pub fn sealed(&self) -> &'a [u8; initiate_stuff::SIZE + TAG_SIZE] {
        self.sealed
    }

    /// The box's nonce.
    pub fn nonce(&self) -> &'a [u8; NONCE_SIZE] {
        self.nonce
    }

    /// An initiate body: `short_public`, `oreo`, `sealed` (the boxed [`InitiateStuff`]),
    /// `nonce`.
    pub fn emit(
        short_public: &[u8; KEY_SIZE],
        oreo: &[u8; OREO_SIZE],
        sealed: &[u8],
        nonce: &[u8; NONCE_SIZE],
    ) -> Result<Vec<u8>, AllowError> {
        assemble(
            initiate::SIZE,
            &[
                (
                    "initiate short public",
                    short_public,
                    initiate::SHORT_PUBLIC,
                ),
                ("initiate oreo", oreo, initiate::OREO),
                ("initiate box", sealed, initiate::SEALED),
                ("initiate nonce", nonce, initiate::NONCE),
            ],
        )
    }
}

/// The plain text boxed in an initiate: the allower's long-term public key, the vouch (its
/// short-term public key boxed under the long-term keys) and the fqdn it claims for the
/// allowent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitiateStuff<'a> {
    long_public: &'a [u8; KEY_SIZE],
    vouch: &'a [u8; KEY_SIZE + TAG_SIZE],
    vouch_nonce: &'a [u8; NONCE_SIZE],
    fqdn: &'a [u8; FQDN_SIZE],
}

/// Initiate stuff field layout.
pub mod initiate_stuff {
    use std::ops::Range;

    /// The allower's long-term public key.
    pub const LONG_PUBLIC: Range<usize> = 0..32;
    /// The vouch: the allower's short-term public key boxed under the long-term keys.
    pub const VOUCH: Range<usize> = 32..80;
    /// The vouch's nonce.
    pub const VOUCH_NONCE: Range<usize> = 80..104;
    /// The fqdn the allower claims for the allowent (space padded).
    pub const FQDN: Range<usize> = 104..232;
    /// The whole plain text.
    pub const SIZE: usize = 232;
}

impl<'a> InitiateStuff<'a> {
    /// A view of an opened initiate box; exactly [`initiate_stuff::SIZE`] bytes.
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, AllowError> {
        check_len("initiate stuff", bytes, initiate_stuff::SIZE)?;
        Ok(InitiateStuff {
            long_public: take("initiate long public", bytes, initiate_stuff::LONG_PUBLIC)?,
            vouch: take("initiate vouch", bytes, initiate_stuff::VOUCH)?,
            vouch_nonce: take("initiate vouch nonce", bytes, initiate_stuff::VOUCH_NONCE)?,
            fqdn: take("initiate fqdn", bytes, initiate_stuff::FQDN)?,
        })
    }

    /// The allower's long-term public key.
    pub fn long_public(&self) -> &'a [u8; KEY_SIZE] {
        self.long_public
    }

    /// The vouch box.
    pub fn vouch(&self) -> &'a [u8; KEY_SIZE + TAG_SIZE] {
        self.vouch
    }

    /// The vouch's nonce.
    pub fn vouch_nonce(&self) -> &'a [u8; NONCE_SIZE] {
        self.vouch_nonce
    }

    /// The claimed fqdn (space padded).
    pub fn fqdn(&self) -> &'a [u8; FQDN_SIZE] {
        self.fqdn
    }

    /// An initiate's plain text.
    pub fn emit(
        long_public: &[u8; KEY_SIZE],
        vouch: &[u8],
        vouch_nonce: &[u8; NONCE_SIZE],
        fqdn: &[u8; FQDN_SIZE],
    ) -> Result<Vec<u8>, AllowError> {
        assemble(
            initiate_stuff::SIZE,
            &[
                (
                    "initiate long public",
                    long_public,
                    initiate_stuff::LONG_PUBLIC,
                ),
                ("initiate vouch", vouch, initiate_stuff::VOUCH),
                (
                    "initiate vouch nonce",
                    vouch_nonce,
                    initiate_stuff::VOUCH_NONCE,
                ),
                ("initiate fqdn", fqdn, initiate_stuff::FQDN),
            ],
        )
    }
}

/// The fqdn an allower claims for the peer at `ha` (the reference resolves the peer's host;
/// the receiver only logs a mismatch): `localhost` for a loopback address, else the address,
/// space padded to [`FQDN_SIZE`] bytes.
pub fn fqdn_field(ha: SocketAddr) -> [u8; FQDN_SIZE] {
    let name = if ha.ip().is_loopback() {
        "localhost".to_owned()
    } else {
        ha.ip().to_string()
    };
    let mut field = [b' '; FQDN_SIZE];
    for (dst, src) in field.iter_mut().zip(name.bytes()) {
        *dst = src;
    }
    field
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes<const N: usize>() -> impl Strategy<Value = [u8; N]> {
        proptest::collection::vec(any::<u8>(), N).prop_map(|v| v.try_into().unwrap_or([0; N]))
    }

    /// Every length but `size` is refused, with the body's own name.
    fn refuses_other_lengths(size: usize, parse: impl Fn(&[u8]) -> Result<(), AllowError>) {
        let long = vec![7u8; size + 1];
        for len in (0..size).chain([size + 1]) {
            let err = parse(&long[..len]).expect_err("other length accepted");
            assert!(
                matches!(err, AllowError::Length { expected, actual, .. } if expected == size && actual == len),
                "{err:?}"
            );
        }
        assert!(parse(&long[..size]).is_ok());
    }

    #[test]
    fn truncated_or_long_bodies_are_refused() {
        refuses_other_lengths(hello::SIZE, |b| Hello::new_checked(b).map(drop));
        refuses_other_lengths(cookie::SIZE, |b| Cookie::new_checked(b).map(drop));
        refuses_other_lengths(cookie_stuff::SIZE, |b| {
            CookieStuff::new_checked(b).map(drop)
        });
        refuses_other_lengths(initiate::SIZE, |b| Initiate::new_checked(b).map(drop));
        refuses_other_lengths(initiate_stuff::SIZE, |b| {
            InitiateStuff::new_checked(b).map(drop)
        });
    }

    #[test]
    fn sealed_parts_of_the_wrong_size_are_not_emitted() {
        let err = Hello::emit(&[1; 32], &[2; 79], &[3; 24]).expect_err("short box");
        assert_eq!(
            err,
            AllowError::Length {
                part: "hello box",
                expected: 80,
                actual: 79
            }
        );
        assert!(Cookie::emit(&[0; 81], &[0; 24]).is_err());
        assert!(Initiate::emit(&[0; 32], &[0; 24], &[0; 247], &[0; 24]).is_err());
        assert!(InitiateStuff::emit(&[0; 32], &[0; 49], &[0; 24], &[b' '; 128]).is_err());
    }

    #[test]
    fn layouts_tile_their_bodies() {
        let layouts: [(&[Range<usize>], usize); 5] = [
            (
                &[
                    hello::PLAIN,
                    hello::SHORT_PUBLIC,
                    hello::SEALED,
                    hello::NONCE,
                ],
                hello::SIZE,
            ),
            (&[cookie::SEALED, cookie::NONCE], cookie::SIZE),
            (
                &[
                    cookie_stuff::SHORT_PUBLIC,
                    cookie_stuff::SENDER_UID,
                    cookie_stuff::RECEIVER_UID,
                    cookie_stuff::OREO,
                ],
                cookie_stuff::SIZE,
            ),
            (
                &[
                    initiate::SHORT_PUBLIC,
                    initiate::OREO,
                    initiate::SEALED,
                    initiate::NONCE,
                ],
                initiate::SIZE,
            ),
            (
                &[
                    initiate_stuff::LONG_PUBLIC,
                    initiate_stuff::VOUCH,
                    initiate_stuff::VOUCH_NONCE,
                    initiate_stuff::FQDN,
                ],
                initiate_stuff::SIZE,
            ),
        ];
        for (fields, size) in layouts {
            let mut at = 0;
            for field in fields {
                assert_eq!(field.start, at);
                at = field.end;
            }
            assert_eq!(at, size);
        }
    }

    #[test]
    fn fqdn_of_loopback_is_localhost() {
        let field = fqdn_field("127.0.0.1:7530".parse().expect("addr"));
        assert!(field.starts_with(b"localhost "));
        let field = fqdn_field("10.0.0.2:7530".parse().expect("addr"));
        assert!(field.starts_with(b"10.0.0.2 "));
        assert_eq!(field.len(), FQDN_SIZE);
    }

    proptest! {
        #[test]
        fn hello_round_trips(short in bytes::<32>(), sealed in bytes::<80>(), nonce in bytes::<24>()) {
            let body = Hello::emit(&short, &sealed, &nonce).expect("emit");
            let view = Hello::new_checked(&body).expect("parse");
            prop_assert_eq!(view.plain(), &HELLO_PLAIN);
            prop_assert_eq!(view.short_public(), &short);
            prop_assert_eq!(view.sealed(), &sealed);
            prop_assert_eq!(view.nonce(), &nonce);
        }

        #[test]
        fn cookie_round_trips(sealed in bytes::<80>(), nonce in bytes::<24>()) {
            let body = Cookie::emit(&sealed, &nonce).expect("emit");
            let view = Cookie::new_checked(&body).expect("parse");
            prop_assert_eq!(view.sealed(), &sealed);
            prop_assert_eq!(view.nonce(), &nonce);
        }

        #[test]
        fn cookie_stuff_round_trips(short in bytes::<32>(), s: u32, r: u32, oreo in bytes::<24>()) {
            let body = CookieStuff::emit(&short, s, r, &oreo);
            let view = CookieStuff::new_checked(&body).expect("parse");
            prop_assert_eq!(view.short_public(), &short);
            prop_assert_eq!((view.sender_uid(), view.receiver_uid()), (s, r));
            prop_assert_eq!(view.oreo(), &oreo);
        }

        #[test]
        fn initiate_round_trips(
            short in bytes::<32>(),
            oreo in bytes::<24>(),
            sealed in proptest::collection::vec(any::<u8>(), 248),
            nonce in bytes::<24>(),
        ) {
            let body = Initiate::emit(&short, &oreo, &sealed, &nonce).expect("emit");
            let view = Initiate::new_checked(&body).expect("parse");
            prop_assert_eq!(view.short_public(), &short);
            prop_assert_eq!(view.oreo(), &oreo);
            prop_assert_eq!(&view.sealed()[..], &sealed[..]);
            prop_assert_eq!(view.nonce(), &nonce);
        }

        #[test]
        fn initiate_stuff_round_trips(
            long in bytes::<32>(),
            vouch in bytes::<48>(),
            nonce in bytes::<24>(),
            fqdn in proptest::collection::vec(any::<u8>(), 128),
        ) {
            let fqdn: [u8; FQDN_SIZE] = fqdn.try_into().unwrap_or([b' '; FQDN_SIZE]);
            let body = InitiateStuff::emit(&long, &vouch, &nonce, &fqdn).expect("emit");
            let view = InitiateStuff::new_checked(&body).expect("parse");
            prop_assert_eq!(view.long_public(), &long);
            prop_assert_eq!(view.vouch(), &vouch);
            prop_assert_eq!(view.vouch_nonce(), &nonce);
            prop_assert_eq!(view.fqdn(), &fqdn);
        }

        /// Arbitrary bytes never panic a view, and a view accepts exactly its size.
        #[test]
        fn arbitrary_bytes_are_checked(body in proptest::collection::vec(any::<u8>(), 0..400)) {
            prop_assert_eq!(Hello::new_checked(&body).is_ok(), body.len() == hello::SIZE);
            prop_assert_eq!(Cookie::new_checked(&body).is_ok(), body.len() == cookie::SIZE);
            prop_assert_eq!(CookieStuff::new_checked(&body).is_ok(), body.len() == cookie_stuff::SIZE);
            prop_assert_eq!(Initiate::new_checked(&body).is_ok(), body.len() == initiate::SIZE);
            prop_assert_eq!(InitiateStuff::new_checked(&body).is_ok(), body.len() == initiate_stuff::SIZE);
        }
    }
}
