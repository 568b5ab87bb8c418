//! Head parsing alone; an accepted head re-encodes to one that parses back equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use raet_proto::packet::{Head, HeadKind, PacketError};

fuzz_target!(|data: &[u8]| {
    let Ok(head) = Head::parse(data) else {
        return;
    };
    let Some(coat_len) = head
        .pl
        .checked_sub(head.hl)
        .and_then(|n| n.checked_sub(head.fl))
    else {
        return;
    };
    let mut bytes = Vec::new();
    match head.encode_into(coat_len, &mut bytes) {
        Ok(hl) => {
            // Pad to the stated pl so the length checks pass.
            let pl = hl + coat_len + head.fl;
            if head.hk == HeadKind::Raet && pl > 0xffff {
                return; // a raet head's pl has 4 hex digits (truncated, as the reference)
            }
            bytes.resize(pl, 0);
            let again = Head::parse(&bytes).expect("our own head parses");
            let mut want = head.clone();
            want.hl = hl;
            want.pl = pl;
            assert_eq!(again, want);
        }
        Err(PacketError::HeadTooLong) => {}
        Err(e) => panic!("re-encoding an accepted head failed: {e}"),
    }
});
