//! One identity per daemon: its Ed25519 key. The RAET long-term Curve25519 key is derived from it.
//!
//! * secret (`prihex`) = the Ed25519 secret scalar bytes (`SigningKey::to_scalar_bytes`: the
//!   first half of SHA-512(seed), unclamped; X25519 clamps it when used);
//! * public (`pubhex`) = the Ed25519 verify key mapped to Montgomery form
//!   (`VerifyingKey::to_montgomery`), which equals X25519(secret, 9).
//!
//! So the one PEM salt-key shows for a minion is its whole identity: the master accepts a join
//! only if its `pubhex` is the one derived from its `verhex` ([`check_binding`]), which binds the
//! box key to the signing key the operator accepted. The derivation is the standard
//! Ed25519→X25519 map (libsodium's `crypto_sign_ed25519_{pk,sk}_to_curve25519`), done by
//! `ed25519-dalek`.
//!
//! The identity lives in the daemon's RAET keep (`<pki_dir>/raet`, a [`DirKeep`]): `sighex` is
//! the Ed25519 seed, `prihex` the derived secret.
//!
//! [`DirKeep`]: raet::keep::DirKeep

use std::net::SocketAddr;

use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use crate::pki;
use raet::crypto::{PrivateKey, PublicKey, Signer, VerifyKey};
use raet::keep::{DirKeep, Keep, KeepError, LocalRecord};

/// Why an identity cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The keep failed.
    #[error(transparent)]
    Keep(#[from] KeepError),
    /// The keep's Curve25519 key is not the one derived from its Ed25519 key.
    #[error("the keep's private key is not derived from its signing key (not a salt-raet keep)")]
    NotDerived,
    /// The keep belongs to another name (the minion id changed).
    #[error("the keep belongs to {found:?}, not {expected:?}")]
    WrongName {
        /// The configured name.
        expected: String,
        /// The name in the keep.
        found: String,
    },
    /// A joining peer's `pubhex` is not derived from its `verhex`.
    #[error("the offered public key is not derived from the offered verify key")]
    Unbound,
    /// A key in hex is malformed.
    #[error("bad key: {0}")]
    BadKey(#[from] raet::crypto::CryptoError),
}

/// The Curve25519 public key derived from an Ed25519 verify key.
pub fn derive_public(verify: &VerifyKey) -> PublicKey {
    verify.to_public_key()
}

/// Checks a joining peer's keys: `pubhex` must be [`derive_public`] of `verhex`. Returns the
/// verify key on success.
pub fn check_binding(verhex: &str, pubhex: &str) -> Result<VerifyKey, IdentityError> {
    let verify = VerifyKey::from_hex(verhex)?;
    let offered = PublicKey::from_hex(pubhex)?;
    if derive_public(&verify) == offered {
        Ok(verify)
    } else {
        Err(IdentityError::Unbound)
    }
}

/// The fingerprint of a peer's offered keys, as its own `--finger` prints it (the
/// `salt-key -f` fingerprint of its verify key's PEM), once [`check_binding`] took them.
pub fn offered_fingerprint(verhex: &str, pubhex: &str) -> Result<String, IdentityError> {
    let key = check_binding(verhex, pubhex)?;
    Ok(pki::fingerprint(&pki::pem_from_verify_key(&key)))
}

/// A daemon's keys: an Ed25519 signer and the Curve25519 key derived from it.
#[derive(Debug)]
pub struct Identity {
    signer: Signer,
    private: PrivateKey,
}

impl Identity {
    /// The identity of an Ed25519 seed (`sighex`).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        // SigningKey wipes itself on drop; the scalar copy is wiped by Zeroizing.
        let signing = ed25519_dalek::SigningKey::from_bytes(seed);
        let scalar = Zeroizing::new(signing.to_scalar_bytes());
        Self {
            signer: Signer::from_seed(seed),
            private: PrivateKey::from_bytes(&scalar),
        }
    }

    /// A fresh random identity.
    pub fn generate<R: CryptoRngCore>(rng: &mut R) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut seed[..]);
        Self::from_seed(&seed)
    }

    /// The Ed25519 signer (`sighex`).
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// The derived Curve25519 secret key (`prihex`).
    pub fn private_key(&self) -> &PrivateKey {
        &self.private
    }

    /// The verify key (`verhex`).
    pub fn verify_key(&self) -> VerifyKey {
        self.signer.verify_key()
    }

    /// The derived Curve25519 public key (`pubhex`).
    pub fn public_key(&self) -> PublicKey {
        self.private.public_key()
    }

    /// The verify and public keys in hex (`verhex`, `pubhex`), as a join offers them.
    pub fn offered_hexes(&self) -> (String, String) {
        (self.verify_key().to_hex(), self.public_key().to_hex())
    }

    /// The keys, for `Road::new`.
    pub fn into_keys(self) -> (Signer, PrivateKey) {
        (self.signer, self.private)
    }

    /// The PEM the master stores for this identity under `pki_dir/minions*/<id>`.
    pub fn pem(&self) -> String {
        pki::pem_from_verify_key(&self.verify_key())
    }

    /// The fingerprint `salt-key -f` shows for this identity's stored key.
    pub fn fingerprint(&self) -> String {
        pki::fingerprint(&self.pem())
    }

    /// Loads the identity from `keep`, or creates one and saves it as a fresh local record
    /// (uid 1, the road's initial values) when the keep is empty. An existing keep must belong
    /// to `name` and hold a derived key pair.
    pub fn load_or_create<R: CryptoRngCore>(
        keep: &mut dyn Keep,
        local: LocalParams<'_>,
        rng: &mut R,
    ) -> Result<Self, IdentityError> {
        if let Some(record) = keep.load_local()? {
            if record.name != local.name {
                return Err(IdentityError::WrongName {
                    expected: local.name.to_owned(),
                    found: record.name,
                });
            }
            let identity = Self::from_seed(&record.sign_seed);
            if identity.private.to_bytes() != record.private_key {
                return Err(IdentityError::NotDerived);
            }
            return Ok(identity);
        }
        let identity = Self::generate(rng);
        keep.save_local(&LocalRecord {
            name: local.name.to_owned(),
            uid: 1,
            ha: local.ha,
            sid: 0,
            puid: 1,
            role: local.name.to_owned(),
            main: local.main,
            kind: local.kind,
            sign_seed: identity.signer.seed(),
            private_key: identity.private.to_bytes(),
        })?;
        Ok(identity)
    }
}

impl Identity {
    /// [`Identity::load_or_create`] on an on-disk keep, holding the keep's lock
    /// ([`DirKeep::lock`]): two processes starting on one keep end with the same identity.
    pub fn load_or_create_locked<R: CryptoRngCore>(
        keep: &mut DirKeep,
        local: LocalParams<'_>,
        rng: &mut R,
    ) -> Result<Self, IdentityError> {
        let _lock = keep.lock()?;
        Self::load_or_create(keep, local, rng)
    }
}

/// What a fresh local record needs besides the keys.
#[derive(Debug, Clone, Copy)]
pub struct LocalParams<'a> {
    /// The estate name (minion id, or the master's name); also its role.
    pub name: &'a str,
    /// Our road address.
    pub ha: SocketAddr,
    /// Whether we are the main estate (the master).
    pub main: bool,
    /// Application kind.
    pub kind: u8,
}

#[cfg(test)]
mod tests;
