//! A whole road datagram: parse, verify the foot, decode the body; then the
//! parsed head must re-encode into a datagram that parses back to itself. A binary (fast
//! profile) head must encode back to its bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use raet_proto::crypto::Signer;
use raet_proto::packet::fast::FastHead;
use raet_proto::packet::{self, body, FootKind, HeadKind};

fuzz_target!(|data: &[u8]| {
    // The fast profile's binary head: what parses encodes back to its own bytes.
    if let Ok((head, raw, _)) = FastHead::parse(data) {
        assert_eq!(head.encode(), raw);
    }
    let Ok(rx) = packet::parse(data) else {
        return;
    };
    let signer = Signer::from_seed(&[7; 32]);
    let _ = rx.verify(&signer.verify_key());
    let _ = body::decode(rx.head.bk, rx.coat);
    let _ = body::decode_json(rx.coat);

    // Round trip: our encoding of any accepted head is accepted and equal.
    let signed = rx.head.fk == FootKind::Nacl;
    let mut head = rx.head.clone();
    (head.fk, head.fl) = if signed {
        (FootKind::Nacl, 64)
    } else {
        (FootKind::Nada, 0)
    };
    match packet::pack(&head, rx.coat, signed.then_some(&signer)) {
        // A raet head's pl has 4 hex digits (truncated, as the reference).
        Ok(bytes) if head.hk == HeadKind::Raet && bytes.len() > 0xffff => {}
        Ok(bytes) => {
            let again = packet::parse(&bytes).expect("our own datagram parses");
            head.hl = again.head.hl;
            head.pl = bytes.len();
            assert_eq!(again.head, head);
            assert_eq!(again.coat, rx.coat);
            if signed {
                again
                    .verify(&signer.verify_key())
                    .expect("our own signature verifies");
            }
        }
        // A received head may be shorter than our canonical encoding of it
        // (e.g. a json `pl` of fewer than 7 digits).
        Err(packet::PacketError::HeadTooLong) => {}
        Err(e) => panic!("re-encoding an accepted head failed: {e}"),
    }
});
