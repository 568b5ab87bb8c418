//! Long-term and short-term keys, signing and crypto_box with cached shared keys.
//!
//! * Signing: Ed25519 (`ed25519-dalek`), the road foot and the join `verhex`.
//! * Encryption: NaCl `crypto_box` (curve25519-xsalsa20-poly1305, `crypto_box`
//!   crate's [`SalsaBox`]) in combined form: 16-byte tag followed by the
//!   ciphertext. The shared key (`crypto_box_beforenm`) is computed once per
//!   key pair in [`SharedBox::new`] and reused for every packet.
//!
//! Secrets are zeroized on drop. `crypto_box` 0.9's own `SecretKey` only
//! wipes its scalar, so [`PrivateKey`] keeps the secret bytes in a
//! [`Zeroizing`] buffer and builds the library key only transiently.

use crypto_box::aead::generic_array::GenericArray;
use crypto_box::aead::AeadInPlace;
use crypto_box::SalsaBox;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use crate::packet::NONCE_SIZE;

mod fast;
pub use fast::{FastKeys, PacketCipher, FAST_TAG_SIZE};

/// Length of a Poly1305 tag, the per-box overhead of `crypto_box`.
pub const TAG_SIZE: usize = 16;
/// Length of a key (any of the four kinds), in bytes.
pub const KEY_SIZE: usize = 32;

/// Why a cryptographic operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// A key has the wrong length or is not a valid curve point.
    #[error("invalid key")]
    BadKey,
    /// A key given as hex is not 64 hex characters.
    #[error("invalid hex key")]
    BadHex,
    /// The Ed25519 signature does not verify (or is not 64 bytes).
    #[error("signature does not verify")]
    BadSignature,
    /// The box does not authenticate with this key pair and nonce.
    #[error("decryption failed")]
    DecryptFailed,
    /// The input is too short to hold a tag (and nonce).
    #[error("ciphertext too short")]
    TooShort,
}

fn key_from_hex(h: &str) -> Result<[u8; KEY_SIZE], CryptoError> {
    let mut out = [0u8; KEY_SIZE];
    hex::decode_to_slice(h, &mut out).map_err(|_| CryptoError::BadHex)?;
    Ok(out)
}

fn key_from_slice(b: &[u8]) -> Result<[u8; KEY_SIZE], CryptoError> {
    b.try_into().map_err(|_| CryptoError::BadKey)
}

/// Ed25519 signing key (the reference's `sighex` is its 32-byte seed).
/// Zeroized on drop.
pub struct Signer {
    key: SigningKey,
}

impl Signer {
    /// The signing key for a 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// A fresh random signing key.
    pub fn generate<R: CryptoRngCore>(rng: &mut R) -> Self {
        Self {
            key: SigningKey::generate(rng),
        }
    }

    /// The 32-byte seed (`sighex`).
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes())
    }

    /// The matching verify key (`verhex`).
    pub fn verify_key(&self) -> VerifyKey {
        VerifyKey {
            key: self.key.verifying_key(),
        }
    }

    /// Detached Ed25519 signature of `msg` (deterministic).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("verify_key", &self.verify_key().to_hex())
            .finish_non_exhaustive()
    }
}

/// Ed25519 verify key.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyKey {
    key: VerifyingKey,
}

impl VerifyKey {
    /// From 32 bytes; fails if the length is wrong, the point is invalid or
    /// of small order (a weak key, which libsodium refuses as well).
    pub fn from_bytes(b: &[u8]) -> Result<Self, CryptoError> {
        let bytes = key_from_slice(b)?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| CryptoError::BadKey)?;
        if key.is_weak() {
            return Err(CryptoError::BadKey);
        }
        Ok(Self { key })
    }

    /// The Curve25519 public key of the same point (the Edwards-to-Montgomery map): the
    /// `pubhex` of an estate whose encryption key is derived from its signing key.
    pub fn to_public_key(&self) -> PublicKey {
        PublicKey {
            key: crypto_box::PublicKey::from_bytes(self.key.to_montgomery().to_bytes()),
        }
    }

    /// From 64 hex characters (`verhex`).
    pub fn from_hex(h: &str) -> Result<Self, CryptoError> {
        Self::from_bytes(&key_from_hex(h)?)
    }

    /// 64 lowercase hex characters (`verhex`).
    pub fn to_hex(&self) -> String {
        hex::encode(self.key.as_bytes())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    /// Verifies a detached signature: a non-canonical `s` is refused and
    /// the equation is the cofactorless one libsodium checks; the key is
    /// known not to be weak (see [`VerifyKey::from_bytes`]). Not
    /// `verify_strict`: its extra decompression of `R` costs a sixth of a
    /// verification and only guards against malleable signatures, which
    /// nothing here depends on (packets are deduplicated by their fields).
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        let sig = Signature::from_slice(sig).map_err(|_| CryptoError::BadSignature)?;
        self.key
            .verify(msg, &sig)
            .map_err(|_| CryptoError::BadSignature)
    }
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifyKey({})", self.to_hex())
    }
}

