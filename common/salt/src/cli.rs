//! What both daemons do before and around their loop: exit codes, logging in Salt's formats,
//! running as Salt's `user`, and the command-line options they share.

use std::process::ExitCode;

use crate::config::{self, ConfigError, LogLevel};
use crate::identity::Identity;
use crate::{account, envelope, logfile, logfmt, pki};

/// Exit code of a daemon whose configuration cannot be used (after a one-line message).
pub const EXIT_BAD_CONFIG: u8 = 2;

/// Exit code of a daemon asked for something that failed or is not available.
pub const EXIT_FAILURE: u8 = 1;

/// Sends `tracing` output to standard error at `console_level` in `log_fmt_console` (dates in
/// `log_datefmt`) and, with `to_file`, appends it to `log_file` in `log_fmt_logfile` (dates in
/// `log_datefmt_logfile`) at `log_level_logfile`, or at `console_level` when that is not set
/// (as Salt). Salt also accepts `udp://`, `tcp://` and `file://` URIs in `log_file`: those
/// are not supported and only warned about, as is a log file that cannot be opened. The log
/// file is a [`logfile::WatchedFile`]: created with mode 0640 (as Salt; less if the umask
/// says so), tightened to 0640 here when its permissions are looser (warned about when that
/// fails), and reopened when logrotate moves it away.
pub fn init_logging(common: &config::CommonConfig, console_level: LogLevel, to_file: bool) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;
    let mut problems = Vec::new();
    let path = common.log_file.as_str();
    let file = to_file.then_some(path).and_then(|path| {
        if path.contains("://") {
            problems.push(format!(
                "log_file {path:?}: URIs are not supported; console only"
            ));
            return None;
        }
        match logfile::WatchedFile::open(std::path::Path::new(path)) {
            Ok(file) => {
                if let Err(e) = file.restrict() {
                    problems.push(format!("log_file {path:?}: cannot set mode 0640: {e}"));
                }
                Some(file)
            }
            Err(e) => {
                problems.push(format!("log_file {path:?}: {e}; console only"));
                None
            }
        }
    });
    // The formats were checked when the configuration was read.
    let formatter = |format: &str, datefmt: &str, default: &str| {
        let parsed = logfmt::LogFormat::parse(format, datefmt)
            .or_else(|_| logfmt::LogFormat::parse(default, datefmt));
        parsed.map(logfmt::SaltFormatter::new).ok()
    };
    let console = formatter(
        &common.log_fmt_console,
        &common.log_datefmt,
        logfmt::DEFAULT_CONSOLE,
    )
    .map(|f| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .event_format(f)
            .with_filter(console_level.tracing_filter())
    });
    let file_level = common.log_level_logfile.unwrap_or(console_level);
    let file_format = formatter(
        &common.log_fmt_logfile,
        &common.log_datefmt_logfile,
        logfmt::DEFAULT_LOGFILE,
    );
    let file = file.zip(file_format).map(|(file, f)| {
        tracing_subscriber::fmt::layer()
            .with_writer(file)
            .with_ansi(false)
            .event_format(f)
            .with_filter(file_level.tracing_filter())
    });
    // A second initialisation (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(console)
        .with(file)
        .try_init();
    for problem in problems {
        tracing::warn!("{problem}");
    }
}

/// `--finger`: prints the fingerprint of the daemon's own identity as `salt-key -f` computes
/// it ([`Identity::fingerprint`]): alone, or with `local_key` as salt-key lists the master's
/// own keys (`Local Keys:`, then `<local_key>:  <fingerprint>`); or `<program>: <error>` and
/// [`EXIT_FAILURE`].
pub fn print_finger(
    program: &str,
    identity: Result<Identity, impl std::fmt::Display>,
    local_key: Option<&str>,
) -> ExitCode {
    match identity {
        Ok(identity) => {
            match local_key {
                Some(name) => println!("Local Keys:\n{name}:  {}", identity.fingerprint()),
                None => println!("{}", identity.fingerprint()),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{program}: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Prints `<program>: <error>` (one line) and returns [`EXIT_BAD_CONFIG`].
pub fn bad_config(program: &str, error: &ConfigError) -> ExitCode {
    eprintln!("{program}: {error}");
    ExitCode::from(EXIT_BAD_CONFIG)
}

/// Makes the daemon of `role` run as `user` (see [`account::switch_user`]): as root, hands
/// its directories (`pki_dir`, its RAET keep and, on the master, the four key directories;
/// `cachedir`; `sock_dir` and its lane directory) and `log_file` (created when missing) over
/// to `user` and drops to it. Not root and not `user`: a one-line error and
/// [`EXIT_BAD_CONFIG`], as Salt; a failed switch: [`EXIT_FAILURE`]. Call it before any thread
/// starts and before [`init_logging`] opens `log_file`.
pub fn run_as_user(
    program: &str,
    common: &config::CommonConfig,
    role: config::Role,
) -> Result<(), ExitCode> {
    use account::{OwnedDir, UserError};
    let Some(user) = common.user.as_deref() else {
        return Ok(());
    };
    let private = |path: std::path::PathBuf| OwnedDir { path, mode: 0o700 };
    let shared = |path: std::path::PathBuf| OwnedDir { path, mode: 0o750 };
    let mut dirs = vec![private(common.pki_dir.clone()), private(common.keep_dir())];
    if role == config::Role::Master {
        dirs.extend(
            pki::KeyState::ALL
                .iter()
                .map(|state| private(common.pki_dir.join(state.dir_name()))),
        );
    }
    dirs.extend([
        shared(common.cachedir.clone()),
        shared(common.sock_dir.clone()),
        private(envelope::lane_dir(&common.sock_dir)),
    ]);
    // A URI (`udp://...`) is not a file (see [`init_logging`]).
    let files: Vec<_> = Some(&common.log_file)
        .filter(|path| !path.contains("://"))
        .map(std::path::PathBuf::from)
        .into_iter()
        .collect();
    match account::switch_user(user, common.owner, &dirs, &files) {
        Ok(_) => Ok(()),
        Err(e) => {
            eprintln!("{program}: {e}");
            Err(ExitCode::from(match e {
                UserError::NotRoot { .. } => EXIT_BAD_CONFIG,
                UserError::Prepare { .. } | UserError::Drop { .. } => EXIT_FAILURE,
            }))
        }
    }
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

/// What both daemons do once their configuration is loaded: in daemon mode (no subcommand
/// that only asks or prints something), switch to Salt's `user` ([`run_as_user`]); then set
/// up logging ([`init_logging`]; only the daemon itself writes to `log_file`).
pub fn prepare(
    program: &str,
    common: &config::CommonConfig,
    role: config::Role,
    args: &CommonArgs,
    daemon_mode: bool,
) -> Result<(), ExitCode> {
    if daemon_mode {
        run_as_user(program, common, role)?;
    }
    init_logging(
        common,
        args.log_level.unwrap_or(common.log_level),
        daemon_mode,
    );
    Ok(())
}
