//! The application's word on a received message ([`RoadConfig::confirm_messages`]): its
//! sender is told the message was delivered only once the application took it.
//!
//! [`RoadConfig::confirm_messages`]: super::RoadConfig::confirm_messages

use std::time::Instant;

use crate::packet::PacketKind;

use super::{Receipt, Road, Uid};

impl Road {
    /// Whether a message transaction of `uid` is complete and awaits the application's word
    /// (a copy of it is dropped: the done follows [`Road::taken`]).
    pub(super) fn awaits_taking(&self, uid: Uid, si: u32, ti: u32) -> bool {
        self.awaiting.contains_key(&Receipt { uid, si, ti })
    }

    /// The application took the message of `receipt`: the sender gets its done (and a copy
    /// of the message is answered done again, never delivered twice). `false`: the receipt
    /// was answered already or its remote is gone.
    pub fn taken(&mut self, now: Instant, receipt: Receipt) -> bool {
        self.answer_receipt(now, receipt, true)
    }

    /// The application could not take the message of `receipt`: the sender gets a nack (it
    /// was not delivered; the sender may send it again).
    pub fn refused(&mut self, now: Instant, receipt: Receipt) -> bool {
        self.answer_receipt(now, receipt, false)
    }

    fn answer_receipt(&mut self, now: Instant, receipt: Receipt, taken: bool) -> bool {
        let Some(head) = self.awaiting.remove(&receipt) else {
            return false;
        };
        if !self.remotes.contains_key(&receipt.uid) {
            return false;
        }
        let kind = if taken {
            PacketKind::Done
        } else {
            PacketKind::Nack
        };
        self.messengent_send(receipt.uid, &head, kind);
        self.finish_incoming(now, receipt.uid, receipt.ti, taken);
        true
    }
}
