//! Road packets: head, body, coat (encryption) and foot (signature).
//!
//! Wire format: `docs/protocol.md` and the reference spec. A datagram is
//! `head || coat || foot`; [`Head`] is the decoded head, [`kinds`] holds the
//! numeric codes. The bodies of join and allow packets have their own typed forms:
//! [`join::JoinRepr`] and the views of [`allow`].

pub mod allow;
pub mod body;
mod error;
pub mod fast;
mod head;
pub mod join;
pub mod kinds;
mod segment;

pub use allow::AllowError;
pub use error::PacketError;
pub use join::{JoinError, JoinRepr};
pub use kinds::{BodyKind, CoatKind, FootKind, HeadKind, PacketKind, TransactionKind};
pub use segment::{Reassembler, Segmenter};

use crate::crypto::{Signer, VerifyKey};

/// Largest road datagram the reference emits or accepts (bytes).
pub const MAX_PACKET_SIZE: usize = 1024;
/// Largest head (bytes, terminator included).
pub const MAX_HEAD_SIZE: usize = 255;
/// Length of an ed25519 foot (bytes).
pub const SIGNATURE_SIZE: usize = 64;
/// Length of the random crypto_box nonce appended to a coat (bytes).
pub const NONCE_SIZE: usize = 24;
/// Largest number of segments of one message.
pub const MAX_SEGMENT_COUNT: usize = 65535;
/// Largest reassembled coat of one message (bytes).
pub const MAX_MESSAGE_SIZE: usize = 67_107_840;

/// The flag byte `fg` of a head, bit by bit (MSB first: vf df nf af sf wf bf cf).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags(pub u8);

impl Flags {
    /// IPv6 (unused by the reference).
    pub const VF: u8 = 0x80;
    /// Dynamic IP (unused).
    pub const DF: u8 = 0x40;
    /// NAT (unused).
    pub const NF: u8 = 0x20;
    /// Again: this segment is a retransmission.
    pub const AF: u8 = 0x10;
    /// Segmented message.
    pub const SF: u8 = 0x08;
    /// Wait: the sender waits for an ack after this packet.
    pub const WF: u8 = 0x04;
    /// Broadcast (receivers drop these).
    pub const BF: u8 = 0x02;
    /// Sent by the correspondent side of the transaction.
    pub const CF: u8 = 0x01;

    /// Whether every bit of `bit` is set.
    pub fn has(self, bit: u8) -> bool {
        self.0 & bit == bit
    }

    /// Sets or clears `bit`.
    pub fn set(&mut self, bit: u8, on: bool) {
        if on {
            self.0 |= bit;
        } else {
            self.0 &= !bit;
        }
    }
}

/// A decoded road head. Field names follow the wire keys; defaults are the
/// values the reference omits on the wire (see [`Head::default`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    /// `hk`: head kind this head was (or will be) encoded with.
    pub hk: HeadKind,
    /// `vn`: protocol version (only 0 exists).
    pub vn: u8,
    /// `pk`: packet kind.
    pub pk: PacketKind,
    /// `pl`: whole datagram length (filled in when packing).
    pub pl: usize,
    /// `hl`: head length including its terminator (filled in when packing).
    pub hl: usize,
    /// `se`: source estate id (sender's nuid of the receiver).
    pub se: u32,
    /// `de`: destination estate id (sender's fuid: the receiver's uid for the sender).
    pub de: u32,
    /// `si`: session id.
    pub si: u32,
    /// `ti`: transaction id.
    pub ti: u32,
    /// `tk`: transaction kind.
    pub tk: TransactionKind,
    /// `dt`: datetime stamp (never set by the reference; kept for round trips).
    pub dt: f64,
    /// `oi`: order index (never set by the reference).
    pub oi: u32,
    /// `sn`: segment number (0-based).
    pub sn: u32,
    /// `sc`: segment count.
    pub sc: u32,
    /// `ml`: message length: total coat length of a segmented message.
    pub ml: u32,
    /// `bk`: body kind.
    pub bk: BodyKind,
    /// `ck`: coat kind.
    pub ck: CoatKind,
    /// `fk`: foot kind.
    pub fk: FootKind,
    /// `fl`: foot length.
    pub fl: usize,
    /// `fg`: flags.
    pub fg: Flags,
}

impl Default for Head {
    fn default() -> Self {
        Self {
            hk: HeadKind::Raet,
            vn: 0,
            pk: PacketKind::Message,
            pl: 0,
            hl: 0,
            se: 0,
            de: 0,
            si: 0,
            ti: 0,
            tk: TransactionKind::Message,
            dt: 0.0,
            oi: 0,
            sn: 0,
            sc: 1,
            ml: 0,
            bk: BodyKind::Nada,
            ck: CoatKind::Nada,
            fk: FootKind::Nada,
            fl: 0,
            fg: Flags(0),
        }
    }
}

