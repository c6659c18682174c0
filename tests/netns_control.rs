//! The control socket and the CLI against a running daemon: every command (table and JSON),
//! live guard and host changes that real traffic notices, bad requests answered with errors
//! while forwarding carries on, the socket's permissions, capture to pcap read by tcpdump,
//! metrics scraped with curl, sd_notify readiness, and SIGHUP with good and bad configs.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{clients, lab_config, sh, Lab};

const H1_MAC: &str = "52:54:00:31:00:0b";

/// vm1 (.11) and vm2 (.12) on their own taps, `extra` appended to the config.
fn start_two(lab: &mut Lab, extra: &str) -> String {
    let mut cfg = lab_config(lab, &[("vm1", 11, false), ("vm2", 12, false)], "");
    cfg.push_str(extra);
    let (if1, if2) = (lab.ifname("vm1"), lab.ifname("vm2"));
    lab.start(&cfg, &[("vm1", &if1), ("vm2", &if2)]);
    cfg
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The table row whose first column is `first`.
fn row<'a>(table: &'a str, first: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(first))
        .unwrap_or_else(|| panic!("no row {first} in:\n{table}"))
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn every_read_command_answers_with_a_table_and_json() {
    let mut lab = Lab::new();
    start_two(&mut lab, "");
    assert!(lab.ping("vm1", "10.13.31.12", 3));

    let ports = lab.cli_ok(&["ports"]);
    assert!(ports.starts_with("PORT"), "{ports}");
    let vm1 = row(&ports, "vm1");
    for want in [
        "tap",
        "up",
        H1_MAC,
        "10.13.31.11",
        "enforce",
        &lab.ifname("vm1"),
    ] {
        assert!(vm1.contains(want), "{want} missing in: {vm1}");
    }
    assert!(row(&ports, "appliance").contains("10.13.31.1"), "{ports}");
    let pj = json(&lab.cli_ok(&["ports", "--json"]));
    let pj = pj.as_array().unwrap();
    assert_eq!(pj.len(), 3, "vm1, vm2 and the appliance: {pj:?}");
    assert_eq!(pj[0]["name"], "vm1");
    assert_eq!(pj[0]["mac"], H1_MAC);
    assert!(pj[0]["rx_frames"].as_u64().unwrap() >= 3, "{pj:?}");
    assert!(pj[1]["tx_frames"].as_u64().unwrap() >= 3, "{pj:?}");

    let fdb = lab.cli_ok(&["fdb"]);
    let r = row(&fdb, H1_MAC);
    assert!(r.contains("vm1") && r.contains("learned"), "{fdb}");
    assert!(
        fdb.contains("static"),
        "the appliance's MAC is static: {fdb}"
    );
    let fj = json(&lab.cli_ok(&["fdb", "--json"]));
    assert!(
        fj.as_array()
            .unwrap()
            .iter()
            .any(|e| e["mac"] == H1_MAC && e["port"] == "vm1" && e["static"] == false),
        "{fj}"
    );

    // Non-zero counters by default, every one with --all.
    let stats = lab.cli_ok(&["stats", "vm1"]);
    assert!(stats.starts_with("port vm1\n  rx_frames "), "{stats}");
    assert!(
        !stats.contains("drop.spoofed_ip"),
        "a zero counter shown: {stats}"
    );
    assert!(
        stats.contains("counters at zero; --all shows them"),
        "{stats}"
    );
    assert!(!stats.contains("\ndhcp"), "one port asked for: {stats}");
    let stats = lab.cli_ok(&["stats", "vm1", "--all"]);
    assert!(stats.contains("  drop.spoofed_ip "), "{stats}");
    let sj = json(&lab.cli_ok(&["stats", "--json"]));
    let sj = sj.as_array().unwrap();
    assert_eq!(sj.len(), 3);
    assert_eq!(
        sj[0]["drops"].as_array().unwrap().len(),
        switchyard::switch::DropReason::COUNT,
        "every reason, zeros included: {:?}",
        sj[0]
    );
    let out = lab.cli(&["stats", "nosuch"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no port 'nosuch'"),
        "{}",
        stderr(&out)
    );

    // No DHCP client ran: the live lease list is empty, in both forms.
    let leases = lab.cli_ok(&["leases"]);
    assert_eq!(leases.lines().count(), 2, "{leases}");
    assert_eq!(lab.cli_ok(&["leases", "--json"]).trim(), "[]");

    // A DNS query and a DHCP exchange show up in the servers' sections at once, while the
    // daemon runs.
    let dig = lab.exec(
        "vm1",
        &[
            "dig",
            "+short",
            "+time=2",
            "+tries=2",
            "@10.13.31.1",
            "vm2.lab.test",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&dig.stdout).trim(), "10.13.31.12");
    let script = clients::udhcpc_script(&lab.dir);
    assert!(clients::udhcpc(&mut lab, "vm1", &script, "3"));
    let all = lab.cli_ok(&["stats"]);
    let section = |name: &str| -> String {
        all.split(&format!("\n{name}\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("no {name} section:\n{all}"))
            .lines()
            .take_while(|l| l.starts_with("  "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let counter = |section: &str, name: &str| -> u64 {
        section
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{section}"))
    };
    let (dhcp, dns) = (section("dhcp"), section("dns"));
    assert_eq!(counter(&dhcp, "leases"), 1, "{dhcp}");
    assert!(counter(&dhcp, "acks") >= 1, "{dhcp}");
    assert!(counter(&dns, "queries") >= 1, "{dns}");
    assert!(counter(&dns, "local") >= 1, "{dns}");
    let sj = json(&lab.cli_ok(&["stats", "--services", "--json"]));
    assert!(
        sj["dhcp"].as_array().unwrap().len() > 10,
        "every counter: {sj}"
    );
    assert!(sj["dns"]
        .as_array()
        .unwrap()
        .iter()
        .any(|kv| kv[0] == "queries" && kv[1].as_u64() >= Some(1)));

    // A second daemon for the same network is refused at its control socket, before any tap.
    let second = sh(&[
        "nsenter",
        &format!("--net=/run/netns/{}", lab.switch_ns()),
        env!("CARGO_BIN_EXE_switchyard"),
        "run",
        "--config",
        lab.dir.join("switchyard.toml").to_str().unwrap(),
    ]);
    assert!(!second.status.success());
    assert!(stderr(&second).contains("is in use"), "{}", stderr(&second));
    assert!(
        lab.ping("vm1", "10.13.31.12", 1),
        "the first one is undisturbed"
    );

    let reload = lab.cli_ok(&["reload"]);
    assert!(reload.contains("reloaded"), "{reload}");
    let rj = json(&lab.cli_ok(&["reload", "--json"]));
    assert_eq!(rj["ok"], true);

    let exit = lab.stop_with("INT");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    assert!(
        !lab.control_socket().exists(),
        "the socket file is removed at exit"
    );
}

#[test]
fn allow_and_disallow_change_what_the_guard_passes() {
    let mut lab = Lab::new();
    start_two(&mut lab, "");
    let if1 = lab.ifname("vm1");
    let vip = "10.13.31.50";
    assert!(lab
        .exec(
            "vm1",
            &["ip", "addr", "add", &format!("{vip}/24"), "dev", &if1]
        )
        .status
        .success());
    let from_vip = |lab: &mut Lab| {
        lab.exec(
            "vm1",
            &[
                "ping",
                "-n",
                "-q",
                "-c",
                "2",
                "-i",
                "0.1",
                "-W",
                "1",
                "-I",
                vip,
                "10.13.31.12",
            ],
        )
        .status
        .success()
    };
    assert!(!from_vip(&mut lab), "an undeclared address is spoofing");
    let done = lab.cli_ok(&["allow", "vm1", vip]);
    assert!(done.contains("allowed"), "{done}");
    assert!(
        from_vip(&mut lab),
        "allowed live: passes from the next frame"
    );
    assert!(lab.cli_ok(&["ports"]).contains(vip));

    let out = lab.cli(&["allow", "vm1", "10.13.31.0/28"]);
    assert!(!out.status.success(), "a prefix covering the gateway");
    assert!(stderr(&out).contains("gateway"), "{}", stderr(&out));
    let out = lab.cli(&["allow", "vm1", "not-an-address"]);
    assert!(!out.status.success());
    let out = lab.cli(&["allow", "appliance", "10.13.31.77"]);
    assert!(!out.status.success(), "the appliance port is unguarded");

    let before = json(&lab.cli_ok(&["stats", "vm1", "--json"]));
    let spoofed = |v: &serde_json::Value| {
        v[0]["drops"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d[0] == "spoofed_ip")
            .unwrap()[1]
            .as_u64()
            .unwrap()
    };
    let dj = json(&lab.cli_ok(&["disallow", "vm1", vip, "--json"]));
    assert_eq!(dj["ok"], true, "{dj}");
    assert!(!from_vip(&mut lab), "withdrawn live");
    let after = json(&lab.cli_ok(&["stats", "vm1", "--json"]));
    assert!(spoofed(&after) > spoofed(&before), "{before} {after}");
    let out = lab.cli(&["disallow", "vm1", vip]);
    assert!(!out.status.success(), "not declared any more");
    assert!(
        lab.ping("vm1", "10.13.31.12", 2),
        "the reservation still passes"
    );
}

#[test]
fn host_add_makes_a_reservation_udhcpc_can_use() {
    let mut lab = Lab::new();
    let mut cfg = lab_config(&mut lab, &[("vm1", 11, false)], "");
    let (ns4, if4) = (lab.ns("vm4"), lab.ifname("vm4"));
    cfg.push_str(&format!(
        "\n[[port]]\nname = \"vm4\"\nkind = \"tap\"\nifname = \"{if4}\"\nnetns = \"{ns4}\"\n\
         address = \"none\"\n"
    ));
    let if1 = lab.ifname("vm1");
    lab.start(&cfg, &[("vm1", &if1), ("vm4", &if4)]);
    let script = clients::udhcpc_script(&lab.dir);
    let link = lab.exec("vm4", &["ip", "-br", "link", "show", "dev", &if4]);
    let mac = String::from_utf8_lossy(&link.stdout)
        .split_whitespace()
        .nth(2)
        .expect("the tap's MAC")
        .to_string();

    assert!(
        !clients::udhcpc(&mut lab, "vm4", &script, "2"),
        "no reservation and no pool: no address"
    );
    let added = lab.cli_ok(&[
        "host",
        "add",
        "vm4",
        "--mac",
        &mac,
        "--ipv4",
        "10.13.31.44",
        "--extra-ipv4",
        "10.13.31.64/28",
        "--port",
        "vm4",
    ]);
    assert!(added.contains("vm4"), "{added}");
    // DNS follows the host table live: the new reservation's name resolves at the
    // gateway before the host has ever asked for a lease.
    let dig = lab.exec(
        "vm1",
        &[
            "dig",
            "+short",
            "+time=2",
            "+tries=2",
            "@10.13.31.1",
            "vm4.lab.test",
            "A",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&dig.stdout).trim(),
        "10.13.31.44",
        "{dig:?}"
    );
    assert!(
        clients::udhcpc(&mut lab, "vm4", &script, "5"),
        "the new reservation"
    );
    let addr = lab.exec("vm4", &["ip", "-4", "-o", "addr", "show", "dev", &if4]);
    assert!(
        String::from_utf8_lossy(&addr.stdout).contains("10.13.31.44/24"),
        "{addr:?}"
    );
    assert!(
        lab.ping("vm4", "10.13.31.11", 2),
        "the guard passes the new host"
    );

    let leases = lab.cli_ok(&["leases"]);
    assert!(
        leases.contains("10.13.31.44/24") && leases.contains("vm4"),
        "{leases}"
    );
    let lj = json(&lab.cli_ok(&["leases", "--json"]));
    assert_eq!(lj[0]["ipaddr"], "10.13.31.44", "{lj}");
    assert_eq!(lj[0]["port"], "vm4", "{lj}");
    let vm4 = json(&lab.cli_ok(&["ports", "--json"]))[1].clone();
    assert_eq!(vm4["guard"], "enforce", "{vm4}");
    assert_eq!(vm4["mac"], mac.as_str(), "{vm4}");
    let addrs = vm4["addresses"].to_string();
    assert!(
        addrs.contains("10.13.31.64/28") && addrs.contains("10.13.31.44"),
        "{addrs}"
    );

    // Refusals: nothing applied.
    for (args, why) in [
        (
            vec![
                "host",
                "add",
                "vm4",
                "--mac",
                "52:54:00:31:00:99",
                "--ipv4",
                "10.13.31.99",
            ],
            "already exists",
        ),
        (
            vec!["host", "add", "vm5", "--mac", &mac, "--ipv4", "10.13.31.99"],
            "belongs to host",
        ),
        (
            vec![
                "host",
                "add",
                "vm5",
                "--mac",
                "52:54:00:31:00:99",
                "--ipv4",
                "10.13.31.1",
            ],
            "gateway",
        ),
        (
            vec!["host", "add", "vm5", "--mac", "zz", "--ipv4", "10.13.31.99"],
            "MAC",
        ),
        (vec!["host", "del", "vm4"], "remove the port first"),
        (vec!["host", "del", "nosuch"], "no host"),
    ] {
        let out = lab.cli(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(why), "{args:?}: {}", stderr(&out));
    }
    // A host without a port comes and goes.
    lab.cli_ok(&[
        "host",
        "add",
        "vm6",
        "--mac",
        "52:54:00:31:00:66",
        "--ipv4",
        "10.13.31.66",
    ]);
    let dj = json(&lab.cli_ok(&["host", "del", "vm6", "--json"]));
    assert_eq!(dj["ok"], true, "{dj}");
}

/// Sends raw bytes on a fresh connection and reads one reply line.
fn raw(lab: &Lab, bytes: &[u8]) -> serde_json::Value {
    let mut s = UnixStream::connect(lab.control_socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    // The last request may end at EOF instead of a newline.
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    json(&line)
}

#[test]
fn bad_requests_get_error_replies_and_forwarding_carries_on() {
    let mut lab = Lab::new();
    start_two(&mut lab, "");
    for (bytes, kind) in [
        (&b"garbage\n"[..], "bad_request"),
        (b"\xff\xfe\x00\n", "bad_request"),
        (b"[1,2,3]\n", "bad_request"),
        (br#"{"command":"ports"}"#, "version"),
        (b"{\"version\":0,\"command\":\"ports\"}\n", "version"),
        (b"{\"version\":2,\"command\":\"ports\"}\n", "version"),
        (
            b"{\"version\":1,\"command\":\"format_disk\"}\n",
            "unknown_command",
        ),
        (b"{\"version\":1,\"command\":\"allow\"}\n", "bad_argument"),
        (
            b"{\"version\":1,\"command\":\"ports\",\"unexpected\":true}\n",
            "bad_argument",
        ),
    ] {
        let reply = raw(&lab, bytes);
        assert_eq!(reply["error"]["kind"], kind, "{bytes:?}: {reply}");
        assert_eq!(reply["version"], 1);
        assert!(reply["result"].is_null());
    }
    let newer = raw(&lab, b"{\"version\":2,\"command\":\"ports\"}\n");
    assert!(
        newer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("speaks version 1"),
        "{newer}"
    );

    // One connection, several requests: an error does not end the conversation.
    let mut s = UnixStream::connect(lab.control_socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"nonsense\n{\"version\":1,\"command\":\"fdb\"}\n")
        .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let (mut a, mut b) = (String::new(), String::new());
    r.read_line(&mut a).unwrap();
    r.read_line(&mut b).unwrap();
    assert_eq!(json(&a)["error"]["kind"], "bad_request");
    assert_eq!(json(&b)["result"]["type"], "fdb", "{b}");

    // A huge request: refused and the connection closed, without reading it all.
    let mut s = UnixStream::connect(lab.control_socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let huge = vec![b'x'; 1 << 20];
    let _ = s.write_all(&huge);
    let mut reply = String::new();
    let _ = BufReader::new(&s).read_to_string(&mut reply);
    let first = reply.lines().next().unwrap_or_default();
    assert_eq!(json(first)["error"]["kind"], "too_large", "{first}");

    // A client that connects and says nothing does not block others.
    let _silent = UnixStream::connect(lab.control_socket()).unwrap();
    assert!(lab.cli_ok(&["ports"]).contains("vm1"));
    assert!(lab.ping("vm1", "10.13.31.12", 3), "forwarding carried on");
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    assert!(!exit.stdout.contains("panicked") && !exit.stderr.contains("panicked"));
}

#[test]
fn the_socket_refuses_an_unprivileged_user() {
    let mut lab = Lab::new();
    start_two(&mut lab, "");
    let sock = lab.control_socket();
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "{mode:o}");
    let as_nobody = |lab: &Lab| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_switchyard"))
            .args(["ports", "--socket"])
            .arg(lab.control_socket())
            .output()
            .unwrap()
    };
    // The file's mode is the first fence...
    let out = as_nobody(&lab);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("ermission denied"),
        "{}",
        stderr(&out)
    );
    // ... SO_PEERCRED the second, holding even when the mode is opened up.
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_nobody(&lab);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("neither root nor in the control group"),
        "{}",
        stderr(&out)
    );
    assert!(lab.cli_ok(&["ports"]).contains("vm1"), "root still may");
    drop(lab);

    // A member of control_group may.
    let mut lab = Lab::new();
    let mut cfg = lab_config(
        &mut lab,
        &[("vm1", 11, false)],
        "control_group = \"nogroup\"",
    );
    cfg.push('\n');
    let if1 = lab.ifname("vm1");
    lab.start(&cfg, &[("vm1", &if1)]);
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_switchyard"))
        .args(["ports", "--json", "--socket"])
        .arg(lab.control_socket())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("vm1"));
}

#[test]
fn capture_writes_a_pcap_that_tcpdump_reads() {
    let mut lab = Lab::new();
    start_two(&mut lab, "");
    let pcap = lab.dir.join("vm1.pcap");
    let spawn_capture = |lab: &Lab, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["capture", "vm1", "--socket"])
            .arg(lab.control_socket())
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let wait = |mut child: std::process::Child, lab: &mut Lab| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "capture did not end");
            lab.ping("vm1", "10.13.31.12", 1);
        }
        child.wait_with_output().unwrap()
    };
    let child = spawn_capture(&lab, &["-w", pcap.to_str().unwrap(), "--count", "6"]);
    let out = wait(child, &mut lab);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("6 frames captured"),
        "{}",
        stderr(&out)
    );
    let read = sh(&["tcpdump", "-n", "-r", pcap.to_str().unwrap()]);
    assert!(read.status.success(), "{read:?}");
    let text = String::from_utf8_lossy(&read.stdout);
    assert_eq!(text.lines().count(), 6, "{text}");
    assert!(
        text.contains("10.13.31.11 > 10.13.31.12: ICMP echo request"),
        "{text}"
    );
    assert!(
        text.contains("10.13.31.12 > 10.13.31.11: ICMP echo reply"),
        "{text}"
    );

    // `-w -`: pcap on stdout, for a pipe into tcpdump or Wireshark.
    let child = spawn_capture(&lab, &["-w", "-", "--count", "2"]);
    let out = wait(child, &mut lab);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut tcpdump = Command::new("tcpdump")
        .args(["-n", "-r", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tcpdump
        .stdin
        .take()
        .unwrap()
        .write_all(&out.stdout)
        .unwrap();
    let read = tcpdump.wait_with_output().unwrap();
    assert!(read.status.success());
    assert_eq!(String::from_utf8_lossy(&read.stdout).lines().count(), 2);

    // Without -w: one line per frame, both directions.
    let child = spawn_capture(&lab, &["--count", "4"]);
    let out = wait(child, &mut lab);
    let lines = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(lines.lines().count(), 4, "{lines}");
    assert!(lines.contains(" rx ") && lines.contains(" tx "), "{lines}");
    assert!(
        lines.contains("IPv4 10.13.31.11 > 10.13.31.12 icmp"),
        "{lines}"
    );

    // One capture at a time: once the first one shows a frame, a second is refused.
    let ns1 = lab.ns("vm1");
    let mut pinger = Command::new("ip")
        .args([
            "netns", "exec", &ns1, "ping", "-n", "-q", "-c", "100", "-i", "0.1",
        ])
        .arg("10.13.31.12")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = spawn_capture(&lab, &[]);
    // The first frames may be loop probes (one a second on every port) or the hosts' own IPv6
    // chatter: skip up to 20 frames to the first of the ping's.
    let mut reader = BufReader::new(first.stdout.take().unwrap());
    let mut first_line = String::new();
    for _ in 0..20 {
        first_line.clear();
        reader.read_line(&mut first_line).unwrap();
        if first_line.contains("10.13.31.") {
            break;
        }
    }
    assert!(first_line.contains("10.13.31."), "{first_line}");
    let out = lab.cli(&["capture", "vm2", "--count", "1"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("another capture"), "{out:?}");
    let _ = first.kill();
    let _ = first.wait();
    let _ = pinger.kill();
    let _ = pinger.wait();
    let out = lab.cli(&["capture", "nosuch", "--count", "1"]);
    assert!(stderr(&out).contains("no port"), "{}", stderr(&out));
    // The capture of the killed client ends; a new one starts.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let child = spawn_capture(&lab, &["--count", "1"]);
        let out = wait(child, &mut lab);
        if out.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "{}", stderr(&out));
    }
}

