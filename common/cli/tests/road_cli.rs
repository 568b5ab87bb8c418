//! The `raet road` command: two processes over loopback UDP, exit statuses.
//! Every process binds port 0 (the kernel picks a free port; a process others
//! join tells its port in its `listening` event). A fixed port in the ephemeral
//! range can be held by any other socket of the machine, and the road binds
//! fixed ports with SO_REUSEADDR, as the reference does: it would then share
//! the port silently. Only a restart reuses the ports of the first run. Every
//! process is bounded by its own `--timeout`.

use std::process::{Child, Command, Output, Stdio};

use serde_json::{json, Value};

fn raet(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_raet"));
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Arguments from a line (no quoting: for arguments without spaces).
fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

fn spawn(args: &[&str]) -> Child {
    raet(args).spawn().expect("spawn raet")
}

fn finish(child: Child) -> Output {
    child.wait_with_output().expect("wait for raet")
}

/// The `{"from": .., "msg": ..}` lines a process printed.
fn messages(output: &Output) -> Vec<(String, Value)> {
    messages_in(&String::from_utf8_lossy(&output.stdout))
}

/// The `{"from": .., "msg": ..}` lines of `text`.
fn messages_in(text: &str) -> Vec<(String, Value)> {
    text.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            let from = v["from"].as_str().expect("from is a string").to_owned();
            (from, v["msg"].clone())
        })
        .collect()
}

fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A joins main B; each sends a small and a 200 KB message and expects the other's two.
fn exchange(hk_a: &str, hk_b: &str) {
    let (beta, port_b, beta_stderr) = spawn_listening(
        &[
            "road",
            "--name",
            "beta",
            "--port",
            "0",
            "--main",
            "--hk",
            hk_b,
            "--expect",
            "2",
            "--send",
            r#"{"greeting":"hi alpha"}"#,
            "--size",
            "200000",
            "--timeout",
            "30",
            "--events",
        ],
        &[],
    );
    let join = format!("127.0.0.1:{port_b}");
    // Beta's stdout is read while alpha runs (a 200 KB line is more than a pipe holds).
    let beta = std::thread::spawn(move || finish(beta));
    let alpha = spawn(&[
        "road",
        "--name",
        "alpha",
        "--port",
        "0",
        "--join",
        &join,
        "--hk",
        hk_a,
        "--expect",
        "2",
        "--send",
        r#"{"greeting":"hi beta"}"#,
        "--size",
        "200000",
        "--timeout",
        "30",
    ]);
    let alpha = finish(alpha);
    let beta = beta.join().expect("beta's output");
    let beta_stderr = beta_stderr.join().expect("beta's stderr");
    assert_eq!(alpha.status.code(), Some(0), "alpha: {}", describe(&alpha));
    assert_eq!(beta.status.code(), Some(0), "beta: {beta_stderr}");
    let blob = json!({"blob": "x".repeat(200_000)});
    for (output, peer, greeting) in [(&alpha, "beta", "hi alpha"), (&beta, "alpha", "hi beta")] {
        let mut got = messages(output);
        got.sort_by_key(|(_, msg)| msg.to_string().len());
        assert_eq!(
            got,
            vec![
                (peer.to_owned(), json!({ "greeting": greeting })),
                (peer.to_owned(), blob.clone())
            ]
        );
    }
}

#[test]
fn two_processes_exchange_messages_raet_head() {
    exchange("raet", "raet");
}

#[test]
fn two_processes_exchange_messages_json_head() {
    exchange("json", "raet");
}

