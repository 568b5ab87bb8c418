//! `raet lane`: a netcat for a RAET lane, on a [`LaneStack`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clap::Args;
use raet::lane::{check_lane_name, check_yard_name, LaneError, LaneStack, DEFAULT_LANE};
use serde_json::json;

use crate::{
    bad_args, print_event, print_message, Body, Traffic, EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT,
};

/// Pause before sending again to a yard whose socket does not exist yet.
const RETRY: Duration = Duration::from_millis(10);

/// Options of `raet lane`.
#[derive(Args, Debug, Clone)]
#[command(after_help = "\
Every received message is printed on stdout as one JSON line {\"from\": YARD, \"msg\": {...}}.
Messages are sent once the socket DIR/LANE.YARD.uxd of --to accepts them (a lane has no acks).
Event lines go to stderr (RUST_LOG=debug for logs).
Exit status: 0 once --expect messages are received and every own message is sent; 1 on a
failure (socket error); 2 when --timeout elapses first; 3 on bad arguments.")]
pub(crate) struct LaneArgs {
    /// Name of the local yard.
    #[arg(long)]
    pub name: String,
    /// Directory of the lane's sockets (created if missing).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Lane name: the yard's socket is DIR/LANE.NAME.uxd.
    #[arg(long, default_value = DEFAULT_LANE)]
    pub lane: String,
    /// Yard to send the messages to.
    #[arg(long, value_name = "YARD")]
    pub to: Option<String>,
    #[command(flatten)]
    pub traffic: Traffic,
}

/// Runs `raet lane`.
pub(crate) async fn run(args: LaneArgs) -> ExitCode {
    let outgoing = args.traffic.messages();
    let checked = check_yard_name(&args.name)
        .and_then(|()| check_lane_name(&args.lane))
        .and_then(|()| args.to.as_deref().map_or(Ok(()), check_yard_name));
    if let Err(e) = checked {
        return bad_args(&e.to_string());
    }
    let to = match (args.to.as_deref(), outgoing.is_empty()) {
        (Some(to), _) => to,
        (None, true) => "",
        (None, false) => return bad_args("--send/--size need --to YARD"),
    };
    let deadline = tokio::time::Instant::now() + args.traffic.timeout;
    let stack = match LaneStack::bind(&args.dir, &args.lane, &args.name).await {
        Ok(stack) => stack,
        Err(e) => {
            print_event("error", json!({"error": e.to_string()}));
            return ExitCode::from(EXIT_FAILED);
        }
    };
    print_event(
        "listening",
        json!({"name": args.name, "path": stack.path()}),
    );
    let received = AtomicUsize::new(0);
    let sending = async {
        for body in &outgoing {
            send_when_reachable(&stack, to, body).await?;
        }
        if !outgoing.is_empty() {
            print_event("sent", json!({"count": outgoing.len(), "to": to}));
        }
        Ok::<(), LaneError>(())
    };
    let receiving = async {
        while received.load(Ordering::Relaxed) < args.traffic.expect {
            let (from, msg) = stack.recv().await?;
            print_message(&from, msg);
            received.fetch_add(1, Ordering::Relaxed);
        }
        Ok::<(), LaneError>(())
    };
    let outcome =
        tokio::time::timeout_at(deadline, async { tokio::try_join!(sending, receiving) }).await;
    let received = received.load(Ordering::Relaxed);
    match outcome {
        Ok(Ok(_)) => {
            print_event(
                "done",
                json!({"received": received, "sent": outgoing.len()}),
            );
            ExitCode::from(EXIT_OK)
        }
        Ok(Err(e)) => {
            print_event("error", json!({"error": e.to_string()}));
            ExitCode::from(EXIT_FAILED)
        }
        Err(_) => {
            print_event(
                "timeout",
                json!({"received": received, "expected": args.traffic.expect, "stats": stack.stats()}),
            );
            ExitCode::from(EXIT_TIMEOUT)
        }
    }
}

/// Sends `body` to `to`, waiting (until the caller's deadline) for its socket
/// to appear; other errors are returned.
async fn send_when_reachable(stack: &LaneStack, to: &str, body: &Body) -> Result<(), LaneError> {
    loop {
        match stack.send(to, body).await {
            Err(LaneError::Unreachable { .. }) => tokio::time::sleep(RETRY).await,
            other => return other,
        }
    }
}
