//! libvirt's qemu hook (`switchyard libvirt-hook`, behind `contrib/libvirt-qemu-hook`), run as
//! libvirt runs it: the guest's name and the operation as arguments, the domain XML on stdin.
//! It runs in the daemon's namespace (a VM host's libvirt and switchyard share one), finds the
//! only running network by itself, and plugs the guest's tap as a guarded packet port; the
//! port comes back when switchyard restarts, and `release` removes port and tap. libvirt
//! itself is not run here.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{lab_config, sh, Lab};

const MAC: &str = "52:54:00:31:00:15";

/// The domain XML, as `virsh dumpxml` prints it, with one switchyard NIC on `tap`, one other.
fn domain(tap: &str, mac: &str) -> String {
    format!(
        "<domain type='qemu'>\n  <name>vm5</name>\n  <devices>\n\
         <interface type='ethernet'>\n      <mac address='{mac}'/>\n\
         <target dev='{tap}' managed='no'/>\n      <model type='virtio'/>\n    </interface>\n\
         <interface type='user'>\n      <mac address='52:54:00:aa:00:01'/>\n    </interface>\n\
         </devices>\n</domain>\n"
    )
}

/// `switchyard libvirt-hook GUEST OP begin -` in the daemon's namespace, `xml` on stdin.
fn hook(lab: &Lab, op: &str, xml: &str, run_dir: &std::path::Path) -> Output {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lab.switch_ns()])
        .arg(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "libvirt-hook",
            "vm5",
            op,
            "begin",
            "-",
            "--tap-prefix",
            &lab.tag,
        ])
        .env("SWITCHYARD_RUN_DIR", run_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(xml.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn link_exists(lab: &Lab, ifname: &str) -> bool {
    sh(&["ip", "-n", &lab.switch_ns(), "link", "show", "dev", ifname])
        .status
        .success()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn the_hook_plugs_a_guests_tap_guarded_and_takes_it_away() {
    let mut lab = Lab::new();
    let mut cfg = lab_config(&mut lab, &[("vm1", 11, false)], "");
    cfg.push_str(&format!(
        "\n[[host]]\nname = \"vm5\"\nmac = \"{MAC}\"\nipv4 = \"10.13.31.21\"\n"
    ));
    let vm1_if = lab.ifname("vm1");
    lab.start(&cfg, &[("vm1", &vm1_if)]);
    let run_dir = lab.dir.join("run");
    let tap = lab.ifname("v5");
    let xml = domain(&tap, MAC);

    // Not switchyard's (another prefix): nothing happens, exit 0.
    let other = domain("vnet7", MAC);
    let o = hook(&lab, "prepare", &other, &run_dir);
    assert!(o.status.success(), "{}", err(&o));
    assert!(!lab.cli_ok(&["ports"]).contains("vnet7"));

    // prepare: a tap, a packet port on it, guarded by vm5's reservation.
    let o = hook(&lab, "prepare", &xml, &run_dir);
    assert!(o.status.success(), "{}", err(&o));
    assert!(link_exists(&lab, &tap), "no tap {tap}");
    let ports = lab.cli_ok(&["ports"]);
    let row = ports
        .lines()
        .find(|l| l.starts_with(&format!("{tap} ")))
        .unwrap_or_else(|| panic!("no port {tap}:\n{ports}"));
    for want in ["packet", MAC, "10.13.31.21", "enforce"] {
        assert!(row.contains(want), "{want} missing: {row}");
    }
    // Other hook operations (started, stopped, ...) leave it be.
    let o = hook(&lab, "started", &xml, &run_dir);
    assert!(o.status.success(), "{}", err(&o));

    // switchyard restarts under the running guest: the port is back, on the same tap.
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    assert!(
        link_exists(&lab, &tap),
        "the persistent tap outlives the daemon"
    );
    lab.start(&cfg, &[("vm1", &vm1_if)]);
    let sock = lab.control_socket();
    lab.wait_for("the control socket", Duration::from_secs(10), || {
        sock.exists()
    });
    assert!(
        lab.cli_ok(&["ports"]).contains(&tap),
        "the port did not come back"
    );
    // A second prepare (libvirt restarted the guest) finds it plugged: not an error.
    let o = hook(&lab, "prepare", &xml, &run_dir);
    assert!(o.status.success(), "{}", err(&o));
    assert!(err(&o).contains("plugged already"), "{}", err(&o));

    // release: port and tap gone.
    let o = hook(&lab, "release", &xml, &run_dir);
    assert!(o.status.success(), "{}", err(&o));
    assert!(!lab.cli_ok(&["ports"]).contains(&tap));
    assert!(!link_exists(&lab, &tap), "tap {tap} left behind");

    // No network running: prepare fails loudly, and leaves no tap behind.
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    let o = hook(&lab, "prepare", &xml, &run_dir);
    assert!(!o.status.success(), "prepare without a network must fail");
    assert!(
        err(&o).contains("vm5") && err(&o).contains("no switchyard network is running"),
        "{}",
        err(&o)
    );
    assert!(!link_exists(&lab, &tap));
}
