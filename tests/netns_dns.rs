//! DNS with real clients in namespace hosts: `dig` over UDP and TCP resolves reservations, a
//! DHCP-learned name (and loses it on release), PTRs and static records at the gateway;
//! `getent hosts` works through a resolv.conf that points at the gateway; other names go to a
//! fake upstream (dnsmasq in a namespace of the test's own, behind a veth into the daemon's
//! namespace: nothing leaves the test's namespaces), are cached, and get SERVFAIL in bounded
//! time once the upstream is gone.

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{clients, sh, Lab};

const GW: &str = "10.13.31.1";

/// `dig @gateway ARGS` in `host`; bounded by dig's own timeout and `timeout`.
fn dig(lab: &mut Lab, host: &str, args: &[&str]) -> String {
    let server = format!("@{GW}");
    let mut full = vec!["timeout", "20", "dig", &server, "+tries=1", "+time=3"];
    full.extend_from_slice(args);
    let out = lab.exec(host, &full);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The answer lines' data (`+short`), UDP or TCP.
fn short(lab: &mut Lab, host: &str, tcp: bool, args: &[&str]) -> Vec<String> {
    let mut a = vec!["+short"];
    if tcp {
        a.push("+tcp");
    }
    a.extend_from_slice(args);
    dig(lab, host, &a)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .collect()
}

/// The `status:` of the reply header (NOERROR, NXDOMAIN, SERVFAIL, ...).
fn status(lab: &mut Lab, host: &str, args: &[&str]) -> String {
    let text = dig(lab, host, args);
    text.split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("no reply")
        .to_string()
}

fn config(lab: &mut Lab, dns: &str) -> String {
    let mut c = common::lab_config(lab, &[("vm1", 11, false), ("vm2", 12, false)], "");
    c = c.replace(
        "[dhcp]\n",
        "[dhcp]\npool = [\"10.13.31.100\", \"10.13.31.199\"]\n",
    );
    // A port with no host: its client's hostname (option 12) names its lease.
    let (ns, ifname) = (lab.ns("dh"), lab.ifname("dh"));
    c.push_str(&format!(
        "\n[[port]]\nname = \"dh\"\nkind = \"tap\"\nifname = \"{ifname}\"\nnetns = \"{ns}\"\n\
         address = \"none\"\n\n{dns}\n"
    ));
    c
}

fn start(lab: &mut Lab, cfg: &str) {
    let hosts: Vec<(String, String)> = ["vm1", "vm2", "dh"]
        .iter()
        .map(|h| (h.to_string(), lab.ifname(h)))
        .collect();
    let refs: Vec<(&str, &str)> = hosts
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    lab.start(cfg, &refs);
}

/// `/etc/netns/<ns>/resolv.conf` for one lab host; removed on drop.
struct ResolvConf(PathBuf);

impl ResolvConf {
    fn new(ns: &str, text: &str) -> ResolvConf {
        let dir = PathBuf::from("/etc/netns").join(ns);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("resolv.conf"), text).unwrap();
        ResolvConf(dir)
    }
}

impl Drop for ResolvConf {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A process the test started; killed (by its pid) on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn local_names_over_udp_and_tcp_and_through_the_resolver() {
    let mut lab = Lab::new();
    let dns = "[dns]\nlocal_ttl = 7\n\n[[dns.record]]\nname = \"www\"\ntype = \"CNAME\"\n\
               value = \"vm2\"\n\n[[dns.record]]\nname = \"@\"\ntype = \"TXT\"\nvalue = \"lab\"\n";
    let cfg = config(&mut lab, dns);
    start(&mut lab, &cfg);