#[test]
fn bad_arguments_exit_3_with_one_line() {
    for args in [
        &["road", "--name", "x"][..],
        &["road", "--name", "x", "--port", "70000"],
        &["road", "--name", "x", "--port", "0", "--send", "[1,2]"],
        &["road", "--name", "x", "--port", "0", "--send", "{oops"],
        &["road", "--name", "x", "--port", "0", "--auto", "sometimes"],
        &["road", "--name", "x", "--port", "0", "--hk", "xml"],
        &["road", "--name", "x", "--port", "0", "--join", "nowhere"],
        &["road", "--name", "x", "--port", "0", "--timeout", "soon"],
        &["road", "--name", "x", "--port", "0", "--no-such-option"],
        &["road", "--name", "x", "--port", "0", "--sighex", "abcd"],
        &[],
    ] {
        let output = raet(args).output().expect("run raet");
        assert_eq!(
            output.status.code(),
            Some(3),
            "{args:?}: {}",
            describe(&output)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            stderr.lines().count(),
            1,
            "{args:?}: one line, got {stderr:?}"
        );
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn help_exits_0() {
    let output = raet(&["road", "--help"]).output().expect("run raet");
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    for option in [
        "--name",
        "--port",
        "--join",
        "--send",
        "--size",
        "--expect",
        "--timeout",
        "--keep",
        "--hk",
    ] {
        assert!(help.contains(option), "help mentions {option}");
    }
}

#[test]
fn waiting_for_messages_that_never_come_exits_2() {
    let output = raet(&[
        "road",
        "--name",
        "x",
        "--port",
        "0",
        "--expect",
        "1",
        "--timeout",
        "0.5",
    ])
    .output()
    .expect("run raet");
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
}

#[test]
fn joining_nobody_exits_2() {
    // Nobody: a socket that never answers (held, so no other can take its port).
    let nobody = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind port 0");
    let join = nobody.local_addr().expect("local address").to_string();
    let output = raet(&[
        "road",
        "--name",
        "x",
        "--port",
        "0",
        "--join",
        &join,
        "--send",
        "{}",
        "--timeout",
        "1",
    ])
    .output()
    .expect("run raet");
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
}

/// The `listening` event in the stderr of a process run with `--events`.
fn listening(stderr: &str) -> Value {
    stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|v| v["event"] == "listening")
        .unwrap_or_else(|| panic!("no listening event in {stderr}"))
}

/// The port of a `listening` event's address.
fn listening_port(event: &Value) -> u16 {
    event["ha"]
        .as_str()
        .and_then(|ha| ha.parse::<std::net::SocketAddr>().ok())
        .map(|ha| ha.port())
        .unwrap_or_else(|| panic!("no address in {event}"))
}

#[test]
fn keep_dir_restores_the_identity_on_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (main_keep, minion_keep) = (dir.path().join("main"), dir.path().join("minion"));
    let mut keys = Vec::new();
    // The kernel's picks, then the same again: a restarted estate comes back at
    // its address (an immutable road rejects a known estate that moved).
    let mut ports = (0, 0);
    for run in 0..2 {
        let (main_port, minion_port) = (ports.0.to_string(), ports.1.to_string());
        let (main, port, main_stderr) = spawn_listening(
            &[
                "road",
                "--name",
                "main",
                "--port",
                &main_port,
                "--main",
                "--expect",
                "1",
                "--timeout",
                "20",
                "--events",
                "--keep",
                main_keep.to_str().expect("utf-8 path"),
            ],
            &[],
        );
        let join = format!("127.0.0.1:{port}");
        let body = format!(r#"{{"run":{run}}}"#);
        let minion = finish(spawn(&[
            "road",
            "--name",
            "minion",
            "--port",
            &minion_port,
            "--join",
            &join,
            "--send",
            &body,
            "--timeout",
            "20",
            "--events",
            "--keep",
            minion_keep.to_str().expect("utf-8 path"),
        ]));
        let main = finish(main);
        let main_stderr = main_stderr.join().expect("main's stderr");
        assert_eq!(
            minion.status.code(),
            Some(0),
            "minion: {}",
            describe(&minion)
        );
        assert_eq!(main.status.code(), Some(0), "main: {main_stderr}");
        assert_eq!(
            messages(&main),
            vec![("minion".to_owned(), json!({ "run": run }))]
        );
        let minion_listening = listening(&String::from_utf8_lossy(&minion.stderr));
        keys.push((
            listening(&main_stderr)["verhex"].clone(),
            minion_listening["verhex"].clone(),
        ));
        ports = (port, listening_port(&minion_listening));
    }
    assert_eq!(keys[0], keys[1], "same keys after a restart");
    assert_ne!(keys[0].0, keys[0].1);
}

#[test]
fn auto_never_waits_for_the_operator_to_accept() {
    use std::io::{BufRead, BufReader, Write};
    let mut main = raet(&[
        "road",
        "--name",
        "main",
        "--port",
        "0",
        "--main",
        "--auto",
        "never",
        "--control",
        "--expect",
        "1",
        "--timeout",
        "20",
        "--events",
    ])
    .stdin(Stdio::piped())
    .spawn()
    .expect("spawn raet");
    // The minion joins once the main tells its port; it is accepted only once
    // the main reports its keys pending.
    let mut minion = None;
    let mut kinds = Vec::new();
    let mut stdin = main.stdin.take().expect("stdin");
    let stderr = BufReader::new(main.stderr.take().expect("stderr"));
    for line in stderr.lines() {
        let line = line.expect("read main's stderr");
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let kind = event["event"].as_str().unwrap_or_default().to_owned();
        if kind == "listening" {
            let join = format!("127.0.0.1:{}", listening_port(&event));
            minion = Some(spawn(&[
                "road",
                "--name",
                "minion",
                "--port",
                "0",
                "--join",
                &join,
                "--send",
                r#"{"hello":"operator"}"#,
                "--timeout",
                "20",
            ]));
        }
        if kind == "pending" {
            writeln!(stdin, "accept minion").expect("write control command");
        }
        kinds.push(kind);
    }
    let minion = finish(minion.expect("the main was listening"));
    let main = finish(main);
    drop(stdin);
    assert_eq!(
        minion.status.code(),
        Some(0),
        "minion: {}",
        describe(&minion)
    );
    assert_eq!(main.status.code(), Some(0), "main: {kinds:?}");
    let at = |kind: &str| {
        kinds
            .iter()
            .position(|k| k == kind)
            .unwrap_or_else(|| panic!("{kind} in {kinds:?}"))
    };
    // The join completes (joined, then allowed) only once the operator's accept is applied;
    // the `accepted` line is printed by another task than the road's events, so it may come
    // after them.
    at("accepted");
    assert!(
        at("pending") < at("joined") && at("joined") < at("allowed"),
        "{kinds:?}"
    );
    assert_eq!(
        messages(&main),
        vec![("minion".to_owned(), json!({"hello": "operator"}))]
    );
}

/// The `(event kind, by)` of every rejection a process reported.
fn rejections(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|v| v["event"] == "rejected")
        .map(|v| v["by"].as_str().unwrap_or("?").to_owned())
        .collect()
}

