//! Mutations of real datagrams for the robustness tests and the road fuzz target: one head
//! field changed to an arbitrary value (the datagram is then re-packed, and re-signed by its
//! sender, so it gets past the signature check into the transactions).

use raet_proto::packet::{BodyKind, CoatKind, Flags, Head, PacketKind, TransactionKind};

/// Changes the head field selected by `field` (modulo 10) to `value`: `si`, `ti`, `sn`,
/// `sc`, `ml`, `se`, `de`, `pk`, `tk`, or flags with body and coat kinds together.
pub fn head(head: &mut Head, field: u8, value: u32) {
    match field % 10 {
        0 => head.si = value,
        1 => head.ti = value,
        2 => head.sn = value,
        3 => head.sc = value,
        4 => head.ml = value,
        5 => head.se = value,
        6 => head.de = value,
        7 => head.pk = PacketKind::from_code(u64::from(value % 17)).unwrap_or(PacketKind::Nack),
        8 => {
            head.tk =
                TransactionKind::from_code(u64::from(value % 5)).unwrap_or(TransactionKind::Alive)
        }
        _ => {
            head.fg = Flags(value as u8);
            head.bk = BodyKind::from_code(u64::from(value % 4)).unwrap_or(BodyKind::Json);
            head.ck = CoatKind::from_code(u64::from(value % 2)).unwrap_or(CoatKind::Nacl);
        }
    }
}