    for tcp in [false, true] {
        let how = if tcp { "tcp" } else { "udp" };
        assert_eq!(
            short(&mut lab, "vm1", tcp, &["vm1.lab.test"]),
            ["10.13.31.11"],
            "own name, {how}"
        );
        assert_eq!(
            short(&mut lab, "vm1", tcp, &["vm2.lab.test"]),
            ["10.13.31.12"],
            "{how}"
        );
        assert_eq!(
            short(&mut lab, "vm2", tcp, &["vm1"]),
            ["10.13.31.11"],
            "plain name, {how}"
        );
        assert_eq!(
            short(&mut lab, "vm1", tcp, &["-x", "10.13.31.12"]),
            ["vm2.lab.test."],
            "PTR, {how}"
        );
        assert_eq!(
            short(&mut lab, "vm1", tcp, &["www.lab.test"]),
            ["vm2.lab.test.", "10.13.31.12"],
            "CNAME, {how}"
        );
        assert_eq!(
            short(&mut lab, "vm1", tcp, &["lab.test", "TXT"]),
            ["\"lab\""],
            "{how}"
        );
    }
    let full = dig(&mut lab, "vm1", &["vm2.lab.test"]);
    assert!(full.contains("flags: qr aa rd"), "authoritative:\n{full}");
    assert!(
        full.contains("vm2.lab.test.\t\t7\tIN\tA"),
        "local_ttl:\n{full}"
    );
    // The fast path, through the switch: a query without a cookie (the plain shape it takes;
    // dig sends a cookie by default), with and without EDNS, asked twice (the first answer fills
    // the memo, the second comes from it), spelled in mixed case (0x20): the question and the
    // answer's owner keep the client's spelling.
    for name in ["Vm2.LaB.TeSt", "vM2.lab.TEST"] {
        for edns in ["+edns", "+noedns"] {
            for _ in 0..2 {
                let out = dig(&mut lab, "vm1", &["+nocookie", edns, name]);
                assert!(out.contains("flags: qr aa rd"), "{edns}:\n{out}");
                assert!(
                    out.contains(&format!(";{name}.\t\t\tIN\tA")),
                    "{edns}:\n{out}"
                );
                let answer = format!("{name}.\t\t7\tIN\tA\t10.13.31.12");
                assert!(out.contains(&answer), "{edns}:\n{out}");
                assert_eq!(out.contains("OPT PSEUDOSECTION"), edns == "+edns", "{out}");
            }
        }
    }
    for _ in 0..2 {
        assert_eq!(
            status(&mut lab, "vm1", &["+nocookie", "nope.lab.test"]),
            "NXDOMAIN"
        );
    }
    assert_eq!(status(&mut lab, "vm1", &["nope.lab.test"]), "NXDOMAIN");
    assert_eq!(status(&mut lab, "vm1", &["+tcp", "nope"]), "NXDOMAIN");
    assert_eq!(status(&mut lab, "vm1", &["-x", "10.13.31.77"]), "NXDOMAIN");
    assert_eq!(
        status(&mut lab, "vm1", &["example.org"]),
        "REFUSED",
        "no upstreams"
    );