#[test]
fn metrics_are_scraped_with_curl() {
    let mut lab = Lab::new();
    let sw = lab.switch_ns();
    assert!(sh(&["ip", "-n", &sw, "link", "set", "lo", "up"])
        .status
        .success());
    // A stale socket file (a daemon killed with -9) is replaced at start.
    drop(std::os::unix::net::UnixListener::bind(lab.control_socket()).unwrap());
    assert!(lab.control_socket().exists());
    start_two(&mut lab, "\n[metrics]\nlisten = \"127.0.0.1:9750\"\n");
    assert!(lab.ping("vm1", "10.13.31.12", 2));
    let curl = |path: &str| {
        sh(&[
            "ip",
            "netns",
            "exec",
            &sw,
            "curl",
            "-s",
            "-w",
            "\n%{http_code}",
            &format!("http://127.0.0.1:9750{path}"),
        ])
    };
    let out = curl("/metrics");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.ends_with("\n200"), "{text}");
    for want in [
        "# TYPE switchyard_port_rx_frames_total counter",
        "switchyard_port_rx_frames_total{port=\"vm1\"}",
        "switchyard_port_drops_total{port=\"vm1\",reason=\"spoofed_ip\"} 0",
        "switchyard_port_up{port=\"vm2\"} 1",
        "switchyard_fdb_entries ",
        "switchyard_dhcp_leases 0",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    let rx: u64 = text
        .lines()
        .find(|l| l.starts_with("switchyard_port_rx_frames_total{port=\"vm1\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(rx >= 2, "{text}");
    assert!(String::from_utf8_lossy(&curl("/nope").stdout).ends_with("404"));

    // A DHCP exchange shows up in the DHCP counters and the lease gauge.
    let script = clients::udhcpc_script(&lab.dir);
    assert!(clients::udhcpc(&mut lab, "vm1", &script, "3"));
    let text = String::from_utf8_lossy(&curl("/metrics").stdout).to_string();
    let value = |name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    };
    // A client may retransmit, so at least one of each; nothing dropped; one lease.
    assert!(value("switchyard_dhcp_replies_total{type=\"offer\"}") >= 1);
    assert!(value("switchyard_dhcp_replies_total{type=\"ack\"}") >= 1);
    assert_eq!(value("switchyard_dhcp_replies_total{type=\"nak\"}"), 0);
    assert!(value("switchyard_dhcp_received_total") >= 2);
    assert_eq!(
        value("switchyard_dhcp_drops_total{reason=\"malformed\"}"),
        0
    );
    assert_eq!(value("switchyard_dhcp_leases"), 1);
    // The DNS server's counts are exported too, live: a query for a local name.
    let dig = lab.exec(
        "vm2",
        &[
            "dig",
            "+short",
            "+time=2",
            "+tries=2",
            "@10.13.31.1",
            "vm1.lab.test",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&dig.stdout).trim(), "10.13.31.11");
    let text = String::from_utf8_lossy(&curl("/metrics").stdout).to_string();
    assert!(
        text.contains("# TYPE switchyard_dns_queries_total counter"),
        "{text}"
    );
    let dns = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    };
    assert!(dns("switchyard_dns_queries_total") >= 1);
    assert!(dns("switchyard_dns_local_total") >= 1);
}

