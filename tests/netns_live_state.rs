//! Live state that lasts: a port plugged, a host added and an address allowed through the
//! control socket survive a reload and a restart (the VM stays on the network), `switchyard
//! state` shows them, `state --save` writes them into the config file, and `reload --prune`
//! forgets them.

mod common;

use std::time::Duration;

use common::{clients, lab_config, sh, Lab};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn state(lab: &Lab, args: &[&str]) -> String {
    let cfg = lab.dir.join("switchyard.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("state")
        .arg("--config")
        .arg(&cfg)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until vm3's tap is up in its namespace, takes a lease there with udhcpc (the
/// reservation must be what it gets), then pings vm1 from it.
fn vm3_reaches_vm1(lab: &mut Lab, ns: &str, ifname: &str) {
    let (ns, ifname) = (ns.to_string(), ifname.to_string());
    lab.wait_for("vm3's tap up", Duration::from_secs(15), || {
        let out = sh(&["ip", "-n", &ns, "-br", "link", "show", "dev", &ifname]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("UP")
    });
    let script = clients::udhcpc_script(&lab.dir);
    assert!(
        clients::udhcpc(lab, "vm3", &script, "3"),
        "vm3 got no lease"
    );
    let addr = sh(&["ip", "-n", &ns, "-4", "-br", "addr", "show", "dev", &ifname]);
    assert!(
        String::from_utf8_lossy(&addr.stdout).contains("10.13.31.13/24"),
        "vm3 did not get its reservation: {addr:?}"
    );
    assert!(lab.ping("vm3", "10.13.31.11", 3), "vm3 cannot reach vm1");
}

#[test]
fn live_changes_survive_reload_and_restart_and_can_be_saved_or_pruned() {
    let mut lab = Lab::new();
    let cfg = lab_config(&mut lab, &[("vm1", 11, false)], "");
    let vm1_if = lab.ifname("vm1");
    lab.start(&cfg, &[("vm1", &vm1_if)]);
    let (ns3, if3) = (lab.ns("vm3"), lab.ifname("vm3"));

    // A VM started after the daemon: its reservation, its port, an extra address on vm1.
    lab.cli_ok(&[
        "host",
        "add",
        "vm3",
        "--mac",
        "52:54:00:31:00:0d",
        "--ipv4",
        "10.13.31.13",
    ]);
    lab.cli_ok(&[
        "port", "add", "vm3", "--kind", "tap", "--ifname", &if3, "--netns", &ns3, "--host", "vm3",
    ]);
    lab.cli_ok(&["allow", "vm1", "10.13.31.64/28"]);
    vm3_reaches_vm1(&mut lab, &ns3, &if3);
    let shown = state(&lab, &[]);
    assert_eq!(shown.lines().count(), 3, "{shown}");
    assert!(shown.contains("switchyard host add vm3 --mac 52:54:00:31:00:0d --ipv4 10.13.31.13"));
    assert!(shown.contains(&format!(
        "switchyard port add vm3 --kind tap --ifname {if3}"
    )));
    assert!(shown.contains("switchyard allow vm1 10.13.31.64/28"));
    let saved = std::fs::read_to_string(lab.dir.join("state/live.json")).unwrap();
    assert!(saved.contains("\"port_add\""), "{saved}");

    // A reload of the unchanged file keeps them: nothing is unplugged.
    let out = lab.cli_ok(&["reload"]);
    assert!(out.contains("3 live changes kept"), "{out}");
    assert!(lab.cli_ok(&["ports"]).contains(&if3));
    assert!(
        lab.ping("vm3", "10.13.31.11", 2),
        "vm3 fell off at the reload"
    );

    // A restart brings them back: the port, the host's reservation, the extra address.
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    lab.start(&cfg, &[("vm1", &vm1_if)]);
    vm3_reaches_vm1(&mut lab, &ns3, &if3);
    let ports = lab.cli_ok(&["ports"]);
    let vm1_row = ports.lines().find(|l| l.starts_with("vm1 ")).unwrap();
    assert!(vm1_row.contains("10.13.31.64/28"), "{ports}");
    assert_eq!(state(&lab, &[]).lines().count(), 3);

    // --save writes them into the file (a valid config), and the live state is empty.
    let out = state(&lab, &["--save"]);
    assert!(out.contains("3 live changes written"), "{out}");
    let file = std::fs::read_to_string(lab.dir.join("switchyard.toml")).unwrap();
    assert!(file.contains("name = \"vm3\""), "{file}");
    assert!(file.contains("10.13.31.64/28"), "{file}");
    assert!(state(&lab, &[]).contains("no live changes"));
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("check")
        .arg(lab.dir.join("switchyard.toml"))
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    let out = lab.cli_ok(&["reload"]);
    assert!(
        out.contains("no live changes") && out.contains("0 removed"),
        "{out}"
    );
    assert!(lab.ping("vm3", "10.13.31.11", 2));

    // A live port that the file lacks goes with --prune, and the live state with it.
    let sock = lab.dir.join("vm4.sock").display().to_string();
    lab.cli_ok(&["port", "add", "vm4", "--kind", "stream", "--path", &sock]);
    assert_eq!(state(&lab, &[]).lines().count(), 1);
    let out = lab.cli_ok(&["reload", "--prune"]);
    assert!(
        out.contains("1 removed") && out.contains("live changes pruned"),
        "{out}"
    );
    assert!(!lab.cli_ok(&["ports"]).contains("vm4"));
    assert!(state(&lab, &[]).contains("no live changes"));
    assert!(lab.ping("vm3", "10.13.31.11", 2), "a file port was touched");
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
}
