//! The DHCP config keys: `[dhcp]`, `client_id` and `match` on hosts; defaults, file:line errors,
//! and the mapping onto the server's `DhcpParams`.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use switchyard::control::config::{self, dhcp_params, Config, ConfigError, HostMatch};
use switchyard::service::dhcp::{KeyMode, RateLimit, Reservation};
use switchyard::wire::MacAddr;

/// Lines 2-6.
const NETWORK: &str = r#"
[network]
name = "t"
subnet = "10.0.0.0/24"
gateway = "10.0.0.1"
domain = "t.test"
mtu = 9000
"#;

/// `NETWORK` then `extra`, whose first line is line 9.
fn with(extra: &str) -> Result<Config, ConfigError> {
    config::parse(&format!("{NETWORK}\n{extra}"), "t.toml")
}

/// A `[dhcp]` section (line 9) whose keys start on line 10.
fn dhcp(keys: &str) -> Result<Config, ConfigError> {
    with(&format!("[dhcp]\n{keys}\n"))
}

#[track_caller]
fn assert_err(r: Result<Config, ConfigError>, line: usize, needles: &[&str]) {
    match r {
        Err(ConfigError::Invalid { location, message }) => {
            assert_eq!(location, format!("t.toml:{line}"), "{message}");
            for n in needles {
                assert!(message.contains(n), "{message:?} lacks {n:?}");
            }
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

#[test]
fn defaults_without_a_dhcp_section() {
    let c = with("").unwrap();
    let d = &c.dhcp;
    assert!(d.enabled);
    assert_eq!(d.pool, None);
    assert_eq!(d.lease_time, Some(Duration::from_secs(3600)));
    assert_eq!(d.key, KeyMode::Mac);
    assert_eq!(d.max_leases_per_port, 4);
    assert_eq!(d.state_dir, PathBuf::from("/var/lib/switchyard/t"));
    assert_eq!(d.lease_file, PathBuf::from("/var/lib/switchyard/t/leases"));
    assert_eq!(
        d.journal_path(),
        PathBuf::from("/var/lib/switchyard/t/leases.journal")
    );
    assert_eq!(d.dns, [ip("10.0.0.1")]);
    assert_eq!(d.search, ["t.test"]);
    // An empty section is the same as none.
    assert_eq!(dhcp("").unwrap().dhcp, c.dhcp);
}

#[test]
fn every_key() {
    let c = dhcp(
        "enabled = false\npool = [\"10.0.0.100\", \"10.0.0.199\"]\nlease_time = \"infinite\"\n\
         key = \"client-id\"\nmax_leases_per_port = 16\nstate_dir = \"/tmp/sy\"\n\
         lease_file = \"/run/sy.leases\"\ndns = [\"9.9.9.9\", \"10.0.0.2\"]\n\
         search = [\"Lab.Test.\", \"example.org\"]",
    )
    .unwrap();
    let d = &c.dhcp;
    assert!(!d.enabled);
    assert_eq!(d.pool, Some((ip("10.0.0.100"), ip("10.0.0.199"))));
    assert_eq!(d.lease_time, None);
    assert_eq!(d.key, KeyMode::ClientId);
    assert_eq!(d.max_leases_per_port, 16);
    assert_eq!(d.state_dir, PathBuf::from("/tmp/sy"));
    assert_eq!(d.lease_file, PathBuf::from("/run/sy.leases"));
    assert_eq!(d.journal_path(), PathBuf::from("/tmp/sy/leases.journal"));
    assert_eq!(d.dns, [ip("9.9.9.9"), ip("10.0.0.2")]);
    assert_eq!(d.search, ["lab.test", "example.org"]);

    let d = dhcp("state_dir = \"/srv/x\"\ndns = []\nsearch = []")
        .unwrap()
        .dhcp;
    assert_eq!(d.lease_file, PathBuf::from("/srv/x/leases"));
    assert!(d.dns.is_empty() && d.search.is_empty());
}

#[test]
fn lease_time_forms() {
    for (text, want) in [
        ("\"2m\"", Some(120)),
        ("\"120s\"", Some(120)),
        ("\"1h\"", Some(3600)),
        ("86400", Some(86400)),
        ("\"infinite\"", None),
    ] {
        let d = dhcp(&format!("lease_time = {text}")).unwrap().dhcp;
        assert_eq!(d.lease_time, want.map(Duration::from_secs), "{text}");
    }
    for bad in [
        "\"119s\"",
        "\"1m\"",
        "0",
        "\"0\"",
        "\"forever\"",
        "true",
        "-5",
    ] {
        assert_err(
            dhcp(&format!("lease_time = {bad}")),
            10,
            &["[dhcp]", "lease_time", "2 minutes", "\"infinite\""],
        );
    }
}

#[test]
fn rate_limit_forms() {
    // Default: 10 requests a second per port, burst 20 (DhcpParams::new's).
    let c = with("").unwrap();
    assert_eq!(c.dhcp.rate_limit, Some(10));
    let p = dhcp_params(&c);
    assert_eq!(
        p.rate_limit,
        Some(RateLimit {
            per_sec: 10,
            burst: 20
        })
    );
    assert_eq!(
        p.rate_limit,
        switchyard::service::dhcp::DhcpParams::new(ip("10.0.0.1"), "10.0.0.0/24".parse().unwrap())
            .rate_limit
    );

    let c = dhcp("rate_limit = 5000").unwrap();
    assert_eq!(c.dhcp.rate_limit, Some(5000));
    assert_eq!(
        dhcp_params(&c).rate_limit,
        Some(RateLimit {
            per_sec: 5000,
            burst: 10000
        })
    );
    let c = dhcp("rate_limit = 1000000").unwrap();
    assert_eq!(c.dhcp.rate_limit, Some(1_000_000));

    let c = dhcp("rate_limit = \"off\"").unwrap();
    assert_eq!(c.dhcp.rate_limit, None);
    assert_eq!(dhcp_params(&c).rate_limit, None);

    let cases: &[(&str, &[&str])] = &[
        (
            "rate_limit = 0",
            &["[dhcp]", "rate_limit 0 is out of range", "\"off\""],
        ),
        ("rate_limit = -3", &["rate_limit -3 is out of range"]),
        (
            "rate_limit = 1000001",
            &["rate_limit 1000001 is out of range", "1000000"],
        ),
        (
            "rate_limit = \"fast\"",
            &["rate_limit 'fast' is not a number"],
        ),
        ("rate_limit = \"100\"", &["rate_limit '100'"]),
        ("rate_limit = 1.5", &["rate_limit is a float"]),
        ("rate_limit = true", &["rate_limit is a boolean"]),
    ];
    for (keys, needles) in cases {
        assert_err(dhcp(keys), 10, needles);
    }
}

#[test]
fn dhcp_errors_have_file_and_line() {
    let cases: &[(&str, &[&str])] = &[
        ("pool = [\"10.0.0.100\"]", &["[dhcp]", "pool has 1 entries"]),
        ("pool = [\"10.0.0.200\", \"10.0.0.100\"]", &["swap"]),
        (
            "pool = [\"10.0.0.0\", \"10.0.0.100\"]",
            &["pool start", "network address"],
        ),
        (
            "pool = [\"10.0.0.100\", \"10.0.1.5\"]",
            &["pool end 10.0.1.5", "outside"],
        ),
        (
            "pool = [\"10.0.0.100\", \"10.0.0.255\"]",
            &["pool end", "broadcast"],
        ),
        (
            "pool = [\"10.0.0.1\", \"10.0.0.50\"]",
            &["contains the gateway 10.0.0.1"],
        ),
        ("pool = [\"x\", \"10.0.0.50\"]", &["pool start 'x'"]),
        ("key = \"uuid\"", &["key 'uuid'", "\"client-id\""]),
        ("max_leases_per_port = 0", &["max_leases_per_port 0"]),
        (
            "state_dir = \"var/lib\"",
            &["state_dir 'var/lib'", "absolute"],
        ),
        (
            "lease_file = \"leases\"",
            &["lease_file 'leases'", "absolute"],
        ),
        (
            "lease_file = \"/var/lib/switchyard/t/leases.journal\"",
            &["journal"],
        ),
        ("dns = [\"1.2.3\"]", &["dns '1.2.3'"]),
        ("dns = [\"224.0.0.1\"]", &["dns '224.0.0.1'", "unicast"]),
        ("search = [\"a..b\"]", &["search 'a..b'", "empty label"]),
        ("bogus = 1", &["unknown key `bogus`"]),
        ("enabled = \"yes\"", &["[dhcp]", "key 'enabled'"]),
    ];
    for (keys, needles) in cases {
        assert_err(dhcp(keys), 10, needles);
    }
    let many = (0..17).map(|i| format!("\"10.0.0.{}\"", i + 2));
    assert_err(
        dhcp(&format!(
            "dns = [\n{}\n]",
            many.collect::<Vec<_>>().join(",\n")
        )),
        27,
        &["dns has more than 16"],
    );
}

#[test]
fn host_match_and_client_id() {
    let c = with(
        "[[host]]\nname = \"a\"\nmac = \"52:54:00:00:00:01\"\nipv4 = \"10.0.0.11\"\n\
         [[host]]\nname = \"b\"\nmac = \"52:54:00:00:00:02\"\n\
         client_id = \"01:52:54:00:00:00:02\"\n\
         ipv4 = \"10.0.0.12\"\n\
         [[host]]\nname = \"c\"\nmatch = \"hostname\"\nipv4 = \"10.0.0.13\"\n\
         [[host]]\nname = \"d\"\nmatch = \"client-id\"\nclient_id = \"ff:00:01\"\n\
         mac = \"52:54:00:00:00:04\"\n",
    )
    .unwrap();
    let got: Vec<_> = c
        .hosts
        .iter()
        .map(|h| (h.mac, h.client_id.clone(), h.match_by))
        .collect();
    assert_eq!(
        got,
        [
            (Some(mac("52:54:00:00:00:01")), None, HostMatch::Mac),
            (
                Some(mac("52:54:00:00:00:02")),
                Some(vec![1, 0x52, 0x54, 0, 0, 0, 2]),
                HostMatch::ClientId
            ),
            (None, None, HostMatch::Hostname),
            (
                Some(mac("52:54:00:00:00:04")),
                Some(vec![0xff, 0, 1]),
                HostMatch::ClientId
            ),
        ]
    );
}

#[test]
fn host_errors_have_file_and_line() {
    // [[host]] on line 9, name on 10, the key under test on 11.
    let host = |keys: &str| with(&format!("[[host]]\nname = \"h\"\n{keys}\n"));
    assert_err(
        host("ipv4 = \"10.0.0.5\""),
        9,
        &["host 'h'", "missing key 'mac'", "hostname"],
    );
    assert_err(
        host("match = \"client-id\""),
        11,
        &["host 'h'", "needs a client_id"],
    );
    assert_err(
        host("match = \"uuid\""),
        11,
        &["match 'uuid'", "\"hostname\""],
    );
    assert_err(
        host("client_id = \"01\""),
        11,
        &["client_id '01'", "1 bytes"],
    );
    assert_err(
        host("client_id = \"01:zz\""),
        11,
        &["client_id '01:zz'", "hex"],
    );
    assert_err(host("client_id = \"1:02\""), 11, &["client_id '1:02'"]);
    assert_err(
        host("match = \"mac\"\nmac = \"52:54:00:00:00:01\"\nclient_id = \"01:02\""),
        13,
        &["client_id is only used with match = \"client-id\""],
    );
    assert_err(
        host("match = \"hostname\"\nmac = \"01:00:5e:00:00:01\""),
        12,
        &["mac", "multicast"],
    );
    // Client ids are unique, reported at the second.
    assert_err(
        with(
            "[[host]]\nname = \"a\"\nclient_id = \"01:02\"\nmac = \"52:54:00:00:00:01\"\n\
             [[host]]\nname = \"b\"\nclient_id = \"01:02\"\nmac = \"52:54:00:00:00:02\"\n",
        ),
        15,
        &["host 'b'", "client_id '01:02'", "line 11"],
    );
}

#[test]
fn a_host_without_mac_needs_an_unguarded_port() {
    let text = "[[host]]\nname = \"h\"\nmatch = \"hostname\"\n\
                [[port]]\nname = \"p\"\nkind = \"tap\"\nifname = \"sy-p\"\nhost = \"h\"\n";
    assert_err(
        with(text),
        16,
        &["port 'p'", "host 'h' has no mac", "guard = false"],
    );
    let c = with(&format!("{text}guard = false\n")).unwrap();
    assert_eq!(c.ports[0].policy(&c), None);
}

#[test]
fn params_map_the_config() {
    let c = with(
        "[dhcp]\npool = [\"10.0.0.100\", \"10.0.0.199\"]\nlease_time = \"30m\"\n\
         key = \"client-id\"\nmax_leases_per_port = 2\nsearch = [\"a.test\"]\n\
         [[host]]\nname = \"a\"\nmac = \"52:54:00:00:00:01\"\nipv4 = \"10.0.0.11\"\n\
         [[host]]\nname = \"b\"\nmac = \"52:54:00:00:00:02\"\nclient_id = \"01:02\"\n\
         ipv4 = \"10.0.0.12\"\n\
         [[host]]\nname = \"c\"\nmatch = \"hostname\"\nipv4 = \"10.0.0.250\"\n\
         [[host]]\nname = \"d\"\nmac = \"52:54:00:00:00:04\"\n",
    )
    .unwrap();
    let p = dhcp_params(&c);
    assert_eq!(p.server_id, ip("10.0.0.1"));
    assert_eq!(p.subnet, "10.0.0.0/24".parse().unwrap());
    // No forward mode: an isolated network, no router option (libvirt sends none either).
    assert_eq!(p.router, None);
    assert_eq!(p.dns, [ip("10.0.0.1")]);
    assert_eq!(p.domain.as_deref(), Some("t.test"));
    assert_eq!(p.search, ["a.test"]);
    assert_eq!(p.mtu, Some(9000));
    assert_eq!(p.lease_time, Some(Duration::from_secs(1800)));
    assert_eq!(p.pool, Some((ip("10.0.0.100"), ip("10.0.0.199"))));
    assert_eq!(p.key_mode, KeyMode::ClientId);
    assert_eq!(p.max_leases_per_port, 2);
    assert_eq!(
        p.reservations,
        [
            Reservation {
                name: "a".into(),
                mac: Some(mac("52:54:00:00:00:01")),
                client_id: None,
                ipv4: ip("10.0.0.11"),
                match_hostname: false,
            },
            Reservation {
                name: "b".into(),
                mac: Some(mac("52:54:00:00:00:02")),
                client_id: Some(vec![1, 2]),
                ipv4: ip("10.0.0.12"),
                match_hostname: false,
            },
            Reservation {
                name: "c".into(),
                mac: None,
                client_id: None,
                ipv4: ip("10.0.0.250"),
                match_hostname: true,
            },
        ]
    );
    p.validate().unwrap();
}

#[test]
fn the_default_lab_has_a_pool_and_valid_params() {
    let c = config::load_default().unwrap();
    assert_eq!(c.dhcp.pool, Some((ip("10.13.31.100"), ip("10.13.31.199"))));
    assert_eq!(c.dhcp.state_dir, PathBuf::from("/var/lib/switchyard/lab"));
    let p = dhcp_params(&c);
    assert_eq!(p.reservations.len(), 3);
    p.validate().unwrap();
}

#[test]
fn extra_options_every_value_kind() {
    let c = with(
        r#"[[dhcp.option]]
code = 42
ip = ["10.0.0.5", "10.0.0.6"]
[[dhcp.option]]
code = 252
text = "http://10.0.0.1/wpad.dat"
always = true
[[dhcp.option]]
code = 43
hex = "01:ff:20"
[[dhcp.option]]
code = 19
bool = false
[[dhcp.option]]
code = 23
u8 = 64
[[dhcp.option]]
code = 22
u16 = 1400
[[dhcp.option]]
code = 2
u32 = 3600
[[dhcp.option]]
code = 3
ip = []
"#,
    )
    .unwrap();
    let got: Vec<(u8, Vec<u8>, bool)> = c
        .dhcp
        .options
        .iter()
        .map(|o| (o.code, o.data.clone(), o.always))
        .collect();
    assert_eq!(
        got,
        vec![
            (42, vec![10, 0, 0, 5, 10, 0, 0, 6], false),
            (252, b"http://10.0.0.1/wpad.dat".to_vec(), true),
            (43, vec![1, 0xff, 0x20], false),
            (19, vec![0], false),
            (23, vec![64], false),
            (22, vec![0x05, 0x78], false),
            (2, vec![0, 0, 0x0e, 0x10], false),
            (3, vec![], false),
        ]
    );
    assert_eq!(dhcp_params(&c).extra_options, c.dhcp.options);
}

#[test]
fn extra_option_errors_have_file_and_line() {
    let opt = |body: &str| with(&format!("[[dhcp.option]]\n{body}\n"));
    assert_err(opt("code = 53\nu8 = 1"), 10, &["code 53", "managed"]);
    assert_err(opt("code = 57\nu16 = 1400"), 10, &["code 57", "managed"]);
    assert_err(opt("code = 300\nu8 = 1"), 10, &["code 300", "1 to 254"]);
    assert_err(opt("code = 42"), 9, &["exactly one value"]);
    assert_err(
        opt("code = 42\nu8 = 1\ntext = \"x\""),
        9,
        &["exactly one value"],
    );
    assert_err(opt("code = 42\nu8 = 256"), 11, &["256", "out of range"]);
    assert_err(opt("code = 42\nip = [\"10.0.0\"]"), 11, &["not an IPv4"]);
    assert_err(
        opt("code = 42\nhex = \"1:2\""),
        11,
        &["hex", "colon-separated"],
    );
    assert_err(opt("code = 42\ncolour = 1"), 11, &["colour"]);
    assert_err(
        with("[[dhcp.option]]\ncode = 42\nu8 = 1\n[[dhcp.option]]\ncode = 42\nu8 = 2\n"),
        12,
        &["twice"],
    );
}

#[test]
fn trusted_ports_may_relay() {
    let c = with(
        r#"[[port]]
name = "uplink"
kind = "tap"
ifname = "t-up"
trusted = true
[[port]]
name = "vm"
kind = "tap"
ifname = "t-vm"
"#,
    )
    .unwrap();
    assert_eq!(dhcp_params(&c).trusted_ports, vec![0]);
}
