//! Tests of Salt's log formats rendered for `tracing` records.

use super::*;

use std::time::Duration;

use chrono::DateTime;

fn record(message: &str) -> Record<'_> {
    Record {
        time: UNIX_EPOCH + Duration::new(1_795_383_043, 7_000_000),
        level: Level::INFO,
        target: "salt_raet::daemon",
        file: Some("common/salt/src/daemon.rs"),
        line: Some(42),
        message,
        pid: 123,
    }
}

fn render(format: &str, datefmt: &str, r: &Record<'_>) -> String {
    LogFormat::parse(format, datefmt).unwrap().render(r)
}

// Expected lines are what Python's `%` operator prints for the same values.
#[test]
fn salts_default_formats() {
    let mut r = record("hi");
    r.level = Level::WARN;
    assert_eq!(
        render(DEFAULT_CONSOLE, DEFAULT_DATEFMT, &r),
        "[WARNING ] hi"
    );
    r.level = Level::INFO;
    r.message = "m";
    // `asctime` is local time: see `asctime_is_local_time_as_pythons`.
    let asctime = strftime(DEFAULT_DATEFMT_LOGFILE, r.time);
    assert_eq!(
        render(DEFAULT_LOGFILE, DEFAULT_DATEFMT_LOGFILE, &r),
        format!("{asctime},007 [salt_raet.daemon :42  ][INFO    ][123] m")
    );
}

#[test]
fn flags_widths_precision_and_percent() {
    let mut r = record("x");
    r.level = Level::WARN;
    r.target = "x";
    r.pid = 42;
    assert_eq!(
        render(
            "%(process)05d|%(levelname).3s|%(name)20s|%(levelno)d|100%%",
            "",
            &r
        ),
        "00042|WAR|                   x|30|100%"
    );
    assert_eq!(render("%(created).2f", "", &r), "1795383043.01");
    assert_eq!(
        render(
            "%(bracketlevel)s%(colorprocess)s %(module)s:%(lineno)d %(funcName)s.",
            "",
            &r
        ),
        "[WARNING ][   42] daemon:42 ."
    );
}

#[test]
fn level_names_are_salts() {
    let names: Vec<&str> = [
        Level::TRACE,
        Level::DEBUG,
        Level::INFO,
        Level::WARN,
        Level::ERROR,
    ]
    .into_iter()
    .map(level_name)
    .collect();
    assert_eq!(names, ["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"]);
}

#[test]
fn strftime_as_python_in_utc() {
    let at = |secs| DateTime::<chrono::Utc>::from(UNIX_EPOCH + Duration::from_secs(secs));
    assert_eq!(
        strftime_in(
            "%Y-%m-%d %H:%M:%S %y %j %b %a %p %I %z %% %Q %-d %é %",
            &at(1_795_383_043)
        ),
        "2026-11-22 21:30:43 26 326 Nov Sun PM 09 +0000 % %Q 22 %é %"
    );
    assert_eq!(strftime_in("%j %a", &at(951_782_400)), "060 Tue");
}

/// The instant the local-time tests render: 2026-11-22 21:30:43 UTC, a Monday in Tokyo.
const INSTANT: u64 = 1_795_383_043;
/// The date format they render it with (Salt's logfile one, then more directives).
const LOCAL_DATEFMT: &str = "%Y-%m-%d %H:%M:%S %a %j %p %I %z";
/// Marks the line [`asctime_in_a_child`] prints.
const CHILD_LINE: &str = "asctime=";

/// Prints [`INSTANT`] in [`LOCAL_DATEFMT`] in this process's local time; run by
/// [`asctime_is_local_time_as_pythons`] in a child test process with `TZ` set (chrono's
/// `Local` reads `TZ` for the process: the parent's environment is left alone).
#[test]
#[ignore = "run by asctime_is_local_time_as_pythons in a child process with TZ set"]
fn asctime_in_a_child() {
    let time = UNIX_EPOCH + Duration::from_secs(INSTANT);
    println!("{CHILD_LINE}{}", strftime(LOCAL_DATEFMT, time));
}

/// [`INSTANT`] as this test binary renders it with `TZ=tz`.
fn ours_in(tz: &str) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "logfmt::tests::asctime_in_a_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("TZ", tz)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    // The harness may have begun the line with the test's name.
    let line = stdout
        .lines()
        .find_map(|l| l.split_once(CHILD_LINE).map(|(_, asctime)| asctime));
    line.unwrap_or_else(|| panic!("no {CHILD_LINE} line in {stdout}"))
        .to_owned()
}

/// [`INSTANT`] as Python's logging renders it with `TZ=tz`.
fn pythons_in(tz: &str) -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, time; print(time.strftime(sys.argv[1], time.localtime(int(sys.argv[2]))))",
            LOCAL_DATEFMT,
            &INSTANT.to_string(),
        ])
        .env("TZ", tz)
        .output()
        .expect("python3 (Salt's interpreter) is needed for this test");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
}

#[test]
fn asctime_is_local_time_as_pythons() {
    let tokyo = ours_in("Asia/Tokyo");
    let utc = ours_in("UTC");
    assert_eq!(utc, "2026-11-22 21:30:43 Sun 326 PM 09 +0000");
    assert_eq!(tokyo, "2026-11-23 06:30:43 Mon 327 AM 06 +0900");
    assert_eq!(tokyo, pythons_in("Asia/Tokyo"));
    assert_eq!(utc, pythons_in("UTC"));
    // A zone with summer time, in winter.
    assert_eq!(ours_in("America/New_York"), pythons_in("America/New_York"));
}

#[test]
fn bad_formats_say_why() {
    for (bad, why) in [
        ("%(nosuch)s", "unknown key %(nosuch)"),
        ("%(message", "unclosed"),
        ("%(message)", "conversion letter"),
        ("%(message)q", "unsupported conversion %q"),
        ("50% off", "not followed"),
    ] {
        let err = LogFormat::parse(bad, "").unwrap_err();
        assert!(err.contains(why), "{bad}: {err}");
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_format_string_parses_or_errs_without_panicking(fmt in ".{0,40}", msg in ".{0,20}") {
            if let Ok(format) = LogFormat::parse(&fmt, &fmt) {
                let _ = format.render(&record(&msg));
            }
        }

        #[test]
        fn text_without_percent_is_kept(text in "[^%]{0,40}") {
            prop_assert_eq!(render(&text, "", &record("m")), text);
        }
    }
}
