//! Adaptive polling (`[switch] poll_us = "adaptive"`) forwards, and costs about nothing once
//! the traffic stops: a worker polls only for a short window after it moved frames.

mod common;

use std::time::Duration;

use common::{lab_config, Lab};

/// The daemon's CPU time so far (utime + stime of /proc/PID/stat), in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("daemon's stat");
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15, so 12 and 13 after the state (field 3).
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let hz = String::from_utf8(common::sh(&["getconf", "CLK_TCK"]).stdout).unwrap();
    ticks as f64 / hz.trim().parse::<f64>().unwrap()
}

#[test]
fn adaptive_polling_forwards_and_idles_at_about_zero_cpu() {
    let mut lab = Lab::new();
    let hosts = [("h1", 11, false), ("h2", 12, false)];
    let cfg = lab_config(&mut lab, &hosts, "workers = 2\npoll_us = \"adaptive\"");
    let (i1, i2) = (lab.ifname("h1"), lab.ifname("h2"));
    lab.start(&cfg, &[("h1", &i1), ("h2", &i2)]);
    assert!(lab.ping("h1", "10.13.31.12", 3), "no path h1 -> h2");
    // Traffic that grows the windows: 200 pings 5 ms apart, every one answered.
    let out = lab.exec(
        "h1",
        &[
            "ping",
            "-n",
            "-q",
            "-c",
            "200",
            "-i",
            "0.005",
            "-W",
            "1",
            "10.13.31.12",
        ],
    );
    assert!(out.status.success(), "pings lost: {out:?}");

    // Then nothing: over 3 s the workers, the control thread and the appliance use a small
    // fraction of a CPU second. A worker that kept polling would spend about 3 s alone.
    std::thread::sleep(Duration::from_millis(200));
    let pid = lab.daemon_pid();
    let before = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(3));
    let idle = cpu_seconds(pid) - before;
    assert!(idle < 0.1, "the idle daemon used {idle:.2} CPU s in 3 s");
    assert!(
        lab.ping("h1", "10.13.31.12", 3),
        "no path after the idle time"
    );
}