#[test]
fn auto_once_rejects_a_changed_key_and_says_who_rejected() {
    let (main, port, main_stderr) = spawn_listening(
        &words("road --name main --port 0 --main --auto once --expect 2 --timeout 20 --events"),
        &[],
    );
    let joiner = |name: &str, key: char| {
        let sig = key.to_string().repeat(64);
        let pri = "7".repeat(64);
        let line = format!(
            "road --name {name} --port 0 --join 127.0.0.1:{port} --role minion \
             --sighex {sig} --prihex {pri} --timeout 20 --events --send"
        );
        let mut args = words(&line);
        let body = format!(r#"{{"from":"{name}"}}"#);
        args.push(&body);
        finish(spawn(&args))
    };
    let first = joiner("alpha", '1');
    let changed = joiner("gamma", '2');
    // The pinned key is still welcome (and lets the main finish).
    let same = joiner("delta", '1');
    let main = finish(main);
    let main_stderr = main_stderr.join().expect("main's stderr");
    for (name, output, code) in [
        ("alpha", &first, 0),
        ("gamma", &changed, 1),
        ("delta", &same, 0),
    ] {
        assert_eq!(
            output.status.code(),
            Some(code),
            "{name}: {}",
            describe(output)
        );
    }
    assert_eq!(main.status.code(), Some(0), "main: {main_stderr}");
    let changed_stderr = String::from_utf8_lossy(&changed.stderr);
    assert_eq!(rejections(&changed_stderr), vec!["them".to_owned()]);
    assert_eq!(rejections(&main_stderr), vec!["us".to_owned()]);
    assert_eq!(
        messages(&main),
        vec![
            ("alpha".to_owned(), json!({"from": "alpha"})),
            ("delta".to_owned(), json!({"from": "delta"}))
        ]
    );
}

/// Spawns `raet road ARGS` (with `--events`) with `env` added to its
/// environment; returns it with the port it bound, read from its `listening`
/// event, and a thread draining the rest of its stderr (its whole stderr,
/// as text, when joined).
fn spawn_listening(
    args: &[&str],
    env: &[(&str, &str)],
) -> (Child, u16, std::thread::JoinHandle<String>) {
    use std::io::{BufRead, BufReader};
    let mut child = raet(args)
        .envs(env.iter().copied())
        .spawn()
        .expect("spawn raet");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut seen = String::new();
    let port = loop {
        let Some(Ok(line)) = lines.next() else {
            panic!("no listening event; stderr:\n{seen}");
        };
        seen.push_str(&line);
        seen.push('\n');
        let event = serde_json::from_str::<Value>(&line).unwrap_or_default();
        if event["event"] == "listening" {
            break listening_port(&event);
        }
    };
    let rest = std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            seen.push_str(&line);
            seen.push('\n');
        }
        seen
    });
    (child, port, rest)
}

