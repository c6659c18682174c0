//! The host port and NAT, in namespaces. The daemon's namespace plays the VM host: its host
//! port (`host_address`) is the host's leg on the network, and `forward = "nat"` masquerades the
//! subnet behind it. An "outside" namespace behind a veth pair plays the internet, with no route
//! back to the subnet, so a VM's ping there is answered only if it was masqueraded. Every name
//! is the lab's own; the root namespace is never touched.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{clients, lab_config, sh, Lab};

const HOST_LEG: &str = "10.13.31.2";
const VM: &str = "10.13.31.11";
const DAEMON_SIDE: &str = "192.0.2.1";
const OUTSIDE: &str = "192.0.2.2";

/// Runs `args` in the daemon's namespace.
fn in_switch(lab: &Lab, args: &[&str]) -> std::process::Output {
    let ns = lab.switch_ns();
    let mut full = vec!["ip", "netns", "exec", &ns];
    full.extend_from_slice(args);
    sh(&full)
}

fn ok(out: std::process::Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn nft_tables(lab: &Lab) -> String {
    ok(
        in_switch(lab, &["nft", "list", "tables"]),
        "nft list tables",
    )
}

fn ip_forward(lab: &Lab) -> String {
    let out = in_switch(lab, &["cat", "/proc/sys/net/ipv4/ip_forward"]);
    ok(out, "read ip_forward").trim().to_string()
}

/// The daemon's namespace with forwarding off, and the outside namespace on a veth pair:
/// 192.0.2.1 in the daemon's namespace, 192.0.2.2 outside. Returns the outside's ifname.
/// tcpdump in the outside namespace, two packets of `filter` on `iface` (at most 20 s); it is
/// killed when dropped, so a failing test leaves no capture behind.
struct Capture(std::process::Child);

impl Capture {
    fn start(lab: &mut Lab, iface: &str, filter: &str) -> Capture {
        let out_ns = lab.ns("out");
        let mut child = Command::new("ip")
            .args([
                "netns", "exec", &out_ns, "timeout", "20", "tcpdump", "-l", "-n",
            ])
            .args(["-i", iface, "-c", "2", filter])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump");
        // tcpdump says "listening on ..." once its capture is open.
        let started = BufReader::new(child.stderr.take().unwrap())
            .lines()
            .take(3)
            .map_while(Result::ok)
            .any(|l| l.contains("listening on"));
        let capture = Capture(child);
        assert!(started, "tcpdump did not start in the outside namespace");
        capture
    }

    /// What it printed, once it has seen its packets or timed out.
    fn seen(mut self) -> String {
        let mut seen = String::new();
        self.0
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut seen)
            .unwrap();
        let _ = self.0.wait();
        seen
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn make_outside(lab: &mut Lab) -> String {
    ok(
        in_switch(lab, &["sysctl", "-qw", "net.ipv4.ip_forward=0"]),
        "ip_forward=0",
    );
    let out_ns = lab.ns("out");
    ok(sh(&["ip", "netns", "add", &out_ns]), "ip netns add");
    let (here, there) = (lab.ifname("o0"), lab.ifname("o1"));
    let sw = lab.switch_ns();
    ok(
        sh(&[
            "ip", "link", "add", &here, "netns", &sw, "type", "veth", "peer", "name", &there,
            "netns", &out_ns,
        ]),
        "ip link add veth",
    );
    let d = format!("{DAEMON_SIDE}/24");
    ok(
        in_switch(lab, &["ip", "addr", "add", &d, "dev", &here]),
        "addr",
    );
    ok(in_switch(lab, &["ip", "link", "set", &here, "up"]), "up");
    let o = format!("{OUTSIDE}/24");
    for args in [
        vec!["ip", "link", "set", "lo", "up"],
        vec!["ip", "addr", "add", &o, "dev", &there],
        vec!["ip", "link", "set", &there, "up"],
    ] {
        ok(lab.exec("out", &args), "outside setup");
    }
    there
}

/// The lab's config with NAT on, a host port at 10.13.31.2/24, VM `vm` (static .11) and VM
/// `dh` (reservation .12, left bare for a DHCP client), plus `extra` at the end.
fn nat_config(lab: &mut Lab, extra: &str) -> String {
    let mut cfg = lab_config(lab, &[("vm", 11, false)], "").replacen(
        "domain = \"lab.test\"\n",
        "domain = \"lab.test\"\nforward = \"nat\"\n",
        1,
    );
    let (dh_ns, dh_if, hp) = (lab.ns("dh"), lab.ifname("dh"), lab.ifname("hp"));
    cfg.push_str(&format!(
        "\n[[host]]\nname = \"dh\"\nmac = \"52:54:00:31:00:0c\"\nipv4 = \"10.13.31.12\"\n\
         \n[[port]]\nname = \"dh\"\nkind = \"tap\"\nifname = \"{dh_if}\"\nhost = \"dh\"\n\
         netns = \"{dh_ns}\"\naddress = \"none\"\n\
         \n[[port]]\nname = \"host\"\nkind = \"tap\"\nifname = \"{hp}\"\n\
         host_address = \"{HOST_LEG}/24\"\n{extra}"
    ));
    cfg
}

/// Waits until the host port is up with its address in the daemon's namespace.
fn wait_host_leg(lab: &mut Lab) {
    let (sw, hp) = (lab.switch_ns(), lab.ifname("hp"));
    lab.wait_for("the host port's address", Duration::from_secs(15), || {
        // A tap's operstate reads UNKNOWN; the flags say UP.
        let link = sh(&["ip", "-n", &sw, "-br", "link", "show", "dev", &hp]);
        let addr = sh(&["ip", "-n", &sw, "-br", "addr", "show", "dev", &hp]);
        String::from_utf8_lossy(&link.stdout).contains(",UP")
            && String::from_utf8_lossy(&addr.stdout).contains(&format!("{HOST_LEG}/24"))
    });
}

#[test]
fn host_reaches_vm_and_vm_reaches_outside_through_nat() {
    let mut lab = Lab::new();
    let outside_if = make_outside(&mut lab);
    let cfg = nat_config(&mut lab, "");
    let (vm_if, dh_if) = (lab.ifname("vm"), lab.ifname("dh"));
    lab.start(&cfg, &[("vm", &vm_if), ("dh", &dh_if)]);
    wait_host_leg(&mut lab);
    let table = format!("table inet switchyard_{}", lab.tag);
    // The daemon loads its table, then turns ip_forward on, after the host leg is up: give
    // both a moment rather than race the second, then check them.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !(nft_tables(&lab).contains(&table) && ip_forward(&lab) == "1")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(nft_tables(&lab).contains(&table), "{}", nft_tables(&lab));
    assert_eq!(ip_forward(&lab), "1");

    // `switchyard ports` shows the host leg's address on its row.
    let ports = lab.cli_ok(&["ports"]);
    let row = ports.lines().find(|l| l.starts_with("host ")).unwrap_or("");
    assert!(row.contains(HOST_LEG), "{ports}");

    // The host leg and the VM reach each other, both ways.
    assert!(lab.ping("vm", HOST_LEG, 3), "VM cannot ping the host leg");
    let host_ping = in_switch(
        &lab,
        &["ping", "-n", "-q", "-c", "3", "-i", "0.05", "-W", "1", VM],
    );
    assert!(
        host_ping.status.success(),
        "host cannot ping the VM: {host_ping:?}"
    );

    // The outside has no route back to the subnet: only a masqueraded ping gets an answer.
    let no_route = lab.exec("out", &["ip", "route", "get", VM]);
    assert!(!no_route.status.success(), "outside has a route to {VM}");
    ok(
        lab.exec("vm", &["ip", "route", "add", "default", "via", HOST_LEG]),
        "default route",
    );
    let tcpdump = Capture::start(&mut lab, &outside_if, "icmp[icmptype] == icmp-echo");
    assert!(lab.ping("vm", OUTSIDE, 3), "VM cannot reach the outside");
    let seen = tcpdump.seen();
    assert!(
        seen.contains(&format!("{DAEMON_SIDE} > {OUTSIDE}: ICMP echo request")),
        "the outside did not see masqueraded requests:\n{seen}"
    );
    assert!(
        !seen.contains(VM),
        "the VM's own address leaked out:\n{seen}"
    );

    // A DHCP client on the network is told the host leg is its router.
    let script = lab.dir.join("udhcpc-router");
    let router_file = lab.dir.join("router");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$1\" in bound|renew)\n  echo \"$router\" > {}\n  \
             ip addr add \"$ip/$mask\" dev \"$interface\";;\nesac\nexit 0\n",
            router_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(
        clients::udhcpc(&mut lab, "dh", &script, "5"),
        "udhcpc got no lease"
    );
    let router = std::fs::read_to_string(&router_file).unwrap();
    assert_eq!(router.trim(), HOST_LEG, "DHCP router option");

    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    assert!(
        exit.stderr.contains("nat: table removed"),
        "{}",
        exit.stderr
    );
    // The harness removes the daemon's namespace only when the lab drops: it is still here.
    assert!(common::netns_exists(&lab.switch_ns()));
    assert!(!nft_tables(&lab).contains(&table), "{}", nft_tables(&lab));
    assert_eq!(ip_forward(&lab), "0", "ip_forward not restored");
}

#[test]
fn a_stale_table_is_replaced_and_a_failed_start_removes_it() {
    let mut lab = Lab::new();
    ok(
        in_switch(&lab, &["sysctl", "-qw", "net.ipv4.ip_forward=0"]),
        "ip_forward=0",
    );
    // What a daemon killed with -9 leaves behind, with a chain of its own.
    let table = format!("switchyard_{}", lab.tag);
    ok(
        in_switch(&lab, &["nft", "add", "table", "inet", &table]),
        "nft add table",
    );
    ok(
        in_switch(&lab, &["nft", "add", "chain", "inet", &table, "stale"]),
        "nft add chain",
    );
    // And the `ip` table a daemon from before IPv6 forwarding left.
    ok(
        in_switch(&lab, &["nft", "add", "table", "ip", &table]),
        "nft add table ip",
    );
    // The metrics address is on no interface of the daemon's namespace: the start fails after
    // NAT is installed.
    let cfg = nat_config(&mut lab, "\n[metrics]\nlisten = \"192.0.2.99:9750\"\n");
    lab.spawn(&cfg);
    let exit = lab.wait_exit(Duration::from_secs(20));
    assert_ne!(exit.code, Some(0), "{exit:?}");
    assert!(exit.stderr.contains("metrics"), "{}", exit.stderr);
    assert!(
        exit.stderr.contains("nat: forwarding the subnet"),
        "NAT was not installed (the stale table must be replaced): {}",
        exit.stderr
    );
    assert!(
        exit.stderr.contains("nat: table removed"),
        "{}",
        exit.stderr
    );
    assert!(!nft_tables(&lab).contains(&table), "{}", nft_tables(&lab));
    assert_eq!(ip_forward(&lab), "0", "ip_forward not restored");
}

#[test]
fn without_nft_the_start_fails_and_names_the_package() {
    let mut lab = Lab::new();
    // A PATH holding only nsenter (which starts the daemon): no nft to be found.
    let bin = lab.dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let nsenter = ok(sh(&["sh", "-c", "command -v nsenter"]), "nsenter");
    std::os::unix::fs::symlink(nsenter.trim(), bin.join("nsenter")).unwrap();
    lab.env.push(("PATH".into(), bin.display().to_string()));
    let cfg = nat_config(&mut lab, "");
    lab.spawn(&cfg);
    let exit = lab.wait_exit(Duration::from_secs(20));
    assert_ne!(exit.code, Some(0), "{exit:?}");
    assert!(
        exit.stderr.contains("nft command is not installed")
            && exit.stderr.contains("nftables package"),
        "{}",
        exit.stderr
    );
    // Nothing of the lab is left in the daemon's namespace: the taps went with the daemon.
    assert!(lab.switch_links().is_empty(), "{:?}", lab.switch_links());
}

fn iptables_forward(lab: &Lab) -> String {
    ok(
        in_switch(lab, &["iptables", "-w", "-S", "FORWARD"]),
        "iptables -S FORWARD",
    )
}

/// Waits until the daemon's table is loaded and forwarding is on.
fn wait_forwarding(lab: &mut Lab, table: &str) {
    let (sw, t) = (lab.switch_ns(), format!("table inet {table}"));
    lab.wait_for(
        "the daemon's table and ip_forward",
        Duration::from_secs(15),
        || {
            let tables = sh(&["ip", "netns", "exec", &sw, "nft", "list", "tables"]);
            let fwd = sh(&[
                "ip",
                "netns",
                "exec",
                &sw,
                "cat",
                "/proc/sys/net/ipv4/ip_forward",
            ]);
            String::from_utf8_lossy(&tables.stdout).contains(&t)
                && String::from_utf8_lossy(&fwd.stdout).trim() == "1"
        },
    );
}

#[test]
fn nat_passes_a_drop_forward_policy_and_takes_its_iptables_rules_away() {
    let mut lab = Lab::new();
    make_outside(&mut lab);
    // What ufw or Docker leave on a VM host: iptables' FORWARD chain dropping by default.
    ok(
        in_switch(&lab, &["iptables", "-w", "-P", "FORWARD", "DROP"]),
        "iptables -P FORWARD DROP",
    );
    let cfg = nat_config(&mut lab, "");
    let (vm_if, dh_if) = (lab.ifname("vm"), lab.ifname("dh"));
    lab.start(&cfg, &[("vm", &vm_if), ("dh", &dh_if)]);
    wait_host_leg(&mut lab);
    let table = format!("switchyard_{}", lab.tag);
    wait_forwarding(&mut lab, &table);
    let rules = iptables_forward(&lab);
    assert_eq!(
        rules.matches(&format!("--comment {table}")).count(),
        2,
        "{rules}"
    );
    ok(
        lab.exec("vm", &["ip", "route", "add", "default", "via", HOST_LEG]),
        "default route",
    );
    assert!(lab.ping("vm", OUTSIDE, 3), "the DROP policy stopped the VM");
    // Only replies come in: the outside, given a route to the subnet, cannot open a flow.
    let route = format!("10.13.31.0/24 via {DAEMON_SIDE}");
    let mut args = vec!["ip", "route", "add"];
    args.extend(route.split(' '));
    ok(lab.exec("out", &args), "route to the subnet");
    assert!(
        !lab.ping("out", VM, 2),
        "NAT let a new flow in from outside"
    );

    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    let rules = iptables_forward(&lab);
    assert!(!rules.contains("switchyard"), "rules left behind:\n{rules}");
    assert!(
        rules.contains("-P FORWARD DROP"),
        "the policy is the host's: {rules}"
    );
    assert_eq!(ip_forward(&lab), "0", "ip_forward not restored");
}

/// A second daemon started by hand in the lab's switch namespace; killed if still running.
struct Neighbour(Option<std::process::Child>);

impl Neighbour {
    fn stop(&mut self) {
        let mut child = self.0.take().expect("running");
        sh(&["kill", "-TERM", &child.id().to_string()]);
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while child.try_wait().unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "neighbour did not stop"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Neighbour {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn route_routes_unchanged_and_ip_forward_waits_for_the_last_network() {
    let mut lab = Lab::new();
    make_outside(&mut lab);
    let cfg = nat_config(&mut lab, "").replacen("forward = \"nat\"", "forward = \"route\"", 1);
    let (vm_if, dh_if) = (lab.ifname("vm"), lab.ifname("dh"));
    lab.start(&cfg, &[("vm", &vm_if), ("dh", &dh_if)]);
    wait_host_leg(&mut lab);
    let table = format!("switchyard_{}", lab.tag);
    wait_forwarding(&mut lab, &table);
    let listing = ok(
        in_switch(&lab, &["nft", "list", "table", "inet", &table]),
        "nft list table",
    );
    assert!(!listing.contains("masquerade"), "{listing}");
    assert!(listing.contains("ip_forward_was=0"), "{listing}");
    // Routed both ways, addresses unchanged: the outside reaches the VM by its own address.
    ok(
        lab.exec("vm", &["ip", "route", "add", "default", "via", HOST_LEG]),
        "default route",
    );
    ok(
        lab.exec(
            "out",
            &["ip", "route", "add", "10.13.31.0/24", "via", DAEMON_SIDE],
        ),
        "route to the subnet",
    );
    assert!(
        lab.ping("out", VM, 3),
        "the outside cannot reach the routed VM"
    );
    assert!(
        lab.ping("vm", OUTSIDE, 2),
        "the VM cannot reach the outside"
    );

    // A second network in the same namespace, open mode: forwarding is already on.
    let name = format!("{}b", lab.tag);
    let b_cfg = lab.dir.join("b.toml");
    std::fs::write(
        &b_cfg,
        format!(
            "[network]\nname = \"{name}\"\nsubnet = \"10.13.41.0/24\"\ngateway = \"10.13.41.1\"\n\
             domain = \"b.test\"\nforward = \"open\"\n[dhcp]\nstate_dir = \"{}\"\n\
             [switch]\ncontrol_socket = \"{}\"\n[[port]]\nname = \"host\"\nkind = \"tap\"\n\
             ifname = \"{}\"\nhost_address = \"10.13.41.2/24\"\n",
            lab.dir.join("b-state").display(),
            lab.dir.join("b.sock").display(),
            lab.ifname("hb"),
        ),
    )
    .unwrap();
    let mut b = Neighbour(Some(
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", lab.switch_ns()))
            .arg(env!("CARGO_BIN_EXE_switchyard"))
            .args(["run", "--config"])
            .arg(&b_cfg)
            .env("SWITCHYARD_RUN_DIR", lab.dir.join("run"))
            .env("SWITCHYARD_RESOLV_CONF", "")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    let b_table = format!("switchyard_{name}");
    wait_forwarding(&mut lab, &b_table);
    let b_listing = ok(
        in_switch(&lab, &["nft", "list", "table", "inet", &b_table]),
        "nft list table",
    );
    assert!(
        !b_listing.contains("chain"),
        "open adds no rules: {b_listing}"
    );
    assert!(
        b_listing.contains("ip_forward_was=0"),
        "the original value is handed on: {b_listing}"
    );

    // The first stops: the second still forwards, so ip_forward stays on.
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    assert!(
        exit.stderr.contains("ip_forward stays on"),
        "{}",
        exit.stderr
    );
    let t = format!("table inet {table}");
    assert!(
        !nft_tables(&lab).lines().any(|l| l.trim() == t),
        "{}",
        nft_tables(&lab)
    );
    assert_eq!(
        ip_forward(&lab),
        "1",
        "ip_forward reset under a running network"
    );
    // The last one stops: the value from before either is back.
    b.stop();
    assert!(
        !nft_tables(&lab).contains("switchyard_"),
        "{}",
        nft_tables(&lab)
    );
    assert_eq!(
        ip_forward(&lab),
        "0",
        "ip_forward not restored by the last network"
    );
}

const DAEMON_SIDE6: &str = "fd00:99::1";
const OUTSIDE6: &str = "fd00:99::2";
/// The VM's SLAAC (EUI-64) address from its MAC 52:54:00:31:00:0b.
const VM_SLAAC: &str = "fd00:13:31:0:5054:ff:fe31:b";

fn ip6_forward(lab: &Lab) -> String {
    let out = in_switch(lab, &["cat", "/proc/sys/net/ipv6/conf/all/forwarding"]);
    ok(out, "read ipv6 forwarding").trim().to_string()
}

/// `make_outside` with IPv6 too: fd00:99::1 in the daemon's namespace, fd00:99::2 outside,
/// IPv6 forwarding off in the daemon's namespace.
fn make_outside6(lab: &mut Lab) -> String {
    let there = make_outside(lab);
    ok(
        in_switch(lab, &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=0"]),
        "ipv6 forwarding=0",
    );
    let here = lab.ifname("o0");
    let d = format!("{DAEMON_SIDE6}/64");
    ok(
        in_switch(lab, &["ip", "addr", "add", &d, "dev", &here, "nodad"]),
        "addr6",
    );
    let o = format!("{OUTSIDE6}/64");
    ok(
        lab.exec("out", &["ip", "addr", "add", &o, "dev", &there, "nodad"]),
        "outside addr6",
    );
    there
}

/// Waits until the VM has its SLAAC address past DAD and a default route from the RA.
fn wait_slaac_and_default_route(lab: &mut Lab) {
    let ns = lab.ns("vm");
    lab.wait_for(
        "the VM's SLAAC address and IPv6 default route",
        Duration::from_secs(40),
        || {
            let addr = sh(&["ip", "-n", &ns, "-6", "addr", "show"]);
            let route = sh(&["ip", "-n", &ns, "-6", "route", "show", "default"]);
            let addr = String::from_utf8_lossy(&addr.stdout).to_string();
            addr.lines()
                .any(|l| l.contains(&format!("inet6 {VM_SLAAC}/64")) && !l.contains("tentative"))
                && String::from_utf8_lossy(&route.stdout).contains("via fe80::1 ")
        },
    );
}

/// `nat_config` with `forward = MODE`, `subnet6` and SLAAC router advertisements.
fn nat6_config(lab: &mut Lab, mode: &str) -> String {
    nat_config(lab, "").replacen(
        "forward = \"nat\"\n",
        &format!(
            "forward = \"{mode}\"\nsubnet6 = \"fd00:13:31::/64\"\ngateway6 = \"fd00:13:31::1\"\n\n\
             [ra]\nmode = \"slaac\"\ninterval = \"30s\"\n"
        ),
        1,
    )
}

#[test]
fn route_carries_ipv6_unchanged() {
    let mut lab = Lab::new();
    make_outside6(&mut lab);
    let cfg = nat6_config(&mut lab, "route");
    let (vm_if, dh_if) = (lab.ifname("vm"), lab.ifname("dh"));
    lab.start(&cfg, &[("vm", &vm_if), ("dh", &dh_if)]);
    wait_host_leg(&mut lab);
    let table = format!("switchyard_{}", lab.tag);
    wait_forwarding(&mut lab, &table);
    let listing = ok(
        in_switch(&lab, &["nft", "list", "table", "inet", &table]),
        "nft list table",
    );
    assert!(
        !listing.contains("masquerade") && listing.contains("ip6 daddr fd00:13:31::/64 accept"),
        "{listing}"
    );
    wait_slaac_and_default_route(&mut lab);
    // Routed, addresses unchanged: the outside reaches the VM's SLAAC address by a route.
    ok(
        lab.exec(
            "out",
            &[
                "ip",
                "-6",
                "route",
                "add",
                "fd00:13:31::/64",
                "via",
                DAEMON_SIDE6,
            ],
        ),
        "route to the subnet6",
    );
    let ping = lab.exec(
        "out",
        &[
            "ping", "-6", "-n", "-c", "3", "-i", "0.2", "-W", "2", VM_SLAAC,
        ],
    );
    assert!(
        ping.status.success(),
        "the outside cannot ping6 the routed VM: {ping:?}"
    );
}

#[test]
fn a_slaac_vm_reaches_the_outside_over_ipv6_through_nat66() {
    let mut lab = Lab::new();
    let outside_if = make_outside6(&mut lab);
    let cfg = nat6_config(&mut lab, "nat");
    let (vm_if, dh_if) = (lab.ifname("vm"), lab.ifname("dh"));
    lab.start(&cfg, &[("vm", &vm_if), ("dh", &dh_if)]);
    wait_host_leg(&mut lab);
    let table = format!("switchyard_{}", lab.tag);
    wait_forwarding(&mut lab, &table);
    let sw = lab.switch_ns();
    lab.wait_for("IPv6 forwarding on", Duration::from_secs(15), || {
        let out = sh(&[
            "ip",
            "netns",
            "exec",
            &sw,
            "cat",
            "/proc/sys/net/ipv6/conf/all/forwarding",
        ]);
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    });
    // One table for both families: the IPv6 masquerade sits beside the IPv4 one.
    let listing = ok(
        in_switch(&lab, &["nft", "list", "table", "inet", &table]),
        "nft list table",
    );
    assert!(
        listing.contains("ip6 saddr fd00:13:31::/64") && listing.contains("ip6_forward_was=0"),
        "{listing}"
    );
    // The RA names the host leg (fe80::1) as the default router: the kernel takes it.
    wait_slaac_and_default_route(&mut lab);

    let no_route = lab.exec("out", &["ip", "-6", "route", "get", VM_SLAAC]);
    assert!(
        !String::from_utf8_lossy(&no_route.stdout).contains("via"),
        "the outside must have no route back to the subnet: {no_route:?}"
    );
    let tcpdump = Capture::start(&mut lab, &outside_if, "icmp6 and ip6[40] == 128");
    let ping = lab.exec(
        "vm",
        &[
            "ping", "-6", "-n", "-c", "3", "-i", "0.2", "-W", "2", OUTSIDE6,
        ],
    );
    assert!(
        ping.status.success(),
        "VM cannot ping6 the outside: {ping:?}"
    );
    let seen = tcpdump.seen();
    assert!(
        seen.contains(&format!("{DAEMON_SIDE6} > {OUTSIDE6}: ICMP6, echo request")),
        "the outside did not see masqueraded IPv6 requests:\n{seen}"
    );
    assert!(
        !seen.contains("fd00:13:31:"),
        "the VM's own address leaked out:\n{seen}"
    );

    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    assert!(!nft_tables(&lab).contains(&table), "{}", nft_tables(&lab));
    assert_eq!(ip6_forward(&lab), "0", "IPv6 forwarding not restored");
    assert_eq!(ip_forward(&lab), "0", "ip_forward not restored");
}
