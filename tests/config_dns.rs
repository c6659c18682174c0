//! The DNS config keys: `[dns]`, `[[dns.forward]]`, `[[dns.record]]`; defaults, file:line
//! errors, and the mapping onto the service's `DnsParams`.

use std::time::Duration;

use switchyard::control::config::{self, dns_params, Config, ConfigError};
use switchyard::service::dns::RecordValue;

/// Lines 2-6; a host on lines 8-11.
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

/// `NETWORK` then `extra`, whose first line is line 13.
fn with(extra: &str) -> Result<Config, ConfigError> {
    config::parse(&format!("{NETWORK}\n{extra}"), "t.toml")
}

/// A `[dns]` section (line 13) whose keys start on line 14.
fn dns(keys: &str) -> Result<Config, ConfigError> {
    with(&format!("[dns]\n{keys}\n"))
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
fn defaults_without_a_dns_section() {
    let c = with("").unwrap();
    assert!(c.dns.enabled);
    assert!(c.dns.upstreams.is_empty());
    assert_eq!(c.dns.local_ttl, 0);
    assert_eq!(c.dns.cache_size, 10_000);
    assert_eq!(c.dns.timeout, Duration::from_secs(2));
    let p = dns_params(&c);
    assert_eq!(p.domain, "t.test");
    assert_eq!(p.hosts.len(), 1);
    assert_eq!(p.hosts[0].name, "vm1");
    // The embedded default config carries a [dns] section that parses.
    assert!(config::load_default().unwrap().dns.enabled);
}

#[test]
fn every_key_parses() {
    let c = with(
        r#"[dns]
upstreams = ["192.0.2.53", "192.0.2.54:5353", "[2001:db8::1]:53"]
local_ttl = 30
cache_size = 0
timeout_ms = 500
listen = ["127.0.0.53"]

[[dns.forward]]
domain = "Corp.Example."
upstreams = ["192.0.2.60"]

[[dns.record]]
name = "www"
type = "cname"
value = "vm1"

[[dns.record]]
name = "_http._tcp.t.test"
type = "SRV"
value = "0 5 80 vm1"

[[dns.record]]
name = "@"
type = "TXT"
value = ["a", "b"]

[[dns.record]]
name = "v6"
type = "AAAA"
value = "fd00::7"
"#,
    )
    .unwrap();
    let d = &c.dns;
    assert_eq!(d.upstreams[1], "192.0.2.54:5353".parse().unwrap());
    assert_eq!(d.upstreams[0].port(), 53);
    assert_eq!((d.local_ttl, d.cache_size), (30, 0));
    assert_eq!(d.timeout, Duration::from_millis(500));
    assert_eq!(d.listen, vec!["127.0.0.53:53".parse().unwrap()]);
    assert_eq!(d.forwards[0].domain, "corp.example");
    assert_eq!(d.records[0].value, RecordValue::Cname("vm1.t.test".into()));
    assert_eq!(d.records[1].name, "_http._tcp");
    assert!(
        matches!(&d.records[1].value, RecordValue::Srv { port: 80, target, .. } if target == "vm1.t.test")
    );
    assert_eq!(d.records[2].name, "");
    assert_eq!(
        d.records[2].value,
        RecordValue::Txt(vec!["a".into(), "b".into()])
    );
    let p = dns_params(&c);
    assert_eq!(p.local_ttl, 30);
    assert_eq!(p.forwards.len(), 1);
}

#[test]
fn bad_values_name_the_line_and_the_key() {
    assert_err(
        dns("upstreams = [\"nope\"]"),
        14,
        &["[dns]", "upstreams 'nope'", "192.0.2.53"],
    );
    assert_err(dns("upstreams = [\"10.0.0.1\"]"), 14, &["is the gateway"]);
    assert_err(dns("upstreams = [\"192.0.2.1:0\"]"), 14, &["not 0"]);
    assert_err(dns("local_ttl = -1"), 14, &["local_ttl", "out of range"]);
    assert_err(dns("timeout_ms = 10"), 14, &["timeout_ms", "50 to 60000"]);
    assert_err(dns("cache_size = 99999999"), 14, &["cache_size"]);
    assert_err(dns("colour = 1"), 14, &["unknown key", "colour"]);
}

#[test]
fn forward_checks() {
    let f = |domain: &str, ups: &str| {
        with(&format!(
            "[[dns.forward]]\ndomain = \"{domain}\"\nupstreams = {ups}\n"
        ))
    };
    assert_err(
        f("sub.t.test", "[\"192.0.2.1\"]"),
        14,
        &["inside the network's domain"],
    );
    assert_err(f("a..b", "[\"192.0.2.1\"]"), 14, &["empty label"]);
    assert_err(f("corp.example", "[]"), 14, &["upstreams is empty"]);
    assert_err(
        f("corp.example", "[\"x\"]"),
        15,
        &["[[dns.forward]] #1", "'x'"],
    );
    assert_err(
        with(
            "[[dns.forward]]\ndomain = \"c.example\"\nupstreams = [\"192.0.2.1\"]\n\
             [[dns.forward]]\ndomain = \"C.example\"\nupstreams = [\"192.0.2.2\"]\n",
        ),
        17,
        &["already forwarded on line 14"],
    );
}

#[test]
fn record_checks() {
    let r = |name: &str, kind: &str, value: &str| {
        with(&format!(
            "[[dns.record]]\nname = \"{name}\"\ntype = \"{kind}\"\nvalue = {value}\n"
        ))
    };
    assert_err(r("a b", "A", "\"10.0.0.5\""), 14, &["name 'a b'"]);
    assert_err(
        r("x", "MX", "\"10.0.0.5\""),
        15,
        &["type 'MX' is not supported"],
    );
    assert_err(r("x", "A", "\"fd00::1\""), 16, &["A value", "IPv4"]);
    assert_err(r("x", "AAAA", "\"10.0.0.1\""), 16, &["IPv6"]);
    assert_err(
        r("x", "SRV", "\"0 5 vm1\""),
        16,
        &["priority weight port target"],
    );
    assert_err(r("x", "TXT", "5"), 16, &["string"]);
    assert_err(r("x", "A", "5"), 16, &["integer, not a string"]);
    assert_err(r("vm1", "CNAME", "\"www\""), 14, &["CNAME and other data"]);
    assert_err(r("@", "CNAME", "\"www\""), 14, &["CNAME"]);
    assert_err(
        with(
            "[[dns.record]]\nname = \"w\"\ntype = \"CNAME\"\nvalue = \"vm1\"\n\
             [[dns.record]]\nname = \"w\"\ntype = \"TXT\"\nvalue = \"x\"\n",
        ),
        18,
        &["CNAME and other data"],
    );
}
