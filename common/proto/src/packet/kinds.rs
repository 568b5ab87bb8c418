//! Numeric kind codes carried in a road head.

macro_rules! kind_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $code:expr),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name {
            $($(#[$vm])* $var = $code),+
        }

        impl $name {
            /// The wire code.
            pub fn code(self) -> u8 {
                self as u8
            }

            /// The kind for a wire code, if the code is known.
            pub fn from_code(code: u64) -> Option<Self> {
                match code {
                    $(c if c == $code => Some($name::$var),)+
                    _ => None,
                }
            }
        }
    };
}

kind_enum!(
    /// `hk`: how the head is encoded.
    HeadKind {
        /// Text lines `key value\n`, ended by an empty line.
        Raet = 0,
        /// A JSON object ended by `\r\n\r\n`.
        Json = 1,
        /// The fast profile's fixed binary head ([`super::fast`]): never text-encoded; a
        /// [`super::Head`] of this kind is sent sealed with the session's packet key.
        Binary = 2,
    }
);

kind_enum!(
    /// `pk`: what the packet says within its transaction.
    PacketKind {
        /// Message segment.
        Message = 0,
        /// Acknowledgement.
        Ack = 1,
        /// Generic negative acknowledgement (also: stale).
        Nack = 2,
        /// Request for missing message segments.
        Resend = 3,
        /// Join or alive request.
        Request = 4,
        /// Join accept.
        Response = 5,
        /// Allow hello.
        Hello = 6,
        /// Allow cookie.
        Cookie = 7,
        /// Allow initiate.
        Initiate = 8,
        /// Nack: join first.
        Unjoined = 9,
        /// Nack: allow first.
        Unallowed = 10,
        /// Nack: join again vacuously.
        Renew = 11,
        /// Nack: refused, no state change.
        Refuse = 12,
        /// Nack: rejected.
        Reject = 13,
        /// Join acceptance pending.
        Pend = 14,
        /// Message fully received.
        Done = 15,
        /// Unknown.
        Unknown = 255,
    }
);

kind_enum!(
    /// `tk`: the transaction a packet belongs to.
    TransactionKind {
        /// Application message.
        Message = 0,
        /// Join (exchange of long-term keys).
        Join = 1,
        /// Bind (declared, never used).
        Bind = 2,
        /// Allow (short-term session keys).
        Allow = 3,
        /// Alive (heartbeat).
        Alive = 4,
        /// Unknown.
        Unknown = 255,
    }
);

kind_enum!(
    /// `bk`: body encoding.
    BodyKind {
        /// No body.
        Nada = 0,
        /// Compact JSON object (empty object = zero bytes).
        Json = 1,
        /// Raw bytes.
        Raw = 2,
        /// MessagePack.
        Msgpack = 3,
        /// Unknown.
        Unknown = 255,
    }
);

kind_enum!(
    /// `ck`: coat (encryption) kind.
    CoatKind {
        /// Clear text.
        Nada = 0,
        /// crypto_box with a random 24-byte nonce appended.
        Nacl = 1,
        /// Declared by the reference, not implemented.
        Crc16 = 2,
        /// Declared by the reference, not implemented.
        Crc64 = 3,
        /// Unknown.
        Unknown = 255,
    }
);

kind_enum!(
    /// `fk`: foot (signature) kind.
    FootKind {
        /// No foot.
        Nada = 0,
        /// Ed25519 signature, 64 bytes.
        Nacl = 1,
        /// Declared by the reference, not implemented.
        Sha2 = 2,
        /// Declared by the reference, not implemented.
        Crc64 = 3,
        /// Unknown.
        Unknown = 255,
    }
);
