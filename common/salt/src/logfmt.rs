//! Salt's log line formats (`log_fmt_console`, `log_fmt_logfile`, `log_datefmt`,
//! `log_datefmt_logfile`) applied to `tracing` events.
//!
//! A format is Python's `%`-formatting with mapping keys, as Salt's logging uses it:
//! `%(key)[flags][width][.precision]conv` with flags `-` (left-align) and `0` (zero-pad),
//! conversions `s`, `r`, `d`, `i`, and `%%` for a percent sign. Keys: `asctime` (the date
//! format applied to the event's time in local time, see [`strftime`]), `msecs`, `created`, `levelname` (Salt's
//! names: `TRACE`, `DEBUG`, `INFO`, `WARNING`, `ERROR`), `levelno`, `name` (the `tracing`
//! target with `::` as `.`, e.g. `salt_raet.daemon`), `module`, `filename`, `pathname`,
//! `lineno`, `funcName` (empty), `process`, `processName` (`MainProcess`), `message` (the
//! event's message, then its fields as ` key=value`), and Salt's own `bracketlevel`,
//! `bracketname`, `bracketprocess` and their `color*` forms (written without colours).
//! Another key is a configuration error. The date formats take chrono's `strftime` directives
//! (those of C's `strftime`: `%Y %m %d %H %M %S %y %j %b %a %p %I %z %%` ...; `%Z` is the
//! offset, as chrono knows no zone abbreviations); unknown directives are kept as written.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Local, TimeZone};

use tracing::Level;

/// Salt's default `log_fmt_console`.
pub const DEFAULT_CONSOLE: &str = "[%(levelname)-8s] %(message)s";
/// Salt's default `log_fmt_logfile`.
pub const DEFAULT_LOGFILE: &str =
    "%(asctime)s,%(msecs)03d [%(name)-17s:%(lineno)-4d][%(levelname)-8s][%(process)d] %(message)s";
/// Salt's default `log_datefmt` (console).
pub const DEFAULT_DATEFMT: &str = "%H:%M:%S";
/// Salt's default `log_datefmt_logfile`.
pub const DEFAULT_DATEFMT_LOGFILE: &str = "%Y-%m-%d %H:%M:%S";

/// The record keys a format may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Asctime,
    Msecs,
    Created,
    Levelname,
    Levelno,
    Name,
    Module,
    Filename,
    Pathname,
    Lineno,
    FuncName,
    Process,
    ProcessName,
    Message,
    BracketLevel,
    BracketName,
    BracketProcess,
}

impl Key {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "asctime" => Self::Asctime,
            "msecs" => Self::Msecs,
            "created" => Self::Created,
            "levelname" => Self::Levelname,
            "levelno" => Self::Levelno,
            "name" => Self::Name,
            "module" => Self::Module,
            "filename" => Self::Filename,
            "pathname" => Self::Pathname,
            "lineno" => Self::Lineno,
            "funcName" => Self::FuncName,
            "process" => Self::Process,
            "processName" => Self::ProcessName,
            "message" => Self::Message,
            "bracketlevel" | "colorlevel" => Self::BracketLevel,
            "bracketname" | "colorname" => Self::BracketName,
            "bracketprocess" | "colorprocess" => Self::BracketProcess,
            "colormsg" => Self::Message,
            _ => return None,
        })
    }
}

/// One `%(key)...` conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    key: Key,
    left: bool,
    zero: bool,
    width: usize,
    precision: Option<usize>,
    numeric: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(Spec),
}

/// A value of a record key.
enum Field {
    Text(String),
    Int(i64),
    Float(f64),
}

/// What a log line is made of.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// When the event happened.
    pub time: SystemTime,
    /// Its level.
    pub level: Level,
    /// Its `tracing` target (module path).
    pub target: &'a str,
    /// Its source file, if known.
    pub file: Option<&'a str>,
    /// Its source line, if known.
    pub line: Option<u32>,
    /// The message with its fields.
    pub message: &'a str,
    /// The process id.
    pub pid: u32,
}

/// Salt's name of a `tracing` level.
pub fn level_name(level: Level) -> &'static str {
    match level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARNING",
        Level::ERROR => "ERROR",
    }
}