/// A received datagram split into its parts (borrowed from the datagram).
#[derive(Debug, Clone, PartialEq)]
pub struct RxPacket<'a> {
    /// The decoded head (with `hk`, `hl`, `pl` as received).
    pub head: Head,
    /// The bytes between head and foot: body, or its box plus nonce, or a segment.
    pub coat: &'a [u8],
    /// The foot (signature), `fl` bytes.
    pub foot: &'a [u8],
    datagram: &'a [u8],
}

/// Parse a whole road datagram (head, split coat/foot using fl). Never panics.
pub fn parse(datagram: &[u8]) -> Result<RxPacket<'_>, PacketError> {
    let head = Head::parse(datagram)?;
    if head.fk == FootKind::Nacl && head.fl != SIGNATURE_SIZE {
        return Err(PacketError::BadFootLength { fl: head.fl });
    }
    let coat_end = datagram
        .len()
        .checked_sub(head.fl)
        .filter(|&end| end >= head.hl)
        .ok_or(PacketError::TooShort)?;
    let coat = datagram
        .get(head.hl..coat_end)
        .ok_or(PacketError::TooShort)?;
    let foot = datagram.get(coat_end..).ok_or(PacketError::TooShort)?;
    Ok(RxPacket {
        head,
        coat,
        foot,
        datagram,
    })
}

impl RxPacket<'_> {
    /// The whole datagram.
    pub fn datagram(&self) -> &[u8] {
        self.datagram
    }

    /// Whether the packet carries an ed25519 foot.
    pub fn is_signed(&self) -> bool {
        self.head.fk == FootKind::Nacl
    }

    /// fk=1: ed25519 over head||coat||64 zero bytes. fk=0: Ok(()) (caller
    /// decides whether unsigned is allowed). Other foot kinds (declared but not
    /// implemented by the reference) are refused.
    pub fn verify(&self, key: &VerifyKey) -> Result<(), PacketError> {
        match self.head.fk {
            FootKind::Nada => Ok(()),
            FootKind::Nacl => {
                let front = self
                    .datagram
                    .get(..self.datagram.len().saturating_sub(self.foot.len()))
                    .ok_or(PacketError::TooShort)?;
                let mut signed = Vec::with_capacity(self.datagram.len());
                signed.extend_from_slice(front);
                signed.extend_from_slice(&[0u8; SIGNATURE_SIZE]);
                key.verify(&signed, self.foot)
                    .map_err(|_| PacketError::BadSignature)
            }
            FootKind::Sha2 | FootKind::Crc64 | FootKind::Unknown => {
                Err(PacketError::UnsupportedFoot)
            }
        }
    }
}

/// Build a datagram: encodes `head` in head.hk with fields selected/ordered as
/// the reference, computes pl/hl, sets fk=1/fl=64 when `signer` is Some (and
/// signs head||coat||64 zero bytes), else fk=0/fl=0; appends coat and foot.
/// Errors if the head would exceed MAX_HEAD_SIZE or the coat MAX_MESSAGE_SIZE.
/// Does NOT enforce MAX_PACKET_SIZE (segmentation does).
pub fn pack(head: &Head, coat: &[u8], signer: Option<&Signer>) -> Result<Vec<u8>, PacketError> {
    let mut out = pack_foot(head, coat, signer.is_some())?;
    if let Some(signer) = signer {
        sign_foot(&mut out, signer);
    }
    Ok(out)
}

/// [`pack`] with a signature to come: fk=1/fl=64 and a zeroed foot, which
/// [`sign_foot`] fills (later, e.g. on another core).
pub fn pack_to_sign(head: &Head, coat: &[u8]) -> Result<Vec<u8>, PacketError> {
    pack_foot(head, coat, true)
}

/// Signs a datagram packed by [`pack_to_sign`]: the signature of everything
/// before the foot and the zeroed foot goes into the foot.
pub fn sign_foot(datagram: &mut [u8], signer: &Signer) {
    let sig = signer.sign(datagram);
    let foot_at = datagram.len().saturating_sub(SIGNATURE_SIZE);
    if let Some(foot) = datagram.get_mut(foot_at..) {
        foot.copy_from_slice(&sig);
    }
}

/// `head` and `coat`, with a zeroed 64-byte foot when `signed`.
fn pack_foot(head: &Head, coat: &[u8], signed: bool) -> Result<Vec<u8>, PacketError> {
    if coat.len() > MAX_MESSAGE_SIZE {
        return Err(PacketError::MessageTooLarge { len: coat.len() });
    }
    let mut head = head.clone();
    (head.fk, head.fl) = if signed {
        (FootKind::Nacl, SIGNATURE_SIZE)
    } else {
        (FootKind::Nada, 0)
    };
    let mut out = Vec::with_capacity(MAX_HEAD_SIZE + coat.len() + head.fl);
    head.encode_into(coat.len(), &mut out)?;
    out.extend_from_slice(coat);
    out.resize(out.len() + head.fl, 0);
    Ok(out)
}
