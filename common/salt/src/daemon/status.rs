//! What a daemon says about itself: the typed [`Status`] answered on share `status` of its
//! manor yard (and printed by `salt-raet-master status` / `salt-raet-minion status`, as a
//! table, as JSON or as OpenMetrics), how a command-line client asks for it, and the human table.
//!
//! The JSON form is documented in `docs/operations.md` ("status --json") and versioned by
//! [`STATUS_VERSION`]: a field is only ever added; a removed or retyped one bumps it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::debug;

use super::metrics::openmetrics;
use super::{epoch_secs, run_daemon, DaemonError};
use crate::envelope::{lane_dir, DstEstate, Envelope, LANE, MANOR, SHARE_STATUS};
use raet::lane::{Body, LaneError, LaneStack};

/// The version of the [`Status`] JSON.
pub const STATUS_VERSION: u32 = 1;

/// The version of the daemon (the workspace's), [`Status::daemon_version`].
pub const DAEMON_VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long `status` waits for the daemon's answer.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// A daemon's view of itself and its peers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// [`STATUS_VERSION`] of the daemon that answered.
    pub version: u32,
    /// The daemon's own version ([`DAEMON_VERSION`]; `None`: a daemon older than the field).
    #[serde(default)]
    pub daemon_version: Option<String>,
    /// Its estate name (Salt's `id`).
    pub estate: String,
    /// `master` or `minion`.
    pub role: String,
    /// The road's local address.
    pub road: String,
    /// `raet_salt_crypto`: Salt's own channels run on top.
    pub salt_crypto: bool,
    /// One row per peer (a master's minions, a minion's masters), by id.
    pub remotes: Vec<RemoteRow>,
    /// The routing table's counters.
    pub routing: BTreeMap<String, u64>,
    /// The road's counters.
    pub road_counters: BTreeMap<String, u64>,
    /// The lane's counters.
    pub lane_counters: BTreeMap<String, u64>,
    /// The master's use of Salt's event bus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_bus: Option<Value>,
    /// The minion as a whole: its best join state over its masters (a syndic's master:
    /// its join to the master of masters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<JoinSummary>,
    /// The minion's masters, in configuration order (a syndic's master: its master of
    /// masters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masters: Option<Vec<MasterRow>>,
}

/// One peer in [`Status::remotes`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteRow {
    /// Its id (estate name).
    pub id: String,
    /// Its key's state (`accepted`, `pending`, `rejected`, `denied`; `null`: none known).
    pub acceptance: Option<String>,
    /// Joined on the road.
    pub joined: bool,
    /// Allowed (a session is open).
    pub allowed: bool,
    /// `new`, `present`, `lost` or `unknown`.
    pub presence: String,
    /// When it was last heard from (seconds since the epoch).
    pub last_seen: Option<f64>,
    /// Its road address.
    pub address: Option<String>,
    /// It joined as a main estate (a master): on a master of masters, a syndic; on a
    /// syndic, its master of masters.
    #[serde(default)]
    pub main: bool,
}

impl RemoteRow {
    /// A row for `id` with nothing known yet.
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            acceptance: None,
            joined: false,
            allowed: false,
            presence: "unknown".into(),
            last_seen: None,
            address: None,
            main: false,
        }
    }

    /// The row of `id` in `rows`, added with nothing known yet when missing (one search of
    /// the map: with thousands of rows, cheaper than copying the id only when missing).
    pub fn of<'a>(rows: &'a mut BTreeMap<String, Self>, id: &str) -> &'a mut Self {
        rows.entry(id.to_owned()).or_insert_with(|| Self::new(id))
    }
}

/// The minion's overall join state in [`Status::join`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinSummary {
    /// The best state of any master (`joined`, `pending`, `joining`, `rejected_retrying`, `rejected`).
    pub state: Option<String>,
    /// Join attempts, all masters together.
    pub attempts: u64,
}

