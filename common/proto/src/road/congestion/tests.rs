use std::time::{Duration, Instant};

use super::*;

const MSS: usize = 1_000;

/// Drives a controller over a path of `rate` bytes/s and one-way delay `delay` with a
/// sender that always has data, for `rounds` RTTs; returns the controller.
fn drive(rate: f64, delay: Duration, secs: f64) -> Congestion {
    let start = Instant::now();
    let mut cc = Congestion::new(start, MSS);
    let mut now = start;
    // (arrival of the confirmation, stamp)
    let mut pending: std::collections::VecDeque<(Instant, Stamp)> = Default::default();
    let mut link_free = start;
    let end = start + Duration::from_secs_f64(secs);
    while now < end {
        while cc.admit(now, MSS).is_ok() {
            let stamp = cc.sent(now, MSS, false);
            link_free = link_free.max(now) + Duration::from_secs_f64(MSS as f64 / rate);
            pending.push_back((link_free + delay * 2, stamp));
        }
        let next_answer = pending.front().map(|&(t, _)| t);
        let paced = match cc.admit(now, MSS) {
            Err(Some(t)) => Some(t),
            _ => None,
        };
        now = match (next_answer, paced) {
            (Some(a), Some(p)) => a.min(p),
            (Some(a), None) => a,
            (None, Some(p)) => p,
            (None, None) => now + Duration::from_millis(1),
        };
        while let Some(&(t, stamp)) = pending.front() {
            if t > now {
                break;
            }
            pending.pop_front();
            cc.delivered(now, MSS, stamp, true);
        }
    }
    cc
}

#[test]
fn the_model_finds_the_bottleneck_and_the_rtt() {
    let rate = 10_000_000.0;
    let cc = drive(rate, Duration::from_millis(10), 3.0);
    let bw = cc.bandwidth().expect("samples");
    assert!((0.8 * rate..=1.3 * rate).contains(&bw), "bandwidth {bw}");
    let (min_rtt, _) = cc.min_rtt.expect("rtt");
    assert!(min_rtt >= Duration::from_millis(20), "{min_rtt:?}");
    assert!(min_rtt <= Duration::from_millis(25), "{min_rtt:?}");
    assert!(matches!(cc.phase, Phase::Probe { .. }), "{:?}", cc.phase);
    // the window is about two bandwidth-delay products, not the whole queue
    let bdp = rate * 0.02;
    assert!((cc.window() as f64) < 3.0 * bdp, "window {}", cc.window());
    assert!((cc.window() as f64) > 1.5 * bdp, "window {}", cc.window());
}

#[test]
fn the_first_window_is_not_paced_and_a_full_window_waits_for_answers() {
    let now = Instant::now();
    let mut cc = Congestion::new(now, MSS);
    for _ in 0..INITIAL_WINDOW / MSS {
        assert_eq!(cc.admit(now, MSS), Ok(()));
        cc.sent(now, MSS, false);
    }
    assert_eq!(cc.admit(now, MSS), Err(None));
    cc.lost(MSS);
    assert_eq!(cc.admit(now, MSS), Ok(()));
}

#[test]
fn application_limited_samples_do_not_end_the_startup() {
    let start = Instant::now();
    let mut cc = Congestion::new(start, MSS);
    let mut now = start;
    for _ in 0..20 {
        let stamp = cc.sent(now, MSS, true);
        now += Duration::from_millis(10);
        cc.delivered(now, MSS, stamp, true);
    }
    assert_eq!(cc.phase, Phase::Startup);
    assert!(cc.bandwidth().is_some());
}

#[test]
fn rto_follows_rfc_6298() {
    let start = Instant::now();
    let mut cc = Congestion::new(start, MSS);
    assert_eq!(cc.rto(), None);
    let stamp = cc.sent(start, MSS, false);
    cc.delivered(start + Duration::from_millis(100), MSS, stamp, true);
    // srtt 100 ms, rttvar 50 ms
    assert_eq!(cc.rto(), Some(Duration::from_millis(300)));
    let stamp = cc.sent(start, MSS, false);
    cc.delivered(start + Duration::from_millis(100), MSS, stamp, true);
    // rttvar 3/4 of 50 ms
    assert_eq!(cc.rto(), Some(Duration::from_micros(250_000)));
}
