//! libvirt for real: Debian's `libvirtd` runs a domain with `<interface type='ethernet'>`, and
//! the packaged hook (`contrib/libvirt-qemu-hook`) plugs its tap into switchyard. The VM (QEMU
//! TCG, Debian's kernel, a busybox initramfs) gets its reservation over DHCP and pings the
//! gateway once a second; switchyard is reloaded and restarted under it, and it stays on the
//! network. `virsh destroy` runs the hook's `release`: port and tap go. A second domain has
//! `<interface type='vhostuser'>` on a `vhost-user` port of the config (libvirt's QEMU connects
//! to the socket switchyard listens on, with shared memfd memory) and goes through the same
//! lease, ping, reload and restart, with no hook doing anything.
//!
//! No system libvirt is touched: libvirtd runs in a private mount namespace (`unshare -m`) in
//! which the test's own directories are bound over /etc/libvirt (its config, qemu.conf and the
//! hook), /run/libvirt, /var/lib/libvirt, /var/cache/libvirt and /var/log/libvirt, and the
//! lab's run directory over /run/switchyard (libvirt gives hooks a bare environment, so the
//! hook finds the lab's network where a VM host's would be); its socket is in the test's
//! directory; and it runs in the lab's switch namespace, so its taps and QEMU's traffic stay
//! there; its pid file is in the test's directory, so tests run side by side. The guard destroys
//! the domain, kills that QEMU and that libvirtd, by pid.
//!
//! Needs `libvirt-daemon-driver-qemu`, `libvirt-clients` and the `libvirt-qemu` user (scripts/
//! test.sh installs them), besides the VM test's packages.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::vm::{build_initramfs, debian_kernel, guest_init};
use common::{lab_config, sh, Lab};

const VM_MAC: &str = "52:54:00:31:00:29";
const VM_IP: &str = "10.13.31.41";

/// The VM: a lease, then a ping of the gateway every second, forever.
fn init() -> String {
    guest_init(
        20,
        r#"n=0
while true; do
  n=$((n+1))
  if ping -c 1 -W 1 10.13.31.1 >/dev/null 2>&1; then echo "SY-PING $n ok"; else echo "SY-PING $n lost"; fi
  sleep 1
done
"#,
    )
}

const UDHCPC: &str = r#"#!/bin/sh
case "$1" in
  bound|renew)
    ip addr add "$ip/${mask:-24}" dev "$interface"
    echo "SY-LEASE $ip"
    ;;
esac
exit 0
"#;

/// libvirtd in its own mount namespace and the lab's switch namespace; the domain, its QEMU
/// and libvirtd are stopped on drop.
struct Libvirt {
    daemon: Child,
    dir: PathBuf,
    domain: String,
}

impl Libvirt {
    fn uri(&self) -> String {
        format!(
            "qemu:///system?socket={}",
            self.dir.join("sock/libvirt-sock").display()
        )
    }

    fn virsh(&self, args: &[&str]) -> std::process::Output {
        Command::new("timeout")
            .args(["60", "virsh", "-c", &self.uri()])
            .args(args)
            .output()
            .expect("virsh (libvirt-clients)")
    }

    /// What libvirt's QEMU wrote (its command line first, then its stderr).
    fn qemu_log(&self) -> String {
        fs::read_to_string(self.dir.join(format!("log/qemu/{}.log", self.domain)))
            .unwrap_or_default()
    }

    fn qemu_pid(&self) -> Option<String> {
        fs::read_to_string(self.dir.join(format!("run/qemu/{}.pid", self.domain)))
            .ok()
            .map(|p| p.trim().to_string())
    }
}

