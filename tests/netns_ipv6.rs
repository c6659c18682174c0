//! IPv6 on the segment, with the kernel's own stack in each namespace host: SLAAC from the
//! appliance's router advertisements, `rdisc6` (ndisc6) reading the RA's prefix, RDNSS and
//! DNSSL, ping6 to the gateway's two addresses and between hosts through the guard, and
//! spoofed IPv6 from scapy (/usr/bin/python3) dropped and counted by reason.

mod common;

use std::time::Duration;

use common::{lab_config, Lab};

const GW6: &str = "fd00:13:31::1";
/// The SLAAC (EUI-64) addresses of h1 (52:54:00:31:00:0b) and h2 (…:0c).
const H1_SLAAC: &str = "fd00:13:31:0:5054:ff:fe31:b";
const H2_SLAAC: &str = "fd00:13:31:0:5054:ff:fe31:c";
const H1_MAC: &str = "52:54:00:31:00:0b";

/// The count of `reason` in a DROPS column like "spoofed_ip=3 rogue_ra=1" (0 if absent).
fn drops_of(drops: &str, reason: &str) -> u64 {
    drops
        .split_whitespace()
        .find_map(|d| d.strip_prefix(&format!("{reason}=")))
        .map_or(0, |n| n.parse().unwrap())
}

/// h1 and h2, guarded, on a network with `subnet6` and `[ra]` (SLAAC, RDNSS, DNSSL).
fn start(lab: &mut Lab, extra: &str) {
    start_with(lab, extra, "");
}

/// Like `start`, with `h2_extra` (keys) added to h2's `[[host]]`.
fn start_with(lab: &mut Lab, extra: &str, h2_extra: &str) {
    start_edited(lab, extra, h2_extra, |c| c);
}

/// Like `start_with`, the config passed through `edit` first.
fn start_edited(lab: &mut Lab, extra: &str, h2_extra: &str, edit: impl Fn(String) -> String) {
    let cfg = lab_config(lab, &[("h1", 11, false), ("h2", 12, false)], "")
        .replacen(
            "domain = \"lab.test\"\n",
            &format!(
                "domain = \"lab.test\"\nsubnet6 = \"fd00:13:31::/64\"\ngateway6 = \"{GW6}\"\n\n\
             [ra]\nmode = \"slaac\"\ninterval = \"30s\"\n{extra}\n"
            ),
            1,
        )
        .replacen(
            "ipv4 = \"10.13.31.12\"\n",
            &format!("ipv4 = \"10.13.31.12\"\nipv6 = \"fd00:13:31::12\"\n{h2_extra}"),
            1,
        );
    let cfg = edit(cfg);
    let (i1, i2) = (lab.ifname("h1"), lab.ifname("h2"));
    lab.start(&cfg, &[("h1", &i1), ("h2", &i2)]);
}

/// Waits until `host` has `addr` configured and past duplicate address detection.
fn wait_for_address(lab: &mut Lab, host: &str, addr: &str) {
    let ns = lab.ns(host);
    lab.wait_for(
        &format!("{addr} on {host}"),
        Duration::from_secs(40),
        || {
            let out = common::sh(&["ip", "-n", &ns, "-6", "addr", "show"]);
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            text.lines()
                .any(|l| l.contains(&format!("inet6 {addr}/64")) && !l.contains("tentative"))
        },
    );
}

fn ping6(lab: &mut Lab, host: &str, addr: &str) -> std::process::Output {
    lab.exec(
        host,
        &["ping", "-6", "-n", "-c", "3", "-i", "0.2", "-W", "2", addr],
    )
}

