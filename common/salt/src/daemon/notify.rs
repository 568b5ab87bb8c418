//! systemd readiness (`Type=notify` units, `sd_notify(3)`): the daemon tells the service
//! manager `READY=1` once its road and lane are bound and its loop answers, and `STOPPING=1`
//! when its shutdown begins. Without `NOTIFY_SOCKET` (not started by systemd) nothing is sent.

use sd_notify::NotifyState;
use tracing::{debug, warn};

/// `READY=1`: the road and the lane are bound and the signal handlers installed.
pub(super) fn ready() {
    send(NotifyState::Ready);
}

/// `STOPPING=1`: the loop ended (SIGTERM or SIGINT, or the road or lane stopped).
pub(super) fn stopping() {
    send(NotifyState::Stopping);
}

/// Tells the service manager `state`; a failure is logged (the daemon runs on regardless).
fn send(state: NotifyState<'_>) {
    let word = state.to_string();
    match sd_notify::notify(&[state]) {
        Ok(()) => debug!(state = %word, "service manager notified"),
        Err(e) => warn!(state = %word, error = %e, "cannot notify the service manager"),
    }
}
