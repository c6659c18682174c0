//! Live changes to a loaded config (what `switchyard host`, `allow`, `disallow` and `reload`
//! do before anything reaches the guard or DHCP): the file's rules hold, refusals change
//! nothing, and host indices stay consistent.

use std::net::Ipv4Addr;

use ipnet::IpNet;
use switchyard::control::config::{self, dhcp_params, Config, Guard, NewHost};
use switchyard::wire::MacAddr;

const TEXT: &str = r#"
[network]
name = "t"
subnet = "10.0.0.0/24"
gateway = "10.0.0.1"
domain = "t.test"

[[host]]
name = "vm1"
mac = "52:54:00:00:00:11"
ipv4 = "10.0.0.11"

[[host]]
name = "vm2"
mac = "52:54:00:00:00:12"
ipv4 = "10.0.0.12"

[[port]]
name = "p2"
kind = "tap"
ifname = "sy-p2"
host = "vm2"

[[port]]
name = "p4"
kind = "tap"
ifname = "sy-p4"
"#;

fn cfg() -> Config {
    config::parse(TEXT, "t.toml").unwrap()
}

fn host(name: &str, mac: u8, ip: u8, port: Option<&str>) -> NewHost {
    NewHost {
        name: name.into(),
        mac: MacAddr([0x52, 0x54, 0, 0, 0, mac]),
        ipv4: Ipv4Addr::new(10, 0, 0, ip),
        extra_ipv4: vec!["10.0.0.64/28".parse().unwrap()],
        port: port.map(str::to_string),
    }
}

#[track_caller]
fn refused(
    before: &Config,
    after: &Config,
    r: Result<impl std::fmt::Debug, config::LiveError>,
    needle: &str,
) {
    let e = r.expect_err("refused");
    assert!(e.0.contains(needle), "{:?} lacks {needle:?}", e.0);
    assert_eq!(before, after, "a refusal changes nothing");
}

#[test]
fn add_host_binds_the_port_and_reserves_for_dhcp() {
    let mut c = cfg();
    assert_eq!(c.ports[1].guard, Guard::Off);
    assert_eq!(
        c.add_host(host("vm4", 0x44, 44, Some("p4"))).unwrap(),
        Some(1)
    );
    assert_eq!(c.ports[1].host, Some(2));
    assert_eq!(c.ports[1].guard, Guard::Enforce);
    let policy = c.ports[1].policy(&c).unwrap();
    assert!(policy.allows_mac(MacAddr([0x52, 0x54, 0, 0, 0, 0x44])));
    assert!(policy.allows_ipv4(Ipv4Addr::new(10, 0, 0, 44)));
    assert!(
        policy.allows_ipv4(Ipv4Addr::new(10, 0, 0, 70)),
        "the extra prefix"
    );
    assert!(!policy.allows_ipv4(Ipv4Addr::new(10, 0, 0, 11)));
    let res = dhcp_params(&c).reservations;
    assert!(res
        .iter()
        .any(|r| r.name == "vm4" && r.ipv4 == Ipv4Addr::new(10, 0, 0, 44)));
    // Without a port: a reservation only.
    assert_eq!(c.add_host(host("vm5", 0x45, 45, None)).unwrap(), None);
}

#[test]
fn add_host_keeps_the_files_rules() {
    let c = cfg();
    for (new, needle) in [
        (host("vm1", 0x44, 44, None), "already exists"),
        (host("Bad_Name", 0x44, 44, None), "host name"),
        (host("vm4", 0x11, 44, None), "belongs to host 'vm1'"),
        (host("vm4", 0x44, 11, None), "reserved for host 'vm1'"),
        (host("vm4", 0x44, 1, None), "gateway"),
        (host("vm4", 0x44, 0, None), "network address"),
        (host("vm4", 0x44, 44, Some("p2")), "already has host 'vm2'"),
        (host("vm4", 0x44, 44, Some("nope")), "no port 'nope'"),
    ] {
        let mut after = c.clone();
        let r = after.add_host(new);
        refused(&c, &after, r, needle);
    }
    // With a host port at .2: its address and the port itself are not a guest's.
    let with_leg = config::parse(
        &format!(
            "{TEXT}\n[[port]]\nname = \"leg\"\nkind = \"tap\"\nifname = \"sy-leg\"\n\
             host_address = \"10.0.0.2/24\"\n"
        ),
        "t.toml",
    )
    .unwrap();
    for (new, needle) in [
        (host("vm4", 0x44, 2, None), "host port's address"),
        (host("vm4", 0x44, 44, Some("leg")), "is the host port"),
    ] {
        let mut after = with_leg.clone();
        let r = after.add_host(new);
        refused(&with_leg, &after, r, needle);
    }
    let mut bad = host("vm4", 0x44, 44, None);
    bad.mac = MacAddr([0x01, 0, 0x5e, 0, 0, 1]);
    let mut after = c.clone();
    let r = after.add_host(bad);
    refused(&c, &after, r, "unicast");
    let mut bad = host("vm4", 0x44, 44, None);
    bad.extra_ipv4 = vec!["10.0.0.0/24".parse().unwrap()];
    let mut after = c.clone();
    let r = after.add_host(bad);
    refused(&c, &after, r, "covers the gateway");
}

#[test]
fn remove_host_keeps_port_indices_right() {
    let mut c = cfg();
    let r = c.remove_host("vm2");
    let before = cfg();
    refused(&before, &c, r, "remove the port first");
    c.remove_host("vm1").unwrap();
    assert_eq!(c.hosts.len(), 1);
    assert_eq!(c.ports[0].host, Some(0), "p2 still points at vm2");
    assert_eq!(c.hosts[0].name, "vm2");
    let r = c.clone().remove_host("vm1");
    assert!(r.unwrap_err().0.contains("no host"));
}

