//! Every lab in `config/examples/` started for real, in namespaces, with one real thing checked
//! in each. Before a start, the example's names are rewritten to the lab's unique ones (network
//! name, namespaces, netdevs, socket paths, state directory, control socket, DNS upstreams), so
//! the tests run in parallel and never collide with a real install; everything else (subnets,
//! addresses, MACs, keys) is the example as a user reads it. Each daemon runs as the shipped
//! systemd unit runs it: under exactly the unit's `CapabilityBoundingSet=`, with
//! `NoNewPrivileges=` (`common::unit::unit_wrapper`), so a capability the unit lacks fails here.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::{sh, unit, Lab};

/// The example's names after the rewrite: for each port, its netdev and namespace.
struct Rewritten {
    text: String,
    ifname: HashMap<String, String>,
    netns: HashMap<String, String>,
}

impl Rewritten {
    fn ifname(&self, port: &str) -> &str {
        &self.ifname[port]
    }

    /// The lab's name of `port`'s namespace without the tag (for `Lab::exec` and `ping`).
    fn host(&self, lab: &Lab, port: &str) -> String {
        self.netns[port]
            .strip_prefix(&format!("{}-", lab.tag))
            .unwrap()
            .to_string()
    }
}

fn table<'a>(t: &'a mut toml::Table, key: &str) -> &'a mut toml::Table {
    t.entry(key)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .unwrap()
}

/// Loads `config/examples/NAME` and gives it the lab's names.
fn rewrite(lab: &mut Lab, name: &str) -> Rewritten {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config/examples")
        .join(name);
    let mut doc: toml::Table = std::fs::read_to_string(&path)
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    table(&mut doc, "network").insert("name".into(), lab.tag.clone().into());
    let socket = lab.control_socket().display().to_string();
    table(&mut doc, "switch").insert("control_socket".into(), socket.into());
    let state = lab.dir.join("state").display().to_string();
    let dhcp = table(&mut doc, "dhcp");
    dhcp.insert("state_dir".into(), state.into());
    dhcp.remove("lease_file");
    if let Some(dns) = doc.get_mut("dns").and_then(toml::Value::as_table_mut) {
        // Nothing here may leave the lab's namespaces, not even a stray query.
        if dns.contains_key("upstreams") {
            dns.insert("upstreams".into(), vec!["192.0.2.53"].into());
        }
        assert!(!dns.contains_key("listen"), "{name}: rewrite [dns] listen");
    }
    assert!(!doc.contains_key("metrics"), "{name}: rewrite [metrics]");

    let (mut ifname, mut netns) = (HashMap::new(), HashMap::new());
    let mut lab_netns: HashMap<String, String> = HashMap::new();
    let ports = doc.get_mut("port").and_then(toml::Value::as_array_mut);
    for (i, port) in ports.into_iter().flatten().enumerate() {
        let port = port.as_table_mut().unwrap();
        let pname = port["name"].as_str().unwrap().to_string();
        if port.contains_key("ifname") {
            let new = lab.ifname(&format!("p{i}"));
            port.insert("ifname".into(), new.clone().into());
            ifname.insert(pname.clone(), new);
        }
        if let Some(old) = port.get("netns").and_then(toml::Value::as_str) {
            let next = lab_netns.len();
            let new = lab_netns
                .entry(old.to_string())
                .or_insert_with(|| lab.ns(&format!("n{next}")))
                .clone();
            port.insert("netns".into(), new.clone().into());
            netns.insert(pname.clone(), new);
        }
        for key in ["path", "peer"] {
            if let Some(old) = port.get(key).and_then(toml::Value::as_str) {
                let file = Path::new(old).file_name().unwrap();
                let new = lab.dir.join(file).display().to_string();
                port.insert(key.into(), new.into());
            }
        }
    }
    Rewritten {
        text: toml::to_string(&doc).unwrap(),
        ifname,
        netns,
    }
}

/// Starts the daemon as `lab.start` does, under the unit's bounding set.
fn start_as_unit(lab: &mut Lab, config: &str, hosts: &[(&str, &str)]) {
    let wrapper = unit::unit_wrapper();
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    lab.start_with(config, hosts, &wrapper);
}

