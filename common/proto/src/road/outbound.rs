//! Datagrams the road queued with their last cryptographic step still to do: the seal of a
//! fast session's packet, or the Ed25519 signature of a compatible message segment. That step
//! is a pure function of the datagram and a key, so a driver may run it for many datagrams
//! on every core ([`Outbound::finish`]; issue 11: a fan-out's crypto on one core was the
//! master's ceiling). [`super::Road::poll_transmit`] finishes them one by one, in order.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::crypto::{PacketCipher, Signer};
use crate::packet::sign_foot;
use crate::Transmit;

/// A datagram the road queued for `dest`, finished or not.
pub struct Outbound {
    dest: SocketAddr,
    payload: Vec<u8>,
    step: Option<Step>,
}

/// What is left to do to a queued datagram.
enum Step {
    /// Seal with packet number `pn`: the first `at` bytes (the binary head) are the
    /// associated data, the rest the plaintext.
    Seal {
        cipher: Arc<PacketCipher>,
        pn: u64,
        at: usize,
    },
    /// Fill the zeroed foot with the signature ([`crate::packet::pack_to_sign`]).
    Sign(Arc<Signer>),
}

impl Outbound {
    /// A finished datagram.
    pub(crate) fn ready(dest: SocketAddr, payload: Vec<u8>) -> Self {
        Self {
            dest,
            payload,
            step: None,
        }
    }

    /// A datagram packed with a zeroed foot, to be signed with `signer`.
    pub(crate) fn to_sign(dest: SocketAddr, payload: Vec<u8>, signer: Arc<Signer>) -> Self {
        Self {
            dest,
            payload,
            step: Some(Step::Sign(signer)),
        }
    }

    /// A binary head (`at` bytes) and its plaintext, to be sealed with `cipher` as packet
    /// `pn`.
    pub(crate) fn to_seal(
        dest: SocketAddr,
        payload: Vec<u8>,
        cipher: Arc<PacketCipher>,
        pn: u64,
        at: usize,
    ) -> Self {
        Self {
            dest,
            payload,
            step: Some(Step::Seal { cipher, pn, at }),
        }
    }

    /// Where it goes.
    #[must_use]
    pub fn dest(&self) -> SocketAddr {
        self.dest
    }

    /// The bytes its last step still has to go over (0 when finished): what a driver weighs
    /// to decide whether spreading a batch over cores pays.
    #[must_use]
    pub fn work(&self) -> usize {
        if self.step.is_some() {
            self.payload.len()
        } else {
            0
        }
    }

    /// The datagram to send, its last step done.
    #[must_use]
    pub fn finish(mut self) -> Transmit {
        match self.step.take() {
            Some(Step::Seal { cipher, pn, at }) => cipher.seal_tail(pn, &mut self.payload, at),
            Some(Step::Sign(signer)) => sign_foot(&mut self.payload, &signer),
            None => {}
        }
        Transmit {
            dest: self.dest,
            payload: self.payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{pack, parse, Head};

    #[test]
    fn a_datagram_signed_later_is_the_one_signed_at_once() {
        let signer = Signer::from_seed(&[3; 32]);
        let head = Head::default();
        let dest: SocketAddr = "127.0.0.1:7530".parse().expect("address");
        let now = pack(&head, b"coat", Some(&signer)).expect("packed");
        let later = crate::packet::pack_to_sign(&head, b"coat").expect("packed");
        let outbound = Outbound::to_sign(dest, later, Arc::new(signer));
        assert!(outbound.work() > 0);
        let sent = outbound.finish();
        assert_eq!(sent.payload, now);
        assert!(parse(&sent.payload).is_ok());
        assert_eq!(Outbound::ready(dest, now.clone()).work(), 0);
    }
}
