//! DHCP with real clients in namespace hosts: ISC dhclient, busybox udhcpc and dhcpcd each get
//! their reservation, a host without one gets a pool address, the leases survive `kill -9` of the
//! daemon, and a release removes the lease from `switchyard leases`.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{clients, Lab};

fn write_scripts(lab: &Lab) -> (PathBuf, PathBuf) {
    (
        clients::dhclient_script(&lab.dir),
        clients::udhcpc_script(&lab.dir),
    )
}

fn config(lab: &mut Lab) -> String {
    let mut c = format!(
        "[network]\nname = \"{tag}\"\nsubnet = \"10.13.31.0/24\"\ngateway = \"10.13.31.1\"\n\
         domain = \"lab.test\"\n\n[dhcp]\npool = [\"10.13.31.100\", \"10.13.31.199\"]\n\
         state_dir = \"{state}\"\n\n[switch]\ncontrol_socket = \"{socket}\"\n",
        tag = lab.tag,
        state = lab.dir.join("state").display(),
        socket = lab.control_socket().display()
    );
    for (h, octet) in [
        ("h1", Some(11)),
        ("h2", Some(12)),
        ("h3", Some(13)),
        ("h4", None),
    ] {
        let ns = lab.ns(h);
        let ifname = lab.ifname(h);
        let mac = format!("52:54:00:31:00:{:02x}", 0x20 + octet.unwrap_or(0x40));
        c.push_str(&format!("\n[[host]]\nname = \"{h}\"\nmac = \"{mac}\"\n"));
        if let Some(o) = octet {
            c.push_str(&format!("ipv4 = \"10.13.31.{o}\"\n"));
        }
        c.push_str(&format!(
            "\n[[port]]\nname = \"{h}\"\nkind = \"tap\"\nifname = \"{ifname}\"\nhost = \"{h}\"\n\
             netns = \"{ns}\"\naddress = \"none\"\n"
        ));
    }
    c
}

