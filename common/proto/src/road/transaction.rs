//! Transaction bookkeeping: the reference's transaction index and the open transactions.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Instant;

use crate::packet::{Flags, Head, TransactionKind};

use super::alive::Aliver;
use super::allow::{Allowent, Allower};
use super::join::{Joinent, Joiner};
use super::message::{Messengent, Messenger};

/// The far end of a transaction index: the peer's uid for us, or its address while a
/// vacuous join does not know that uid yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Far {
    /// The peer's uid (`se` of its packets).
    Uid(u32),
    /// The peer's address.
    Addr(SocketAddr),
}

/// The reference's transaction index `(rf, le, re, si, ti)` (`bf` is always false: broadcast
/// packets are dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct TxIndex {
    /// Remotely initiated (we are the correspondent).
    pub rf: bool,
    /// Our uid for the peer.
    pub le: u32,
    /// The peer's uid for us, or its address.
    pub re: Far,
    /// Session id.
    pub si: u32,
    /// Transaction id.
    pub ti: u32,
}

impl TxIndex {
    /// Index of a received packet (reference `RxPacket.index`).
    pub(crate) fn of_rx(head: &Head, from: SocketAddr) -> Self {
        let cf = head.fg.has(Flags::CF);
        let (le, re) = (head.de, head.se);
        let re = if (re == 0 && cf) || (le == 0 && !cf) {
            Far::Addr(from)
        } else {
            Far::Uid(re)
        };
        Self {
            rf: !cf,
            le,
            re,
            si: head.si,
            ti: head.ti,
        }
    }

    /// Index of a packet we send with head `head` to `dest` (reference `TxPacket.index`).
    pub(crate) fn of_tx(head: &Head, dest: SocketAddr) -> Self {
        let cf = head.fg.has(Flags::CF);
        let (le, re) = (head.se, head.de);
        let re = if (re == 0 && !cf) || (le == 0 && cf) {
            Far::Addr(dest)
        } else {
            Far::Uid(re)
        };
        Self {
            rf: cf,
            le,
            re,
            si: head.si,
            ti: head.ti,
        }
    }
}

/// An open transaction with one remote.
pub(crate) enum Transaction {
    /// We join the remote.
    Joiner(Joiner),
    /// The remote joins us.
    Joinent(Joinent),
    /// We run the allow handshake.
    Allower(Allower),
    /// The remote runs the allow handshake with us.
    Allowent(Allowent),
    /// We check the remote's presence.
    Aliver(Aliver),
    /// We send a message.
    Messenger(Box<Messenger>),
    /// We receive a message.
    Messengent(Box<Messengent>),
}

impl Transaction {
    /// Transaction kind.
    pub(crate) fn kind(&self) -> TransactionKind {
        match self {
            Self::Joiner(_) | Self::Joinent(_) => TransactionKind::Join,
            Self::Allower(_) | Self::Allowent(_) => TransactionKind::Allow,
            Self::Aliver(_) => TransactionKind::Alive,
            Self::Messenger(_) | Self::Messengent(_) => TransactionKind::Message,
        }
    }

    /// Whether this is a join (either side).
    pub(crate) fn is_join(&self) -> bool {
        self.kind() == TransactionKind::Join
    }

    /// Whether this is a join waiting for our decision on the remote's keys.
    pub(crate) fn awaits_decision(&self) -> bool {
        match self {
            Self::Joiner(j) => j.awaits_decision(),
            Self::Joinent(j) => j.awaits_decision(),
            _ => false,
        }
    }

    /// Whether this is an allow (either side).
    pub(crate) fn is_allow(&self) -> bool {
        self.kind() == TransactionKind::Allow
    }

    /// Whether this is a handshake the remote started that counts against
    /// [`Limits::max_handshakes`](super::Limits::max_handshakes): an allow, or a join unless
    /// the remote's keys were already pending before it (it waits for an operator, or for a
    /// decision that outlasted a join: nothing but memory until that decision comes).
    pub(crate) fn is_admitted_handshake(&self) -> bool {
        match self {
            Self::Joinent(j) => !j.repended,
            Self::Allowent(_) => true,
            _ => false,
        }
    }