/// Python's `levelno` of a level (Salt's `TRACE` is 5).
fn level_number(level: Level) -> i64 {
    match level {
        Level::TRACE => 5,
        Level::DEBUG => 10,
        Level::INFO => 20,
        Level::WARN => 30,
        Level::ERROR => 40,
    }
}

/// A parsed log format with its date format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFormat {
    parts: Vec<Part>,
    datefmt: String,
}

impl LogFormat {
    /// Parses `format` (see the module documentation); `datefmt` is used for `asctime`.
    /// The error says what is wrong, for a configuration message.
    pub fn parse(format: &str, datefmt: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = format;
        while let Some(at) = rest.find('%') {
            text.push_str(rest.get(..at).unwrap_or_default());
            let after = rest.get(at + 1..).unwrap_or_default();
            if let Some(tail) = after.strip_prefix('%') {
                text.push('%');
                rest = tail;
                continue;
            }
            let Some(inner) = after.strip_prefix('(') else {
                return Err("a % not followed by (key) or %".into());
            };
            let close = inner.find(')').ok_or("an unclosed %(")?;
            let name = inner.get(..close).unwrap_or_default();
            let key = Key::parse(name).ok_or_else(|| format!("an unknown key %({name})"))?;
            let (spec, tail) = parse_spec(key, inner.get(close + 1..).unwrap_or_default())?;
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(Part::Field(spec));
            rest = tail;
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Self {
            parts,
            datefmt: datefmt.to_owned(),
        })
    }

    /// The line for `record` (without a newline).
    pub fn render(&self, record: &Record<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Field(spec) => pad(&mut out, spec, self.value(spec.key, record)),
            }
        }
        out
    }

    fn value(&self, key: Key, r: &Record<'_>) -> Field {
        let since = r.time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let file = r.file.unwrap_or_default();
        let filename = file.rsplit('/').next().unwrap_or_default();
        match key {
            Key::Asctime => Field::Text(strftime(&self.datefmt, r.time)),
            Key::Msecs => Field::Int(i64::from(since.subsec_millis())),
            Key::Created => Field::Float(since.as_secs_f64()),
            Key::Levelname => Field::Text(level_name(r.level).into()),
            Key::Levelno => Field::Int(level_number(r.level)),
            Key::Name => Field::Text(r.target.replace("::", ".")),
            Key::Module => Field::Text(filename.trim_end_matches(".rs").into()),
            Key::Filename => Field::Text(filename.into()),
            Key::Pathname => Field::Text(file.into()),
            Key::Lineno => Field::Int(r.line.map_or(0, i64::from)),
            Key::FuncName => Field::Text(String::new()),
            Key::Process => Field::Int(i64::from(r.pid)),
            Key::ProcessName => Field::Text("MainProcess".into()),
            Key::Message => Field::Text(r.message.into()),
            Key::BracketLevel => Field::Text(format!("[{:<8}]", level_name(r.level))),
            Key::BracketName => Field::Text(format!("[{:<17}]", r.target.replace("::", "."))),
            Key::BracketProcess => Field::Text(format!("[{:>5}]", r.pid)),
        }
    }
}

/// The flags, width, precision and conversion after `%(key)`; returns the rest.
fn parse_spec(key: Key, s: &str) -> Result<(Spec, &str), String> {
    let mut spec = Spec {
        key,
        left: false,
        zero: false,
        width: 0,
        precision: None,
        numeric: false,
    };
    let mut chars = s.char_indices().peekable();
    while let Some(&(_, c)) = chars.peek() {
        match c {
            '-' => spec.left = true,
            '0' => spec.zero = true,
            ' ' | '+' | '#' => {}
            _ => break,
        }
        chars.next();
    }
    let number = |chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>| {
        let mut n: usize = 0;
        while let Some(&(_, c)) = chars.peek() {
            let Some(d) = c.to_digit(10) else { break };
            n = n.saturating_mul(10).saturating_add(d as usize).min(1000);
            chars.next();
        }
        n
    };
    spec.width = number(&mut chars);
    if chars.peek().is_some_and(|&(_, c)| c == '.') {
        chars.next();
        spec.precision = Some(number(&mut chars));
    }
    let (at, conv) = chars.next().ok_or("a %(key) without a conversion letter")?;
    spec.numeric = match conv {
        's' | 'r' => false,
        'd' | 'i' | 'f' => true,
        other => return Err(format!("an unsupported conversion %{other}")),
    };
    Ok((spec, s.get(at + conv.len_utf8()..).unwrap_or_default()))
}

