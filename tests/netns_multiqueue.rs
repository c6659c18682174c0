//! Multi-queue ports (`[switch] multi_queue = true`, issue 24) against a running daemon with two
//! workers: a tap the daemon creates really has one queue per worker (the netdev's
//! `/sys/class/net/TAP/queues`), the flows of several iperf3 streams through one tap are read by
//! both workers (the per-worker counters the daemon prints at exit), UDP flows arrive without
//! loss or reordering, and a multi-queue tap can be hotplugged and unplugged. A packet port fans
//! out over both workers (`PACKET_FANOUT`), also after its netdev was re-created, and attaches
//! to the multi-queue tap QEMU (TCG) makes for a `queues=2` VM, which gets its lease and pings
//! a host through it. Every namespace is the lab's (unique names, removed on drop); the VM is
//! killed on drop.

mod common;

use std::fs;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::vm::{build_initramfs, debian_kernel, guest_init};
use common::{lab_config, netns_exists, sh, Exit, Lab};

const SWITCH: &str = "workers = 2\nmulti_queue = true\n";

/// The `queues/` entries of `ifname` in namespace `ns` (rx-0, rx-1, tx-0, ...), sorted.
fn queues(ns: &str, ifname: &str) -> Vec<String> {
    let path = format!("/sys/class/net/{ifname}/queues");
    let out = sh(&["ip", "netns", "exec", ns, "ls", &path]);
    assert!(out.status.success(), "ls {path} in {ns}: {out:?}");
    let mut q: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    q.sort();
    q
}

/// Frames each worker (`what` = "sy-worker-") or each queue (`what` = "queue-") read from
/// `port`, from the table the daemon prints at exit.
fn rx_by(exit: &Exit, what: &str, port: &str) -> [u64; 2] {
    let mut out = [0; 2];
    for line in exit.stdout.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() == 3 && f[1] == port {
            if let Some(w) = f[0].strip_prefix(what) {
                out[w.parse::<usize>().unwrap()] = f[2].parse().unwrap();
            }
        }
    }
    out
}

/// An iperf3 server in `host` for one test (`-1`), bounded by `timeout`.
fn iperf_server(lab: &mut Lab, host: &str, port: u16) -> Child {
    let ns = lab.ns(host);
    let child = Command::new("ip")
        .args(["netns", "exec", &ns, "timeout", "60", "iperf3", "-s", "-1"])
        .args(["-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn iperf3 -s");
    // Listening takes a moment; the client retries its connect below anyway.
    thread::sleep(Duration::from_millis(300));
    child
}

/// Runs an iperf3 client in `host` against `addr` (`args` added), and returns its JSON report.
fn iperf_client(lab: &mut Lab, host: &str, addr: &str, port: u16, args: &[&str]) -> String {
    let p = port.to_string();
    let mut full = vec!["timeout", "40", "iperf3", "-c", addr, "-p", &p, "-J"];
    full.extend_from_slice(args);
    let mut last = None;
    for _ in 0..10 {
        let out = lab.exec(host, &full);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            return text;
        }
        last = Some(format!("{text}{}", String::from_utf8_lossy(&out.stderr)));
        // The server may not listen yet.
        thread::sleep(Duration::from_millis(300));
    }
    panic!("iperf3 {args:?} failed: {}", last.unwrap_or_default());
}