    /// The earliest instant at which this transaction has something to do.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        match self {
            Self::Joiner(t) => t.next_deadline(),
            Self::Joinent(t) => t.next_deadline(),
            Self::Allower(t) => t.clock.next_deadline(),
            Self::Allowent(t) => t.clock.next_deadline(),
            Self::Aliver(t) => t.clock.next_deadline(),
            Self::Messenger(t) => t.next_deadline(),
            Self::Messengent(t) => t.next_deadline(),
        }
    }
}

/// A remote's open transactions, with what the road asks of them on every packet and timer
/// kept up to date as they come and go: their deadlines in order, and how many are joins,
/// allows, admitted handshakes, correspondents and messengers (with their bytes). A
/// transaction changes only while taken out ([`Transactions::remove`], then
/// [`Transactions::insert`] again), so these are exact, and nothing scans a remote's
/// transactions per packet: with hundreds of messages in flight to one peer, several scans
/// of them per packet were a tenth of a 1 KB sender's CPU.
#[derive(Default)]
pub(crate) struct Transactions {
    /// Each transaction and its deadline when it was inserted.
    map: HashMap<TxIndex, (Transaction, Option<Instant>)>,
    /// The deadlines, earliest first.
    deadlines: BTreeSet<(Instant, TxIndex)>,
    joins: usize,
    allows: usize,
    handshakes: usize,
    correspondents: usize,
    messengers: usize,
    messenger_bytes: usize,
}

impl Transactions {
    /// Adds (or replaces) the transaction at `index`.
    pub(crate) fn insert(&mut self, index: TxIndex, txn: Transaction) {
        self.remove(&index);
        let deadline = txn.next_deadline();
        if let Some(at) = deadline {
            self.deadlines.insert((at, index));
        }
        self.count(index, &txn, true);
        self.map.insert(index, (txn, deadline));
    }

    /// Takes the transaction at `index` out.
    pub(crate) fn remove(&mut self, index: &TxIndex) -> Option<Transaction> {
        let (txn, deadline) = self.map.remove(index)?;
        if let Some(at) = deadline {
            self.deadlines.remove(&(at, *index));
        }
        self.count(*index, &txn, false);
        Some(txn)
    }

    /// Counts `txn` at `index` in (`added`) or out.
    fn count(&mut self, index: TxIndex, txn: &Transaction, added: bool) {
        let bytes = match txn {
            Transaction::Messenger(m) => m.bytes(),
            _ => 0,
        };
        for (counter, counts) in [
            (&mut self.joins, txn.is_join()),
            (&mut self.allows, txn.is_allow()),
            (&mut self.handshakes, txn.is_admitted_handshake()),
            (&mut self.correspondents, index.rf),
            (
                &mut self.messengers,
                matches!(txn, Transaction::Messenger(_)),
            ),
        ] {
            if counts {
                *counter = if added { *counter + 1 } else { *counter - 1 };
            }
        }
        self.messenger_bytes = if added {
            self.messenger_bytes.saturating_add(bytes)
        } else {
            self.messenger_bytes.saturating_sub(bytes)
        };
    }

    /// Whether there is none.
    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The indexes.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &TxIndex> {
        self.map.keys()
    }

    /// The transactions.
    pub(crate) fn values(&self) -> impl Iterator<Item = &Transaction> {
        self.map.values().map(|(txn, _)| txn)
    }

    /// The transactions with their indexes.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&TxIndex, &Transaction)> {
        self.map.iter().map(|(index, (txn, _))| (index, txn))
    }

    /// The earliest deadline of any of them.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// The indexes of those whose deadline is at or before `now`, earliest first.
    pub(crate) fn due(&self, now: Instant) -> Vec<TxIndex> {
        self.deadlines
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, index)| *index)
            .collect()
    }

    /// Whether a join (either side) is in progress.
    pub(crate) fn joining(&self) -> bool {
        self.joins > 0
    }

    /// Whether an allow (either side) is in progress.
    pub(crate) fn allowing(&self) -> bool {
        self.allows > 0
    }

    /// Whether a handshake the remote started counts against the road's limit
    /// ([`Transaction::is_admitted_handshake`]).
    pub(crate) fn handshaking(&self) -> bool {
        self.handshakes > 0
    }

    /// How many the remote started (we are the correspondent).
    pub(crate) fn correspondents(&self) -> usize {
        self.correspondents
    }

    /// How many messages we are sending, and their bytes.
    pub(crate) fn messengers(&self) -> (usize, usize) {
        (self.messengers, self.messenger_bytes)
    }
}

/// The earlier of two optional instants.
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}