/// Appends `value` formatted by `spec` (Python's `%` rules for what we support).
fn pad(out: &mut String, spec: &Spec, value: Field) {
    let text = match (value, spec.numeric) {
        (Field::Int(n), _) => n.to_string(),
        (Field::Float(f), true) => format!("{:.*}", spec.precision.unwrap_or(6), f),
        (Field::Float(f), false) => f.to_string(),
        (Field::Text(s), _) => match spec.precision {
            Some(p) if !spec.numeric => s.chars().take(p).collect(),
            _ => s,
        },
    };
    let len = text.chars().count();
    let fill = spec.width.saturating_sub(len);
    if spec.left {
        out.push_str(&text);
        out.extend(std::iter::repeat_n(' ', fill));
    } else if spec.zero && spec.numeric {
        let (sign, digits) = match text.strip_prefix('-') {
            Some(d) => ("-", d),
            None => ("", text.as_str()),
        };
        out.push_str(sign);
        out.extend(std::iter::repeat_n('0', fill));
        out.push_str(digits);
    } else {
        out.extend(std::iter::repeat_n(' ', fill));
        out.push_str(&text);
    }
}

/// Python's `logging.Formatter.formatTime`: `time.strftime(datefmt, time.localtime(t))`, in
/// the local time zone (`TZ`, else `/etc/localtime`), as salt-master writes the same log file.
pub fn strftime(datefmt: &str, time: SystemTime) -> String {
    strftime_in(datefmt, &DateTime::<Local>::from(time))
}

/// `datefmt` applied to `time` in its zone: each `%` directive (with an optional `-`, `_` or
/// `0` padding flag) that chrono's `strftime` knows is formatted by it; any other `%...` is
/// kept as written, as glibc's `strftime` (Python's) does.
fn strftime_in<Tz: TimeZone>(datefmt: &str, time: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let mut out = String::new();
    let mut rest = datefmt;
    while let Some(at) = rest.find('%') {
        out.push_str(rest.get(..at).unwrap_or_default());
        let directive = rest.get(at..).unwrap_or_default();
        let mut after = directive.char_indices().skip(1);
        let next = match after.next() {
            Some((_, '-' | '_' | '0')) => after.next(),
            other => other,
        };
        let end = next.map_or(directive.len(), |(i, c)| i + c.len_utf8());
        let spec = directive.get(..end).unwrap_or_default();
        if StrftimeItems::new(spec).any(|item| item == Item::Error) {
            out.push_str(spec);
        } else {
            let _ = write!(out, "{}", time.format(spec));
        }
        rest = directive.get(end..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

/// Collects an event's message and fields: `message key=value ...`.
#[derive(Default)]
struct MessageVisitor {
    message: String,
    fields: String,
}

impl tracing::field::Visit for MessageVisitor {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

/// A `tracing_subscriber` event formatter writing Salt's format.
#[derive(Debug, Clone)]
pub struct SaltFormatter {
    format: LogFormat,
    pid: u32,
}

impl SaltFormatter {
    /// A formatter of `format`.
    pub fn new(format: LogFormat) -> Self {
        Self {
            format,
            pid: std::process::id(),
        }
    }
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for SaltFormatter
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut visitor = MessageVisitor::default();
        event.record(&mut visitor);
        let message = visitor.message + &visitor.fields;
        let meta = event.metadata();
        let record = Record {
            time: SystemTime::now(),
            level: *meta.level(),
            target: meta.target(),
            file: meta.file(),
            line: meta.line(),
            message: &message,
            pid: self.pid,
        };
        writeln!(writer, "{}", self.format.render(&record))
    }
}

#[cfg(test)]
mod tests;
