//! The fast profile's packet protection (docs/protocol.md, *The fast profile*): after an allow,
//! both sides derive two directional ChaCha20-Poly1305 keys from the allow's short-term
//! X25519 keys with HKDF-SHA256, and every packet of the session is sealed with its sender's
//! key, the packet number as nonce and the binary head as associated data. No per-packet
//! signature: the allow already bound the short-term keys to the long-term Ed25519 keys
//! (the initiate's vouch), so a packet that opens comes from the estate that allowed.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use hkdf::Hkdf;
use sha2::Sha256;
use std::sync::Arc;
use zeroize::Zeroizing;

use super::{CryptoError, PrivateKey, PublicKey};

/// Length of a fast packet's Poly1305 tag.
pub const FAST_TAG_SIZE: usize = 16;

/// HKDF salt: the profile and its version (a new version gets new keys).
const SALT: &[u8] = b"RAET fast profile v1";
/// HKDF info prefix; the two short-term public keys follow, the allower's first.
const INFO: &[u8] = b"raet-fast-1 packet keys";

/// One direction's packet cipher.
pub struct PacketCipher {
    aead: ChaCha20Poly1305,
}

/// The nonce of packet number `pn`: four zero bytes, then `pn` big-endian. A key is used by
/// one sender only, which never repeats a packet number.
fn nonce(pn: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&pn.to_be_bytes());
    Nonce::from(n)
}

impl PacketCipher {
    fn new(key: &[u8]) -> Self {
        Self {
            aead: ChaCha20Poly1305::new(Key::from_slice(key)),
        }
    }

    /// Seals `packet` in place with packet number `pn`: its first `at` bytes (the head) are
    /// the associated data, the rest the plaintext, encrypted; the tag is appended.
    pub fn seal_tail(&self, pn: u64, packet: &mut Vec<u8>, at: usize) {
        let at = at.min(packet.len());
        let (aad, body) = packet.split_at_mut(at);
        // Fails only beyond ChaCha20's 256 GiB per-nonce limit, far above a datagram.
        match self.aead.encrypt_in_place_detached(&nonce(pn), aad, body) {
            Ok(tag) => packet.extend_from_slice(&tag),
            Err(_) => packet.truncate(at),
        }
    }

    /// Opens ciphertext || tag sealed with packet number `pn` over `aad`.
    pub fn open(&self, pn: u64, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let split = sealed
            .len()
            .checked_sub(FAST_TAG_SIZE)
            .ok_or(CryptoError::TooShort)?;
        let (cipher, tag) = sealed.split_at(split);
        let mut plain = cipher.to_vec();
        self.aead
            .decrypt_in_place_detached(&nonce(pn), aad, &mut plain, Tag::from_slice(tag))
            .map_err(|_| CryptoError::DecryptFailed)?;
        Ok(plain)
    }
}

/// The two packet ciphers of one fast session.
pub struct FastKeys {
    /// Seals what we send (shared with the datagrams queued for sealing by the driver).
    pub tx: Arc<PacketCipher>,
    /// Opens what the peer sends.
    pub rx: PacketCipher,
}

impl FastKeys {
    /// The session's keys from our short-term secret and the peer's short-term public key;
    /// `allower`: we sent the allow's hello. Fails on a peer key of small order (the
    /// shared secret would not depend on our key).
    pub fn derive(
        ours: &PrivateKey,
        theirs: &PublicKey,
        allower: bool,
    ) -> Result<Self, CryptoError> {
        let secret = x25519_dalek::StaticSecret::from(*ours.bytes);
        let peer = x25519_dalek::PublicKey::from(*theirs.as_bytes());
        let shared = secret.diffie_hellman(&peer);
        if !shared.was_contributory() {
            return Err(CryptoError::BadKey);
        }
        let own = ours.public_key();
        let (first, second) = if allower {
            (own.as_bytes(), theirs.as_bytes())
        } else {
            (theirs.as_bytes(), own.as_bytes())
        };
        let mut info = Vec::with_capacity(INFO.len() + 64);
        info.extend_from_slice(INFO);
        info.extend_from_slice(first);
        info.extend_from_slice(second);
        let mut okm = Zeroizing::new([0u8; 64]);
        Hkdf::<Sha256>::new(Some(SALT), shared.as_bytes())
            .expand(&info, okm.as_mut_slice())
            .map_err(|_| CryptoError::BadKey)?;
        let (to_allowent, to_allower) = okm.split_at(32);
        let (tx, rx) = if allower {
            (to_allowent, to_allower)
        } else {
            (to_allower, to_allowent)
        };
        Ok(Self {
            tx: Arc::new(PacketCipher::new(tx)),
            rx: PacketCipher::new(rx),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> PrivateKey {
        PrivateKey::from_bytes(&[b; 32])
    }

    #[test]
    fn each_side_opens_what_the_other_seals_and_nothing_else() {
        let (a, b) = (key(1), key(2));
        let allower = FastKeys::derive(&a, &b.public_key(), true).expect("keys");
        let allowent = FastKeys::derive(&b, &a.public_key(), false).expect("keys");
        let mut packet = b"headhello".to_vec();
        allower.tx.seal_tail(7, &mut packet, 4);
        assert_eq!(packet.get(..4), Some(&b"head"[..]), "the head stays clear");
        let sealed = packet.split_off(4);
        assert_eq!(
            allowent.rx.open(7, b"head", &sealed).as_deref(),
            Ok(&b"hello"[..])
        );
        // Another packet number, another head, our own direction, a flipped bit: refused.
        assert!(allowent.rx.open(8, b"head", &sealed).is_err());
        assert!(allowent.rx.open(7, b"hear", &sealed).is_err());
        assert!(allower.rx.open(7, b"head", &sealed).is_err());
        let mut bent = sealed.clone();
        bent[0] ^= 1;
        assert!(allowent.rx.open(7, b"head", &bent).is_err());
        assert_eq!(
            allowent.rx.open(7, b"head", &sealed[..15]).err(),
            Some(CryptoError::TooShort)
        );
        let mut back = b"headhi".to_vec();
        allowent.tx.seal_tail(7, &mut back, 4);
        let back = back.split_off(4);
        assert_eq!(
            allower.rx.open(7, b"head", &back).as_deref(),
            Ok(&b"hi"[..])
        );
        assert_ne!(
            back.get(..2),
            sealed.get(..2),
            "directions use different keys"
        );
    }

    #[test]
    fn a_small_order_peer_key_is_refused() {
        let zero = PublicKey::from_bytes(&[0u8; 32]).expect("32 bytes");
        assert!(FastKeys::derive(&key(1), &zero, true).is_err());
    }
}