fn ipv4_of(lab: &mut Lab, host: &str) -> Option<String> {
    let ifname = lab.ifname(host);
    let out = lab.exec(host, &["ip", "-4", "-o", "addr", "show", "dev", &ifname]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .map(|a| a.split('/').next().unwrap_or(a).to_string())
}

/// Runs each client once (they all exit after binding) and returns their addresses.
fn acquire_all(lab: &mut Lab, dhclient_script: &str, udhcpc_script: &str) -> Vec<Option<String>> {
    let dir = lab.dir.clone();
    for (h, kind) in [
        ("h1", "dhclient"),
        ("h2", "udhcpc"),
        ("h3", "dhcpcd"),
        ("h4", "udhcpc"),
    ] {
        let ifname = lab.ifname(h);
        let lf = dir.join(format!("{h}.leases"));
        let pf = dir.join(format!("{h}.pid"));
        let (lf, pf) = (lf.to_str().unwrap(), pf.to_str().unwrap());
        let out = match kind {
            "dhclient" => lab.exec(
                h,
                &[
                    "timeout",
                    "30",
                    "dhclient",
                    "-1",
                    "-4",
                    "-lf",
                    lf,
                    "-pf",
                    pf,
                    "-sf",
                    dhclient_script,
                    &ifname,
                ],
            ),
            "udhcpc" => {
                assert!(
                    clients::udhcpc(lab, h, Path::new(udhcpc_script), "10"),
                    "udhcpc on {h} failed"
                );
                continue;
            }
            _ => lab.exec(
                h,
                &[
                    "timeout",
                    "30",
                    "dhcpcd",
                    "-1",
                    "-4",
                    "-B",
                    "-p",
                    "-A",
                    "-L",
                    "-G",
                    "-f",
                    "/dev/null",
                    "-c",
                    "/bin/true",
                    "-t",
                    "20",
                    &ifname,
                ],
            ),
        };
        assert!(out.status.success(), "{kind} on {h} failed: {out:?}");
    }
    ["h1", "h2", "h3", "h4"]
        .iter()
        .map(|h| ipv4_of(lab, h))
        .collect()
}

fn leases(cfg: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["leases", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn real_clients_get_reservations_and_pool_and_keep_them_across_kill_9() {
    let mut lab = Lab::new();
    let (dsc, usc) = write_scripts(&lab);
    let (dsc, usc) = (
        dsc.to_str().unwrap().to_string(),
        usc.to_str().unwrap().to_string(),
    );
    let cfg_text = config(&mut lab);
    let hosts: Vec<(String, String)> = ["h1", "h2", "h3", "h4"]
        .iter()
        .map(|h| (h.to_string(), lab.ifname(h)))
        .collect();
    let refs: Vec<(&str, &str)> = hosts
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    lab.start(&cfg_text, &refs);
    let cfg_path = lab.dir.join("switchyard.toml");

    let got = acquire_all(&mut lab, &dsc, &usc);
    assert_eq!(got[0].as_deref(), Some("10.13.31.11"), "dhclient");
    assert_eq!(got[1].as_deref(), Some("10.13.31.12"), "udhcpc");
    assert_eq!(got[2].as_deref(), Some("10.13.31.13"), "dhcpcd");
    let pool = got[3].clone().expect("pool host got no address");
    let last: u8 = pool.rsplit('.').next().unwrap().parse().unwrap();
    assert!((100..=199).contains(&last), "pool address {pool}");

    // Everyone reaches the gateway, and the pool host (guarded, no reservation) is reachable:
    // its lease was bound into the guard.
    for h in ["h1", "h2", "h3", "h4"] {
        assert!(lab.ping(h, "10.13.31.1", 2), "{h} -> gateway");
    }
    assert!(lab.ping("h1", &pool, 2), "h1 -> pool host {pool}");
    let table = leases(&cfg_path);
    println!("switchyard leases:\n{table}");
    // The dnsmasq-format lease file (what Multipass parses) follows within a second.
    let lease_file = lab.dir.join("state").join("leases");
    lab.wait_for("the dnsmasq lease file", Duration::from_secs(5), || {
        let text = fs::read_to_string(&lease_file).unwrap_or_default();
        text.lines().count() == 4
            && text.lines().any(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                f.len() == 5 && f[2] == "10.13.31.12" && f[3] == "h2"
            })
    });
    for a in ["10.13.31.11", "10.13.31.12", "10.13.31.13", pool.as_str()] {
        assert!(table.contains(a), "{a} missing from leases:\n{table}");
    }

    // dhclient stays in the background after binding: stop it (no release) so the second round
    // starts a fresh one, and none outlives the test.
    let pf = lab.dir.join("h1.pid");
    let stop = lab.exec("h1", &["dhclient", "-x", "-pf", pf.to_str().unwrap()]);
    assert!(stop.status.success(), "dhclient -x: {stop:?}");

    // kill -9 and restart: every client gets the same address again.
    lab.kill9();
    lab.start(&cfg_text, &refs);
    let again = acquire_all(&mut lab, &dsc, &usc);
    assert_eq!(again, got, "addresses changed across kill -9");

    // dhclient -r releases; the lease disappears from `switchyard leases`.
    let ifname = lab.ifname("h1");
    let lf = lab.dir.join("h1.leases");
    let pf = lab.dir.join("h1.pid");
    let out = lab.exec(
        "h1",
        &[
            "timeout",
            "20",
            "dhclient",
            "-r",
            "-lf",
            lf.to_str().unwrap(),
            "-pf",
            pf.to_str().unwrap(),
            "-sf",
            &dsc,
            &ifname,
        ],
    );
    assert!(out.status.success(), "dhclient -r: {out:?}");
    let mut table = String::new();
    lab.wait_for(
        "release reflected in leases",
        Duration::from_secs(5),
        || {
            table = leases(&cfg_path);
            !table.contains("10.13.31.11 ") && !table.contains("10.13.31.11/")
        },
    );
    assert!(table.contains("10.13.31.12"), "{table}");
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
}
