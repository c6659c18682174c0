//! The guard's config keys: defaults, the policy they build, and file:line errors.

use std::net::Ipv4Addr;

use switchyard::control::config::{self, Config, ConfigError, Guard};
use switchyard::switch::GuardMode;
use switchyard::wire::MacAddr;

const NETWORK: &str = r#"
[network]
name = "t"
subnet = "10.0.0.0/24"
gateway = "10.0.0.1"
domain = "t.test"

[[host]]
name = "vm1"
mac = "52:54:00:00:00:11"
ipv4 = "10.0.0.11"
"#;

/// `NETWORK`, then `host_keys` (line 12), then a port whose `port_keys` start on line 17.
fn cfg(host_keys: &str, port_keys: &str) -> Result<Config, ConfigError> {
    config::parse(
        &format!(
            "{NETWORK}{host_keys}\n[[port]]\nname = \"p1\"\nkind = \"tap\"\nifname = \"sy-p1\"\n\
             {port_keys}\n"
        ),
        "t.toml",
    )
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

#[test]
fn a_port_with_a_host_is_guarded_by_default() {
    let c = cfg("", "host = \"vm1\"").unwrap();
    let p = &c.ports[0];
    assert_eq!(
        (p.guard, p.trusted, p.any_link_local),
        (Guard::Enforce, false, false)
    );
    let policy = p.policy(&c).unwrap();
    assert_eq!(policy.macs, vec![c.hosts[0].mac.unwrap()]);
    assert!(policy.allows_ipv4(Ipv4Addr::new(10, 0, 0, 11)));
    assert!(!policy.allows_ipv4(Ipv4Addr::new(10, 0, 0, 12)));
    assert_eq!(policy.mode, GuardMode::Enforce);
}

#[test]
fn no_host_trusted_or_guard_false_means_unguarded() {
    for (host, keys) in [
        (false, ""),
        (true, "guard = false"),
        (true, "trusted = true"),
    ] {
        let h = if host { "host = \"vm1\"\n" } else { "" };
        let c = cfg("", &format!("{h}{keys}")).unwrap();
        assert_eq!(c.ports[0].guard, Guard::Off, "{keys}");
        assert_eq!(c.ports[0].policy(&c), None, "{keys}");
    }
}

#[test]
fn extras_and_monitor_build_the_policy() {
    let c = cfg(
        "extra_macs = [\"00:00:5e:00:01:07\"]\nextra_ipv4 = [\"10.0.0.50\", \"10.0.0.64/28\"]\n\
         extra_ipv6 = [\"fd00::50\", \"fd00:1::/64\"]\n",
        "host = \"vm1\"\nguard = \"monitor\"\nany_link_local = true",
    )
    .unwrap();
    let h = &c.hosts[0];
    assert_eq!(
        h.extra_macs,
        vec!["00:00:5e:00:01:07".parse::<MacAddr>().unwrap()]
    );
    assert_eq!(h.extra_ipv4.len(), 2);
    assert_eq!(h.extra_ipv6.len(), 2);
    let p = c.ports[0].policy(&c).unwrap();
    assert_eq!(p.mode, GuardMode::Monitor);
    assert!(p.allow_any_link_local);
    assert_eq!(p.macs.len(), 2);
    assert!(p.allows_ipv4(Ipv4Addr::new(10, 0, 0, 50)));
    assert!(p.allows_ipv4(Ipv4Addr::new(10, 0, 0, 79)));
    assert!(!p.allows_ipv4(Ipv4Addr::new(10, 0, 0, 80)));
    assert!(p.allows_ipv6("fd00:1::7".parse().unwrap()));
}

#[test]
fn bad_guard_keys_point_at_their_line() {
    assert_err(
        cfg("", "host = \"vm1\"\nguard = \"yes\""),
        18,
        &["port 'p1'", "guard", "true, false or \"monitor\""],
    );
    assert_err(
        cfg("", "guard = true"),
        17,
        &["port 'p1'", "guard needs a host"],
    );
    assert_err(
        cfg("", "host = \"vm1\"\ntrusted = true\nguard = \"monitor\""),
        19,
        &["trusted port is never guarded"],
    );
}

#[test]
fn bad_extras_point_at_their_line() {
    assert_err(
        cfg("extra_ipv4 = [\"10.0.0.1\"]", ""),
        12,
        &["host 'vm1'", "extra_ipv4", "gateway"],
    );
    assert_err(
        cfg("extra_ipv4 = [\"10.0.0.0/24\"]", ""),
        12,
        &["covers the gateway"],
    );
    assert_err(
        cfg("extra_ipv4 = [\"10.0.0.65/28\"]", ""),
        12,
        &["host bits", "10.0.0.64/28"],
    );
    assert_err(
        cfg("extra_ipv4 = [\"224.0.0.18\"]", ""),
        12,
        &["not a unicast"],
    );
    assert_err(
        cfg("extra_ipv4 = [\"ten\"]", ""),
        12,
        &["neither an address nor a prefix"],
    );
    assert_err(
        cfg("extra_ipv6 = [\"ff02::1\"]", ""),
        12,
        &["extra_ipv6", "not a unicast"],
    );
    assert_err(
        cfg("extra_ipv6 = [\"fd00::1/64\"]", ""),
        12,
        &["host bits", "fd00::/64"],
    );
    assert_err(
        cfg("extra_macs = [\"01:00:5e:00:00:01\"]", ""),
        12,
        &["mac", "multicast"],
    );
    let many = (0..65)
        .map(|i| format!("\"10.0.1.{i}\""))
        .collect::<Vec<_>>()
        .join(", ");
    assert_err(
        cfg(&format!("extra_ipv4 = [{many}]"), ""),
        12,
        &["more than 64"],
    );
}
