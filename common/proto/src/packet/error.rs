//! Why a datagram, head, body or segment was refused.

/// Every reason the packet codec refuses input. Parsing never panics: any
/// byte string yields either a value or one of these.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PacketError {
    /// Empty datagram, or shorter than its head and foot say.
    #[error("datagram too short")]
    TooShort,
    /// Starts with neither a raet head (`ri RAET\n`) nor a json head (`{"ri":"RAET",`).
    #[error("not a RAET packet (no raet or json head)")]
    NotRaet,
    /// A binary (fast profile) head given to the text-head codec.
    #[error("a binary head is sealed by its session, not text-encoded")]
    BinaryHead,
    /// The head terminator is missing.
    #[error("head terminator missing")]
    NoHeadEnd,
    /// The head is (or would be) longer than `MAX_HEAD_SIZE` bytes.
    #[error("head longer than {max} bytes", max = super::MAX_HEAD_SIZE)]
    HeadTooLong,
    /// A raet head line is not `key value`.
    #[error("malformed raet head line")]
    BadHeadLine,
    /// A head field the reference does not define.
    #[error("unknown head field {0:?}")]
    UnknownField(String),
    /// A json head that is not a flat object of the expected value types.
    #[error("malformed json head: {0}")]
    BadJsonHead(String),
    /// A known head field with a malformed or out-of-range value.
    #[error("bad value for head field `{key}`")]
    BadHeadField {
        /// The field's wire key.
        key: &'static str,
    },
    /// The `hk` field contradicts the encoding the head was found in.
    #[error("head kind field says {stated}, head is encoded as {actual}")]
    HeadKindMismatch {
        /// `hk` as stated in the head.
        stated: u8,
        /// The detected encoding's code.
        actual: u8,
    },
    /// `hl` or `pl` disagrees with the actual length.
    #[error("`{field}` says {stated} but the actual length is {actual}")]
    LengthMismatch {
        /// `hl` or `pl`.
        field: &'static str,
        /// Value stated in the head.
        stated: usize,
        /// Measured value.
        actual: usize,
    },
    /// `vn` other than 0.
    #[error("unsupported protocol version {0}")]
    BadVersion(u8),
    /// A kind code (`pk`, `tk`, `bk`, `ck`, `fk`) the reference does not define.
    #[error("unknown `{key}` code {code}")]
    UnknownKind {
        /// The field's wire key.
        key: &'static str,
        /// The code received.
        code: u64,
    },
    /// `fl` does not fit the foot kind (an ed25519 foot is 64 bytes).
    #[error("foot length {fl} does not fit the foot kind")]
    BadFootLength {
        /// The stated foot length.
        fl: usize,
    },
    /// The foot kind is declared by the reference but not implemented.
    #[error("unsupported foot kind")]
    UnsupportedFoot,
    /// The ed25519 foot does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// The body is not a valid JSON/msgpack object.
    #[error("bad body: {0}")]
    BadBody(String),
    /// The body kind cannot carry a mapping (raw, nada, unknown).
    #[error("body kind cannot carry a mapping")]
    UnsupportedBody,
    /// The (whole) coat exceeds `MAX_MESSAGE_SIZE`.
    #[error("message of {len} bytes exceeds the maximum")]
    MessageTooLarge {
        /// Coat length.
        len: usize,
    },
    /// Segment count or message length out of bounds or inconsistent.
    #[error("bad segmentation: sc {sc}, ml {ml}")]
    BadSegmentation {
        /// Segment count.
        sc: u32,
        /// Message length.
        ml: u32,
    },
    /// Segment number outside `0..sc`.
    #[error("segment {sn} out of range for {sc} segments")]
    SegmentOutOfRange {
        /// The segment number.
        sn: u32,
        /// The segment count.
        sc: u32,
    },
    /// The received segments add up to more than `ml` bytes.
    #[error("segments overflow the message length {ml}")]
    SegmentOverflow {
        /// The message length.
        ml: u32,
    },
    /// Not all segments are present yet.
    #[error("message incomplete")]
    Incomplete,
    /// The coat given to `pack_segment` is not the one the segmenter was made for.
    #[error("coat length {actual} differs from the segmenter's {expected}")]
    CoatLengthMismatch {
        /// Length given to `Segmenter::new`.
        expected: usize,
        /// Length passed now.
        actual: usize,
    },
}