/// One of the minion's masters in [`Status::masters`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MasterRow {
    /// The `master` entry (`host:port`).
    pub master: String,
    /// Its resolved address.
    pub address: Option<String>,
    /// Its estate name once joined.
    pub id: Option<String>,
    /// Where its join loop is.
    pub state: String,
    /// Join attempts.
    pub attempts: u64,
    /// Joined on the road.
    pub joined: bool,
    /// Allowed.
    pub allowed: bool,
    /// Presence.
    pub presence: String,
}

/// Hands the yard socket at `path` of a root caller to the owner of its lane directory (a
/// daemon running as Salt's `user`), which could not send to it otherwise.
fn answerable_by_lane_owner(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let dir = std::fs::metadata(path.parent().unwrap_or(path))?;
    if nix::unistd::geteuid().is_root() && dir.uid() != 0 {
        std::os::unix::fs::lchown(path, Some(dir.uid()), Some(dir.gid()))?;
    }
    Ok(())
}

/// Asks the daemon whose lanes are in `sock_dir` for its status (a temporary yard on its
/// lane sends to share `status` of yard [`MANOR`]).
pub async fn query_status(sock_dir: &Path) -> Result<Status, DaemonError> {
    let yard = format!("status{}", std::process::id());
    let lane = LaneStack::bind(lane_dir(sock_dir), LANE, &yard).await?;
    if let Err(e) = answerable_by_lane_owner(lane.path()) {
        debug!(error = %e, "status yard not handed to the lane's owner");
    }
    // Asked packed, the daemon answers packed: a few large pages, read without a JSON tree.
    let request = Envelope {
        src: [None, Some(yard), None],
        dst_estate: DstEstate::Local,
        dst_yard: Some(MANOR.into()),
        dst_share: Some(SHARE_STATUS.into()),
        load: Map::new(),
        salt: None,
    };
    lane.send_packed(MANOR, &request.to_packed())
        .await
        .map_err(|e| match e {
            LaneError::Unreachable { path, source, .. } => DaemonError::NoDaemon { path, source },
            e => DaemonError::Lane(e),
        })?;
    let (_, body) = tokio::time::timeout(STATUS_TIMEOUT, lane.recv_any())
        .await
        .map_err(|_| DaemonError::NoStatus {
            dir: lane_dir(sock_dir),
        })??;
    read_answer(body).map_err(DaemonError::BadStatus)
}

/// The status in the body of the daemon's answer: packed, or JSON from a daemon that answers
/// every status request so.
fn read_answer(body: Body) -> Result<Status, String> {
    /// The answer as read (its route is not looked at).
    #[derive(Deserialize)]
    struct Answer {
        load: Status,
    }
    match body {
        Body::Packed(packed) => rmp_serde::from_slice::<Answer>(&packed)
            .map(|answer| answer.load)
            .map_err(|e| e.to_string()),
        Body::Map(mut body) => {
            let load = body.remove("load").unwrap_or(Value::Null);
            serde_json::from_value(load).map_err(|e| e.to_string())
        }
    }
}

/// The human table of a status (one line per remote).
pub fn status_table(status: &Status) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
    let yes = |b: bool| if b { "yes" } else { "no" }.to_owned();
    const REMOTE_WIDTHS: [usize; 6] = [24, 10, 7, 8, 9, 20];
    const MASTER_WIDTHS: [usize; 6] = [24, 17, 8, 8, 9, 24];
    let mut out = format!("{} {} on {}\n", status.role, status.estate, status.road);
    let names = [
        "ID",
        "ACCEPTANCE",
        "JOINED",
        "ALLOWED",
        "PRESENCE",
        "LAST SEEN",
        "ADDRESS",
    ];
    out.push_str(&table_line(&REMOTE_WIDTHS, &names.map(str::to_owned)));
    for row in &status.remotes {
        let last = match row.last_seen {
            Some(t) => {
                let ago = epoch_secs(SystemTime::now()) - t;
                format!("{:.1}s ago", ago.max(0.0))
            }
            None => "-".to_owned(),
        };
        let cells = [
            row.id.clone(),
            opt(&row.acceptance),
            yes(row.joined),
            yes(row.allowed),
            row.presence.clone(),
            last,
            opt(&row.address),
        ];
        out.push_str(&table_line(&REMOTE_WIDTHS, &cells));
    }
    if let Some(masters) = &status.masters {
        let names = [
            "master", "state", "attempts", "allowed", "presence", "id", "address",
        ]
        .map(str::to_uppercase);
        out.push_str(&table_line(&MASTER_WIDTHS, &names));
        for m in masters {
            let cells = [
                m.master.clone(),
                m.state.clone(),
                m.attempts.to_string(),
                yes(m.allowed),
                m.presence.clone(),
                opt(&m.id),
                opt(&m.address),
            ];
            out.push_str(&table_line(&MASTER_WIDTHS, &cells));
        }
    }
    if let Some(join) = &status.join {
        out.push_str(&format!(
            "join: {} ({} attempts)\n",
            opt(&join.state),
            join.attempts
        ));
    }
    out
}