/// `start_as_unit` on the example, waiting for the hosts of `ports`; their (namespace,
/// interface) pairs.
fn start_ports_as_unit(lab: &mut Lab, ex: &Rewritten, ports: &[&str]) -> Vec<(String, String)> {
    let hosts: Vec<(String, String)> = ports
        .iter()
        .map(|p| (ex.host(lab, p), ex.ifname(p).to_string()))
        .collect();
    let waits: Vec<(&str, &str)> = hosts
        .iter()
        .map(|(h, i)| (h.as_str(), i.as_str()))
        .collect();
    start_as_unit(lab, &ex.text, &waits);
    hosts
}

fn ok(out: std::process::Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `args` in the daemon's namespace.
fn in_switch(lab: &Lab, args: &[&str]) -> std::process::Output {
    let ns = lab.switch_ns();
    let mut full = vec!["ip", "netns", "exec", &ns];
    full.extend_from_slice(args);
    sh(&full)
}

/// A namespace of the lab's own (`lab.ns(name)`) with lo up and IPv6 off, holding one end of a
/// veth pair whose other end, `switch_end`, is in the daemon's namespace (down and bare, for a
/// packet port to attach to). The namespace's end gets `mac` and `addr`.
fn veth_host(lab: &mut Lab, name: &str, switch_end: &str, mac: &str, addr: &str) {
    let ns = lab.ns(name);
    ok(sh(&["ip", "netns", "add", &ns]), "ip netns add");
    let end = lab.ifname(&format!("{name}0"));
    let sw = lab.switch_ns();
    ok(
        sh(&[
            "ip", "link", "add", &end, "netns", &ns, "address", mac, "type", "veth", "peer",
            "name", switch_end, "netns", &sw,
        ]),
        "ip link add veth",
    );
    for args in [
        vec!["ip", "link", "set", "lo", "up"],
        vec!["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
        vec!["ip", "addr", "add", addr, "dev", &end],
        vec!["ip", "link", "set", &end, "up"],
    ] {
        ok(lab.exec(name, &args), "veth host setup");
    }
}

/// Pings until every reply of one round comes back (a port may still be attaching).
fn wait_ping(lab: &mut Lab, what: &str, mut ping: impl FnMut(&mut Lab) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !ping(lab) {
        assert!(std::time::Instant::now() < deadline, "{what}: no answer");
    }
}

fn stop_cleanly(lab: &mut Lab) {
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
}

#[test]
fn three_hosts_ping_each_other() {
    let mut lab = Lab::new();
    let ex = rewrite(&mut lab, "three-hosts.toml");
    let hosts: Vec<(String, String)> = ["a", "b", "c"]
        .iter()
        .map(|p| (ex.host(&lab, p), ex.ifname(p).to_string()))
        .collect();
    let waits: Vec<(&str, &str)> = hosts
        .iter()
        .map(|(h, i)| (h.as_str(), i.as_str()))
        .collect();
    start_as_unit(&mut lab, &ex.text, &waits);
    let (a, c) = (ex.host(&lab, "a"), ex.host(&lab, "c"));
    assert!(lab.ping(&a, "10.13.33.12", 3), "a cannot ping b");
    assert!(lab.ping(&c, "10.13.33.11", 3), "c cannot ping a");
    assert!(lab.ping(&c, "10.13.33.1", 2), "c cannot ping the gateway");
    stop_cleanly(&mut lab);
}

#[test]
fn vm_host_reaches_its_vm_and_resolves_its_name() {
    let mut lab = Lab::new();
    let ex = rewrite(&mut lab, "vm-host.toml");
    // vm1 is "QEMU's tap": a veth whose switch end the packet port attaches to.
    veth_host(
        &mut lab,
        "vm1",
        ex.ifname("vm1"),
        "52:54:00:00:34:11",
        "10.13.34.11/24",
    );
    start_as_unit(&mut lab, &ex.text, &[]);
    let (sw, leg) = (lab.switch_ns(), ex.ifname("host").to_string());
    lab.wait_for("the host leg's address", Duration::from_secs(15), || {
        let out = sh(&["ip", "-n", &sw, "-br", "addr", "show", "dev", &leg]);
        String::from_utf8_lossy(&out.stdout).contains("10.13.34.2/24")
    });
    // The NAT table comes a moment after the address (the daemon adds it next): wait for it.
    let table = format!("table inet switchyard_{}", lab.tag);
    lab.wait_for("the NAT table", Duration::from_secs(15), || {
        let out = sh(&["ip", "netns", "exec", &sw, "nft", "list", "tables"]);
        String::from_utf8_lossy(&out.stdout).contains(&table)
    });
    wait_ping(&mut lab, "the host pinging vm1", |lab| {
        let args = ["ping", "-n", "-q", "-c", "2", "-i", "0.1", "-W", "1"];
        in_switch(lab, &[&args[..], &["10.13.34.11"]].concat())
            .status
            .success()
    });
    let name = "vm1.vmnet.test";
    let dig = ok(
        in_switch(&lab, &["dig", "+short", "+time=2", "@10.13.34.1", name]),
        "dig",
    );
    assert_eq!(dig.trim(), "10.13.34.11", "{name} from the host");
    stop_cleanly(&mut lab);
    let tables = ok(in_switch(&lab, &["nft", "list", "tables"]), "nft");
    assert!(!tables.contains("switchyard_"), "{tables}");
}

#[test]
fn lan_uplink_bridges_the_lan_to_a_vm() {
    let mut lab = Lab::new();
    let ex = rewrite(&mut lab, "lan-uplink.toml");
    // The LAN: a namespace behind a veth whose switch end is the uplink "NIC".
    veth_host(
        &mut lab,
        "lan",
        ex.ifname("uplink"),
        "52:54:00:00:35:50",
        "10.13.35.50/24",
    );
    let vm1 = ex.host(&lab, "vm1");
    start_as_unit(&mut lab, &ex.text, &[(&vm1, ex.ifname("vm1"))]);
    wait_ping(&mut lab, "the LAN pinging vm1", |lab| {
        lab.ping("lan", "10.13.35.11", 2)
    });
    assert!(lab.ping(&vm1, "10.13.35.50", 2), "vm1 cannot ping the LAN");
    stop_cleanly(&mut lab);
}

#[test]
fn isolated_clients_reach_the_server_not_each_other() {
    let mut lab = Lab::new();
    let ex = rewrite(&mut lab, "isolated.toml");
    let ports = ["server", "client1", "client2"];
    start_ports_as_unit(&mut lab, &ex, &ports);
    let client1 = ex.host(&lab, "client1");
    assert!(
        lab.ping(&client1, "10.13.32.10", 3),
        "client1 cannot ping the server"
    );
    assert!(
        !lab.ping(&client1, "10.13.32.22", 2),
        "client1 reached client2 across isolation"
    );
    stop_cleanly(&mut lab);
}

#[test]
fn vlan_segments_lease_from_their_own_pool() {
    let mut lab = Lab::new();
    let ex = rewrite(&mut lab, "vlan-segments.toml");
    let ports = ["staff", "office", "guest"];
    let hosts = start_ports_as_unit(&mut lab, &ex, &ports);
    let script = common::clients::udhcpc_script(&lab.dir);
    for ((host, ifname), subnet) in hosts.iter().zip(["10.13.39.", "10.13.40.", "10.13.41."]) {
        let udhcpc = [
            "timeout",
            "30",
            "udhcpc",
            "-i",
            ifname,
            "-n",
            "-q",
            "-f",
            "-t",
            "10",
            "-T",
            "1",
            "-s",
            script.to_str().unwrap(),
        ];
        ok(lab.exec(host, &udhcpc), "udhcpc");
        let out = ok(
            lab.exec(host, &["ip", "-4", "-o", "addr", "show", "dev", ifname]),
            "ip addr",
        );
        assert!(out.contains(&format!("inet {subnet}1")), "{host}: {out}");
    }
    stop_cleanly(&mut lab);
}

/// The harness itself: the same start without one capability the config needs fails, so the
/// examples above really ran under the set they were given.
#[test]
fn without_cap_sys_admin_an_example_with_namespaces_does_not_start() {
    let mut lab = Lab::new();
    let ex = rewrite(&mut lab, "isolated.toml");
    let mut wrapper = unit::unit_wrapper();
    assert!(wrapper[2].contains(",+sys_admin"), "{wrapper:?}");
    wrapper[2] = wrapper[2].replace(",+sys_admin", "");
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    lab.spawn_with(&ex.text, &wrapper);
    let exit = lab.wait_exit(Duration::from_secs(20));
    assert_ne!(exit.code, Some(0), "{exit:?}");
    assert!(
        exit.stderr.contains("netns") && exit.stderr.contains("CAP_SYS_ADMIN"),
        "the error names the namespace and the capability: {}",
        exit.stderr
    );
}