#[test]
fn ready_is_notified_and_sighup_reloads_or_refuses() {
    let mut lab = Lab::new();
    let notify_path = lab.dir.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    lab.env
        .push(("NOTIFY_SOCKET".into(), notify_path.display().to_string()));
    lab.env
        .push(("SWITCHYARD_LOG_FORMAT".into(), "json".into()));
    let cfg = start_two(&mut lab, "");
    let recv = |what: &str| {
        let mut buf = [0u8; 256];
        let n = notify
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no {what}: {e}"));
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(recv("READY"), "READY=1");
    // READY came after the ports: the control socket answers and traffic flows.
    assert!(lab.cli_ok(&["ports"]).contains("vm1"));
    let pid = lab.daemon_pid().to_string();

    // An invalid config: refused, the running one stays.
    lab.write_config("[network]\nname = \"broken\"\n");
    assert!(sh(&["kill", "-HUP", &pid]).status.success());
    assert_eq!(recv("RELOADING"), "RELOADING=1");
    assert_eq!(recv("READY after a refused reload"), "READY=1");
    assert!(lab.ping("vm1", "10.13.31.12", 2));
    let out = lab.cli(&["reload"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("reload refused"), "{}", stderr(&out));
    assert_eq!(recv("RELOADING (command)"), "RELOADING=1");
    assert_eq!(recv("READY (command)"), "READY=1");

    // A [network] change needs a restart: refused as a whole.
    lab.write_config(&cfg.replace("domain = \"lab.test\"", "domain = \"other.test\""));
    let out = lab.cli(&["reload"]);
    assert!(stderr(&out).contains("needs a restart"), "{}", stderr(&out));
    let _ = (recv("RELOADING"), recv("READY"));

    // A host change applies live: vm1 gets an extra address.
    let with_extra = cfg.replacen(
        "ipv4 = \"10.13.31.11\"\n",
        "ipv4 = \"10.13.31.11\"\nextra_ipv4 = [\"10.13.31.51\"]\n",
        1,
    );
    assert_ne!(with_extra, cfg);
    lab.write_config(&with_extra);
    assert!(sh(&["kill", "-HUP", &pid]).status.success());
    let _ = (recv("RELOADING"), recv("READY"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lab.cli_ok(&["ports"]).contains("10.13.31.51") {
        assert!(Instant::now() < deadline, "the reload did not apply");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(lab.ping("vm1", "10.13.31.12", 2));
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0));
    assert_eq!(recv("STOPPING"), "STOPPING=1");
    // The logs were JSON lines: the refusal an ERROR, the reload an INFO.
    let logs: Vec<serde_json::Value> = exit.stderr.lines().map(json).collect();
    let find = |needle: &str| {
        logs.iter()
            .find(|l| {
                l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(needle))
            })
            .unwrap_or_else(|| panic!("no log line with {needle}: {}", exit.stderr))
    };
    assert_eq!(find("reload refused")["level"], "ERROR");
    assert_eq!(find("reloaded")["level"], "INFO");
}
