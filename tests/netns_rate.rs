//! Namespace tests of per-port bandwidth limits, with iperf3 (TCP): h1's port has an `ingress`
//! limit of 20 Mbit/s (2441 KiB/s, libvirt's units), h2's none, both send to h3 at once. h1's
//! flow stays within 15 % of the limit while h2's keeps flowing far above it; then a live
//! `switchyard limit` lifts h1's ingress limit and sets an egress one of 10 Mbit/s, which holds
//! for what h3 sends to h1. Rates are measured by iperf3's receiver over 6 s, the first second
//! (the burst) left out. Each test builds its own lab and removes it even when it fails.

mod common;

use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use common::{lab_config, Lab};

const H3: &str = "10.13.31.13";
/// 20 Mbit/s in KiB/s.
const LIMIT_KIB: u64 = 2441;

/// A process killed (and reaped) when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn iperf_server(lab: &mut Lab, port: &str) -> Killed {
    let ns = lab.ns("h3");
    Killed(
        Command::new("ip")
            .args([
                "netns", "exec", &ns, "timeout", "60", "iperf3", "-s", "-1", "-B", H3,
            ])
            .args(["-p", port])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("iperf3 server"),
    )
}

/// The iperf3 client's command line in `host`'s namespace: 6 s (1 omitted) to h3:`port`.
fn client(lab: &mut Lab, host: &str, port: &str, reverse: bool) -> Command {
    let ns = lab.ns(host);
    let mut c = Command::new("ip");
    c.args([
        "netns", "exec", &ns, "timeout", "40", "iperf3", "-c", H3, "-p", port,
    ])
    .args(["-t", "6", "-O", "1", "-J", "--connect-timeout", "5000"]);
    if reverse {
        c.arg("-R");
    }
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// The receiver's rate in Mbit/s from iperf3's JSON.
fn mbits(out: &std::process::Output) -> f64 {
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "iperf3: {json}");
    let v: serde_json::Value = serde_json::from_str(&json).expect("iperf3 JSON");
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0)
        / 1e6
}

/// `drop.rate_limited` of `port` from `switchyard stats`.
fn rate_limited(lab: &Lab, port: &str) -> u64 {
    lab.cli_ok(&["stats", port])
        .lines()
        .find(|l| l.trim_start().starts_with("drop.rate_limited"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_limited_port_keeps_its_rate_an_unlimited_one_flows_and_limits_change_live() {
    let mut lab = Lab::new();
    let mut cfg = lab_config(
        &mut lab,
        &[("h1", 11, false), ("h2", 12, false), ("h3", 13, false)],
        "",
    );
    cfg = cfg.replacen(
        "name = \"h1\"\nkind = \"tap\"\n",
        &format!(
            "name = \"h1\"\nkind = \"tap\"\ningress = {{ average = {LIMIT_KIB}, burst = 512 }}\n"
        ),
        1,
    );
    assert!(cfg.contains("ingress = {"), "{cfg}");
    let ifs: Vec<(String, String)> = ["h1", "h2", "h3"]
        .iter()
        .map(|h| (h.to_string(), lab.ifname(h)))
        .collect();
    let hosts: Vec<(&str, &str)> = ifs.iter().map(|(h, i)| (h.as_str(), i.as_str())).collect();
    lab.start(&cfg, &hosts);
    for h in ["h1", "h2", "h3"] {
        lab.exec(h, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    }
    assert!(lab.ping("h1", H3, 2) && lab.ping("h2", H3, 2));

    // Both at once: h1 (limited) and h2 (not) to h3.
    let (_s1, _s2) = (
        iperf_server(&mut lab, "5301"),
        iperf_server(&mut lab, "5302"),
    );
    thread::sleep(Duration::from_millis(700));
    let limited = client(&mut lab, "h1", "5301", false)
        .spawn()
        .expect("iperf3 h1");
    let free = client(&mut lab, "h2", "5302", false)
        .output()
        .expect("iperf3 h2");
    let limited = limited.wait_with_output().expect("iperf3 h1");
    let (limited, free) = (mbits(&limited), mbits(&free));
    let want = LIMIT_KIB as f64 * 1024.0 * 8.0 / 1e6;
    eprintln!("limited {limited:.2} Mbit/s (limit {want:.2}), unlimited {free:.2} Mbit/s");
    assert!(
        (limited - want).abs() / want <= 0.15,
        "the limited port ran at {limited:.2} Mbit/s, not within 15 % of {want:.2}"
    );
    assert!(
        free > 2.0 * want,
        "the unlimited port ran at {free:.2} Mbit/s beside the limited one"
    );
    assert!(rate_limited(&lab, "h1") > 0);
    assert_eq!(rate_limited(&lab, "h2"), 0);

    // Live: no ingress limit, an egress limit of 10 Mbit/s (1220 KiB/s, burst 512 KiB) on h1.
    let said = lab.cli_ok(&["limit", "h1", "--ingress", "none", "--egress", "1220,,512"]);
    assert!(said.contains("egress average 1220 KiB/s"), "{said}");
    let _s3 = iperf_server(&mut lab, "5303");
    thread::sleep(Duration::from_millis(700));
    let out = client(&mut lab, "h1", "5303", true)
        .output()
        .expect("iperf3 h1 -R");
    let to_h1 = mbits(&out);
    let want = 1220.0 * 1024.0 * 8.0 / 1e6;
    eprintln!("h3 -> h1 {to_h1:.2} Mbit/s (egress limit {want:.2})");
    assert!(
        (to_h1 - want).abs() / want <= 0.15,
        "h3 -> h1 ran at {to_h1:.2} Mbit/s, not within 15 % of {want:.2}"
    );
    let refused = lab.cli(&["limit", "h1", "--egress", "10,5"]);
    assert!(!refused.status.success(), "peak below average accepted");
    lab.stop_with("TERM");
}