/// Curve25519 secret key: the long-term `prihex` or a short-term session key.
/// The bytes are used as is (clamped inside the scalar multiplication, like
/// libsodium). Zeroized on drop.
pub struct PrivateKey {
    bytes: Zeroizing<[u8; 32]>,
    public: PublicKey,
}

impl PrivateKey {
    /// From the 32 secret bytes.
    pub fn from_bytes(b: &[u8; 32]) -> Self {
        let bytes = Zeroizing::new(*b);
        let public = PublicKey {
            key: with_library_key(&bytes, |secret| secret.public_key()),
        };
        Self { bytes, public }
    }

    /// A fresh random secret key.
    pub fn generate<R: CryptoRngCore>(rng: &mut R) -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut bytes[..]);
        Self::from_bytes(&bytes)
    }

    /// The 32 secret bytes (`prihex`).
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        self.bytes.clone()
    }

    /// The matching public key (`pubhex`).
    pub fn public_key(&self) -> PublicKey {
        self.public.clone()
    }
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKey")
            .field("public", &self.public.to_hex())
            .finish_non_exhaustive()
    }
}

/// Runs `f` with a transient `crypto_box::SecretKey` for `bytes`, then
/// overwrites it: that type zeroizes only its scalar on drop, not its copy of
/// the bytes (best effort: moves may leave other copies on the stack).
fn with_library_key<T>(bytes: &[u8; 32], f: impl FnOnce(&crypto_box::SecretKey) -> T) -> T {
    let mut secret = crypto_box::SecretKey::from_bytes(*bytes);
    let out = f(&secret);
    secret = crypto_box::SecretKey::from_bytes([0u8; 32]);
    std::hint::black_box(&secret);
    out
}

/// Curve25519 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: crypto_box::PublicKey,
}

impl PublicKey {
    /// From 32 bytes.
    pub fn from_bytes(b: &[u8]) -> Result<Self, CryptoError> {
        Ok(Self {
            key: crypto_box::PublicKey::from_bytes(key_from_slice(b)?),
        })
    }

    /// From 64 hex characters (`pubhex`).
    pub fn from_hex(h: &str) -> Result<Self, CryptoError> {
        Self::from_bytes(&key_from_hex(h)?)
    }

    /// 64 lowercase hex characters (`pubhex`).
    pub fn to_hex(&self) -> String {
        hex::encode(self.key.as_bytes())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

/// `crypto_box` between one secret and one public key, with the shared key
/// computed once (`crypto_box_beforenm`); keep one per key pair. Boxes are in
/// NaCl combined form (tag || ciphertext); `crypto_box` is symmetric, so the
/// peer opens with (our public, its secret). The shared key is zeroized on
/// drop.
pub struct SharedBox {
    inner: SalsaBox,
}

impl SharedBox {
    /// Precomputes the shared key of `their_public` and `my_secret`.
    pub fn new(their_public: &PublicKey, my_secret: &PrivateKey) -> Self {
        Self {
            inner: with_library_key(&my_secret.bytes, |secret| {
                SalsaBox::new(&their_public.key, secret)
            }),
        }
    }

    /// Encrypts with a random nonce: tag || ciphertext || nonce24 (the road
    /// coat layout). Empty plaintext is NOT special-cased here.
    pub fn seal<R: CryptoRngCore>(&self, rng: &mut R, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_SIZE];
        rng.fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(TAG_SIZE + plain.len() + NONCE_SIZE);
        self.seal_into(&nonce, plain, &mut out);
        out.extend_from_slice(&nonce);
        out
    }

    /// Opens tag || ciphertext || nonce24 (as made by [`SharedBox::seal`]).
    pub fn open(&self, coat: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let split = coat
            .len()
            .checked_sub(NONCE_SIZE)
            .ok_or(CryptoError::TooShort)?;
        let (cipher, nonce) = coat.split_at(split);
        let nonce: &[u8; NONCE_SIZE] = nonce.try_into().map_err(|_| CryptoError::TooShort)?;
        self.open_with_nonce(nonce, cipher)
    }

    /// Encrypts with a caller-chosen nonce: tag || ciphertext (Allow bodies).
    pub fn seal_with_nonce(&self, nonce: &[u8; 24], plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(TAG_SIZE + plain.len());
        self.seal_into(nonce, plain, &mut out);
        out
    }

    /// Opens tag || ciphertext with the given nonce.
    pub fn open_with_nonce(&self, nonce: &[u8; 24], cipher: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if cipher.len() < TAG_SIZE {
            return Err(CryptoError::TooShort);
        }
        let (tag, body) = cipher.split_at(TAG_SIZE);
        let mut plain = body.to_vec();
        self.inner
            .decrypt_in_place_detached(
                GenericArray::from_slice(nonce),
                b"",
                &mut plain,
                GenericArray::from_slice(tag),
            )
            .map_err(|_| CryptoError::DecryptFailed)?;
        Ok(plain)
    }

    /// Appends tag || ciphertext of `plain` to `out`.
    fn seal_into(&self, nonce: &[u8; 24], plain: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0u8; TAG_SIZE]);
        out.extend_from_slice(plain);
        let (tag_slot, body) = out[start..].split_at_mut(TAG_SIZE);
        // Only fails for associated data or messages beyond the cipher's
        // 256 GiB stream limit, neither of which can occur here.
        if let Ok(tag) =
            self.inner
                .encrypt_in_place_detached(GenericArray::from_slice(nonce), b"", body)
        {
            tag_slot.copy_from_slice(&tag);
        }
    }
}

