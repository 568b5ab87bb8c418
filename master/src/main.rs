//! `salt-raet-master`: the master-side RAET daemon of salt-raet.
//!
//! Reads Salt's master configuration (`-c/--config-dir`, `master` + `master.d/*.conf`).
//! Built so far: configuration loading and validation, `--finger-minion ID`. The daemon mode
//! (road stack, lanes, routing, presence) is not built yet: asked to run, it validates the
//! configuration and exits 1 saying so.

use std::process::ExitCode;

use clap::Parser;
use raet::salt::config::MasterConfig;
use raet::salt::pki::{KeyState, Pki};

const PROGRAM: &str = "salt-raet-master";

/// Carries Salt's traffic over RAET (master side).
#[derive(Debug, Parser)]
#[command(name = PROGRAM, version, about)]
struct Args {
    #[command(flatten)]
    common: raet::salt::CommonArgs,
    /// Print the fingerprint `salt-key -f ID` shows for this minion's stored key, then exit.
    #[arg(long = "finger-minion", value_name = "ID")]
    finger_minion: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match MasterConfig::load(&args.common.config_dir) {
        Ok(config) => config,
        Err(e) => return raet::salt::bad_config(PROGRAM, &e),
    };
    raet::salt::init_console_logging(args.common.log_level.unwrap_or(config.common.log_level));
    match args.finger_minion {
        Some(id) => finger_minion(&config, &id),
        None => raet::salt::daemon_not_built(PROGRAM, &config.common),
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
                return ExitCode::from(raet::salt::EXIT_FAILURE);
            }
        }
    }
    if keys.is_empty() {
        eprintln!(
            "{PROGRAM}: no key for minion {id:?} in {}",
            pki.dir().display()
        );
        return ExitCode::from(raet::salt::EXIT_FAILURE);
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