#[test]
fn slaac_rdnss_ping6_and_the_ipv6_guard() {
    let mut lab = Lab::new();
    start(&mut lab, "");
    // The kernel forms its EUI-64 address from the advertised prefix (its RS is answered).
    wait_for_address(&mut lab, "h1", H1_SLAAC);
    wait_for_address(&mut lab, "h2", H2_SLAAC);

    // rdisc6 solicits and prints the advertisement: prefix, flags, RDNSS and DNSSL.
    let i1 = lab.ifname("h1");
    let out = lab.exec("h1", &["timeout", "20", "rdisc6", "-1", "-w", "3000", &i1]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "rdisc6: {out:?}");
    for want in [
        "fd00:13:31::/64",
        "Recursive DNS server",
        GW6,
        "lab.test",
        "Stateful address conf.    :          Yes",
    ] {
        assert!(text.contains(want), "rdisc6 lacks {want:?}:\n{text}");
    }
    let lifetime = text
        .lines()
        .find(|l| l.starts_with("Router lifetime"))
        .unwrap_or_default();
    assert!(
        lifetime.contains(": 0 ") || lifetime.contains(":            0 "),
        "router lifetime 0: {lifetime:?}\n{text}"
    );

    // ping6 to the gateway's global and link-local addresses, and to h2 through the switch.
    let out = ping6(&mut lab, "h1", GW6);
    assert!(out.status.success(), "ping6 {GW6}: {out:?}");
    // The appliance's link-local: rdisc6's `from fe80::...`.
    let gw_ll = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("from ").map(|s| s.trim().to_string()))
        .expect("rdisc6 names the router");
    assert!(gw_ll.starts_with("fe80::"), "{gw_ll}");
    let out = ping6(&mut lab, "h1", &format!("{gw_ll}%{i1}"));
    assert!(out.status.success(), "ping6 {gw_ll}: {out:?}");
    let out = ping6(&mut lab, "h1", H2_SLAAC);
    assert!(out.status.success(), "ping6 h1 -> h2: {out:?}");

    // h2's reservation (`ipv6`): the guard lets it use the address, DNS names it over IPv6.
    let i2 = lab.ifname("h2");
    let out = lab.exec(
        "h2",
        &[
            "ip",
            "addr",
            "add",
            "fd00:13:31::12/64",
            "dev",
            &i2,
            "nodad",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let out = ping6(&mut lab, "h1", "fd00:13:31::12");
    assert!(
        out.status.success(),
        "ping6 h1 -> h2's reservation: {out:?}"
    );
    let dig = |lab: &mut Lab, args: &[&str]| {
        let mut full = vec!["dig", "+short", "+time=2", "+tries=3", "@fd00:13:31::1"];
        full.extend_from_slice(args);
        let out = lab.exec("h1", &full);
        assert!(out.status.success(), "dig {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(dig(&mut lab, &["AAAA", "h2.lab.test"]), "fd00:13:31::12");
    assert_eq!(dig(&mut lab, &["A", "h2.lab.test"]), "10.13.31.12");
    assert_eq!(dig(&mut lab, &["AAAA", "lab.test"]), GW6);
    assert_eq!(dig(&mut lab, &["-x", "fd00:13:31::12"]), "h2.lab.test.");
    assert_eq!(dig(&mut lab, &["-x", GW6]), "lab.test.");
    assert_eq!(
        dig(&mut lab, &["-x", H1_SLAAC]),
        "",
        "unnamed: NXDOMAIN, no answer"
    );

    // Spoofing from h1: another source in the prefix, h2's SLAAC address as source, an NA
    // claiming h2's address, a rogue RA. Five of each.
    let script = format!(
        "import logging\nlogging.getLogger('scapy.runtime').setLevel(logging.ERROR)\n\
         from scapy.all import *\nconf.verb = 0\n\
         e = Ether(src='{H1_MAC}', dst='33:33:00:00:00:01')\n\
         sendp(e/IPv6(src='fd00:13:31::99', dst='ff02::1')/UDP(sport=1, dport=2), iface='{i1}', count=5)\n\
         sendp(e/IPv6(src='{H2_SLAAC}', dst='ff02::1')/ICMPv6EchoRequest(), iface='{i1}', count=5)\n\
         sendp(e/IPv6(src='{H1_SLAAC}', dst='ff02::1', hlim=255)/ICMPv6ND_NA(tgt='{H2_SLAAC}', R=0, S=0, O=1)/ICMPv6NDOptDstLLAddr(lladdr='{H1_MAC}'), iface='{i1}', count=5)\n\
         sendp(e/IPv6(src='{ll}', dst='ff02::1', hlim=255)/ICMPv6ND_RA(routerlifetime=1800)/ICMPv6NDOptPrefixInfo(prefix='fd66::', prefixlen=64), iface='{i1}', count=5)\n",
        ll = "fe80::5054:ff:fe31:b",
    );
    let out = lab.exec("h1", &["timeout", "30", "/usr/bin/python3", "-c", &script]);
    assert!(out.status.success(), "scapy: {out:?}");
    // The rogue RA's prefix must not have reached h2.
    let ns2 = lab.ns("h2");
    std::thread::sleep(Duration::from_millis(500));
    let addrs = common::sh(&["ip", "-n", &ns2, "-6", "addr", "show"]);
    assert!(
        !String::from_utf8_lossy(&addrs.stdout).contains("fd66:"),
        "h2 took the rogue prefix: {addrs:?}"
    );

    let exit = lab.stop_with("TERM");
    let drops = exit.counters("h1").drops;
    for (reason, want) in [("spoofed_ip", 10), ("spoofed_nd", 5), ("rogue_ra", 5)] {
        assert!(
            drops_of(&drops, reason) >= want,
            "{reason}: want >= {want} in {drops}\n{}",
            exit.stdout
        );
    }
    // h2's own traffic (RS, DAD, NA for its SLAAC address, echo replies) all passed.
    assert_eq!(exit.counters("h2").drops, "-", "{}", exit.stdout);
}

/// The lab's own resolv.conf for a namespace that runs a DHCP client (TESTBED.md: `ip netns
/// exec` bind-mounts it over /etc/resolv.conf), removed on drop.
struct NetnsResolv(std::path::PathBuf);

impl NetnsResolv {
    fn new(ns: &str) -> NetnsResolv {
        let dir = std::path::PathBuf::from(format!("/etc/netns/{ns}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("resolv.conf"), "").unwrap();
        NetnsResolv(dir)
    }
}

impl Drop for NetnsResolv {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A dhclient-script that only sets the DHCPv6 address.
fn dhclient6_script(dir: &std::path::Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("dhclient6-script");
    std::fs::write(
        &path,
        "#!/bin/sh\ncase \"$reason\" in BOUND6|RENEW6|REBIND6|REBOOT6)\n  \
         ip -6 addr add \"$new_ip6_address/$new_ip6_prefixlen\" dev \"$interface\" nodad;;\n\
         esac\nexit 0\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

/// `dhclient -6` once on `host` (it stays running, stopped with `-x` by the caller).
fn dhclient6(lab: &mut Lab, host: &str, script: &str) -> std::process::Output {
    let ifname = lab.ifname(host);
    let lf = lab
        .dir
        .join(format!("{host}.leases6"))
        .display()
        .to_string();
    let pf = lab.dir.join(format!("{host}.pid6")).display().to_string();
    lab.exec(
        host,
        &[
            "timeout", "40", "dhclient", "-6", "-1", "-v", "-lf", &lf, "-pf", &pf, "-sf", script,
            &ifname,
        ],
    )
}

fn stop_dhclient6(lab: &mut Lab, host: &str) {
    let pf = lab.dir.join(format!("{host}.pid6")).display().to_string();
    let _ = lab.exec(host, &["dhclient", "-6", "-x", "-pf", &pf]);
}

#[test]
fn dhclient_6_gets_a_pool_lease_and_a_reservation_durable_in_leases6_journal() {
    let mut lab = Lab::new();
    let _r1 = NetnsResolv::new(&lab.ns("h1"));
    let _r2 = NetnsResolv::new(&lab.ns("h2"));
    start(
        &mut lab,
        "\n[dhcp6]\npool = [\"fd00:13:31::100\", \"fd00:13:31::1ff\"]\nlease_time = \"10m\"\n",
    );
    // DHCPv6 goes from the link-local address: wait until DAD has passed.
    wait_for_address(&mut lab, "h1", "fe80::5054:ff:fe31:b");
    wait_for_address(&mut lab, "h2", "fe80::5054:ff:fe31:c");
    let script = dhclient6_script(&lab.dir.clone());
    let out = dhclient6(&mut lab, "h1", &script);
    assert!(out.status.success(), "dhclient -6 on h1: {out:?}");
    let out = dhclient6(&mut lab, "h2", &script);
    assert!(out.status.success(), "dhclient -6 on h2: {out:?}");

    // h2 has the reservation (matched by its MAC); h1 an address of the pool.
    let leased = |lab: &mut Lab, host: &str| -> Vec<String> {
        let ns = lab.ns(host);
        let out = common::sh(&["ip", "-n", &ns, "-6", "addr", "show", "scope", "global"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().strip_prefix("inet6 "))
            .filter_map(|l| l.split('/').next())
            .filter(|a| a.starts_with("fd00:13:31::") && !a.contains("5054"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(leased(&mut lab, "h2"), ["fd00:13:31::12"]);
    let h1 = leased(&mut lab, "h1");
    assert_eq!(h1.len(), 1, "{h1:?}");
    let h1_addr: std::net::Ipv6Addr = h1[0].parse().unwrap();
    assert!(
        ("fd00:13:31::100".parse::<std::net::Ipv6Addr>().unwrap()
            ..="fd00:13:31::1ff".parse().unwrap())
            .contains(&h1_addr),
        "{h1_addr}"
    );
    let lf = std::fs::read_to_string(lab.dir.join("h1.leases6")).unwrap();
    assert!(lf.contains(&format!("iaaddr {h1_addr}")), "{lf}");
    assert!(
        lf.contains("option dhcp6.name-servers fd00:13:31::1"),
        "{lf}"
    );

    // The guard binds the leased address to h1's port: traffic from it passes, both ways.
    let out = lab.exec(
        "h1",
        &[
            "ping",
            "-6",
            "-n",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
            "-I",
            &h1[0],
            "fd00:13:31::12",
        ],
    );
    assert!(
        out.status.success(),
        "ping6 from h1's lease to h2's: {out:?}"
    );

    // h1's pool address has h1's name (its `[[host]]` by MAC; dhclient sends no FQDN), and
    // h2's reserved address keeps its static one: AAAA and PTR, asked over IPv6.
    for (args, want) in [
        (["AAAA", "h1.lab.test"], h1[0].clone()),
        (["-x", h1[0].as_str()], "h1.lab.test.".to_string()),
        (["-x", "fd00:13:31::12"], "h2.lab.test.".to_string()),
    ] {
        let mut full = vec!["dig", "+short", "+time=2", "+tries=3", "@fd00:13:31::1"];
        full.extend_from_slice(&args);
        let out = lab.exec("h2", &full);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            want,
            "dig {args:?}: {out:?}"
        );
    }

    // Both bindings are in the journal, fsynced before their REPLY.
    let journal = std::fs::read_to_string(lab.dir.join("state").join("leases6.journal")).unwrap();
    for ip in [h1[0].as_str(), "fd00:13:31::12"] {
        assert!(
            journal.contains(&format!(" {ip} ")),
            "{ip} not in:\n{journal}"
        );
    }
    stop_dhclient6(&mut lab, "h1");
    stop_dhclient6(&mut lab, "h2");
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.counters("h1").drops, "-", "{}", exit.stdout);
    assert_eq!(exit.counters("h2").drops, "-", "{}", exit.stdout);
}

#[test]
fn dhcpv6_impersonation_and_a_rogue_dhcpv6_server_get_nothing() {
    let mut lab = Lab::new();
    // h2's reservation is keyed by its DUID: h1 copies that DUID into its own SOLICIT.
    start_with(
        &mut lab,
        "\n[dhcp6]\npool = [\"fd00:13:31::100\", \"fd00:13:31::1ff\"]\n",
        "duid = \"00:02:00:00:00:09:76:69:63:74:69:6d\"\n",
    );
    wait_for_address(&mut lab, "h1", "fe80::5054:ff:fe31:b");
    let i1 = lab.ifname("h1");
    let script = format!(
        "import logging\nlogging.getLogger('scapy.runtime').setLevel(logging.ERROR)\n\
         import time\nfrom scapy.all import *\nfrom scapy.layers.dhcp6 import *\nconf.verb = 0\n\
         def solicit(duid, trid):\n\
         \x20   p = Ether(src='{H1_MAC}', dst='33:33:00:01:00:02')/IPv6(src='fe80::5054:ff:fe31:b', dst='ff02::1:2')/UDP(sport=546, dport=547)/DHCP6_Solicit(trid=trid)/DHCP6OptClientId(duid=duid)/DHCP6OptIA_NA(iaid=1)\n\
         \x20   s = AsyncSniffer(iface='{i1}', filter='udp and dst port 546', lfilter=lambda r: DHCP6_Advertise in r and r[DHCP6_Advertise].trid == trid)\n\
         \x20   s.start()\n\
         \x20   time.sleep(1)\n\
         \x20   sendp(p, iface='{i1}')\n\
         \x20   time.sleep(2)\n\
         \x20   return len(s.stop()) > 0\n\
         own = solicit(DUID_LL(lladdr='{H1_MAC}'), 7)\n\
         stolen = solicit(DUID_EN(enterprisenum=9, id=b'victim'), 8)\n\
         print('own', own, 'stolen', stolen)\n\
         sendp(Ether(src='{H1_MAC}', dst='33:33:00:00:00:01')/IPv6(src='fe80::5054:ff:fe31:b', dst='ff02::1')/UDP(sport=547, dport=546)/DHCP6_Advertise(trid=7), iface='{i1}', count=3)\n"
    );
    let out = lab.exec("h1", &["timeout", "30", "/usr/bin/python3", "-c", &script]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "scapy: {out:?}");
    assert!(
        text.contains("own True"),
        "positive control: h1's own SOLICIT is answered: {text}"
    );
    assert!(
        text.contains("stolen False"),
        "h2's DUID from h1's port got an answer: {text}"
    );
    let exit = lab.stop_with("TERM");
    let drops = exit.counters("h1").drops;
    assert!(
        drops_of(&drops, "rogue_dhcp") >= 3,
        "{drops}\n{}",
        exit.stdout
    );
    assert!(
        exit.stderr.contains("DHCPv6 message refused") && exit.stderr.contains("Impersonation"),
        "the refusal is logged:\n{}",
        exit.stderr
    );
}

/// A client running in the background, stopped with SIGTERM (which `timeout` passes on) and
/// reaped when dropped.
struct Bg(std::process::Child);

impl Drop for Bg {
    fn drop(&mut self) {
        common::sh(&["kill", "-TERM", &self.0.id().to_string()]);
        let _ = self.0.wait();
    }
}

/// `dhcpcd -6` on h1 in the background, in the lab's namespace and a mount namespace of its
/// own: a tmpfs over /run (its pid file and control sockets) and the lab's directory over
/// /var/lib/dhcpcd (its DUID and leases), so nothing of the host's dhcpcd is touched. Its
/// config sends the hostname `web6` as the Client FQDN option and releases on SIGTERM.
fn dhcpcd6(lab: &mut Lab) -> Bg {
    let ns = lab.ns("h1");
    let i1 = lab.ifname("h1");
    let db = lab.dir.join("dhcpcd-db");
    std::fs::create_dir_all(&db).unwrap();
    let conf = lab.dir.join("dhcpcd.conf");
    std::fs::write(
        &conf,
        "hostname web6\nfqdn both\nrelease\nipv6only\nduid\nnooption domain_name_servers\n",
    )
    .unwrap();
    let inner = format!(
        "mount -t tmpfs sy-dhcpcd-run /run && mount --bind {db} /var/lib/dhcpcd && \
         exec timeout 60 dhcpcd -6 -B -f {conf} -c /bin/true --nohook resolv.conf {i1}",
        db = db.display(),
        conf = conf.display(),
    );
    let child = std::process::Command::new("ip")
        .args(["netns", "exec", &ns, "unshare", "-m", "sh", "-c", &inner])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn dhcpcd");
    Bg(child)
}

/// The DHCPv6 address (a /128 in the pool) `host` has, if any.
fn pool_address(ns: &str) -> Option<String> {
    let out = common::sh(&["ip", "-n", ns, "-6", "addr", "show", "scope", "global"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("inet6 "))
        .filter(|l| l.contains("/128"))
        .filter_map(|l| l.split('/').next())
        .find(|a| a.starts_with("fd00:13:31::1"))
        .map(str::to_string)
}

/// Starts the lab with a DHCPv4 and a DHCPv6 pool, h1 no `[[host]]` (a host's name would beat
/// the client's: see service::dns::lease6) and its port bound to none; waits for both hosts'
/// link-local addresses past DAD and returns h1's MAC (whatever its tap got).
fn start_h1_unnamed(lab: &mut Lab) -> String {
    start_edited(
        lab,
        "\n[dhcp6]\npool = [\"fd00:13:31::100\", \"fd00:13:31::1ff\"]\n",
        "",
        |c| {
            c.replacen(
                "\n[[host]]\nname = \"h1\"\nmac = \"52:54:00:31:00:0b\"\nipv4 = \"10.13.31.11\"\n",
                "",
                1,
            )
            .replacen("host = \"h1\"\n", "", 1)
            .replacen(
                "[dhcp]\n",
                "[dhcp]\npool = [\"10.13.31.100\", \"10.13.31.149\"]\n",
                1,
            )
        },
    );
    let ns = lab.ns("h1");
    lab.wait_for("h1's link-local address", Duration::from_secs(40), || {
        let out = common::sh(&["ip", "-n", &ns, "-6", "addr", "show", "scope", "link"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.contains("inet6 fe80::") && !l.contains("tentative"))
    });
    wait_for_address(lab, "h2", "fe80::5054:ff:fe31:c");
    let i1 = lab.ifname("h1");
    let link = common::sh(&["ip", "-n", &ns, "link", "show", &i1]);
    String::from_utf8_lossy(&link.stdout)
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .expect("h1's MAC")
        .to_string()
}

/// `dig +short ARGS` from `host` to the gateway's IPv6 address.
fn dig6(lab: &mut Lab, host: &str, args: &[&str]) -> String {
    let mut full = vec!["dig", "+short", "+time=2", "+tries=3", "@fd00:13:31::1"];
    full.extend_from_slice(args);
    let out = lab.exec(host, &full);
    assert!(out.status.success(), "dig {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn dhclient_6_without_a_name_takes_the_dhcpv4_name_of_its_mac() {
    let mut lab = Lab::new();
    let ns = lab.ns("h1");
    let _r1 = NetnsResolv::new(&ns);
    let _r2 = NetnsResolv::new(&lab.ns("h2"));
    start_h1_unnamed(&mut lab);
    // DHCPv4 first, with its hostname (option 12); then dhclient -6, which sends no FQDN.
    let script4 = common::clients::udhcpc_script(&lab.dir.clone());
    let i1 = lab.ifname("h1");
    let script4 = script4.display().to_string();
    let out = lab.exec(
        "h1",
        &[
            "timeout",
            "30",
            "udhcpc",
            "-i",
            &i1,
            "-n",
            "-q",
            "-f",
            "-t",
            "5",
            "-T",
            "1",
            "-x",
            "hostname:web4",
            "-s",
            &script4,
        ],
    );
    assert!(out.status.success(), "udhcpc: {out:?}");
    let v4 = dig6(&mut lab, "h2", &["A", "web4.lab.test"]);
    assert!(v4.starts_with("10.13.31.1"), "web4's A: {v4:?}");
    let script6 = dhclient6_script(&lab.dir.clone());
    let out = dhclient6(&mut lab, "h1", &script6);
    assert!(out.status.success(), "dhclient -6 on h1: {out:?}");
    let out = common::sh(&["ip", "-n", &ns, "-6", "addr", "show", "scope", "global"]);
    let addr = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("inet6 "))
        .filter_map(|l| l.split('/').next())
        .find(|a| a.starts_with("fd00:13:31::1"))
        .map(str::to_string)
        .expect("a DHCPv6 pool address on h1");
    assert_eq!(dig6(&mut lab, "h2", &["AAAA", "web4.lab.test"]), addr);
    assert_eq!(dig6(&mut lab, "h2", &["-x", &addr]), "web4.lab.test.");
    stop_dhclient6(&mut lab, "h1");
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.counters("h1").drops, "-", "{}", exit.stdout);
}

#[test]
fn dhcpcd_6_gets_a_pool_address_named_in_dns_until_it_releases() {
    let mut lab = Lab::new();
    let ns = lab.ns("h1");
    let ns2 = lab.ns("h2");
    let _r1 = NetnsResolv::new(&ns);
    let _r2 = NetnsResolv::new(&ns2);
    let h1_mac = start_h1_unnamed(&mut lab);
    // dhcpcd starts DHCPv6 because the RA has the managed flag; it sets the address itself.
    let bg = dhcpcd6(&mut lab);
    lab.wait_for(
        "a DHCPv6 address from dhcpcd",
        Duration::from_secs(30),
        || pool_address(&ns).is_some(),
    );
    let addr = pool_address(&ns).unwrap();
    let journal = std::fs::read_to_string(lab.dir.join("state").join("leases6.journal")).unwrap();
    assert!(
        journal.contains(&format!(" {addr} ")) && journal.contains(" web6 "),
        "{addr} web6 not in:\n{journal}"
    );

    // Its FQDN name answers AAAA and its address the PTR, asked from h2 over IPv6.
    let dig = |lab: &mut Lab, args: &[&str]| {
        let mut full = vec!["dig", "+short", "+time=2", "+tries=3", "@fd00:13:31::1"];
        full.extend_from_slice(args);
        let out = lab.exec("h2", &full);
        assert!(out.status.success(), "dig {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(dig(&mut lab, &["AAAA", "web6.lab.test"]), addr);
    assert_eq!(dig(&mut lab, &["-x", &addr]), "web6.lab.test.");
    assert_eq!(dig(&mut lab, &["A", "web6.lab.test"]), "", "no IPv4 lease");

    // `switchyard leases` lists the binding; the lease file has dnsmasq's IPv6 section.
    let table = lab.cli_ok(&["leases"]);
    let row = table
        .lines()
        .find(|l| l.contains(&addr))
        .unwrap_or_else(|| panic!("{addr} not in:\n{table}"));
    assert!(
        row.contains("ipv6") && row.contains("web6") && row.contains(&h1_mac),
        "{row}"
    );
    let services = lab.cli_ok(&["stats", "--services"]);
    let dhcp6 = services.split("dhcp6\n").nth(1).expect(&services);
    let leases = dhcp6.lines().find(|l| l.trim_start().starts_with("leases"));
    assert_eq!(
        leases.and_then(|l| l.split_whitespace().nth(1)),
        Some("1"),
        "{services}"
    );
    let file = lab.dir.join("state").join("leases");
    lab.wait_for(
        "the lease file's IPv6 section",
        Duration::from_secs(5),
        || std::fs::read_to_string(&file).is_ok_and(|t| t.contains(&addr)),
    );
    let text = std::fs::read_to_string(&file).unwrap();
    let duid_line = text.lines().find(|l| l.starts_with("duid ")).expect(&text);
    assert_eq!(duid_line.split(':').count(), 10, "DUID-LL: {duid_line}");
    let line = text.lines().find(|l| l.contains(&addr)).unwrap();
    let f: Vec<&str> = line.split(' ').collect();
    assert_eq!(
        f.len(),
        5,
        "<expiry> <iaid> <ipv6> <hostname> <duid>: {line}"
    );
    assert!(
        f[0].parse::<u64>().is_ok() && f[1].parse::<u32>().is_ok(),
        "{line}"
    );
    assert_eq!((f[2], f[3]), (addr.as_str(), "web6"), "{line}");

    // SIGTERM: dhcpcd sends RELEASE (its `release`); the name leaves DNS and the file.
    drop(bg);
    lab.wait_for("web6 gone from DNS", Duration::from_secs(10), || {
        let out = common::sh(&[
            "ip",
            "netns",
            "exec",
            &ns2,
            "dig",
            "+short",
            "+time=1",
            "+tries=1",
            "@fd00:13:31::1",
            "AAAA",
            "web6.lab.test",
        ]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim().is_empty()
    });
    assert_eq!(dig(&mut lab, &["-x", &addr]), "");
    lab.wait_for(
        "the binding gone from the lease file",
        Duration::from_secs(5),
        || std::fs::read_to_string(&file).is_ok_and(|t| !t.contains(&addr)),
    );
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.counters("h1").drops, "-", "{}", exit.stdout);
}
