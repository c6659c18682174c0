//! Privileges: once set up, every thread of the daemon runs with only the capabilities it
//! still uses (CAP_NET_ADMIN, CAP_NET_RAW, CAP_NET_BIND_SERVICE, and CAP_SYS_ADMIN only when a
//! port has a namespace), in its effective, permitted and bounding sets; and a config that asks
//! for nothing privileged runs as an unprivileged user (uid 65534, no capabilities at all) on
//! taps made ahead of time, forwarding between two hosts.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{lab_config, netns_exists, sh, Lab};

const NET_BIND_SERVICE: u32 = 10;
const NET_ADMIN: u32 = 12;
const NET_RAW: u32 = 13;
const SYS_ADMIN: u32 = 21;

fn mask(caps: &[u32]) -> u64 {
    caps.iter().fold(0, |m, c| m | (1 << c))
}

/// `(thread name, CapInh, CapPrm, CapEff, CapBnd, CapAmb)` of every thread of `pid`.
fn thread_caps(pid: u32) -> Vec<(String, [u64; 5])> {
    let mut out = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let Ok(status) = fs::read_to_string(task.path().join("status")) else {
            continue; // a helper thread that just ended
        };
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
                .unwrap_or_else(|| panic!("no {key} in {status}"))
        };
        let name = status
            .lines()
            .find_map(|l| l.strip_prefix("Name:"))
            .unwrap_or("?")
            .trim()
            .to_string();
        out.push((
            name,
            [
                field("CapInh:"),
                field("CapPrm:"),
                field("CapEff:"),
                field("CapBnd:"),
                field("CapAmb:"),
            ],
        ));
    }
    out
}

/// `(thread name, nice value)` of every thread of `pid` (field 19 of `/proc/PID/task/TID/stat`,
/// counted after the parenthesised command), the main thread first.
fn thread_nices(pid: u32) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let Ok(stat) = fs::read_to_string(task.path().join("stat")) else {
            continue; // a helper thread that just ended
        };
        let name = stat[stat.find('(').unwrap() + 1..stat.rfind(')').unwrap()].to_string();
        let nice = stat[stat.rfind(')').unwrap() + 1..]
            .split_whitespace()
            .nth(16)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no nice value in {stat}"));
        let main = task.file_name().to_str() == Some(&pid.to_string());
        out.insert(if main { 0 } else { out.len() }, (name, nice));
    }
    out
}

/// The workers run at nice -10; the appliance and the DHCP files' threads at the daemon's
/// own priority (the main thread's, once the workers are started), whether the workers got
/// their -10 from a raised `RLIMIT_NICE` or lent by the main thread.
fn assert_priorities(pid: u32) {
    // A thread just spawned carries the spawner's name and nice value until its first
    // instructions rename it and take its priority back; on a loaded machine the test can look
    // in that window, so it waits (up to 10 s) until every service thread has its name.
    let named = |n: &[(String, i32)]| {
        [
            "sy-worker-",
            "sy-appliance",
            "sy-dhcp-commit",
            "sy-lease-file",
        ]
        .iter()
        .all(|p| n.iter().any(|(name, _)| name.starts_with(p)))
            && n.iter().skip(1).all(|(name, _)| name != "switchyard")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut nices = thread_nices(pid);
    while !named(&nices) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        nices = thread_nices(pid);
    }
    eprintln!("nice values: {nices:?}");
    let own = nices[0].1;
    assert_ne!(
        own, -10,
        "the main thread is back at its own value: {nices:?}"
    );
    let of = |prefix: &str| -> Vec<i32> {
        let found: Vec<i32> = nices
            .iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .map(|(_, v)| *v)
            .collect();
        assert!(!found.is_empty(), "no thread named {prefix}*: {nices:?}");
        found
    };
    assert!(of("sy-worker-").iter().all(|&n| n == -10), "{nices:?}");
    assert_eq!(of("sy-appliance"), [own], "{nices:?}");
    assert_eq!(of("sy-dhcp-commit"), [own], "{nices:?}");
    assert_eq!(of("sy-lease-file"), [own], "{nices:?}");
}