impl Drop for Libvirt {
    fn drop(&mut self) {
        let pid = self.qemu_pid();
        let _ = self.virsh(&["destroy", &self.domain]);
        if let Some(pid) = pid {
            sh(&["kill", "-9", &pid]);
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// Writes `xml` to `xml_path`, starts the test's libvirtd and creates the domain `name` from it.
fn create_domain(lab: &Lab, name: &str, xml_path: &Path, xml: &str) -> Libvirt {
    fs::write(xml_path, xml).unwrap();
    let lv = start_libvirtd(lab, name);
    let out = lv.virsh(&["create", xml_path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "virsh create: {out:?}\nlibvirtd:\n{}",
        fs::read_to_string(lv.dir.join("libvirtd.log")).unwrap_or_default()
    );
    lv
}

fn start_libvirtd(lab: &Lab, domain: &str) -> Libvirt {
    let dir = lab.dir.join("libvirt");
    for d in [
        "etc/hooks",
        "etc/qemu",
        "run",
        "lib",
        "cache",
        "log",
        "sock",
    ] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::write(
        dir.join("etc/libvirtd.conf"),
        format!(
            "unix_sock_dir = \"{}\"\nlisten_tls = 0\nlisten_tcp = 0\nauth_unix_rw = \"none\"\n\
             log_outputs = \"3:stderr\"\n",
            dir.join("sock").display()
        ),
    )
    .unwrap();
    // Root's QEMU, no cgroups, namespaces, virtlogd or security driver: a test bed, not a host.
    fs::write(
        dir.join("etc/qemu.conf"),
        "user = \"root\"\ngroup = \"root\"\ndynamic_ownership = 0\nsecurity_driver = \"none\"\n\
         stdio_handler = \"file\"\nnamespaces = []\ncgroup_controllers = []\n",
    )
    .unwrap();
    // The packaged hook, pointed at this build.
    let hook =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/libvirt-qemu-hook"))
            .unwrap()
            .replace(
                "/usr/local/bin/switchyard",
                env!("CARGO_BIN_EXE_switchyard"),
            );
    let hook_path = dir.join("etc/hooks/qemu");
    fs::write(&hook_path, hook).unwrap();
    sh(&["chmod", "755", hook_path.to_str().unwrap()]);
    for m in [
        "/run/libvirt",
        "/var/lib/libvirt",
        "/var/cache/libvirt",
        "/var/log/libvirt",
        "/run/switchyard",
        "/etc/libvirt",
    ] {
        fs::create_dir_all(m).unwrap();
    }
    let d = dir.display();
    let script = format!(
        "set -e\nmount --bind {d}/etc /etc/libvirt\nmount --bind {d}/run /run/libvirt\n\
         mount --bind {d}/lib /var/lib/libvirt\nmount --bind {d}/cache /var/cache/libvirt\n\
         mount --bind {d}/log /var/log/libvirt\nmount --bind {run} /run/switchyard\n\
         exec ip netns exec {ns} libvirtd --config /etc/libvirt/libvirtd.conf --pid-file {d}/libvirtd.pid\n",
        run = lab.dir.join("run").display(),
        ns = lab.switch_ns()
    );
    let daemon = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join("libvirtd.log")).unwrap())
        .spawn()
        .expect("unshare");
    let lv = Libvirt {
        daemon,
        dir,
        domain: domain.to_string(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lv.virsh(&["version"]).status.success() {
        assert!(
            Instant::now() < deadline,
            "libvirtd did not answer: {}",
            fs::read_to_string(lv.dir.join("libvirtd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    lv
}

/// A domain of 256 MiB, one vCPU, Debian's kernel and the test's initramfs, its serial console
/// in a file; `memory_backing`, `interface` and `qemu_override` are put in as they are.
fn domain_xml(
    name: &str,
    memory_backing: &str,
    interface: &str,
    qemu_override: &str,
    kernel: &Path,
    initrd: &Path,
    console: &Path,
) -> String {
    format!(
        "<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n\
         <name>{name}</name>\n  <memory unit='MiB'>256</memory>\n{memory_backing}\
         <vcpu>1</vcpu>\n  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n\
         <kernel>{k}</kernel>\n    <initrd>{i}</initrd>\n\
         <cmdline>console=ttyS0 panic=-1 quiet</cmdline>\n  </os>\n\
         <on_poweroff>destroy</on_poweroff>\n  <on_crash>destroy</on_crash>\n  <devices>\n\
         <emulator>/usr/bin/qemu-system-x86_64</emulator>\n{interface}\
         <serial type='file'>\n      <source path='{c}'/>\n      <target port='0'/>\n\
         </serial>\n    <memballoon model='none'/>\n  </devices>\n{qemu_override}</domain>\n",
        k = kernel.display(),
        i = initrd.display(),
        c = console.display()
    )
}

/// `<interface type='ethernet'>` on a tap the hook plugs in.
fn ethernet_interface(tap: &str) -> String {
    format!(
        "<interface type='ethernet'>\n      <mac address='{VM_MAC}'/>\n\
         <target dev='{tap}' managed='no'/>\n      <model type='virtio'/>\n\
         <rom enabled='no'/>\n    </interface>\n"
    )
}

fn console(path: &Path) -> String {
    String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).into_owned()
}

/// Waits (bounded) until the console shows a `SY-PING N ok` with N above `after`; returns N.
fn wait_ping_ok(lv: &Libvirt, path: &Path, after: u64, what: &str, limit: Duration) -> u64 {
    let deadline = Instant::now() + limit;
    loop {
        let log = console(path);
        let last_ok = log
            .lines()
            .filter_map(|l| l.trim().strip_prefix("SY-PING "))
            .filter_map(|l| l.strip_suffix(" ok"))
            .filter_map(|n| n.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        if last_ok > after {
            return last_ok;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no ping answered; console:\n{log}\nQEMU's log:\n{}",
            lv.qemu_log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_libvirt_domain_gets_its_reservation_and_stays_on_across_reload_and_restart() {
    let mut lab = Lab::new();
    let mut cfg = lab_config(&mut lab, &[], "");
    cfg.push_str(&format!(
        "\n[[host]]\nname = \"vm\"\nmac = \"{VM_MAC}\"\nipv4 = \"{VM_IP}\"\n"
    ));
    lab.start(&cfg, &[]);
    let sock = lab.control_socket();
    lab.wait_for("the control socket", Duration::from_secs(10), || {
        sock.exists()
    });

    let (kernel, modules) = debian_kernel();
    let initrd = lab.dir.join("initramfs.cpio");
    build_initramfs(&initrd, &modules, &init(), UDHCPC);
    let name = format!("{}-vm", lab.tag);
    let tap = format!("sy-{}", lab.tag);
    assert!(tap.len() <= 15, "{tap}");
    let console_path = lab.dir.join("console.log");
    let xml_path = lab.dir.join("domain.xml");
    let lv = create_domain(
        &lab,
        &name,
        &xml_path,
        &domain_xml(
            &name,
            "",
            &ethernet_interface(&tap),
            "",
            &kernel,
            &initrd,
            &console_path,
        ),
    );
    // The hook plugged the tap as a guarded port with the host's reservation.
    let ports = lab.cli_ok(&["ports"]);
    let row = ports
        .lines()
        .find(|l| l.starts_with(&format!("{tap} ")))
        .unwrap_or_else(|| panic!("the hook plugged no port {tap}:\n{ports}"));
    assert!(row.contains(VM_MAC) && row.contains("enforce"), "{row}");

    let mut n = wait_ping_ok(
        &lv,
        &console_path,
        0,
        "the VM's first ping",
        Duration::from_secs(120),
    );
    let log = console(&console_path);
    assert!(
        log.contains(&format!("SY-LEASE {VM_IP}")),
        "no reservation:\n{log}"
    );

    // A reload: the hook's port is a live change, kept.
    let out = lab.cli_ok(&["reload"]);
    assert!(out.contains("1 live changes kept"), "{out}");
    n = wait_ping_ok(
        &lv,
        &console_path,
        n,
        "after the reload",
        Duration::from_secs(20),
    );

    // A restart of switchyard under the running VM: the port comes back on the same tap.
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    lab.start(&cfg, &[]);
    wait_ping_ok(
        &lv,
        &console_path,
        n + 1,
        "after the restart",
        Duration::from_secs(30),
    );
    assert!(lab.cli_ok(&["ports"]).contains(&tap));

    // The domain is destroyed: the hook's release unplugs the port and removes the tap.
    let out = lv.virsh(&["destroy", &name]);
    assert!(out.status.success(), "virsh destroy: {out:?}");
    let ns = lab.switch_ns();
    lab.wait_for("the hook's release", Duration::from_secs(15), || {
        !sh(&["ip", "-n", &ns, "link", "show", "dev", &tap])
            .status
            .success()
    });
    assert!(!lab.cli_ok(&["ports"]).contains(&tap));
    drop(lv);
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
}

/// No MSI-X on the NIC (`vectors=0`): under TCG, QEMU 7.2 crashes when a vhost-user device
/// starts with MSI-X (docs/vhost-user.md), and libvirt has no interface attribute for it, so
/// the property is set with libvirt's `<qemu:override>` on the device's (user) alias.
const VECTORS_0: &str =
    "  <qemu:override>\n    <qemu:device alias='ua-sy-net'>\n      <qemu:frontend>\n\
                         <qemu:property name='vectors' type='unsigned' value='0'/>\n\
                         </qemu:frontend>\n    </qemu:device>\n  </qemu:override>\n";

/// `<interface type='vhostuser'>`: libvirt's QEMU is the vhost-user frontend and connects
/// (`mode='client'`, with `<reconnect>`) to the socket a `vhost-user` port of the config listens
/// on; `<memoryBacking>` gives the guest shared memfd memory, which the switch maps. No hook
/// is involved (the packaged one is installed and must leave this domain alone).
#[test]
fn a_libvirt_vhostuser_domain_gets_its_reservation_and_stays_on_across_reload_and_restart() {
    let mut lab = Lab::new();
    let vhost = lab.dir.join("vm.vhost");
    let mut cfg = lab_config(&mut lab, &[], "");
    cfg.push_str(&format!(
        "\n[[host]]\nname = \"vm\"\nmac = \"{VM_MAC}\"\nipv4 = \"{VM_IP}\"\n\
         \n[[port]]\nname = \"vm\"\nkind = \"vhost-user\"\npath = \"{}\"\nhost = \"vm\"\n",
        vhost.display()
    ));
    lab.start(&cfg, &[]);
    let s = vhost.clone();
    lab.wait_for("the vhost-user socket", Duration::from_secs(10), || {
        s.exists()
    });

    let (kernel, modules) = debian_kernel();
    let initrd = lab.dir.join("initramfs.cpio");
    build_initramfs(&initrd, &modules, &init(), UDHCPC);
    let name = format!("{}-vu", lab.tag);
    let console_path = lab.dir.join("console.log");
    let xml_path = lab.dir.join("domain.xml");
    let memory_backing = "  <memoryBacking>\n    <source type='memfd'/>\n\
                          <access mode='shared'/>\n  </memoryBacking>\n";
    let interface = format!(
        "<interface type='vhostuser'>\n      <mac address='{VM_MAC}'/>\n\
         <source type='unix' path='{}' mode='client'>\n\
         <reconnect enabled='yes' timeout='1'/>\n      </source>\n\
         <model type='virtio'/>\n      <rom enabled='no'/>\n\
         <alias name='ua-sy-net'/>\n    </interface>\n",
        vhost.display()
    );
    let lv = create_domain(
        &lab,
        &name,
        &xml_path,
        &domain_xml(
            &name,
            memory_backing,
            &interface,
            VECTORS_0,
            &kernel,
            &initrd,
            &console_path,
        ),
    );
    // What libvirt made of it: shared memfd memory and a vhost-user netdev on our socket.
    let cmdline = lv
        .qemu_pid()
        .and_then(|p| fs::read(format!("/proc/{p}/cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .unwrap_or_default();
    assert!(
        cmdline.contains("memory-backend-memfd")
            && cmdline.contains("\"share\":true")
            && cmdline.contains("vhost-user")
            && cmdline.contains("\"vectors\":0"),
        "{cmdline}"
    );

    let mut n = wait_ping_ok(
        &lv,
        &console_path,
        0,
        "the VM's first ping",
        Duration::from_secs(120),
    );
    let log = console(&console_path);
    assert!(
        log.contains(&format!("SY-LEASE {VM_IP}")),
        "no reservation:\n{log}"
    );

    // A reload (the port is the config's own: nothing to keep live, and the guest stays on).
    lab.cli_ok(&["reload"]);
    n = wait_ping_ok(
        &lv,
        &console_path,
        n,
        "after the reload",
        Duration::from_secs(20),
    );

    // switchyard stops and starts again under the running VM: QEMU reconnects and replays the
    // setup with the ring positions it kept, and the guest's pings are answered again.
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    let first = exit.counters("vm");
    assert!(
        first.rx_frames >= 4 && first.tx_frames >= 4,
        "{}",
        exit.stdout
    );
    // The reload kept the guest's connection: the port never went down.
    assert_eq!(first.downs, 0, "{}", exit.stdout);
    lab.start(&cfg, &[]);
    wait_ping_ok(
        &lv,
        &console_path,
        n + 1,
        "after the restart",
        Duration::from_secs(60),
    );
    drop(lv);
    let exit = lab.stop_with("TERM");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    let second = exit.counters("vm");
    assert!(
        second.rx_frames >= 2 && second.tx_frames >= 2,
        "no traffic through the restarted switch\n{}",
        exit.stdout
    );
}
