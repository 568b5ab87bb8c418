//! Tests of a daemon's identity: creation, reload, the derived Curve25519 key and its binding check.

use super::*;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use raet::crypto::SharedBox;
use raet::keep::MemKeep;

fn rng(n: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([n; 32])
}

fn params(name: &str) -> LocalParams<'_> {
    LocalParams {
        name,
        ha: "127.0.0.1:4510".parse().unwrap(),
        main: false,
        kind: 0,
    }
}

#[test]
fn derived_public_is_the_public_of_the_derived_secret() {
    for n in 0..16 {
        let id = Identity::generate(&mut rng(n));
        let derived = derive_public(&id.verify_key());
        assert_eq!(derived, id.public_key());
        assert_eq!(
            check_binding(&id.verify_key().to_hex(), &id.public_key().to_hex()).unwrap(),
            id.verify_key()
        );
    }
}

#[test]
fn boxes_work_between_two_derived_identities() {
    let a = Identity::generate(&mut rng(1));
    let b = Identity::generate(&mut rng(2));
    let ab = SharedBox::new(&b.public_key(), a.private_key());
    let ba = SharedBox::new(&a.public_key(), b.private_key());
    let coat = ab.seal(&mut rng(3), b"salt over raet");
    assert_eq!(ba.open(&coat).unwrap(), b"salt over raet");
    let c = Identity::generate(&mut rng(4));
    let ca = SharedBox::new(&a.public_key(), c.private_key());
    assert!(ca.open(&coat).is_err());
}

#[test]
fn an_unbound_box_key_is_refused() {
    let a = Identity::generate(&mut rng(1));
    let b = Identity::generate(&mut rng(2));
    assert!(matches!(
        check_binding(&a.verify_key().to_hex(), &b.public_key().to_hex()),
        Err(IdentityError::Unbound)
    ));
    assert!(matches!(
        check_binding("zz", &b.public_key().to_hex()),
        Err(IdentityError::BadKey(_))
    ));
}

#[test]
fn the_same_seed_gives_the_same_identity_and_pem() {
    let a = Identity::generate(&mut rng(9));
    let again = Identity::from_seed(&a.signer().seed());
    assert_eq!(again.public_key(), a.public_key());
    assert_eq!(again.pem(), a.pem());
    assert_eq!(pki::verify_key_from_pem(&a.pem()).unwrap(), a.verify_key());
    assert_eq!(a.fingerprint(), pki::fingerprint(&a.pem()));
}

#[test]
fn load_or_create_persists_and_checks_the_keep() {
    let mut keep = MemKeep::default();
    let created = Identity::load_or_create(&mut keep, params("web1"), &mut rng(5)).unwrap();
    let loaded = Identity::load_or_create(&mut keep, params("web1"), &mut rng(6)).unwrap();
    assert_eq!(loaded.verify_key(), created.verify_key());
    assert_eq!(loaded.public_key(), created.public_key());
    let record = keep.load_local().unwrap().unwrap();
    assert_eq!((record.uid, record.puid, record.sid), (1, 1, 0));
    assert_eq!(record.role, "web1");
    assert!(matches!(
        Identity::load_or_create(&mut keep, params("web2"), &mut rng(6)),
        Err(IdentityError::WrongName { .. })
    ));
    // A keep whose private key is not derived (e.g. written by plain raet) is refused.
    let mut record = record;
    record.private_key = PrivateKey::generate(&mut rng(7)).to_bytes();
    keep.save_local(&record).unwrap();
    assert!(matches!(
        Identity::load_or_create(&mut keep, params("web1"), &mut rng(6)),
        Err(IdentityError::NotDerived)
    ));
}

#[test]
fn derivation_equals_libsodiums_ed25519_to_curve25519() {
    // Computed with libsodium (libnacl in the reference raet venv) for the seed 00 01 .. 1f:
    // crypto_sign_seed_keypair, crypto_sign_ed25519_pk_to_curve25519 and
    // crypto_sign_ed25519_sk_to_curve25519 (which returns the scalar clamped).
    let seed: [u8; 32] = std::array::from_fn(|i| i as u8);
    let id = Identity::from_seed(&seed);
    assert_eq!(
        id.verify_key().to_hex(),
        "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
    );
    assert_eq!(
        id.public_key().to_hex(),
        "4701d08488451f545a409fb58ae3e58581ca40ac3f7f114698cd71deac73ca01"
    );
    // We keep the unclamped scalar bytes; X25519 clamps them, so libsodium's clamped secret
    // gives the same public key.
    let libsodium_secret: [u8; 32] =
        hex::decode("3894eea49c580aef816935762be049559d6d1440dede12e6a125f1841fff8e6f")
            .unwrap()
            .try_into()
            .unwrap();
    assert_eq!(
        PrivateKey::from_bytes(&libsodium_secret).public_key(),
        id.public_key()
    );
    let mut ours = *id.private_key().to_bytes();
    ours[0] &= 248;
    ours[31] &= 127;
    ours[31] |= 64;
    assert_eq!(ours, libsodium_secret);
}

/// A daemon starting while its `--finger` runs (two processes, one fresh keep) must not end
/// with two identities: the one printed must be the one used. Threads with their own
/// `DirKeep` (their own lock file descriptions) race on fresh keeps.
#[test]
fn concurrent_creations_on_one_keep_agree() {
    for round in 0..20u8 {
        let dir = tempfile::tempdir().unwrap();
        let start = std::sync::Barrier::new(4);
        let keys: Vec<String> = std::thread::scope(|scope| {
            let racers: Vec<_> = (0..4u8)
                .map(|n| {
                    let (dir, start) = (dir.path(), &start);
                    scope.spawn(move || {
                        let mut keep = DirKeep::open(dir).unwrap();
                        start.wait();
                        let id = Identity::load_or_create_locked(
                            &mut keep,
                            params("m1"),
                            &mut rng(round.wrapping_mul(4).wrapping_add(n)),
                        )
                        .unwrap();
                        id.verify_key().to_hex()
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        assert!(
            keys.iter().all(|k| *k == keys[0]),
            "round {round}: {keys:?}"
        );
        let stored = Identity::load_or_create(
            &mut DirKeep::open(dir.path()).unwrap(),
            params("m1"),
            &mut rng(99),
        )
        .unwrap();
        assert_eq!(stored.verify_key().to_hex(), keys[0]);
    }
}