impl std::fmt::Debug for SharedBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBox").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn rng() -> ChaCha20Rng {
        ChaCha20Rng::from_seed([7; 32])
    }

    #[test]
    fn sign_verify_and_tamper() {
        let signer = Signer::generate(&mut rng());
        let vk = signer.verify_key();
        let sig = signer.sign(b"hello");
        assert_eq!(vk.verify(b"hello", &sig), Ok(()));
        assert_eq!(vk.verify(b"hellp", &sig), Err(CryptoError::BadSignature));
        assert_eq!(
            vk.verify(b"hello", &sig[..63]),
            Err(CryptoError::BadSignature)
        );
        let again = Signer::from_seed(&signer.seed());
        assert_eq!(again.verify_key(), vk);
        assert_eq!(VerifyKey::from_hex(&vk.to_hex()), Ok(vk.clone()));
        assert_eq!(vk.to_hex().len(), 64);
    }

    #[test]
    fn small_order_verify_keys_are_refused() {
        // The identity point (y = 1) and the point of order 2 (y = -1) are
        // valid encodings of weak keys: any signature would verify against
        // them under the cofactorless check, so they are refused at load.
        let mut minus_one = [0xffu8; 32];
        minus_one[0] = 0xec;
        minus_one[31] = 0x7f;
        let mut one = [0u8; 32];
        one[0] = 1;
        for weak in [one, minus_one] {
            assert_eq!(VerifyKey::from_bytes(&weak), Err(CryptoError::BadKey));
        }
    }

    #[test]
    fn bad_keys_are_errors() {
        assert_eq!(VerifyKey::from_bytes(&[1; 31]), Err(CryptoError::BadKey));
        assert_eq!(VerifyKey::from_hex("zz"), Err(CryptoError::BadHex));
        assert_eq!(PublicKey::from_bytes(&[1; 33]), Err(CryptoError::BadKey));
        assert_eq!(
            PublicKey::from_hex(&"0".repeat(63)),
            Err(CryptoError::BadHex)
        );
    }

    #[test]
    fn shared_box_is_symmetric_and_authenticated() {
        let mut r = rng();
        let a = PrivateKey::generate(&mut r);
        let b = PrivateKey::generate(&mut r);
        let ab = SharedBox::new(&b.public_key(), &a);
        let ba = SharedBox::new(&a.public_key(), &b);
        let coat = ab.seal(&mut r, b"secret body");
        assert_eq!(coat.len(), TAG_SIZE + 11 + NONCE_SIZE);
        assert_eq!(ba.open(&coat).as_deref(), Ok(&b"secret body"[..]));
        let mut bad = coat.clone();
        bad[3] ^= 1;
        assert_eq!(ba.open(&bad), Err(CryptoError::DecryptFailed));
        assert_eq!(
            ba.open(&coat[..NONCE_SIZE + 15]),
            Err(CryptoError::TooShort)
        );
        let c = PrivateKey::generate(&mut r);
        let ca = SharedBox::new(&a.public_key(), &c);
        assert_eq!(ca.open(&coat), Err(CryptoError::DecryptFailed));
        let nonce = [9u8; 24];
        let boxed = ab.seal_with_nonce(&nonce, b"");
        assert_eq!(boxed.len(), TAG_SIZE);
        assert_eq!(ba.open_with_nonce(&nonce, &boxed), Ok(Vec::new()));
    }

    #[test]
    fn private_key_round_trips() {
        let k = PrivateKey::generate(&mut rng());
        let again = PrivateKey::from_bytes(&k.to_bytes());
        assert_eq!(again.public_key(), k.public_key());
        assert_eq!(
            PublicKey::from_hex(&k.public_key().to_hex()),
            Ok(k.public_key())
        );
    }
}
