//! systemd readiness with a real `salt-raet-master`: started with `NOTIFY_SOCKET` naming a
//! Unix datagram socket the test binds (as systemd does for a `Type=notify` unit), the daemon
//! sends `READY=1` once, when its lane socket exists and it answers `status`, and
//! `STOPPING=1` on SIGTERM before it exits 0.
//!
//! `NOTIFY_SOCKET` reaches the daemon through this process's environment, which is why this
//! test has a test binary of its own: no other daemon of another test inherits it.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use salt_raet_testkit::*;

/// The next notification on `socket` (panics after [`LIMIT`]).
fn next(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("a notification in time");
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

#[test]
fn ready_once_the_lane_is_bound_and_stopping_on_sigterm() {
    let site = Site::new();
    let path = site.root.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(LIMIT)).unwrap();
    std::env::set_var("NOTIFY_SOCKET", &path);
    let mut master = site.master("");

    assert_eq!(next(&socket), "READY=1\n");
    assert!(
        master.lane_dir().join("salt.manor.uxd").exists(),
        "the lane is bound when READY=1 arrives"
    );
    let status = master.status().expect("status answers once ready");
    assert_eq!(status["role"], "master");

    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 512];
    assert!(socket.recv(&mut buf).is_err(), "READY=1 is sent once");
    socket.set_read_timeout(Some(LIMIT)).unwrap();

    assert_eq!(master.terminate(), Some(0), "clean exit on SIGTERM");
    assert_eq!(next(&socket), "STOPPING=1\n", "sent before the exit");
}
