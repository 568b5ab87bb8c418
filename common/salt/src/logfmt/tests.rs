use super::*;

use std::time::Duration;

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
    assert_eq!(
        render(DEFAULT_LOGFILE, DEFAULT_DATEFMT_LOGFILE, &r),
        "2026-11-22 21:30:43,007 [salt_raet.daemon :42  ][INFO    ][123] m"
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
    let t = UNIX_EPOCH + Duration::from_secs(1_795_383_043);
    assert_eq!(
        strftime("%Y-%m-%d %H:%M:%S %y %j %b %a %p %I %% %Q", t),
        "2026-11-22 21:30:43 26 326 Nov Sun PM 09 % %Q"
    );
    assert_eq!(
        strftime("%j %a", UNIX_EPOCH + Duration::from_secs(951_782_400)),
        "060 Tue"
    );
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
