//! Persistent taps (`persist = true`) across a daemon restart: the hosts' links, their
//! namespaces and addresses outlive the daemon, and a new daemon attaches to the same taps
//! inside the hosts' namespaces, so traffic resumes without the hosts doing anything.

mod common;

use std::time::{Duration, Instant};

use common::{lab_config, netns_exists, sh, Lab};

const HOSTS: [(&str, u8, bool); 3] = [("p1", 21, false), ("p2", 22, false), ("t3", 23, false)];

/// `p1` and `p2` persistent, `t3` not.
fn config(lab: &mut Lab) -> String {
    let mut cfg = lab_config(lab, &HOSTS, "");
    for h in ["p1", "p2"] {
        let key = format!("ifname = \"{}\"\n", lab.ifname(h));
        cfg = cfg.replace(&key, &format!("{key}persist = true\n"));
    }
    assert_eq!(cfg.matches("persist = true").count(), 2, "{cfg}");
    cfg
}

fn link_exists(ns: &str, ifname: &str) -> bool {
    sh(&["ip", "-n", ns, "link", "show", "dev", ifname])
        .status
        .success()
}

fn has_addr(ns: &str, ifname: &str, addr: &str) -> bool {
    let out = sh(&["ip", "-n", ns, "-4", "-o", "addr", "show", "dev", ifname]);
    String::from_utf8_lossy(&out.stdout).contains(&format!("inet {addr}/"))
}

#[test]
fn persistent_taps_survive_a_restart_and_traffic_resumes() {
    let mut lab = Lab::new();
    let cfg = config(&mut lab);
    let (ns1, ns2, ns3) = (lab.ns("p1"), lab.ns("p2"), lab.ns("t3"));
    let (if1, if2, if3) = (lab.ifname("p1"), lab.ifname("p2"), lab.ifname("t3"));
    lab.start(&cfg, &[("p1", &if1), ("p2", &if2), ("t3", &if3)]);
    assert!(
        lab.ping("p1", "10.13.31.22", 3),
        "p1 -> p2 before the restart"
    );
    assert!(
        lab.ping("p1", "10.13.31.23", 3),
        "p1 -> t3 before the restart"
    );

    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    // The persistent taps stay where they were, with their addresses; the daemon deleted
    // neither them nor their namespaces. The other port's tap and namespace are gone.
    for (ns, ifname, addr) in [(&ns1, &if1, "10.13.31.21"), (&ns2, &if2, "10.13.31.22")] {
        assert!(netns_exists(ns), "{ns} was deleted at exit");
        assert!(
            link_exists(ns, ifname),
            "{ifname} vanished from {ns} at exit"
        );
        assert!(has_addr(ns, ifname, addr), "{ifname} lost {addr} at exit");
    }
    assert!(
        !netns_exists(&ns3) && !link_exists(&ns3, &if3),
        "the non-persistent port's namespace and tap outlived the daemon"
    );
    assert!(lab.switch_links().is_empty(), "{:?}", lab.switch_links());
    assert!(
        !lab.ping("p1", "10.13.31.22", 1),
        "traffic flowed with no daemon"
    );

    // Restart; "back" is the first moment the control socket answers (the daemon accepts on it
    // only after every port is open).
    lab.spawn(&cfg);
    let sock = lab.control_socket();
    lab.wait_for(
        "the restarted daemon's control socket",
        Duration::from_secs(15),
        || sock.exists() && lab_cli_ok(&sock),
    );
    let back = Instant::now();
    let mut resumed = None;
    while back.elapsed() < Duration::from_secs(10) {
        if lab.ping("p1", "10.13.31.22", 1) {
            resumed = Some(back.elapsed());
            break;
        }
    }
    let resumed = resumed.expect("p1 -> p2 did not resume within 10 s of the daemon being back");
    eprintln!("p1 -> p2 resumed {resumed:?} after the daemon was back");
    assert!(
        lab.ping("p2", "10.13.31.21", 20),
        "p2 -> p1 after the restart"
    );
    assert!(
        lab.ping("p1", "10.13.31.1", 3),
        "p1 -> gateway after the restart"
    );
    // The same netdevs, not new ones: still in the hosts' namespaces, none in the switch's.
    assert!(lab.switch_links().is_empty(), "{:?}", lab.switch_links());
    assert!(link_exists(&ns1, &if1) && link_exists(&ns2, &if2));

    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    assert!(exit.counters("p1").rx_frames >= 20, "{}", exit.stdout);
    assert!(link_exists(&ns1, &if1) && link_exists(&ns2, &if2));
}

/// Whether the control socket at `sock` answers a `ports` request.
fn lab_cli_ok(sock: &std::path::Path) -> bool {
    std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["ports", "--socket"])
        .arg(sock)
        .output()
        .is_ok_and(|o| o.status.success())
}
