//! `raet lane` run as a process: two yards, bad arguments, timeouts.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use serde_json::{json, Value};

fn raet<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_raet"));
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// `raet lane --name NAME --dir DIR` followed by the whitespace-separated `rest`.
fn yard(name: &str, dir: &Path, rest: &str) -> Vec<String> {
    let dir = dir.to_str().expect("utf-8 temp path");
    ["lane", "--name", name, "--dir", dir]
        .into_iter()
        .chain(rest.split_whitespace())
        .map(str::to_owned)
        .collect()
}

fn spawn(args: &[String]) -> Child {
    raet(args).spawn().expect("spawn raet")
}

fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    raet(args).output().expect("run raet")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The `{"from", "msg"}` lines printed on stdout.
fn received(out: &Output) -> Vec<(String, Value)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("a JSON line");
            let from = v["from"].as_str().expect("from").to_owned();
            (from, v["msg"].clone())
        })
        .collect()
}

/// Messages all from yard `from`.
fn all_from(from: &str, msgs: &[Value]) -> Vec<(String, Value)> {
    msgs.iter().map(|m| (from.to_owned(), m.clone())).collect()
}

#[test]
fn two_yards_exchange_small_and_multi_page_messages() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = spawn(&yard(
        "alpha",
        tmp.path(),
        r#"--to beta --send {"n":1,"é":"ü"} --size 300000 --expect 2 --timeout 20"#,
    ));
    let b = spawn(&yard(
        "beta",
        tmp.path(),
        r#"--lane lane --to alpha --send {"n":2} --size 70000 --expect 2 --timeout 20"#,
    ));
    let (a, b) = (
        a.wait_with_output().expect("alpha"),
        b.wait_with_output().expect("beta"),
    );
    assert_eq!(a.status.code(), Some(0), "alpha: {}", stderr(&a));
    assert_eq!(b.status.code(), Some(0), "beta: {}", stderr(&b));
    let blob = |n: usize| json!({ "blob": "x".repeat(n) });
    let from_alpha = [json!({"n": 1, "é": "ü"}), blob(300_000)];
    assert_eq!(received(&b), all_from("alpha", &from_alpha));
    assert_eq!(
        received(&a),
        all_from("beta", &[json!({"n": 2}), blob(70_000)])
    );
    assert!(
        !tmp.path().join("lane.alpha.uxd").exists(),
        "socket removed at exit"
    );
}

#[test]
fn bad_arguments_exit_3_with_one_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let cases = [
        yard("a", dir, "--to b --send [1]"),
        yard("a", dir, "--to b --send {"),
        yard("a", dir, "--send {}"),
        yard("a", dir, "--size 10"),
        yard("a.b", dir, ""),
        yard("a", dir, "--to x/y --send {}"),
        yard("a", dir, "--lane ../up"),
        yard("a", dir, "--timeout soon"),
        yard("a", dir, "--expect -1"),
        yard("a", dir, "--bogus"),
        vec!["lane".into(), "--name".into(), "a".into()],
        vec!["lane".into(), "--dir".into(), "d".into()],
        vec!["nosuchcommand".into()],
        vec![],
    ];
    for args in &cases {
        let out = run(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    assert_eq!(
        std::fs::read_dir(dir).expect("dir").count(),
        0,
        "nothing bound"
    );
}

#[test]
fn help_and_version_exit_0() {
    let help = run(&["lane", "--help"]);
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    for word in [
        "--name",
        "--dir",
        "--lane",
        "--to",
        "--send",
        "--size",
        "--expect",
        "--timeout",
    ] {
        assert!(text.contains(word), "help lacks {word}");
    }
    assert!(text.contains("Exit status"));
    let version = run(&["--version"]);
    assert_eq!(version.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("raet "));
}

#[test]
fn nothing_received_before_the_timeout_exits_2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = run(&yard("lonely", tmp.path(), "--expect 1 --timeout 0.3"));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(r#""event":"timeout""#));
    // A yard that never appears: the message cannot be sent.
    let out = run(&yard(
        "talker",
        tmp.path(),
        "--to absent --send {} --timeout 0.3",
    ));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_live_yard_name_cannot_be_taken() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let first = spawn(&yard("one", tmp.path(), "--expect 2 --timeout 20"));
    let send = |n: u32| {
        let rest = format!(r#"--to one --send {{"hi":{n}}} --timeout 20"#);
        let out = run(&yard("two", tmp.path(), &rest));
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    };
    // Once a message has reached it, `one` is bound and waits for a second.
    send(1);
    let taken = run(&yard("one", tmp.path(), "--timeout 20"));
    assert_eq!(taken.status.code(), Some(1));
    assert!(stderr(&taken).contains("already listens"));
    send(2);
    let first = first.wait_with_output().expect("first");
    assert_eq!(first.status.code(), Some(0));
    let want = all_from("two", &[json!({"hi": 1}), json!({"hi": 2})]);
    assert_eq!(received(&first), want);
}
