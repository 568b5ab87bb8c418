//! The fast profile's binary head (docs/protocol.md, *The fast profile*): 44 fixed bytes,
//! big-endian, then the sealed body (ciphertext and a 16-byte tag; the head is its associated
//! data). Only peers that negotiated the profile in their join send or accept it.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | magic `0xFA` (no text head starts with it) |
//! | 1 | 1 | version, 1 |
//! | 2 | 1 | `pk` packet kind |
//! | 3 | 1 | `tk` transaction kind |
//! | 4 | 1 | `fg` flags |
//! | 5 | 1 | `bk` body kind |
//! | 6 | 2 | zero |
//! | 8 | 4 | `se` |
//! | 12 | 4 | `de` |
//! | 16 | 4 | `si` |
//! | 20 | 4 | `ti` |
//! | 24 | 4 | `sn` |
//! | 28 | 4 | `sc` |
//! | 32 | 4 | `ml` |
//! | 36 | 8 | `pn` packet number (the AEAD nonce) |

use super::{BodyKind, Flags, PacketError, PacketKind, TransactionKind};

/// First byte of every fast packet.
pub const FAST_MAGIC: u8 = 0xFA;
/// The binary head's version.
pub const FAST_VERSION: u8 = 1;
/// Length of the binary head.
pub const FAST_HEAD_SIZE: usize = 44;

/// A decoded binary head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastHead {
    /// Packet kind.
    pub pk: PacketKind,
    /// Transaction kind.
    pub tk: TransactionKind,
    /// Flags (as the text heads' `fg`).
    pub fg: Flags,
    /// Body kind of the (sealed) body.
    pub bk: BodyKind,
    /// Source estate id.
    pub se: u32,
    /// Destination estate id.
    pub de: u32,
    /// Session id.
    pub si: u32,
    /// Transaction id.
    pub ti: u32,
    /// Segment number.
    pub sn: u32,
    /// Segment count.
    pub sc: u32,
    /// Message length (the whole message's plaintext bytes when segmented).
    pub ml: u32,
    /// Packet number: unique per sender and session key.
    pub pn: u64,
}

/// Whether a datagram carries a binary head.
pub fn is_fast(datagram: &[u8]) -> bool {
    datagram.first() == Some(&FAST_MAGIC)
}

fn word(b: &[u8; FAST_HEAD_SIZE], at: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        w.copy_from_slice(s);
    }
    u32::from_be_bytes(w)
}

impl FastHead {
    /// The 44 head bytes.
    pub fn encode(&self) -> [u8; FAST_HEAD_SIZE] {
        let mut b = [0u8; FAST_HEAD_SIZE];
        b[0] = FAST_MAGIC;
        b[1] = FAST_VERSION;
        b[2] = self.pk.code();
        b[3] = self.tk.code();
        b[4] = self.fg.0;
        b[5] = self.bk.code();
        let words = [
            self.se, self.de, self.si, self.ti, self.sn, self.sc, self.ml,
        ];
        for (i, w) in words.iter().enumerate() {
            let at = 8 + 4 * i;
            b[at..at + 4].copy_from_slice(&w.to_be_bytes());
        }
        b[36..].copy_from_slice(&self.pn.to_be_bytes());
        b
    }

    /// Splits a datagram into its head (decoded and as bytes, the associated data) and the
    /// sealed body. Never panics.
    pub fn parse(datagram: &[u8]) -> Result<(Self, [u8; FAST_HEAD_SIZE], &[u8]), PacketError> {
        let (raw, sealed) = datagram
            .split_first_chunk::<FAST_HEAD_SIZE>()
            .ok_or(PacketError::TooShort)?;
        if raw[0] != FAST_MAGIC {
            return Err(PacketError::NotRaet);
        }
        if raw[1] != FAST_VERSION {
            return Err(PacketError::BadVersion(raw[1]));
        }
        if raw[6..8] != [0, 0] {
            return Err(PacketError::BadHeadField { key: "reserved" });
        }
        let pk = PacketKind::from_code(raw[2].into()).ok_or(PacketError::UnknownKind {
            key: "pk",
            code: raw[2].into(),
        })?;
        let tk = TransactionKind::from_code(raw[3].into()).ok_or(PacketError::UnknownKind {
            key: "tk",
            code: raw[3].into(),
        })?;
        let bk = BodyKind::from_code(raw[5].into()).ok_or(PacketError::UnknownKind {
            key: "bk",
            code: raw[5].into(),
        })?;
        let mut pn = [0u8; 8];
        pn.copy_from_slice(&raw[36..]);
        let head = Self {
            pk,
            tk,
            fg: Flags(raw[4]),
            bk,
            se: word(raw, 8),
            de: word(raw, 12),
            si: word(raw, 16),
            ti: word(raw, 20),
            sn: word(raw, 24),
            sc: word(raw, 28),
            ml: word(raw, 32),
            pn: u64::from_be_bytes(pn),
        };
        Ok((head, *raw, sealed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> FastHead {
        FastHead {
            pk: PacketKind::Message,
            tk: TransactionKind::Message,
            fg: Flags(Flags::SF | Flags::WF),
            bk: BodyKind::Msgpack,
            se: 2,
            de: 3,
            si: 0x0102_0304,
            ti: 9,
            sn: 1,
            sc: 4,
            ml: 200_000,
            pn: 0x1122_3344_5566_7788,
        }
    }

    #[test]
    fn the_layout_is_the_documented_one() {
        let b = sample().encode();
        assert_eq!(&b[..8], &[0xFA, 1, 0, 0, 0x0C, 3, 0, 0]);
        assert_eq!(&b[16..20], &[1, 2, 3, 4]);
        assert_eq!(&b[36..], &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
        let mut datagram = b.to_vec();
        datagram.extend_from_slice(b"sealed");
        let (head, raw, sealed) = FastHead::parse(&datagram).expect("parses");
        assert_eq!((head, raw, sealed), (sample(), b, &b"sealed"[..]));
    }

    #[test]
    fn bad_heads_are_refused_by_name() {
        let good = sample().encode();
        let bent = |at: usize, v: u8| {
            let mut b = good;
            b[at] = v;
            FastHead::parse(&b).err()
        };
        assert_eq!(bent(1, 2), Some(PacketError::BadVersion(2)));
        assert_eq!(
            bent(6, 1),
            Some(PacketError::BadHeadField { key: "reserved" })
        );
        assert!(matches!(
            bent(5, 200),
            Some(PacketError::UnknownKind { key: "bk", .. })
        ));
        assert!(matches!(
            bent(2, 200),
            Some(PacketError::UnknownKind { key: "pk", .. })
        ));
        assert!(matches!(
            bent(3, 200),
            Some(PacketError::UnknownKind { key: "tk", .. })
        ));
        assert_eq!(bent(0, b'{'), Some(PacketError::NotRaet));
        assert_eq!(
            FastHead::parse(&good[..43]).err(),
            Some(PacketError::TooShort)
        );
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok((head, raw, _)) = FastHead::parse(&bytes) {
                prop_assert_eq!(head.encode(), raw);
            }
        }
    }
}
