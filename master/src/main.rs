//! `salt-raet-master`: the master-side RAET daemon of salt-raet.
//!
//! Reads Salt's master configuration (`-c/--config-dir`, `master` + `master.d/*.conf`).
//! Without a subcommand it runs the daemon (see `docs/operations.md`); `status` asks the
//! running daemon for its minions; `--finger` prints the fingerprint of the master's own
//! identity (created in its RAET keep `<pki_dir>/raet` on first use); `--finger-minion ID`
//! prints a stored key's fingerprint.

use std::process::ExitCode;

mod acceptance;
mod daemon;
mod decider;
mod upstream_pin;

use clap::Parser;
use raet::keep::DirKeep;
use salt_raet::config::{MasterConfig, Role};
use salt_raet::daemon::{print_status, run_daemon, Command};
use salt_raet::identity::IdentityError;
use salt_raet::pki::{KeyState, Pki};

const PROGRAM: &str = "salt-raet-master";
/// The name `--finger` gives the master's road key in salt-key's `Local Keys:` form: where it
/// lives under `pki_dir` (its RAET keep `<pki_dir>/raet`), as salt-key names `master.pub`.
const FINGER_KEY_NAME: &str = "raet";

/// Carries Salt's traffic over RAET (master side).
#[derive(Debug, Parser)]
#[command(name = PROGRAM, version)]
struct Args {
    #[command(flatten)]
    common: salt_raet::CommonArgs,
    /// Print the fingerprint of the master's own road key (creating the master's identity if
    /// it has none yet) as `salt-key -F master` lists local keys (`Local Keys:`, then
    /// `raet:  <fingerprint>`), then exit: the value of a minion's `master_finger`.
    #[arg(long, conflicts_with = "finger_minion")]
    finger: bool,
    /// Print the fingerprint `salt-key -f ID` shows for this minion's stored key, then exit.
    #[arg(long = "finger-minion", value_name = "ID")]
    finger_minion: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match MasterConfig::load(&args.common.config_dir) {
        Ok(config) => config,
        Err(e) => return salt_raet::bad_config(PROGRAM, &e),
    };
    let daemon_mode = args.command.is_none() && args.finger_minion.is_none() && !args.finger;
    if let Err(code) = salt_raet::prepare(
        PROGRAM,
        &config.common,
        Role::Master,
        &args.common,
        daemon_mode,
    ) {
        return code;
    }
    if args.finger {
        let identity = DirKeep::open(config.common.keep_dir())
            .map_err(IdentityError::from)
            .and_then(|mut keep| daemon::identity(&config, &mut keep));
        return salt_raet::print_finger(PROGRAM, identity, Some(FINGER_KEY_NAME));
    }
    match (args.finger_minion, args.command) {
        (Some(id), _) => finger_minion(&config, &id),
        (None, Some(Command::Status(args))) => {
            print_status(PROGRAM, &config.common.sock_dir, args.format())
        }
        (None, None) => run_daemon(PROGRAM, daemon::run(config)),
    }
}

/// Prints the minion's key fingerprints as `salt-key -f` does: a heading per state, then
/// `<id>:  <fingerprint>`.
fn finger_minion(config: &MasterConfig, id: &str) -> ExitCode {
    let pki = Pki::existing(&config.common.pki_dir);
    let lookups = [pki.lookup(id), pki.denied(id)];
    let mut keys = Vec::new();
    for lookup in lookups {
        match lookup {
            Ok(key) => keys.extend(key),
            Err(e) => {
                eprintln!("{PROGRAM}: {e}");
                return ExitCode::from(salt_raet::EXIT_FAILURE);
            }
        }
    }
    if keys.is_empty() {
        eprintln!(
            "{PROGRAM}: no key for minion {id:?} in {}",
            pki.dir().display()
        );
        return ExitCode::from(salt_raet::EXIT_FAILURE);
    }
    for state in KeyState::ALL {
        for key in keys.iter().filter(|k| k.state == state) {
            println!("{}:", heading(state));
            println!("{id}:  {}", key.fingerprint());
        }
    }
    ExitCode::SUCCESS
}

/// salt-key's heading of a state.
fn heading(state: KeyState) -> &'static str {
    match state {
        KeyState::Accepted => "Accepted Keys",
        KeyState::Denied => "Denied Keys",
        KeyState::Pending => "Unaccepted Keys",
        KeyState::Rejected => "Rejected Keys",
    }
}