/// Asserts every thread has exactly `want` effective, permitted and bounding, and nothing
/// inheritable or ambient; returns how many threads it looked at.
fn assert_caps(pid: u32, want: u64) -> usize {
    let threads = thread_caps(pid);
    assert!(threads.len() >= 3, "{threads:?}");
    for (name, [inh, prm, eff, bnd, amb]) in &threads {
        assert_eq!(*eff, want, "{name}: CapEff {eff:x}, want {want:x}");
        assert_eq!(*prm, want, "{name}: CapPrm {prm:x}, want {want:x}");
        assert_eq!(*bnd, want, "{name}: CapBnd {bnd:x}, want {want:x}");
        assert_eq!((*inh, *amb), (0, 0), "{name}: CapInh/CapAmb");
    }
    threads.len()
}

#[test]
fn daemon_with_namespaces_keeps_net_caps_and_sys_admin_only() {
    let mut lab = Lab::new();
    let cfg = lab_config(&mut lab, &[("a", 11, false), ("b", 12, false)], "");
    let (ia, ib) = (lab.ifname("a"), lab.ifname("b"));
    lab.start(&cfg, &[("a", &ia), ("b", &ib)]);
    assert!(lab.ping("a", "10.13.31.12", 3), "a -> b");
    let want = mask(&[NET_ADMIN, NET_RAW, NET_BIND_SERVICE, SYS_ADMIN]);
    let n = assert_caps(lab.daemon_pid(), want);
    eprintln!("{n} threads, each CapEff = CapPrm = CapBnd = {want:016x}");
    assert!(
        lab.cli_ok(&["ports"]).contains(&ia),
        "the control socket works"
    );
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    assert!(
        exit.stderr.contains("privileges dropped")
            && exit
                .stderr
                .contains("cap_net_admin,cap_net_raw,cap_net_bind_service,cap_sys_admin"),
        "{}",
        exit.stderr
    );
    // Cleaning up still works with what is left: its namespaces (and their taps) are gone.
    let (na, nb) = (lab.ns("a"), lab.ns("b"));
    assert!(!netns_exists(&na) && !netns_exists(&nb));
}

#[test]
fn daemon_without_namespaces_drops_sys_admin_too() {
    let mut lab = Lab::new();
    start_with_one_tap(&mut lab, &[]);
    assert_caps(
        lab.daemon_pid(),
        mask(&[NET_ADMIN, NET_RAW, NET_BIND_SERVICE]),
    );
    assert_priorities(lab.daemon_pid());
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    assert!(
        exit.stderr
            .contains("cap_net_admin,cap_net_raw,cap_net_bind_service"),
        "{}",
        exit.stderr
    );
    assert!(lab.switch_links().is_empty(), "the tap it created is gone");
}

/// Without `CAP_SYS_RESOURCE` (as in some containers) the daemon cannot raise `RLIMIT_NICE`, so
/// its main thread lends -10 to the threads it starts; the service threads take the daemon's
/// own value back, and the workers keep -10.
#[test]
fn without_cap_sys_resource_the_workers_still_run_at_minus_10_and_the_service_threads_do_not() {
    let mut lab = Lab::new();
    start_with_one_tap(&mut lab, &["setpriv", "--bounding-set", "-sys_resource"]);
    assert_priorities(lab.daemon_pid());
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
}

/// Starts the daemon (through `wrapper`) on one tap of its own, no namespace, DHCP on, and
/// waits for its control socket.
fn start_with_one_tap(lab: &mut Lab, wrapper: &[&str]) {
    let ifname = lab.ifname("t");
    let cfg = format!(
        "[network]\nname = \"{tag}\"\nsubnet = \"10.13.31.0/24\"\ngateway = \"10.13.31.1\"\ndomain = \"lab.test\"\n\n\
         [dhcp]\nstate_dir = \"{state}\"\n\n[switch]\ncontrol_socket = \"{sock}\"\n\n\
         [[port]]\nname = \"t\"\nkind = \"tap\"\nifname = \"{ifname}\"\n",
        tag = lab.tag,
        state = lab.dir.join("state").display(),
        sock = lab.control_socket().display()
    );
    lab.spawn_with(&cfg, wrapper);
    let sock = lab.control_socket();
    lab.wait_for("the control socket", Duration::from_secs(15), || {
        sock.exists() && lab_ports_ok(&sock)
    });
}

