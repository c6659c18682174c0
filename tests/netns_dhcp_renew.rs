//! A real renew at T1: busybox udhcpc asks for a 5-minute lease (option 51) of a server that
//! grants an hour, gets 5 minutes and the extra options from `[[dhcp.option]]`, then renews by
//! unicast to the server (SIGUSR1: RENEWING state, ciaddr set) and the lease's expiry moves on.

mod common;

use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::Lab;

/// A process in a lab namespace, killed when dropped.
struct Bg(Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_in(ns: &str, args: &[&str]) -> Bg {
    let child = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn in namespace");
    Bg(child)
}

fn expiry_of(cfg: &std::path::Path, ip: &str) -> Option<u64> {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["leases", "--json", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v.as_array()?
        .iter()
        .find(|l| l["ipaddr"] == ip)
        .and_then(|l| l["expiry_time"].as_u64())
}

#[test]
fn udhcpc_gets_the_requested_lease_time_extra_options_and_renews_by_unicast() {
    let mut lab = Lab::new();
    let ns = lab.ns("h1");
    let ifname = lab.ifname("h1");
    let cfg = format!(
        "[network]\nname = \"{tag}\"\nsubnet = \"10.13.31.0/24\"\ngateway = \"10.13.31.1\"\n\
         domain = \"lab.test\"\n\n[dhcp]\nstate_dir = \"{state}\"\nlease_time = \"1h\"\n\n\
         [[dhcp.option]]\ncode = 42\nip = [\"10.13.31.5\"]\n\n\
         [[dhcp.option]]\ncode = 3\nip = []\n\n\
         [[host]]\nname = \"h1\"\nmac = \"52:54:00:31:00:0b\"\nipv4 = \"10.13.31.11\"\n\n\
         [[port]]\nname = \"h1\"\nkind = \"tap\"\nifname = \"{ifname}\"\nhost = \"h1\"\n\
         netns = \"{ns}\"\naddress = \"none\"\n",
        tag = lab.tag,
        state = lab.dir.join("state").display(),
    );
    lab.start(&cfg, &[("h1", &ifname)]);
    let cfg_path = lab.dir.join("switchyard.toml");

    // The hook records each event's environment: udhcpc exports every option it got.
    let log = lab.dir.join("udhcpc-events");
    let script = lab.dir.join("udhcpc-script");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$1\" in bound|renew)\n  ip -4 addr flush dev \"$interface\"\n  \
             ip addr add \"$ip/$mask\" dev \"$interface\"\n  \
             echo \"$1 ip=$ip lease=$lease ntpsrv=$ntpsrv router=$router\" >> {log};;\nesac\n\
             exit 0\n",
            log = log.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let client = spawn_in(
        &ns,
        &[
            "udhcpc",
            "-i",
            &ifname,
            "-f",
            "-t",
            "10",
            "-T",
            "1",
            "-O",
            "ntpsrv",
            "-x",
            "lease:300",
            "-s",
            script.to_str().unwrap(),
        ],
    );
    let events = || fs::read_to_string(&log).unwrap_or_default();
    lab.wait_for("udhcpc bound", Duration::from_secs(20), || {
        events().contains("bound")
    });
    let bound = events();
    assert!(bound.contains("bound ip=10.13.31.11 lease=300 "), "{bound}");
    assert!(
        bound.contains("ntpsrv=10.13.31.5 "),
        "option 42 from [[dhcp.option]]: {bound}"
    );
    assert!(
        bound.contains("router=\n") || bound.ends_with("router=\n"),
        "option 3 removed: {bound}"
    );
    let first = expiry_of(&cfg_path, "10.13.31.11").expect("lease listed");

    // Watch for the renew: a REQUEST unicast to the server's address, not broadcast.
    std::thread::sleep(Duration::from_millis(1100));
    let (cap_out, cap_err) = (lab.dir.join("renew.txt"), lab.dir.join("renew.err"));
    let capture = Command::new("ip")
        .args([
            "netns", "exec", &ns, "timeout", "30", "tcpdump", "-n", "-l", "-i",
        ])
        .args([ifname.as_str(), "udp dst port 67 and dst host 10.13.31.1"])
        .stdout(fs::File::create(&cap_out).unwrap())
        .stderr(fs::File::create(&cap_err).unwrap())
        .spawn()
        .unwrap();
    let capture = Bg(capture);
    // tcpdump prints "listening on" once its filter is in place.
    lab.wait_for("tcpdump listening", Duration::from_secs(10), || {
        fs::read_to_string(&cap_err)
            .unwrap_or_default()
            .contains("listening on")
    });
    let kill = Command::new("kill")
        .args(["-USR1", &client.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    lab.wait_for("udhcpc renewed", Duration::from_secs(15), || {
        events().contains("renew")
    });
    let renewed = events();
    assert!(
        renewed.contains("renew ip=10.13.31.11 lease=300 "),
        "{renewed}"
    );
    let mut seen = String::new();
    lab.wait_for("the renew in the capture", Duration::from_secs(5), || {
        seen = fs::read_to_string(&cap_out).unwrap_or_default();
        seen.contains("10.13.31.11.68 > 10.13.31.1.67")
    });
    drop(capture);
    let second = expiry_of(&cfg_path, "10.13.31.11").expect("lease still listed");
    assert!(
        second > first,
        "renew moved the expiry: {first} -> {second}"
    );
    assert!(
        second <= first + 300,
        "still a 5-minute lease: {first} -> {second}"
    );
    drop(client);
}
