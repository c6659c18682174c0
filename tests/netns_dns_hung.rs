//! A hung, then dead, DNS upstream does not slow local answers: while one host keeps hundreds
//! of forwarded queries outstanding at an upstream that reads and never answers (and then at
//! one that is gone), another host's 200 queries for local names are all answered, each within
//! dig's 1 s timeout. The upstream lives in a namespace of the test's own behind a veth into the
//! daemon's namespace (`Lab::upstream_ns`): nothing leaves the test's namespaces.

mod common;

use std::fs;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Lab;

const GW: &str = "10.13.31.1";
const UPSTREAM: &str = "192.0.2.53";

/// Reads DNS queries on UPSTREAM:53 and never answers; writes how many it has read to argv[1].
/// Gives up on its own after 120 s.
const BLACK_HOLE: &str = r#"
import os, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[2], 53))
s.settimeout(0.2)
n, end = 0, time.time() + 120
while time.time() < end:
    try:
        s.recv(65535)
        n += 1
    except socket.timeout:
        pass
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(n))
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
"#;

/// Sends argv[3] queries a second for fresh names under example.org to argv[1]:53 for argv[2]
/// seconds, reading (and counting) whatever comes back; prints "sent got".
const FLOOD: &str = r#"
import socket, struct, sys, time
server, duration, rate = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
def query(n):
    name = b"".join(bytes([len(l)]) + l for l in [b"q%d" % n, b"example", b"org"]) + b"\0"
    return struct.pack(">HHHHHH", n & 0xffff, 0x0100, 1, 0, 0, 0) + name + struct.pack(">HH", 1, 1)
sent = got = 0
t0 = time.time()
while time.time() - t0 < duration:
    while sent < int((time.time() - t0) * rate):
        s.sendto(query(sent), (server, 53))
        sent += 1
    try:
        while True:
            s.recv(4096)
            got += 1
    except BlockingIOError:
        pass
    time.sleep(0.005)
print(sent, got)
"#;

/// A process the test started; killed (by its pid) on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python_in(ns: &str, script: &str, args: &[&str], stdout: Stdio) -> Proc {
    Proc(
        Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-c", script])
            .args(args)
            .stdout(stdout)
            .stderr(Stdio::null())
            .spawn()
            .expect("python3"),
    )
}

/// 200 queries for local names from `host`, in 4 dig runs of 50 (dig asks one after another,
/// each with one try and a 1 s timeout). Asserts every one was answered right.
fn local_burst(lab: &mut Lab, host: &str, phase: &str) {
    let t = Instant::now();
    for round in 0..4 {
        let names: Vec<&str> = (0..50)
            .map(|i| {
                if (i + round) % 2 == 0 {
                    "vm1.lab.test"
                } else {
                    "vm2.lab.test"
                }
            })
            .collect();
        let server = format!("@{GW}");
        let mut args = vec![
            "timeout", "120", "dig", &server, "+tries=1", "+time=1", "+short",
        ];
        args.extend_from_slice(&names);
        let out = lab.exec(host, &args);
        let got: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        let want: Vec<&str> = names
            .iter()
            .map(|n| {
                if *n == "vm1.lab.test" {
                    "10.13.31.11"
                } else {
                    "10.13.31.12"
                }
            })
            .collect();
        assert_eq!(got, want, "{phase}: round {round}: {out:?}");
    }
    eprintln!("{phase}: 200 local answers in {:?}", t.elapsed());
}

/// The `name=N` counter of the daemon's `dns:` line.
fn counter(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {line}"))
        .parse()
        .unwrap()
}

#[test]
fn a_hung_or_dead_upstream_does_not_slow_local_answers() {
    let mut lab = Lab::new();
    let up = lab.upstream_ns(&[UPSTREAM]);
    let seen = lab.dir.join("black-hole-count");
    let mut hole = python_in(
        &up,
        BLACK_HOLE,
        &[seen.to_str().unwrap(), UPSTREAM],
        Stdio::null(),
    );
    let mut cfg = common::lab_config(&mut lab, &[("vm1", 11, false), ("vm2", 12, false)], "");
    cfg.push_str(&format!(
        "\n[dns]\nupstreams = [\"{UPSTREAM}\"]\ntimeout_ms = 2000\n"
    ));
    let (if1, if2) = (lab.ifname("vm1"), lab.ifname("vm2"));
    lab.start(&cfg, &[("vm1", &if1), ("vm2", &if2)]);

    // vm2 keeps forwarded queries coming: 400 a second for 25 s, each outstanding for the
    // 2 s timeout, so hundreds wait at the upstream at any moment.
    let ns2 = lab.ns("vm2");
    let mut flood = python_in(&ns2, FLOOD, &[GW, "25", "400"], Stdio::piped());
    let read = |p: &std::path::Path| {
        fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    lab.wait_for(
        "500 queries at the hung upstream",
        Duration::from_secs(15),
        || read(&seen) >= 500,
    );

    local_burst(&mut lab, "vm1", "hung upstream");

    // The upstream dies: its port is closed now (ICMP port unreachable to every query).
    let before = read(&seen);
    let _ = hole.0.kill();
    let _ = hole.0.wait();
    local_burst(&mut lab, "vm1", "dead upstream");
    let out = lab.exec(
        "vm1",
        &[
            "timeout",
            "20",
            "dig",
            "@10.13.31.1",
            "+tries=1",
            "+time=3",
            "gone.example.org",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("status: SERVFAIL"), "{text}");

    let out = stdout_when_done(&mut flood, Duration::from_secs(40));
    let (sent, got) = out
        .split_once(' ')
        .map(|(a, b)| (a.parse::<u64>().unwrap(), b.trim().parse::<u64>().unwrap()))
        .unwrap_or_else(|| panic!("flood printed {out:?}"));
    eprintln!("flood: sent {sent}, got {got} replies (SERVFAIL); black hole read {before}");
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    let line = exit
        .stdout
        .lines()
        .find(|l| l.starts_with("dns: "))
        .unwrap_or_else(|| panic!("no dns counters:\n{}", exit.stdout));
    eprintln!("{line}");
    assert!(counter(line, "local") >= 400, "{line}");
    assert!(counter(line, "forwarded") >= 1000, "{line}");
    assert_eq!(counter(line, "upstream_answers"), 0, "{line}");
    assert!(counter(line, "servfail") >= 1000, "{line}");
}

/// Waits (bounded) for `p` to exit and returns its stdout.
fn stdout_when_done(p: &mut Proc, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    while !matches!(p.0.try_wait(), Ok(Some(_))) {
        assert!(Instant::now() < deadline, "did not end within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut s = String::new();
    if let Some(mut o) = p.0.stdout.take() {
        let _ = o.read_to_string(&mut s);
    }
    s
}
