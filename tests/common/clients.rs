//! Real DHCP clients in lab hosts, with hooks that only set the address (never touching
//! resolv.conf or any other file of the root namespace).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::Lab;

fn write_executable(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A busybox udhcpc hook script in `dir`.
pub fn udhcpc_script(dir: &Path) -> PathBuf {
    let path = dir.join("udhcpc-script");
    write_executable(
        &path,
        "#!/bin/sh\ncase \"$1\" in bound|renew)\n  ip -4 addr flush dev \"$interface\"\n  \
         ip addr add \"$ip/$mask\" dev \"$interface\";;\nesac\nexit 0\n",
    );
    path
}

/// An ISC dhclient-script in `dir`.
pub fn dhclient_script(dir: &Path) -> PathBuf {
    let path = dir.join("dhclient-script");
    write_executable(
        &path,
        "#!/bin/sh\ncase \"$reason\" in BOUND|RENEW|REBIND|REBOOT)\n  \
         ip -4 addr flush dev \"$interface\"\n  \
         ip addr add \"$new_ip_address/$new_subnet_mask\" dev \"$interface\";;\nesac\nexit 0\n",
    );
    path
}

/// Runs udhcpc once on `host`'s port (at most `tries` DISCOVERs a second apart, bounded by a
/// 30 s timeout); true if it bound an address.
pub fn udhcpc(lab: &mut Lab, host: &str, script: &Path, tries: &str) -> bool {
    udhcpc_with(lab, host, script, tries, &[])
}

/// `udhcpc` with more of udhcpc's arguments (e.g. `["-x", "hostname:web"]`).
pub fn udhcpc_with(lab: &mut Lab, host: &str, script: &Path, tries: &str, extra: &[&str]) -> bool {
    let ifname = lab.ifname(host);
    let script = script.to_str().unwrap();
    let mut args = vec![
        "timeout", "30", "udhcpc", "-i", &ifname, "-n", "-q", "-f", "-t", tries, "-T", "1", "-s",
        script,
    ];
    args.extend_from_slice(extra);
    lab.exec(host, &args).status.success()
}