#[test]
fn allow_and_disallow_edit_the_hosts_extras() {
    let mut c = cfg();
    let v4: IpNet = "10.0.0.50/32".parse().unwrap();
    let v6: IpNet = "fd00::50/128".parse().unwrap();
    assert_eq!(c.allow_extra("p2", v4).unwrap(), 0);
    assert_eq!(c.allow_extra("p2", v6).unwrap(), 0);
    let policy = c.ports[0].policy(&c).unwrap();
    assert!(policy.allows_ipv4(Ipv4Addr::new(10, 0, 0, 50)));
    assert!(policy.allows_ipv6("fd00::50".parse().unwrap()));
    for (port, net, needle) in [
        ("p2", v4, "already allowed"),
        ("p4", v4, "not guarded"),
        ("p9", v4, "no port"),
        ("p2", "10.0.0.0/30".parse().unwrap(), "covers the gateway"),
        ("p2", "10.0.0.51/24".parse().unwrap(), "host bits"),
        ("p2", "224.0.0.5/32".parse().unwrap(), "unicast"),
    ] {
        let mut after = c.clone();
        let r = after.allow_extra(port, net);
        refused(&c, &after, r, needle);
    }
    c.disallow_extra("p2", v4).unwrap();
    assert!(!c.ports[0]
        .policy(&c)
        .unwrap()
        .allows_ipv4(Ipv4Addr::new(10, 0, 0, 50)));
    let mut after = c.clone();
    let r = after.disallow_extra("p2", v4);
    refused(&c, &after, r, "not an extra address");
    let r = after.disallow_extra("p2", "10.0.0.12/32".parse().unwrap());
    refused(&c, &after, r, "not an extra address");
}

#[test]
fn a_reload_may_change_hosts_guards_and_ports_only() {
    let c = cfg();
    let hosts_changed = config::parse(
        &TEXT.replace(
            "ipv4 = \"10.0.0.12\"",
            "ipv4 = \"10.0.0.22\"\nextra_ipv4 = [\"10.0.0.99\"]",
        ),
        "t.toml",
    )
    .unwrap();
    c.live_difference(&hosts_changed).unwrap();
    let guard_off = config::parse(
        &TEXT.replace("host = \"vm2\"", "host = \"vm2\"\nguard = false"),
        "t.toml",
    )
    .unwrap();
    c.live_difference(&guard_off).unwrap();
    assert_eq!(c.port_changes(&guard_off), (vec![], vec![]));
    // Ports re-plumbed, renamed or added apply live: removed from the old, added from the new.
    let p4 = c.ports.iter().position(|p| p.name == "p4").unwrap();
    for text in [
        TEXT.replace("ifname = \"sy-p4\"", "ifname = \"sy-p5\""),
        TEXT.replace("name = \"p4\"", "name = \"p5\""),
    ] {
        let new = config::parse(&text, "t.toml").unwrap();
        c.live_difference(&new).unwrap();
        let q4 = new
            .ports
            .iter()
            .position(|p| p.kind.ifname() == Some("sy-p5") || p.name == "p5")
            .unwrap();
        assert_eq!(c.port_changes(&new), (vec![p4], vec![q4]), "{text}");
    }
    for (text, needle) in [
        (
            TEXT.replace("domain = \"t.test\"", "domain = \"u.test\""),
            "[network]",
        ),
        (format!("{TEXT}\n[switch]\nageing = \"10s\"\n"), "[switch]"),
        (format!("{TEXT}\n[dhcp]\nlease_time = \"2h\"\n"), "[dhcp]"),
        (
            TEXT.replace(
                "domain = \"t.test\"",
                "domain = \"t.test\"\nsubnet6 = \"fd00:1::/64\"\ngateway6 = \"fd00:1::1\"",
            ),
            "subnet6, gateway6, [ra] or [dhcp6]",
        ),
        (
            format!("{TEXT}\n[metrics]\nlisten = \"127.0.0.1:9\"\n"),
            "metrics",
        ),
    ] {
        let new = config::parse(&text, "t.toml").unwrap();
        let e = c.live_difference(&new).unwrap_err();
        assert!(e.0.contains(needle) && e.0.contains("restart"), "{}", e.0);
    }
}

#[test]
fn control_keys_default_and_validate() {
    let c = cfg();
    assert_eq!(c.control.socket.to_str(), Some("/run/switchyard/t.sock"));
    assert_eq!(
        (c.control.group.as_deref(), c.control.metrics),
        (None, None)
    );
    let text = format!("{TEXT}\n[metrics]\nlisten = \"127.0.0.1:9750\"\n").replacen(
        "[[host]]",
        "[switch]\ncontrol_socket = \"/tmp/x.sock\"\ncontrol_group = \"switchyard\"\n\n[[host]]",
        1,
    );
    let c = config::parse(&text, "t.toml").unwrap();
    assert_eq!(c.control.socket.to_str(), Some("/tmp/x.sock"));
    assert_eq!(c.control.group.as_deref(), Some("switchyard"));
    assert_eq!(c.control.metrics, Some("127.0.0.1:9750".parse().unwrap()));
    for (keys, needle) in [
        ("control_socket = \"relative.sock\"", "absolute"),
        ("control_group = \"bad group\"", "control_group"),
    ] {
        let text = TEXT.replacen("[[host]]", &format!("[switch]\n{keys}\n\n[[host]]"), 1);
        let e = config::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(e.contains(needle) && e.starts_with("t.toml:"), "{e}");
    }
    let e = config::parse(
        &format!("{TEXT}\n[metrics]\nlisten = \"nowhere\"\n"),
        "t.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("[metrics]: listen"), "{e}");
}
