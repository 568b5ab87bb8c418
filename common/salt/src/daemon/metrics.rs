//! A daemon's [`Status`] as an OpenMetrics text exposition (`status --format openmetrics`),
//! for a scrape or node_exporter's textfile collector.
//!
//! Every sample carries the daemon's `role` (a master and a minion on one host do not
//! collide); the per-remote gauges add the remote's `id`. The counter maps of the status
//! become one counter family per entry. Only the `counter` and `gauge` types are used (the
//! daemon's info and a remote's presence are gauges of 1 and 0), which node_exporter's
//! textfile collector, a Prometheus text format parser, also reads.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::status::{RemoteRow, Status};

/// The prefix of every metric name.
const PREFIX: &str = "salt_raet";

/// The presence states a remote's `presence` gauge has one sample for each.
const PRESENCES: [&str; 4] = ["new", "present", "lost", "unknown"];

/// A yes/no column of a [`RemoteRow`].
type RowFlag = fn(&RemoteRow) -> bool;

/// The OpenMetrics text exposition of `status`, ending with `# EOF`.
pub fn openmetrics(status: &Status) -> String {
    let mut out = String::new();
    let role = [("role", status.role.as_str())];
    let version = status.daemon_version.as_deref().unwrap_or("unknown");
    family(&mut out, "daemon_info", "gauge", "The daemon (always 1).");
    sample(
        &mut out,
        "daemon_info",
        &[
            ("role", &status.role),
            ("estate", &status.estate),
            ("version", version),
        ],
        1,
    );
    let gauges: [(&str, &str, RowFlag); 2] = [
        ("remote_joined", "Joined on the road (1) or not (0).", |r| {
            r.joined
        }),
        (
            "remote_allowed",
            "Allowed: a session is open (1) or not (0).",
            |r| r.allowed,
        ),
    ];
    for (name, help, value) in gauges {
        family(&mut out, name, "gauge", help);
        for row in &status.remotes {
            let labels = [("role", status.role.as_str()), ("id", &row.id)];
            sample(&mut out, name, &labels, u64::from(value(row)));
        }
    }
    let name = "remote_presence";
    family(
        &mut out,
        name,
        "gauge",
        "1 for the remote's presence state, 0 for the others.",
    );
    for row in &status.remotes {
        for presence in PRESENCES {
            let labels = [
                ("role", status.role.as_str()),
                ("id", &row.id),
                ("presence", presence),
            ];
            sample(&mut out, name, &labels, u64::from(row.presence == presence));
        }
    }
    counters(&mut out, "routing", &status.routing, &role);
    counters(&mut out, "road", &status.road_counters, &role);
    counters(&mut out, "lane", &status.lane_counters, &role);
    out.push_str("# EOF\n");
    out
}

/// One counter family `salt_raet_<group>_<key>` per entry of `map`, its sample `..._total`.
fn counters(out: &mut String, group: &str, map: &BTreeMap<String, u64>, labels: &[(&str, &str)]) {
    for (key, value) in map {
        let name = format!("{group}_{}", metric_name(key));
        family(
            out,
            &name,
            "counter",
            &format!("The {group} counter {key}."),
        );
        sample(out, &format!("{name}_total"), labels, *value);
    }
}

/// The `# TYPE` and `# HELP` lines of family `salt_raet_<name>`.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# TYPE {PREFIX}_{name} {kind}");
    let _ = writeln!(out, "# HELP {PREFIX}_{name} {}", escape(help, false));
}

/// One sample line `salt_raet_<name>{labels} value`.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v, true)))
        .collect();
    let _ = writeln!(out, "{PREFIX}_{name}{{{}}} {value}", labels.join(","));
}

/// `text` escaped for a label value (`\`, `"`, newline) or a help text (`\`, newline).
fn escape(text: &str, quote: bool) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '\n' => escaped.push_str("\\n"),
            '"' if quote => escaped.push_str("\\\""),
            c => escaped.push(c),
        }
    }
    escaped
}

/// A counter's key as a metric name part: anything but `[a-zA-Z0-9_]` becomes `_`.
fn metric_name(key: &str) -> String {
    key.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::status::STATUS_VERSION;

    fn sample_status() -> Status {
        let mut row = RemoteRow::new("m\"1\\x\ny");
        row.joined = true;
        row.presence = "present".into();
        Status {
            version: STATUS_VERSION,
            daemon_version: Some("1.2.3".into()),
            estate: "salt1".into(),
            role: "master".into(),
            road: "127.0.0.1:4505".into(),
            salt_crypto: false,
            remotes: vec![row],
            routing: BTreeMap::from([("registered".into(), 2)]),
            road_counters: BTreeMap::from([
                ("join_role_not_name".into(), 1),
                ("rx.bad-packet".into(), 7),
            ]),
            lane_counters: BTreeMap::from([("received".into(), 5)]),
            event_bus: None,
            join: None,
            masters: None,
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let text = openmetrics(&sample_status());
        assert!(
            text.contains("salt_raet_remote_joined{role=\"master\",id=\"m\\\"1\\\\x\\ny\"} 1\n"),
            "{text}"
        );
        assert!(text.contains(
            "salt_raet_remote_presence{role=\"master\",id=\"m\\\"1\\\\x\\ny\",presence=\"present\"} 1\n"
        ));
        assert!(text.contains(
            "salt_raet_remote_presence{role=\"master\",id=\"m\\\"1\\\\x\\ny\",presence=\"lost\"} 0\n"
        ));
        assert_eq!(escape("a\\b\"c\nd", false), "a\\\\b\"c\\nd");
    }

    #[test]
    fn counters_are_typed_families_with_total_samples() {
        let text = openmetrics(&sample_status());
        for (family, line) in [
            ("road_join_role_not_name", "{role=\"master\"} 1"),
            ("road_rx_bad_packet", "{role=\"master\"} 7"),
            ("routing_registered", "{role=\"master\"} 2"),
            ("lane_received", "{role=\"master\"} 5"),
        ] {
            let family = format!("salt_raet_{family}");
            let typed = format!("# TYPE {family} counter\n");
            let at = text
                .find(&typed)
                .unwrap_or_else(|| panic!("{typed}: {text}"));
            let after = &text[at..];
            assert!(
                after.contains(&format!("\n{family}_total{line}\n")),
                "{text}"
            );
        }
        assert!(text.contains("# TYPE salt_raet_remote_allowed gauge\n"));
        assert!(text.contains(
            "salt_raet_daemon_info{role=\"master\",estate=\"salt1\",version=\"1.2.3\"} 1\n"
        ));
    }

    #[test]
    fn the_exposition_ends_with_eof_and_every_family_is_typed_once() {
        let text = openmetrics(&sample_status());
        assert!(text.ends_with("\n# EOF\n"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1);
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        let unique: std::collections::BTreeSet<&str> = types.iter().copied().collect();
        assert_eq!(types.len(), unique.len(), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split('{').next().unwrap_or_default();
            let family = name.strip_suffix("_total").unwrap_or(name);
            assert!(
                types.iter().any(|t| t.split(' ').nth(2) == Some(family)),
                "{line} has no # TYPE line"
            );
        }
    }
}
