//! `salt-raet-minion`: the minion-side RAET daemon of salt-raet.
//!
//! Reads Salt's minion configuration (`-c/--config-dir`, `minion` + `minion.d/*.conf`).
//! Without a subcommand it runs the daemon (see `docs/operations.md`; its own logic is in
//! [`daemon`]); `status` asks the running daemon for its masters; `--finger` prints the
//! fingerprint of the minion's identity (created in its RAET keep `<pki_dir>/raet` on first
//! use). Without `id` in the configuration, the id is Salt's ([`salt_raet::minion_id`]); a
//! generated one is cached in Salt's `minion_id` file, as salt-minion does.

use std::process::ExitCode;

mod daemon;
mod pin;

use clap::Parser;
use raet::keep::DirKeep;
use salt_raet::config::{MinionConfig, Role};
use salt_raet::daemon::{print_status, run_daemon, Command};
use salt_raet::identity::{Identity, LocalParams};

const PROGRAM: &str = "salt-raet-minion";

/// Carries Salt's traffic over RAET (minion side).
#[derive(Debug, Parser)]
#[command(name = PROGRAM, version)]
struct Args {
    #[command(flatten)]
    common: salt_raet::CommonArgs,
    /// Print the fingerprint `salt-key -f` shows on the master for this minion's key (creating
    /// the minion's identity if it has none yet), then exit.
    #[arg(long)]
    finger: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match MinionConfig::load(&args.common.config_dir) {
        Ok(config) => config,
        Err(e) => return salt_raet::bad_config(PROGRAM, &e),
    };
    let daemon_mode = args.command.is_none() && !args.finger;
    // As salt-minion, which caches a generated id whenever it reads its configuration
    // (before dropping to `user`); a failure is logged once logging is up, as Salt's.
    let cached = config.cache_id();
    if let Err(code) = salt_raet::prepare(
        PROGRAM,
        &config.common,
        Role::Minion,
        &args.common,
        daemon_mode,
    ) {
        return code;
    }
    if let Err(e) = cached {
        tracing::error!("{e}");
    }
    if !args.finger {
        return match args.command {
            Some(Command::Status(args)) => {
                print_status(PROGRAM, &config.common.sock_dir, args.format())
            }
            None => run_daemon(PROGRAM, daemon::run(config)),
        };
    }
    salt_raet::print_finger(PROGRAM, identity(&config), None)
}

/// The minion's identity from its keep, created as the daemon would on first start.
fn identity(config: &MinionConfig) -> Result<Identity, Box<dyn std::error::Error>> {
    let mut keep = DirKeep::open(config.common.keep_dir())?;
    let params = LocalParams {
        name: &config.id,
        ha: config.road_ha(),
        main: false,
        kind: 0,
    };
    Ok(Identity::load_or_create_locked(
        &mut keep,
        params,
        &mut rand_core::OsRng,
    )?)
}
