//! Salt on RAET: what `salt-raet-master`, `salt-raet-minion` and the Python extension share.
//!
//! Always built (all the extension links):
//! * [`envelope`]: the route envelope of Salt's messages, its well-known yards and shares, and
//!   where a daemon's lane lives.
//!
//! With feature `daemon` (on by default; the daemons' plumbing):
//! * [`account`]: the `user` key resolved to an account, and dropping privileges to it;
//! * [`config`]: Salt's own config files (`master`/`minion` + `*.d/*.conf`), typed;
//! * [`minion_id`]: the minion id when the configuration has none, chosen as Salt's;
//! * [`pki`]: minion keys in Salt's pki directories as `salt-key` manages them, fingerprints,
//!   scans, change detection and a watcher;
//! * [`logfmt`]: Salt's log formats (`log_fmt_console`, `log_fmt_logfile`) for `tracing`;
//! * [`logfile`]: the `log_file`, reopened after logrotate moved it (as Python's
//!   `WatchedFileHandler`), mode 0640;
//! * [`identity`]: one Ed25519 identity per daemon, the RAET Curve25519 key derived from it;
//! * [`route`]: the routing table between local yards and remote estates (pure decisions);
//! * [`daemon`]: the daemons' decisions as a sans-IO core ([`daemon::DaemonCore`]: peers,
//!   presence, routing, messages held for a master), the loop both daemons run (road, lane,
//!   typed status) and
//!   the [`daemon::Side`] each plugs into it (the master's and the minion's own logic live
//!   in their crates);
//! * [`evbus`]: Salt's master event bus over its Unix sockets (`salt/auth`, `salt/key`, presence);
//! * the items of `cli`: exit codes, logging, running as `user`, shared options.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod envelope;

#[cfg(feature = "daemon")]
pub mod account;
#[cfg(feature = "daemon")]
mod cli;
#[cfg(feature = "daemon")]
pub mod config;
#[cfg(feature = "daemon")]
pub mod daemon;
#[cfg(feature = "daemon")]
pub mod evbus;
#[cfg(feature = "daemon")]
pub mod identity;
#[cfg(feature = "daemon")]
pub mod logfile;
#[cfg(feature = "daemon")]
pub mod logfmt;
#[cfg(feature = "daemon")]
pub mod minion_id;
#[cfg(feature = "daemon")]
pub mod pki;
#[cfg(all(test, feature = "daemon"))]
mod python;
#[cfg(feature = "daemon")]
pub mod route;

#[cfg(feature = "daemon")]
pub use cli::{
    bad_config, init_logging, prepare, print_finger, run_as_user, CommonArgs, EXIT_BAD_CONFIG,
    EXIT_FAILURE,
};