/// A process whose stdout is not read keeps serving its road. The main's
/// stdout (a pipe holding 64 KB) is not read at first: printing the first
/// joiner's 200 KB message blocks, and the second joiner still joins and is
/// allowed meanwhile. With one runtime worker (`TOKIO_WORKER_THREADS=1`) a print
/// on the runtime held the road's driver every time (the second joiner timed
/// out). Neither message is acknowledged before it is written on stdout (the
/// delivery contract): both senders wait until the main's stdout is read.
#[test]
fn a_stdout_nobody_reads_does_not_stop_the_road() {
    use std::io::{BufRead, BufReader, Read};
    let (mut main, port, main_stderr) = spawn_listening(
        &words("road --name main --port 0 --main --expect 2 --timeout 30 --events"),
        &[("TOKIO_WORKER_THREADS", "1")],
    );
    let join = format!("127.0.0.1:{port}");
    let joiner = |name: &str, extra: &[&str]| {
        let mut args = vec!["road", "--name", name, "--port", "0", "--join", &join];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--timeout", "25", "--events"]);
        spawn(&args)
    };
    // Each joiner's stderr is read to the end (or it would die writing to a closed
    // pipe); `allowed` is signalled.
    let allowed = |child: &mut Child| {
        let events = BufReader::new(child.stderr.take().expect("stderr"));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in events.lines().map_while(Result::ok) {
                if serde_json::from_str::<Value>(&line).is_ok_and(|e| e["event"] == "allowed") {
                    let _ = tx.send(());
                }
            }
        });
        rx
    };
    let limit = std::time::Duration::from_secs(20);
    let mut big = joiner("big", &["--size", "200000"]);
    allowed(&mut big).recv_timeout(limit).expect("big allowed");
    // Its 200 KB arrive and fill main's stdout pipe; then small joins and is allowed.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let mut small = joiner("small", &["--send", r#"{"after":"big"}"#]);
    allowed(&mut small)
        .recv_timeout(limit)
        .expect("small allowed while main's stdout is stuck");
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert!(
        big.try_wait().unwrap().is_none(),
        "big acknowledged before printed"
    );
    assert!(
        small.try_wait().unwrap().is_none(),
        "small acknowledged before printed"
    );

    // Reading main's stdout prints both: then both are acknowledged.
    let mut stdout = main.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    let big = finish(big);
    assert_eq!(big.status.code(), Some(0), "big: {}", describe(&big));
    let small = finish(small);
    assert_eq!(small.status.code(), Some(0), "small: {:?}", small.status);
    let status = main.wait().expect("main exits");
    let stderr = main_stderr.join().expect("main's stderr");
    assert_eq!(status.code(), Some(0), "main: {stderr}");
    let text = reader.join().expect("reader").expect("main's stdout");
    let got = messages_in(&text);
    assert_eq!(
        got,
        vec![
            ("big".to_owned(), json!({"blob": "x".repeat(200_000)})),
            ("small".to_owned(), json!({"after": "big"}))
        ]
    );
}
