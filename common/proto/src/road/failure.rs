//! Why a join, an allow or a message ended without success: typed reasons carried by
//! [`Event::JoinFailed`](super::Event::JoinFailed), [`Event::AllowFailed`](super::Event::AllowFailed)
//! and [`Event::SendFailed`](super::Event::SendFailed), so that callers decide on the reason,
//! not on its wording.

/// Why a join ended without success (a rejection is [`Event::Rejected`](super::Event::Rejected)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinFailure {
    /// No answer within the joiner timeout.
    #[error("timed out")]
    TimedOut,
    /// The remote pended our keys (its operator has not decided yet), then the join timed out.
    #[error("timed out while the remote pended our keys")]
    Pended,
    /// The remote refused the join (nothing changed there).
    #[error("refused by the remote")]
    Refused,
    /// The remote asked for a renewal, which a road whose remotes may not change refuses.
    #[error("renew refused on an immutable road")]
    RenewRefused,
    /// The accept names a remote whose name another remote of ours already has.
    #[error("name already used by another remote")]
    NameTaken,
    /// The accept could not be read, or its keys are not valid.
    #[error("invalid accept")]
    InvalidAccept,
    /// The remote could not be updated from the accept (its new uid is taken).
    #[error("cannot update remote")]
    UpdateFailed,
    /// Our profile is `fast` and the remote does not offer the fast profile.
    #[error("the remote does not offer the fast profile this road requires")]
    ProfileRefused,
}

/// Why an allow handshake ended without success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AllowFailure {
    /// No answer within the allow timeout.
    #[error("timed out")]
    TimedOut,
    /// The remote refused it.
    #[error("refused by the remote")]
    Refused,
    /// The remote rejected us.
    #[error("rejected by the remote")]
    Rejected,
    /// The remote's cookie could not be opened or read.
    #[error("invalid cookie")]
    InvalidCookie,
    /// The remote's initiate could not be opened or read.
    #[error("invalid initiate")]
    InvalidInitiate,
}

/// Why a message could not be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendFailure {
    /// No session key with the remote to encrypt it with.
    #[error("no session key")]
    NoSessionKey,
    /// The message cannot be cut into segments (too large).
    #[error("message cannot be segmented")]
    TooLarge,
    /// The remote refused it every time it was tried.
    #[error("refused by the remote")]
    Refused,
    /// No answer from the remote within the message timeout.
    #[error("no answer from the remote")]
    NoAnswer,
    /// The remote was removed from our road.
    #[error("remote removed")]
    RemoteRemoved,
    /// The remote started a new session before the message was complete.
    #[error("stale session")]
    StaleSession,
    /// The remote was not allowed again within the allow timeout.
    #[error("timed out waiting for the remote to be allowed")]
    NotAllowed,
}

/// Who rejected a join ([`Event::Rejected`](super::Event::Rejected)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectedBy {
    /// Our own key decision (auto mode, or the application's `reject`).
    Us,
    /// The remote (it sent a reject).
    Them,
}
