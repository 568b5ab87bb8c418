//! `salt-raet-minion`: the minion-side RAET daemon of salt-raet.
//!
//! Reads Salt's minion configuration (`-c/--config-dir`, `minion` + `minion.d/*.conf`).
//! Built so far: configuration loading and validation, the minion's identity (created in its
//! RAET keep `<pki_dir>/raet` on first use) and `--finger`. Without a subcommand it runs the
//! daemon (see `docs/operations.md`); `status` asks the running daemon for its master.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use raet::keep::DirKeep;
use salt_raet::config::{MinionConfig, Role};
use salt_raet::daemon::{self, Command};
use salt_raet::identity::{Identity, LocalParams};

const PROGRAM: &str = "salt-raet-minion";

/// Carries Salt's traffic over RAET (minion side).
#[derive(Debug, Parser)]
#[command(name = PROGRAM, version, about)]
struct Args {
    #[command(flatten)]
    common: salt_raet::CommonArgs,
    /// Print the fingerprint `salt-key -f` shows on the master for this minion's key (creating
    /// the minion's identity if it has none yet), then exit.
    #[arg(long)]
    finger: bool,
    #[command(subcommand)]
    command: Option<salt_raet::daemon::Command>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match MinionConfig::load(&args.common.config_dir) {
        Ok(config) => config,
        Err(e) => return salt_raet::bad_config(PROGRAM, &e),
    };
    // Only the daemon itself writes to `log_file`.
    let daemon_mode = args.command.is_none() && !args.finger;
    if daemon_mode {
        if let Err(code) = salt_raet::run_as_user(PROGRAM, &config.common, Role::Minion) {
            return code;
        }
    }
    salt_raet::init_logging(
        &config.common,
        args.common.log_level.unwrap_or(config.common.log_level),
        daemon_mode,
    );
    if !args.finger {
        return match args.command {
            Some(Command::Status { json }) => {
                daemon::print_status(PROGRAM, &config.common.sock_dir, json)
            }
            None => daemon::run_daemon(PROGRAM, daemon::run_minion(config)),
        };
    }
    match identity(&config) {
        Ok(identity) => {
            println!("{}", identity.fingerprint());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{PROGRAM}: {e}");
            ExitCode::from(salt_raet::EXIT_FAILURE)
        }
    }
}

/// The minion's identity from its keep, created as the daemon would on first start.
fn identity(config: &MinionConfig) -> Result<Identity, Box<dyn std::error::Error>> {
    let mut keep = DirKeep::open(config.common.keep_dir())?;
    let params = LocalParams {
        name: &config.id,
        ha: SocketAddr::from(([0, 0, 0, 0], config.common.raet_port)),
        main: false,
        kind: 0,
    };
    Ok(Identity::load_or_create(
        &mut keep,
        params,
        &mut rand_core::OsRng,
    )?)
}
