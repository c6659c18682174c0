//! Namespace integration tests of the forwarding plane: real taps, real namespaces, real `ping`.
//! Each test builds its own uniquely named lab and removes it even when it fails.

mod common;

use std::time::Duration;

use common::{lab_config, netns_exists, sh, Lab};

const HOSTS3: [(&str, u8, bool); 3] = [("h1", 11, false), ("h2", 12, false), ("h3", 13, false)];

fn start3(lab: &mut Lab, hosts: &[(&str, u8, bool)]) {
    let cfg = lab_config(lab, hosts, "");
    let ifs: Vec<(String, String)> = hosts
        .iter()
        .map(|(h, _, _)| (h.to_string(), lab.ifname(h)))
        .collect();
    let refs: Vec<(&str, &str)> = ifs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    lab.start(&cfg, &refs);
    // Quiet the hosts' IPv6 chatter so counters reflect the test's own traffic.
    for (h, _, _) in hosts {
        lab.exec(h, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    }
}

#[test]
fn three_hosts_ping_every_pair_and_unicast_after_learning() {
    let mut lab = Lab::new();
    start3(&mut lab, &HOSTS3);
    for (from, _, _) in HOSTS3 {
        for (to, octet, _) in HOSTS3 {
            if from != to {
                let addr = format!("10.13.31.{octet}");
                assert!(
                    lab.ping(from, &addr, 3),
                    "ping {from} -> {to} ({addr}) failed"
                );
            }
        }
    }
    // The appliance owns the gateway address: it answers ARP and ping on every host's port.
    for (h, _, _) in HOSTS3 {
        assert!(lab.ping(h, "10.13.31.1", 3), "ping {h} -> gateway failed");
    }
    // Now every MAC is learned: 200 pings h1 <-> h2 must not be flooded to h3.
    assert!(lab.ping("h1", "10.13.31.12", 200));
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    let (h1, h2, h3) = (
        exit.counters("h1"),
        exit.counters("h2"),
        exit.counters("h3"),
    );
    assert!(h1.rx_frames >= 200 && h2.tx_frames >= 200, "{h1:?} {h2:?}");
    assert!(
        h3.tx_frames < 50,
        "h3 saw {} frames: unicast was flooded after learning\n{}",
        h3.tx_frames,
        exit.stdout
    );
    assert_eq!(h1.drops, "-", "{}", exit.stdout);
    let appliance = exit.counters("appliance");
    assert!(appliance.tx_frames >= 9, "appliance got {appliance:?}");
}

#[test]
fn isolated_pair_cannot_talk_but_both_reach_a_third_host() {
    let mut lab = Lab::new();
    let hosts = [("h1", 11, true), ("h2", 12, true), ("h3", 13, false)];
    start3(&mut lab, &hosts);
    assert!(lab.ping("h1", "10.13.31.13", 3), "isolated h1 -> open h3");
    assert!(lab.ping("h2", "10.13.31.13", 3), "isolated h2 -> open h3");
    assert!(lab.ping("h3", "10.13.31.11", 3), "open h3 -> isolated h1");
    assert!(
        !lab.ping("h1", "10.13.31.12", 2),
        "isolated h1 reached isolated h2"
    );
    assert!(
        !lab.ping("h2", "10.13.31.11", 2),
        "isolated h2 reached isolated h1"
    );
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
}

#[test]
fn sigterm_and_sigint_stop_cleanly_leaving_no_tap_or_namespace() {
    for signal in ["TERM", "INT"] {
        let mut lab = Lab::new();
        start3(&mut lab, &HOSTS3[..2]);
        let (ns1, ns2) = (lab.ns("h1"), lab.ns("h2"));
        assert!(
            netns_exists(&ns1) && netns_exists(&ns2),
            "namespaces visible from outside"
        );
        let exit = lab.stop_with(signal);
        assert_eq!(exit.code, Some(0), "SIG{signal}: {exit:?}");
        assert!(
            !netns_exists(&ns1) && !netns_exists(&ns2),
            "namespaces left behind"
        );
        assert!(
            lab.switch_links().is_empty(),
            "taps left: {:?}",
            lab.switch_links()
        );
    }
}

#[test]
fn a_port_that_cannot_be_built_stops_startup_and_undoes_the_rest() {
    let mut lab = Lab::new();
    // h2's ifname is taken by a non-tap device in the switch namespace.
    let taken = lab.ifname("h2");
    let sw = lab.switch_ns();
    let peer = format!("{}p", lab.tag);
    let out = sh(&[
        "ip", "-n", &sw, "link", "add", &taken, "type", "veth", "peer", "name", &peer,
    ]);
    assert!(out.status.success(), "{out:?}");
    let cfg = lab_config(&mut lab, &HOSTS3[..2], "");
    lab.spawn(&cfg);
    let exit = lab.wait_exit(Duration::from_secs(15));
    assert_ne!(exit.code, Some(0), "{exit:?}");
    assert!(
        exit.stderr.contains("port 'h2'") && exit.stderr.contains(&taken),
        "the error names the port and the tap: {}",
        exit.stderr
    );
    assert!(
        !netns_exists(&lab.ns("h1")),
        "h1's namespace was not removed"
    );
    let mut expected = vec![taken, peer];
    expected.sort();
    let mut links = lab.switch_links();
    links.sort();
    assert_eq!(links, expected, "h1's tap was not removed");
}

#[test]
fn a_bad_config_is_a_clear_error_with_file_and_line() {
    let dir = std::env::temp_dir().join(format!("switchyard-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[network]\nname = \"lab\"\nsubnet = \"10.13.31.0/24\"\ngateway = \"10.13.31.1\"\n\
         domain = \"lab.test\"\n\n[[port]]\nname = \"vm3\"\nkind = \"tap\"\nifname = \"sy-vm3\"\n\
         host = \"vm9\"\n",
    )
    .unwrap();
    for cmd in ["check", "run"] {
        let mut args = vec![cmd];
        let p = path.to_str().unwrap();
        if cmd == "run" {
            args.push("--config");
        }
        args.push(p);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{cmd}: {err}");
        assert!(
            err.contains(&format!("{p}:11:")),
            "{cmd}: no file:line in {err}"
        );
        assert!(err.contains("vm9"), "{cmd}: {err}");
        assert!(!err.contains("panicked"), "{cmd}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