#[test]
fn a_multi_queue_tap_spreads_one_ports_flows_over_both_workers() {
    let mut lab = Lab::new();
    let cfg = lab_config(&mut lab, &[("a", 11, false), ("b", 12, false)], SWITCH);
    let (if_a, if_b) = (lab.ifname("a"), lab.ifname("b"));
    lab.start(&cfg, &[("a", &if_a), ("b", &if_b)]);
    let (ns_a, ns_b) = (lab.ns("a"), lab.ns("b"));
    for (ns, ifname) in [(&ns_a, &if_a), (&ns_b, &if_b)] {
        assert_eq!(
            queues(ns, ifname),
            ["rx-0", "rx-1", "tx-0", "tx-1"],
            "{ifname} has two queues"
        );
        let detail = sh(&["ip", "-n", ns, "-d", "link", "show", "dev", ifname]);
        let detail = String::from_utf8_lossy(&detail.stdout);
        assert!(detail.contains("multi_queue"), "{detail}");
    }
    assert!(lab.ping("a", "10.13.31.12", 3));

    // Eight TCP flows, twice: the kernel spreads new flows over the tap's queues by their hash
    // (all sixteen on one queue: 1 in 32768).
    let mut tcp_bytes = 0.0;
    for round in 0..2 {
        let port = 5301 + round;
        let server = iperf_server(&mut lab, "b", port);
        let json = iperf_client(&mut lab, "a", "10.13.31.12", port, &["-P", "8", "-t", "2"]);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        tcp_bytes += v["end"]["sum_received"]["bytes"].as_f64().unwrap();
        let _ = server.wait_with_output();
    }
    assert!(tcp_bytes > 0.0);

    // Four UDP flows at a rate the machine carries under load: every datagram arrives, and in
    // order within its flow (iperf3 counts both per stream on the server).
    let server = iperf_server(&mut lab, "b", 5311);
    let json = iperf_client(
        &mut lab,
        "a",
        "10.13.31.12",
        5311,
        &["-u", "-b", "10M", "-l", "1200", "-P", "4", "-t", "2"],
    );
    let _ = server.wait_with_output();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let sum = &v["end"]["sum"];
    let packets = sum["packets"].as_u64().unwrap();
    let lost = sum["lost_packets"].as_u64().unwrap();
    assert!(packets > 1000, "{sum}");
    for s in v["end"]["streams"].as_array().unwrap() {
        let udp = &s["udp"];
        assert_eq!(udp["out_of_order"].as_u64(), Some(0), "reordered: {udp}");
    }
    assert!(
        lost * 1000 <= packets,
        "lost {lost} of {packets} UDP datagrams (more than 0.1 %)"
    );

    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    eprintln!("{}", exit.stdout);
    for port in ["a", "b"] {
        // Both queues of the port carried frames (b's: the replies follow the queue each flow
        // was written to), each queue was read by one worker only (its own: no other worker
        // collects replies from a multi-queue port), and every frame was counted once.
        let by_queue = rx_by(&exit, "queue-", port);
        let mut by_worker = rx_by(&exit, "sy-worker-", port);
        assert!(
            by_queue[0] > 100 && by_queue[1] > 100,
            "both queues of port {port} carried frames: {by_queue:?}\n{}",
            exit.stdout
        );
        if by_worker[0] != by_queue[0] {
            by_worker.swap(0, 1);
        }
        assert_eq!(by_worker, by_queue, "one worker per queue of port {port}");
        assert_eq!(exit.counters(port).rx_frames, by_queue[0] + by_queue[1]);
    }
}

