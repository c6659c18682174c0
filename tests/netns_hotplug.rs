//! Port hotplug against a running daemon: `switchyard port add|del` and a reload that adds and
//! removes ports, while two hosts ping each other in the background through ports that are not
//! touched. Every namespace is the lab's (unique names, removed on drop).
//!
//! The background ping must lose nothing: plugging and unplugging other ports takes the port
//! table's write lock only for an assignment (or for the end of a batch in flight), never
//! flushes the FDB entries of other ports, and never closes their fds.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{clients, lab_config, netns_exists, sh, Lab};

/// `ping -i 0.05 -c COUNT` from `host` to `addr`, in the background.
fn background_ping(lab: &mut Lab, host: &str, addr: &str, count: u32) -> Child {
    let ns = lab.ns(host);
    Command::new("ip")
        .args(["netns", "exec", &ns, "ping", "-n", "-q", "-i", "0.05", "-c"])
        .arg(count.to_string())
        .arg(addr)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ping")
}

/// Waits for the background ping; (transmitted, received).
fn ping_result(child: Child) -> (u64, u64) {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary in:\n{text}"));
    let n = |i: usize| -> u64 { line.split_whitespace().nth(i).unwrap().parse().unwrap() };
    (n(0), n(3))
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Waits until `ifname` is up in namespace `ns`.
fn wait_up(lab: &mut Lab, ns: &str, ifname: &str) {
    lab.wait_for(
        &format!("{ifname} up in {ns}"),
        Duration::from_secs(15),
        || {
            if !netns_exists(ns) {
                return false;
            }
            let out = sh(&["ip", "-n", ns, "-br", "link", "show", "dev", ifname]);
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("UP")
        },
    );
}

/// The first column of every row of `switchyard ports`.
fn port_names(lab: &Lab) -> Vec<String> {
    lab.cli_ok(&["ports"])
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// ARPs for `target` over a QEMU-framed stream connection; true once an answer comes back.
fn stream_resolves(s: &mut UnixStream, mac: [u8; 6], ip: [u8; 4], target: [u8; 4]) -> bool {
    let f = common::arp_request(mac, ip, target);
    let mut wire = (f.len() as u32).to_be_bytes().to_vec();
    wire.extend_from_slice(&f);
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    for _ in 0..10 {
        s.write_all(&wire).unwrap();
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            match s.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return false,
            }
            while buf.len() >= 4 {
                let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
                if buf.len() < 4 + len {
                    break;
                }
                let frame: Vec<u8> = buf.drain(..4 + len).skip(4).collect();
                let is_reply = frame.len() >= 42
                    && frame[12..14] == [0x08, 0x06]
                    && frame[20..22] == [0, 2]
                    && frame[28..32] == target;
                if is_reply {
                    return true;
                }
            }
        }
    }
    false
}

/// Waits (bounded) for the switch to close a stream connection.
fn wait_closed(s: &mut UnixStream) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut chunk = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) => return true,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            _ => {}
        }
    }
    false
}