/// One line of a status table: each cell left-aligned in its width (a space between), the
/// cells past the widths as they are.
fn table_line(widths: &[usize], cells: &[String]) -> String {
    let mut line = String::new();
    for (i, cell) in cells.iter().enumerate() {
        match widths.get(i) {
            Some(&width) => line.push_str(&format!("{cell:<width$} ")),
            None => line.push_str(cell),
        }
    }
    line.push('\n');
    line
}

/// How `status` prints the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFormat {
    /// The human table.
    Text,
    /// One JSON object.
    Json,
    /// The OpenMetrics text exposition.
    Openmetrics,
}

/// The arguments of the `status` subcommand.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// How to print the status.
    #[arg(long, value_enum)]
    format: Option<StatusFormat>,
    /// Print JSON instead of a table (`--format json`).
    #[arg(long, conflicts_with = "format")]
    json: bool,
}

impl StatusArgs {
    /// The format asked for (`--json` is `--format json`; the table by default).
    pub fn format(&self) -> StatusFormat {
        match (self.format, self.json) {
            (Some(format), _) => format,
            (None, true) => StatusFormat::Json,
            (None, false) => StatusFormat::Text,
        }
    }
}

/// The `status` subcommand: asks the daemon whose lane is in `sock_dir` and prints its
/// status in `format`.
pub fn print_status(
    program: &str,
    sock_dir: &Path,
    format: StatusFormat,
) -> std::process::ExitCode {
    let sock_dir = sock_dir.to_owned();
    run_daemon(program, async move {
        let status = query_status(&sock_dir).await?;
        match format {
            StatusFormat::Text => print!("{}", status_table(&status)),
            StatusFormat::Json => {
                let json = serde_json::to_string(&status)
                    .map_err(|e| DaemonError::BadStatus(e.to_string()))?;
                println!("{json}");
            }
            StatusFormat::Openmetrics => print!("{}", openmetrics(&status)),
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use raet::packet::body::{decode_json, encode_json};
    use serde_json::json;

    fn sample() -> Status {
        let mut row = RemoteRow::new("m1");
        row.acceptance = Some("accepted".into());
        row.joined = true;
        row.allowed = true;
        row.presence = "present".into();
        row.address = Some("127.0.0.1:4510".into());
        Status {
            version: STATUS_VERSION,
            daemon_version: Some(DAEMON_VERSION.into()),
            estate: "master".into(),
            role: "master".into(),
            road: "127.0.0.1:4505".into(),
            salt_crypto: false,
            remotes: vec![row, RemoteRow::new("m2")],
            routing: BTreeMap::new(),
            road_counters: BTreeMap::from([("rx_packets".into(), 3)]),
            lane_counters: BTreeMap::new(),
            event_bus: None,
            join: None,
            masters: None,
        }
    }

    /// The answer to `yard` as the daemon encodes it (its `route` and its `load`).
    fn answer(status: &Status, yard: &str) -> (Vec<u8>, Map<String, Value>) {
        let env = Envelope::parse(&json_map(json!({
            "route": {"src": ["master", MANOR, SHARE_STATUS], "dst": [null, yard, SHARE_STATUS]},
            "load": {},
        })))
        .unwrap();
        let bytes = env.encode_with_load(status).unwrap();
        let mut parsed = Envelope::parse(&decode_json(&bytes).unwrap()).unwrap();
        let load = std::mem::take(&mut parsed.load);
        assert_eq!(parsed, env, "the route");
        (bytes, load)
    }

    fn json_map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not a map: {other}"),
        }
    }

    #[test]
    fn the_answer_is_written_as_its_json_tree_would_be() {
        let mut status = sample();
        status.remotes[0].last_seen = Some(1_765_130_000.123_456);
        status.remotes[1].id = "m\u{e9}\"2".into();
        status.event_bus = Some(json!({"fired": 3, "up": true}));
        status.join = Some(JoinSummary {
            state: Some("joined".into()),
            attempts: 2,
        });
        let (bytes, load) = answer(&status, "status42");
        // The body as it was built before: the status as a `Value`, in the envelope's map.
        let mut env = Envelope::parse(&decode_json(&bytes).unwrap()).unwrap();
        env.load = json_map(serde_json::to_value(&status).unwrap());
        assert_eq!(bytes, encode_json(&env.to_body()));
        assert_eq!(load, env.load);
    }

    #[test]
    fn the_client_reads_both_forms_of_the_answer() {
        let mut status = sample();
        status.remotes[0].last_seen = Some(1_765_130_000.123_456);
        status.event_bus = Some(json!({"fired": 3, "up": true, "rate": 0.5}));
        let env = Envelope::parse(&json_map(json!({
            "route": {"src": ["master", MANOR, SHARE_STATUS], "dst": [null, "status42", SHARE_STATUS]},
        })))
        .unwrap();
        let packed = env.to_packed_with_load(&status).unwrap();
        assert_eq!(read_answer(Body::Packed(packed)), Ok(status.clone()));
        let json = decode_json(&env.encode_with_load(&status).unwrap()).unwrap();
        assert_eq!(read_answer(Body::Map(json)), Ok(status));
        assert!(read_answer(Body::Packed(b"\xc1".to_vec())).is_err());
        assert!(read_answer(Body::Map(Map::new())).is_err());
    }

    #[test]
    fn the_json_round_trips_and_leaves_out_the_other_sides_fields() {
        let status = sample();
        let (_, load) = answer(&status, "status42");
        assert_eq!(load["version"], 1);
        assert_eq!(load["remotes"][0]["presence"], "present");
        assert_eq!(load["remotes"][1]["acceptance"], Value::Null);
        assert!(!load.contains_key("masters") && !load.contains_key("join"));
        let back: Status = serde_json::from_value(Value::Object(load.clone())).unwrap();
        assert_eq!(back, status);
        // a daemon older than `daemon_version`
        let mut old = load;
        assert_eq!(old.remove("daemon_version"), Some(json!(DAEMON_VERSION)));
        let back: Status = serde_json::from_value(Value::Object(old)).unwrap();
        assert_eq!(back.daemon_version, None);
    }

    #[test]
    fn a_row_is_added_once() {
        let mut rows = BTreeMap::new();
        RemoteRow::of(&mut rows, "m1").joined = true;
        RemoteRow::of(&mut rows, "m1").allowed = true;
        let mut want = RemoteRow::new("m1");
        (want.joined, want.allowed) = (true, true);
        assert_eq!(rows, BTreeMap::from([("m1".to_owned(), want)]));
    }

    #[test]
    fn the_table_has_a_line_per_remote() {
        let table = status_table(&sample());
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "master master on 127.0.0.1:4505");
        assert!(lines[1].starts_with("ID "), "{table}");
        assert!(lines[2].starts_with("m1 ") && lines[2].contains("accepted"));
        assert!(lines[2].contains(" yes ") && lines[2].ends_with("127.0.0.1:4510"));
        assert!(lines[3].starts_with("m2 ") && lines[3].contains("unknown"));
        assert_eq!(lines.len(), 4);
    }
}