fn lab_ports_ok(sock: &std::path::Path) -> bool {
    std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["ports", "--socket"])
        .arg(sock)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(args: &[&str]) {
    let out = sh(args);
    assert!(out.status.success(), "{args:?}: {out:?}");
}

#[test]
fn unprivileged_user_forwards_between_taps_made_ahead_of_time() {
    let mut lab = Lab::new();
    let sw = lab.switch_ns();
    let (ia, ib) = (lab.ifname("a"), lab.ifname("b"));
    // Root makes the taps ahead of time, owned by nobody (65534), up, with the MTU the config
    // asks for (the default 1500) and the daemon's ring length.
    for ifname in [&ia, &ib] {
        run(&[
            "ip", "-n", &sw, "tuntap", "add", ifname, "mode", "tap", "user", "65534", "vnet_hdr",
        ]);
        run(&[
            "ip",
            "-n",
            &sw,
            "link",
            "set",
            ifname,
            "mtu",
            "1500",
            "txqueuelen",
            "4096",
            "up",
        ]);
    }
    // State and control socket in a directory that user can write.
    let dir = lab.dir.join("nobody");
    fs::create_dir_all(&dir).unwrap();
    run(&["chown", "65534:65534", dir.to_str().unwrap()]);
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    let sock = dir.join("control.sock");
    let cfg = format!(
        "[network]\nname = \"{tag}\"\nsubnet = \"10.13.31.0/24\"\ngateway = \"10.13.31.1\"\ndomain = \"lab.test\"\n\n\
         [dhcp]\nstate_dir = \"{state}\"\n\n[switch]\ncontrol_socket = \"{sock}\"\n\n\
         [[port]]\nname = \"a\"\nkind = \"tap\"\nifname = \"{ia}\"\n\n\
         [[port]]\nname = \"b\"\nkind = \"tap\"\nifname = \"{ib}\"\n",
        tag = lab.tag,
        state = dir.join("state").display(),
        sock = sock.display()
    );
    lab.spawn_with(
        &cfg,
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--no-new-privs",
        ],
    );
    lab.wait_for(
        "the unprivileged daemon's control socket",
        Duration::from_secs(15),
        || sock.exists() && lab_ports_ok(&sock),
    );
    let pid = lab.daemon_pid();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid.split_whitespace().skip(1).all(|u| u == "65534"),
        "{uid}"
    );
    assert_caps_zero(pid);

    // Each tap's netdev becomes a host's NIC: root moves it into a namespace of its own (the
    // daemon's fd stays attached) and addresses it there.
    for (h, ifname, addr) in [("a", &ia, "10.13.31.11/24"), ("b", &ib, "10.13.31.12/24")] {
        let ns = lab.ns(h);
        run(&["ip", "netns", "add", &ns]);
        run(&["ip", "-n", &sw, "link", "set", ifname, "netns", &ns]);
        run(&["ip", "-n", &ns, "addr", "add", addr, "dev", ifname]);
        run(&["ip", "-n", &ns, "link", "set", ifname, "up"]);
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
    }
    assert!(
        lab.ping("a", "10.13.31.12", 5),
        "a -> b through the unprivileged daemon"
    );
    assert!(
        lab.ping("b", "10.13.31.1", 3),
        "b -> the gateway (appliance)"
    );

    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    assert!(exit.counters("a").rx_frames >= 5, "{}", exit.stdout);
    let dropped = exit
        .stderr
        .lines()
        .find(|l| l.contains("privileges dropped"))
        .unwrap_or_else(|| panic!("not logged:\n{}", exit.stderr));
    assert!(dropped.contains("none"), "{dropped}");
    assert!(!exit.stderr.contains("txqueuelen"), "{}", exit.stderr);
}

fn assert_caps_zero(pid: u32) {
    for (name, [inh, prm, eff, _bnd, amb]) in thread_caps(pid) {
        assert_eq!((inh, prm, eff, amb), (0, 0, 0, 0), "{name}");
    }
}
