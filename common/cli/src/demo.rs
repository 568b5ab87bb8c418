//! `raet demo`: two road stacks in one process over loopback UDP, joined,
//! exchanging a small and a large message both ways, narrated on stdout.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use raet::keep::{AutoMode, MemKeep};
use raet::road::{Profile, RoadConfig, Uid};
use raet::stack::{RoadStack, StackError};

use crate::{blob, Body, EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT};

/// Options of `raet demo`.
#[derive(Args, Debug, Clone)]
pub(crate) struct DemoArgs {
    /// Size of the large message's blob, in characters.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub big: usize,
    /// Give up after this many seconds (exit 2).
    #[arg(long, value_name = "S", default_value_t = 60)]
    pub timeout: u64,
}

/// Starts a stack named `name` on an ephemeral loopback port, in memory.
pub(crate) async fn start(name: &str, main: bool) -> Result<RoadStack, StackError> {
    start_in(name, main, Profile::Auto).await
}

/// [`start`] in the given protocol profile.
pub(crate) async fn start_in(
    name: &str,
    main: bool,
    profile: Profile,
) -> Result<RoadStack, StackError> {
    let mut config = RoadConfig::new(name, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    config.main = main;
    config.auto = AutoMode::Always;
    config.profile = profile;
    RoadStack::bind(config, None, Box::new(MemKeep::new())).await
}

/// Sends `body` from `from` to its remote `to`; returns the time until the
/// receiver confirmed it complete (done) and the receiver got it.
pub(crate) async fn deliver(
    from: &RoadStack,
    to: Uid,
    receiver: &RoadStack,
    body: Body,
) -> Result<Duration, StackError> {
    let start = Instant::now();
    let (done, got) = tokio::join!(from.transmit(to, body), receiver.recv());
    done?;
    got.ok_or(StackError::Closed)?;
    Ok(start.elapsed())
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn rate(bytes: usize, d: Duration) -> String {
    format!("{:.1} MB/s", bytes as f64 / d.as_secs_f64().max(1e-9) / 1e6)
}

/// Runs `raet demo`; returns the exit status.
pub(crate) async fn run(args: DemoArgs) -> ExitCode {
    match tokio::time::timeout(Duration::from_secs(args.timeout), demo(&args)).await {
        Ok(Ok(())) => ExitCode::from(EXIT_OK),
        Ok(Err(e)) => {
            println!("demo failed: {e}");
            ExitCode::from(EXIT_FAILED)
        }
        Err(_) => {
            println!("demo timed out after {} s", args.timeout);
            ExitCode::from(EXIT_TIMEOUT)
        }
    }
}

async fn demo(args: &DemoArgs) -> Result<(), StackError> {
    let main = start("main", true).await?;
    let minion = start("minion", false).await?;
    println!(
        "main   listening on {} (verify key {}…)",
        main.local_addr(),
        main.verify_key().to_hex().get(..16).unwrap_or_default()
    );
    println!(
        "minion listening on {} (verify key {}…)",
        minion.local_addr(),
        minion.verify_key().to_hex().get(..16).unwrap_or_default()
    );

    let start = Instant::now();
    let main_uid = minion.join(main.local_addr()).await?;
    println!(
        "minion joined main and was allowed in {} (join + allow handshakes, keys auto-accepted)",
        millis(start.elapsed())
    );

    // The main learns the minion's uid from the first message it receives.
    let hello = serde_json::json!({"hello": "from minion"});
    let hello = hello.as_object().cloned().unwrap_or_default();
    let start = Instant::now();
    let (sent, got) = tokio::join!(minion.transmit(main_uid, hello), main.recv());
    sent?;
    let (name, minion_uid, body) = got.ok_or(StackError::Closed)?;
    println!(
        "main   got {} from {name} ({} until done)",
        serde_json::Value::Object(body),
        millis(start.elapsed())
    );

    let reply = serde_json::json!({"hello": "from main"});
    let reply = reply.as_object().cloned().unwrap_or_default();
    let took = deliver(&main, minion_uid, &minion, reply).await?;
    println!("minion got a reply from main ({} until done)", millis(took));

    let start = Instant::now();
    let (sent, echoed) = tokio::join!(minion.transmit(main_uid, Body::new()), async {
        let got = main.recv().await.ok_or(StackError::Closed)?;
        let (sent, echoed) = tokio::join!(main.transmit(minion_uid, got.2), minion.recv());
        sent?;
        echoed.ok_or(StackError::Closed)
    });
    sent?;
    echoed?;
    println!(
        "round trip minion -> main -> minion (empty message, echoed): {}",
        millis(start.elapsed())
    );

    for (label, from, to, receiver) in [
        ("minion -> main", &minion, main_uid, &main),
        ("main -> minion", &main, minion_uid, &minion),
    ] {
        let took = deliver(from, to, receiver, blob(args.big)).await?;
        println!(
            "{label}: a {}-character message (segmented into signed datagrams of <= 1024 bytes) in {} = {}",
            args.big,
            millis(took),
            rate(args.big, took)
        );
    }

    let stats = main.stats().await;
    let interesting: Vec<String> = stats
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!("main's counters: {}", interesting.join(" "));
    main.shutdown().await;
    minion.shutdown().await;
    println!("both stacks shut down cleanly");
    Ok(())
}
