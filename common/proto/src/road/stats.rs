//! The road's counters, typed: one field per thing counted, read by `Road::stats` and shown
//! by the daemons' `status --json` under `road_counters` (by these names, which follow the
//! reference's stats where one exists).

use serde::Serialize;

/// Defines [`RoadStats`] and the list of its counters by name.
macro_rules! road_stats {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// The road's counters (each counts occurrences since the road was built).
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
        #[non_exhaustive]
        pub struct RoadStats {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl RoadStats {
            /// Every counter with its name, in declaration order.
            pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
                [$((stringify!($name), self.$name),)*].into_iter()
            }
        }
    };
}

road_stats! {
    // Datagrams.
    /// Datagrams received.
    rx_packets,
    /// Datagrams queued for sending.
    tx_packets,
    /// Datagrams that do not parse as RAET packets.
    parse_error,
    /// Packets whose signature does not verify with the remote's key.
    bad_signature,
    /// Packets other than joins without a signature (dropped).
    unsigned_packet,
    /// Packets with a foot kind other than none or Ed25519.
    unsupported_foot,
    /// Packets with the broadcast flag (not supported).
    broadcast,
    /// Packets naming a remote we do not have.
    unknown_remote,
    /// Packets with session id 0 outside a join.
    invalid_sid,
    /// Packets with uid 0 outside a join.
    invalid_uid,
    /// Packets naming a remote uid that is not theirs.
    invalid_remote_eid,
    /// Packets of an older session (answered with a stale nack).
    stale_session,
    /// Packets of a transaction that no longer exists.
    stale_packet,
    /// Nacks for transactions that no longer exist (dropped, never answered).
    stale_nack,
    /// Packets that could not be packed.
    packing_error,
    /// Bodies that do not decode.
    body_error,
    /// Fast-profile packets sealed and queued.
    fast_tx,
    /// Fast-profile packets that opened with the session key.
    fast_rx,
    /// Fast-profile packets from a remote without a fast session, or of a transaction kind
    /// the profile does not carry (dropped).
    fast_refused,
    /// Fast-profile packets whose packet number was accepted before or fell behind the
    /// replay window (dropped before decryption).
    fast_replay,
    /// Remotes that answered a fast packet with a compatible nack (no fast session there):
    /// compatible profile with them until the next join.
    fast_downgrade,
    /// Fast-profile segments sent again after their loss was detected.
    fast_retransmit,
    /// Times a fast message stopped sending to wait for its pacing schedule.
    fast_paced,
    /// Times a fast message stopped sending because the congestion window was full.
    fast_window_full,
    /// Joins refused because the peer does not offer the fast profile our road requires.
    join_profile_refused,
    /// Coats that do not decrypt.
    decrypt_error,
    /// Transactions refused: the remote has too many open.
    transaction_limit,
    /// Allows not started: the remote is not joined (a join goes first).
    unjoined_remote,
    /// Alives not started: the remote is not allowed (an allow goes first).
    unallowed_remote,
    // Remotes.
    /// Remotes added.
    remote_added,
    /// Remotes removed.
    remote_removed,
    /// Remotes reaped (silent past the reap timeout).
    remote_reap,
    /// Reaped remotes heard from again.
    remote_unreap,
    /// Keep records not restored (unusable).
    restore_skipped,
    /// Keep answers overtaken by the road's own change of the role (ignored).
    stale_role_load,
    // Joins.
    /// Join requests that do not parse (no answer).
    invalid_join,
    /// Join accepts that do not parse.
    invalid_accept,
    /// Joins whose keys cannot be used.
    invalid_keys,
    /// Joins we started.
    join_initiate,
    /// Joins we started that completed.
    join_initiate_complete,
    /// Joins of remotes that completed.
    join_correspond_complete,
    /// Joins not started: one is under way.
    join_in_process,
    /// Copies of a join request already answered or under way.
    duplicate_join_attempt,
    /// Simultaneous joins of two estates, one of which gives way.
    redundant_join_attempt,
    /// Renewals of a join.
    join_renew_attempt,
    /// Renew answers refused: our road is immutable.
    join_renew_unallowed,
    /// Vacuous joins refused: we are not main.
    join_vacuous_not_main,
    /// Joins with a bad far uid.
    join_invalid_fuid,
    /// Joins with a bad near uid.
    join_invalid_nuid,
    /// Joins with a bad session id.
    join_invalid_sid,
    /// Joins whose far uid does not match the remote's.
    join_mismatch_fuid,
    /// Joins whose near uid does not match the remote's.
    join_mismatch_nuid,
    /// Accepts naming a remote whose name another remote has.
    join_name_conflict,
    /// Joins rejected: they would change a remote on an immutable road.
    join_immutable_reject,
    /// Joins rejected: other keys than a known remote's.
    join_rejected_keys_changed,
    /// Joins rejected: role is not the name (role_is_name).
    join_role_not_name,
    /// Join packets of a join that no longer exists.
    join_stale,
    /// First-contact joins refused: too many joinees.
    joinee_limit,
    /// Joins naming a near uid we no longer have.
    stale_nuid,
    /// Join requests held until the keep confirms the role record that would reject them.
    join_held,
    /// Join requests refused: too many held for the keep.
    held_join_limit,
    /// Pend answers to our joins.
    joiner_rx_pend,
    /// Refusals of our joins.
    joiner_rx_refuse,
    /// Rejections of our joins.
    joiner_rx_reject,
    /// Renew answers to our joins.
    joiner_rx_renew,
    /// Accepts of our joins.
    joiner_rx_response,
    /// Our joins that timed out.
    joiner_timeout,
    /// Our joins ended with a nack from us.
    joiner_transaction_failure,
    /// Join requests sent again.
    joiner_tx_join_redo,
    /// Pends received by a joinent.
    joinent_rx_pend,
    /// Refusals received by a joinent.
    joinent_rx_refuse,
    /// Rejections received by a joinent.
    joinent_rx_reject,
    /// Remotes' joins that timed out.
    joinent_timeout,
    /// Remotes' joins ended with a nack from us.
    joinent_transaction_failure,
    /// Join accepts sent again.
    joinent_tx_accept_redo,
    // Allows.
    /// Allows not started: one is under way.
    allow_in_process,
    /// Allows we started that completed.
    allow_initiate_complete,
    /// Allows of remotes that completed.
    allow_correspond_complete,
    /// Allows that ended without success.
    allow_failed,
    /// Our allows dropped when the remote's join completed: begun for its old session,
    /// they would only refuse the allow it starts next.
    stale_allow_dropped,
    /// Allows ended with a nack from us.
    allow_transaction_failure,
    /// Copies of a hello already answered or under way.
    duplicate_allow_attempt,
    /// Simultaneous allows of two estates, one of which gives way.
    redundant_allow_attempt,
    /// Hellos refused while a join with the remote is under way.
    invalid_allow_attempt,
    /// Allows answered unjoined.
    unjoined_allow_attempt,
    /// Hellos that do not open or read.
    invalid_hello,
    /// Cookies that do not open or read.
    invalid_cookie,
    /// Initiates that do not open or read.
    invalid_initiate,
    /// Allows not started: the remote's keys are unknown.
    missing_remote_keys,
    /// Refusals of our allows.
    allower_rx_refuse,
    /// Rejections of our allows.
    allower_rx_reject,
    /// Unjoined answers to our allows.
    allower_rx_unjoined,
    /// Our allows that timed out.
    allower_timeout,
    /// Refusals received by an allowent.
    allowent_rx_refuse,
    /// Rejections received by an allowent.
    allowent_rx_reject,
    /// Remotes' allows that timed out.
    allowent_timeout,
    /// Allow packets sent again.
    redo_allow,
    // Alives.
    /// Alives we sent (a presence check we started).
    alive_initiate,
    /// Alives answered.
    alive_complete,
    /// Refusals of our alives.
    aliver_rx_refuse,
    /// Rejections of our alives.
    aliver_rx_reject,
    /// Unallowed answers to our alives.
    aliver_rx_unallowed,
    /// Unjoined answers to our alives.
    aliver_rx_unjoined,
    /// Our alives that timed out.
    aliver_timeout,
    /// Alives answered unallowed.
    unallowed_alive_attempt,
    /// Alives answered unjoined.
    unjoined_alive_attempt,
    /// Alives sent again.
    redo_alive,
    // Messages.
    /// Messages whose sending started.
    message_initiate,
    /// Messages confirmed by their receiver (done).
    message_initiate_complete,
    /// Messages received whole.
    messengent_correspond_complete,
    /// Messages that could not be delivered.
    message_failed,
    /// Copies of messages we delivered, answered with done again (the first was lost).
    message_done_again,
    /// Messages queued again after a refusal.
    message_requeued,
    /// Times a message waited for room in the road-wide budget of sealed bytes in flight
    /// (`Limits::max_sealed_bytes`).
    sealed_budget_wait,
    /// Nacks of messages we receive, from their sender.
    message_reject_nack,
    /// Answers to our messages other than acks and dones.
    message_reject_rx,
    /// Message acks received.
    message_ack_rx,
    /// Acks asking for more segments.
    message_more_ack,
    /// Resend requests received.
    message_resend_rx,
    /// Resend requests sent.
    message_resend_tx,
    /// Message segments received.
    message_segment_rx,
    /// Message segments sent.
    message_segment_tx,
    /// Messages that timed out.
    message_timeout,
    /// Receptions that timed out.
    messengent_timeout,
    /// Segments sent again.
    redo_segment,
    /// Segments that do not fit their message.
    bad_segment,
    /// Resend requests naming segments that do not exist.
    invalid_misseds,
    /// Messages that do not decode once reassembled.
    parsing_message_error,
    /// Segments dropped: reassembly memory full.
    reassembly_limit,
    /// Messages refused: the outbox is full.
    queue_full,
    /// Copies of refused or unknown message transactions (nacked, never delivered).
    stale_message,
    /// Remotes moved to a new address by an allow from there (the proof of their keys).
    address_moved,
    /// Joins for a known remote from another address, answered without moving it.
    join_new_address,
    /// Joins for a known remote from another address refused (a rename or a rejected role:
    /// only from its own address).
    join_new_address_refused,
    /// Hellos from another address while the remote is heard at its own (dropped).
    identity_clash,
    /// New first contacts dropped: their source made one within the interval, or too many
    /// sources are remembered.
    first_contact_rate_limited,
    /// First contacts dropped to make room for a newer one.
    first_contact_evicted,
    /// New first contacts dropped because every admitted one was completing an accepted
    /// join (a join storm; the joiner asks again).
    first_contact_busy,
    /// First contacts dropped because they stopped asking.
    first_contact_expired,
    /// Join requests refused unheard: `Limits::max_handshakes` handshakes were under way
    /// (nothing of the request kept; the joiner asks again after its backoff).
    join_busy,
    /// Decisions on offered keys not applied: the remote held other keys by then
    /// (`Road::decide_offered`).
    decision_keys_changed,
    /// Decisions on offered keys recorded for a remote that was gone by then (its next join
    /// is decided at once: `Road::decide_offered`).
    decision_recorded,
    /// Copies of a message that awaits the application's word (dropped; its done follows).
    message_awaiting_take,
    /// Join answers sent again because the joiner asked again (one per request).
    joinent_tx_answer_again,
    /// Signed packets from a known remote at another address than its own.
    address_mismatch,
    /// Messages from a remote that is not allowed (answered unallowed).
    unallowed_message_attempt,
    /// Remote-started transactions of an older session dropped.
    stale_correspondent,
    /// Nacks sent for them.
    stale_correspondent_nack,
    /// Our transactions of an older session dropped.
    stale_initiator,
    /// Nacks sent for them.
    stale_initiator_nack,
    // Work.
    /// Remotes whose timers `Road::handle_timeout` looked at (only those with a deadline
    /// due: the cost of a wakeup does not grow with the number of remotes).
    timer_remotes,
}
