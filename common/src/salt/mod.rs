//! Salt integration shared by `salt-raet-master` and `salt-raet-minion` (feature `salt`).
//!
//! * [`account`]: the `user` key resolved to an account;
//! * [`config`]: Salt's own config files (`master`/`minion` + `*.d/*.conf`), typed;
//! * [`pki`]: minion keys in Salt's pki directories as `salt-key` manages them, fingerprints,
//!   scans, change detection and a watcher;
//! * [`identity`]: one Ed25519 identity per daemon, the RAET Curve25519 key derived from it;
//! * [`acceptance`]: Salt's key acceptance rules (`open_mode`, `auto_accept`, autosign and
//!   autoreject files) as a decision for a joining minion;
//! * [`route`]: the routing table between local yards and remote estates (pure decisions);
//! * [`daemon`]: the run loop of both daemons (road, lane, routing, presence, status);
//! * [`evbus`]: Salt's master event bus over its Unix sockets (`salt/auth`, `salt/key`, presence).
//!
//! The protocol library itself does not depend on this module: it is compiled only with the
//! `salt` feature, which pulls in `config`, `notify`, `sha2` and `regex`.

pub mod acceptance;
pub mod account;
pub mod config;
pub mod daemon;
pub mod evbus;
pub mod identity;
pub mod pki;
pub mod route;

use std::process::ExitCode;

use config::{ConfigError, LogLevel};

/// Exit code of a daemon whose configuration cannot be used (after a one-line message).
pub const EXIT_BAD_CONFIG: u8 = 2;

/// Exit code of a daemon asked for something that failed or is not available.
pub const EXIT_FAILURE: u8 = 1;

/// Sends `tracing` output at `level` to standard error (Salt's console logging; Salt's
/// `log_fmt_console` is not applied).
pub fn init_console_logging(level: LogLevel) {
    init_logging(level, None);
}

/// As [`init_console_logging`], and also appends to `log_file` when it is a path (Salt also
/// accepts `udp://`, `tcp://` and `file://` URIs there: those are not supported and only
/// warned about). A log file that cannot be opened is warned about on the console.
pub fn init_logging(level: LogLevel, log_file: Option<&str>) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let mut problem = None;
    let file = log_file.and_then(|path| {
        if path.contains("://") {
            problem = Some(format!(
                "log_file {path:?}: URIs are not supported; console only"
            ));
            return None;
        }
        let opened = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        match opened {
            Ok(file) => Some(file),
            Err(e) => {
                problem = Some(format!("log_file {path:?}: {e}; console only"));
                None
            }
        }
    });
    let console = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    let file = file.map(|file| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::sync::Mutex::new(file))
            .with_ansi(false)
            .with_target(false)
    });
    // A second initialisation (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(level.tracing_filter())
        .with(console)
        .with(file)
        .try_init();
    if let Some(problem) = problem {
        tracing::warn!("{problem}");
    }
}

/// Prints `<program>: <error>` (one line) and returns [`EXIT_BAD_CONFIG`].
pub fn bad_config(program: &str, error: &ConfigError) -> ExitCode {
    eprintln!("{program}: {error}");
    ExitCode::from(EXIT_BAD_CONFIG)
}

/// The command-line options both daemons take (flattened into their own).
#[derive(Debug, clap::Args)]
pub struct CommonArgs {
    /// Salt's configuration directory (reads `master` or `minion` and its `.d/*.conf`).
    #[arg(short = 'c', long = "config-dir", value_name = "DIR", default_value = config::DEFAULT_CONFIG_DIR)]
    pub config_dir: std::path::PathBuf,
    /// Console log level (overrides `log_level`): all, garbage, trace, debug, profile, info,
    /// warning, error, critical, quiet.
    #[arg(short = 'l', long = "log-level", value_name = "LEVEL")]
    pub log_level: Option<LogLevel>,
}