    // A DHCP client's hostname becomes a name, live; its release takes it away again. udhcpc
    // stays in the foreground (-f) and releases on SIGTERM (-R).
    let script = clients::udhcpc_script(&lab.dir);
    let (ns, ifname) = (lab.ns("dh"), lab.ifname("dh"));
    let mut client = Proc(
        Command::new("ip")
            .args([
                "netns", "exec", &ns, "udhcpc", "-i", &ifname, "-f", "-R", "-n",
            ])
            .args(["-t", "10", "-T", "1", "-x", "hostname:foo", "-s"])
            .arg(&script)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("udhcpc"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let foo = loop {
        let got = short(&mut lab, "vm1", false, &["foo.lab.test"]);
        if !got.is_empty() {
            break got;
        }
        assert!(Instant::now() < deadline, "foo.lab.test never appeared");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(foo.len(), 1, "foo: {foo:?}");
    assert!(foo[0].starts_with("10.13.31.1"), "{foo:?}");
    assert_eq!(short(&mut lab, "vm2", true, &["foo"]), foo, "tcp");
    for _ in 0..2 {
        // Into the fast path's memo: it must forget the name when the lease goes.
        assert_eq!(
            short(&mut lab, "vm1", false, &["+nocookie", "foo.lab.test"]),
            foo
        );
    }
    assert_eq!(
        short(&mut lab, "vm1", false, &["-x", &foo[0]]),
        ["foo.lab.test."]
    );

    // getent through the system resolver, pointed at the gateway.
    let _resolv = ResolvConf::new(
        &lab.ns("vm1"),
        &format!("nameserver {GW}\nsearch lab.test\n"),
    );
    let out = lab.exec("vm1", &["timeout", "20", "getent", "hosts", "vm2.lab.test"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("10.13.31.12"), "getent: {out:?}");
    let out = lab.exec("vm1", &["timeout", "20", "getent", "hosts", "foo"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with(&foo[0]),
        "{out:?}"
    );

    // SIGTERM: udhcpc releases its lease (-R) and exits (the pid is udhcpc's: `ip netns exec`
    // execs it).
    sh(&["kill", "-TERM", &client.0.id().to_string()]);
    let _ = client.0.wait();
    let deadline = Instant::now() + Duration::from_secs(5);
    while status(&mut lab, "vm1", &["+nocookie", "foo.lab.test"]) != "NXDOMAIN" {
        assert!(Instant::now() < deadline, "the released name still answers");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(status(&mut lab, "vm1", &["foo.lab.test"]), "NXDOMAIN");
    assert_eq!(
        status(&mut lab, "vm1", &["-x", &foo[0]]),
        "NXDOMAIN",
        "PTR released"
    );

    // A client that calls itself vm1 gets a lease, but not the reserved name.
    let out = lab.exec(
        "dh",
        &[
            "timeout",
            "30",
            "udhcpc",
            "-i",
            &ifname,
            "-n",
            "-q",
            "-f",
            "-t",
            "10",
            "-T",
            "1",
            "-x",
            "hostname:vm1",
            "-s",
            script.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "udhcpc as vm1: {out:?}");
    assert_eq!(
        short(&mut lab, "vm2", false, &["vm1.lab.test"]),
        ["10.13.31.11"]
    );

    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    assert!(
        exit.stderr
            .contains("DHCP hostname not put in DNS: it is a reserved host's name"),
        "collision not logged:\n{}",
        exit.stderr
    );
    let counters = exit
        .stdout
        .lines()
        .find(|l| l.starts_with("dns: "))
        .unwrap_or_else(|| panic!("no dns counters:\n{}", exit.stdout));
    assert!(counters.contains("refused=1"), "{counters}");
    assert!(!counters.contains("queries=0"), "{counters}");
    assert!(!counters.contains("local_fast=0"), "{counters}");
    // The `+nocookie` queries above were answered by the worker that read them.
    assert!(!counters.contains("shared_fast=0"), "{counters}");
}

/// A dnsmasq in `ns` answering every name under `domain` with `answer`, on `listen` only.
fn fake_upstream(lab: &Lab, ns: &str, listen: &str, domain: &str, answer: &str) -> Proc {
    let pid = lab.dir.join(format!("dnsmasq-{listen}.pid"));
    Proc(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "dnsmasq",
                "-k",
                "--conf-file=/dev/null",
            ])
            .args([
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--user=root",
            ])
            .arg(format!("--listen-address={listen}"))
            .arg(format!("--address=/{domain}/{answer}"))
            .arg("--local-ttl=60")
            .arg(format!("--pid-file={}", pid.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq"),
    )
}

#[test]
fn other_names_go_upstream_are_cached_and_fail_in_bounded_time() {
    let mut lab = Lab::new();
    // The upstreams' namespace, joined to the daemon's by a veth: 192.0.2.1 <-> .53/.54.
    let up = lab.upstream_ns(&["192.0.2.53", "192.0.2.54"]);
    let sw = lab.switch_ns();
    let mut main = fake_upstream(&lab, &up, "192.0.2.53", "example.org", "192.0.2.7");
    let _corp = fake_upstream(&lab, &up, "192.0.2.54", "corp.example", "192.0.2.8");
    for server in ["@192.0.2.53", "@192.0.2.54"] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = sh(&[
                "ip",
                "netns",
                "exec",
                &up,
                "dig",
                server,
                "+short",
                "+tries=1",
                "+time=1",
                "ready.example.org",
            ]);
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "dnsmasq at {server} never answered"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    let dns =
        "[dns]\nupstreams = [\"192.0.2.53\"]\ntimeout_ms = 1000\nlisten = [\"127.0.0.53\"]\n\n\
               [[dns.forward]]\n\
               domain = \"corp.example\"\nupstreams = [\"192.0.2.54\"]\n";
    let cfg = config(&mut lab, dns);
    start(&mut lab, &cfg);

    assert_eq!(
        short(&mut lab, "vm1", false, &["www.example.org"]),
        ["192.0.2.7"]
    );
    assert_eq!(
        short(&mut lab, "vm2", true, &["tcp.example.org"]),
        ["192.0.2.7"],
        "tcp"
    );
    assert_eq!(
        short(&mut lab, "vm1", false, &["host.corp.example"]),
        ["192.0.2.8"],
        "per-domain forwarder"
    );
    assert_eq!(
        short(&mut lab, "vm1", false, &["vm2.lab.test"]),
        ["10.13.31.12"]
    );
    let full = dig(&mut lab, "vm1", &["www.example.org"]);
    assert!(
        full.contains("flags: qr rd ra;"),
        "not authoritative:\n{full}"
    );
    // `[dns] listen`: the daemon's own namespace (the host's side) asks on 127.0.0.53.
    for (name, want) in [
        ("vm1.lab.test", "10.13.31.11"),
        ("www.example.org", "192.0.2.7"),
    ] {
        let out = sh(&[
            "ip",
            "netns",
            "exec",
            &sw,
            "dig",
            "@127.0.0.53",
            "+short",
            "+tries=1",
            "+time=3",
            name,
        ]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            want,
            "listen: {out:?}"
        );
    }

    // The upstream goes away: its cached answer still comes back, an uncached name gets
    // SERVFAIL after the timeout (1 s), well before dig gives up (3 s).
    drop(main.0.kill());
    let _ = main.0.wait();
    assert_eq!(
        short(&mut lab, "vm1", false, &["www.example.org"]),
        ["192.0.2.7"],
        "cached"
    );
    let t = Instant::now();
    assert_eq!(status(&mut lab, "vm1", &["gone.example.org"]), "SERVFAIL");
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(2900),
        "SERVFAIL after {took:?}"
    );
    assert_eq!(
        status(&mut lab, "vm2", &["+tcp", "gone2.example.org"]),
        "SERVFAIL",
        "tcp"
    );

    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    let counters = exit
        .stdout
        .lines()
        .find(|l| l.starts_with("dns: "))
        .unwrap();
    for needle in [
        "forwarded=5",
        "upstream_answers=3",
        "servfail=2",
        "cache_hits=3",
    ] {
        assert!(counters.contains(needle), "{needle} in {counters}");
    }
}
