//! Salt's log levels (`log_level`, `log_level_logfile`): their names and the `tracing`
//! filter each maps to.

use std::str::FromStr;

/// Salt's log levels (`log_level`), from the most to the least verbose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// `all`
    All,
    /// `garbage`
    Garbage,
    /// `trace`
    Trace,
    /// `debug`
    Debug,
    /// `profile`
    Profile,
    /// `info`
    Info,
    /// `warning` (Salt's default)
    Warning,
    /// `error`
    Error,
    /// `critical`
    Critical,
    /// `quiet`: nothing is logged.
    Quiet,
}

/// The names of [`LogLevel`], in Salt's spelling.
pub const LOG_LEVELS: &str =
    "all, garbage, trace, debug, profile, info, warning, error, critical or quiet";

impl FromStr for LogLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "all" => Self::All,
            "garbage" => Self::Garbage,
            "trace" => Self::Trace,
            "debug" => Self::Debug,
            "profile" => Self::Profile,
            "info" => Self::Info,
            "warning" => Self::Warning,
            "error" => Self::Error,
            "critical" => Self::Critical,
            "quiet" => Self::Quiet,
            _ => return Err(format!("one of {LOG_LEVELS}")),
        })
    }
}

impl LogLevel {
    /// The `tracing` level filter that logs what Salt logs at this level.
    pub fn tracing_filter(self) -> tracing::level_filters::LevelFilter {
        use tracing::level_filters::LevelFilter;
        match self {
            Self::All | Self::Garbage | Self::Trace => LevelFilter::TRACE,
            Self::Debug | Self::Profile => LevelFilter::DEBUG,
            Self::Info => LevelFilter::INFO,
            Self::Warning => LevelFilter::WARN,
            Self::Error | Self::Critical => LevelFilter::ERROR,
            Self::Quiet => LevelFilter::OFF,
        }
    }
}