#[test]
fn ports_are_added_and_removed_while_others_keep_pinging() {
    let mut lab = Lab::new();
    let cfg = lab_config(&mut lab, &[("vm1", 11, false), ("vm2", 12, false)], "");
    let (if1, if2) = (lab.ifname("vm1"), lab.ifname("vm2"));
    lab.start(&cfg, &[("vm1", &if1), ("vm2", &if2)]);
    // vm1 holds a lease from before the hotplugging; it must survive it.
    let script = clients::udhcpc_script(&lab.dir);
    assert!(clients::udhcpc(&mut lab, "vm1", &script, "3"));
    assert!(lab.ping("vm1", "10.13.31.12", 2));
    let ping = background_ping(&mut lab, "vm1", "10.13.31.12", 160);

    // A tap port in a new namespace for a new host, as a VM's start hook would add it.
    let (ns3, if3) = (lab.ns("vm3"), lab.ifname("vm3"));
    lab.cli_ok(&[
        "host",
        "add",
        "vm3",
        "--mac",
        "52:54:00:31:00:0d",
        "--ipv4",
        "10.13.31.13",
    ]);
    let added = lab.cli_ok(&[
        "port", "add", "vm3", "--kind", "tap", "--ifname", &if3, "--netns", &ns3, "--host", "vm3",
    ]);
    assert!(added.contains("port vm3 added"), "{added}");
    wait_up(&mut lab, &ns3, &if3);
    assert!(port_names(&lab).contains(&"vm3".to_string()));
    assert!(clients::udhcpc(&mut lab, "vm3", &script, "3"));
    let addr = sh(&["ip", "-n", &ns3, "-4", "-br", "addr", "show", "dev", &if3]);
    assert!(
        String::from_utf8_lossy(&addr.stdout).contains("10.13.31.13/24"),
        "{addr:?}"
    );
    assert!(lab.ping("vm3", "10.13.31.11", 3));
    assert!(lab.ping("vm3", "10.13.31.12", 3));

    // Bad requests: error replies, nothing applied.
    for (args, needle) in [
        (
            vec![
                "port",
                "add",
                "vm3",
                "--kind",
                "tap",
                "--ifname",
                "syx-other",
            ],
            "already exists",
        ),
        (
            vec![
                "port",
                "add",
                &"n".repeat(40),
                "--kind",
                "stream",
                "--path",
                "/run/x.sock",
            ],
            "1 to 32 characters",
        ),
        (
            vec![
                "port",
                "add",
                "vm9",
                "--kind",
                "tap",
                "--ifname",
                "sy-much-too-long-name",
            ],
            "ifname",
        ),
        (
            vec![
                "port",
                "add",
                "vm9",
                "--kind",
                "vhost",
                "--path",
                "/run/x.sock",
            ],
            "kind 'vhost' is not known",
        ),
        (
            vec!["port", "add", "vm9", "--kind", "tap", "--ifname", &if1],
            "taken by port 'vm1'",
        ),
        (
            vec![
                "port", "add", "vm9", "--kind", "tap", "--ifname", "syx9", "--host", "ghost",
            ],
            "host 'ghost' is not defined",
        ),
        (vec!["port", "del", "vm9"], "no port 'vm9'"),
    ] {
        let out = lab.cli(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
    assert!(!port_names(&lab).contains(&"vm9".to_string()));

    // Unplugged: the tap goes, and the namespace the daemon created for it.
    let removed = lab.cli_ok(&["port", "del", "vm3"]);
    assert!(removed.contains("port vm3 removed"), "{removed}");
    lab.wait_for("vm3's namespace removed", Duration::from_secs(5), || {
        !netns_exists(&ns3)
    });
    assert!(!port_names(&lab).contains(&"vm3".to_string()));
    // Its lease is the client's, not the port's: still there for when the VM comes back.
    let leases = lab.cli_ok(&["leases"]);
    assert!(leases.contains("10.13.31.13"), "{leases}");

    // A stream port: a QEMU peer reaches vm1 through it; unplugged, the peer is cut off and
    // the socket file is gone.
    let sock = lab.dir.join("s1.sock");
    let sock_str = sock.to_str().unwrap().to_string();
    lab.cli_ok(&["port", "add", "s1", "--kind", "stream", "--path", &sock_str]);
    let dup = lab.cli(&["port", "add", "s2", "--kind", "stream", "--path", &sock_str]);
    assert!(
        stderr(&dup).contains("in use by port 's1'"),
        "{}",
        stderr(&dup)
    );
    let mut peer = UnixStream::connect(&sock).unwrap();
    let mac = [0x52, 0x54, 0, 0x31, 0, 0x21];
    assert!(stream_resolves(
        &mut peer,
        mac,
        [10, 13, 31, 33],
        [10, 13, 31, 11]
    ));
    lab.cli_ok(&["port", "del", "s1"]);
    assert!(wait_closed(&mut peer), "the switch kept the stream open");
    assert!(!Path::new(&sock).exists());
    // The slot is free again: the same name and path plug in again.
    lab.cli_ok(&["port", "add", "s1", "--kind", "stream", "--path", &sock_str]);
    let mut peer = UnixStream::connect(&sock).unwrap();
    assert!(stream_resolves(
        &mut peer,
        mac,
        [10, 13, 31, 33],
        [10, 13, 31, 12]
    ));

    let (sent, received) = ping_result(ping);
    assert_eq!(
        (sent, received),
        (160, 160),
        "the background ping lost packets"
    );
    let leases = lab.cli_ok(&["leases"]);
    assert!(leases.contains("10.13.31.11"), "{leases}");
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
}

#[test]
fn reload_adds_and_removes_ports_without_touching_the_others() {
    let mut lab = Lab::new();
    let hosts = [("vm1", 11, false), ("vm2", 12, false), ("vm3", 13, false)];
    let cfg = lab_config(&mut lab, &hosts, "");
    let (if1, if2, if3) = (lab.ifname("vm1"), lab.ifname("vm2"), lab.ifname("vm3"));
    lab.start(&cfg, &[("vm1", &if1), ("vm2", &if2), ("vm3", &if3)]);
    let script = clients::udhcpc_script(&lab.dir);
    assert!(clients::udhcpc(&mut lab, "vm1", &script, "3"));
    assert!(lab.ping("vm1", "10.13.31.12", 2));
    let ns1 = lab.ns("vm1");
    let tap1 = || sh(&["ip", "-n", &ns1, "-o", "link", "show", "dev", &if1]).stdout;
    let tap1_before = tap1();
    let ping = background_ping(&mut lab, "vm1", "10.13.31.12", 100);
    std::thread::sleep(Duration::from_millis(500));
    let rx_before = rx_frames(&lab, "vm1");

    // vm3 goes, vm4 comes; vm1 and vm2 are the same as before.
    let (ns3, ns4, if4) = (lab.ns("vm3"), lab.ns("vm4"), lab.ifname("vm4"));
    let next = lab_config(
        &mut lab,
        &[("vm1", 11, false), ("vm2", 12, false), ("vm4", 14, false)],
        "",
    );
    lab.write_config(&next);
    let out = lab.cli_ok(&["reload"]);
    assert!(out.contains("1 added, 1 removed"), "{out}");
    // vm1's port was not re-opened: its counters went on (a new port starts from zero) and
    // its tap is the same netdev (same ifindex).
    assert!(rx_frames(&lab, "vm1") >= rx_before);
    assert_eq!(tap1(), tap1_before);
    wait_up(&mut lab, &ns4, &if4);
    lab.wait_for("vm3's namespace removed", Duration::from_secs(5), || {
        !netns_exists(&ns3)
    });
    assert!(lab.ping("vm4", "10.13.31.11", 3));
    let names = port_names(&lab);
    assert!(names.contains(&"vm4".to_string()) && !names.contains(&"vm3".to_string()));

    // An invalid config is refused; what runs stays.
    lab.write_config(&next.replace("kind = \"tap\"", "kind = \"vhost\""));
    let out = lab.cli(&["reload"]);
    assert!(stderr(&out).contains("reload refused"), "{}", stderr(&out));
    assert!(lab.ping("vm4", "10.13.31.12", 2));
    // A valid config whose new port cannot be opened (its namespace does not exist), and
    // that removes vm4: refused, vm4 is back in service, the new port is not there.
    let missing = format!("{}-nope", lab.tag);
    let broken = lab_config(&mut lab, &[("vm1", 11, false), ("vm2", 12, false)], "")
        + &format!(
            "\n[[port]]\nname = \"up\"\nkind = \"packet\"\nifname = \"eth9\"\n\
             netns = \"{missing}\"\n"
        );
    lab.write_config(&broken);
    let out = lab.cli(&["reload"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("port up"), "{}", stderr(&out));
    wait_up(&mut lab, &ns4, &if4);
    assert!(lab.ping("vm4", "10.13.31.12", 3));
    let names = port_names(&lab);
    assert!(names.contains(&"vm4".to_string()) && !names.contains(&"up".to_string()));

    let (sent, received) = ping_result(ping);
    assert_eq!(
        (sent, received),
        (100, 100),
        "the background ping lost packets"
    );
    // vm1's lease is still there.
    let leases = lab.cli_ok(&["leases"]);
    assert!(leases.contains("10.13.31.11"), "{leases}");
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
}

/// `rx_frames` of `port` from `switchyard stats PORT --json`.
fn rx_frames(lab: &Lab, port: &str) -> u64 {
    let text = lab.cli_ok(&["stats", port, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v[0]["rx_frames"]
        .as_u64()
        .unwrap_or_else(|| panic!("{text}"))
}

/// What a libvirt hook does for `<interface type='ethernet'>`: the VM's netdev exists (here a
/// veth whose far end plays the VM), and `port add --kind packet` attaches the switch to it;
/// `port del` lets go of it without deleting a netdev the daemon did not make.
#[test]
fn a_packet_port_attaches_to_an_existing_netdev_and_lets_go() {
    let mut lab = Lab::new();
    let cfg = lab_config(&mut lab, &[("vm1", 11, false)], "");
    let if1 = lab.ifname("vm1");
    lab.start(&cfg, &[("vm1", &if1)]);
    let ns5 = lab.ns("vm5");
    assert!(sh(&["ip", "netns", "add", &ns5]).status.success());
    let (guest, vnet) = (lab.ifname("g5"), lab.ifname("vnet5"));
    let out = sh(&[
        "ip",
        "link",
        "add",
        &guest,
        "netns",
        &ns5,
        "address",
        "52:54:00:31:00:0f",
        "type",
        "veth",
        "peer",
        "name",
        &vnet,
        "netns",
        &lab.switch_ns(),
    ]);
    assert!(out.status.success(), "ip link add veth: {out:?}");
    for args in [
        vec!["ip", "addr", "add", "10.13.31.15/24", "dev", &guest],
        vec!["ip", "link", "set", &guest, "up"],
    ] {
        assert!(lab.exec("vm5", &args).status.success(), "{args:?}");
    }
    lab.cli_ok(&[
        "host",
        "add",
        "vm5",
        "--mac",
        "52:54:00:31:00:0f",
        "--ipv4",
        "10.13.31.15",
    ]);
    lab.cli_ok(&[
        "port", "add", "vm5", "--kind", "packet", "--ifname", &vnet, "--host", "vm5",
    ]);
    let mut reached = false;
    for _ in 0..20 {
        if lab.ping("vm5", "10.13.31.11", 2) {
            reached = true;
            break;
        }
    }
    assert!(reached, "vm5 cannot reach vm1 through its packet port");
    // The guard holds on a hotplugged port as on a configured one: a spoofed source is dropped.
    let spoofed = lab.exec(
        "vm5",
        &["ip", "addr", "add", "10.13.31.99/24", "dev", &guest],
    );
    assert!(spoofed.status.success());
    let from_99 = lab.exec(
        "vm5",
        &[
            "ping",
            "-n",
            "-q",
            "-c",
            "2",
            "-W",
            "1",
            "-I",
            "10.13.31.99",
            "10.13.31.11",
        ],
    );
    assert!(!from_99.status.success(), "a spoofed source got through");
    let stats: serde_json::Value =
        serde_json::from_str(&lab.cli_ok(&["stats", "vm5", "--json"])).unwrap();
    let spoofed_ip = stats[0]["drops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d[0] == "spoofed_ip")
        .and_then(|d| d[1].as_u64());
    assert!(spoofed_ip >= Some(2), "{stats}");

    lab.cli_ok(&["port", "del", "vm5"]);
    assert!(!lab.ping("vm5", "10.13.31.11", 2));
    // The netdev is the VM's, not the daemon's: it stays.
    let still = sh(&["ip", "-n", &lab.switch_ns(), "link", "show", "dev", &vnet]);
    assert!(still.status.success(), "the daemon deleted {vnet}");
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
}