#[test]
fn a_multi_queue_tap_is_hotplugged_and_unplugged() {
    let mut lab = Lab::new();
    let cfg = lab_config(&mut lab, &[("a", 11, false)], SWITCH);
    let if_a = lab.ifname("a");
    lab.start(&cfg, &[("a", &if_a)]);
    let (ns_c, if_c) = (lab.ns("c"), lab.ifname("c"));
    lab.cli_ok(&[
        "host",
        "add",
        "c",
        "--mac",
        "52:54:00:31:00:0d",
        "--ipv4",
        "10.13.31.13",
    ]);
    let added = lab.cli_ok(&[
        "port", "add", "c", "--kind", "tap", "--ifname", &if_c, "--netns", &ns_c, "--host", "c",
    ]);
    assert!(added.contains("port c added"), "{added}");
    lab.wait_for("the hotplugged tap up", Duration::from_secs(15), || {
        let out = sh(&["ip", "-n", &ns_c, "-br", "link", "show", "dev", &if_c]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("UP")
    });
    assert_eq!(queues(&ns_c, &if_c), ["rx-0", "rx-1", "tx-0", "tx-1"]);
    assert!(lab.ping("c", "10.13.31.11", 5));
    assert!(lab.ping("a", "10.13.31.13", 5));

    let removed = lab.cli_ok(&["port", "del", "c"]);
    assert!(removed.contains("removed"), "{removed}");
    lab.wait_for("the unplugged tap gone", Duration::from_secs(10), || {
        !netns_exists(&ns_c)
            || !sh(&["ip", "-n", &ns_c, "link", "show", "dev", &if_c])
                .status
                .success()
    });
    // Plugged again (every queue of the old one closed: the name is free), and it works.
    lab.cli_ok(&[
        "port", "add", "c", "--kind", "tap", "--ifname", &if_c, "--netns", &ns_c, "--host", "c",
    ]);
    lab.wait_for("the replugged tap up", Duration::from_secs(15), || {
        let out = sh(&["ip", "-n", &ns_c, "-br", "link", "show", "dev", &if_c]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("UP")
    });
    assert_eq!(queues(&ns_c, &if_c), ["rx-0", "rx-1", "tx-0", "tx-1"]);
    assert!(lab.ping("c", "10.13.31.11", 5));
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
}

/// `[switch] multi_queue` on a packet port: one `PACKET_FANOUT` socket per worker on a veth whose
/// far end is host h2. The netdev is deleted and made again first (a fanout socket cannot be
/// bound again: the port makes a new group under the same fds), then flows from h2 are read by
/// both workers, one queue each, in order.
#[test]
fn a_packet_port_fans_out_over_both_workers_and_survives_its_netdev() {
    let mut lab = Lab::new();
    let (ns_h2, ns_up) = (lab.ns("h2"), lab.ns("up"));
    for ns in [&ns_h2, &ns_up] {
        assert!(sh(&["ip", "netns", "add", ns]).status.success());
    }
    let (veth_h2, veth_sw) = (lab.ifname("h2"), lab.ifname("p2"));
    let make_veth = |lab: &mut Lab| {
        let out = sh(&[
            "ip",
            "link",
            "add",
            &veth_h2,
            "netns",
            &ns_h2,
            "address",
            "52:54:00:31:00:0c",
            "type",
            "veth",
            "peer",
            "name",
            &veth_sw,
            "netns",
            &ns_up,
        ]);
        assert!(out.status.success(), "ip link add veth: {out:?}");
        for args in [
            vec!["ip", "addr", "add", "10.13.31.12/24", "dev", &veth_h2],
            vec!["ip", "link", "set", &veth_h2, "up"],
        ] {
            assert!(lab.exec("h2", &args).status.success(), "{args:?}");
        }
    };
    make_veth(&mut lab);
    let mut cfg = lab_config(&mut lab, &[("a", 11, false)], SWITCH);
    cfg.push_str(&format!(
        "\n[[host]]\nname = \"h2\"\nmac = \"52:54:00:31:00:0c\"\nipv4 = \"10.13.31.12\"\n\n\
         [[port]]\nname = \"h2\"\nkind = \"packet\"\nifname = \"{veth_sw}\"\nnetns = \"{ns_up}\"\n\
         host = \"h2\"\n"
    ));
    let if_a = lab.ifname("a");
    lab.start(&cfg, &[("a", &if_a)]);
    // Each fanout socket holds its own promiscuous membership: two sockets, promiscuity 2.
    let attached = |lab: &mut Lab, what: &str| {
        lab.wait_for(what, Duration::from_secs(15), || {
            let out = sh(&["ip", "-d", "-n", &ns_up, "link", "show", "dev", &veth_sw]);
            let text = String::from_utf8_lossy(&out.stdout);
            out.status.success() && text.contains("promiscuity 2") && text.contains(",UP")
        });
    };
    attached(&mut lab, "the packet port attached (two fanout sockets)");
    let mut reached = (0..20).any(|_| lab.ping("h2", "10.13.31.11", 2));
    assert!(reached, "h2 cannot reach a through its packet port");

    assert!(sh(&["ip", "-n", &ns_up, "link", "del", &veth_sw])
        .status
        .success());
    thread::sleep(Duration::from_millis(600));
    make_veth(&mut lab);
    attached(&mut lab, "the packet port attached again");
    reached = (0..20).any(|_| lab.ping("h2", "10.13.31.11", 2));
    assert!(reached, "h2 cannot reach a after its netdev came back");

    for round in 0..2 {
        let port = 5321 + round;
        let server = iperf_server(&mut lab, "a", port);
        iperf_client(&mut lab, "h2", "10.13.31.11", port, &["-P", "8", "-t", "2"]);
        let _ = server.wait_with_output();
    }
    let server = iperf_server(&mut lab, "a", 5331);
    let json = iperf_client(
        &mut lab,
        "h2",
        "10.13.31.11",
        5331,
        &["-u", "-b", "10M", "-l", "1200", "-P", "4", "-t", "2"],
    );
    let _ = server.wait_with_output();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    for s in v["end"]["streams"].as_array().unwrap() {
        assert_eq!(s["udp"]["out_of_order"].as_u64(), Some(0), "reordered: {s}");
    }
    let sum = &v["end"]["sum"];
    let (packets, lost) = (
        sum["packets"].as_u64().unwrap(),
        sum["lost_packets"].as_u64().unwrap(),
    );
    assert!(packets > 1000 && lost * 1000 <= packets, "{sum}");

    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    eprintln!("{}", exit.stdout);
    let by_queue = rx_by(&exit, "queue-", "h2");
    let mut by_worker = rx_by(&exit, "sy-worker-", "h2");
    assert!(
        by_queue[0] > 100 && by_queue[1] > 100,
        "both fanout sockets of h2 carried frames: {by_queue:?}\n{}",
        exit.stdout
    );
    if by_worker[0] != by_queue[0] {
        by_worker.swap(0, 1);
    }
    assert_eq!(by_worker, by_queue, "one worker per fanout socket");
    assert_eq!(exit.counters("h2").downs, 1, "{}", exit.stdout);
}

/// udhcpc's hook in the guest: on a lease, configure it and say so.
const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
  bound|renew)
    ip addr add "$ip/${mask:-24}" dev "$interface"
    echo "SY-LEASE $ip"
    ;;
esac
exit 0
"#;

/// QEMU, killed (only this process) when dropped.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What libvirt does for a multi-queue `<interface type='ethernet'>`: QEMU creates a tap with
/// two queues (`-netdev tap,queues=2`, a virtio-net device with `mq=on`) in a namespace of the
/// test's, and a `multi_queue` packet port attaches to it with one fanout socket per worker.
#[test]
fn a_qemu_multi_queue_tap_is_attached_as_a_fanout_packet_port() {
    let mut lab = Lab::new();
    let ns = lab.ns("qemu");
    assert!(sh(&["ip", "netns", "add", &ns]).status.success());
    let tap = lab.ifname("vmt");
    let mut cfg = lab_config(&mut lab, &[("a", 11, false)], SWITCH);
    cfg.push_str(&format!(
        "\n[[host]]\nname = \"vm\"\nmac = \"52:54:00:31:00:28\"\nipv4 = \"10.13.31.40\"\n\n\
         [[port]]\nname = \"vm\"\nhost = \"vm\"\nkind = \"packet\"\nifname = \"{tap}\"\n\
         netns = \"{ns}\"\n"
    ));
    let if_a = lab.ifname("a");
    lab.start(&cfg, &[("a", &if_a)]);

    let init = guest_init(
        8,
        r#"echo "SY-QUEUES $(ls /sys/class/net/eth0/queues | tr '\n' ' ')"
ping -c 3 -W 2 10.13.31.11 >/dev/null 2>&1 && echo "SY-PING ok" || echo "SY-PING fail"
echo "SY-DONE"
poweroff -f
"#,
    );
    let (kernel, modules) = debian_kernel();
    let initrd = lab.dir.join("initramfs.cpio");
    build_initramfs(&initrd, &modules, &init, UDHCPC_SCRIPT);
    let console = lab.dir.join("console.log");
    let child = Command::new("ip")
        .args(["netns", "exec", &ns, "qemu-system-x86_64"])
        .args(["-accel", "tcg", "-m", "256", "-nodefaults", "-nographic"])
        .args(["-no-reboot", "-monitor", "none", "-serial"])
        .arg(format!("file:{}", console.display()))
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .arg("-netdev")
        .arg(format!(
            "tap,id=n0,ifname={tap},script=no,downscript=no,vhost=off,queues=2"
        ))
        .args([
            "-device",
            "virtio-net-pci,netdev=n0,mac=52:54:00:31:00:28,mq=on,vectors=6,romfile=",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(lab.dir.join("qemu.stderr")).unwrap())
        .spawn()
        .expect("qemu-system-x86_64: install qemu-system-x86 (scripts/test.sh does)");
    let mut qemu = Qemu(child);
    // The tap QEMU made is multi-queue, and the switch attached two fanout sockets to it.
    lab.wait_for(
        "QEMU's tap with the switch's two fanout sockets on it",
        Duration::from_secs(30),
        || {
            let out = sh(&["ip", "-d", "-n", &ns, "link", "show", "dev", &tap]);
            let text = String::from_utf8_lossy(&out.stdout);
            out.status.success() && text.contains("multi_queue") && text.contains("promiscuity 2")
        },
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let log = loop {
        let log = String::from_utf8_lossy(&fs::read(&console).unwrap_or_default()).into_owned();
        if matches!(qemu.0.try_wait(), Ok(Some(_))) || log.contains("SY-DONE") {
            break log;
        }
        let err = fs::read_to_string(lab.dir.join("qemu.stderr")).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "the VM did not finish in 120 s; console:\n{log}\nqemu: {err}"
        );
        thread::sleep(Duration::from_millis(200));
    };
    eprintln!("{log}");
    assert!(
        log.contains("SY-LEASE 10.13.31.40"),
        "no lease; console:\n{log}"
    );
    assert!(
        log.contains("SY-PING ok"),
        "the VM cannot ping a; console:\n{log}"
    );
    drop(qemu);
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    let vm = exit.counters("vm");
    assert!(vm.rx_frames >= 5 && vm.tx_frames >= 5, "{}", exit.stdout);
}
